#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>

#include "tether/metrics/histogram.hpp"

namespace tether::metrics {

/// Label names to values.
using labels = std::map<std::string, std::string>;

/// `l` with one more label (or `name` set to `value`).
[[nodiscard]] inline labels with_label(labels l, const std::string& name, std::string_view value) {
  l[name] = std::string{value};
  return l;
}

/// What a metric is, for name checks and exposition.
enum class metric_kind { counter, gauge, histogram };

/// Checks a metric name against tether's conventions: `tether_<subsystem>_<what>_<unit>`,
/// counters end in `_total`, histograms in a base unit (`_seconds` or `_bytes`), gauges do not
/// end in `_total`. Throws std::invalid_argument saying what is wrong.
void check_name(const std::string& name, metric_kind kind);

class registry;

/// Keeps a callback metric registered; dropping it removes the series.
class callback_registration {
public:
  callback_registration() = default;
  callback_registration(callback_registration&&) noexcept = default;
  callback_registration& operator=(callback_registration&&) noexcept;
  callback_registration(const callback_registration&) = delete;
  callback_registration& operator=(const callback_registration&) = delete;
  ~callback_registration();

private:
  friend class registry;
  struct family;
  callback_registration(std::weak_ptr<family> f, std::uint64_t id) noexcept
      : family_{std::move(f)}, id_{id} {}
  void reset() noexcept;

  std::weak_ptr<family> family_;
  std::uint64_t id_ = 0;
};

/// tether's metric registry: prometheus-cpp's Registry for counters and gauges, plus tether's
/// lock-free histograms and callback metrics (read from their owner at scrape time), exposed
/// together in the Prometheus text format. Registration takes a lock and belongs at setup;
/// updating a counter, gauge or histogram it returned never does.
class registry {
public:
  registry();
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;
  ~registry();

  /// A counter family; `family.Add(labels)` gives a counter to keep and Increment().
  prometheus::Family<prometheus::Counter>& counter(const std::string& name,
                                                   const std::string& help);
  /// A gauge family; `family.Add(labels)` gives a gauge to keep and Set().
  prometheus::Family<prometheus::Gauge>& gauge(const std::string& name, const std::string& help);
  /// A histogram series (its family is made on first use); keep the reference and observe().
  histogram& histogram_series(const std::string& name, const std::string& help,
                              const labels& series_labels,
                              const std::vector<double>& bounds = latency_buckets());

  /// A series whose value is read from `read` at each scrape, for values their owner already
  /// keeps (a breaker's state, a limit's remaining count). `kind` is counter or gauge.
  [[nodiscard]] callback_registration callback(const std::string& name, const std::string& help,
                                               metric_kind kind, const labels& series_labels,
                                               std::function<double()> read);

  /// Every metric family, as prometheus-cpp's serializers take them.
  [[nodiscard]] std::vector<prometheus::MetricFamily> collect() const;
  /// The Prometheus text exposition format (version 0.0.4).
  [[nodiscard]] std::string expose() const;

private:
  struct histogram_family;
  // Which store a name's series live in: one name, one family, one store.
  enum class source { prometheus, histogram, callback };
  void claim(const std::string& name, metric_kind kind, source from);

  std::shared_ptr<prometheus::Registry> prometheus_;
  mutable std::mutex mutex_;
  std::map<std::string, std::pair<metric_kind, source>> names_;
  std::map<std::string, std::unique_ptr<histogram_family>> histograms_;
  std::map<std::string, std::shared_ptr<callback_registration::family>> callbacks_;
};

} // namespace tether::metrics
