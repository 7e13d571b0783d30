#include "tether/chaos/proxy.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <deque>
#include <map>
#include <optional>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/channel.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include "tether/core/detached.hpp"
#include "tether/net/listener.hpp"
#include "tether/net/splice.hpp"
#include "tether/net/tcp_connector.hpp"

namespace tether::chaos {

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);
using steady = std::chrono::steady_clock;

/// Bytes read at once. Large enough that a proxy with no toxics moves a bulk transfer in few
/// system calls.
constexpr std::size_t read_size = 64 * 1024;
/// Chunks a direction may hold before its reader stops reading (back-pressure to the sender).
constexpr std::size_t queue_chunks = 32;

// The bytes sit behind a pointer: g++ 12 relocates co_await results bitwise in places, which a
// std::string's small-buffer self-pointer does not survive (seen under ASan).
struct chunk {
  std::unique_ptr<std::string> data;
  steady::time_point arrived{};
};

using chunk_channel = asio::experimental::channel<void(std::error_code, chunk)>;

constexpr std::size_t index(stream s) noexcept {
  return static_cast<std::size_t>(s);
}

} // namespace

/// One proxied connection: the client's socket, the upstream's, and a pump each way.
class link : public std::enable_shared_from_this<link> {
  struct timer_entry {
    toxic_kind kind = toxic_kind::timeout;
    std::int64_t setting = 0;
    std::shared_ptr<asio::steady_timer> timer;
  };

public:
  link(std::shared_ptr<proxy> owner, asio::ip::tcp::socket client)
      : owner_{std::move(owner)}, executor_{client.get_executor()}, sockets_{std::move(client),
                                                                             asio::ip::tcp::socket{
                                                                                 executor_}},
        queues_{chunk_channel{executor_, queue_chunks}, chunk_channel{executor_, queue_chunks}},
        changed_{asio::steady_timer{executor_}, asio::steady_timer{executor_}},
        splice_wake_{asio::steady_timer{executor_}, asio::steady_timer{executor_}} {}

  static asio::awaitable<void> run(std::shared_ptr<link> self, std::string host,
                                   std::uint16_t port) {
    asio::ip::tcp::resolver resolver{self->executor_};
    auto [resolve_error, endpoints] =
        co_await resolver.async_resolve(host, std::to_string(port), use_tuple);
    std::error_code ec = resolve_error;
    if (!ec) {
      // Each address in turn on a socket opened close-on-exec (Asio's range connect would
      // reopen it per address without the flag).
      ec = asio::error::not_found;
      for (const auto& entry : endpoints) {
        const asio::ip::tcp::endpoint target = entry.endpoint();
        std::error_code ignored;
        self->upstream().close(ignored);
        ec = net::open_close_on_exec(self->upstream(), target.protocol());
        if (ec) {
          continue;
        }
        auto [connect_error] = co_await self->upstream().async_connect(target, use_tuple);
        ec = connect_error;
        if (!ec || self->closed_) {
          break;
        }
      }
    }
    if (ec || self->closed_) {
      // Toxiproxy's answer to an upstream that cannot be reached: the client is hung up on.
      self->close(false);
      co_return;
    }
    std::error_code ignored;
    self->upstream().set_option(asio::ip::tcp::no_delay{true}, ignored);
    self->client().set_option(asio::ip::tcp::no_delay{true}, ignored);
    self->toxics_changed();
    for (const auto s : {stream::upstream, stream::downstream}) {
      asio::co_spawn(self->executor_, read_pump(self, s),
                     report_exceptions{"a chaos link's read pump"});
      asio::co_spawn(self->executor_, write_pump(self, s),
                     report_exceptions{"a chaos link's write pump"});
    }
  }

  link(const link&) = delete;
  link& operator=(const link&) = delete;
  ~link() = default;

  /// The proxy's toxics changed: new ones get their coin flip (per connection, kept until the
  /// toxic changes), timeout timers start, restart or (when their toxic goes) close the
  /// connection, as Toxiproxy's do, and pumps waiting on a change look again.
  void toxics_changed() {
    if (closed_ || owner_ == nullptr) {
      return;
    }
    std::map<std::string, bool> flips;
    for (const auto& t : owner_->toxics()) {
      const auto found = active_.find(t.name);
      const bool same = found != active_.end() && flipped_for_.count(t.name) != 0 &&
                        flipped_for_[t.name] == t.toxicity;
      flips[t.name] = same ? found->second : coin(t.toxicity);
      flipped_for_[t.name] = t.toxicity;
    }
    active_ = std::move(flips);
    bool close_now = false;
    for (auto it = timers_.begin(); it != timers_.end();) {
      const toxic* t = owner_->find_toxic(it->first);
      const bool still = t != nullptr && t->kind == it->second.kind && is_active(*t);
      if (!still) {
        // Removing a timeout toxic closes the connections it held (Toxiproxy's Cleanup).
        close_now = close_now || it->second.kind == toxic_kind::timeout;
        it->second.timer->cancel();
        it = timers_.erase(it);
        continue;
      }
      if (t->timeout != it->second.setting) {
        it->second.setting = t->timeout;
        if (t->kind == toxic_kind::timeout) {
          arm(it->second);
        }
      }
      ++it;
    }
    if (close_now) {
      close(false);
      return;
    }
    for (const auto& t : owner_->toxics()) {
      if (t.kind == toxic_kind::timeout && is_active(t) && timers_.count(t.name) == 0) {
        auto& entry = timers_[t.name];
        entry.kind = t.kind;
        entry.setting = t.timeout;
        entry.timer = std::make_shared<asio::steady_timer>(executor_);
        arm(entry);
      }
    }
    for (auto& c : changed_) {
      c.cancel();
    }
    for (auto& w : splice_wake_) {
      w.cancel();
    }
  }

  /// Closes both sockets: with a TCP reset (SO_LINGER 0) or a normal close.
  void close(bool reset) {
    if (closed_) {
      return;
    }
    closed_ = true;
    for (auto& s : sockets_) {
      std::error_code ignored;
      if (reset && s.is_open()) {
        s.set_option(asio::socket_base::linger{true, 0}, ignored);
      }
      s.close(ignored);
    }
    for (auto& q : queues_) {
      q.close();
    }
    for (auto& c : changed_) {
      c.cancel();
    }
    for (auto& [key, entry] : timers_) {
      entry.timer->cancel();
    }
    timers_.clear();
    if (owner_ != nullptr) {
      auto owner = std::move(owner_);
      owner->forget(this);
    }
  }

  void detach() noexcept { owner_.reset(); }

private:
  asio::ip::tcp::socket& client() { return sockets_[0]; }
  asio::ip::tcp::socket& upstream() { return sockets_[1]; }
  // Upstream bytes flow client -> upstream; downstream ones upstream -> client.
  asio::ip::tcp::socket& source(stream s) { return s == stream::upstream ? client() : upstream(); }
  asio::ip::tcp::socket& sink(stream s) { return s == stream::upstream ? upstream() : client(); }

  [[nodiscard]] bool is_active(const toxic& t) const {
    const auto found = active_.find(t.name);
    return found != active_.end() && found->second;
  }

  bool coin(double toxicity) {
    if (toxicity >= 1.0) {
      return true;
    }
    if (toxicity <= 0.0 || owner_ == nullptr) {
      return false;
    }
    return uniform_unit(owner_->random()) < toxicity;
  }

  // The first active toxic of `kind` on direction `s`, or nullptr.
  [[nodiscard]] const toxic* first_active(stream s, toxic_kind kind) const {
    if (owner_ == nullptr) {
      return nullptr;
    }
    for (const auto& t : owner_->toxics()) {
      if (t.direction == s && t.kind == kind && is_active(t)) {
        return &t;
      }
    }
    return nullptr;
  }

  // A bandwidth toxic with rate 0 stalls its direction without closing it (Toxiproxy's too).
  [[nodiscard]] bool stalled(stream s) const {
    const toxic* t = first_active(s, toxic_kind::bandwidth);
    return t != nullptr && t->rate <= 0;
  }

  // (Re)starts a timeout or reset_peer timer: when it fires, the connection closes (reset_peer:
  // with an RST). A timeout of 0 never fires.
  void arm(struct timer_entry& entry) {
    entry.timer->cancel();
    if (entry.kind == toxic_kind::timeout && entry.setting == 0) {
      return;
    }
    entry.timer->expires_after(std::chrono::milliseconds{entry.setting});
    entry.timer->async_wait([weak = weak_from_this(),
                             reset = entry.kind == toxic_kind::reset_peer](std::error_code ec) {
      if (ec) {
        return;
      }
      if (auto self = weak.lock()) {
        self->close(reset);
      }
    });
  }

  asio::awaitable<void> wait_for_change(stream s) {
    auto& timer = changed_[index(s)];
    timer.expires_at(steady::time_point::max());
    co_await timer.async_wait(use_tuple);
  }

  asio::awaitable<void> sleep_until(steady::time_point t) {
    if (t <= steady::now()) {
      co_return;
    }
    asio::steady_timer timer{executor_, t};
    co_await timer.async_wait(use_tuple);
  }

  static asio::awaitable<void> read_pump(std::shared_ptr<link> self, stream s) {
    auto& queue = self->queues_[index(s)];
    for (;;) {
      // No toxic on this direction, and nothing of it still queued: the bytes go from socket to
      // socket through a pipe (splice), never copied into the proxy, as HAProxy moves them.
      if (self->can_splice(s)) {
        std::size_t moved = 0;
        const std::error_code ec = co_await self->splice_some(s, moved);
        if (moved > 0 && self->owner_ != nullptr) {
          self->owner_->mutable_counters().received[index(s)] += moved;
          self->owner_->mutable_counters().sent[index(s)] += moved;
        }
        if (ec) {
          co_await queue.async_send(ec, chunk{}, use_tuple);
          co_return;
        }
        continue;
      }
      chunk c;
      c.data = std::make_unique<std::string>(read_size, '\0');
      auto [ec, n] = co_await self->source(s).async_read_some(asio::buffer(*c.data), use_tuple);
      if (ec) {
        // The end of this direction (EOF or an error) goes through the queue behind the data.
        co_await queue.async_send(ec, chunk{}, use_tuple);
        co_return;
      }
      c.data->resize(n);
      c.arrived = steady::now();
      if (self->owner_ != nullptr) {
        self->owner_->mutable_counters().received[index(s)] += n;
      }
      ++self->queued_[index(s)];
      auto [send_error] = co_await queue.async_send(std::error_code{}, std::move(c), use_tuple);
      if (send_error) {
        co_return;
      }
    }
  }

  [[nodiscard]] bool can_splice(stream s) {
    if (queued_[index(s)] != 0 || owner_ == nullptr || closed_) {
      return false;
    }
    for (const auto& t : owner_->toxics()) {
      if (t.direction == s && is_active(t)) {
        return false;
      }
    }
    return pipes_[index(s)].open(source(s), sink(s));
  }

  // Moves what the source has on to the sink (net::splice_pipe), or returns early with nothing
  // moved when the toxics change.
  asio::awaitable<std::error_code> splice_some(stream s, std::size_t& moved) {
    if (closed_) {
      co_return asio::error::operation_aborted;
    }
    co_return co_await pipes_[index(s)].move_some(source(s), sink(s), moved,
                                                  &splice_wake_[index(s)]);
  }

  // The timeout and reset_peer toxics, which hold a direction's bytes back: nullopt when neither
  // is active; else true when the chunk is dropped and the pump goes on, false when the
  // direction ends (`data`: a chunk, not the end of the input).
  std::optional<bool> swallow(stream s, bool data) {
    // timeout: every byte is dropped, and each one restarts the timer; the end of the input
    // ends the connection.
    if (const toxic* t = first_active(s, toxic_kind::timeout)) {
      if (!data) {
        close(false);
        return false;
      }
      const auto entry = timers_.find(t->name);
      if (entry != timers_.end()) {
        arm(entry->second);
      }
      return true;
    }
    // reset_peer: the first chunk (or the end) is dropped and the reset comes `timeout` later.
    if (const toxic* t = first_active(s, toxic_kind::reset_peer)) {
      if (timers_.count(t->name) == 0) {
        auto& entry = timers_[t->name];
        entry.kind = toxic_kind::reset_peer;
        entry.setting = t->timeout;
        entry.timer = std::make_shared<asio::steady_timer>(executor_);
        arm(entry);
      }
      return data;
    }
    return std::nullopt;
  }

  // limit_data: keeps what fits under the toxic's byte count (`passed` went already); true when
  // the count is reached and the connection closes after these pieces.
  static bool limit_data(std::vector<std::string>& pieces, const toxic& t, std::uint64_t passed) {
    const auto limit = static_cast<std::uint64_t>(std::max<std::int64_t>(t.bytes, 0));
    std::uint64_t left = limit > passed ? limit - passed : 0;
    std::vector<std::string> kept;
    for (auto& p : pieces) {
      if (left == 0) {
        break;
      }
      if (p.size() > left) {
        p.resize(left);
      }
      left -= p.size();
      kept.push_back(std::move(p));
    }
    pieces = std::move(kept);
    std::uint64_t total = passed;
    for (const auto& p : pieces) {
      total += p.size();
    }
    return total >= limit;
  }

  // bandwidth: pieces of at most 100 ms worth at `rate` KB/s, so a large chunk does not go out
  // in one burst.
  static std::vector<std::string> paced_pieces(std::vector<std::string> pieces, std::int64_t rate) {
    const auto per_piece = static_cast<std::size_t>(std::max<std::int64_t>(rate * 100, 1));
    std::vector<std::string> out;
    for (auto& p : pieces) {
      for (std::size_t at = 0; at < p.size(); at += per_piece) {
        out.push_back(p.substr(at, per_piece));
      }
    }
    return out;
  }

  static asio::awaitable<void> write_pump(std::shared_ptr<link> self, stream s) {
    auto& queue = self->queues_[index(s)];
    std::uint64_t passed = 0;
    steady::time_point paced = steady::now(); // bandwidth: when the next byte may go
    for (;;) {
      std::tuple<std::error_code, chunk> received = co_await queue.async_receive(use_tuple);
      const std::error_code ec = std::get<0>(received);
      chunk& c = std::get<1>(received);
      // Once this chunk is handled (written, dropped or cut), it no longer holds back splicing.
      struct handled {
        std::size_t& queued;
        bool counts;
        ~handled() {
          if (counts) {
            --queued;
          }
        }
      } done{self->queued_[index(s)], !ec};
      if (self->closed_) {
        co_return;
      }
      while (!self->closed_ && self->stalled(s)) {
        co_await self->wait_for_change(s);
      }
      if (self->closed_) {
        co_return;
      }
      if (const auto swallowed = self->swallow(s, !ec)) {
        if (*swallowed) {
          continue;
        }
        co_return;
      }
      if (ec) {
        co_await self->end_direction(s, ec);
        co_return;
      }
      // The toxics of this direction, in the order they were added, on this chunk.
      std::vector<std::string> pieces;
      pieces.push_back(std::move(*c.data));
      std::int64_t slice_delay_us = 0;
      std::int64_t rate = 0;
      steady::time_point stamp = c.arrived;
      bool cut = false;
      const auto toxics = self->owner_ != nullptr ? self->owner_->toxics() : std::vector<toxic>{};
      for (const auto& t : toxics) {
        if (t.direction != s || !self->is_active(t)) {
          continue;
        }
        switch (t.kind) {
        case toxic_kind::latency: {
          // Uniform in [-jitter, +jitter); chained latency toxics add up from the read time.
          std::int64_t ms = t.latency;
          if (t.jitter > 0 && self->owner_ != nullptr) {
            const auto span = static_cast<std::uint64_t>(2 * t.jitter);
            ms += static_cast<std::int64_t>(self->owner_->random().next() % span) - t.jitter;
          }
          stamp += std::chrono::milliseconds{std::max<std::int64_t>(ms, 0)};
          co_await self->sleep_until(stamp);
          break;
        }
        case toxic_kind::bandwidth:
          rate = t.rate;
          break;
        case toxic_kind::slicer:
          pieces = slice(pieces, t, *self);
          slice_delay_us = t.delay;
          break;
        case toxic_kind::limit_data:
          cut = limit_data(pieces, t, passed) || cut;
          break;
        case toxic_kind::slow_close:
        case toxic_kind::timeout:
        case toxic_kind::reset_peer:
          break; // act on the close, or through timers
        }
      }
      if (rate > 0) {
        pieces = paced_pieces(std::move(pieces), rate);
      }
      for (auto& p : pieces) {
        if (rate > 0) {
          paced = std::max(paced, steady::now()) +
                  std::chrono::microseconds{static_cast<std::int64_t>(p.size()) * 1000 / rate};
          co_await self->sleep_until(paced);
        }
        if (self->closed_) {
          co_return;
        }
        auto [write_error, n] =
            co_await asio::async_write(self->sink(s), asio::buffer(p), use_tuple);
        if (write_error) {
          self->close(false);
          co_return;
        }
        passed += n;
        if (self->owner_ != nullptr) {
          self->owner_->mutable_counters().sent[index(s)] += n;
        }
        if (slice_delay_us > 0) {
          co_await self->sleep_until(steady::now() + std::chrono::microseconds{slice_delay_us});
        }
      }
      if (cut) {
        self->close(false);
        co_return;
      }
    }
  }

  // Toxiproxy's slicer: halve around the middle (moved by up to size_variation) until a piece is
  // within size_variation of average_size.
  static void slice_range(const std::string& p, std::size_t start, std::size_t end, const toxic& t,
                          link& l, std::vector<std::string>& out) {
    const auto average = static_cast<std::size_t>(std::max<std::int64_t>(t.average_size, 1));
    const auto variation = static_cast<std::size_t>(std::max<std::int64_t>(t.size_variation, 0));
    if (end - start <= average + variation) {
      out.push_back(p.substr(start, end - start));
      return;
    }
    auto mid = static_cast<std::int64_t>(start + (end - start) / 2);
    if (variation > 0 && l.owner_ != nullptr) {
      mid += static_cast<std::int64_t>(l.owner_->random().next() % (2 * variation)) -
             static_cast<std::int64_t>(variation);
    }
    const auto m = static_cast<std::size_t>(std::clamp<std::int64_t>(
        mid, static_cast<std::int64_t>(start) + 1, static_cast<std::int64_t>(end) - 1));
    slice_range(p, start, m, t, l, out);
    slice_range(p, m, end, t, l, out);
  }

  static std::vector<std::string> slice(std::vector<std::string>& in, const toxic& t, link& l) {
    std::vector<std::string> out;
    for (auto& p : in) {
      slice_range(p, 0, p.size(), t, l, out);
    }
    return out;
  }

  // The sender closed (or failed): pass the close on, late if slow_close says so. When both
  // directions have ended, the link is done.
  asio::awaitable<void> end_direction(stream s, std::error_code why) {
    if (owner_ != nullptr) {
      std::int64_t delay = 0;
      for (const auto& t : owner_->toxics()) {
        if (t.direction == s && t.kind == toxic_kind::slow_close && is_active(t)) {
          delay = std::max(delay, t.delay);
        }
      }
      if (delay > 0) {
        co_await sleep_until(steady::now() + std::chrono::milliseconds{delay});
      }
    }
    if (closed_) {
      co_return;
    }
    if (why != asio::error::eof) {
      close(false);
      co_return;
    }
    std::error_code ignored;
    sink(s).shutdown(asio::socket_base::shutdown_send, ignored);
    ended_[index(s)] = true;
    if (ended_[0] && ended_[1]) {
      close(false);
    }
  }

  std::shared_ptr<proxy> owner_;
  asio::any_io_executor executor_;
  std::array<asio::ip::tcp::socket, 2> sockets_;
  std::array<chunk_channel, 2> queues_;
  std::array<asio::steady_timer, 2> changed_;     // a stalled writer waits on it
  std::array<asio::steady_timer, 2> splice_wake_; // a splicing reader waits on it
  std::map<std::string, bool> active_;
  std::map<std::string, double> flipped_for_; // the toxicity each coin flip was made with
  std::map<std::string, timer_entry> timers_;
  std::array<bool, 2> ended_{};
  std::array<std::size_t, 2> queued_{};   // chunks read but not yet handled
  std::array<net::splice_pipe, 2> pipes_; // per direction
  bool closed_ = false;
};

// ---------------------------------------------------------------------------------------------

std::shared_ptr<proxy> proxy::create(asio::io_context::executor_type executor, proxy_config config,
                                     random_source& random) {
  return std::make_shared<proxy>(private_tag{}, std::move(executor), std::move(config), random);
}

proxy::proxy(private_tag, asio::io_context::executor_type executor, proxy_config config,
             random_source& random)
    : executor_{std::move(executor)}, config_{std::move(config)}, random_{random}, acceptor_{
                                                                                       executor_} {}

proxy::~proxy() {
  std::error_code ignored;
  acceptor_.close(ignored);
  for (const auto& l : links_) {
    l->detach();
  }
}

std::error_code proxy::start() {
  if (acceptor_.is_open()) {
    return {};
  }
  std::string host;
  std::uint16_t port = 0;
  if (!split_host_port(config_.listen, host, port)) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  std::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) {
    return std::make_error_code(std::errc::invalid_argument);
  }
  if (ec = net::open_listener(acceptor_, {address, port}); ec) {
    return ec;
  }
  const auto bound = acceptor_.local_endpoint();
  const auto shown = bound.address().is_v6() ? "[" + bound.address().to_string() + "]"
                                             : bound.address().to_string();
  config_.listen = shown + ":" + std::to_string(bound.port());
  accept();
  return {};
}

void proxy::accept() {
  // The loop's function keeps the proxy alive until its acceptor closes.
  asio::co_spawn(executor_,
                 net::accept_loop(acceptor_,
                                  [self = shared_from_this()](asio::ip::tcp::socket socket) {
                                    self->serve(std::move(socket));
                                  }),
                 report_exceptions{"a chaos proxy's accept loop"});
}

void proxy::serve(asio::ip::tcp::socket socket) {
  std::string host;
  std::uint16_t port = 0;
  auto l = std::make_shared<link>(shared_from_this(), std::move(socket));
  if (split_host_port(config_.upstream, host, port)) {
    links_.insert(l);
    asio::co_spawn(executor_, link::run(l, host, port), report_exceptions{"a chaos link"});
  } else {
    l->close(false);
  }
}

void proxy::stop() {
  std::error_code ignored;
  acceptor_.close(ignored);
  close_links();
}

void proxy::close_links() {
  auto links = std::move(links_);
  links_.clear();
  for (const auto& l : links) {
    l->close(false);
  }
}

void proxy::forget(link* l) noexcept {
  for (auto it = links_.begin(); it != links_.end(); ++it) {
    if (it->get() == l) {
      links_.erase(it);
      return;
    }
  }
}

std::error_code proxy::reconfigure(const proxy_config& next) {
  // As Toxiproxy: a new listen address or upstream restarts the proxy (live connections close);
  // then `enabled` starts or stops it. Toxics stay.
  if (next.listen != config_.listen || next.upstream != config_.upstream) {
    stop();
    config_.listen = next.listen;
    config_.upstream = next.upstream;
  }
  config_.enabled = next.enabled;
  if (!next.enabled) {
    stop();
    return {};
  }
  return start();
}

const toxic* proxy::find_toxic(std::string_view name) const noexcept {
  for (const auto& t : toxics_) {
    if (t.name == name) {
      return &t;
    }
  }
  return nullptr;
}

bool proxy::add_toxic(toxic t) {
  if (find_toxic(t.name) != nullptr) {
    return false;
  }
  toxics_.push_back(std::move(t));
  toxics_changed();
  return true;
}

bool proxy::update_toxic(const toxic& t) {
  for (auto& existing : toxics_) {
    if (existing.name == t.name) {
      existing = t;
      toxics_changed();
      return true;
    }
  }
  return false;
}

bool proxy::remove_toxic(std::string_view name) {
  const auto it =
      std::find_if(toxics_.begin(), toxics_.end(), [&](const toxic& t) { return t.name == name; });
  if (it == toxics_.end()) {
    return false;
  }
  toxics_.erase(it);
  toxics_changed();
  return true;
}

void proxy::remove_all_toxics() {
  toxics_.clear();
  toxics_changed();
}

void proxy::toxics_changed() {
  // A link may close (and leave links_) while told: walk a copy.
  const std::vector<std::shared_ptr<link>> links{links_.begin(), links_.end()};
  for (const auto& l : links) {
    l->toxics_changed();
  }
}

} // namespace tether::chaos
