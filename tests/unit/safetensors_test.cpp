// Tests safetensors reading/writing (round trip, validation of malformed files, copy_into), sharded
// checkpoint resolution (CheckpointTensors) and write_file_atomically's failure behaviour.
#include "io/safetensors.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/file_util.h"
#include "io/checkpoint.h"

namespace remora {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// ---------------------------------------------------------------------------------------------
// Helpers

// A fresh directory under ::testing::TempDir() for each test, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "remora_safetensors_XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << "mkdtemp failed for " << pattern;
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  std::string dir_;
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The 8-byte little-endian header length that starts every safetensors file.
std::string u64_le(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

// A safetensors file built by hand, independently of write_safetensors: length, header text, data.
std::string raw_file(const std::string& header, const std::string& data) {
  return u64_le(header.size()) + header + data;
}

// The message of the remora::Error that `action` throws; records a failure if it throws nothing
// or something else.
std::string error_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected remora::Error, got another exception: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected remora::Error, nothing was thrown";
  return {};
}

std::string open_error(const std::string& path) {
  return error_message([&] { SafetensorsFile file(path); });
}

// Bitwise equality: same dtype, same shape, same bytes (NaN payloads and -0.0 included).
void expect_same_bits(const at::Tensor& actual, const at::Tensor& expected, const std::string& name) {
  SCOPED_TRACE("tensor " + name);
  ASSERT_EQ(actual.scalar_type(), expected.scalar_type());
  ASSERT_EQ(actual.sizes(), expected.sizes());
  const at::Tensor a = actual.contiguous();
  const at::Tensor e = expected.contiguous();
  const size_t bytes = e.numel() * e.element_size();
  ASSERT_EQ(a.numel() * a.element_size(), bytes);
  if (bytes > 0) {
    EXPECT_EQ(std::memcmp(a.data_ptr(), e.data_ptr(), bytes), 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Round trip

class SafetensorsRoundTrip : public TempDirTest {};

TEST_F(SafetensorsRoundTrip, EveryDtypeIsBitExact) {
  at::manual_seed(1234);
  at::Tensor f32 = at::randn({3, 5});
  f32[0][0] = std::numeric_limits<float>::infinity();
  f32[0][1] = -0.0f;
  f32[0][2] = std::numeric_limits<float>::quiet_NaN();
  f32[0][3] = std::numeric_limits<float>::denorm_min();
  const std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f32", f32},
      {"bf16", at::randn({4, 3}).to(at::kBFloat16)},
      {"f16", at::randn({2, 7}).to(at::kHalf)},
      {"i64", at::tensor({std::numeric_limits<int64_t>::min(), int64_t{-1}, int64_t{0},
                          std::numeric_limits<int64_t>::max()})},
      {"i32", at::arange(-6, 6, at::kInt).reshape({3, 4})},
      {"u8", at::arange(0, 256, at::kInt).to(at::kByte)},
      {"bool", at::rand({9}) > 0.5},
      {"scalar", at::scalar_tensor(3.25, at::kFloat)},
      {"empty", at::empty({2, 0, 3}, at::kBFloat16)},
      {"transposed", at::randn({4, 6}).t()},  // not contiguous: the writer must lay it out
  };
  const std::string file_path = path("model.safetensors");
  write_safetensors(file_path, tensors);

  SafetensorsFile file(file_path);
  ASSERT_EQ(file.entries().size(), tensors.size());
  for (const auto& [name, expected] : tensors) {
    const SafetensorsEntry* entry = file.find(name);
    ASSERT_NE(entry, nullptr) << name;
    EXPECT_EQ(entry->dtype, expected.scalar_type()) << name;
    EXPECT_EQ(entry->dtype_name, safetensors_dtype_name(expected.scalar_type())) << name;
    EXPECT_EQ(entry->shape, expected.sizes().vec()) << name;
    expect_same_bits(file.load(name), expected, name);
  }
  EXPECT_EQ(file.find("scalar")->shape, std::vector<int64_t>{});  // 0-dim: shape []
  EXPECT_EQ(file.load("scalar").dim(), 0);
  EXPECT_EQ(file.find("absent"), nullptr);
}

TEST_F(SafetensorsRoundTrip, DtypeNamesAreTheSpecNames) {
  EXPECT_EQ(safetensors_dtype_name(at::kFloat), "F32");
  EXPECT_EQ(safetensors_dtype_name(at::kBFloat16), "BF16");
  EXPECT_EQ(safetensors_dtype_name(at::kHalf), "F16");
  EXPECT_EQ(safetensors_dtype_name(at::kLong), "I64");
  EXPECT_EQ(safetensors_dtype_name(at::kInt), "I32");
  EXPECT_EQ(safetensors_dtype_name(at::kByte), "U8");
  EXPECT_EQ(safetensors_dtype_name(at::kBool), "BOOL");
  EXPECT_THAT(error_message([] { safetensors_dtype_name(at::kComplexFloat); }),
              HasSubstr("cannot be written"));
}

TEST_F(SafetensorsRoundTrip, HeaderIsPaddedWithSpacesAndCarriesFormatPt) {
  const std::string file_path = path("model.safetensors");
  write_safetensors(file_path, {{"a", at::ones({3}, at::kByte)}}, {{"note", "hello"}});

  const std::string bytes = read_bytes(file_path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(header_bytes % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + header_bytes + 3);
  const std::string header = bytes.substr(8, header_bytes);
  const size_t json_end = header.find_last_of('}');
  ASSERT_NE(json_end, std::string::npos);
  EXPECT_EQ(header.substr(json_end + 1), std::string(header.size() - json_end - 1, ' '));

  const auto json = nlohmann::json::parse(header);
  EXPECT_EQ(json.at("__metadata__").at("format"), "pt");
  EXPECT_EQ(json.at("__metadata__").at("note"), "hello");

  SafetensorsFile file(file_path);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("note"), "hello");
}

TEST_F(SafetensorsRoundTrip, WriterRejectsDuplicateAndReservedNames) {
  const std::string file_path = path("model.safetensors");
  EXPECT_THAT(error_message([&] {
                write_safetensors(file_path, {{"a", at::ones({1})}, {"a", at::ones({1})}});
              }),
              AllOf(HasSubstr(file_path), HasSubstr("'a'")));
  EXPECT_THAT(error_message([&] { write_safetensors(file_path, {{"__metadata__", at::ones({1})}}); }),
              HasSubstr("'__metadata__'"));
  EXPECT_FALSE(fs::exists(file_path));
}

// The reader must not rely on the writer's padding: an F32 tensor after an unpadded header sits at a
// misaligned address and must still read correctly.
TEST_F(SafetensorsRoundTrip, ReadsHandBuiltFileWithUnpaddedHeader) {
  const float values[3] = {1.5f, -2.0f, 1e-3f};
  std::string data(reinterpret_cast<const char*>(values), sizeof(values));
  std::string header = R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})";
  if (header.size() % 4 == 0) header += " ";  // ensure the data is not 4-byte aligned
  const std::string file_path = path("unpadded.safetensors");
  write_bytes(file_path, raw_file(header, data));

  SafetensorsFile file(file_path);
  EXPECT_TRUE(file.metadata().empty());
  EXPECT_TRUE(at::equal(file.load("x"), at::tensor({1.5f, -2.0f, 1e-3f})));
}

// ---------------------------------------------------------------------------------------------
// Malformed files: each is rejected with an Error naming the file (and the tensor, if any).

class SafetensorsMalformed : public TempDirTest {
 protected:
  // Writes `bytes` to bad.safetensors and returns the message of the Error opening it throws,
  // having checked that the message names the file.
  std::string reject(const std::string& bytes) {
    const std::string file_path = path("bad.safetensors");
    write_bytes(file_path, bytes);
    const std::string message = open_error(file_path);
    EXPECT_THAT(message, HasSubstr(file_path));
    return message;
  }
  // One tensor "w" with the given JSON fields and `data` as the data section.
  std::string reject_entry(const std::string& fields, const std::string& data) {
    return reject(raw_file(R"({"w":{)" + fields + "}}", data));
  }
};

TEST_F(SafetensorsMalformed, FileShorterThanEightBytes) {
  EXPECT_THAT(reject(std::string(5, '\0')), HasSubstr("shorter than the 8-byte"));
  EXPECT_THAT(reject(""), HasSubstr("0 bytes"));
}

TEST_F(SafetensorsMalformed, HeaderLengthPastEndOfFile) {
  EXPECT_THAT(reject(u64_le(100) + "{}"), HasSubstr("runs past the end"));
  EXPECT_THAT(reject(u64_le(3) + "{}"), HasSubstr("runs past the end"));  // off by one
}

TEST_F(SafetensorsMalformed, HeaderLengthOverTheCap) {
  EXPECT_THAT(reject(u64_le(kMaxSafetensorsHeaderBytes + 1) + "{}"),
              AllOf(HasSubstr("exceeds"), HasSubstr("100000000")));
  EXPECT_THAT(reject(u64_le(std::numeric_limits<uint64_t>::max()) + "{}"), HasSubstr("exceeds"));
  // Exactly at the cap is allowed by the cap check; this file is just too short for it.
  EXPECT_THAT(reject(u64_le(kMaxSafetensorsHeaderBytes) + "{}"),
              AllOf(HasSubstr("runs past the end"), Not(HasSubstr("exceeds"))));
}

TEST_F(SafetensorsMalformed, HeaderNotJson) {
  EXPECT_THAT(reject(raw_file(R"({"w": )", "")), HasSubstr("not valid JSON"));
  EXPECT_THAT(reject(raw_file("", "")), HasSubstr("not valid JSON"));
}

TEST_F(SafetensorsMalformed, HeaderNotAnObject) {
  EXPECT_THAT(reject(raw_file("[1, 2]", "")), HasSubstr("not a JSON object"));
  EXPECT_THAT(reject(raw_file(R"("text")", "")), HasSubstr("not a JSON object"));
}

TEST_F(SafetensorsMalformed, MetadataValueNotAString) {
  EXPECT_THAT(reject(raw_file(R"({"__metadata__":{"format":1}})", "")),
              AllOf(HasSubstr("__metadata__"), HasSubstr("'format'")));
  EXPECT_THAT(reject(raw_file(R"({"__metadata__":["pt"]})", "")), HasSubstr("__metadata__"));
}

TEST_F(SafetensorsMalformed, EntryNotAnObject) {
  EXPECT_THAT(reject(raw_file(R"({"w":[0,4]})", "abcd")), HasSubstr("tensor 'w'"));
}

TEST_F(SafetensorsMalformed, UnknownDtype) {
  EXPECT_THAT(reject_entry(R"("dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("'F8_E4M3'")));
  EXPECT_THAT(reject_entry(R"("dtype":"Q4","shape":[4],"data_offsets":[0,4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("'Q4'")));
  EXPECT_THAT(reject_entry(R"("shape":[4],"data_offsets":[0,4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("dtype")));
}

TEST_F(SafetensorsMalformed, BadShapeEntry) {
  EXPECT_THAT(reject_entry(R"("dtype":"U8","shape":[-4],"data_offsets":[0,4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("shape")));
  EXPECT_THAT(reject_entry(R"("dtype":"U8","shape":[2.0,2],"data_offsets":[0,4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("shape")));
  EXPECT_THAT(reject_entry(R"("dtype":"U8","shape":["4"],"data_offsets":[0,4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("shape")));
  EXPECT_THAT(reject_entry(R"("dtype":"U8","shape":4,"data_offsets":[0,4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("shape")));
}

// A dimension above INT64_MAX cannot be represented in SafetensorsEntry::shape (int64). With a zero
// dimension beside it the byte span is 0, so only the shape check itself can catch it.
TEST_F(SafetensorsMalformed, ShapeEntryBeyondInt64) {
  EXPECT_THAT(
      reject_entry(R"("dtype":"U8","shape":[0,9223372036854775808],"data_offsets":[0,0])", ""),
      AllOf(HasSubstr("tensor 'w'"), HasSubstr("shape")));
}

TEST_F(SafetensorsMalformed, DataOffsetsNotTwoIntegers) {
  for (const char* offsets : {"[4]", "[0,4,8]", R"([0,"4"])", "[0.0,4]", "[-4,0]", "4", "null"}) {
    SCOPED_TRACE(offsets);
    EXPECT_THAT(
        reject_entry(std::string(R"("dtype":"U8","shape":[4],"data_offsets":)") + offsets, "abcd"),
        AllOf(HasSubstr("tensor 'w'"), HasSubstr("data_offsets")));
  }
  EXPECT_THAT(reject_entry(R"("dtype":"U8","shape":[4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("data_offsets")));
}

TEST_F(SafetensorsMalformed, EndBeforeBegin) {
  EXPECT_THAT(reject_entry(R"("dtype":"U8","shape":[4],"data_offsets":[8,4])", "abcdefgh"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("end 4 < begin 8")));
}

TEST_F(SafetensorsMalformed, EndPastDataSection) {
  EXPECT_THAT(reject_entry(R"("dtype":"U8","shape":[16],"data_offsets":[0,16])", "abcdefgh"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("past the data section")));
  EXPECT_THAT(reject_entry(R"("dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615])",
                           "abcdefgh"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("past the data section")));
}

TEST_F(SafetensorsMalformed, ShapeTimesDtypeSizeNotTheSpan) {
  EXPECT_THAT(reject_entry(R"("dtype":"F32","shape":[3],"data_offsets":[0,8])", "abcdefgh"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("F32"), HasSubstr("span 8 bytes")));
  EXPECT_THAT(reject_entry(R"("dtype":"BF16","shape":[],"data_offsets":[0,4])", "abcd"),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("span 4 bytes")));
  EXPECT_THAT(
      reject_entry(R"("dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8])", "abcdefgh"),
      HasSubstr("tensor 'w'"));  // element count overflows uint64
}

TEST_F(SafetensorsMalformed, OverlappingTensors) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_THAT(reject(raw_file(header, std::string(12, 'x'))),
              AllOf(HasSubstr("tensor 'b'"), HasSubstr("overlaps")));
}

TEST_F(SafetensorsMalformed, HoleBetweenTensors) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  EXPECT_THAT(reject(raw_file(header, std::string(12, 'x'))),
              AllOf(HasSubstr("tensor 'b'"), HasSubstr("hole")));
  // A hole before the first tensor.
  EXPECT_THAT(reject_entry(R"("dtype":"F32","shape":[1],"data_offsets":[4,8])", std::string(8, 'x')),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("hole")));
}

TEST_F(SafetensorsMalformed, DataSectionLongerThanTensors) {
  EXPECT_THAT(reject_entry(R"("dtype":"F32","shape":[1],"data_offsets":[0,4])", std::string(8, 'x')),
              AllOf(HasSubstr("cover 4 bytes"), HasSubstr("has 8")));
  EXPECT_THAT(reject(raw_file("{}", "x")), HasSubstr("cover 0 bytes"));
}

// ---------------------------------------------------------------------------------------------
// copy_into

class SafetensorsCopyInto : public TempDirTest {};

TEST_F(SafetensorsCopyInto, ConvertsBf16FileToFloat32Destination) {
  const at::Tensor values = at::tensor({0.5f, -1.25f, 3.0f, 1024.0f, -0.0078125f, 96.0f}).reshape({2, 3});
  const std::string file_path = path("bf16.safetensors");
  write_safetensors(file_path, {{"layer.weight", values.to(at::kBFloat16)}});

  SafetensorsFile file(file_path);
  const SafetensorsEntry* entry = file.find("layer.weight");
  ASSERT_NE(entry, nullptr);
  EXPECT_EQ(entry->dtype, at::kBFloat16);
  at::Tensor destination = at::zeros({2, 3}, at::kFloat);
  file.copy_into(*entry, destination);
  EXPECT_EQ(destination.scalar_type(), at::kFloat);
  EXPECT_TRUE(at::equal(destination, values));
}

// copy_into copies in slices of 8 MiB of file data; these tensors need two slices, the second partial.
TEST_F(SafetensorsCopyInto, LargeTensorsCopyAcrossSlices) {
  const at::Tensor f32 = at::arange(1536 * 2048, at::kFloat).reshape({1536, 2048});  // 12 MiB
  const at::Tensor bf16 = at::arange(2560 * 2048, at::kInt).remainder(256).to(at::kBFloat16)
                              .reshape({2560, 2048});  // 10 MiB, values exact in bfloat16
  const std::string file_path = path("large.safetensors");
  write_safetensors(file_path, {{"f32", f32}, {"bf16", bf16}});

  SafetensorsFile file(file_path);
  expect_same_bits(file.load("f32"), f32, "f32");
  at::Tensor widened = at::zeros({2560, 2048}, at::kFloat);
  file.copy_into(*file.find("bf16"), widened);
  EXPECT_TRUE(at::equal(widened, bf16.to(at::kFloat)));
}

TEST_F(SafetensorsCopyInto, UnalignedLargeTensorAcrossSlices) {
  const at::Tensor values = at::arange(2'500'000, at::kFloat);  // 10 MB: two slices
  std::string header = R"({"x":{"dtype":"F32","shape":[2500000],"data_offsets":[0,10000000]}})";
  if (header.size() % 4 == 0) header += " ";  // data section not 4-byte aligned
  const std::string data(static_cast<const char*>(values.data_ptr()), 10'000'000);
  const std::string file_path = path("unaligned.safetensors");
  write_bytes(file_path, raw_file(header, data));

  SafetensorsFile file(file_path);
  expect_same_bits(file.load("x"), values, "x");
}

TEST_F(SafetensorsCopyInto, NonContiguousDestination) {
  const at::Tensor values = at::arange(6, at::kFloat).reshape({2, 3});
  const std::string file_path = path("m.safetensors");
  write_safetensors(file_path, {{"w", values}, {"scalar", at::scalar_tensor(7.0)}});
  SafetensorsFile file(file_path);

  at::Tensor storage = at::zeros({3, 2}, at::kDouble);
  at::Tensor destination = storage.t();  // shape {2, 3}, not contiguous
  ASSERT_FALSE(destination.is_contiguous());
  file.copy_into(*file.find("w"), destination);
  EXPECT_TRUE(at::equal(storage, values.t().to(at::kDouble)));

  at::Tensor scalar = at::zeros({}, at::kFloat);
  file.copy_into(*file.find("scalar"), scalar);
  EXPECT_EQ(scalar.item<float>(), 7.0f);
}

TEST_F(SafetensorsCopyInto, RejectsWrongDestinationShape) {
  const std::string file_path = path("m.safetensors");
  write_safetensors(file_path, {{"layer.weight", at::ones({2, 3})}});
  SafetensorsFile file(file_path);
  const SafetensorsEntry* entry = file.find("layer.weight");
  ASSERT_NE(entry, nullptr);
  at::Tensor transposed = at::zeros({3, 2});
  EXPECT_THAT(error_message([&] { file.copy_into(*entry, transposed); }),
              AllOf(HasSubstr(file_path), HasSubstr("'layer.weight'"), HasSubstr("shape")));
  at::Tensor flat = at::zeros({6});
  EXPECT_THAT(error_message([&] { file.copy_into(*entry, flat); }), HasSubstr("'layer.weight'"));
  EXPECT_TRUE(at::equal(transposed, at::zeros({3, 2})));  // untouched
  EXPECT_THAT(error_message([&] { file.load("missing"); }), HasSubstr("'missing'"));
}

// ---------------------------------------------------------------------------------------------
// CheckpointTensors

class CheckpointTensorsTest : public TempDirTest {
 protected:
  static constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kShard2 = "model-00002-of-00002.safetensors";

  // Two shards: {embed, layer.0} in shard 1, {layer.1} in shard 2.
  void write_shards() {
    write_safetensors(path(kShard1), {{"embed", at::full({4, 2}, 1.0)}, {"layer.0", at::full({2}, 2.0)}});
    write_safetensors(path(kShard2), {{"layer.1", at::full({3}, 3.0)}});
  }
  void write_index(const nlohmann::json& weight_map) {
    const nlohmann::json index = {{"metadata", {{"total_size", 52}}}, {"weight_map", weight_map}};
    write_bytes(path("model.safetensors.index.json"), index.dump(2));
  }
  std::string index_path() const { return path("model.safetensors.index.json"); }
  std::string checkpoint_error() {
    return error_message([&] { CheckpointTensors checkpoint(dir_); });
  }
};

TEST_F(CheckpointTensorsTest, ShardedFolderResolvesEveryTensor) {
  write_shards();
  write_index({{"embed", kShard1}, {"layer.0", kShard1}, {"layer.1", kShard2}});

  CheckpointTensors checkpoint(dir_);
  EXPECT_EQ(checkpoint.files().size(), 2u);
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"embed", "layer.0", "layer.1"}));
  const std::vector<std::tuple<std::string, std::string, double>> expected = {
      {"embed", kShard1, 1.0}, {"layer.0", kShard1, 2.0}, {"layer.1", kShard2, 3.0}};
  for (const auto& [name, shard, value] : expected) {
    SCOPED_TRACE(name);
    const auto located = checkpoint.find(name);
    ASSERT_NE(located.file, nullptr);
    ASSERT_NE(located.entry, nullptr);
    EXPECT_EQ(located.entry->name, name);
    EXPECT_EQ(fs::path(located.file->path()).filename(), shard);
    const at::Tensor loaded = located.file->load(name);
    EXPECT_TRUE(at::equal(loaded, at::full(loaded.sizes(), value)));
  }
  const auto absent = checkpoint.find("lm_head");
  EXPECT_EQ(absent.file, nullptr);
  EXPECT_EQ(absent.entry, nullptr);
}

TEST_F(CheckpointTensorsTest, SingleFileFolder) {
  write_safetensors(path("model.safetensors"), {{"w", at::ones({2})}});
  CheckpointTensors checkpoint(dir_);
  EXPECT_EQ(checkpoint.names(), std::vector<std::string>{"w"});
  ASSERT_NE(checkpoint.find("w").entry, nullptr);
}

TEST_F(CheckpointTensorsTest, IndexNamingMissingShardIsAnError) {
  write_shards();
  write_index({{"embed", kShard1}, {"layer.0", kShard1}, {"layer.1", "model-00003-of-00003.safetensors"}});
  EXPECT_THAT(checkpoint_error(),
              AllOf(HasSubstr(index_path()), HasSubstr("model-00003-of-00003.safetensors")));
}

TEST_F(CheckpointTensorsTest, IndexClaimingTensorTheShardLacksIsAnError) {
  write_shards();
  write_index({{"embed", kShard1}, {"layer.0", kShard1}, {"layer.1", kShard2}, {"layer.2", kShard2}});
  EXPECT_THAT(checkpoint_error(),
              AllOf(HasSubstr(index_path()), HasSubstr("'layer.2'"), HasSubstr(kShard2)));
}

TEST_F(CheckpointTensorsTest, IndexPlacingTensorInWrongShardIsAnError) {
  write_shards();
  write_index({{"embed", kShard1}, {"layer.0", kShard1}, {"layer.1", kShard1}, {"x", kShard2}});
  EXPECT_THAT(checkpoint_error(), AllOf(HasSubstr(index_path()), HasSubstr("'layer.1'")));
}

TEST_F(CheckpointTensorsTest, TensorInTwoShardsIsAnError) {
  write_safetensors(path(kShard1), {{"w", at::ones({1})}});
  write_safetensors(path(kShard2), {{"w", at::ones({1})}});
  write_index({{"w", kShard1}, {"other", kShard2}});
  EXPECT_THAT(checkpoint_error(), HasSubstr("'w'"));
}

TEST_F(CheckpointTensorsTest, EmptyFolderIsAnErrorNamingTheFolder) {
  EXPECT_THAT(checkpoint_error(), AllOf(HasSubstr(dir_), HasSubstr("model.safetensors")));
}

// ---------------------------------------------------------------------------------------------
// write_file_atomically

class WriteFileAtomically : public TempDirTest {
 protected:
  std::vector<std::string> folder_entries() const {
    std::vector<std::string> names;
    for (const auto& item : fs::directory_iterator(dir_)) names.push_back(item.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

TEST_F(WriteFileAtomically, ThrowingWriterKeepsOldContentAndLeavesNoTemporary) {
  const std::string target = path("out.txt");
  write_text_file_atomically(target, "old content");
  ASSERT_EQ(read_bytes(target), "old content");

  EXPECT_THROW(write_file_atomically(target,
                                     [](const FileSink& sink) {
                                       sink.write("partial new content", 19);
                                       throw std::runtime_error("writer failed");
                                     }),
               std::runtime_error);
  EXPECT_EQ(read_bytes(target), "old content");
  EXPECT_EQ(folder_entries(), std::vector<std::string>{"out.txt"});

  // A remora::Error from the writer propagates unchanged too.
  EXPECT_THAT(error_message([&] {
                write_file_atomically(target, [](const FileSink&) { fail("custom failure"); });
              }),
              HasSubstr("custom failure"));
  EXPECT_EQ(read_bytes(target), "old content");
  EXPECT_EQ(folder_entries(), std::vector<std::string>{"out.txt"});
}

TEST_F(WriteFileAtomically, ThrowingWriterWithNoOldFileLeavesNothing) {
  const std::string target = path("new.txt");
  EXPECT_THROW(write_file_atomically(target, [](const FileSink&) { throw std::runtime_error("no"); }),
               std::runtime_error);
  EXPECT_TRUE(folder_entries().empty());
}

TEST_F(WriteFileAtomically, SuccessfulWriteReplacesContent) {
  const std::string target = path("out.txt");
  write_text_file_atomically(target, "old content");
  write_text_file_atomically(target, "new");
  EXPECT_EQ(read_bytes(target), "new");
  EXPECT_EQ(folder_entries(), std::vector<std::string>{"out.txt"});
}

}  // namespace
}  // namespace remora
