#include "tether/proxy/server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/async.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "tether/core/random.hpp"
#include "tether/core/text.hpp"
#include "tether/http/connection.hpp"
#include "tether/http/request_target.hpp"
#include "tether/http/serializer.hpp"
#include "tether/http/server.hpp"
#include "tether/metrics/histogram.hpp"
#include "tether/metrics/resilience_metrics.hpp"
#include "tether/net/listener.hpp"
#include "tether/pool/connection_pool.hpp"
#include "tether/pool/pool_metrics.hpp"
#include "tether/upstream/balancer.hpp"

namespace tether::proxy {

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using steady = std::chrono::steady_clock;
using upstream_pool = pool::connection_pool<http::http_connector>;

// ---------------------------------------------------------------------------------------------
// Counters shared by the workers (atomics only), read by /clusters and /metrics.

struct endpoint_counters {
  std::string name;                       // host:port
  std::atomic<std::uint64_t> requests{0}; // attempts sent to it
  std::atomic<std::int64_t> active{0};
  std::atomic<std::uint64_t> failures{0}; // connect failures, resets, timeouts, 5xx
  // Resilience state of the host, shared by every worker.
  std::unique_ptr<resilience::circuit_breaker> breaker; // null: breaker off
  resilience::breaker_failures breaker_failures = resilience::breaker_failures::gateway_errors;
  std::shared_ptr<resilience::outlier_host> outlier; // null: outlier detection off
  std::atomic<bool> healthy{true};                   // the active health check's verdict
  std::atomic<bool> checked{true}; // false until a health-checked host's first verdict
  prometheus::Counter* attempts = nullptr;
  prometheus::Counter* checks_passed = nullptr;
  prometheus::Counter* checks_failed = nullptr;
  prometheus::Counter* ejections = nullptr;
  // A host given by name: its addresses, resolved every resolve_interval (null for an IP).
  std::shared_ptr<net::address_cache> addresses;
  prometheus::Counter* resolved = nullptr;
  prometheus::Counter* resolve_failed = nullptr;

  /// May get requests: not taken out by its health check nor ejected (the breaker is asked
  /// separately, since asking it is what moves it from open to half-open).
  [[nodiscard]] bool in_service() const noexcept {
    return healthy.load(std::memory_order_relaxed) && (!outlier || !outlier->ejected());
  }
};

/// Passes through tether a request may have made (its Via entries "tether") before it is taken
/// for a loop. A chain of sidecar, edge and sidecar is three.
constexpr std::size_t max_tether_hops = 10;

/// The Allow field of an answer the proxy gives as a request's final recipient.
constexpr std::string_view allowed_methods =
    "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH\r\n";

/// The status the access log gives a request whose client went away before its answer (nginx's).
constexpr int client_closed_request = 499;

enum class response_class : std::uint8_t { c1xx, c2xx, c3xx, c4xx, c5xx, count_ };
constexpr std::array<const char*, 5> class_names = {"1xx", "2xx", "3xx", "4xx", "5xx"};

// Why the proxy answered itself (or gave up on a request).
enum class cause : std::uint8_t {
  no_route,
  bad_request,
  header_timeout,
  connect_failure,
  pool_timeout,
  upstream_reset,
  upstream_timeout,
  bad_response,
  downstream_reset,
  overflow,
  circuit_open,
  count_
};
constexpr std::array<const char*, 11> cause_names = {
    "no_route",         "bad_request",    "header_timeout",   "connect_failure",
    "pool_timeout",     "upstream_reset", "upstream_timeout", "bad_response",
    "downstream_reset", "overflow",       "circuit_open"};

// The thresholds of resilience::cluster_limits, as metric labels.
enum class resource : std::uint8_t { connections, pending_requests, requests, retries, count_ };
constexpr std::array<const char*, 4> resource_names = {"connections", "pending_requests",
                                                       "requests", "retries"};

// Reasons of tether_proxy_retries_total: the attempt results (resilience::attempt_result).
constexpr std::array<const char*, 6> retry_reason_names = {
    "success", "connect_failure", "refused", "reset", "timeout", "http_status"};

struct cluster_counters {
  std::vector<std::unique_ptr<endpoint_counters>> endpoints;
  std::array<prometheus::Counter*, 5> responses{};
  metrics::histogram* duration = nullptr;
  std::unique_ptr<resilience::cluster_limits> limits;
  std::unique_ptr<resilience::windowed_retry_budget> budget; // null: no budget
  std::unique_ptr<resilience::outlier_detector> detector;    // null: no outlier detection
  std::array<prometheus::Counter*, retry_reason_names.size()> retries{};
  prometheus::Counter* budget_exhausted = nullptr;
  prometheus::Counter* stale_resends = nullptr; // requests sent again after a stale connection
  std::array<prometheus::Counter*, resource_names.size()> overflow{};
  metrics::resilience_series series;
};

/// Everything the workers share: the config, counters and metric handles. Read-only after
/// start, but for the atomics inside.
struct shared_state {
  config cfg;
  // Breakers, budgets and ejections count in seconds: the coarse clock (a few ns to read) does.
  const clock* resilience_clock = &coarse_monotonic_clock::instance();
  std::vector<std::size_t> route_cluster;       // per route: its cluster's index
  std::vector<const retry_config*> route_retry; // per route: its retry policy (or the cluster's)
  metrics::registry registry;
  std::vector<cluster_counters> clusters;
  std::array<prometheus::Counter*, static_cast<std::size_t>(cause::count_)> causes{};
  prometheus::Counter* downstream_opened = nullptr;
  std::array<prometheus::Counter*, 3> accept_failures{}; // by net::accept_failure
  std::atomic<std::int64_t> downstream_active{0};
  std::vector<metrics::callback_registration> callbacks;
  std::atomic<bool> draining{false};
  // The process log (stderr) and the access log (a file, written by spdlog's own thread so a
  // worker only formats a line and queues it).
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::details::thread_pool> access_threads;
  std::shared_ptr<spdlog::logger> access;
  bool json_logs = false;
};

std::string json_string(std::string_view s) {
  return nlohmann::json(std::string{s}).dump();
}

/// One line of the process log, as text or as a JSON object's "msg" (log.format).
void log_event(shared_state& s, spdlog::level::level_enum level, std::string_view message) {
  if (s.log && s.log->should_log(level)) {
    s.log->log(level, "{}", s.json_logs ? json_string(message) : std::string{message});
  }
}

// ---------------------------------------------------------------------------------------------
// Message heads copied out of the parser (its views die with the read buffer's next fill).

/// A head whose strings all view one buffer of its own. Heads are reused through a worker's
/// head_pool, so once warm a message costs no allocation: the buffer and the field list keep
/// their capacity. Never moved while in use (held by pointer), so the views stay valid.
struct owned_head {
  std::string bytes; // what the views below point into
  std::string_view method;
  std::string_view target;
  int status = 0;
  std::string_view reason;
  int version_major = 1;
  int version_minor = 1;
  std::vector<http::header> fields;
  http::host_fields host; // its Host fields (a request's)
  bool has_via = false;   // it has a Via field
  http::body_framing framing = http::body_framing::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;
  bool upgrade = false;

  void assign(const http::message_head& h) {
    std::size_t size = h.method.size() + h.target.size() + h.reason.size();
    for (const auto& f : h.headers) {
      size += f.name.size() + f.value.size();
    }
    bytes.clear();
    bytes.reserve(size); // every append below fits: no view is moved by a reallocation
    const auto keep = [this](std::string_view v) {
      const auto at = bytes.size();
      bytes.append(v);
      return std::string_view{bytes.data() + at, v.size()};
    };
    method = keep(h.method);
    target = keep(h.target);
    reason = keep(h.reason);
    fields.clear();
    host = {};
    has_via = false;
    for (const auto& f : h.headers) {
      const auto name = keep(f.name);
      fields.push_back({name, keep(f.value)});
      // The fields every request is checked for, noted in the one pass over them.
      if (name.size() == 4 && iequals(name, "host")) {
        if (host.count++ == 0) {
          host.value = fields.back().value;
        }
      } else if (name.size() == 3 && iequals(name, "via")) {
        has_via = true;
      }
    }
    status = h.status;
    version_major = h.version_major;
    version_minor = h.version_minor;
    framing = h.framing;
    content_length = h.content_length;
    keep_alive = h.keep_alive;
    upgrade = h.upgrade;
  }

  /// A message_head viewing this one (for the serializer).
  [[nodiscard]] http::message_head view() const {
    http::message_head h;
    h.method = method;
    h.target = target;
    h.status = status;
    h.reason = reason;
    h.version_major = version_major;
    h.version_minor = version_minor;
    h.headers = fields;
    h.framing = framing;
    h.content_length = content_length;
    h.keep_alive = keep_alive;
    h.upgrade = upgrade;
    return h;
  }

  /// The value of the first field named `name` (case-insensitive), if any.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view name) const {
    for (const auto& f : fields) {
      if (iequals(f.name, name)) {
        return f.value;
      }
    }
    return std::nullopt;
  }
};

/// A worker's spare heads. Declared before the worker's io_context, so it outlives every
/// coroutine frame that holds a head (frames still pending at a hard stop die with the context).
struct head_pool {
  std::vector<std::unique_ptr<owned_head>> spare;
};

/// Gives a head back to its pool when its holder is done with it (a big one is freed instead:
/// one large head must not pin its memory for good).
struct head_return {
  head_pool* pool = nullptr;
  void operator()(owned_head* h) const noexcept {
    // A few hundred cover the requests a worker has in flight; past that a burst's heads are
    // freed rather than kept for good.
    if (pool != nullptr && h->bytes.capacity() <= 16 * 1024 && pool->spare.size() < 256) {
      pool->spare.emplace_back(h);
      return;
    }
    delete h; // NOLINT(cppcoreguidelines-owning-memory): a unique_ptr's deleter
  }
};
using head_ptr = std::unique_ptr<owned_head, head_return>;

// ---------------------------------------------------------------------------------------------
// One worker: its thread, listeners, upstream pools.

struct endpoint_state {
  std::shared_ptr<upstream_pool> pool;
  std::uint32_t active = 0; // this worker's requests in flight (least_request)
};

struct cluster_state {
  explicit cluster_state(upstream::lb_policy policy) : balancer{policy} {}
  std::vector<endpoint_state> endpoints;
  upstream::balancer balancer; // this worker's rotation over the cluster's hosts
};

/// A cluster's hosts as a worker's balancer sees them: shared health, ejection and breakers,
/// and this worker's requests in flight.
struct worker_hosts {
  const std::vector<std::unique_ptr<endpoint_counters>>& shared;
  const std::vector<endpoint_state>& local;

  [[nodiscard]] std::size_t size() const noexcept { return shared.size(); }
  [[nodiscard]] bool in_service(std::size_t i) const noexcept { return shared[i]->in_service(); }
  [[nodiscard]] std::uint32_t active(std::size_t i) const noexcept { return local[i].active; }
  resilience::circuit_breaker::permission permit(std::size_t i) {
    const auto& breaker = shared[i]->breaker;
    return breaker ? breaker->try_acquire() : resilience::circuit_breaker::permission{0, true};
  }
};

class session;

struct worker {
  explicit worker(shared_state& s, std::size_t index)
      : shared{s}, id{index}, random{default_random::entropy_seed()} {}

  shared_state& shared;
  std::size_t id;
  /// Strings for the requests in flight, kept with their capacity when a request ends: no
  /// allocation per request, and nothing held by idle connections. Like `heads`, declared
  /// before `io`: frames still pending at a hard stop give theirs back when `io` goes.
  std::vector<std::string> spare_strings;
  std::size_t spare_bytes = 0; // their capacity, in all
  head_pool heads;
  std::set<session*> sessions; // before `io` too: a session's destructor leaves it
  asio::io_context io{1};
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors;
  std::vector<cluster_state> clusters;
  std::vector<std::shared_ptr<pool::pool_metrics>> pool_observers;
  default_random random;
  std::thread thread;
  std::shared_ptr<asio::executor_work_guard<asio::io_context::executor_type>> work;

  /// The host of cluster `c` for an attempt (upstream::balancer), among those `tried` has not.
  upstream::balancer::choice choose(std::size_t c, const upstream::tried_hosts& tried) {
    worker_hosts hosts{shared.clusters[c].endpoints, clusters[c].endpoints};
    return clusters[c].balancer.choose(hosts, tried, random);
  }
};

/// A string from the worker's spares for as long as it lives.
class borrowed_string {
public:
  explicit borrowed_string(worker& w) : w_{w} {
    if (!w_.spare_strings.empty()) {
      s_ = std::move(w_.spare_strings.back());
      w_.spare_strings.pop_back();
      w_.spare_bytes -= s_.capacity();
    }
    s_.clear();
  }
  borrowed_string(const borrowed_string&) = delete;
  borrowed_string& operator=(const borrowed_string&) = delete;
  ~borrowed_string() {
    // Kept up to 1 MiB in all: enough for the worker's usual requests in flight, while a burst
    // of large responses does not leave its buffers behind.
    if (s_.capacity() <= 64 * 1024 && w_.spare_bytes + s_.capacity() <= 1024 * 1024) {
      w_.spare_bytes += s_.capacity();
      w_.spare_strings.push_back(std::move(s_));
    }
  }
  std::string& get() noexcept { return s_; }

private:
  worker& w_;
  std::string s_;
};

/// What the parser found, in order: a head, body pieces (views into the read buffer) and the end
/// of a message. The buffer is not read into again until every event of it has been handled, so
/// the views stay valid; several messages may be queued (pipelining).
struct body_piece {
  std::string_view data;
};
struct message_end {};
using event = std::variant<head_ptr, body_piece, message_end>;

class event_queue final : public http::parser_handler {
public:
  explicit event_queue(head_pool& heads) : heads_{&heads} {}

  void on_head(const http::message_head& head) override {
    head_ptr h{nullptr, head_return{heads_}};
    if (heads_->spare.empty()) {
      h.reset(new owned_head); // NOLINT(cppcoreguidelines-owning-memory): held by head_ptr
    } else {
      h.reset(heads_->spare.back().release());
      heads_->spare.pop_back();
    }
    h->assign(head);
    events_.emplace_back(std::move(h));
  }
  void on_body(std::string_view piece) override { events_.emplace_back(body_piece{piece}); }
  void on_message_complete() override { events_.emplace_back(message_end{}); }

  [[nodiscard]] bool empty() const noexcept { return first_ == events_.size(); }
  event& front() noexcept { return events_[first_]; }
  /// Takes the front event off. A vector read from the front, emptied once all is read: its
  /// capacity stays, so a queue costs no allocation per message (a deque of events this size
  /// allocates a node for every two).
  void pop_front() noexcept {
    if (++first_ == events_.size()) {
      clear();
    }
  }
  void clear() noexcept {
    events_.clear();
    first_ = 0;
  }
  /// Between messages: lets go of the room a long message's pieces made (a chunked body of
  /// small chunks queues one event each), so an idle connection does not keep it.
  void trim() noexcept {
    if (empty() && events_.capacity() > 16) {
      std::vector<event>{}.swap(events_);
      first_ = 0;
    }
  }

private:
  head_pool* heads_;
  std::vector<event> events_;
  std::size_t first_ = 0;
};

// ---------------------------------------------------------------------------------------------
// A request's head as it goes upstream.

/// How many times a request went through tether already: its Via entries received by "tether"
/// (RFC 9110 7.6.3: Via = #( received-protocol RWS received-by [ RWS comment ] )).
std::size_t tether_hops(const owned_head& head) {
  std::size_t hops = 0;
  for (const auto& f : head.fields) {
    if (!iequals(f.name, "via")) {
      continue;
    }
    std::string_view rest = f.value;
    for (;;) {
      const auto comma = rest.find(',');
      auto entry = rest.substr(0, comma);
      entry.remove_prefix(std::min(entry.find_first_not_of(" \t"), entry.size()));
      if (const auto space = entry.find(' '); space != std::string_view::npos) {
        const auto by = entry.substr(space + 1);
        hops += by.substr(0, by.find(' ')) == "tether" ? 1 : 0;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(comma + 1);
    }
  }
  return hops;
}

/// The head a request goes upstream with (RFC 9110 7.6): without hop-by-hop fields; with Via and
/// X-Forwarded-For and -Proto; an absolute-form target in origin-form with a Host made from its
/// authority (RFC 9112 3.2.2: a proxy MUST replace the Host); an HTTP/1.0 request without Host
/// given the upstream's, since HTTP/1.1 requires one; Max-Forwards one less (RFC 9110 7.6.2);
/// Expect only when it is forwarded. Views into the request's head: it lives as long as that.
class upstream_head {
public:
  upstream_head(const owned_head& head, const http::request_target& target,
                std::string_view authority, std::string_view client_ip, bool forward_expect,
                std::optional<std::uint64_t> max_forwards)
      : head_{head}, authority_{authority}, forwarded_for_{client_ip} {
    if (const auto prior = head.find("x-forwarded-for")) {
      forwarded_for_ = std::string{*prior} + ", " + std::string{client_ip};
    }
    if (target.form == http::target_form::absolute) {
      origin_form_ = target.path_and_query.starts_with('/')
                         ? std::string{target.path_and_query}
                         : "/" + std::string{target.path_and_query};
    }
    // The parser reads any HTTP/1.x as 1.0 or 1.1: the Via says which.
    add({"Via", head.version_minor == 0 ? "1.0 tether" : "1.1 tether"});
    add({"X-Forwarded-For", forwarded_for_}, "x-forwarded-for");
    add({"X-Forwarded-Proto", "http"}, "x-forwarded-proto");
    if (max_forwards) {
      max_forwards_ = std::to_string(*max_forwards);
      add({"Max-Forwards", max_forwards_}, "max-forwards");
    }
    if (target.form == http::target_form::absolute || authority.empty()) {
      host_slot_ = extra_count_;
      add({"Host", authority}, "host");
    }
    if (!forward_expect) {
      dropped_[drop_count_++] = "expect";
    }
  }
  upstream_head(const upstream_head&) = delete;
  upstream_head& operator=(const upstream_head&) = delete;

  /// The request has no Host of its own: each attempt's head names its upstream.
  [[nodiscard]] bool needs_upstream_host() const noexcept { return authority_.empty(); }

  /// Writes the head into `out` (emptied first); `upstream` is the Host when the request has
  /// none.
  void write(std::string& out, std::string_view upstream) const {
    out.clear();
    auto view = head_.view();
    view.version_major = 1; // an intermediary sends its own version (RFC 9110 6.2)
    view.version_minor = 1;
    if (!origin_form_.empty()) {
      view.target = origin_form_;
    }
    const auto dropped = std::span{dropped_}.first(drop_count_);
    if (authority_.empty()) {
      auto extra = extra_; // the upstream's name as the Host of this attempt
      extra[host_slot_].value = upstream;
      http::write_request_head(out, view, {false, std::span{extra}.first(extra_count_), dropped});
    } else {
      http::write_request_head(out, view, {false, std::span{extra_}.first(extra_count_), dropped});
    }
  }

private:
  static constexpr std::size_t no_slot = 8;

  // A field added after the request's own, and the received one it replaces (if any).
  void add(http::header field, std::string_view replaces = {}) {
    extra_[extra_count_++] = field;
    if (!replaces.empty()) {
      dropped_[drop_count_++] = replaces;
    }
  }

  const owned_head& head_;
  std::string_view authority_;
  std::string forwarded_for_;
  std::string origin_form_;
  std::string max_forwards_;
  std::array<http::header, 5> extra_{};
  std::size_t extra_count_ = 0;
  std::size_t host_slot_ = no_slot;
  std::array<std::string_view, 5> dropped_{};
  std::size_t drop_count_ = 0;
};

// ---------------------------------------------------------------------------------------------
// A downstream connection.

enum class wait_result : std::uint8_t { ok, eof, timeout, error, bad_input };

/// A session's one deadline, kept by one timer: when it passes, the sockets it guards are
/// cancelled and their pending reads end with operation_aborted. Cheaper than racing every read
/// against a timer (a coroutine pair per read), and shared with the timer's handler so that a
/// handler running after the session ended finds `alive` false and does nothing.
struct watchdog : std::enable_shared_from_this<watchdog> {
  explicit watchdog(const asio::any_io_executor& ex) : timer{ex} {}

  asio::steady_timer timer;
  steady::time_point deadline = steady::time_point::max();
  steady::time_point armed = steady::time_point::max();
  asio::ip::tcp::socket* client = nullptr;
  asio::ip::tcp::socket* upstream = nullptr;
  asio::steady_timer* sleeper = nullptr; // a retry's backoff
  bool fired = false;
  bool alive = true;
  bool aborted = false;

  /// Ends what the session is doing now and whatever it starts later.
  void abort_now() {
    set(steady::time_point::min());
    aborted = true;
  }

  void set(steady::time_point t) {
    if (aborted) {
      return; // an abort is for good: no later deadline undoes it
    }
    deadline = t;
    fired = false;
    if (t < armed) {
      arm(t);
    }
  }
  void arm(steady::time_point t) {
    armed = t;
    timer.expires_at(t); // cancels the wait armed before, whose handler then does nothing
    timer.async_wait([self = shared_from_this()](std::error_code ec) { self->expired(ec); });
  }
  void expired(std::error_code ec) {
    if (!alive || ec == asio::error::operation_aborted) {
      return;
    }
    armed = steady::time_point::max();
    if (steady::now() < deadline) {
      arm(deadline); // the deadline moved later since this wait was armed
      return;
    }
    fired = true;
    std::error_code ignored;
    if (client != nullptr) {
      client->cancel(ignored);
    }
    if (upstream != nullptr) {
      upstream->cancel(ignored);
    }
    if (sleeper != nullptr) {
      sleeper->cancel();
    }
  }
  void stop() {
    alive = false;
    timer.cancel();
  }
};

class session {
public:
  session(worker& w, asio::ip::tcp::socket s)
      : w_{w}, socket_{std::move(s)}, watchdog_{std::make_shared<watchdog>(socket_.get_executor())},
        parser_{http::parser::kind::request, w.shared.cfg.downstream.limits}, events_{w.heads},
        response_events_{w.heads} {
    parser_.tunnel_upgrades(false); // until tunnels exist, an Upgrade is ignored (RFC 9110 7.8)
    watchdog_->client = &socket_;
    std::error_code ec;
    const auto peer = socket_.remote_endpoint(ec);
    client_ip_ = ec ? "unknown" : peer.address().to_string();
    w_.sessions.insert(this);
    ++w_.shared.downstream_active;
    w_.shared.downstream_opened->Increment();
  }
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  ~session() {
    watchdog_->stop();
    w_.sessions.erase(this);
    --w_.shared.downstream_active;
  }

  /// Wakes a session waiting for its next request, so a drain closes it now.
  void wake_if_idle() {
    if (idle_) {
      watchdog_->set(steady::time_point::min());
    }
  }

  asio::awaitable<void> run() {
    const auto& d = w_.shared.cfg.downstream;
    std::uint32_t served = 0;
    for (;;) {
      // The next request's head: the idle timeout until its first byte, then the request-header
      // timeout from that byte (a head trickled in byte by byte cannot hold the connection).
      head_request_ = false; // the last request's; a 408 or 400 below is not an answer to it
      http10_ = false;
      idle_ = true;
      event ev;
      const auto got = co_await next_event(ev, true);
      idle_ = false;
      if (got != wait_result::ok) {
        // No head to answer: the request line is not known, but the answer is logged all the
        // same (a client that only ever gets 400s should show in the access log).
        int status = 0;
        if (got == wait_result::timeout && head_started_) {
          count(cause::header_timeout);
          const std::string why = "request header timeout";
          status = 408;
          co_await reply_error(status, why, true);
        } else if (got == wait_result::bad_input) {
          count(cause::bad_request);
          const auto e = static_cast<http::errc>(parser_.error().value());
          const std::string why = parser_.error().message();
          status = http::status_of(e);
          co_await reply_error(status, why, true);
        }
        if (status != 0) {
          access_line(status, steady::now() - head_first_byte_, "-", "-", "-", "-");
        }
        break;
      }
      head_started_ = false;
      auto* head = std::get_if<head_ptr>(&ev);
      if (head == nullptr) {
        break; // cannot happen: the parser starts every message with its head
      }
      ++served;
      const bool last =
          (d.max_requests_per_connection != 0 && served >= d.max_requests_per_connection) ||
          w_.shared.draining.load(std::memory_order_relaxed);
      const bool keep = co_await handle(std::move(*head), last);
      if (!keep) {
        break;
      }
      events_.trim();
      response_events_.trim();
    }
    std::error_code ignored;
    socket_.shutdown(asio::socket_base::shutdown_send, ignored);
    // A lingering close: what the client still sends (the rest of a refused body, pipelined
    // requests) is read and dropped for a bounded time, so that closing with unread bytes does
    // not turn into a reset that destroys the answer before the client reads it.
    if (!aborted_) {
      watchdog_->set(steady::now() + std::chrono::seconds{1});
      std::size_t dropped = 0;
      while (!watchdog_->fired && dropped < 256 * 1024) {
        auto [ec, n] = co_await socket_.async_read_some(asio::buffer(small_), use_tuple);
        if (ec) {
          break;
        }
        dropped += n;
      }
    }
    socket_.close(ignored);
  }

  /// Ends the session now, whatever it is doing (a stop whose drain time is over): its sockets
  /// are cancelled and its coroutine runs to its end.
  void abort() {
    aborted_ = true;
    watchdog_->abort_now();
  }

private:
  void count(cause c) { w_.shared.causes[static_cast<std::size_t>(c)]->Increment(); }

  // The next parser event, reading from the client when none is queued.
  asio::awaitable<wait_result> next_event(event& out, bool waiting_for_head) {
    const auto& d = w_.shared.cfg.downstream;
    for (;;) {
      if (!events_.empty()) {
        out = std::move(events_.front());
        events_.pop_front();
        co_return wait_result::ok;
      }
      if (parser_.error()) {
        co_return wait_result::bad_input;
      }
      if (closing_) {
        co_return wait_result::eof;
      }
      if (waiting_for_head && w_.shared.draining.load(std::memory_order_relaxed) &&
          parser_.idle()) {
        co_return wait_result::eof; // draining: no new request on this connection
      }
      if (waiting_for_head && parser_.idle()) {
        buffer_.reset(); // between requests: nothing in it is needed any more
      }
      // Deadlines of seconds: the coarse clock (the same clock, a tick behind at most, read
      // without the TSC) is precise enough for them, here and for the header deadline below.
      const auto now = coarse_monotonic_clock::instance().now();
      steady::time_point deadline = now + d.idle_timeout;
      if (waiting_for_head && head_started_) {
        deadline = head_deadline_;
      }
      watchdog_->set(deadline);
      // A request's first read goes into the session's small buffer (most heads fit); only a
      // head or body that fills it gets a 16 KiB one, given back between requests. So an idle
      // client costs 2 KiB of buffer, and waiting needs no extra readiness round trip.
      char* into = buffer_ ? buffer_->data() : small_.data();
      const std::size_t room = buffer_ ? buffer_->size() : small_.size();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(into, room), use_tuple);
      if (watchdog_->fired) {
        co_return wait_result::timeout;
      }
      if (ec) {
        co_return ec == asio::error::eof ? wait_result::eof : wait_result::error;
      }
      if (waiting_for_head && !head_started_) {
        head_started_ = true;
        head_first_byte_ = coarse_monotonic_clock::instance().now();
        head_deadline_ = head_first_byte_ + d.request_header_timeout;
      }
      if (!buffer_ && n == room) {
        buffer_ = std::make_unique<std::array<char, read_size>>(); // more is coming
      }
      const auto used = parser_.feed({into, n}, events_);
      if (parser_.upgraded() && used < n) {
        closing_ = true; // tunnels are not supported yet: the upgrade is refused below
      }
    }
  }

  // Skips the rest of the current request (after an answer the proxy gave itself).
  asio::awaitable<bool> drain_request_body() {
    for (;;) {
      event ev;
      if (co_await next_event(ev, false) != wait_result::ok) {
        co_return false;
      }
      if (std::holds_alternative<message_end>(ev)) {
        co_return true;
      }
    }
  }

  // Takes the reason by reference to a named string: g++ 12 destroys temporaries made inside a
  // co_await expression twice (seen as a double free), so callers name their reason first.
  asio::awaitable<void> reply_error(int status, const std::string& reason, bool close,
                                    std::string_view fields = {}) {
    // The proxy answers as an origin server would: with a Date (RFC 9110 6.6.1), its reason in
    // X-Tether-Reason and the body, and `fields` (an Allow, ...).
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                      std::string{http::reason_phrase(status)} +
                      "\r\nDate: " + http::http_date(std::chrono::system_clock::now()) +
                      "\r\nContent-Type: text/plain\r\nX-Tether-Reason: " + std::string{reason} +
                      "\r\nContent-Length: " + std::to_string(reason.size() + 1) + "\r\n";
    out += fields;
    if (close) {
      out += "Connection: close\r\n";
    } else if (http10_) {
      out += "Connection: keep-alive\r\n"; // an HTTP/1.0 client closes unless told
    }
    out += "\r\n";
    if (!head_request_) {
      out += reason + "\n"; // a reply to HEAD has the length of a body, not the body
    }
    co_await asio::async_write(socket_, asio::buffer(out), use_tuple);
  }

  // Finds the route for a request: the first whose host and path prefix match. `authority` is
  // what the request is for (http::check_host); the asterisk-form ("OPTIONS *", about the server
  // as a whole) goes where its host's catch-all path "/" goes.
  std::optional<std::size_t> route(std::string_view authority,
                                   const http::request_target& target) const {
    // Routes compare the host case-insensitively, so it is not copied or lowered.
    const std::string_view host = http::host_of(authority);
    std::string_view path = target.form == http::target_form::asterisk
                                ? std::string_view{"/"}
                                : target.path_and_query.substr(0, target.path_and_query.find('?'));
    if (path.empty()) {
      path = "/"; // an absolute-form target without a path
    }
    const auto& routes = w_.shared.cfg.routes;
    for (std::size_t i = 0; i < routes.size(); ++i) {
      const auto& r = routes[i];
      if ((r.host == "*" || iequals(r.host, host)) &&
          (target.form == http::target_form::asterisk ? r.path_prefix == "/"
                                                      : path.starts_with(r.path_prefix))) {
        return i;
      }
    }
    return std::nullopt;
  }

  /// The request being handled, for the replies and logs of its end.
  struct request_context {
    head_ptr owner; // the head, for as long as the request is handled
    [[nodiscard]] const owned_head& head() const noexcept { return *owner; }
    steady::time_point started;
    bool client_keep = true;
    bool expects_continue = false; // an HTTP/1.1 client waits for 100 Continue before its body
    bool continue_sent = false;
    bool consumed = false; // its end has been taken off the event queue
    cluster_counters* counters = nullptr;
    std::string_view cluster = "-";
  };

  // Answers a request the proxy does not forward, before any of its body went anywhere: the rest
  // of the body is read and dropped, so the connection can carry the next request.
  asio::awaitable<bool> refuse(request_context& rq, int status, const std::string& why,
                               std::string_view upstream, std::string_view fields = {}) {
    // A client still waiting for 100 Continue sends no body: answer now, and close.
    const bool clean =
        rq.consumed || (rq.client_keep && !(rq.expects_continue && !rq.continue_sent) &&
                        co_await drain_request_body());
    co_await reply_error(status, why, !(clean && rq.client_keep), fields);
    log_answer(rq, status, upstream);
    co_return clean&& rq.client_keep;
  }

  // Answers a request with an error and closes the connection (the request cannot be read to
  // its end, or the connection is not fit for another).
  asio::awaitable<bool> reject(request_context& rq, int status, const std::string& why) {
    co_await reply_error(status, why, true);
    log_answer(rq, status, "-");
    co_return false;
  }

  // Counts and logs how a request was answered.
  void log_answer(request_context& rq, int status, std::string_view upstream) {
    if (rq.counters != nullptr) {
      observe(*rq.counters, status, rq.started, rq.head(), rq.cluster, upstream);
    } else {
      access_line(status, steady::now() - rq.started, rq.head().method, rq.head().target,
                  rq.cluster, upstream);
    }
  }

  asio::awaitable<void> send_continue(request_context& rq) {
    if (rq.expects_continue && !rq.continue_sent) {
      rq.continue_sent = true;
      const std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
      co_await asio::async_write(socket_, asio::buffer(cont), use_tuple);
    }
  }

  // Records how an attempt at a host ended, for its breaker, outlier detection and counters.
  void report(cluster_counters& cc, std::size_t host, resilience::circuit_breaker::permission p,
              const resilience::attempt_outcome& outcome, steady::time_point attempt_start) {
    auto& h = *cc.endpoints[host];
    if (outcome.is_5xx()) {
      ++h.failures;
    }
    if (h.breaker) {
      // The coarse clock is precise enough for a breaker's slow-call rule and costs less.
      const auto took = std::max(clock::duration::zero(),
                                 coarse_monotonic_clock::instance().now() - attempt_start);
      resilience::is_breaker_failure(outcome, h.breaker_failures) ? h.breaker->on_failure(p, took)
                                                                  : h.breaker->on_success(p, took);
    }
    if (h.outlier && cc.detector->report(*h.outlier, outcome)) {
      h.ejections->Increment();
      log_event(w_.shared, spdlog::level::warn, "outlier detection ejected " + h.name);
    }
  }

  // After a failed attempt: try again (and after how long), or give up. Without a retry budget,
  // a retry holds one unit of the cluster's max_retries for the rest of the request; with one,
  // the budget is the limit and max_retries is not applied (Envoy's rule: a budget overrides the
  // retry threshold, which at 3 would refuse retries any busy cluster needs when a host dies).
  resilience::retry_decision decide(resilience::retry_state& retry,
                                    const resilience::attempt_outcome& outcome,
                                    cluster_counters& cc, resilience::resource_guard& retry_slot) {
    const auto d = retry.decide(outcome, steady::now(), w_.random);
    if (!d.retry) {
      if (d.reason == resilience::give_up_reason::budget_exhausted) {
        cc.budget_exhausted->Increment();
      }
      return d;
    }
    if (!cc.budget && !retry_slot) {
      retry_slot = resilience::resource_guard{cc.limits->retries};
      if (!retry_slot) {
        cc.overflow[static_cast<std::size_t>(resource::retries)]->Increment();
        return resilience::retry_decision::give_up(resilience::give_up_reason::not_retriable);
      }
    }
    cc.retries[static_cast<std::size_t>(outcome.result)]->Increment();
    return d;
  }

  // Proxies one request. Returns whether the downstream connection may carry another.
  asio::awaitable<bool> handle(head_ptr head_in, bool last) {
    request_context rq;
    rq.owner = std::move(head_in);
    rq.started = steady::now();
    const auto& head = rq.head();
    rq.client_keep = head.keep_alive && !last;
    head_request_ = head.method == "HEAD";
    http10_ = head.version_major == 1 && head.version_minor == 0;
    const auto expect = head.find("expect");
    // 100 Continue is for HTTP/1.1 clients only (RFC 9110 15.2).
    rq.expects_continue = expect && iequals(*expect, "100-continue") && !http10_;
    if (http10_ && head.framing == http::body_framing::chunked) {
      // Chunked framing in HTTP/1.0 is faulty (RFC 9112 6.1): an upstream reading it as 1.0
      // would take the chunks for another request.
      const std::string why = "Transfer-Encoding in an HTTP/1.0 request";
      co_return co_await reject(rq, 400, why);
    }
    // What the request is for: its target's form and the Host rules (RFC 9112 3.2), checked
    // before it goes anywhere. A request broken this way is not read further: 400, and close.
    http::request_target target;
    std::string_view authority;
    if (auto ec = http::read_request_target(head.method, head.target, target);
        ec || (ec = http::check_host(head.host, head.version_minor, target, authority))) {
      count(cause::bad_request);
      const std::string why = ec.message();
      co_return co_await reject(rq, 400, why);
    }
    if (target.form == http::target_form::authority) {
      // CONNECT is recognised by the codec; the proxy does not tunnel yet. An Upgrade it does
      // not do is ignored instead (the parser reads on; the serializer drops the field).
      const std::string why = "CONNECT is not supported";
      co_return co_await reject(rq, 501, why);
    }
    // RFC 9110 7.3: an intermediary MUST NOT forward a message to itself unless it is protected
    // from a loop. A request that went through tether this often already is taken for one (a
    // route that leads back to the proxy): 508, rather than a connection per pass until the
    // descriptors run out.
    if (head.has_via && tether_hops(head) >= max_tether_hops) {
      count(cause::bad_request);
      const std::string why = "request loop: it went through tether " +
                              std::to_string(max_tether_hops) + " times (see its Via)";
      co_return co_await refuse(rq, 508, why, "-");
    }
    // RFC 9110 7.6.2: an OPTIONS or TRACE request with Max-Forwards 0 is answered here, as its
    // final recipient; with more, it goes on with one less. TRACE is not echoed (a response
    // showing a request's credentials to a script is what cross-site tracing abuses).
    std::optional<std::uint64_t> max_forwards;
    if (head.method == "OPTIONS" || head.method == "TRACE") {
      if (const auto v = head.find("max-forwards")) {
        std::uint64_t n = 0;
        const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
        if (ec != std::errc{} || end != v->data() + v->size()) {
          count(cause::bad_request);
          const std::string why = "invalid Max-Forwards (a number of hops)";
          co_return co_await reject(rq, 400, why);
        }
        if (n == 0) {
          const bool options = head.method == "OPTIONS";
          const std::string why = options ? "answered by tether: Max-Forwards is 0"
                                          : "TRACE is not echoed: Max-Forwards is 0";
          co_return co_await refuse(rq, options ? 200 : 405, why, "-", allowed_methods);
        }
        max_forwards = n - 1;
      }
    }
    const auto route_index = route(authority, target);
    if (!route_index) {
      count(cause::no_route);
      const std::string why = "no route for " + std::string{head.target};
      co_return co_await refuse(rq, 404, why, "-");
    }
    auto& shared = w_.shared;
    const auto ci = shared.route_cluster[*route_index];
    const auto& cluster_cfg = shared.cfg.clusters[ci];
    const retry_config& rc = *shared.route_retry[*route_index];
    auto& cc = shared.clusters[ci];
    rq.counters = &cc;
    rq.cluster = cluster_cfg.name;

    // Envoy's thresholds: past max_requests in flight, the request costs the cluster nothing.
    resilience::resource_guard request_slot{cc.limits->requests};
    if (!request_slot) {
      cc.overflow[static_cast<std::size_t>(resource::requests)]->Increment();
      count(cause::overflow);
      const std::string why = "cluster request limit reached";
      co_return co_await refuse(rq, 503, why, "-");
    }

    // A request with no body still ends with an event: take it off the queue.
    const auto framing = head.framing;
    if (framing == http::body_framing::none) {
      event end;
      if (co_await next_event(end, false) != wait_result::ok) {
        count(cause::downstream_reset);
        co_return false;
      }
      rq.consumed = true;
    }
    // A body that a retry may need is read whole first, up to the buffer limit; past it the
    // rest is streamed and the request is not sent twice.
    const bool has_key = head.find("idempotency-key").has_value();
    const bool may_resend = has_key || resilience::is_idempotent_method(head.method);
    using resilience::retry_on;
    const bool retries_after_send =
        rc.policy.max_attempts > 1 &&
        (static_cast<std::uint32_t>(rc.policy.conditions) &
         ~static_cast<std::uint32_t>(retry_on::connect_failure | retry_on::refused)) != 0;
    std::string body;
    if (!rq.consumed && may_resend && retries_after_send && rc.buffer_limit > 0 &&
        (framing == http::body_framing::chunked || head.content_length <= rc.buffer_limit)) {
      co_await send_continue(rq);
      while (body.size() <= rc.buffer_limit) {
        event ev;
        if (co_await next_event(ev, false) != wait_result::ok) {
          co_return co_await client_failed(rq);
        }
        if (auto* piece = std::get_if<body_piece>(&ev)) {
          body.append(piece->data);
        } else if (std::holds_alternative<message_end>(ev)) {
          rq.consumed = true;
          break;
        }
      }
    }
    const resilience::request_traits traits{head.method, has_key, rq.consumed};
    resilience::retry_state retry{rc.policy, traits, rq.started, cc.budget.get()};
    resilience::resource_guard retry_slot;
    upstream::tried_hosts tried{cc.endpoints.size()};

    // Expect: 100-continue goes upstream with a body that streams, so that the upstream says
    // whether it wants the body (a 401 or 413 then costs no upload) and its 100 reaches the
    // client; a body read whole here first was answered 100 by the proxy already.
    const bool forward_expect = rq.expects_continue && !rq.continue_sent && !rq.consumed;
    const upstream_head head_out{head, target, authority, client_ip_, forward_expect, max_forwards};
    // The head and what goes upstream are built in strings borrowed from the worker, whose
    // capacity stays from one request to the next.
    borrowed_string head_buffer{w_};
    borrowed_string out_buffer{w_};
    std::string& head_bytes = head_buffer.get();
    if (!head_out.needs_upstream_host()) {
      head_out.write(head_bytes, {});
    }
    const bool chunked = framing == http::body_framing::chunked;

    bool stale_resent = false;
    std::optional<upstream::balancer::choice>
        again; // the host to send to again, with its permission
    for (;;) {
      const bool first_try = tried.empty();
      const auto picked = again ? *std::exchange(again, std::nullopt) : w_.choose(ci, tried);
      if (!picked.found) {
        count(cause::circuit_open);
        const std::string why = "circuit breaker open for every host";
        co_return co_await refuse(rq, 503, why, "-");
      }
      const auto host = picked.index;
      tried.add(host);
      auto& ep = w_.clusters[ci].endpoints[host];
      auto& ep_counters = *cc.endpoints[host];
      const std::string& endpoint_name = ep_counters.name;
      if (head_out.needs_upstream_host()) {
        head_out.write(head_bytes, endpoint_name);
      }
      const auto ignore_attempt = [&] {
        if (ep_counters.breaker) {
          ep_counters.breaker->on_ignored(picked.permission);
        }
      };
      // max_connections: with nothing idle here and the cluster at its limit, fail fast.
      if (ep.pool->stats().idle == 0 && cc.limits->connections.remaining() == 0) {
        ignore_attempt();
        cc.overflow[static_cast<std::size_t>(resource::connections)]->Increment();
        count(cause::overflow);
        const std::string why = "cluster connection limit reached";
        co_return co_await refuse(rq, 503, why, endpoint_name);
      }
      resilience::resource_guard pending{cc.limits->pending_requests};
      if (!pending) {
        ignore_attempt();
        cc.overflow[static_cast<std::size_t>(resource::pending_requests)]->Increment();
        count(cause::overflow);
        const std::string why = "cluster pending request limit reached";
        co_return co_await refuse(rq, 503, why, endpoint_name);
      }
      ++ep.active;
      ++ep_counters.active;
      struct in_flight {
        endpoint_state& ep;
        endpoint_counters& c;
        ~in_flight() {
          --ep.active;
          --c.active;
        }
      } guard{ep, ep_counters};

      const auto attempt_start = first_try ? rq.started : steady::now();
      const steady::time_point attempt_deadline = retry.attempt_deadline(attempt_start);
      auto acquired = co_await ep.pool->async_acquire(std::min<clock::duration>(
          cluster_cfg.pool.acquire_timeout,
          std::max<clock::duration>(attempt_deadline - attempt_start, clock::duration::zero())));
      pending.release();
      resilience::attempt_outcome outcome;
      std::string failure; // why, when the attempt ended without a response
      if (acquired.error) {
        const auto stats = ep.pool->stats();
        const bool connecting_to_nothing =
            acquired.error == errc::pool_timeout && stats.total == 0 && stats.connecting > 0;
        if (!connecting_to_nothing &&
            (acquired.error == errc::pool_timeout || acquired.error == errc::overloaded ||
             acquired.error == std::errc::operation_canceled)) {
          // Not the host's doing: nothing is held against it, and nothing is retried.
          ignore_attempt();
          const bool busy = acquired.error == errc::pool_timeout ||
                            acquired.error == std::errc::operation_canceled;
          count(busy ? cause::pool_timeout : cause::overflow);
          if (!busy) {
            cc.overflow[static_cast<std::size_t>(resource::connections)]->Increment();
          }
          const std::string why = busy ? "upstream pool busy" : "cluster connection limit reached";
          co_return co_await refuse(rq, 503, why, endpoint_name);
        }
        // A host with no connection whose connect outlasted the wait counts as a connect
        // failure (nothing was sent): reported against it, and retried elsewhere.
        outcome.result = acquired.error == std::errc::connection_refused
                             ? resilience::attempt_result::refused
                             : resilience::attempt_result::connect_failure;
        failure = connecting_to_nothing
                      ? std::string{"upstream connect failed: no connection in the attempt's time"}
                      : "upstream connect failed: " + acquired.error.message();
      } else {
        ++ep_counters.requests;
        ep_counters.attempts->Increment();
        auto lease = std::move(acquired.connection);
        auto& up = *lease;
        const bool reused = up.responses > 0;
        if (aborted_) {
          // Stopped past the drain time while waiting for the connection.
          lease.mark_broken();
          ignore_attempt();
          co_return false;
        }
        // The watchdog guards the upstream socket too: a write to an upstream that stops
        // reading, or a response that never comes, ends at the attempt's deadline.
        watchdog_->upstream = &up.socket;
        struct unguard {
          watchdog& w;
          ~unguard() { w.upstream = nullptr; }
        } unguard_upstream{*watchdog_};
        if (head.method == "HEAD") {
          up.parser.expect_head_response();
        }
        const bool whole_before = rq.consumed; // the body (if any) is here to be sent again
        std::string& out = out_buffer.get();
        out.assign(head_bytes);
        if (!body.empty()) {
          if (chunked) {
            http::write_chunk(out, body);
          } else {
            out.append(body);
          }
        }
        if (rq.consumed && chunked) {
          http::write_last_chunk(out);
        }
        // The upstream is watched while a body streams; a body read whole (at most
        // buffer_limit) goes in one write the socket buffers take.
        const upload plan{out,          chunked,          forward_expect,
                          !rq.consumed, attempt_deadline, cluster_cfg.request_timeout};
        send_end sent;
        if (plan.streams) {
          sent = co_await stream_request(rq, up, plan);
        } else {
          // The whole request is here: one write, under the response's deadline while that is
          // not near (one timer setting), else the request timeout.
          watchdog_->set(
              std::max(attempt_deadline, steady::now() + cluster_cfg.request_timeout / 2));
          auto [ec, n] = co_await asio::async_write(up.socket, asio::buffer(out), use_tuple);
          sent.timed_out = watchdog_->fired;
          sent.complete = !ec && !sent.timed_out;
        }
        if (sent.client_failed) {
          // The client went away (or sent garbage) mid-body: the upstream has half a request.
          lease.mark_broken();
          ignore_attempt();
          co_return co_await client_failed(rq);
        }
        if (!sent.complete) {
          // The upstream has part of the request: it is out of step, and so is the client,
          // whose body was not all read.
          lease.mark_broken();
          rq.client_keep = false;
        }
        if (sent.timed_out) {
          outcome.result = resilience::attempt_result::timeout;
          failure = "upstream timeout";
        } else {
          // The response: what the upload's watch queued first, then the rest. After a streamed
          // upload, the wait for its head starts at the upload's end.
          const auto response_deadline =
              whole_before
                  ? attempt_deadline
                  : std::max(attempt_deadline, steady::now() + (attempt_deadline - attempt_start));
          attempt_exchange at{up,
                              lease,
                              retry,
                              rc,
                              cc,
                              host,
                              picked.permission,
                              attempt_start,
                              response_deadline,
                              cluster_cfg.request_timeout,
                              retry_slot};
          const auto r = co_await read_response(rq, at, sent.first_read);
          if (r.client_gone) {
            if (r.status != 0) {
              observe(cc, r.status, rq.started, head, cluster_cfg.name, endpoint_name);
            }
            co_return false;
          }
          outcome = r.outcome;
          failure = r.failure;
          if (r.forwarded) {
            // Reported and decided at its head already.
            lease.reset();
            observe(cc, r.status, rq.started, head, cluster_cfg.name, endpoint_name);
            co_return r.keep;
          }
          if (r.reported) {
            // A failed response that will be retried (decided at its head). The connection
            // goes back (or away) before the wait, and the watchdog lets go of it first.
            const auto delay = r.delay;
            watchdog_->upstream = nullptr;
            lease.reset();
            if (!co_await backoff(delay)) {
              count(cause::upstream_timeout);
              const std::string why = "upstream timeout";
              co_return co_await refuse(rq, 504, why, endpoint_name);
            }
            continue;
          }
          // A kept-alive connection the upstream closed while it sat idle fails before any byte
          // of response: the request was not processed, but may have been received, so only a
          // request that may be sent twice, and whose body is here whole, goes again on
          // another connection to the same host (as Go's and Chromium's clients do, and
          // tether's own). Once per request; not a retry, and nothing held against the host.
          if (reused && !r.bytes_read && outcome.result == resilience::attempt_result::reset &&
              may_resend && whole_before && !stale_resent) {
            stale_resent = true;
            lease.mark_broken();
            cc.stale_resends->Increment();
            log_event(shared, spdlog::level::debug,
                      "sending " + std::string{head.method} + " " + std::string{head.target} +
                          " again: " + endpoint_name + " closed a kept-alive connection");
            again = picked;
            continue;
          }
        }
      }

      // The attempt ended with no response: an error the policy may retry.
      report(cc, host, picked.permission, outcome, attempt_start);
      const bool malformed = outcome.result == resilience::attempt_result::http_status;
      const auto decision =
          malformed ? resilience::retry_decision::give_up(resilience::give_up_reason::not_retriable)
                    : decide(retry, outcome, cc, retry_slot);
      if (decision.retry) {
        log_event(shared, spdlog::level::debug,
                  "retrying " + std::string{head.method} + " " + std::string{head.target} +
                      " after " + endpoint_name + ": " + failure);
        if (!co_await backoff(decision.delay)) {
          count(cause::upstream_timeout);
          const std::string why = "upstream timeout";
          co_return co_await refuse(rq, 504, why, endpoint_name);
        }
        continue;
      }
      const bool timed_out = outcome.result == resilience::attempt_result::timeout;
      const bool connect = outcome.request_not_sent();
      count(malformed ? cause::bad_response
                      : (timed_out ? cause::upstream_timeout
                                   : (connect ? cause::connect_failure : cause::upstream_reset)));
      log_event(shared, spdlog::level::debug,
                std::to_string(timed_out ? 504 : 502) + " for " + std::string{head.method} + " " +
                    std::string{head.target} + ": " + endpoint_name + ": " + failure);
      if (connect) {
        co_return co_await refuse(rq, 502, failure, endpoint_name);
      }
      // Part of the request went upstream; the connection to the client is not reused.
      rq.client_keep = false;
      co_return co_await refuse(rq, timed_out ? 504 : 502, failure, endpoint_name);
    }
  }

  // The client went away or sent garbage mid-body. A client that went away is logged with
  // nginx's 499 (client closed request): there is no one to answer, but the request happened.
  asio::awaitable<bool> client_failed(request_context& rq) {
    count(parser_.error() ? cause::bad_request : cause::downstream_reset);
    int status = client_closed_request;
    if (parser_.error()) {
      const auto e = static_cast<http::errc>(parser_.error().value());
      const std::string why = parser_.error().message();
      status = http::status_of(e);
      co_await reply_error(status, why, true);
      log_answer(rq, status, "-");
    } else {
      access_line(status, steady::now() - rq.started, rq.head().method, rq.head().target,
                  rq.cluster, "-");
    }
    co_return false;
  }

  // Waits before a retry; false when the session is ended meanwhile (a stop past its drain).
  asio::awaitable<bool> backoff(clock::duration delay) {
    if (delay <= clock::duration::zero()) {
      co_return !aborted_;
    }
    asio::steady_timer timer{socket_.get_executor(), delay};
    watchdog_->set(steady::time_point::max()); // the last attempt's deadline is over and done
    watchdog_->sleeper = &timer;
    co_await timer.async_wait(use_tuple);
    watchdog_->sleeper = nullptr;
    co_return !aborted_;
  }

  /// What a request sends: the head and whatever of the body is here already (`bytes`), then
  /// (when it streams) the rest of the body as the client sends it.
  struct upload {
    std::string& bytes;
    bool chunked = false;        // the body is re-framed in chunks
    bool forward_expect = false; // Expect went upstream: its 100 (or refusal) comes from there
    bool streams = false;        // some of the body is still to come from the client
    steady::time_point attempt_deadline;
    clock::duration request_timeout;
  };

  /// How sending a request ended (stream_request, or the one write of a whole request).
  struct send_end {
    bool complete = false;      // the whole request went upstream
    bool client_failed = false; // the client went away or sent garbage mid-body
    bool timed_out = false;     // the attempt's deadline passed while sending
    /// For read_response: the upstream was read while the body went up, and this ended that
    /// read (an error or EOF; no error: a response's head is queued). Empty: read afresh.
    std::optional<std::error_code> first_read;
  };

  /// What watch_upstream found, shared with stream_request (one thread: no locks).
  struct upstream_watch {
    explicit upstream_watch(const asio::any_io_executor& ex)
        : ended{ex, steady::time_point::max()} {}
    asio::steady_timer ended; // cancelled when the watch ends, to wake stream_request
    bool done = false;
    bool stop = false;       // the request is sent: the watch ends
    bool final_head = false; // a final response's head is queued in response_events_
    bool cut = false;        // ... and the upload is cut short for it (or for the read's end)
    std::optional<std::error_code> read_end; // the read that ended the watch, EOF included
  };

  // Sends a request whose body streams: each piece the client sends is written upstream before
  // the next is read. Meanwhile the upstream is read too (watch_upstream), as RFC 9112 9.3 asks
  // of a sender: an upstream that answers early and stops reading (a 401, a 413) cuts the upload
  // short instead of leaving it to hang until the timeout, and its 100 Continue reaches a client
  // whose Expect went upstream. (A request that is here whole goes in one write: handle().)
  asio::awaitable<send_end> stream_request(request_context& rq, http::http_connection& up,
                                           const upload& plan) {
    send_end end;
    // The proxy's own 100 Continue first, before the watch may write interim responses to the
    // client: one writer at a time on its socket.
    if (!plan.forward_expect) {
      co_await send_continue(rq);
    }
    upstream_watch watch{socket_.get_executor()};
    asio::co_spawn(socket_.get_executor(), watch_upstream(&up, &watch, &rq),
                   [this, &watch](const std::exception_ptr& e) {
                     if (e) {
                       log_event(w_.shared, spdlog::level::err,
                                 "the upstream watch of an upload failed; the upload goes on "
                                 "unwatched");
                     }
                     watch.done = true;
                     watch.ended.cancel();
                   });
    // The head goes at once unless some of the body is here to go with it: a client whose
    // Expect went upstream sends nothing before the upstream's 100.
    bool upstream_ok = true;
    if (events_.empty()) {
      upstream_ok = co_await write_upstream(up, plan);
    }
    while (upstream_ok && !rq.consumed && !watch.cut) {
      event ev;
      if (co_await next_event(ev, false) != wait_result::ok) {
        end.client_failed = !watch.cut && !watchdog_->fired;
        break;
      }
      if (auto* piece = std::get_if<body_piece>(&ev)) {
        if (plan.chunked) {
          http::write_chunk(plan.bytes, piece->data);
        } else {
          plan.bytes.append(piece->data);
        }
      } else if (std::holds_alternative<message_end>(ev)) {
        if (plan.chunked) {
          http::write_last_chunk(plan.bytes);
        }
        rq.consumed = true;
      }
      if (plan.bytes.size() >= 16 * 1024 || rq.consumed) {
        upstream_ok = co_await write_upstream(up, plan);
      }
    }
    end.complete = upstream_ok && !end.client_failed && !watch.cut && rq.consumed;
    end.timed_out = watchdog_->fired;
    if (!watch.done) {
      // The request is sent (or not, for good): the watch's read is the one operation left on
      // the upstream socket. What it read is queued; what it did not stays in the socket.
      watch.stop = true;
      std::error_code ignored;
      up.socket.cancel(ignored);
      co_await watch.ended.async_wait(use_tuple);
    }
    if (watch.final_head) {
      end.first_read = std::error_code{};
    } else if (watch.read_end) {
      end.first_read = watch.read_end;
    }
    co_return end;
  }

  // Appends an interim response (100 Continue, 103 Early Hints) for the client: a proxy MUST
  // forward 1xx (RFC 9110 15.2), but not to an HTTP/1.0 client, which cannot take one, nor a
  // 100 when the proxy sent its own already. With tether's own version and Via (6.2, 7.6.3).
  void forward_interim(std::string& out, const owned_head& h, request_context& rq) const {
    if (http10_ || (h.status == 100 && rq.continue_sent)) {
      return;
    }
    rq.continue_sent = rq.continue_sent || h.status == 100;
    auto view = h.view();
    view.version_minor = 1;
    static constexpr std::array<http::header, 1> via = {http::header{"Via", "1.1 tether"}};
    http::write_response_head(out, view, {false, via});
  }

  // Writes what `plan` holds upstream and empties it; false when that failed or the attempt's
  // deadline passed. While the response's own deadline is not near that is the limit (one timer
  // setting for a small request); later, the request timeout from each write (an upload).
  asio::awaitable<bool> write_upstream(http::http_connection& up, const upload& plan) {
    watchdog_->set(std::max(plan.attempt_deadline, steady::now() + plan.request_timeout / 2));
    auto [ec, n] = co_await asio::async_write(up.socket, asio::buffer(plan.bytes), use_tuple);
    plan.bytes.clear();
    co_return !ec && !watchdog_->fired;
  }

  // Reads the upstream while the request's body goes up (see stream_request). Interim responses
  // go to the client at once; a final response's head is left queued for read_response, and
  // when it is an error, says the connection closes, or the read fails, the upload is cut short
  // (the client read or upstream write it waits on is cancelled). A final 2xx or 3xx does not
  // cut it: some servers answer before they have read a body they still want.
  asio::awaitable<void> watch_upstream(http::http_connection* up, upstream_watch* watch,
                                       request_context* rq) {
    auto& response = response_events_;
    response.clear();
    borrowed_string interim_buffer{w_};
    std::string& interim = interim_buffer.get();
    bool cut = false;
    while (!watch->stop) {
      auto [ec, n] = co_await up->socket.async_read_some(asio::buffer(up->buffer), use_tuple);
      if (watch->stop && ec == asio::error::operation_aborted) {
        break; // the request is sent
      }
      if (ec) {
        watch->read_end = ec; // EOF, a reset, or the watchdog's cancel (it fired: a timeout)
        cut = !watchdog_->fired;
        break;
      }
      if (up->parser.feed({up->buffer.data(), n}, response) != n || up->parser.error()) {
        watch->read_end = std::error_code{}; // read_response finds the parser's error
        cut = true;
        break;
      }
      interim.clear();
      while (!response.empty()) {
        auto* held = std::get_if<head_ptr>(&response.front());
        if (held == nullptr) {
          response.pop_front(); // the end of an interim response (a body follows only a final)
          continue;
        }
        const owned_head& h = **held;
        if (h.status >= 200 || h.status == 101) {
          watch->final_head = true;
          cut = h.status >= 400 || h.status == 101 || !h.keep_alive;
          break;
        }
        forward_interim(interim, h, *rq);
        response.pop_front();
      }
      if (!interim.empty()) {
        // A failed write shows on the client's next read; the upload's own read sees it.
        co_await asio::async_write(socket_, asio::buffer(interim), use_tuple);
      }
      if (watch->final_head) {
        break;
      }
    }
    if (cut && !watch->stop) {
      watch->cut = true;
      std::error_code ignored;
      socket_.cancel(ignored);    // the client read the upload waits on, if it does
      up->socket.cancel(ignored); // or its upstream write
    }
  }

  /// One attempt at a host, as read_response needs it: where to report and decide.
  struct attempt_exchange {
    http::http_connection& up;
    upstream_pool::lease& lease;
    resilience::retry_state& retry;
    const retry_config& rc;
    cluster_counters& cc;
    std::size_t host;
    resilience::circuit_breaker::permission permission;
    steady::time_point start;
    steady::time_point deadline; // for the response's head
    clock::duration request_timeout;
    resilience::resource_guard& retry_slot;
  };

  /// How reading an upstream's response ended.
  struct response_end {
    bool forwarded = false;   // the response went to the client (whole, or cut short)
    bool keep = false;        // ... and the client connection may carry another request
    bool client_gone = false; // the client could not be written to
    bool reported = false;    // the attempt was reported and a retry decided (delay below)
    clock::duration delay{};
    int status = 0;
    resilience::attempt_outcome outcome{};
    std::string failure;
    bool bytes_read = false; // any byte of a response came
  };

  // Reads the response to an attempt: its head within the attempt's deadline, then its body
  // streamed, each piece written to the client before the next is read. At the head, a failed
  // response is either forwarded or, when the retry policy takes it, dropped for another try.
  // `first_read`: the upload's watch read the upstream already, and this ended its read (what
  // it parsed is queued).
  asio::awaitable<response_end> read_response(request_context& rq, const attempt_exchange& at,
                                              std::optional<std::error_code> first_read) {
    response_end end;
    auto& up = at.up;
    auto& lease = at.lease;
    auto& response = response_events_;
    if (!first_read) {
      response.clear();
    }
    // What goes to the client after each upstream read, in a string borrowed from the worker:
    // a long response grows it to the read size, which an idle connection should not keep.
    borrowed_string reply_buffer{w_};
    std::string& reply = reply_buffer.get();
    bool head_sent = false;
    bool dropping = false; // a failed response being skipped for a retry
    bool response_done = false;
    bool response_close = false;
    while (!response_done) {
      if (aborted_) {
        lease.mark_broken();
        end.client_gone = true; // stopped past the drain time: the client connection closes
        co_return end;
      }
      std::error_code ec;
      std::size_t n = 0;
      if (first_read) {
        ec = *std::exchange(first_read, std::nullopt);
      } else {
        watchdog_->set(head_sent ? steady::now() + at.request_timeout : at.deadline);
        auto [read_ec, read] =
            co_await up.socket.async_read_some(asio::buffer(up.buffer), use_tuple);
        ec = read_ec;
        n = read;
        if (watchdog_->fired) {
          ec = make_error_code(std::errc::timed_out);
        }
      }
      end.bytes_read = end.bytes_read || n > 0 || !response.empty();
      if (ec == asio::error::eof) {
        up.parser.finish(response);
      } else if (!ec && n > 0) {
        const auto used = up.parser.feed({up.buffer.data(), n}, response);
        if (used != n) {
          response_close = true; // bytes after the response: the connection is out of step
        }
      }
      const bool failed = (ec && ec != asio::error::eof) || up.parser.error() ||
                          (ec == asio::error::eof && response.empty());
      // Whatever was parsed goes to the client first, in one write per upstream read (head and
      // body together: one segment on the wire for a small response, not two).
      reply.clear();
      while (!response.empty()) {
        auto ev = std::move(response.front());
        response.pop_front();
        if (auto* held = std::get_if<head_ptr>(&ev)) {
          const owned_head* h = held->get();
          if (h->status == 101) {
            // A switch of protocols the request did not ask for (no Upgrade goes upstream): the
            // upstream is out of step with the request. 502 now rather than a wait for a
            // final response that will not come.
            lease.mark_broken();
            end.outcome = resilience::attempt_outcome::from_status(502);
            end.failure = "upstream switched protocols (101) unasked";
            co_return end;
          }
          if (h->status >= 100 && h->status < 200) {
            // An interim response (100 Continue, 103 Early Hints) goes to the client (see
            // forward_interim). Its end is skipped.
            skip_interim_end_ = true;
            forward_interim(reply, *h, rq);
            continue;
          }
          end.status = h->status;
          response_close = response_close || !h->keep_alive;
          std::optional<clock::duration> retry_after;
          if (const auto v = h->find("retry-after")) {
            retry_after = http::parse_retry_after(*v, std::chrono::system_clock::now());
          }
          const auto outcome = resilience::attempt_outcome::from_status(h->status, retry_after);
          report(at.cc, at.host, at.permission, outcome, at.start);
          if (at.rc.policy.is_retriable(outcome)) {
            const auto decision = decide(at.retry, outcome, at.cc, at.retry_slot);
            if (decision.retry) {
              dropping = true;
              end.reported = true;
              end.delay = decision.delay;
              end.outcome = outcome;
              continue;
            }
          } else {
            if (at.cc.budget && h->status < 500) {
              at.cc.budget->on_result(true); // what retry_state::decide would tell it
            }
          }
          const bool until_close = h->framing == http::body_framing::until_close;
          // An HTTP/1.0 client cannot read chunked framing (RFC 9112 7): it gets the body as it
          // is, without Transfer-Encoding, delimited by the close of the connection.
          const bool unchunk = http10_ && h->framing == http::body_framing::chunked;
          const bool keep = rq.client_keep && !until_close && !unchunk;
          // tether's own version, whatever the upstream's (RFC 9110 6.2: an intermediary MUST
          // send its own): an HTTP/1.0 upstream's answer reaches the client as 1.1.
          auto rview = h->view();
          rview.version_major = 1;
          rview.version_minor = 1;
          const std::array<http::header, 2> rextra = {
              http::header{"Via", "1.1 tether"},
              http::header{"Connection", keep ? "keep-alive" : "close"}};
          // Framing fields that must not go to the client: a 204 has neither Content-Length
          // nor Transfer-Encoding, a 304 no Transfer-Encoding (RFC 9110 8.6, RFC 9112 6.1), and
          // an unchunked body no Transfer-Encoding.
          static constexpr std::array<std::string_view, 2> framing_fields = {"transfer-encoding",
                                                                             "content-length"};
          const std::size_t drop_framing = h->status == 204              ? 2
                                           : h->status == 304 || unchunk ? 1
                                                                         : 0;
          // "Connection: close" when the client must not reuse the connection; "keep-alive"
          // when it may and speaks HTTP/1.0 (which closes unless told otherwise).
          const bool say_connection = !keep || http10_;
          http::write_response_head(reply, rview,
                                    {false, std::span{rextra}.first(say_connection ? 2 : 1),
                                     std::span{framing_fields}.first(drop_framing)});
          head_sent = true;
          keep_after_ = keep;
          chunked_response_ = h->framing == http::body_framing::chunked && !unchunk;
        } else if (auto* piece = std::get_if<body_piece>(&ev)) {
          if (dropping) {
            continue;
          }
          if (chunked_response_) {
            http::write_chunk(reply, piece->data);
          } else {
            reply.append(piece->data);
          }
        } else {
          if (skip_interim_end_) {
            skip_interim_end_ = false;
            continue;
          }
          if (chunked_response_ && !dropping) {
            http::write_last_chunk(reply);
          }
          response_done = true;
          break;
        }
      }
      if (response_done && (!response.empty() || !up.parser.idle())) {
        // A second response (or part of one) came with the first: the upstream is out of step
        // with its requests. Nothing of it goes to the client; the connection is closed.
        response_close = true;
        response.clear();
      }
      if (dropping) {
        // A response skipped for a retry: its connection is kept only if it ended already.
        up.responses += response_done ? 1 : 0;
        up.reusable = response_done && !response_close && up.parser.idle();
        if (!up.reusable) {
          lease.mark_broken();
        }
        co_return end;
      }
      if (!reply.empty()) {
        if (head_sent) {
          // The attempt's deadline is met: the rest runs under the request timeout.
          watchdog_->set(coarse_monotonic_clock::instance().now() + at.request_timeout);
        }
        auto [wec, wn] = co_await asio::async_write(socket_, asio::buffer(reply), use_tuple);
        if (wec) {
          lease.mark_broken();
          count(cause::downstream_reset);
          end.client_gone = true;
          co_return end;
        }
      }
      if (response_done) {
        break;
      }
      if (failed || ec == asio::error::eof) {
        lease.mark_broken();
        const bool timed_out = ec == std::errc::timed_out;
        if (head_sent) {
          // The client has part of a response: only closing tells it.
          count(timed_out ? cause::upstream_timeout
                          : (up.parser.error() ? cause::bad_response : cause::upstream_reset));
          end.client_gone = true;
          co_return end;
        }
        if (up.parser.error()) {
          // A malformed response: the upstream is broken in a way a retry will not mend.
          end.outcome.result = resilience::attempt_result::http_status;
          end.outcome.status = 502;
          end.failure = "upstream sent a malformed response: " + up.parser.error().message();
        } else {
          end.outcome.result =
              timed_out ? resilience::attempt_result::timeout : resilience::attempt_result::reset;
          end.failure =
              timed_out ? "upstream timeout" : "upstream closed the connection before answering";
        }
        co_return end;
      }
    }
    ++up.responses;
    up.reusable = !response_close && up.parser.idle();
    end.forwarded = true;
    end.keep = keep_after_;
    co_return end;
  }

  void observe(cluster_counters& c, int status, steady::time_point started, const owned_head& head,
               std::string_view cluster, std::string_view upstream) {
    const auto cls = static_cast<std::size_t>(std::clamp(status / 100, 1, 5) - 1);
    c.responses[cls]->Increment();
    const auto took = steady::now() - started;
    c.duration->observe(took);
    access_line(status, took, head.method, head.target, cluster, upstream);
  }

  void access_line(int status, steady::duration took, std::string_view method,
                   std::string_view target, std::string_view cluster, std::string_view upstream) {
    auto& s = w_.shared;
    if (!s.access) {
      return;
    }
    const double ms = std::chrono::duration<double, std::milli>(took).count();
    if (s.json_logs) {
      s.access->info(
          R"("client":{},"method":{},"target":{},"status":{},"duration_ms":{:.3f},"cluster":{},"upstream":{})",
          json_string(client_ip_), json_string(method), json_string(target), status, ms,
          json_string(cluster), json_string(upstream));
    } else {
      s.access->info("{} \"{} {}\" {} {:.3f}ms cluster={} upstream={}", client_ip_, method, target,
                     status, ms, cluster, upstream);
    }
  }

  worker& w_;
  asio::ip::tcp::socket socket_;
  std::shared_ptr<watchdog> watchdog_;
  http::parser parser_;
  event_queue events_;          // the client's requests, parsed
  event_queue response_events_; // the response being read, parsed
  static constexpr std::size_t read_size = 16 * 1024;
  std::unique_ptr<std::array<char, read_size>> buffer_; // only while a large request is read
  std::array<char, 2048> small_{};
  std::string client_ip_;
  steady::time_point head_first_byte_{}; // of the head being read
  steady::time_point head_deadline_{};
  bool head_started_ = false;
  bool idle_ = false;
  bool closing_ = false;
  bool keep_after_ = false;
  bool chunked_response_ = false;
  bool head_request_ = false; // the request being answered is a HEAD
  bool aborted_ = false;
  bool http10_ = false; // ... and came as HTTP/1.0
  bool skip_interim_end_ = false;
};

asio::awaitable<void> serve(worker* w, asio::ip::tcp::socket socket) {
  session s{*w, std::move(socket)};
  co_await s.run();
}

} // namespace

// ---------------------------------------------------------------------------------------------

struct server::impl {
  impl(config c, const clock& resilience_clock) {
    shared.cfg = std::move(c);
    shared.resilience_clock = &resilience_clock;
  }

  shared_state shared;
  std::vector<std::unique_ptr<worker>> workers;
  std::vector<std::uint16_t> ports;
  asio::io_context admin_io{1};
  std::shared_ptr<asio::executor_work_guard<asio::io_context::executor_type>> admin_work;
  std::shared_ptr<http::small_server> admin;
  std::thread admin_thread;
  std::atomic<bool> started{false}; // read by the admin thread
  std::string failure;              // why start() failed

  // Health checks and outlier sweeps run on the admin thread; their timers, to stop them.
  std::vector<std::unique_ptr<asio::steady_timer>> timers;
  std::vector<std::shared_ptr<http::client>> checkers;
  default_random random{default_random::entropy_seed()};

  void register_metrics();
  http::server_response admin_request(const http::server_request& r);
  void start_admin_tasks(); // health checks, DNS lookups, outlier sweeps
  void set_health(std::size_t c, std::size_t e, bool healthy);
  net::accept_hooks accept_hooks(const asio::ip::tcp::acceptor& acceptor);
};

namespace {

// Active health checks of one host: every interval (plus up to `jitter`, so checks of many hosts
// spread out) an HTTP GET of the path or a TCP connect, within the timeout. After
// unhealthy_threshold failures in a row the host is out of service; after healthy_threshold
// passes in a row it is back. A host starts out of service and unchecked: the first check runs at
// once, and its one verdict decides (a single pass puts it in service, as in Envoy). A pass also
// brings back a host that outlier detection ejected (Envoy's default as well).
asio::awaitable<void> health_loop(server::impl* s, std::size_t c, std::size_t e,
                                  asio::steady_timer* timer, std::shared_ptr<http::client> client) {
  const auto& cl = s->shared.cfg.clusters[c];
  const auto& hc = cl.health_check;
  const auto& ep = cl.endpoints[e];
  auto& counters = *s->shared.clusters[c].endpoints[e];
  std::uint32_t passes = 0;
  std::uint32_t failures = 0;
  for (;;) {
    bool passed = false;
    if (hc.kind == health_check_kind::http) {
      http::request r;
      r.host = ep.host;
      r.port = ep.port;
      r.target = hc.path;
      const auto result = co_await client->async_request(r);
      passed = !result.error && std::find(hc.expected_statuses.begin(), hc.expected_statuses.end(),
                                          result.response.status) != hc.expected_statuses.end();
    } else {
      net::tcp_options tcp = cl.tcp;
      tcp.connect_timeout = hc.timeout;
      net::tcp_connector connector{ep.host, ep.port, tcp};
      std::unique_ptr<net::tcp_connection> connection;
      passed = !co_await connector.async_connect(connection);
    }
    (passed ? counters.checks_passed : counters.checks_failed)->Increment();
    passes = passed ? passes + 1 : 0;
    failures = passed ? 0 : failures + 1;
    const bool healthy = counters.healthy.load();
    if (!counters.checked.load()) {
      counters.checked = true;
      s->set_health(c, e, passed);
    } else if (healthy && failures >= hc.unhealthy_threshold) {
      s->set_health(c, e, false);
    } else if (!healthy && passes >= hc.healthy_threshold) {
      s->set_health(c, e, true);
    }
    if (passed && counters.outlier &&
        s->shared.clusters[c].detector->on_health_check_passed(*counters.outlier)) {
      log_event(s->shared, spdlog::level::info,
                "health check passed: outlier detection returned " + counters.name + " to service");
    }
    auto wait = hc.interval;
    if (hc.jitter > clock::duration::zero()) {
      wait += uniform_duration(s->random, clock::duration::zero(), hc.jitter);
    }
    timer->expires_after(wait);
    const auto [ec] = co_await timer->async_wait(use_tuple);
    if (ec || !s->started) {
      co_return;
    }
  }
}

// A host given by name is looked up at start and every resolve_interval; new connections use
// the last answer (a failed lookup keeps it), so they follow DNS changes as connections turn
// over, and no connection waits for a lookup once the first answer is in.
asio::awaitable<void> resolve_loop(server::impl* s, std::size_t c, std::size_t e,
                                   asio::steady_timer* timer) {
  const auto& cl = s->shared.cfg.clusters[c];
  const auto& ep = cl.endpoints[e];
  auto& counters = *s->shared.clusters[c].endpoints[e];
  asio::ip::tcp::resolver resolver{timer->get_executor()};
  std::vector<asio::ip::tcp::endpoint> last;
  for (;;) {
    auto [ec, results] =
        co_await resolver.async_resolve(ep.host, std::to_string(ep.port), use_tuple);
    if (!ec && !results.empty()) {
      std::vector<asio::ip::tcp::endpoint> now;
      for (const auto& r : results) {
        now.push_back(r.endpoint());
      }
      if (now != last) {
        std::string list;
        for (const auto& a : now) {
          list += (list.empty() ? "" : ", ") + a.address().to_string();
        }
        log_event(s->shared, spdlog::level::info,
                  cl.name + "/" + counters.name + " resolves to " + list);
        last = now;
      }
      counters.addresses->set(std::move(now));
      counters.resolved->Increment();
    } else {
      counters.resolve_failed->Increment();
      log_event(s->shared, spdlog::level::warn,
                cl.name + "/" + counters.name + ": lookup failed (" +
                    (ec ? net::normalized(ec).message() : std::string{"no address"}) +
                    "); keeping the last answer");
    }
    timer->expires_after(cl.resolve_interval);
    const auto [waited] = co_await timer->async_wait(use_tuple);
    if (waited || !s->started) {
      co_return;
    }
  }
}

// The access log's lines are written by spdlog's thread as they come, through a stdio buffer:
// without a flush, a quiet proxy's last lines would sit there for minutes, and a crash would
// lose them. Once a second bounds both.
asio::awaitable<void> access_log_flush_loop(server::impl* s, asio::steady_timer* timer) {
  for (;;) {
    timer->expires_after(std::chrono::seconds{1});
    const auto [ec] = co_await timer->async_wait(use_tuple);
    if (ec || !s->started) {
      co_return;
    }
    s->shared.access->flush(); // queued behind the lines before it, written by spdlog's thread
  }
}

// Outlier detection's periodic sweep: hosts whose ejection time is over come back.
asio::awaitable<void> outlier_loop(server::impl* s, std::size_t c, asio::steady_timer* timer) {
  auto& cc = s->shared.clusters[c];
  for (;;) {
    timer->expires_after(cc.detector->options().interval);
    const auto [ec] = co_await timer->async_wait(use_tuple);
    if (ec || !s->started) {
      co_return;
    }
    for (const auto& host : cc.detector->on_interval()) {
      log_event(s->shared, spdlog::level::info,
                "outlier detection returned " + host->address() + " to service");
    }
  }
}

} // namespace

void server::impl::set_health(std::size_t c, std::size_t e, bool healthy) {
  auto& counters = *shared.clusters[c].endpoints[e];
  counters.healthy = healthy;
  log_event(shared, healthy ? spdlog::level::info : spdlog::level::warn,
            "health check: " + shared.cfg.clusters[c].name + "/" + counters.name +
                (healthy ? " is healthy" : " is unhealthy: no traffic, connections closed"));
  if (!healthy) {
    for (auto& w : workers) {
      asio::post(w->io, [pool = w->clusters[c].endpoints[e].pool] { pool->evict_all(); });
    }
  }
}

net::accept_hooks server::impl::accept_hooks(const asio::ip::tcp::acceptor& acceptor) {
  std::error_code ec;
  const auto local = acceptor.local_endpoint(ec);
  const std::string where = local.address().to_string() + ":" + std::to_string(local.port());
  net::accept_hooks hooks;
  hooks.on_failure = [s = &shared](net::accept_failure f) {
    s->accept_failures[static_cast<std::size_t>(f)]->Increment();
  };
  hooks.on_pause = [s = &shared, where](std::error_code why) {
    log_event(*s, spdlog::level::err,
              "cannot accept connections on " + where + ": " + why.message() +
                  "; accepting paused (10 ms, doubling up to 1 s) until it works again, "
                  "connections already open are served");
  };
  hooks.on_resume = [s = &shared, where](std::uint64_t failures) {
    log_event(*s, spdlog::level::warn,
              "accepting connections on " + where + " again, after " + std::to_string(failures) +
                  " failed attempts");
  };
  return hooks;
}

void server::impl::start_admin_tasks() {
  const auto& cfg = shared.cfg;
  if (shared.access) {
    timers.push_back(std::make_unique<asio::steady_timer>(admin_io));
    asio::co_spawn(admin_io, access_log_flush_loop(this, timers.back().get()), asio::detached);
  }
  for (std::size_t c = 0; c < cfg.clusters.size(); ++c) {
    const auto& cl = cfg.clusters[c];
    if (shared.clusters[c].detector) {
      timers.push_back(std::make_unique<asio::steady_timer>(admin_io));
      asio::co_spawn(admin_io, outlier_loop(this, c, timers.back().get()), asio::detached);
    }
    for (std::size_t e = 0; e < cl.endpoints.size(); ++e) {
      if (shared.clusters[c].endpoints[e]->addresses) {
        timers.push_back(std::make_unique<asio::steady_timer>(admin_io));
        asio::co_spawn(admin_io, resolve_loop(this, c, e, timers.back().get()), asio::detached);
      }
    }
    if (cl.health_check.kind == health_check_kind::none) {
      continue;
    }
    std::shared_ptr<http::client> client;
    if (cl.health_check.kind == health_check_kind::http) {
      http::client_options o;
      o.name = "health-check/" + cl.name;
      o.user_agent = "tether-health-check";
      o.pool.max_size = 1;
      o.tcp = cl.tcp;
      o.tcp.connect_timeout = cl.health_check.timeout;
      o.retry.max_attempts = 1;
      o.retry.overall_timeout = cl.health_check.timeout;
      o.budget.reset();
      o.breaker.reset();
      client = http::client::create(admin_io.get_executor(), o);
      checkers.push_back(client);
    }
    for (std::size_t e = 0; e < cl.endpoints.size(); ++e) {
      timers.push_back(std::make_unique<asio::steady_timer>(admin_io));
      asio::co_spawn(admin_io, health_loop(this, c, e, timers.back().get(), client),
                     asio::detached);
    }
  }
}

void server::impl::register_metrics() {
  auto& reg = shared.registry;
  const auto& cfg = shared.cfg;
  const clock& rclock = *shared.resilience_clock;
  auto& responses = reg.counter("tether_proxy_responses_total",
                                "Responses to clients by cluster and status class");
  auto& attempts = reg.counter("tether_proxy_upstream_requests_total",
                               "Attempts sent upstream (first tries and retries), by host");
  auto& retries =
      reg.counter("tether_proxy_retries_total", "Retries, by the outcome of the attempt retried");
  auto& exhausted = reg.counter("tether_proxy_retry_budget_exhausted_total",
                                "Retries the cluster's retry budget refused");
  auto& stale = reg.counter(
      "tether_proxy_stale_connection_resends_total",
      "Requests sent again on another connection because the upstream closed a kept-alive one "
      "before answering (not retries: nothing was processed)");
  auto& overflow = reg.counter("tether_proxy_overflow_total",
                               "Requests or retries refused by a cluster threshold");
  auto& ejections =
      reg.counter("tether_proxy_outlier_ejections_total", "Hosts ejected by outlier detection");
  auto& checks =
      reg.counter("tether_proxy_health_checks_total", "Active health checks of a host, by result");
  auto& resolutions = reg.counter("tether_proxy_dns_resolutions_total",
                                  "Lookups of a host given by name, by result");
  for (const auto& c : cfg.clusters) {
    cluster_counters cc;
    const metrics::labels cl{{"cluster", c.name}};
    cc.limits = std::make_unique<resilience::cluster_limits>(c.limits);
    cc.series.watch(reg, *cc.limits, cl);
    if (c.retry_budget) {
      cc.budget = std::make_unique<resilience::windowed_retry_budget>(*c.retry_budget, rclock);
      cc.series.watch(reg, *cc.budget, cl);
    }
    if (c.outlier_detection) {
      cc.detector = std::make_unique<resilience::outlier_detector>(*c.outlier_detection, rclock);
      cc.series.watch(reg, *cc.detector, cl);
    }
    for (const auto& e : c.endpoints) {
      auto ep = std::make_unique<endpoint_counters>();
      ep->name = e.host + ":" + std::to_string(e.port);
      if (c.health_check.kind != health_check_kind::none) {
        // Out of service until its first check passes, as Envoy does: traffic goes to hosts
        // known to answer (and to all while none is, by panic routing).
        ep->healthy = false;
        ep->checked = false;
      }
      const metrics::labels hl{{"cluster", c.name}, {"endpoint", ep->name}};
      ep->attempts = &attempts.Add(hl);
      ep->ejections = &ejections.Add(hl);
      ep->checks_passed = &checks.Add(metrics::with_label(hl, "result", "passed"));
      ep->checks_failed = &checks.Add(metrics::with_label(hl, "result", "failed"));
      if (c.breaker.enabled) {
        ep->breaker = std::make_unique<resilience::circuit_breaker>(c.name + "/" + ep->name,
                                                                    c.breaker.options, rclock);
        ep->breaker_failures = c.breaker.options.failures;
        cc.series.watch(reg, *ep->breaker, hl);
      }
      if (cc.detector) {
        ep->outlier = cc.detector->add_host(ep->name);
      }
      std::error_code not_ip;
      (void)asio::ip::make_address(e.host, not_ip);
      if (not_ip) {
        ep->addresses = std::make_shared<net::address_cache>();
        ep->resolved = &resolutions.Add(metrics::with_label(hl, "result", "ok"));
        ep->resolve_failed = &resolutions.Add(metrics::with_label(hl, "result", "failed"));
      }
      cc.endpoints.push_back(std::move(ep));
    }
    for (std::size_t i = 0; i < class_names.size(); ++i) {
      cc.responses[i] = &responses.Add({{"cluster", c.name}, {"class", class_names[i]}});
    }
    for (std::size_t i = 0; i < retry_reason_names.size(); ++i) {
      cc.retries[i] = &retries.Add({{"cluster", c.name}, {"reason", retry_reason_names[i]}});
    }
    for (std::size_t i = 0; i < resource_names.size(); ++i) {
      cc.overflow[i] = &overflow.Add({{"cluster", c.name}, {"resource", resource_names[i]}});
    }
    cc.budget_exhausted = &exhausted.Add(cl);
    cc.stale_resends = &stale.Add(cl);
    cc.duration = &reg.histogram_series("tether_proxy_request_duration_seconds",
                                        "From a request's head to the end of its response",
                                        {{"cluster", c.name}});
    shared.clusters.push_back(std::move(cc));
  }
  for (std::size_t c = 0; c < cfg.clusters.size(); ++c) {
    for (const auto& ep : shared.clusters[c].endpoints) {
      shared.callbacks.push_back(reg.callback(
          "tether_proxy_host_healthy",
          "1 while a host passes its health checks (or has none); 0 until its first check passes",
          metrics::metric_kind::gauge, {{"cluster", cfg.clusters[c].name}, {"endpoint", ep->name}},
          [e = ep.get()] { return e->healthy.load() ? 1.0 : 0.0; }));
    }
  }
  for (const auto& r : cfg.routes) {
    for (std::size_t c = 0; c < cfg.clusters.size(); ++c) {
      if (cfg.clusters[c].name == r.cluster) {
        shared.route_cluster.push_back(c);
        shared.route_retry.push_back(r.retry ? &*r.retry : &cfg.clusters[c].retry);
        break;
      }
    }
  }
  auto& causes = reg.counter("tether_proxy_errors_total",
                             "Requests the proxy answered itself or gave up on, by cause");
  for (std::size_t i = 0; i < cause_names.size(); ++i) {
    shared.causes[i] = &causes.Add({{"cause", cause_names[i]}});
  }
  auto& accept_failures =
      reg.counter("tether_proxy_accept_failures_total",
                  "Client connections that could not be accepted, by cause (descriptors: out of "
                  "file descriptors, memory, other)");
  for (std::size_t i = 0; i < shared.accept_failures.size(); ++i) {
    shared.accept_failures[i] =
        &accept_failures.Add({{"cause", net::to_string(static_cast<net::accept_failure>(i))}});
  }
  shared.downstream_opened = &reg.counter("tether_proxy_downstream_connections_opened_total",
                                          "Client connections accepted")
                                  .Add({});
  shared.callbacks.push_back(
      reg.callback("tether_proxy_downstream_connections_active", "Client connections open",
                   metrics::metric_kind::gauge, {},
                   [s = &shared] { return static_cast<double>(s->downstream_active.load()); }));
}

http::server_response server::impl::admin_request(const http::server_request& r) {
  http::server_response out;
  const auto path = r.path();
  if (r.method != "GET") {
    out.status = 405;
    out.content_type = "text/plain";
    out.headers.push_back({"Allow", "GET"}); // RFC 9110 15.5.6: a 405 MUST say what is allowed
    out.body = "only GET\n";
    return out;
  }
  if (path == "/metrics") {
    out.content_type = "text/plain; version=0.0.4";
    out.body = shared.registry.expose();
  } else if (path == "/ready") {
    // As Envoy's initialization: not ready until every health-checked host has had its first
    // verdict (within its check timeout), so an orchestrator sends no traffic while the proxy
    // knows of only some of its hosts.
    bool checked = true;
    for (const auto& cc : shared.clusters) {
      for (const auto& ep : cc.endpoints) {
        checked = checked && ep->checked.load();
      }
    }
    const bool draining = shared.draining.load();
    const bool ready = started && !draining && checked;
    out.status = ready ? 200 : 503;
    out.content_type = "text/plain";
    out.body = ready ? "ready\n"
                     : (draining ? "draining\n" : "initializing: first health checks pending\n");
  } else if (path == "/config") {
    out.body = to_json(shared.cfg);
  } else if (path == "/clusters") {
    nlohmann::ordered_json clusters = nlohmann::ordered_json::array();
    for (std::size_t c = 0; c < shared.cfg.clusters.size(); ++c) {
      const auto& cfg = shared.cfg.clusters[c];
      nlohmann::ordered_json hosts = nlohmann::ordered_json::array();
      for (std::size_t e = 0; e < cfg.endpoints.size(); ++e) {
        const auto& counters = *shared.clusters[c].endpoints[e];
        std::size_t idle = 0;
        std::size_t active = 0;
        std::size_t pending = 0;
        for (const auto& w : workers) {
          const auto s = w->clusters[c].endpoints[e].pool->stats();
          idle += s.idle;
          active += s.active;
          pending += s.pending;
        }
        hosts.push_back(
            {{"address", cfg.endpoints[e].host + ":" + std::to_string(cfg.endpoints[e].port)},
             {"addresses",
              [&] {
                nlohmann::ordered_json list = nlohmann::ordered_json::array();
                if (counters.addresses) {
                  for (const auto& a : counters.addresses->get()) {
                    list.push_back(a.address().to_string());
                  }
                } else {
                  list.push_back(cfg.endpoints[e].host);
                }
                return list;
              }()},
             {"health", !counters.checked.load()
                            ? "unchecked"
                            : (counters.healthy.load() ? "healthy" : "unhealthy")},
             {"ejected", counters.outlier && counters.outlier->ejected()},
             {"breaker", counters.breaker
                             ? std::string{resilience::to_string(counters.breaker->state())}
                             : std::string{"off"}},
             {"requests", counters.requests.load()},
             {"active_requests", counters.active.load()},
             {"failures", counters.failures.load()},
             {"pool", {{"idle", idle}, {"active", active}, {"pending", pending}}}});
      }
      clusters.push_back({{"name", cfg.name}, {"lb", to_string(cfg.lb)}, {"hosts", hosts}});
    }
    out.body = nlohmann::ordered_json{{"clusters", clusters}}.dump(2);
  } else {
    out.status = 404;
    out.content_type = "text/plain";
    out.body = "not found: try /metrics, /ready, /clusters or /config\n";
  }
  return out;
}

server::server(config c) : server{std::move(c), coarse_monotonic_clock::instance()} {}

server::server(config c, const clock& resilience_clock)
    : impl_{std::make_unique<impl>(std::move(c), resilience_clock)} {}

server::~server() {
  stop();
}

std::error_code server::start() {
  auto& s = *impl_;
  auto& cfg = s.shared.cfg;
  // Logs: spdlog, not registered by name (tests run several proxies in one process).
  s.shared.json_logs = cfg.log.format == log_format::json;
  s.shared.log =
      std::make_shared<spdlog::logger>("tether", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  s.shared.log->set_pattern(s.shared.json_logs
                                ? R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":%v})"
                                : "[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  s.shared.log->set_level(
      spdlog::level::from_str(cfg.log.level == "warn" ? "warning" : cfg.log.level));
  if (!cfg.log.access_log.empty()) {
    if (std::FILE* probe = std::fopen(cfg.log.access_log.c_str(), "a")) {
      std::fclose(probe);
    } else {
      const std::error_code ec{errno, std::system_category()};
      s.failure = "cannot open the access log " + cfg.log.access_log + ": " + ec.message();
      return ec;
    }
    s.shared.access_threads = std::make_shared<spdlog::details::thread_pool>(8192, 1);
    s.shared.access = std::make_shared<spdlog::async_logger>(
        "access", std::make_shared<spdlog::sinks::basic_file_sink_mt>(cfg.log.access_log),
        s.shared.access_threads, spdlog::async_overflow_policy::block);
    s.shared.access->set_pattern(s.shared.json_logs ? R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z",%v})"
                                                    : "[%Y-%m-%d %H:%M:%S.%e] %v");
  }
  s.register_metrics();
  const std::size_t n =
      cfg.workers != 0 ? cfg.workers : std::max(1U, std::thread::hardware_concurrency());
  for (std::size_t i = 0; i < n; ++i) {
    auto w = std::make_unique<worker>(s.shared, i);
    for (std::size_t c = 0; c < cfg.clusters.size(); ++c) {
      const auto& cl = cfg.clusters[c];
      cluster_state state{cl.lb};
      for (std::size_t ep_index = 0; ep_index < cl.endpoints.size(); ++ep_index) {
        const auto& ep = cl.endpoints[ep_index];
        const std::string key = ep.host + ":" + std::to_string(ep.port);
        // The gauges read the pool at scrape time, weakly: a pool can outlive this worker's
        // list only while its io_context winds down.
        auto weak = std::make_shared<std::weak_ptr<upstream_pool>>();
        auto observer = std::make_shared<pool::pool_metrics>(
            s.shared.registry,
            metrics::labels{{"cluster", cl.name}, {"endpoint", key}, {"worker", std::to_string(i)}},
            [weak] {
              auto locked = weak->lock();
              return locked ? locked->stats() : pool::pool_stats{};
            });
        auto limits = cfg.downstream.limits;
        limits.max_body = 0; // responses are streamed, never held whole
        http::http_connector connector{ep.host, ep.port, cl.tcp, limits};
        connector.limit_connections(&s.shared.clusters[c].limits->connections);
        if (const auto& addresses = s.shared.clusters[c].endpoints[ep_index]->addresses) {
          connector.use_addresses(addresses);
        }
        auto p = upstream_pool::create(w->io.get_executor(), std::move(connector), cl.pool,
                                       coarse_monotonic_clock::instance(), observer);
        *weak = p;
        state.endpoints.push_back({p, 0});
        w->pool_observers.push_back(std::move(observer));
      }
      w->clusters.push_back(std::move(state));
    }
    s.workers.push_back(std::move(w));
  }
  // Listeners: every worker binds the same address and port (SO_REUSEPORT; the kernel spreads
  // connections across them). A port 0 is resolved by the first worker's bind, which also makes
  // sure no other process listens there unless the listener says to share the port.
  const auto unbind = [&s] {
    for (auto& w : s.workers) {
      w->acceptors.clear();
    }
  };
  for (const auto& l : cfg.listeners) {
    std::uint16_t port = l.port;
    std::error_code ec;
    const auto address = asio::ip::make_address(l.address, ec);
    for (auto& w : s.workers) {
      if (ec) {
        break;
      }
      auto a = std::make_unique<asio::ip::tcp::acceptor>(w->io);
      const bool first = w == s.workers.front();
      ec = net::open_listener(*a, {address, port}, {true, first && !l.reuse_port});
      if (!ec) {
        port = a->local_endpoint().port();
        w->acceptors.push_back(std::move(a));
      }
    }
    if (ec) {
      unbind();
      s.failure = "cannot listen on " + l.address + ":" + std::to_string(l.port) + " (listener '" +
                  l.name + "'): " + ec.message();
      if (ec == std::errc::address_in_use) {
        s.failure += l.reuse_port ? " by a socket that does not share it"
                                  : "; another process listens there (a listener's "
                                    "`reuse_port: true` shares a port on purpose)";
      }
      return ec;
    }
    s.ports.push_back(port);
  }
  s.admin = http::small_server::create(
      s.admin_io.get_executor(),
      [impl = impl_.get()](const http::server_request& r) { return impl->admin_request(r); });
  if (const auto ec = s.admin->listen(cfg.admin.address, cfg.admin.port)) {
    unbind();
    s.failure = "cannot listen on " + cfg.admin.address + ":" + std::to_string(cfg.admin.port) +
                " (the admin listener): " + ec.message();
    return ec;
  }
  for (auto& w : s.workers) {
    for (auto& c : w->clusters) {
      for (auto& e : c.endpoints) {
        e.pool->start();
      }
    }
    for (auto& a : w->acceptors) {
      asio::co_spawn(w->io,
                     net::accept_loop(
                         *a,
                         [raw = w.get()](asio::ip::tcp::socket socket) {
                           asio::co_spawn(raw->io, serve(raw, std::move(socket)), asio::detached);
                         },
                         s.accept_hooks(*a)),
                     asio::detached);
    }
    w->work = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(
        w->io.get_executor());
    w->thread = std::thread{[raw = w.get()] { raw->io.run(); }};
  }
  s.admin_work = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(
      s.admin_io.get_executor());
  s.started = true;
  s.start_admin_tasks();
  s.admin_thread = std::thread{[&s] { s.admin_io.run(); }};
  log_event(s.shared, spdlog::level::info,
            "started: " + std::to_string(s.workers.size()) + " workers, " +
                std::to_string(cfg.listeners.size()) + " listeners, admin on port " +
                std::to_string(s.admin->port()));
  return {};
}

void server::stop() {
  auto& s = *impl_;
  if (!s.started) {
    return;
  }
  s.started = false;
  s.shared.draining = true;
  // Stop accepting, close idle client connections; requests in flight go on.
  for (auto& w : s.workers) {
    std::promise<void> done;
    asio::post(w->io, [&w, &done] {
      for (auto& a : w->acceptors) {
        std::error_code ignored;
        a->close(ignored);
      }
      for (auto* session : w->sessions) {
        session->wake_if_idle();
      }
      done.set_value();
    });
    done.get_future().wait();
  }
  const auto give_up = steady::now() + s.shared.cfg.drain_timeout;
  while (s.shared.downstream_active.load() > 0 && steady::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  if (s.shared.downstream_active.load() > 0) {
    // Drain time is over: the sessions left are ended, and their coroutines run to their end
    // before the workers stop (a frame destroyed with its io_context would outlive the worker
    // state it points to). A session waiting on a full pool ends with its acquire timeout.
    for (auto& w : s.workers) {
      asio::post(w->io, [raw = w.get()] {
        for (auto* session : raw->sessions) {
          session->abort();
        }
      });
    }
    clock::duration longest = std::chrono::seconds{1};
    for (const auto& c : s.shared.cfg.clusters) {
      longest = std::max(longest, c.pool.acquire_timeout + std::chrono::seconds{1});
    }
    const auto hard_stop = steady::now() + longest;
    while (s.shared.downstream_active.load() > 0 && steady::now() < hard_stop) {
      std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
  }
  for (auto& w : s.workers) {
    w->work.reset();
    w->io.stop();
    w->thread.join();
  }
  {
    std::promise<void> done;
    asio::post(s.admin_io, [&] {
      s.admin->stop();
      for (auto& t : s.timers) {
        t->cancel();
      }
      done.set_value();
    });
    done.get_future().wait();
  }
  s.admin_work.reset();
  s.admin_io.stop();
  s.admin_thread.join();
  // The access log's thread writes out its queue and is joined (its pool's destructor), and
  // only then is the logger dropped: the join orders everything the thread did before it.
  s.shared.access_threads.reset();
  s.shared.access.reset();
  log_event(s.shared, spdlog::level::info, "stopped");
}

const std::string& server::start_failure() const noexcept {
  return impl_->failure;
}

std::vector<std::uint16_t> server::listener_ports() const {
  return impl_->ports;
}
std::uint16_t server::admin_port() const {
  return impl_->admin ? impl_->admin->port() : 0;
}
const config& server::running_config() const noexcept {
  return impl_->shared.cfg;
}
metrics::registry& server::registry() noexcept {
  return impl_->shared.registry;
}

} // namespace tether::proxy
