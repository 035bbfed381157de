// The training loop: data, model and adapter set-up, micro-batches, RLOO, optimizer, checkpoints.
#include "train/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "adapters/adapter_io.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/file_util.h"
#include "core/resources.h"
#include "eval/routing_stats.h"
#include "model/loader.h"
#include "tokenizer/pretrained.h"
#include "train/batching.h"
#include "train/activation_checkpoint.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/distributed.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/progress.h"

namespace remora {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int signal) { g_stop_signal = signal; }

// Mean cross-entropy per target token over `data`, routers deterministic; the workers take turns
// at its batches and sum their totals.
double validation_loss(CausalLM& model, AdaptedModel* adapted, const Dataset& data, int64_t batch_size,
                       int64_t pad_id, const DataParallelGroup& group) {
  if (data.examples.empty()) return std::nan("");
  // Routers that sample at inference draw from the training routing generator: the workers' shares of
  // the validation data differ, so its state is put back (every worker keeps the same one).
  std::optional<at::Tensor> routing_state;
  if (adapted && adapted->routing().generator) routing_state = adapted->routing().generator->get_state();
  if (adapted) adapted->set_training(false);
  model.eval();
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> totals{at::zeros({2}, at::kDouble)};  // loss, target tokens
  const size_t stride = static_cast<size_t>(batch_size * group.size());
  for (size_t start = batch_size * group.rank(); start < data.examples.size(); start += stride) {
    std::vector<size_t> indices(std::min<size_t>(batch_size, data.examples.size() - start));
    std::iota(indices.begin(), indices.end(), start);
    Batch batch = collate(data.examples, indices, pad_id);
    auto [sums, counts] = row_losses(model, batch.ids, batch.attention, batch.target_mask, batch.routing_mask);
    totals[0][0] += sums.sum().item<double>();
    totals[0][1] += counts.sum().item<double>();
  }
  group.sum(totals);
  if (routing_state) adapted->routing().generator->set_state(*routing_state);
  if (adapted) adapted->set_training(true);
  model.train();
  return totals[0][0].item<double>() / std::max(1.0, totals[0][1].item<double>());
}

// Each worker's dropout masks, a function of the step so that a resumed run draws the same ones.
uint64_t worker_dropout_seed(uint64_t seed, int64_t rank, int64_t step) {
  return (seed + 2) * 1000003ULL + static_cast<uint64_t>(rank) * 7919ULL + static_cast<uint64_t>(step) * 104729ULL;
}

// FNV-1a of `text`, cut to 24 bits (DataParallelGroup::check_agreement compares it exactly in fp64).
int64_t short_hash(const std::string& text) {
  uint64_t hash = 14695981039346656037ULL;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
  return static_cast<int64_t>(hash & 0xFFFFFF);
}

// CUDA without an index means one GPU per worker on each machine: cuda:LOCAL_RANK.
c10::Device worker_device(const std::string& name, const WorkerEnvironment& environment) {
  c10::Device device = parse_device(name);
  if (device.is_cuda() && !device.has_index() && environment.world_size > 1) {
    device = c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(environment.local_rank));
  }
  return device;
}

// metrics.jsonl keeps only the records up to `step` (what a resumed run continues from).
void truncate_metrics(const fs::path& path, int64_t step) {
  if (!path_exists(path)) return;
  std::ifstream in(path);
  std::string kept, line;
  while (std::getline(in, line)) {
    const auto record = nlohmann::json::parse(line, nullptr, false);
    if (!record.is_discarded() && record.value("step", int64_t{0}) <= step) kept += line + "\n";
  }
  write_text_file_atomically(path.string(), kept);
}

// Removes the output folder a run created when the run fails before its first checkpoint: a run that
// got nowhere leaves nothing behind. With a checkpoint the folder stays, for --resume.
struct FreshOutputGuard {
  fs::path dir;  // empty: nothing to clean
  ~FreshOutputGuard() {
    try {
      if (!dir.empty() && !latest_checkpoint(dir.string())) fs::remove_all(dir);
    } catch (...) {  // cleaning up after an error must not raise another
    }
  }
};

}  // namespace

int run_training(const Recipe& recipe, bool resume) {
  // Several workers (torchrun or `remora launch`) share the machine's cores unless told otherwise.
  const WorkerEnvironment environment = worker_environment();
  at::set_num_threads(static_cast<int>(
      recipe.threads > 0 ? recipe.threads : std::max<int64_t>(1, machine_cores() / environment.local_world_size)));
  const fs::path out(recipe.output_dir);
  refuse_output_overlapping_inputs(recipe.output_dir, "output.dir",
                                   {{recipe.model_path, "model.path"}, {recipe.train_file, "data.train"},
                                    {recipe.validation_file, "data.validation"}, {recipe.source, "the recipe"},
                                    {recipe.adapter_path, "model.adapter"}});
  const c10::Device device = worker_device(recipe.device, environment);
  // Joined first, so that a worker failing anywhere below is seen by the others at their next
  // collective instead of after the timeout.
  const DataParallelGroup group =
      DataParallelGroup::join(environment, recipe.backend, device, std::chrono::seconds(recipe.dist_timeout));
  // From here on an interrupt stops the run at the next step boundary, with a checkpoint (until
  // here it ends the process: nothing has been written).
  g_stop_signal = 0;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  const bool main_worker = group.is_main();  // rank 0 writes every output
  const int64_t global_batch_size = recipe.batch_size * group.size();
  std::optional<std::string> checkpoint;
  if (resume) {
    checkpoint = latest_checkpoint(recipe.output_dir);
    if (!checkpoint) fail(recipe.output_dir, ": no checkpoint to resume from");
  } else if (const fs::file_status out_status = path_status(out, /*follow_links=*/false);
             main_worker && fs::exists(out_status)) {
    // Even an empty folder: it may be one the user made for something else.
    if (!recipe.overwrite) fail(recipe.output_dir, ": already exists (set output.overwrite=true or pass --resume)");
    if (!fs::is_directory(out_status)) fail(recipe.output_dir, ": exists and is not a folder");
  }

  // Model, tokenizer and adapter before the data: a recipe's adapter settings are checked against
  // the model before the (possibly long) tokenization of the data.
  ModelConfig::load(recipe.model_path);
  const PretrainedTokenizer tokenizer = PretrainedTokenizer::load(recipe.model_path);
  const c10::ScalarType dtype =
      recipe.full_finetune ? at::kFloat : parse_compute_dtype(recipe.model_dtype, recipe.source + ": model.dtype");
  std::shared_ptr<CausalLM> model =
      load_causal_lm(checkpoint && recipe.full_finetune ? *checkpoint + "/model" : recipe.model_path, dtype, device);
  const ModelConfig& config = model->config();
  const int64_t pad_id = config.pad_token_id.value_or(config.eos_token_ids.empty() ? 0 : config.eos_token_ids[0]);
  REMORA_CHECK(recipe.max_seq_len <= config.max_position_embeddings, recipe.source, ": data.max_seq_len ",
               recipe.max_seq_len, " is more than the model's context of ", config.max_position_embeddings,
               " (max_position_embeddings)");
  std::unique_ptr<AdaptedModel> adapted;
  if (!recipe.full_finetune) {
    if (checkpoint) {
      adapted = load_adapter(model, *checkpoint + "/adapter");
    } else if (!recipe.adapter_path.empty()) {
      adapted = load_adapter(model, recipe.adapter_path, recipe.adapter_overrides);
    } else {
      adapted = std::make_unique<AdaptedModel>(model, recipe.adapter, recipe.seed);
    }
  }

  // Data.
  Dataset train = load_dataset(recipe.train_file, tokenizer, recipe);
  Dataset validation;
  if (!recipe.validation_file.empty()) {
    validation = load_dataset(recipe.validation_file, tokenizer, recipe);
  } else if (recipe.validation_fraction > 0 && train.examples.size() > 1) {
    std::tie(train, validation) = split_validation(std::move(train), recipe.validation_fraction, recipe.seed);
  }
  const DatasetReport& report = train.report;
  if (main_worker) std::cerr << "data: " << train.examples.size() << " training and " << validation.examples.size()
            << " validation examples from " << report.lines << " lines; " << report.truncated
            << " truncated to " << recipe.max_seq_len << " tokens, " << report.dropped_no_target
            << " dropped (no response token left), " << report.skipped_bad_lines << " bad lines skipped\n";

  // Trainable parameters. Full fine-tuning keeps fp32 weights (they are the optimizer's master copy).
  std::vector<at::Tensor> decayed, routers, not_decayed;
  if (recipe.full_finetune) {
    for (auto& item : model->named_parameters()) {
      item.value().set_requires_grad(true);
      (item.value().dim() >= 2 ? decayed : not_decayed).push_back(item.value());
    }
  } else {
    for (const auto& p : adapted->adapter_parameters()) {
      if (p.requires_grad()) decayed.push_back(p);  // a composed adapter's frozen experts are not trained
    }
    for (const auto& p : adapted->router_parameters()) {
      if (p.requires_grad()) routers.push_back(p);  // a frozen ReMix router is not trained
    }
    REMORA_CHECK(!decayed.empty() || !routers.empty(), recipe.source,
                 ": nothing to train: the experts are frozen (adapter.freeze_experts) and the ",
                 method_name(adapted->config().method), " router has no trainable weights");
    adapted->set_training(true);
  }
  model->train();
  const bool remix = adapted && adapted->has_policy_routers();

  auto optimizer = make_optimizer(decayed, routers, not_decayed, recipe);
  const std::vector<double> peaks = {recipe.lr, recipe.router_lr.value_or(recipe.lr), recipe.lr};
  std::vector<at::Tensor> weights = decayed;  // everything but the routers
  weights.insert(weights.end(), not_decayed.begin(), not_decayed.end());
  std::vector<at::Tensor> trained = weights;
  trained.insert(trained.end(), routers.begin(), routers.end());
  group.broadcast_from_main(trained);  // every worker starts from rank 0's weights

  at::Generator routing_generator = at::make_generator<at::CPUGeneratorImpl>(recipe.seed + 1);
  if (adapted) {
    adapted->routing().generator = routing_generator;
    if (group.size() > 1) {
      adapted->routing().sum_over_workers = [&group](std::vector<at::Tensor>& t) { group.sum(t); };
    }
  }
  if (recipe.activation_checkpointing) enable_activation_checkpointing(*model, adapted ? &adapted->routing() : nullptr);
  at::manual_seed(recipe.seed + 2);  // dropout (several workers reseed every step)
  TrainingProgress progress;
  const fs::path metrics_path = out / "metrics.jsonl";
  FreshOutputGuard fresh_output;
  if (checkpoint) {
    progress = read_checkpoint(*checkpoint, *optimizer, routing_generator);
    // Checkpoints from before several workers could train record no micro-batch size: one process's.
    if (progress.global_batch_size == 0 && group.size() > 1) {
      fail(*checkpoint, ": written by a single-process run; resume it with one process");
    }
    if (progress.global_batch_size != 0 && progress.global_batch_size != global_batch_size) {
      fail(*checkpoint, ": written by a run with ", progress.global_batch_size,
           " examples per micro-batch (train.batch_size x workers), this one has ", recipe.batch_size, " x ",
           group.size(), "; resume with train.batch_size x workers = ", progress.global_batch_size);
    }
    if (main_worker) {
      truncate_metrics(metrics_path, progress.step);
      std::cerr << "resuming from " << *checkpoint << " at step " << progress.step << "\n";
    }
  } else if (main_worker) {
    // Everything is checked; only now is an old output folder (overwrite=true) replaced.
    fs::remove_all(out);
    fs::create_directories(out);
    fresh_output.dir = out;
    write_text_file_atomically((out / "recipe.json").string(),
                               recipe.to_json().dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }

  // Steps. Every worker plans the same micro-batches (of train.batch_size x workers examples) and
  // trains on its share of each.
  progress.global_batch_size = global_batch_size;
  auto plan = plan_epoch(train.examples, global_batch_size, recipe.seed, progress.epoch);
  const int64_t batches_per_epoch = static_cast<int64_t>(plan.size());
  const int64_t total_steps =
      recipe.steps > 0 ? recipe.steps : std::max<int64_t>(1, recipe.epochs * batches_per_epoch / recipe.grad_accum);
  nlohmann::json shared_settings = recipe.to_json();
  shared_settings.erase("threads");  // machines may differ in cores
  group.check_agreement({short_hash(shared_settings.dump()), static_cast<int64_t>(train.examples.size()),
                         static_cast<int64_t>(validation.examples.size()), total_steps, progress.step,
                         static_cast<int64_t>(trained.size())},
                        "the recipe, the data or the checkpoint");
  std::optional<LineLog> metrics;
  std::optional<ProgressDisplay> display;
  if (main_worker) {
    metrics.emplace(metrics_path.string());
    display.emplace(total_steps);
  }
  // The other workers wait for rank 0's write here rather than in their next collective, whose
  // timeout a big checkpoint could outlast.
  int64_t saves = 0;
  auto save = [&] {
    if (main_worker) {
      write_checkpoint(recipe.output_dir, adapted.get(), *model, *optimizer, progress, routing_generator,
                       recipe.keep_last);
    }
    group.wait_for_main("checkpoint " + std::to_string(++saves));
  };

  const double seconds_before = progress.seconds;
  const auto started = Clock::now();
  int64_t tokens_at_start = progress.tokens;
  while (progress.step < total_steps) {
    const auto step_start = Clock::now();
    if (group.size() > 1) at::manual_seed(worker_dropout_seed(recipe.seed, group.rank(), progress.step));
    std::vector<WorkerShare> micro;
    for (int64_t i = 0; i < recipe.grad_accum; ++i) {
      if (progress.batch_in_epoch >= static_cast<int64_t>(plan.size())) {
        progress.epoch++;
        progress.batch_in_epoch = 0;
        plan = plan_epoch(train.examples, global_batch_size, recipe.seed, progress.epoch);
      }
      micro.push_back(worker_share(train.examples, plan[progress.batch_in_epoch++], pad_id, group.rank(), group.size()));
    }
    // The step's loss is normalised by all its target tokens (every worker's), not per micro-batch.
    double step_targets = 0;
    for (const auto& share : micro) step_targets += share.global_target_tokens;
    const bool log_now = (progress.step + 1) % recipe.log_every == 0 || progress.step + 1 == total_steps;
    RoutingCapture capture;
    // Summed over the workers below: loss, tokens, ReMix's advantage spread and log Q, stop requests.
    std::vector<at::Tensor> totals{at::zeros({5}, at::kDouble)};
    auto total = totals[0].accessor<double, 1>();
    for (size_t i = 0; i < micro.size(); ++i) {
      const Batch& batch = micro[i].batch;
      total[1] += batch.attention.sum().item<double>();
      // Routing statistics in the metrics describe rank 0's rows.
      if (adapted) adapted->routing().capture = (log_now && i == 0 && main_worker) ? &capture : nullptr;
      MicroBatchObjective objective =
          micro_batch_objective(*model, adapted.get(), batch, step_targets, recipe.samples,
                                static_cast<int64_t>(micro.size()), &micro[i].placement);
      total[0] += objective.loss_sum;
      total[2] += objective.advantage_spread / micro.size() / group.size();
      total[3] += objective.mean_log_prob / micro.size() / group.size();
      objective.objective.backward();
    }
    if (adapted) adapted->routing().capture = nullptr;
    group.sum_gradients(trained);
    // Every worker stops at the same step when any was asked to (the launcher signals them all).
    total[4] = g_stop_signal != 0 ? 1 : 0;
    group.sum(totals);
    total = totals[0].accessor<double, 1>();
    const double step_loss = total[0] / step_targets, advantage_spread = total[2], mean_log_prob = total[3];
    const auto step_tokens = static_cast<int64_t>(total[1]);
    const bool stop = total[4] > 0;
    if (!std::isfinite(step_loss)) {
      if (display) display->finish();
      fail("step ", progress.step + 1, ": the loss is ", step_loss,
           "; stopping (the last good checkpoint is kept; lower optim.lr or check the data)");
    }
    // Per-router gradient norms are read before clipping changes them.
    nlohmann::json router_norms = nlohmann::json::object();
    if (log_now && adapted) {
      for (const auto& [path, router] : adapted->routers()) {
        const auto parameters = router->parameters();
        // A frozen router has no gradient and gets no entry.
        if (std::any_of(parameters.begin(), parameters.end(), [](const at::Tensor& p) { return p.grad().defined(); })) {
          router_norms[path] = gradient_norm(parameters);
        }
      }
    }
    GradientNorms norms;
    if (recipe.clip_routers_separately.value_or(remix)) {
      norms.weights = clip_gradients(weights, recipe.grad_clip);
      norms.routers = clip_gradients(routers, recipe.grad_clip);
    } else {
      norms = clip_gradients_jointly(weights, routers, recipe.grad_clip);
    }
    const double lr_scale = lr_factor(recipe, progress.step, total_steps);
    apply_lr(*optimizer, peaks, lr_scale);
    optimizer->step();
    optimizer->zero_grad();
    progress.step++;
    progress.tokens += step_tokens;
    progress.seconds = seconds_before + std::chrono::duration<double>(Clock::now() - started).count();
    const double step_seconds = std::chrono::duration<double>(Clock::now() - step_start).count();
    const double run_tokens_per_second =
        (progress.tokens - tokens_at_start) / std::max(1e-9, progress.seconds - seconds_before);

    if (log_now && main_worker) {
      nlohmann::json record = {{"step", progress.step}, {"loss", step_loss}, {"lr", peaks[0] * lr_scale},
                               {"grad_norm", std::hypot(norms.weights, norms.routers)}, {"tokens", step_tokens},
                               {"tokens_per_second", step_tokens / std::max(1e-9, step_seconds)},
                               {"elapsed", progress.seconds}};
      if (!routers.empty()) {
        record["adapter_grad_norm"] = norms.weights;
        record["router_grad_norm"] = norms.routers;
      }
      if (remix) {
        record["advantage_spread"] = advantage_spread;
        record["mean_log_q"] = mean_log_prob;
      }
      if (!capture.sites.empty()) {
        nlohmann::json layers = nlohmann::json::array();
        double entropy = 0;
        int64_t with_entropy = 0;
        for (const auto& s : routing_stats(capture)) {
          layers.push_back({{"site", s.site}, {"mean_ess", s.mean_ess}, {"min_ess", s.min_ess},
                            {"mean_top_weight", s.mean_top_weight}, {"load", s.load}});
          if (router_norms.contains(s.site)) layers.back()["router_grad_norm"] = router_norms[s.site];
          if (s.entropy) {
            entropy += *s.entropy;
            with_entropy++;
          }
        }
        record["routing"] = layers;
        if (with_entropy > 0) record["router_entropy"] = entropy / with_entropy;
      }
      metrics->append(record.dump());
      display->update(progress.step, step_loss, peaks[0] * lr_scale, run_tokens_per_second, progress.seconds);
    }
    if (recipe.eval_every > 0 && progress.step % recipe.eval_every == 0 && progress.step < total_steps) {
      const double value = validation_loss(*model, adapted.get(), validation, recipe.batch_size, pad_id, group);
      if (main_worker) {
        metrics->append(nlohmann::json{{"step", progress.step}, {"validation_loss", value}}.dump());
        display->message("step " + std::to_string(progress.step) + ": validation loss " + std::to_string(value));
      }
    }
    if ((recipe.checkpoint_every > 0 && progress.step % recipe.checkpoint_every == 0) || stop) save();
    if (stop) {
      if (display) {
        display->message("stopped by a signal at step " + std::to_string(progress.step) +
                         "; checkpoint saved, continue with --resume");
      }
      fresh_output.dir.clear();
      return 130;
    }
  }
  if (display) display->finish();
  save();

  // Final outputs.
  const double value = validation_loss(*model, adapted.get(), validation, recipe.batch_size, pad_id, group);
  if (main_worker) {
    metrics->append(nlohmann::json{{"step", progress.step}, {"validation_loss", value}}.dump());
    metrics->close();
    if (adapted) {
      save_adapter(*adapted, (out / "adapter").string(), /*overwrite=*/true);
    } else {
      replace_folder_atomically((out / "model").string(), /*overwrite=*/true, [&](const std::string& temp) {
        save_hf_checkpoint(*model, temp);
        copy_companion_files(recipe.model_path, temp);
      });
    }
  }
  group.wait_for_main("outputs");  // every worker exits 0 only once the outputs are written
  fresh_output.dir.clear();
  if (!main_worker) return 0;
  const double run_seconds = progress.seconds - seconds_before;
  std::cerr << "done: " << progress.step << " steps in " << run_seconds << " s this run, "
            << (progress.tokens - tokens_at_start) / std::max(1e-9, run_seconds) << " tokens/s, peak memory "
            << peak_resident_mib() << " MiB; validation loss " << value << "; wrote "
            << (out / (adapted ? "adapter" : "model")).string()
            << (group.size() > 1 ? " (" + std::to_string(group.size()) + " workers; memory is rank 0's)" : "") << "\n";
  return 0;
}

}  // namespace remora
