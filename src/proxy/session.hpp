#pragma once
// A downstream connection: a session reads its client's requests, routes each, sends it
// upstream (attempts at hosts, with retries, breakers and budgets) and streams the answer back.
// The downstream side is in session.cpp, the exchange with an upstream in upstream_request.cpp.

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include "tether/http/request_target.hpp"
#include "tether/net/splice.hpp"
#include "tether/resilience/retry_policy.hpp"
#include "tether/upstream/attempt_loop.hpp"
#include "tether/upstream/attempts.hpp"

#include "event_queue.hpp"
#include "upstream_head.hpp"
#include "watchdog.hpp"
#include "worker.hpp"

namespace tether::proxy::detail {

using upstream_attempt = upstream::attempt<http::http_connector>;

/// The status the access log gives a request whose client went away before its answer (nginx's).
inline constexpr int client_closed_request = 499;

/// How waiting for the client's next parser event ended.
enum class wait_result : std::uint8_t { ok, eof, timeout, error, bad_input };

/// One client connection, served by one coroutine (run) on its worker.
class session {
public:
  /// A connection accepted by listener `listener` (its index in the config).
  session(worker& w, std::size_t listener, asio::ip::tcp::socket s);
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  ~session();

  /// After a reload: a session waiting for its next request takes the worker's new generation
  /// now, so the one it held can go (its retired clusters close); a busy one takes it when its
  /// next request begins.
  void adopt_if_idle();

  /// At a drain: a session waiting for its next request closes unless one comes within
  /// drain_grace, and one that comes is answered with `Connection: close`. A client that sent
  /// its next request just as the drain began (a load balancer's, or one behind a take-over)
  /// gets its answer instead of a connection closed under it.
  void wake_if_idle();
  /// Its listener was closed by a reload: the connection ends as at a drain (closed once its
  /// request in flight is answered and drain_grace passes without another, whose answer says
  /// `Connection: close`).
  void leave();
  [[nodiscard]] const std::string& listener() const noexcept { return listener_; }
  /// Its listener kept its sockets under a new name (a reload).
  void relabel(const std::string& name) { listener_ = name; }
  static constexpr std::chrono::seconds drain_grace{1};

  /// Called every second by the worker: a TLS session seen waiting for its next request at two
  /// calls in a row (a second or more) gives back OpenSSL's record buffers.
  void release_idle_buffers() noexcept {
    if (idle_ && ++idle_sweeps_ == 2) {
      (void)stream_.release_buffers();
    }
  }

  asio::awaitable<void> run();

  /// Ends the session now, whatever it is doing (a stop whose drain time is over): its sockets
  /// are cancelled and its coroutine runs to its end.
  void abort();

private:
  void count(cause c) { w_.shared.causes[static_cast<std::size_t>(c)]->Increment(); }

  // The worker's newest generation, when it is not the session's already (between requests).
  void adopt_newest() {
    if (gen_ != w_.gen) {
      gen_ = w_.gen;
    }
  }

  // The next parser event, reading from the client when none is queued.
  asio::awaitable<wait_result> next_event(event& out, bool waiting_for_head);

  // Skips the rest of the current request (after an answer the proxy gave itself).
  asio::awaitable<bool> drain_request_body();

  // Takes the reason by reference to a named string: g++ 12 destroys temporaries made inside a
  // co_await expression twice (seen as a double free), so callers name their reason first.
  asio::awaitable<void> reply_error(int status, const std::string& reason, bool close,
                                    const http::header* field = nullptr);

  /// The request being handled, for the replies and logs of its end.
  struct request_context {
    head_ptr owner; // the head, for as long as the request is handled
    [[nodiscard]] const owned_head& head() const noexcept { return *owner; }
    steady::time_point started;
    bool client_keep = true;
    bool expects_continue = false; // an HTTP/1.1 client waits for 100 Continue before its body
    bool continue_sent = false;
    bool consumed = false; // its end has been taken off the event queue
    bool upgrade = false;  // a WebSocket Upgrade the proxy tunnels if the upstream answers 101
    proxy_cluster* counters = nullptr;
    std::string_view cluster = "-";
  };

  // Answers a request the proxy does not forward, before any of its body went anywhere: the rest
  // of the body is read and dropped, so the connection can carry the next request.
  asio::awaitable<bool> refuse(request_context& rq, int status, const std::string& why,
                               std::string_view upstream, const http::header* field = nullptr);

  // Answers a request with an error and closes the connection (the request cannot be read to
  // its end, or the connection is not fit for another).
  asio::awaitable<bool> reject(request_context& rq, int status, const std::string& why);

  // Counts and logs how a request was answered.
  void log_answer(request_context& rq, int status, std::string_view upstream);

  asio::awaitable<void> send_continue(request_context& rq);

  /// An answer the proxy gives a request itself, before anything goes upstream.
  struct own_answer {
    int status = 400;
    std::string why;
    bool close = false;                  // reject (the connection closes), else refuse
    std::optional<cause> counted;        // in tether_proxy_errors_total
    const http::header* field = nullptr; // an Allow
  };

  // The checks of a request before it is routed: its framing for HTTP/1.0, its target's form and
  // Host (RFC 9112 3.2), CONNECT, a loop through tether (Via), Max-Forwards. Fills in what the
  // request is for; an answer when the proxy answers it itself.
  std::optional<own_answer> vet(const request_context& rq, http::request_target& target,
                                std::string_view& authority,
                                std::optional<std::uint64_t>& max_forwards) const;

  /// Where a routed request goes, for forward().
  struct forward_plan {
    const http::request_target& target;
    std::string_view authority;
    std::optional<std::uint64_t> max_forwards;
    proxy_cluster& cc;
    const cluster_config& cluster_cfg;
    const retry_config& rc;
    const std::string& body; // read whole before the first attempt, if it was
    bool has_key = false;    // the request has an Idempotency-Key
  };

  // Sends a routed request upstream (upstream::attempt_loop) and answers the client. Its own
  // coroutine, so that neither its frame nor handle's passes the size Asio recycles (1 KiB).
  asio::awaitable<bool> forward(request_context& rq, const forward_plan& plan);

  // Proxies one request. Returns whether the downstream connection may carry another.
  asio::awaitable<bool> handle(head_ptr head_in, bool last);

  // The client went away or sent garbage mid-body. A client that went away is logged with
  // nginx's 499 (client closed request): there is no one to answer, but the request happened.
  asio::awaitable<bool> client_failed(request_context& rq);

  // Waits before a retry; false when the session is ended meanwhile (a stop past its drain).
  asio::awaitable<bool> backoff(clock::duration delay);

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
    /// For exchange: the upstream was read while the body went up, and this ended that
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
                                           const upload& plan);

  // Appends an interim response (100 Continue, 103 Early Hints) for the client: a proxy MUST
  // forward 1xx (RFC 9110 15.2), but not to an HTTP/1.0 client, which cannot take one, nor a
  // 100 when the proxy sent its own already. With tether's own version and Via (6.2, 7.6.3).
  void forward_interim(std::string& out, const owned_head& h, request_context& rq) const;

  // Writes what `plan` holds upstream and empties it; false when that failed or the attempt's
  // deadline passed. While the response's own deadline is not near that is the limit (one timer
  // setting for a small request); later, the request timeout from each write (an upload).
  asio::awaitable<bool> write_upstream(http::http_connection& up, const upload& plan);

  // Reads the upstream while the request's body goes up (see stream_request). Interim responses
  // go to the client at once; a final response's head is left queued for exchange, and
  // when it is an error, says the connection closes, or the read fails, the upload is cut short
  // (the client read or upstream write it waits on is cancelled). A final 2xx or 3xx does not
  // cut it: some servers answer before they have read a body they still want.
  asio::awaitable<void> watch_upstream(http::http_connection* up, upstream_watch* watch,
                                       request_context* rq);

  /// How reading an upstream's response ended.
  struct response_end {
    bool forwarded = false;   // the response went to the client (whole, or cut short)
    bool keep = false;        // ... and the client connection may carry another request
    bool client_gone = false; // the client could not be written to
    bool retry = false;       // judged at its head for a retry (after `delay`), and dropped
    clock::duration delay{};
    int status = 0;
    resilience::attempt_outcome outcome{};
    std::string failure;
    bool bytes_read = false; // any byte of a response came
  };

  /// Where reading a response is.
  struct response_read {
    bool head_sent = false; // its head went to the client
    bool dropping = false;  // it was judged for a retry: read and dropped
    bool done = false;      // it ended
    bool close = false;     // its connection is not reused
    bool upgraded = false;  // a 101 to a WebSocket Upgrade: the connection is a tunnel now
    // Bytes of the last read after the 101's head: the upstream's first tunnel bytes.
    std::size_t tail_from = 0;
    std::size_t tail_to = 0;
  };

  // Parses what a read of the response brought (`n` bytes, or its end); true when the read
  // failed the response (an error, a malformed response, EOF before any of it).
  bool parse_read(http::http_connection& up, std::error_code ec, std::size_t n, response_read& st,
                  response_end& end);

  // Moves what the parser queued of a response into `reply` for the client: interim responses,
  // the final head (judged first), body pieces. False when the response ends the attempt at
  // once (an unasked 101).
  bool forward_parsed(std::string& reply, response_read& st, request_context& rq,
                      upstream_attempt& a, response_end& end);

  // How a read of a response that failed (an error, EOF, a malformed response) ends the attempt.
  void read_failed(http::http_connection& up, std::error_code ec, bool head_sent,
                   response_end& end);

  // At a final response's head: judged by the attempt (upstream::attempt::at_response); true
  // when it is dropped for a retry (`end` says after what wait).
  bool judge_for_retry(const owned_head& h, upstream_attempt& a, response_end& end);

  // Appends the head of an upstream's response as the client gets it: tether's own HTTP/1.1 and
  // Via, Connection as the client's connection will be, and without the framing fields a 204,
  // a 304 or a body unchunked for an HTTP/1.0 client must not carry. Sets keep_after_ and
  // chunked_response_ for the body that follows.
  void write_client_head(std::string& reply, const owned_head& h, const request_context& rq);

  /// A request's exchange with its upstream, as upstream::attempt_loop runs it: what is sent,
  /// and how the last attempt ended for the client.
  struct proxy_exchange {
    session& s;
    request_context& rq;
    const upstream_head& head_out;
    std::string& head_bytes; // the head for upstream (written per host when it names the host)
    std::string& out;        // what goes upstream next
    const std::string& body; // the body read whole before the first attempt, if any
    bool chunked = false;
    bool forward_expect = false;
    clock::duration request_timeout{};
    /// Why the exchange stopped the attempts, when it did.
    enum class stop_kind : std::uint8_t { none, aborted, client_failed, client_gone };
    stop_kind stop = stop_kind::none;
    int status = 0;    // of the response forwarded (or partly)
    bool keep = false; // the client connection may carry another request

    asio::awaitable<upstream::exchange_end> exchange(upstream_attempt& a);
    asio::awaitable<bool> back_off(clock::duration delay);
    void on_retry(const upstream_host& h, const upstream::exchange_end& r);
    void on_replay(const upstream_host& h);
  };

  // One attempt's exchange, in one coroutine: the request sent (whole, or streamed while the
  // upstream is watched), then its response read: its head within the attempt's deadline, then
  // its body streamed, each piece written to the client before the next is read. At the head, a
  // failed response is either forwarded or, when the retry policy takes it, dropped for another
  // try (upstream_request.cpp).
  asio::awaitable<upstream::exchange_end> exchange(proxy_exchange& ex, upstream_attempt& a);

  // What goes upstream first: the head (naming the host when it must), and the body read whole
  // before the first attempt.
  upload prepare_request(proxy_exchange& ex, upstream_attempt& a);

  // How a send that did not go through ends the attempt (nullopt: it went through).
  std::optional<upstream::exchange_end> sent_badly(proxy_exchange& ex, upstream_attempt& a,
                                                   const send_end& sent);

  // The exchange's end for the attempt loop, from how reading the response ended.
  upstream::exchange_end exchange_result(proxy_exchange& ex, upstream_attempt& a,
                                         response_end& got);

  // Answers the client after the attempts: the response forwarded, or the proxy's own answer
  // for why there is none.
  asio::awaitable<bool> conclude(request_context& rq, const proxy_exchange& ex,
                                 const upstream::loop_end& end);

  void observe(proxy_cluster& c, int status, steady::time_point started, const owned_head& head,
               std::string_view cluster, std::string_view upstream);

  void access_line(int status, steady::duration took, std::string_view method,
                   std::string_view target, std::string_view cluster, std::string_view upstream);

  // A CONNECT (RFC 9110 9.3.6): a route that allows its host and port, a host of the route's
  // cluster connected, 200, then the tunnel until both ends close (tunnel.cpp). The client's
  // connection ends with the tunnel (or with the refusal: the bytes after a CONNECT's head are
  // not HTTP).
  asio::awaitable<bool> connect_request(request_context& rq, std::string_view authority);

  // After a 101 to a WebSocket Upgrade and the end of the request's attempts (upgraded_ holds
  // the upstream): what came behind the 101 goes to the client, what the client sent behind its
  // request goes upstream, then the tunnel.
  asio::awaitable<void> tunnel_upgrade(proxy_cluster& cc);

  // A tcp listener's connection: a host of its cluster connected (picked, and tried again on
  // another host after a connect failure, as a request's connection is), then the bytes relayed
  // both ways until both ends close (tunnel.cpp).
  asio::awaitable<void> run_tcp();

  /// How connecting a tunnel to a cluster's host ended.
  struct tunnel_end {
    explicit tunnel_end(const asio::any_io_executor& ex) : upstream{asio::ip::tcp::socket{ex}} {}
    tunnel_end(const tunnel_end&) = delete;
    tunnel_end& operator=(const tunnel_end&) = delete;
    // Closed as a connection is (a TLS session that ended without its close_notify sent stays
    // resumable), whichever way the tunnel ended.
    ~tunnel_end() { upstream.close(); }
    tls::stream upstream;            // secured when the cluster has tls
    resilience::resource_guard slot; // its unit of the cluster's max_connections
    std::string host = "-";          // the host connected to (or the last one tried)
    upstream::loop_end how;
    std::string first_bytes; // a WebSocket's: what the upstream sent behind its 101

    /// Takes attempt `a`'s connection (its socket, and its TLS when the cluster has tls) out of
    /// its pool for good (the lease closes an empty stream), with its unit of max_connections,
    /// and its host.
    void take(upstream_attempt& a) {
      auto& lease = a.lease();
      slot = std::move(lease->slot);
      upstream = std::move(lease->stream);
      lease.detach();
      how.host = a.index();
      host = a.target().name();
    }
  };

  /// A tunnel's connect, as upstream::attempt_loop runs it: an attempt that got a connection
  /// takes its socket (and its unit of the connection limit) out of the pool for good.
  struct tunnel_exchange {
    session& s;
    tunnel_end& out;

    asio::awaitable<upstream::exchange_end> exchange(upstream_attempt& a);
    asio::awaitable<bool> back_off(clock::duration delay) { return s.backoff(delay); }
    void on_retry(const upstream_host& h, const upstream::exchange_end& r);
    void on_replay(const upstream_host& /*h*/) {}
  };

  // Connects to a host of `cc` for a tunnel: the cluster's balancer, thresholds, breakers and
  // connect timeout, and `policy` on connect failures.
  asio::awaitable<void> connect_tunnel(proxy_cluster& cc, const resilience::retry_policy& policy,
                                       steady::time_point started, tunnel_end& out);

  // Relays the client's connection and `upstream` both ways until both close, one fails, the
  // session is aborted or nothing moves for `idle`. Counted as a tunnel of `kind`. What came
  // ahead of the tunnel goes first: `to_client` (behind a 101), then tunnel_bytes_ upstream.
  asio::awaitable<void> tunnel(tls::stream& upstream, tunnel_kind kind, clock::duration idle,
                               std::string_view to_client = {});

  // A TLS listener's handshake, bounded by the request-header timeout; false: no session.
  asio::awaitable<bool> secure();
  // The end of the connection: close_notify for TLS, then a lingering close.
  asio::awaitable<void> close();

  worker& w_;
  tls::stream stream_;
  tls::handshake_counters* handshakes_ = nullptr; // a TLS listener's
  std::shared_ptr<watchdog> watchdog_;
  // The config (routes, clusters, downstream settings) the session's requests run under.
  std::shared_ptr<const generation> gen_;
  // The TLS context the connection was accepted with, for as long as it lives (its callbacks
  // point to it; a reload may let go of its generation meanwhile). Null: plain HTTP.
  std::shared_ptr<tls::server_context> certificates_;
  std::string listener_;                       // the name of the listener that accepted it
  std::size_t tcp_cluster_ = generation::npos; // a tcp listener's: its cluster's index
  const tcp_proxy_config* tcp_ = nullptr;      // ... and its settings (in gen_)
  bool leaving_ = false;                       // that listener was closed by a reload
  http::parser parser_;
  event_queue events_;          // the client's requests, parsed
  event_queue response_events_; // the response being read, parsed
  static constexpr std::size_t read_size = 16 * 1024;
  std::unique_ptr<std::array<char, read_size>> buffer_; // only while a large request is read
  std::array<char, 2048> small_{};
  std::string tunnel_bytes_; // what the client sent after a CONNECT or Upgrade, for the tunnel
  // A WebSocket's upstream after its 101, out of its pool, until handle() tunnels it.
  std::unique_ptr<tunnel_end> upgraded_;
  bool tunneling_ = false; // a relay runs: an abort closes its sockets
  std::string client_ip_;
  std::string peer_subject_; // the TLS client certificate's subject, when one was presented
  steady::time_point head_first_byte_{}; // of the head being read
  steady::time_point head_deadline_{};
  bool head_started_ = false;
  bool idle_ = false;
  std::uint8_t idle_sweeps_ = 0; // release_idle_buffers calls since the last request
  bool closing_ = false;
  bool keep_after_ = false;
  bool chunked_response_ = false;
  bool head_request_ = false; // the request being answered is a HEAD
  bool aborted_ = false;
  bool http10_ = false; // ... and came as HTTP/1.0
  bool skip_interim_end_ = false;
};

/// Serves one client connection on worker `w` until it closes.
asio::awaitable<void> serve(worker* w, std::size_t listener, asio::ip::tcp::socket socket);

} // namespace tether::proxy::detail
