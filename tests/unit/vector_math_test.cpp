// The kernels' scalar math against the standard library: bf16 rounding and the vectorisable exp.
#include <gtest/gtest.h>
#include <c10/util/BFloat16.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/vector_math.h"

namespace remora {
namespace {

float float_of(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// Every 4099th fp32 bit pattern, both signs: normals, subnormals, zeros, infinities and NaNs.
template <typename Check>
void for_sampled_floats(Check check) {
  for (uint64_t bits = 0; bits <= 0xFFFFFFFFull; bits += 4099) check(float_of(static_cast<uint32_t>(bits)));
  for (uint32_t bits : {0x00000000u, 0x80000000u, 0x7F800000u, 0xFF800000u, 0x7FC00000u, 0x00000001u, 0x7F7FFFFFu}) {
    check(float_of(bits));
  }
}

TEST(VectorMath, Bfloat16RoundingIsC10s) {
  int64_t checked = 0;
  for_sampled_floats([&](float value) {
    const uint16_t expected = c10::BFloat16(value).x;
    ASSERT_EQ(float_to_bf16(value), expected) << value;
    if (!std::isnan(value)) {
      ASSERT_EQ(bf16_to_float(expected), static_cast<float>(c10::BFloat16(value))) << value;
    }
    checked++;
  });
  EXPECT_GT(checked, 1000000);
}

// Within 2 units in the last place of the exactly rounded value wherever e^x is a normal float;
// inf past the top of the range, within one subnormal step below its bottom, NaN for NaN.
TEST(VectorMath, ExpIsWithinTwoUlpOverTheWholeRange) {
  double worst_ulps = 0;
  for_sampled_floats([&](float x) {
    const float mine = vector_exp(x);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(mine));
      return;
    }
    const double exact = std::exp(static_cast<double>(x));
    if (exact > std::numeric_limits<float>::max()) {
      ASSERT_EQ(mine, std::numeric_limits<float>::infinity()) << x;
    } else if (exact < std::numeric_limits<float>::min()) {
      ASSERT_LE(std::abs(mine - exact), std::numeric_limits<float>::denorm_min()) << x;
    } else {
      const float rounded = static_cast<float>(exact);
      const double ulp = std::nextafter(rounded, std::numeric_limits<float>::infinity()) - rounded;
      const double ulps = std::abs(mine - exact) / ulp;
      ASSERT_LE(ulps, 2.0) << x;
      worst_ulps = std::max(worst_ulps, ulps);
    }
  });
  EXPECT_GT(worst_ulps, 0.0);  // the sweep did reach the normal range
}

TEST(VectorMath, LaneSumsAddEveryLane) {
  float lanes[kLanes];
  for (int64_t lane = 0; lane < kLanes; ++lane) lanes[lane] = static_cast<float>(lane + 1);
  EXPECT_EQ(sum_lanes(lanes), kLanes * (kLanes + 1) / 2.0f);
}

// Every length from 0 to 3 kLanes + 5 (the vector body and the tail), the maximum at every position,
// with NaNs among the values (passed over) and rows of -inf.
TEST(VectorMath, MaxOfFindsTheLargestValueAnywhere) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(max_of(nullptr, 0), -inf);
  for (int64_t count = 1; count <= 3 * kLanes + 5; ++count) {
    std::vector<float> values(count);
    for (int64_t at = 0; at < count; ++at) {
      for (int64_t i = 0; i < count; ++i) values[i] = -static_cast<float>((i * 7) % 11) - 1.0f;
      values[at] = 0.5f;
      if (count > 1) values[(at + 1) % count] = nan;
      ASSERT_EQ(max_of(values.data(), count), 0.5f) << count << " " << at;
    }
    std::fill(values.begin(), values.end(), -inf);
    EXPECT_EQ(max_of(values.data(), count), -inf);
  }
}

}  // namespace
}  // namespace remora
