// Report assembly, metrics-log reading and the HTML embedding.
#include "eval/routing_report.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>

#include "core/error.h"
#include "core/file_util.h"
#include "core/jsonl.h"
#include "eval/routing_report_template.h"  // generated from eval/report/routing_report.html

namespace remora {
namespace {

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

nlohmann::json adapter_json(const AdapterRouting& adapter) {
  int64_t n = 0, k = 0;
  nlohmann::json sites = nlohmann::json::array();
  for (const auto& site : adapter.sites) {
    n = std::max(n, site.num_experts);
    k = std::max(k, site.active_experts);
    sites.push_back(to_json(site));
  }
  return {{"label", adapter.label}, {"path", adapter.path}, {"method", adapter.method}, {"num_experts", n},
          {"top_k", k}, {"loss", adapter.loss}, {"sites", sites}};
}

nlohmann::json curves_json(const TrainingCurves& curves) {
  nlohmann::json sites = nlohmann::json::array();
  for (const auto& site : curves.sites) {
    sites.push_back({{"site", site.site}, {"layer", site.layer}, {"steps", site.steps}, {"mean_ess", site.mean_ess}});
  }
  return {{"label", curves.label},
          {"path", curves.path},
          {"steps", curves.steps},
          {"loss", curves.loss},
          {"validation", {{"steps", curves.validation_steps}, {"loss", curves.validation_loss}}},
          {"sites", sites}};
}

}  // namespace

TrainingCurves read_training_curves(const std::string& path, const std::string& label) {
  require_regular_file(path, "metrics log");
  std::ifstream in(path);
  if (!in) fail(path, ": cannot open the metrics log");
  TrainingCurves curves;
  curves.label = label;
  curves.path = path;
  std::map<std::string, SiteCurve> sites;
  std::string text;
  for (int64_t number = 1; std::getline(in, text); ++number) {
    if (is_blank_line(text)) continue;
    const nlohmann::json record = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded() && in.eof()) {
      // The last line of a run that is still training may be half written: plot what is complete.
      std::cerr << "warning: " << path << ":" << number << ": skipped an incomplete last line\n";
      break;
    }
    if (!record.is_object() || !record.contains("step") || !record["step"].is_number_integer()) {
      fail(path, ":", number, ": expected a JSON object with an integer 'step' (a remora metrics.jsonl line)");
    }
    const int64_t step = record["step"].get<int64_t>();
    if (record.contains("loss") && record["loss"].is_number()) {
      curves.steps.push_back(step);
      curves.loss.push_back(record["loss"].get<double>());
    }
    if (record.contains("validation_loss") && record["validation_loss"].is_number()) {
      curves.validation_steps.push_back(step);
      curves.validation_loss.push_back(record["validation_loss"].get<double>());
    }
    if (record.contains("routing") && record["routing"].is_array()) {
      for (const auto& site : record["routing"]) {
        if (!site.is_object() || !site.contains("site") || !site["site"].is_string() || !site.contains("mean_ess") ||
            !site["mean_ess"].is_number()) {
          fail(path, ":", number, ": each 'routing' entry needs a string 'site' and a numeric 'mean_ess'");
        }
        SiteCurve& curve = sites[site["site"].get<std::string>()];
        curve.site = site["site"].get<std::string>();
        curve.steps.push_back(step);
        curve.mean_ess.push_back(site["mean_ess"].get<double>());
      }
    }
  }
  if (curves.steps.empty()) fail(path, ": no training steps logged (no lines with 'step' and 'loss')");
  for (auto& [name, curve] : sites) {
    curve.layer = layer_of(name);
    curves.sites.push_back(std::move(curve));
  }
  std::stable_sort(curves.sites.begin(), curves.sites.end(),
                   [](const SiteCurve& a, const SiteCurve& b) { return a.layer < b.layer; });
  return curves;
}

nlohmann::json to_json(const RoutingReport& report) {
  nlohmann::json adapters = nlohmann::json::array(), training = nlohmann::json::array();
  for (const auto& adapter : report.adapters) adapters.push_back(adapter_json(adapter));
  for (const auto& curves : report.training) training.push_back(curves_json(curves));
  return {{"title", "remora routing report"}, {"created", utc_now()}, {"dataset", report.dataset},
          {"examples", report.examples},       {"adapters", adapters}, {"training", training}};
}

std::string render_html(const nlohmann::json& report) {
  static const std::string placeholder = "\"__REMORA_REPORT_DATA__\"";
  std::string page = kRoutingReportTemplate;
  const size_t at = page.find(placeholder);
  REMORA_CHECK(at != std::string::npos, "the report template has no data placeholder");
  // Inside <script>, "</script" or "<!--" in a string (a dataset path, say) would end or swallow
  // the element: every "<" (only ever inside JSON strings) is written as the escape \u003c.
  std::string data = report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  for (size_t pos = 0; (pos = data.find('<', pos)) != std::string::npos; pos += 6) data.replace(pos, 1, "\\u003c");
  page.replace(at, placeholder.size(), data);
  return page;
}

}  // namespace remora
