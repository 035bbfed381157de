// LoraRetriever-style routing: each sequence to the k experts whose data its prompt resembles most.
#include "adapters/routers/routers.h"
#include "core/error.h"

namespace remora {

RetrievalRouter::RetrievalRouter(int64_t input_size, int64_t experts, int64_t k) : k_(k) {
  centroids = register_buffer("centroids", at::zeros({experts, input_size}, at::kFloat));
}

void RetrievalRouter::initialize(double, at::Generator& generator) {
  // Placeholders until remora compose measures each expert's data (a fresh adapter routes at random).
  centroids.normal_(0.0, 1.0, generator);
}

at::Tensor RetrievalRouter::similarity(const at::Tensor& embedding) const {
  const at::Tensor e = embedding.to(centroids.scalar_type());
  return at::matmul(e / e.norm(2, {-1}, true).clamp_min(1e-12),
                    (centroids / centroids.norm(2, {-1}, true).clamp_min(1e-12)).t());
}

Gate RetrievalRouter::route(const at::Tensor&, const at::Tensor&, int64_t rows, RoutingState& state) {
  // The block's own input is not what the centroids describe: the adapted model's pre-pass put the
  // prompts' embedding (base model, layer retrieval_layer) in the state.
  const at::Tensor& embedding = state.sequence_embedding;
  REMORA_CHECK(embedding.defined() && embedding.size(0) == rows,
               "retrieval router: no prompt embedding for this forward (the adapted model computes it)");
  at::Tensor cosine = similarity(embedding);  // [rows, n]
  at::Tensor selected = std::get<1>(cosine.topk(k_, -1));
  // LoraRetriever's mixture: the retrieved LoRAs' outputs averaged with equal weights.
  at::Tensor weights = at::zeros_like(cosine).scatter(-1, selected, 1.0 / static_cast<double>(k_));
  return {weights, weights, selected};
}

}  // namespace remora
