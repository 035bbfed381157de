// remora's entry point: one binary, one subcommand per verb; errors become one line and exit code 1.
#include <ATen/Parallel.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iostream>
#include <new>

#include "cli/common.h"
#include "core/error.h"
#include "core/resources.h"
#include "train/distributed.h"

namespace {

// The verb of a command line: the first argument that is neither an option nor the value of
// --threads (the one global option that takes a value). Empty when there is none.
std::string verb_of(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads") {
      ++i;
      continue;
    }
    if (!arg.empty() && arg[0] != '-') return arg;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"remora: fine-tune LLMs with LoRA and Mixtures of LoRAs (ReMix, SMoRA)", "remora"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "remora 0.1.0");
  app.fallthrough();  // global options may follow the verb
  // LibTorch starts with one intra-op thread on some machines; use every core unless told otherwise.
  at::set_num_threads(static_cast<int>(remora::machine_cores()));
  app.add_option_function<int64_t>(
      "--threads", [](int64_t threads) {
        remora::check_thread_count(threads, "--threads");
        at::set_num_threads(static_cast<int>(threads));
      },
      "intra-op CPU threads (default: all cores)");

  remora::add_init_model_command(app);
  remora::add_inspect_command(app);
  remora::add_forward_command(app);
  remora::add_generate_command(app);
  remora::add_bench_command(app);
  remora::add_merge_command(app);
  remora::add_compose_command(app);
  remora::add_init_adapter_command(app);
  remora::add_train_command(app);
  remora::add_launch_command(app);
  remora::add_tokenize_command(app);
  remora::add_train_tokenizer_command(app);
  remora::add_eval_command(app);
  remora::add_routing_command(app);
  remora::add_serve_command(app);

  // CLI11 would print the main help for "remora frobnicate --help" and exit 0.
  const std::string verb = verb_of(argc, argv);
  const auto commands = app.get_subcommands({});
  if (!verb.empty() && std::none_of(commands.begin(), commands.end(), [&](const CLI::App* c) { return c->get_name() == verb; })) {
    std::string verbs;
    for (const auto* command : commands) verbs += (verbs.empty() ? "" : ", ") + command->get_name();
    std::cerr << "remora: error: unknown verb '" << verb << "' (expected one of: " << verbs << ")\n";
    return 1;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "remora: error: " << e.what() << "\n";
    return 1;
  } catch (const remora::PeerLostError& e) {
    std::cerr << "remora: error: " << e.what() << "\n";
    return remora::kPeerLostExitStatus;
  } catch (const remora::Error& e) {
    std::cerr << "remora: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::cerr << "remora: error: " << e.what_without_backtrace() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "remora: error: out of memory in 'remora " << verb
              << "' (an input larger than this machine can hold; see the README's Limits)\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "remora: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
