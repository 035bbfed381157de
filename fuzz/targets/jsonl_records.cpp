// Fuzzes JSONL records in every training data format (auto, alpaca, chat, prompt_completion, text)
// and the evaluation task formats (choice, generate), with a small trained tokenizer and a ChatML
// template, as `remora train` and `remora eval` read them.
#include "fuzz_files.h"
#include "core/error.h"
#include "eval/tasks.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/pretrained.h"
#include "train/data.h"
#include "train/recipe.h"

namespace {

const remora::PretrainedTokenizer& tokenizer() {
  static const remora::PretrainedTokenizer loaded = [] {
    const auto json = remora::train_byte_level_bpe({"The sky is blue. Roses are red. What colour is grass? Green."},
                                                   remora::BpeTrainerOptions{300});
    const std::string dir = remora::fuzz::scratch() + "/tok";
    std::filesystem::create_directories(dir);
    remora::fuzz::write_file("tok/tokenizer.json", json.dump());
    remora::fuzz::write_file("tok/tokenizer_config.json", R"({"eos_token": "<|im_end|>", "chat_template":
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"})");
    return remora::PretrainedTokenizer::load(dir);
  }();
  return loaded;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = remora::fuzz::write_file("data.jsonl", data, size);
  for (const auto& [name, format] : remora::data_format_names()) {
    remora::Recipe recipe;
    recipe.format = format;
    recipe.max_seq_len = 64;
    try {
      remora::load_dataset(path, tokenizer(), recipe);
    } catch (const remora::Error&) {
    }
  }
  for (auto type : {remora::TaskType::kChoice, remora::TaskType::kGenerate}) {
    try {
      remora::load_eval_docs(path, type, tokenizer(), 0);
    } catch (const remora::Error&) {
    }
  }
  return 0;
}
