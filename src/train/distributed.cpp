// Process group set-up from the torchrun environment and the trainer's collectives (c10d).
#include "train/distributed.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <optional>

#ifdef REMORA_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef REMORA_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "core/error.h"

namespace remora {
namespace {

// LibTorch 2 split the backends (Gloo, NCCL) from the ProcessGroup that dispatches to them; both
// versions give them the same collective calls.
#if TORCH_VERSION_MAJOR >= 2
using Collectives = c10d::Backend;
#else
using Collectives = c10d::ProcessGroup;
#endif

std::string first_line(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

// The value of an integer environment variable in [low, high]; `fallback` when unset.
int64_t integer_variable(const char* name, int64_t low, int64_t high, std::optional<int64_t> fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) {
    if (!fallback) fail("environment: ", name, " is not set (torchrun and `remora launch` set it for every worker)");
    return *fallback;
  }
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < low || value > high) {
    fail("environment: ", name, "=", text, ": expected an integer from ", low, " to ", high);
  }
  return value;
}

bool is_loopback(const std::string& address) {
  return address == "localhost" || address.rfind("127.", 0) == 0 || address == "::1";
}

}  // namespace

WorkerEnvironment worker_environment() {
  WorkerEnvironment environment;
  const char* world = std::getenv("WORLD_SIZE");
  if (!world || !*world) return environment;
  environment.world_size = integer_variable("WORLD_SIZE", 1, 1 << 20, std::nullopt);
  if (environment.world_size == 1) return environment;
  environment.rank = integer_variable("RANK", 0, environment.world_size - 1, std::nullopt);
  environment.local_world_size = integer_variable("LOCAL_WORLD_SIZE", 1, environment.world_size, environment.world_size);
  environment.local_rank = integer_variable("LOCAL_RANK", 0, environment.local_world_size - 1, environment.rank);
  REMORA_CHECK(environment.local_rank < environment.local_world_size, "environment: LOCAL_RANK is not set and RANK=",
               environment.rank, " is not below LOCAL_WORLD_SIZE=", environment.local_world_size);
  const char* address = std::getenv("MASTER_ADDR");
  if (!address || !*address) fail("environment: MASTER_ADDR is not set (WORLD_SIZE=", world, " is)");
  environment.master_addr = address;
  environment.master_port = integer_variable("MASTER_PORT", 1, 65535, 29500);
  const char* agent_store = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  environment.agent_hosts_store = agent_store && std::string(agent_store) == "True";
  if (environment.agent_hosts_store) {
    environment.restart_count = integer_variable("TORCHELASTIC_RESTART_COUNT", 0, 1 << 20, std::nullopt);
  }
  return environment;
}

struct DataParallelGroup::Connection {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Collectives> collectives;
  c10::Device device = at::kCPU;  // where collective buffers live (CUDA for NCCL)
  std::chrono::seconds timeout{300};

  // Runs one collective to completion; a failure (a peer that died or timed out) becomes an Error.
  void run(int64_t rank, const char* what, const std::function<c10::intrusive_ptr<c10d::Work>()>& start) const {
    try {
      start()->wait();
    } catch (const std::exception& e) {
      throw PeerLostError("rank " + std::to_string(rank) + ": " + what +
                          " failed: another worker exited, hung past train.dist_timeout, or lost its connection (" +
                          first_line(e) + ")");
    }
  }
};

DataParallelGroup DataParallelGroup::join(const WorkerEnvironment& environment, const std::string& backend,
                                          const c10::Device& device, std::chrono::seconds timeout) {
  DataParallelGroup group;
  group.rank_ = environment.rank;
  group.size_ = environment.world_size;
  if (environment.world_size == 1) return group;
  const std::string chosen = backend == "auto" ? (device.is_cuda() ? "nccl" : "gloo") : backend;
  // Before the rendezvous, where rank 0 would wait for the others.
#ifndef REMORA_WITH_GLOO
  if (chosen == "gloo") fail("train.backend: gloo: this remora was built without Gloo (install libgloo-dev and rebuild)");
#endif
#ifndef REMORA_WITH_NCCL
  if (chosen == "nccl") fail("train.backend: nccl: this remora was built without NCCL (build against a CUDA LibTorch)");
#endif
  if (chosen != "gloo" && chosen != "nccl") fail("train.backend: expected auto, gloo or nccl, got '", backend, "'");
  if (chosen == "nccl" && !device.is_cuda()) fail("train.backend: nccl needs model.device cuda, not ", device.str());
  const std::string where = environment.master_addr + ":" + std::to_string(environment.master_port);

  auto connection = std::make_shared<Connection>();
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(environment.master_port);
  store_options.isServer = environment.rank == 0 && !environment.agent_hosts_store;
  store_options.numWorkers = static_cast<size_t>(environment.world_size);
  store_options.timeout = timeout;
  try {
    connection->store = c10::make_intrusive<c10d::TCPStore>(environment.master_addr, store_options);
    if (environment.agent_hosts_store) {
      connection->store = c10::make_intrusive<c10d::PrefixStore>(
          "/worker/attempt_" + std::to_string(environment.restart_count), connection->store);
    }
  } catch (const std::exception& e) {
    const std::string reason = first_line(e);
    if (store_options.isServer && reason.find("clients joined") != std::string::npos) {
      fail("rank 0: not every worker reached the rendezvous on ", where, " within ", timeout.count(),
           " s (train.dist_timeout): ", reason);
    }
    if (store_options.isServer) {
      fail("rank 0: cannot host the rendezvous on ", where, " (MASTER_ADDR:MASTER_PORT): ", reason);
    }
    fail("rank ", environment.rank, ": cannot reach the rendezvous at ", where, " (MASTER_ADDR:MASTER_PORT) within ",
         timeout.count(), " s: ", reason);
  }

  try {
    if (chosen == "gloo") {
#ifdef REMORA_WITH_GLOO
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      // The interface the user names (as PyTorch reads it), loopback for a one-machine run, else the
      // address this host's name resolves to.
      if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"); interface && *interface) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
      } else if (is_loopback(environment.master_addr)) {
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      connection->collectives = c10::make_intrusive<c10d::ProcessGroupGloo>(
          connection->store, static_cast<int>(environment.rank), static_cast<int>(environment.world_size), options);
#endif
    } else {
#ifdef REMORA_WITH_NCCL
      // Blocking wait: a collective that passes the timeout (a dead or hung peer) throws in this thread,
      // which reports it, instead of the watchdog aborting the process. (1.13 reads the first name,
      // LibTorch 2 the second.)
      setenv("NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
      setenv("TORCH_NCCL_BLOCKING_WAIT", "1", /*overwrite=*/0);
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      connection->collectives = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          connection->store, static_cast<int>(environment.rank), static_cast<int>(environment.world_size), options);
      connection->device = device;
#endif
    }
  } catch (const std::exception& e) {
    fail("rank ", environment.rank, ": cannot connect to the other ", environment.world_size - 1,
         " workers (rendezvous at ", where, ") within ", timeout.count(), " s: ", first_line(e));
  }
  connection->timeout = timeout;
  group.connection_ = std::move(connection);
  return group;
}

void DataParallelGroup::sum(std::vector<at::Tensor>& tensors) const {
  if (!connection_ || tensors.empty()) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}).to(connection_->device, at::kDouble));
  std::vector<at::Tensor> buffer{at::cat(flat)};
  connection_->run(rank_, "summing statistics", [&] { return connection_->collectives->allreduce(buffer); });
  int64_t offset = 0;
  for (auto& t : tensors) {
    t.copy_(buffer[0].narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

namespace {

// Calls `each` with consecutive groups of `tensors` of at most `bucket_bytes` (fp32) each.
void for_each_bucket(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes,
                     const std::function<void(const std::vector<at::Tensor>&)>& each) {
  std::vector<at::Tensor> bucket;
  int64_t bytes = 0;
  for (const auto& t : tensors) {
    if (!bucket.empty() && bytes + t.numel() * 4 > bucket_bytes) {
      each(bucket);
      bucket.clear();
      bytes = 0;
    }
    bucket.push_back(t);
    bytes += t.numel() * 4;
  }
  if (!bucket.empty()) each(bucket);
}

// One contiguous fp32 buffer holding `tensors` end to end, on `device`.
at::Tensor flatten(const std::vector<at::Tensor>& tensors, const c10::Device& device) {
  std::vector<at::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.detach().reshape({-1}).to(device, at::kFloat));
  return at::cat(flat);
}

void unflatten(const at::Tensor& buffer, const std::vector<at::Tensor>& tensors) {
  int64_t offset = 0;
  for (const auto& t : tensors) {
    t.detach().copy_(buffer.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

}  // namespace

void DataParallelGroup::sum_gradients(const std::vector<at::Tensor>& parameters, int64_t bucket_bytes) const {
  if (!connection_ || parameters.empty()) return;
  at::NoGradGuard no_grad;
  // Which parameters have a gradient anywhere: those that have none on any rank keep none (the
  // optimizer then skips them, as in one process); the others get zeros where they have none.
  std::vector<at::Tensor> flags{at::empty({static_cast<int64_t>(parameters.size())}, at::kDouble)};
  auto has_gradient = flags[0].accessor<double, 1>();
  for (size_t i = 0; i < parameters.size(); ++i) has_gradient[i] = parameters[i].grad().defined() ? 1.0 : 0.0;
  sum(flags);  // in place: the accessor reads the sums
  std::vector<at::Tensor> gradients;
  for (size_t i = 0; i < parameters.size(); ++i) {
    at::Tensor p = parameters[i];
    if (has_gradient[i] == 0) continue;
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    gradients.push_back(p.grad());
  }
  for_each_bucket(gradients, bucket_bytes, [&](const std::vector<at::Tensor>& bucket) {
    std::vector<at::Tensor> buffer{flatten(bucket, connection_->device)};
    connection_->run(rank_, "summing gradients", [&] { return connection_->collectives->allreduce(buffer); });
    unflatten(buffer[0], bucket);
  });
}

void DataParallelGroup::broadcast_from_main(const std::vector<at::Tensor>& tensors) const {
  if (!connection_ || tensors.empty()) return;
  at::NoGradGuard no_grad;
  for_each_bucket(tensors, 32 << 20, [&](const std::vector<at::Tensor>& bucket) {
    std::vector<at::Tensor> buffer{flatten(bucket, connection_->device)};
    connection_->run(rank_, "broadcasting rank 0's weights", [&] { return connection_->collectives->broadcast(buffer); });
    unflatten(buffer[0], bucket);
  });
}

void DataParallelGroup::wait_for_main(const std::string& event) const {
  if (!connection_) return;
  const std::string key = "remora/done/" + event;
  try {
    if (rank_ == 0) {
      connection_->store->set(key, std::vector<uint8_t>{1});
    } else {
      connection_->store->wait({key}, std::max<std::chrono::milliseconds>(connection_->timeout, std::chrono::hours(1)));
    }
  } catch (const std::exception& e) {
    throw PeerLostError("rank " + std::to_string(rank_) + ": waiting for rank 0 to write " + event +
                        " failed: it exited or took longer than an hour (" + first_line(e) + ")");
  }
}

void DataParallelGroup::check_agreement(const std::vector<int64_t>& values, const std::string& what) const {
  if (!connection_) return;
  // Every rank sums x and x^2: all equal exactly when sum x = n v and sum x^2 = n v^2 for each rank's v.
  at::Tensor mine = at::tensor(std::vector<double>(values.begin(), values.end()), at::kDouble);
  std::vector<at::Tensor> sums{mine.clone(), mine * mine};
  sum(sums);
  const bool agree = sums[0].equal(mine * static_cast<double>(size_)) &&
                     sums[1].equal(mine * mine * static_cast<double>(size_));
  if (!agree) {
    fail("rank ", rank_, ": the workers disagree on ", what,
         " (each must run the same recipe on the same data and, with --resume, find the same checkpoint)");
  }
}

}  // namespace remora
