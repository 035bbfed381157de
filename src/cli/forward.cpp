// `remora forward`: logits of given token rows, written to safetensors for comparison with other code.
#include <ATen/ATen.h>

#include "core/file_util.h"
#include "cli/common.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/decoder.h"

namespace remora {
namespace {

struct ForwardOptions {
  ModelOptions model;
  std::string ids;
  std::string out;
  std::string padding = "right";
};

void run_forward(const ForwardOptions& options) {
  if (options.padding != "left" && options.padding != "right") {
    fail("--padding: expected left or right, got '", options.padding, "'");
  }
  refuse_output_overlapping_inputs(options.out, "--out", options.model.inputs());
  require_writable_path(options.out, "--out");
  auto model = options.model.load();
  const auto rows = parse_id_rows(options.ids, "--ids", model->config().vocab_size);
  for (size_t r = 0; r < rows.size(); ++r) {
    REMORA_CHECK(static_cast<int64_t>(rows[r].size()) <= model->config().max_position_embeddings, "--ids: row ", r,
                 " has ", rows[r].size(), " tokens; the model's context is ", model->config().max_position_embeddings);
  }
  int64_t longest = 0;
  for (const auto& row : rows) longest = std::max<int64_t>(longest, row.size());

  // All rows go through one padded batch, so the output also checks the padding masks.
  const int64_t B = static_cast<int64_t>(rows.size());
  at::Tensor ids = at::zeros({B, longest}, at::kLong);
  at::Tensor mask = at::zeros({B, longest}, at::kLong);
  std::vector<int64_t> offsets;
  for (int64_t r = 0; r < B; ++r) {
    const int64_t length = static_cast<int64_t>(rows[r].size());
    const int64_t offset = options.padding == "left" ? longest - length : 0;
    ids[r].narrow(0, offset, length).copy_(at::tensor(rows[r], at::kLong));
    mask[r].narrow(0, offset, length).fill_(1);
    offsets.push_back(offset);
  }
  at::NoGradGuard no_grad;
  at::Tensor logits = model->forward(ids, mask).to(at::kCPU);  // [B, T, V] fp32
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (int64_t r = 0; r < B; ++r) {
    tensors.emplace_back("logits." + std::to_string(r),
                         logits[r].narrow(0, offsets[r], rows[r].size()));
  }
  write_safetensors(options.out, tensors);
}

}  // namespace

void add_forward_command(CLI::App& app) {
  auto options = std::make_shared<ForwardOptions>();
  CLI::App* command = app.add_subcommand(
      "forward", "Write the logits of token rows to a safetensors file (tensor logits.{row}, [len, vocab])");
  options->model.add_to(*command);
  command->add_option("--ids", options->ids, "token ids: rows separated by ';', ids by ','")
      ->required();
  command->add_option("--out", options->out, "output .safetensors file")->required();
  command->add_option("--padding", options->padding, "pad the batch on the left or right")
      ->capture_default_str();
  command->callback([options] { run_forward(*options); });
}

}  // namespace remora
