// Many adapters on one base model at once, each batch row applying only its own (S-LoRA-style).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "adapters/adapted_model.h"
#include "model/decoder.h"

namespace remora {

// Which rows of the next forward use which adapter: filled by AdapterSet::set_rows and read by every
// projection and block hook the set installs.
struct RowGroups {
  struct Group {
    size_t adapter = 0;   // index into AdapterSet's adapters
    at::Tensor rows;      // [rows] int64 on the model's device
    bool all_rows = false;  // every row of the batch: no gather or scatter needed
  };
  std::vector<Group> groups;  // adapters present in the batch, in index order
};

// The base model with every loaded adapter's layers behind one projection per adapted slot:
// y = W0 x for every row, plus each adapter's term on its own rows only (gathered, computed, and
// scattered back), so one batch mixes adapters and the bare base. Block routers see only their
// adapter's rows, as they would running alone, so a row's output never depends on its neighbours.
class AdapterSet {
 public:
  explicit AdapterSet(std::shared_ptr<CausalLM> base);
  // Puts the base model's projections and hooks back.
  ~AdapterSet();
  AdapterSet(const AdapterSet&) = delete;
  AdapterSet& operator=(const AdapterSet&) = delete;

  // Loads the adapter folder `dir` as `name` (before `install`). Throws Error for an adapter whose
  // output would depend on the batch (one that samples its experts at inference).
  void add(const std::string& name, const std::string& dir);
  // Swaps the multi-adapter projections and block hooks into the base model.
  void install();

  // Selects each row's adapter for the next forward: -1 for the bare base, else an adapter index.
  // With `routing: sequence` adapters, cached decoding reuses each row's prompt decision: pass each
  // row's `sequence_decisions` (saved after its prefill; empty for other rows).
  void set_rows(const std::vector<int>& adapter_of_row,
                const std::vector<std::vector<at::Tensor>>& row_decisions = {});
  // The decisions [1, n] of every sequence-routed block router of `adapter` after a one-row forward
  // (its prefill); empty for adapters that route per token.
  std::vector<at::Tensor> sequence_decisions(int adapter) const;

  CausalLM& model() { return *base_; }
  const std::vector<std::string>& names() const { return names_; }
  // The adapter's index, or -1 if no adapter has that name.
  int index_of(const std::string& name) const;

 private:
  std::shared_ptr<CausalLM> base_;
  std::vector<std::string> names_;
  std::vector<std::unique_ptr<AdaptedModel>> adapters_;  // detached: their layers are driven from here
  RowGroups groups_;
  // Every slot the set replaced, to put the base Linear back.
  std::vector<std::tuple<std::shared_ptr<ProjectionBlock>, std::string, std::shared_ptr<Linear>>> slots_;
  std::vector<std::shared_ptr<ProjectionBlock>> hooked_blocks_;
  bool installed_ = false;
};

}  // namespace remora
