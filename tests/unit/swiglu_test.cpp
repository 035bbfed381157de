// SwiGLU's gating with a recomputing backward against the eager form through autograd, bit for bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "model/swiglu.h"

namespace remora {
namespace {

struct Gradients {
  at::Tensor out, gate, up;
};

// out = f(gate, up), then backward with a fixed upstream gradient; an input that does not train gets none.
template <typename F>
Gradients run(F f, at::ScalarType dtype, bool gate_trains, bool up_trains) {
  at::manual_seed(5);
  at::Tensor gate = (at::randn({37, 53}) * 3).to(dtype).requires_grad_(gate_trains);
  at::Tensor up = at::randn({37, 53}).to(dtype).requires_grad_(up_trains);
  at::Tensor upstream = at::randn({37, 53}).to(dtype);
  at::Tensor out = f(gate, up);
  out.backward(upstream);
  return {out.detach(), gate.grad(), up.grad()};
}

void expect_same(const at::Tensor& a, const at::Tensor& b) {
  ASSERT_EQ(a.defined(), b.defined());
  if (a.defined()) EXPECT_TRUE(at::equal(a, b));
}

TEST(Swiglu, ForwardAndGradientsHaveTheEagerFormsBits) {
  const auto eager = [](const at::Tensor& g, const at::Tensor& u) { return at::silu(g) * u; };
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    for (auto [gate_trains, up_trains] : {std::pair{true, true}, {true, false}, {false, true}}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + (gate_trains ? " gate" : "") + (up_trains ? " up" : ""));
      const Gradients expected = run(eager, dtype, gate_trains, up_trains);
      const Gradients fused = run(swiglu, dtype, gate_trains, up_trains);
      expect_same(fused.out, expected.out);
      expect_same(fused.gate, expected.gate);
      expect_same(fused.up, expected.up);
    }
  }
}

TEST(Swiglu, WithoutGradientsItIsTheEagerProduct) {
  at::NoGradGuard no_grad;
  const at::Tensor gate = at::randn({4, 8}, at::kBFloat16), up = at::randn({4, 8}, at::kBFloat16);
  const at::Tensor out = swiglu(gate, up);
  EXPECT_FALSE(out.requires_grad());
  EXPECT_TRUE(at::equal(out, at::silu(gate) * up));
}

}  // namespace
}  // namespace remora
