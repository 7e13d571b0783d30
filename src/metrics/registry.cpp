#include "tether/metrics/registry.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <prometheus/text_serializer.h>

namespace tether::metrics {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::vector<prometheus::ClientMetric::Label> to_labels(const labels& l) {
  std::vector<prometheus::ClientMetric::Label> out;
  out.reserve(l.size());
  for (const auto& [name, value] : l) {
    out.push_back({name, value});
  }
  return out;
}

bool ascii_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

// Prometheus label names: [a-zA-Z_][a-zA-Z0-9_]*, "__" prefix reserved; `le` is the histogram's.
void check_labels(const std::string& metric, const labels& l, metric_kind kind) {
  for (const auto& [name, value] : l) {
    const bool valid =
        !name.empty() && ascii_letter(name[0]) &&
        std::all_of(name.begin(), name.end(),
                    [](char c) { return ascii_letter(c) || (c >= '0' && c <= '9'); }) &&
        name.rfind("__", 0) != 0 && !(kind == metric_kind::histogram && name == "le");
    if (!valid) {
      throw std::invalid_argument("metric '" + metric + "': label name '" + name +
                                  "' is not a valid Prometheus label name");
    }
  }
}

} // namespace

void check_name(const std::string& name, metric_kind kind) {
  const auto fail = [&](const std::string& why) {
    throw std::invalid_argument("metric name '" + name + "': " + why);
  };
  if (name.rfind("tether_", 0) != 0) {
    fail("must start with 'tether_'");
  }
  for (const char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
      fail("may hold only lower-case letters, digits and '_'");
    }
  }
  if (std::count(name.begin(), name.end(), '_') < 2 || name.find("__") != std::string::npos ||
      name.back() == '_') {
    fail("must read tether_<subsystem>_<what>[_<unit>], with no empty part");
  }
  switch (kind) {
  case metric_kind::counter:
    if (!ends_with(name, "_total")) {
      fail("a counter must end in '_total'");
    }
    break;
  case metric_kind::gauge:
    if (ends_with(name, "_total")) {
      fail("only counters end in '_total'");
    }
    break;
  case metric_kind::histogram:
    if (!ends_with(name, "_seconds") && !ends_with(name, "_bytes")) {
      fail("a histogram must be in a base unit: end in '_seconds' or '_bytes'");
    }
    break;
  }
}

struct registry::histogram_family {
  std::string help;
  std::vector<double> bounds;
  std::map<labels, std::unique_ptr<histogram>> series;
};

struct callback_registration::family {
  std::string name;
  std::string help;
  metric_kind kind;
  std::mutex mutex;
  std::uint64_t next_id = 1;
  std::map<std::uint64_t, std::pair<labels, std::function<double()>>> series;
};

callback_registration& callback_registration::operator=(callback_registration&& other) noexcept {
  if (this != &other) {
    reset();
    family_ = std::move(other.family_);
    id_ = other.id_;
    other.id_ = 0;
  }
  return *this;
}

callback_registration::~callback_registration() {
  reset();
}

void callback_registration::reset() noexcept {
  if (auto f = family_.lock()) {
    const std::lock_guard lock{f->mutex};
    f->series.erase(id_);
  }
  family_.reset();
  id_ = 0;
}

registry::registry() : prometheus_{std::make_shared<prometheus::Registry>()} {}

registry::~registry() = default;

void registry::claim(const std::string& name, metric_kind kind, source from) {
  check_name(name, kind);
  const auto [it, inserted] = names_.emplace(name, std::make_pair(kind, from));
  if (!inserted && it->second != std::make_pair(kind, from)) {
    throw std::invalid_argument("metric name '" + name +
                                "' is already registered as another kind of metric");
  }
}

prometheus::Family<prometheus::Counter>& registry::counter(const std::string& name,
                                                           const std::string& help) {
  const std::lock_guard lock{mutex_};
  claim(name, metric_kind::counter, source::prometheus);
  return prometheus::BuildCounter().Name(name).Help(help).Register(*prometheus_);
}

prometheus::Family<prometheus::Gauge>& registry::gauge(const std::string& name,
                                                       const std::string& help) {
  const std::lock_guard lock{mutex_};
  claim(name, metric_kind::gauge, source::prometheus);
  return prometheus::BuildGauge().Name(name).Help(help).Register(*prometheus_);
}

histogram& registry::histogram_series(const std::string& name, const std::string& help,
                                      const labels& series_labels,
                                      const std::vector<double>& bounds) {
  const std::lock_guard lock{mutex_};
  check_labels(name, series_labels, metric_kind::histogram);
  claim(name, metric_kind::histogram, source::histogram);
  auto& family = histograms_[name];
  if (!family) {
    family = std::make_unique<histogram_family>();
    family->help = help;
    family->bounds = bounds;
  } else if (family->bounds != bounds) {
    throw std::invalid_argument("histogram '" + name + "' registered again with other buckets");
  }
  auto& series = family->series[series_labels];
  if (!series) {
    series = std::make_unique<histogram>(family->bounds);
  }
  return *series;
}

callback_registration registry::callback(const std::string& name, const std::string& help,
                                         metric_kind kind, const labels& series_labels,
                                         std::function<double()> read) {
  if (kind == metric_kind::histogram) {
    throw std::invalid_argument("metric '" + name + "': a callback is a counter or a gauge");
  }
  const std::lock_guard lock{mutex_};
  check_labels(name, series_labels, kind);
  claim(name, kind, source::callback);
  auto& family = callbacks_[name];
  if (!family) {
    family = std::make_shared<callback_registration::family>();
    family->name = name;
    family->help = help;
    family->kind = kind;
  }
  const std::lock_guard family_lock{family->mutex};
  for (const auto& [id, entry] : family->series) {
    if (entry.first == series_labels) {
      throw std::invalid_argument("metric '" + name +
                                  "': a series with these labels is already registered");
    }
  }
  const std::uint64_t id = family->next_id++;
  family->series.emplace(id, std::make_pair(series_labels, std::move(read)));
  return callback_registration{family, id};
}

std::vector<prometheus::MetricFamily> registry::collect() const {
  std::vector<prometheus::MetricFamily> out = prometheus_->Collect();
  const std::lock_guard lock{mutex_};
  for (const auto& [name, family] : histograms_) {
    prometheus::MetricFamily mf{name, family->help, prometheus::MetricType::Histogram, {}};
    for (const auto& [series_labels, h] : family->series) {
      prometheus::ClientMetric metric;
      metric.label = to_labels(series_labels);
      const auto counts = h->bucket_counts();
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        metric.histogram.bucket.push_back(
            {cumulative, i < family->bounds.size() ? family->bounds[i]
                                                   : std::numeric_limits<double>::infinity()});
      }
      metric.histogram.sample_count = cumulative;
      metric.histogram.sample_sum = h->sum();
      mf.metric.push_back(std::move(metric));
    }
    out.push_back(std::move(mf));
  }
  for (const auto& [name, family] : callbacks_) {
    const bool is_counter = family->kind == metric_kind::counter;
    prometheus::MetricFamily mf{name,
                                family->help,
                                is_counter ? prometheus::MetricType::Counter
                                           : prometheus::MetricType::Gauge,
                                {}};
    const std::lock_guard family_lock{family->mutex};
    for (const auto& [id, entry] : family->series) {
      prometheus::ClientMetric metric;
      metric.label = to_labels(entry.first);
      const double value = entry.second();
      if (is_counter) {
        metric.counter.value = value;
      } else {
        metric.gauge.value = value;
      }
      mf.metric.push_back(std::move(metric));
    }
    if (!mf.metric.empty()) {
      out.push_back(std::move(mf));
    }
  }
  return out;
}

std::string registry::expose() const {
  return prometheus::TextSerializer{}.Serialize(collect());
}

} // namespace tether::metrics
