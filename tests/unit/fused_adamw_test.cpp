// FusedAdamW against LibTorch's AdamW: the same bits, the same saved state, versions bumped.
#include "train/fused_adamw.h"

#include <gtest/gtest.h>
#include <torch/serialize.h>

#include <memory>
#include <sstream>
#include <vector>

#include "adapters/factor_cast.h"

namespace remora {
namespace {

// Parameters of sizes that exercise whole vectors, tails and more than one parallel chunk, in three
// groups as make_optimizer builds them (decayed weights, routers with their own lr, undecayed).
struct Groups {
  std::vector<at::Tensor> decayed, routers, not_decayed;

  static Groups make() {
    Groups g;
    for (int64_t n : {7, 33, 1000}) g.decayed.push_back(at::randn({n}));
    g.decayed.push_back(at::randn({64, 512}));
    g.decayed.push_back(at::randn({70001}));  // > 1 chunk of the parallel loop
    g.routers.push_back(at::randn({8, 512}));
    g.not_decayed.push_back(at::randn({512}));
    g.not_decayed.push_back(at::randn({300}));  // never gets a gradient
    for (auto* list : {&g.decayed, &g.routers, &g.not_decayed}) {
      for (auto& p : *list) p.set_requires_grad(true);
    }
    return g;
  }

  Groups clone() const {
    Groups g;
    const auto copy = [](const std::vector<at::Tensor>& from, std::vector<at::Tensor>& to) {
      for (const auto& p : from) to.push_back(p.detach().clone().set_requires_grad(true));
    };
    copy(decayed, g.decayed);
    copy(routers, g.routers);
    copy(not_decayed, g.not_decayed);
    return g;
  }

  std::vector<at::Tensor> all() const {
    std::vector<at::Tensor> out = decayed;
    out.insert(out.end(), routers.begin(), routers.end());
    out.insert(out.end(), not_decayed.begin(), not_decayed.end());
    return out;
  }

  std::vector<torch::optim::OptimizerParamGroup> param_groups(bool amsgrad = false) const {
    const auto options = [&](double lr, double decay) {
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).eps(1e-8).weight_decay(decay).amsgrad(amsgrad));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decayed, options(2e-3, 0.1));
    groups.emplace_back(routers, options(1e-2, 0.0));
    groups.emplace_back(not_decayed, options(2e-3, 0.0));
    return groups;
  }
};

// Gradients of mixed sizes (tiny ones too, whose squares are near float's smallest normals), the
// same on both sides; the last parameter gets none.
void set_gradients(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, int step) {
  for (size_t i = 0; i + 1 < a.size(); ++i) {
    const double magnitude = (i % 3 == 0) ? 1e-18 : (i % 3 == 1 ? 1e-3 : 1.0);
    const at::Tensor g = at::randn(a[i].sizes()) * magnitude * (1 + step);
    a[i].mutable_grad() = g.clone();
    b[i].mutable_grad() = g.clone();
  }
}

void expect_bits_equal(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::equal(a[i], b[i])) << "parameter " << i << " of " << a[i].numel() << " elements differs";
  }
}

// The same parameters under FusedAdamW and LibTorch's AdamW, stepped with the same gradients.
struct SideBySide {
  Groups fused_params, eager_params;
  FusedAdamW fused;
  torch::optim::AdamW eager;

  explicit SideBySide(bool amsgrad = false)
      : fused_params(Groups::make()), eager_params(fused_params.clone()),
        fused(fused_params.param_groups(amsgrad)), eager(eager_params.param_groups(amsgrad)) {}

  void step(int step) {
    set_gradients(fused_params.all(), eager_params.all(), step);
    fused.step();
    eager.step();
  }
};

TEST(FusedAdamW, StepsAreBitIdenticalToLibTorchAdamW) {
  torch::manual_seed(3);
  SideBySide run;
  for (int step = 0; step < 6; ++step) {
    if (step == 3) {  // a schedule changing the lr between steps, as apply_lr does
      for (torch::optim::Optimizer* optimizer : std::vector<torch::optim::Optimizer*>{&run.fused, &run.eager}) {
        for (auto& group : optimizer->param_groups()) group.options().set_lr(group.options().get_lr() * 0.5);
      }
    }
    run.step(step);
    expect_bits_equal(run.fused_params.all(), run.eager_params.all());
  }
}

// The saved state is LibTorch's: a run saved by one optimizer resumes in the other to the same bits.
TEST(FusedAdamW, SavedStateResumesInLibTorchAdamWAndBack) {
  torch::manual_seed(4);
  SideBySide run;
  for (int step = 0; step < 2; ++step) run.step(step);
  torch::serialize::OutputArchive fused_saved, eager_saved;
  run.fused.save(fused_saved);
  run.eager.save(eager_saved);
  std::ostringstream fused_bytes, eager_bytes;
  fused_saved.save_to(fused_bytes);
  eager_saved.save_to(eager_bytes);

  // Swap: the eager optimizer resumes the fused run's state and the other way round.
  const Groups resumed_by_eager = run.fused_params.clone(), resumed_by_fused = run.eager_params.clone();
  torch::optim::AdamW eager_resume(resumed_by_eager.param_groups());
  FusedAdamW fused_resume(resumed_by_fused.param_groups());
  torch::serialize::InputArchive fused_in, eager_in;
  std::istringstream fused_stream(fused_bytes.str()), eager_stream(eager_bytes.str());
  fused_in.load_from(fused_stream);
  eager_in.load_from(eager_stream);
  eager_resume.load(fused_in);
  fused_resume.load(eager_in);
  for (int step = 2; step < 4; ++step) {
    set_gradients(resumed_by_eager.all(), resumed_by_fused.all(), step);
    eager_resume.step();
    fused_resume.step();
    expect_bits_equal(resumed_by_eager.all(), resumed_by_fused.all());
  }
}

// The update writes through raw pointers, so it must bump the versions the in-place ops would: the
// adapters' cached bf16 casts (FactorCast) are renewed only when a factor's version changes.
TEST(FusedAdamW, BumpsVersionsSoCachedCastsAreRenewed) {
  at::Tensor factor = at::randn({16, 32}).set_requires_grad(true);
  FusedAdamW optimizer(std::vector<at::Tensor>{factor}, torch::optim::AdamWOptions(1e-2));
  FactorCast cast;
  const at::Tensor before = cast.get(factor, at::kBFloat16).clone();
  const auto version = factor._version();
  factor.mutable_grad() = at::ones_like(factor);
  optimizer.step();
  EXPECT_GT(factor._version(), version);
  const at::Tensor after = cast.get(factor, at::kBFloat16);
  EXPECT_FALSE(at::equal(before, after));
  EXPECT_TRUE(at::equal(after, factor.detach().to(at::kBFloat16)));
}

// What it does not fuse (amsgrad, non-contiguous parameters) is LibTorch's step, bit for bit.
TEST(FusedAdamW, AmsgradAndStridedParametersTakeLibTorchsStep) {
  torch::manual_seed(5);
  SideBySide run(/*amsgrad=*/true);
  for (int step = 0; step < 3; ++step) {
    run.step(step);
    expect_bits_equal(run.fused_params.all(), run.eager_params.all());
  }
  at::Tensor strided_fused = at::randn({32, 16}).t().detach().set_requires_grad(true);
  at::Tensor strided_eager = strided_fused.detach().clone().set_requires_grad(true);  // the same strides
  ASSERT_FALSE(strided_fused.is_contiguous());
  FusedAdamW fused_strided(std::vector<at::Tensor>{strided_fused});
  torch::optim::AdamW eager_strided(std::vector<at::Tensor>{strided_eager});
  for (int step = 0; step < 2; ++step) {
    const at::Tensor g = at::randn({16, 32});
    strided_fused.mutable_grad() = g.clone();
    strided_eager.mutable_grad() = g.clone();
    fused_strided.step();
    eager_strided.step();
  }
  EXPECT_TRUE(at::equal(strided_fused, strided_eager));
}

}  // namespace
}  // namespace remora
