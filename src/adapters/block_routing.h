// One routing decision per block (ReMix, MixLoRA-style top-k), shared by the block's projections.
#pragma once

#include <memory>
#include <string>

#include "adapters/adapter_config.h"
#include "adapters/routing.h"
#include "model/decoder.h"

namespace remora {

// Installed as a block's input hook: routes the block input x [B, T, D] once, and hands the gate
// [B T, n] to every adapted projection of the block. With sequence routing the router sees the mean
// of x over each sequence's routing-mask tokens (its real tokens, or the prompt during generation),
// and during cached decoding (past > 0) the decision the prompt made is kept.
class BlockRouting {
 public:
  BlockRouting(std::shared_ptr<Router> router, RoutingGranularity granularity, RoutingState* state,
               std::string path);

  void on_block_input(const at::Tensor& x, const ForwardContext& context);
  // The gate of the latest block input; throws if none was computed.
  const at::Tensor& gate() const;
  // With sequence routing: the decision [B, n] the prompt made, kept for cached decoding. Serving
  // saves each row's after its prefill and sets the batch's rows before each decode step.
  const at::Tensor& sequence_gate() const { return sequence_gate_; }
  void set_sequence_gate(at::Tensor gate) { sequence_gate_ = std::move(gate); }

  std::shared_ptr<Router> router;
  const std::string& path() const { return path_; }

 private:
  RoutingGranularity granularity_;
  RoutingState* state_;
  std::string path_;
  at::Tensor gate_;           // [B T, n]
  at::Tensor sequence_gate_;  // [B, n] kept for decoding with sequence routing
};

}  // namespace remora
