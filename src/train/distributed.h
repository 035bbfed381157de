// Data-parallel training on c10d: the worker's place from the torchrun environment, joining the
// process group (Gloo on CPU, NCCL on CUDA), and the few collectives the trainer needs.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace remora {

// Where this process stands among the workers, as torchrun describes it.
struct WorkerEnvironment {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  int64_t local_world_size = 1;
  std::string master_addr;
  int64_t master_port = 29500;
  // torchrun's agent already hosts the rendezvous store on MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE):
  // every worker connects to it, under the key prefix of this restart attempt, as PyTorch's do.
  bool agent_hosts_store = false;
  int64_t restart_count = 0;  // TORCHELASTIC_RESTART_COUNT
};

// A collective that could not finish because another worker exited, hung or lost its connection:
// the consequence of a failure elsewhere. `remora` exits with kPeerLostExitStatus for it, so that the
// launcher names the worker that failed first rather than the ones that lost it.
class PeerLostError : public Error {
 public:
  using Error::Error;
};
constexpr int kPeerLostExitStatus = 3;

// Reads RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT (and torchrun's
// TORCHELASTIC_USE_AGENT_STORE, TORCHELASTIC_RESTART_COUNT). Without
// WORLD_SIZE (or with WORLD_SIZE=1) this is a single process. Throws Error naming the variable for a
// missing or malformed value.
WorkerEnvironment worker_environment();

// The workers of one training run. A default-constructed group has one member and its collectives
// return at once, so the trainer has a single code path. Every collective is called by every rank in
// the same order; one that cannot finish (a rank died, hung past the timeout, or is unreachable) throws
// Error naming this rank, so that no worker waits forever.
class DataParallelGroup {
 public:
  DataParallelGroup() = default;
  // Joins the group: rank 0 hosts the rendezvous (c10d TCPStore) at MASTER_ADDR:MASTER_PORT (unless
  // torchrun's agent does), the others connect to it. `backend` is "gloo", "nccl" or "auto" (NCCL for CUDA devices). `timeout` bounds the
  // rendezvous and every later collective.
  static DataParallelGroup join(const WorkerEnvironment& environment, const std::string& backend,
                                const c10::Device& device, std::chrono::seconds timeout);

  int64_t rank() const { return rank_; }
  int64_t size() const { return size_; }
  bool is_main() const { return rank_ == 0; }

  // Sums each tensor over the ranks, in place (small statistics: counts, losses, flags).
  void sum(std::vector<at::Tensor>& tensors) const;
  // Sums the gradients of `parameters` over the ranks, in buckets of at most `bucket_bytes`; a
  // parameter without a gradient on this rank contributes zeros (an expert that got no tokens here).
  void sum_gradients(const std::vector<at::Tensor>& parameters, int64_t bucket_bytes = 32 << 20) const;
  // Copies rank 0's values of `tensors` into every rank's.
  void broadcast_from_main(const std::vector<at::Tensor>& tensors) const;
  // Rank 0 announces that it has finished writing `event` (a checkpoint, the outputs); the others wait
  // for that, up to max(train.dist_timeout, 1 hour): writing a big checkpoint may take longer than a
  // collective may, and a rank 0 that dies meanwhile ends the wait at once.
  void wait_for_main(const std::string& event) const;
  // Throws Error on every rank unless every rank passed the same `values` (small non-negative
  // integers: counts, hashes): workers with different recipes, data or checkpoints would otherwise
  // run different collectives.
  void check_agreement(const std::vector<int64_t>& values, const std::string& what) const;

 private:
  struct Connection;
  std::shared_ptr<Connection> connection_;  // null for a group of one
  int64_t rank_ = 0, size_ = 1;
};

}  // namespace remora
