// Routing statistics from a capture.
#include "eval/routing_stats.h"

#include <ATen/ATen.h>

#include <set>

namespace remora {

std::vector<SiteRoutingStats> routing_stats(const RoutingCapture& capture) {
  std::vector<SiteRoutingStats> out;
  for (const auto& [site, record] : capture.sites) {
    if (record.weights.empty()) continue;
    at::Tensor weights = at::cat(record.weights).abs();  // [N, n]
    SiteRoutingStats stats;
    stats.site = site;
    stats.tokens = weights.size(0);
    if (stats.tokens == 0) continue;
    at::Tensor total = weights.sum(-1);
    at::Tensor ess = total.pow(2) / weights.pow(2).sum(-1).clamp_min(1e-30);
    stats.mean_ess = ess.mean().item<double>();
    stats.min_ess = ess.min().item<double>();
    stats.mean_top_weight = (std::get<0>(weights.max(-1)) / total.clamp_min(1e-30)).mean().item<double>();
    if (!record.probs.empty()) {
      at::Tensor probs = at::cat(record.probs);
      stats.entropy = (-(probs * probs.clamp_min(1e-30).log()).sum(-1)).mean().item<double>();
    }
    at::Tensor load = record.selected.empty()
                          ? (weights / total.unsqueeze(-1).clamp_min(1e-30)).mean(0)
                          : (weights > 0).to(at::kFloat).mean(0);
    stats.load = std::vector<double>(load.data_ptr<float>(), load.data_ptr<float>() + load.numel());
    if (!record.selected.empty()) {
      at::Tensor chosen = std::get<0>(at::cat(record.selected).sort(-1));
      std::set<std::vector<int64_t>> subsets;
      auto rows = chosen.accessor<int64_t, 2>();
      for (int64_t i = 0; i < chosen.size(0); ++i) {
        std::vector<int64_t> subset(chosen.size(1));
        for (int64_t j = 0; j < chosen.size(1); ++j) subset[j] = rows[i][j];
        subsets.insert(subset);
      }
      stats.distinct_subsets = static_cast<int64_t>(subsets.size());
    }
    out.push_back(std::move(stats));
  }
  return out;
}

nlohmann::json to_json(const SiteRoutingStats& s) {
  return {{"site", s.site}, {"tokens", s.tokens}, {"mean_ess", s.mean_ess}, {"min_ess", s.min_ess},
          {"mean_top_weight", s.mean_top_weight}, {"entropy", s.entropy}, {"load", s.load},
          {"distinct_subsets", s.distinct_subsets}};
}

}  // namespace remora
