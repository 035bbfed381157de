// Serving several adapters on one base: per-row gather / scatter of each adapter's term.
#include "serve/adapter_set.h"

#include <ATen/ATen.h>

#include <set>

#include "adapters/adapter_io.h"
#include "adapters/block_routing.h"
#include "core/error.h"

namespace remora {
namespace {

// A base projection plus the layers of every adapter that targets it.
class MultiAdapterProjection : public Projection {
 public:
  MultiAdapterProjection(std::shared_ptr<Linear> base_layer, std::map<size_t, std::shared_ptr<RoutedLoraLinear>> layers,
                         const RowGroups* groups)
      : base_(register_module("base_layer", std::move(base_layer))), layers_(std::move(layers)), groups_(groups) {}

  at::Tensor forward(const at::Tensor& x) override {
    at::Tensor y = base_->forward(x);
    for (const auto& group : groups_->groups) {
      const auto layer = layers_.find(group.adapter);
      if (layer == layers_.end()) continue;  // this adapter leaves the projection as it is
      if (group.all_rows) {
        // Exactly RoutedLoraLinear::forward, so a batch of one adapter equals running it alone.
        y = y + layer->second->update(x, y.scalar_type());
      } else {
        y.index_add_(0, group.rows, layer->second->update(x.index_select(0, group.rows), y.scalar_type()));
      }
    }
    return y;
  }
  int64_t in_features() const override { return base_->in_features(); }
  int64_t out_features() const override { return base_->out_features(); }

 private:
  std::shared_ptr<Linear> base_;
  std::map<size_t, std::shared_ptr<RoutedLoraLinear>> layers_;
  const RowGroups* groups_;
};

// The rows' slice of what block routers read from a forward's context.
ForwardContext rows_of(const ForwardContext& context, const at::Tensor& rows) {
  ForwardContext part;
  part.token_mask = context.token_mask.index_select(0, rows);
  part.routing_mask = context.routing_mask.index_select(0, rows);
  part.past = context.past;
  return part;
}

}  // namespace

AdapterSet::AdapterSet(std::shared_ptr<CausalLM> base) : base_(std::move(base)) {}

AdapterSet::~AdapterSet() {
  for (const auto& [block, name, linear] : slots_) block->replace_projection(name, linear);
  for (auto& block : hooked_blocks_) block->input_hook = nullptr;
}

int AdapterSet::index_of(const std::string& name) const {
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name) return static_cast<int>(i);
  }
  return -1;
}

void AdapterSet::add(const std::string& name, const std::string& dir) {
  REMORA_CHECK(!installed_, "AdapterSet: adapters are added before install()");
  if (index_of(name) >= 0) fail("adapter name '", name, "' is given twice");
  std::unique_ptr<AdaptedModel> adapter = load_adapter(base_, dir);
  const AdapterConfig& config = adapter->config();
  if (config.method == AdapterMethod::kRetrieval) {
    fail(dir, "/adapter_config.json: method retrieval routes each prompt after a pre-pass of the base model, "
         "which serve does not run; use generate or eval with it");
  }
  if (config.sample_at_inference) {
    fail(dir, "/adapter_config.json: sample_at_inference is true; served outputs must not depend on the "
         "batch, so serve runs routers deterministically (load it without that setting)");
  }
  // The set drives the adapter's layers and routers itself; the base keeps its plain Linears.
  adapter->detach();
  // Serving never trains: the factors are cast to the model's dtype once instead of at every forward
  // (the same values the per-forward cast gives, so outputs do not change).
  const auto dtype = base_->options().dtype().toScalarType();
  for (const auto& layer : adapter->adapted()) {
    // DoRA's weight norm is computed from the fp32 factors at every forward, as in training.
    const bool keep_fp32 = layer->lora_magnitude_vector.defined();
    for (auto& [suffix, factor] : layer->named_factors()) {
      factor.set_requires_grad(false);
      if (!keep_fp32) factor.set_data(factor.to(dtype));
    }
  }
  names_.push_back(name);
  adapters_.push_back(std::move(adapter));
}

void AdapterSet::install() {
  REMORA_CHECK(!installed_, "AdapterSet: install() runs once");
  installed_ = true;
  // Every adapted slot, with each adapter's layer there.
  std::map<std::string, std::map<size_t, std::shared_ptr<RoutedLoraLinear>>> layers_at;
  std::map<std::string, std::vector<std::pair<size_t, std::shared_ptr<BlockRouting>>>> routing_at;
  std::set<std::string> adapted_blocks;
  for (size_t a = 0; a < adapters_.size(); ++a) {
    for (const auto& layer : adapters_[a]->adapted()) {
      layers_at[layer->path()][a] = layer;
      adapted_blocks.insert(layer->path().substr(0, layer->path().rfind('.')));
    }
    for (const auto& routing : adapters_[a]->block_routers()) {
      const std::string& path = routing->path();  // "<block>.router"
      routing_at[path.substr(0, path.rfind('.'))].emplace_back(a, routing);
    }
  }
  std::vector<RoutingState*> states;
  for (auto& adapter : adapters_) states.push_back(&adapter->routing());
  for (const auto& [block_path, layer, block] : base_->projection_blocks()) {
    if (!adapted_blocks.count(block_path)) continue;
    for (const auto& name : block->projection_names()) {
      const auto found = layers_at.find(block_path + "." + name);
      if (found == layers_at.end()) continue;
      auto linear = std::dynamic_pointer_cast<Linear>(block->projection(name));
      REMORA_CHECK(linear, block_path, ".", name, " is already adapted");
      block->replace_projection(name, std::make_shared<MultiAdapterProjection>(linear, found->second, &groups_));
      slots_.emplace_back(block, name, linear);
    }
    // Each adapter's routing state and block router see only that adapter's rows.
    block->input_hook = [this, routings = routing_at[block_path], states](const at::Tensor& x, const ForwardContext& context) {
      for (const auto& group : groups_.groups) {
        ForwardContext part = group.all_rows ? context : rows_of(context, group.rows);
        states[group.adapter]->token_mask = part.token_mask;
        for (const auto& [adapter, routing] : routings) {
          if (adapter == group.adapter) {
            routing->on_block_input(group.all_rows ? x : x.index_select(0, group.rows), part);
          }
        }
      }
    };
    hooked_blocks_.push_back(block);
  }
}

std::vector<at::Tensor> AdapterSet::sequence_decisions(int adapter) const {
  std::vector<at::Tensor> decisions;
  if (adapter < 0 || adapters_[adapter]->config().routing != RoutingGranularity::kSequence) return decisions;
  for (const auto& routing : adapters_[adapter]->block_routers()) decisions.push_back(routing->sequence_gate());
  return decisions;
}

void AdapterSet::set_rows(const std::vector<int>& adapter_of_row, const std::vector<std::vector<at::Tensor>>& row_decisions) {
  const auto device = base_->options().device();
  std::map<size_t, std::vector<int64_t>> rows;
  for (size_t row = 0; row < adapter_of_row.size(); ++row) {
    const int adapter = adapter_of_row[row];
    REMORA_CHECK(adapter >= -1 && adapter < static_cast<int>(adapters_.size()), "row ", row,
                 ": no adapter with index ", adapter);
    if (adapter >= 0) rows[adapter].push_back(static_cast<int64_t>(row));
  }
  groups_.groups.clear();
  for (auto& [adapter, list] : rows) {
    RowGroups::Group group;
    group.adapter = adapter;
    group.all_rows = list.size() == adapter_of_row.size();
    group.rows = at::tensor(list, at::kLong).to(device);
    groups_.groups.push_back(std::move(group));
    if (row_decisions.empty() || adapters_[adapter]->config().routing != RoutingGranularity::kSequence) continue;
    // The group's rows' prompt decisions, stacked in row order, for every block router.
    const auto& routers = adapters_[adapter]->block_routers();
    for (size_t j = 0; j < routers.size(); ++j) {
      std::vector<at::Tensor> rows_decisions;
      for (const int64_t row : list) {
        REMORA_CHECK(row_decisions.at(row).size() == routers.size(), "row ", row, ": no saved sequence routing decision");
        rows_decisions.push_back(row_decisions[row][j]);
      }
      routers[j]->set_sequence_gate(at::cat(rows_decisions));
    }
  }
}

}  // namespace remora
