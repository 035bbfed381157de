// Statistics of captured routing decisions: effective support size, load, entropy, subsets (spec §4).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "adapters/routing.h"

namespace remora {

struct SiteRoutingStats {
  std::string site;
  int64_t tokens = 0;
  double mean_ess = 0, min_ess = 0;  // ESS(π) = (Σ|π_i|)² / Σ π_i²: one-hot 1, uniform over n: n
  double mean_top_weight = 0;        // largest gate weight's share of the token's total
  double entropy = 0;                // mean entropy of the router distribution (nats)
  std::vector<double> load;          // share of tokens that activate each expert (weight-based when dense)
  int64_t distinct_subsets = 0;      // distinct sets of selected experts (0 for dense routers)
};

std::vector<SiteRoutingStats> routing_stats(const RoutingCapture& capture);
nlohmann::json to_json(const SiteRoutingStats& stats);

}  // namespace remora
