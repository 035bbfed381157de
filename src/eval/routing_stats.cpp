// Routing statistics from a capture.
#include "eval/routing_stats.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <regex>
#include <set>

namespace remora {
namespace {

// Equal-width bins over [low, high], closed on the right: (e_i, e_i+1], the first also holding `low`,
// so a value at an edge (ESS exactly k, a top weight of exactly 1/k) falls in the bin it ends.
// Values outside are clamped into the end bins.
Histogram histogram(const at::Tensor& values, double low, double high, int64_t bins) {
  Histogram out;
  for (int64_t i = 0; i <= bins; ++i) out.edges.push_back(low + (high - low) * i / bins);
  // Multiplying before dividing keeps edges exact for integer and dyadic values.
  at::Tensor index = ((values.to(at::kDouble) - low) * bins / std::max(high - low, 1e-12)).ceil() - 1;
  at::Tensor counts = at::bincount(index.clamp(0, bins - 1).to(at::kLong), {}, bins);
  out.counts.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + bins);
  return out;
}

}  // namespace

int64_t layer_of(const std::string& site) {
  static const std::regex pattern(R"((?:^|\.)layers\.(\d+)\.)");
  std::smatch match;
  return std::regex_search(site, match, pattern) ? std::stoll(match[1]) : -1;
}

std::vector<SiteRoutingStats> routing_stats(const RoutingCapture& capture) {
  // One ESS bin layout for every router (over [1, the most experts any has]), so that routers with
  // different numbers of experts (layer_num_experts) line up in a heatmap.
  int64_t most_experts = 2;
  for (const auto& [site, record] : capture.sites) {
    if (!record.weights.empty()) most_experts = std::max(most_experts, record.experts);
  }
  const int64_t ess_bins = std::clamp<int64_t>(4 * (most_experts - 1), 4, 40);
  std::vector<SiteRoutingStats> out;
  for (const auto& [site, record] : capture.sites) {
    if (record.weights.empty()) continue;
    at::Tensor weights = at::cat(record.weights).abs();  // [N, n], or [N, k] the selected experts'
    // (the others weigh zero, which adds nothing to ESS's sums and cannot be the largest)
    SiteRoutingStats stats;
    stats.site = site;
    stats.layer = layer_of(site);
    stats.tokens = weights.size(0);
    if (stats.tokens == 0) continue;
    stats.num_experts = record.experts;
    stats.active_experts = record.selected.empty() ? stats.num_experts : record.selected.front().size(1);
    at::Tensor total = weights.sum(-1);
    at::Tensor ess = total.pow(2) / weights.pow(2).sum(-1).clamp_min(1e-30);
    stats.mean_ess = ess.mean().item<double>();
    stats.min_ess = ess.min().item<double>();
    stats.max_ess = ess.max().item<double>();
    stats.ess_histogram = histogram(ess, 1.0, static_cast<double>(most_experts), ess_bins);
    at::Tensor top = std::get<0>(weights.max(-1)) / total.clamp_min(1e-30);
    stats.mean_top_weight = top.mean().item<double>();
    stats.top_weight_histogram = histogram(top, 0.0, 1.0, 20);
    if (!record.entropy.empty()) stats.entropy = at::cat(record.entropy).mean().item<double>();
    // Selected experts count whatever their weight; dense routers report their mean weight share.
    const at::Tensor selected = record.selected.empty() ? at::Tensor() : at::cat(record.selected).to(at::kLong);
    at::Tensor load = !selected.defined()
                          ? (weights / total.unsqueeze(-1).clamp_min(1e-30)).mean(0)
                          : at::bincount(selected.flatten(), {}, stats.num_experts).to(at::kDouble) /
                                static_cast<double>(stats.tokens);
    load = load.to(at::kDouble).contiguous();
    stats.load.assign(load.data_ptr<double>(), load.data_ptr<double>() + load.numel());
    if (selected.defined()) {
      at::Tensor chosen = std::get<0>(selected.sort(-1)).contiguous();
      std::set<std::vector<int64_t>> subsets;
      const int64_t* data = chosen.data_ptr<int64_t>();
      for (int64_t i = 0; i < chosen.size(0); ++i) {
        subsets.emplace(data + i * chosen.size(1), data + (i + 1) * chosen.size(1));
      }
      stats.distinct_subsets = static_cast<int64_t>(subsets.size());
    }
    out.push_back(std::move(stats));
  }
  // Layer order (the capture's map sorts "layers.10" before "layers.2").
  std::stable_sort(out.begin(), out.end(),
                   [](const SiteRoutingStats& a, const SiteRoutingStats& b) { return a.layer < b.layer; });
  return out;
}

nlohmann::json to_json(const Histogram& h) { return {{"edges", h.edges}, {"counts", h.counts}}; }

nlohmann::json to_json(const SiteRoutingStats& s) {
  return {{"site", s.site},
          {"layer", s.layer},
          {"num_experts", s.num_experts},
          {"active_experts", s.active_experts},
          {"tokens", s.tokens},
          {"mean_ess", s.mean_ess},
          {"min_ess", s.min_ess},
          {"max_ess", s.max_ess},
          {"ess_histogram", to_json(s.ess_histogram)},
          {"mean_top_weight", s.mean_top_weight},
          {"top_weight_histogram", to_json(s.top_weight_histogram)},
          {"entropy", s.entropy ? nlohmann::json(*s.entropy) : nlohmann::json(nullptr)},
          {"load", s.load},
          {"distinct_subsets", s.distinct_subsets}};
}

}  // namespace remora
