// The core guards on their own: outputs apart from inputs, regular files only, JSON depth, YAML alias
// expansion, and the chat-template limits (the CLI catalogue tests the same through every verb).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "core/error.h"
#include "core/file_util.h"
#include "core/json_input.h"
#include "core/yaml_json.h"
#include "tokenizer/jinja/template.h"

namespace remora {
namespace {
namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class OutputGuard : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("remora_guard_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "model");
    write_text_file_atomically((root_ / "data.jsonl").string(), "{}\n");
  }
  void TearDown() override { fs::remove_all(root_); }
  std::string at(const std::string& relative) const { return (root_ / relative).string(); }
  std::string check(const std::string& output) const {
    return error_of([&] {
      refuse_output_overlapping_inputs(output, "--out", {{at("model"), "--model"}, {at("data.jsonl"), "--data"}, {"", "unused"}});
    });
  }
  fs::path root_;
};

TEST_F(OutputGuard, RefusesTheInputItsContentsAndItsParentsInAnySpelling) {
  EXPECT_THAT(check(at("model")), HasSubstr("is --model"));
  EXPECT_THAT(check(at("model/")), HasSubstr("is --model"));
  EXPECT_THAT(check(at("model/../model")), HasSubstr("is --model"));
  EXPECT_THAT(check(at("model/run")), HasSubstr("lies inside --model"));
  EXPECT_THAT(check(root_.string()), HasSubstr("contains --model"));
  EXPECT_THAT(check(at("data.jsonl")), HasSubstr("is --data"));
  fs::create_directory_symlink(at("model"), at("link"));
  EXPECT_THAT(check(at("link/x.safetensors")), HasSubstr("lies inside --model"));
  EXPECT_EQ(check(at("modelx")), "(no error)");  // a shared prefix is not containment
  EXPECT_EQ(check(at("out/adapter")), "(no error)");
}

TEST_F(OutputGuard, NonRegularFilesAreNeitherReadNorReplaced) {
  ASSERT_EQ(::mkfifo(at("fifo").c_str(), 0600), 0);
  EXPECT_THAT(error_of([&] { read_text_file(at("fifo")); }), HasSubstr("is a FIFO; expected a regular file"));
  EXPECT_THAT(error_of([&] { write_text_file_atomically(at("fifo"), "x"); }), HasSubstr("is a FIFO; refusing to replace it"));
  EXPECT_THAT(error_of([&] { read_text_file(at("model")); }), HasSubstr("is a folder"));
  EXPECT_THAT(error_of([&] { read_text_file(at("data.jsonl"), 2); }), HasSubstr("larger than the 2-byte limit"));
  EXPECT_THAT(error_of([&] { replace_folder_atomically(at("data.jsonl"), true, [](const std::string&) {}); }),
              HasSubstr("not a folder"));
  EXPECT_EQ(read_text_file(at("data.jsonl")), "{}\n");
}

TEST(JsonInput, DepthIsCappedBeforeParsingAndStringsDoNotCount) {
  const std::string ok = std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']');
  EXPECT_NO_THROW(parse_json(ok, "ok.json"));
  const std::string deep = "[" + ok + "]";
  EXPECT_THAT(error_of([&] { parse_json(deep, "deep.json"); }), HasSubstr("deep.json: JSON nested deeper than 256"));
  const std::string brackets_in_string = "[\"" + std::string(1000, '[') + "\\\"[\"]";
  EXPECT_EQ(parse_json(brackets_in_string, "s.json")[0].get<std::string>().size(), 1002u);
  EXPECT_THAT(error_of([&] { parse_json("{\"a\": 1e400}", "big.json"); }), HasSubstr("big.json: not valid JSON"));
  EXPECT_EQ(describe(nlohmann::json(std::string(200, 'x'))).size(), 83u);
}

TEST(YamlInput, AliasesAreCountedAsTheyExpand) {
  std::string bomb = "a0: &a0 [x]\n";
  for (int i = 1; i < 8; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) bomb += (k ? ", *a" : "*a") + std::to_string(i - 1);
    bomb += "]\n";
  }
  EXPECT_THAT(error_of([&] { parse_yaml(bomb, "bomb.yaml"); }), HasSubstr("bomb.yaml: YAML expands to more than 100000"));
  EXPECT_EQ(parse_yaml("a: &x [1, 2]\nb: *x\n", "small.yaml")["b"], nlohmann::json({1, 2}));
}

TEST(TemplateLimits, NestingStepsSizesAndOverflowEndInErrors) {
  const auto render = [](const std::string& source) {
    return error_of([&] { jinja::Template(source, "t.jinja").render({}); });
  };
  EXPECT_THAT(render("{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}"), HasSubstr("nested deeper than 200"));
  EXPECT_THAT(render("{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}"),
              HasSubstr("more than 5000000 steps"));
  EXPECT_THAT(render("{{ 'ab' * 9000000 }}"), HasSubstr("longer than 16777216 bytes"));
  EXPECT_THAT(render("{{ (-9223372036854775807 - 1) // -1 }}"), HasSubstr("integer overflow"));
  EXPECT_THAT(render("{{ 5 % -1 }}{% set l = [] %}{{ l.append(l) }}{{ l }}"), HasSubstr("nested deeper than 256"));
  EXPECT_EQ(jinja::Template("{{ (1 + 2) * 3 }}{{ -7 // 2 }}{{ -7 % 3 }}", "t.jinja").render({}), "9-42");
}

}  // namespace
}  // namespace remora
