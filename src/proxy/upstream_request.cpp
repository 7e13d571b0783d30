// The exchange with an upstream (session.hpp): a request streamed up while the upstream is
// watched for an early answer, and the response read, reported, retried or streamed back.
#include <algorithm>
#include <optional>
#include <string>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/write.hpp>

#include "tether/http/serializer.hpp"

#include "session.hpp"

namespace tether::proxy::detail {

asio::awaitable<session::send_end>
session::stream_request(request_context& rq, http::http_connection& up, const upload& plan) {
  send_end end;
  // The proxy's own 100 Continue first, before the watch may write interim responses to the
  // client: one writer at a time on its socket.
  if (!plan.forward_expect) {
    co_await send_continue(rq);
  }
  upstream_watch watch{stream_.get_executor()};
  asio::co_spawn(stream_.get_executor(), watch_upstream(&up, &watch, &rq),
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
    up.stream.socket().cancel(ignored);
    co_await watch.ended.async_wait(use_tuple);
  }
  if (watch.final_head) {
    end.first_read = std::error_code{};
  } else if (watch.read_end) {
    end.first_read = watch.read_end;
  }
  co_return end;
}

void session::forward_interim(std::string& out, const owned_head& h, request_context& rq) const {
  if (http10_ || (h.status == 100 && rq.continue_sent)) {
    return;
  }
  rq.continue_sent = rq.continue_sent || h.status == 100;
  auto view = h.view();
  view.version_minor = 1;
  static constexpr std::array<http::header, 1> via = {http::header{"Via", "1.1 tether"}};
  http::write_response_head(out, view, {false, via});
}

asio::awaitable<bool> session::write_upstream(http::http_connection& up, const upload& plan) {
  watchdog_->set(std::max(plan.attempt_deadline, steady::now() + plan.request_timeout / 2));
  auto [ec, n] = co_await asio::async_write(up.stream, asio::buffer(plan.bytes), use_tuple);
  plan.bytes.clear();
  co_return !ec && !watchdog_->fired;
}

asio::awaitable<void> session::watch_upstream(http::http_connection* up, upstream_watch* watch,
                                              request_context* rq) {
  auto& response = response_events_;
  response.clear();
  borrowed_string interim_buffer{w_};
  std::string& interim = interim_buffer.get();
  bool cut = false;
  while (!watch->stop) {
    auto [ec, n] = co_await up->stream.async_read_some(asio::buffer(up->buffer), use_tuple);
    if (watch->stop && ec == asio::error::operation_aborted) {
      break; // the request is sent
    }
    if (ec) {
      watch->read_end = ec; // EOF, a reset, or the watchdog's cancel (it fired: a timeout)
      cut = !watchdog_->fired;
      break;
    }
    if (up->parser.feed({up->buffer.data(), n}, response) != n || up->parser.error()) {
      watch->read_end = std::error_code{}; // exchange finds the parser's error
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
      co_await asio::async_write(stream_, asio::buffer(interim), use_tuple);
    }
    if (watch->final_head) {
      break;
    }
  }
  if (cut && !watch->stop) {
    watch->cut = true;
    std::error_code ignored;
    stream_.socket().cancel(ignored);    // the client read the upload waits on, if it does
    up->stream.socket().cancel(ignored); // or its upstream write
  }
}

bool session::judge_for_retry(const owned_head& h, upstream_attempt& a, response_end& end) {
  std::optional<clock::duration> retry_after;
  if (const auto v = h.find("retry-after")) {
    retry_after = http::parse_retry_after(*v, std::chrono::system_clock::now());
  }
  const auto outcome = resilience::attempt_outcome::from_status(h.status, retry_after);
  const auto decision = a.at_response(outcome);
  if (!decision || !decision->retry) {
    return false;
  }
  end.retry = true;
  end.delay = decision->delay;
  end.outcome = outcome;
  return true;
}

void session::write_client_head(std::string& reply, const owned_head& h,
                                const request_context& rq) {
  const bool until_close = h.framing == http::body_framing::until_close;
  // An HTTP/1.0 client cannot read chunked framing (RFC 9112 7): it gets the body as it
  // is, without Transfer-Encoding, delimited by the close of the connection.
  const bool unchunk = http10_ && h.framing == http::body_framing::chunked;
  const bool keep = rq.client_keep && !until_close && !unchunk;
  // tether's own version, whatever the upstream's (RFC 9110 6.2: an intermediary MUST
  // send its own): an HTTP/1.0 upstream's answer reaches the client as 1.1.
  auto rview = h.view();
  rview.version_major = 1;
  rview.version_minor = 1;
  const std::array<http::header, 2> rextra = {
      http::header{"Via", "1.1 tether"}, http::header{"Connection", keep ? "keep-alive" : "close"}};
  // Framing fields that must not go to the client: a 204 has neither Content-Length
  // nor Transfer-Encoding, a 304 no Transfer-Encoding (RFC 9110 8.6, RFC 9112 6.1), and
  // an unchunked body no Transfer-Encoding.
  static constexpr std::array<std::string_view, 2> framing_fields = {"transfer-encoding",
                                                                     "content-length"};
  const std::size_t drop_framing = h.status == 204 ? 2 : h.status == 304 || unchunk ? 1 : 0;
  // "Connection: close" when the client must not reuse the connection; "keep-alive"
  // when it may and speaks HTTP/1.0 (which closes unless told otherwise).
  const bool say_connection = !keep || http10_;
  http::write_response_head(reply, rview,
                            {false, std::span{rextra}.first(say_connection ? 2 : 1),
                             std::span{framing_fields}.first(drop_framing)});
  keep_after_ = keep;
  chunked_response_ = h.framing == http::body_framing::chunked && !unchunk;
}

bool session::parse_read(http::http_connection& up, std::error_code ec, std::size_t n,
                         response_read& st, response_end& end) {
  auto& response = response_events_;
  end.bytes_read = end.bytes_read || n > 0 || !response.empty();
  if (ec == asio::error::eof) {
    up.parser.finish(response);
  } else if (!ec && n > 0) {
    const auto used = up.parser.feed({up.buffer.data(), n}, response);
    if (used != n) {
      // Bytes after the response: the connection is out of step, or (after a 101) they are
      // the tunnel's first.
      st.close = true;
      st.tail_from = used;
      st.tail_to = n;
    }
  }
  return (ec && ec != asio::error::eof) || up.parser.error() ||
         (ec == asio::error::eof && response.empty());
}

bool session::forward_parsed(std::string& reply, response_read& st, request_context& rq,
                             upstream_attempt& a, response_end& end) {
  auto& response = response_events_;
  while (!response.empty()) {
    auto ev = std::move(response.front());
    response.pop_front();
    if (auto* held = std::get_if<head_ptr>(&ev)) {
      const owned_head* h = held->get();
      if (h->status == 101 && rq.upgrade && h->upgrade &&
          http::lists_protocol(h->find("upgrade").value_or(""), "websocket")) {
        // The upstream switched to the WebSocket protocol the request asked for: a success for
        // the host, the 101 to the client (with its Upgrade and Connection: upgrade), and the
        // connection becomes a tunnel (exchange).
        end.status = 101;
        (void)judge_for_retry(*h, a, end);
        auto view = h->view();
        view.version_minor = 1;
        static constexpr std::array<http::header, 1> via = {http::header{"Via", "1.1 tether"}};
        http::write_response_head(reply, view, {true, via});
        st.head_sent = true;
        st.done = true;
        st.upgraded = true;
        keep_after_ = false;
        response.clear();
        return true;
      }
      if (h->status == 101) {
        // A switch of protocols the request did not ask for (no Upgrade goes upstream): the
        // upstream is out of step with the request. 502 now rather than a wait for a final
        // response that will not come.
        a.lease().mark_broken();
        end.outcome = resilience::attempt_outcome::from_status(502);
        end.failure = rq.upgrade ? "upstream switched protocols (101) to something other than "
                                   "the websocket asked for"
                                 : "upstream switched protocols (101) unasked";
        return false;
      }
      if (h->status >= 100 && h->status < 200) {
        // An interim response (100 Continue, 103 Early Hints) goes to the client (see
        // forward_interim). Its end is skipped.
        skip_interim_end_ = true;
        forward_interim(reply, *h, rq);
        continue;
      }
      end.status = h->status;
      st.close = st.close || !h->keep_alive;
      if (judge_for_retry(*h, a, end)) {
        st.dropping = true; // the rest of it is read and dropped
        continue;
      }
      write_client_head(reply, *h, rq);
      st.head_sent = true;
    } else if (auto* piece = std::get_if<body_piece>(&ev)) {
      if (st.dropping) {
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
      if (chunked_response_ && !st.dropping) {
        http::write_last_chunk(reply);
      }
      st.done = true;
      break;
    }
  }
  if (st.done && (!response.empty() || !a.lease()->parser.idle())) {
    // A second response (or part of one) came with the first: the upstream is out of step with
    // its requests. Nothing of it goes to the client; the connection is closed.
    st.close = true;
    response.clear();
  }
  return true;
}

void session::read_failed(http::http_connection& up, std::error_code ec, bool head_sent,
                          response_end& end) {
  const bool timed_out = ec == std::errc::timed_out;
  if (head_sent) {
    // The client has part of a response: only closing tells it.
    count(timed_out ? cause::upstream_timeout
                    : (up.parser.error() ? cause::bad_response : cause::upstream_reset));
    end.client_gone = true;
  } else if (up.parser.error()) {
    // A malformed response: the upstream is broken in a way a retry will not mend.
    end.outcome.result = resilience::attempt_result::http_status;
    end.outcome.status = 502;
    end.failure = "upstream sent a malformed response: " + up.parser.error().message();
  } else {
    end.outcome.result =
        timed_out ? resilience::attempt_result::timeout : resilience::attempt_result::reset;
    // A TLS alert says more than a reset would (a TLS 1.3 upstream refuses our certificate at
    // the first read, after the handshake has ended on our side).
    const auto alert = tls::classify_failure(up.stream, ec);
    end.failure = timed_out     ? "upstream timeout"
                  : alert != ec ? "upstream ended the connection: " + alert.message()
                                : "upstream closed the connection before answering";
  }
}

asio::awaitable<upstream::exchange_end> session::exchange(proxy_exchange& ex, upstream_attempt& a) {
  auto& rq = ex.rq;
  auto& lease = a.lease();
  auto& up = *lease;
  response_end end;
  if (aborted_) {
    // Stopped past the drain time while waiting for the connection.
    lease.mark_broken();
    end.client_gone = true;
    co_return exchange_result(ex, a, end);
  }
  // The watchdog guards the upstream socket too: a write to an upstream that stops reading, or
  // a response that never comes, ends at the attempt's deadline.
  watchdog_->upstream = &up.stream.socket();
  struct unguard {
    watchdog& w;
    ~unguard() { w.upstream = nullptr; }
  } unguard_upstream{*watchdog_};
  const bool whole_before = rq.consumed; // the body (if any) is here to be sent again
  const upload plan = prepare_request(ex, a);
  send_end sent;
  if (plan.streams) {
    sent = co_await stream_request(rq, up, plan);
  } else {
    // The whole request is here: one write, under the response's deadline while that is not
    // near (one timer setting), else the request timeout.
    watchdog_->set(std::max(plan.attempt_deadline, steady::now() + ex.request_timeout / 2));
    auto [ec, n] = co_await asio::async_write(up.stream, asio::buffer(plan.bytes), use_tuple);
    sent.timed_out = watchdog_->fired;
    sent.complete = !ec && !sent.timed_out;
  }
  if (auto failed = sent_badly(ex, a, sent)) {
    co_return std::move(*failed);
  }
  // The response, in this same coroutine (a frame less per request): what the upload's watch
  // queued first, then the rest. After a streamed upload, the wait for its head starts at the
  // upload's end.
  const auto head_deadline =
      whole_before
          ? plan.attempt_deadline
          : std::max(plan.attempt_deadline, steady::now() + (plan.attempt_deadline - a.start()));
  const auto request_timeout = ex.request_timeout;
  std::optional<std::error_code> first_read = sent.first_read;
  auto& response = response_events_;
  if (!first_read) {
    response.clear();
  }
  // What goes to the client after each upstream read, in a string borrowed from the worker:
  // a long response grows it to the read size, which an idle connection should not keep.
  borrowed_string reply_buffer{w_};
  std::string& reply = reply_buffer.get();
  response_read st;
  while (!st.done) {
    if (aborted_) {
      lease.mark_broken();
      end.client_gone = true; // stopped past the drain time: the client connection closes
      co_return exchange_result(ex, a, end);
    }
    std::error_code ec;
    std::size_t n = 0;
    if (first_read) {
      ec = *std::exchange(first_read, std::nullopt);
    } else {
      watchdog_->set(st.head_sent ? steady::now() + request_timeout : head_deadline);
      auto [read_ec, read] = co_await up.stream.async_read_some(asio::buffer(up.buffer), use_tuple);
      ec = read_ec;
      n = read;
      if (watchdog_->fired) {
        ec = make_error_code(std::errc::timed_out);
      }
    }
    const bool failed = parse_read(up, ec, n, st, end);
    // Whatever was parsed goes to the client first, in one write per upstream read (head and
    // body together: one segment on the wire for a small response, not two).
    reply.clear();
    if (!forward_parsed(reply, st, rq, a, end)) {
      co_return exchange_result(ex, a, end);
    }
    if (st.dropping) {
      // A response skipped for a retry: its connection is kept only if it ended already.
      up.reusable = st.done && !st.close && up.parser.idle();
      if (!up.reusable) {
        lease.mark_broken();
      }
      co_return exchange_result(ex, a, end);
    }
    if (!reply.empty()) {
      if (st.head_sent) {
        // The attempt's deadline is met: the rest runs under the request timeout.
        watchdog_->set(coarse_monotonic_clock::instance().now() + request_timeout);
      }
      auto [wec, wn] = co_await asio::async_write(stream_, asio::buffer(reply), use_tuple);
      if (wec) {
        lease.mark_broken();
        count(cause::downstream_reset);
        end.client_gone = true;
        co_return exchange_result(ex, a, end);
      }
    }
    if (!st.done && (failed || ec == asio::error::eof)) {
      lease.mark_broken();
      read_failed(up, ec, st.head_sent, end);
      co_return exchange_result(ex, a, end);
    }
  }
  if (st.upgraded) {
    // The connection leaves its pool for the tunnel, with its unit of max_connections: no pool
    // slot is held while the WebSocket lives. handle() tunnels it once the attempts are over.
    upgraded_ = std::make_unique<tunnel_end>(stream_.get_executor());
    upgraded_->take(a);
    upgraded_->first_bytes.assign(up.buffer.data() + st.tail_from, st.tail_to - st.tail_from);
    end.forwarded = true;
    end.keep = false;
    co_return exchange_result(ex, a, end);
  }
  up.reusable = !st.close && up.parser.idle();
  end.forwarded = true;
  end.keep = keep_after_;
  co_return exchange_result(ex, a, end);
}

} // namespace tether::proxy::detail
