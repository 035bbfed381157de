// `remora launch`: starts this machine's training workers with torchrun's environment, watches them,
// and when one fails stops the others and names it.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "cli/common.h"
#include "core/error.h"
#include "core/resources.h"
#include "train/distributed.h"

namespace remora {
namespace {

struct LaunchOptions {
  int64_t nproc_per_node = 1;
  int64_t nnodes = 1;
  int64_t node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  double stop_timeout = 30;
  std::vector<std::string> command;  // after --: train RECIPE [key=value ...] [--resume]
};

std::atomic<int> g_launcher_signal{0};
extern "C" void on_launcher_signal(int signal) { g_launcher_signal = signal; }

struct Worker {
  int64_t rank = 0, local_rank = 0;
};

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int signal = WTERMSIG(status);
    return std::string("was killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

pid_t start_worker(const std::string& executable, const LaunchOptions& options, const Worker& worker) {
  const int64_t world = options.nproc_per_node * options.nnodes;
  const pid_t pid = fork();
  if (pid < 0) fail("launch: cannot start a worker: ", std::strerror(errno));
  if (pid > 0) return pid;
  // The child: torchrun's variables, then this same binary with the command.
  const std::map<std::string, std::string> environment = {
      {"RANK", std::to_string(worker.rank)},
      {"LOCAL_RANK", std::to_string(worker.local_rank)},
      {"WORLD_SIZE", std::to_string(world)},
      {"LOCAL_WORLD_SIZE", std::to_string(options.nproc_per_node)},
      {"GROUP_RANK", std::to_string(options.node_rank)},
      {"NODE_RANK", std::to_string(options.node_rank)},
      {"MASTER_ADDR", options.master_addr},
      {"MASTER_PORT", std::to_string(options.master_port)},
  };
  for (const auto& [name, value] : environment) setenv(name.c_str(), value.c_str(), 1);
  // Not torchrun's agent: rank 0 hosts the rendezvous itself.
  unsetenv("TORCHELASTIC_USE_AGENT_STORE");
  unsetenv("TORCHELASTIC_RESTART_COUNT");
  // A launcher that is killed takes its workers with it.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  std::vector<std::string> arguments = {"remora"};
  arguments.insert(arguments.end(), options.command.begin(), options.command.end());
  std::vector<char*> argv;
  for (auto& a : arguments) argv.push_back(a.data());
  argv.push_back(nullptr);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  execv(executable.c_str(), argv.data());
  std::cerr << "remora: error: launch: cannot run " << executable << ": " << std::strerror(errno) << "\n";
  _exit(127);
}

void run_launch(const LaunchOptions& options) {
  REMORA_CHECK(options.nproc_per_node >= 1 && options.nproc_per_node <= machine_cores() * 4, "--nproc-per-node: expected 1 to ",
               machine_cores() * 4, ", got ", options.nproc_per_node);
  REMORA_CHECK(options.nnodes >= 1, "--nnodes: expected at least 1, got ", options.nnodes);
  REMORA_CHECK(options.node_rank >= 0 && options.node_rank < options.nnodes, "--node-rank: expected 0 to ",
               options.nnodes - 1, ", got ", options.node_rank);
  REMORA_CHECK(options.master_port >= 1 && options.master_port <= 65535, "--master-port: expected 1 to 65535, got ",
               options.master_port);
  REMORA_CHECK(options.stop_timeout >= 0, "--stop-timeout: expected seconds >= 0");
  if (options.command.empty() || options.command[0] != "train") {
    fail("launch: expected the workers' command after --: remora launch --nproc-per-node N -- train RECIPE "
         "[key=value ...] [--resume]");
  }
  const std::string executable = std::filesystem::read_symlink("/proc/self/exe").string();

  // Signals to the launcher reach every worker (they stop together at the next step, with a checkpoint).
  g_launcher_signal = 0;
  signal(SIGINT, on_launcher_signal);
  signal(SIGTERM, on_launcher_signal);
  std::map<pid_t, Worker> running;
  for (int64_t local = 0; local < options.nproc_per_node; ++local) {
    const Worker worker{options.node_rank * options.nproc_per_node + local, local};
    running[start_worker(executable, options, worker)] = worker;
  }
  auto signal_all = [&](int signal) {
    for (const auto& [pid, worker] : running) kill(pid, signal);
  };

  using Clock = std::chrono::steady_clock;
  Clock::time_point kill_at = Clock::time_point::max();  // SIGKILL for whoever is left, once stopping
  std::string failure;                       // the first worker that failed, for the report
  bool stopped_early = false;                // a worker stopped at a step boundary (exit 130)
  int signals_seen = 0;
  while (!running.empty()) {
    // The first signal asks the workers to stop after their step, a second one ends them.
    if (g_launcher_signal != 0) {
      g_launcher_signal = 0;
      signal_all(++signals_seen == 1 ? SIGTERM : SIGKILL);
    }
    // Reap everything that ended since the last look. The likeliest cause of a failure is a worker
    // killed by a signal, then one that exited with an error of its own; the workers that merely lost
    // their peer (kPeerLostExitStatus) come last.
    std::vector<std::pair<Worker, int>> ended;
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      const auto it = running.find(pid);
      if (it == running.end()) continue;
      ended.emplace_back(it->second, status);
      running.erase(it);
    }
    auto blame = [](int code) { return WIFSIGNALED(code) ? 0 : WEXITSTATUS(code) == kPeerLostExitStatus ? 2 : 1; };
    std::stable_sort(ended.begin(), ended.end(),
                     [&](const auto& a, const auto& b) { return blame(a.second) < blame(b.second); });
    for (const auto& [worker, code] : ended) {
      // Stopped: at a step boundary (130), or by the signal the launcher passed on before the worker
      // had set up its handler.
      const bool stopped = (WIFEXITED(code) && WEXITSTATUS(code) == 130) ||
                           (signals_seen > 0 && WIFSIGNALED(code) && (WTERMSIG(code) == SIGTERM || WTERMSIG(code) == SIGINT));
      stopped_early = stopped_early || stopped;
      if (stopped || (WIFEXITED(code) && WEXITSTATUS(code) == 0)) continue;
      if (failure.empty()) {
        failure = "rank " + std::to_string(worker.rank) + " (local rank " + std::to_string(worker.local_rank) +
                  " on node " + std::to_string(options.node_rank) + ") " + describe_exit(code);
        std::cerr << "remora launch: " << failure << "; stopping the other workers\n";
        signal_all(SIGTERM);
        kill_at = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(options.stop_timeout));
      }
    }
    if (Clock::now() >= kill_at) {
      signal_all(SIGKILL);
      kill_at = Clock::time_point::max();
    }
    if (!running.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!failure.empty()) fail("launch: ", failure);
  if (stopped_early) std::exit(130);
}

}  // namespace

void add_launch_command(CLI::App& app) {
  auto options = std::make_shared<LaunchOptions>();
  CLI::App* command = app.add_subcommand(
      "launch",
      "Train with several worker processes (data parallel over c10d, torchrun's environment): "
      "remora launch --nproc-per-node N [--nnodes K --node-rank I --master-addr A --master-port P] -- train RECIPE");
  command->add_option("--nproc-per-node", options->nproc_per_node, "workers on this machine")->capture_default_str();
  command->add_option("--nnodes", options->nnodes, "machines taking part")->capture_default_str();
  command->add_option("--node-rank", options->node_rank, "this machine's index, 0 to nnodes - 1")
      ->capture_default_str();
  command->add_option("--master-addr", options->master_addr, "address of node 0, where rank 0 hosts the rendezvous")
      ->capture_default_str();
  command->add_option("--master-port", options->master_port, "its port")->capture_default_str();
  command->add_option("--stop-timeout", options->stop_timeout,
                      "seconds the other workers get to exit after one fails, before SIGKILL")
      ->capture_default_str();
  command->add_option("command", options->command, "-- train RECIPE [key=value ...] [--resume]")->required();
  command->callback([options] { run_launch(*options); });
}

}  // namespace remora
