// SwiGLU's gating: the fused bf16 pass against the fp64 formula, the other dtypes against eager, bit for bit.
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
Gradients run(F f, const at::Tensor& gate_value, const at::Tensor& up_value, const at::Tensor& upstream,
              bool gate_trains, bool up_trains) {
  at::Tensor gate = gate_value.clone().requires_grad_(gate_trains);
  at::Tensor up = up_value.clone().requires_grad_(up_trains);
  at::Tensor out = f(gate, up);
  out.backward(upstream);
  return {out.detach(), gate.grad(), up.grad()};
}

const auto eager = [](const at::Tensor& g, const at::Tensor& u) { return at::silu(g) * u; };

void expect_same(const at::Tensor& a, const at::Tensor& b) {
  ASSERT_EQ(a.defined(), b.defined());
  if (a.defined()) EXPECT_TRUE(at::equal(a, b));
}

void expect_same(const Gradients& a, const Gradients& b) {
  expect_same(a.out, b.out);
  expect_same(a.gate, b.gate);
  expect_same(a.up, b.up);
}

// bf16 bit patterns as integers in the order of the values they stand for: neighbours differ by 1.
at::Tensor ordered_bits(const at::Tensor& bf16) {
  const at::Tensor bits = bf16.contiguous().view(at::kShort).to(at::kInt);
  return at::where(bits < 0, -(bits & 0x7FFF), bits);
}

// How many of `mine` differ from `reference` (both bf16), and whether each is within one bf16 step.
std::pair<int64_t, bool> compare_bf16(const at::Tensor& mine, const at::Tensor& reference) {
  const at::Tensor steps = (ordered_bits(mine) - ordered_bits(reference)).abs();
  return {(steps > 0).sum().item<int64_t>(), (steps <= 1).all().item<bool>()};
}

TEST(Swiglu, Float32RunsTheEagerOpsBitForBit) {
  at::manual_seed(5);
  const at::Tensor gate = at::randn({37, 53}) * 3, up = at::randn({37, 53}), upstream = at::randn({37, 53});
  for (auto [gate_trains, up_trains] : {std::pair{true, true}, {true, false}, {false, true}}) {
    SCOPED_TRACE(std::string(gate_trains ? " gate" : "") + (up_trains ? " up" : ""));
    expect_same(run(swiglu, gate, up, upstream, gate_trains, up_trains),
                run(eager, gate, up, upstream, gate_trains, up_trains));
  }
}

// Every finite bf16 value as a gate. The reference rounds the fp64 formula to bf16 wherever the
// eager ops round (silu's output, d out · up, each result); the fused pass computes in fp32 between
// those points, so it may land one bf16 step off where the fp32 value sits on a rounding boundary.
TEST(Swiglu, Bfloat16FusedPassRoundsWhereTheEagerOpsRound) {
  at::Tensor every = at::arange(0, 1 << 16, at::kInt).to(at::kShort).view(at::kBFloat16);
  const at::Tensor gate = every.masked_select(at::isfinite(every)).contiguous();
  at::manual_seed(7);
  const at::Tensor up = at::randn({gate.numel()}).to(at::kBFloat16);
  const at::Tensor upstream = at::randn({gate.numel()}).to(at::kBFloat16);
  const Gradients mine = run(swiglu, gate, up, upstream, true, true);

  const auto round = [](const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); };
  const at::Tensor g = gate.to(at::kDouble), u = up.to(at::kDouble), d = upstream.to(at::kDouble);
  // e^-g within fp32's range, as the eager ops compute it: past ~88.7 it is inf, and silu -0.
  const at::Tensor e = at::exp(-g).to(at::kFloat).to(at::kDouble);
  const at::Tensor sigmoid = 1 / (1 + e);
  const at::Tensor silu = round(g / (1 + e));
  const at::Tensor out = (silu * u).to(at::kBFloat16);
  const at::Tensor d_up = (d * silu).to(at::kBFloat16);
  const at::Tensor d_gate = (round(d * u) * sigmoid * (1 + g * (1 - sigmoid))).to(at::kBFloat16);

  const int64_t allowed = gate.numel() / 1000;  // measured: 16-17 of 65280
  for (const auto& [name, a, b] : {std::tuple{"out", mine.out, out}, {"d gate", mine.gate, d_gate},
                                   {"d up", mine.up, d_up}}) {
    SCOPED_TRACE(name);
    const auto [differ, within_one_step] = compare_bf16(a, b);
    EXPECT_LE(differ, allowed);
    EXPECT_TRUE(within_one_step);
  }
}

TEST(Swiglu, Bfloat16GradientsOnlyForTheInputsThatTrain) {
  at::manual_seed(3);
  const at::Tensor gate = at::randn({6, 40}).to(at::kBFloat16), up = at::randn({6, 40}).to(at::kBFloat16);
  const at::Tensor upstream = at::randn({6, 40}).to(at::kBFloat16);
  const Gradients both = run(swiglu, gate, up, upstream, true, true);
  const Gradients gate_only = run(swiglu, gate, up, upstream, true, false);
  const Gradients up_only = run(swiglu, gate, up, upstream, false, true);
  EXPECT_FALSE(gate_only.up.defined());
  EXPECT_FALSE(up_only.gate.defined());
  expect_same(gate_only.gate, both.gate);
  expect_same(up_only.up, both.up);
}

// A view that is not contiguous cannot take the fused pass: it gets the eager ops themselves.
TEST(Swiglu, NonContiguousBfloat16RunsTheEagerOpsBitForBit) {
  at::manual_seed(9);
  const at::Tensor gate = (at::randn({53, 37}) * 3).to(at::kBFloat16).t(), up = at::randn({37, 53}).to(at::kBFloat16);
  const at::Tensor upstream = at::randn({37, 53}).to(at::kBFloat16);
  expect_same(run(swiglu, gate, up, upstream, true, true), run(eager, gate, up, upstream, true, true));
}

TEST(Swiglu, WithoutGradientsItIsTheSameForward) {
  at::manual_seed(4);
  for (at::ScalarType dtype : {at::kBFloat16, at::kFloat}) {
    const at::Tensor gate = at::randn({4, 3000}).to(dtype), up = at::randn({4, 3000}).to(dtype);
    const at::Tensor trained = swiglu(gate.clone().requires_grad_(true), up).detach();
    at::NoGradGuard no_grad;
    const at::Tensor out = swiglu(gate, up);
    EXPECT_FALSE(out.requires_grad());
    EXPECT_TRUE(at::equal(out, trained));
  }
}

}  // namespace
}  // namespace remora
