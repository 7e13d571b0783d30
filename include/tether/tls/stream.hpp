#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include <asio/awaitable.hpp>
#include <asio/compose.hpp>
#include <asio/experimental/append.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/ssl/context.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

struct ssl_st;

namespace tether::tls {

/// Which end of the handshake a stream is.
enum class role : std::uint8_t { client, server };

namespace detail {

/// What one call into OpenSSL came to.
struct step {
  enum class next : std::uint8_t {
    done,      ///< finished: `bytes` read or written
    read_more, ///< OpenSSL needs bytes from the peer first
    failed,    ///< `error` says why
  };
  next then = next::done;
  std::size_t bytes = 0;
  std::error_code error{};
};

/// A secured connection's OpenSSL side: the SSL object over a BIO of tether's own that reads what
/// the socket delivered into `input` and keeps what OpenSSL wrote until the socket takes it.
///
/// Why not asio::ssl::stream: its engine puts a BIO pair and two 17 KiB buffers between OpenSSL
/// and the socket (about 70 KiB a connection, zeroed when made), copies every byte once more
/// through the pair, and clears OpenSSL's error queue before every call (measured: 2,500
/// instructions a proxied request). This engine keeps one 8 KiB input buffer, made on the first
/// read, and clears the queue only after an error (it is then empty before every call, which is
/// what SSL_get_error needs). Reads still go through Asio's speculative async_read_some, so a
/// read costs no more system calls than a plain connection's.
class engine {
public:
  engine(asio::ssl::context& context, role side);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  [[nodiscard]] ssl_st* native_handle() const noexcept { return ssl_; }

  /// Frees OpenSSL's record buffers (about 34 KiB) unless they hold data (false then); they come
  /// back on the next read or write. For connections that sit idle.
  bool release_buffers() noexcept;

  step read(asio::mutable_buffer into);
  step write(asio::const_buffer from);
  step handshake();
  step shutdown();

  /// Where the next bytes from the socket go (the free end of the input buffer).
  asio::mutable_buffer input_space();
  void received(std::size_t n) noexcept { input_end_ += n; }

  [[nodiscard]] bool has_output() const noexcept { return !output_.empty(); }
  [[nodiscard]] bool flushing() const noexcept { return flushing_; }
  /// Hands the output written so far to the socket (it stays valid until flushed()).
  asio::const_buffer start_flush();
  void flushed() noexcept;

  // For the BIO's callbacks.
  int take_input(char* into, int size) noexcept;
  void add_output(const char* from, int size);

private:
  step outcome(int result, std::size_t bytes);

  ssl_st* ssl_ = nullptr;
  std::unique_ptr<char[]> input_;
  std::size_t input_begin_ = 0;
  std::size_t input_end_ = 0;
  std::string output_;  // written by OpenSSL, not yet handed to the socket
  std::string sending_; // handed to the socket, not yet written
  bool flushing_ = false;
};

/// Drives one OpenSSL operation over the socket: calls `Step` on the engine, hands its output to
/// the socket, feeds it input when it asks, until it is done or failed. A result known before
/// any I/O was started is posted, never delivered from inside the initiating call.
template <typename Step>
struct io_op {
  asio::ip::tcp::socket& socket;
  engine& tls;
  Step call;
  enum class phase : std::uint8_t { start, reading, flushing, posted } at = phase::start;
  step last{};
  bool initiating = true;

  template <typename Self>
  void operator()(Self& self, std::error_code ec = {}, std::size_t n = 0) {
    switch (at) {
    case phase::start:
      break;
    case phase::posted:
      self.complete(last.error, last.bytes);
      return;
    case phase::reading:
      if (ec) {
        finish(self, ec, 0);
        return;
      }
      tls.received(n);
      break;
    case phase::flushing:
      tls.flushed();
      if (ec) {
        finish(self, ec, 0);
        return;
      }
      if (tls.has_output()) { // written meanwhile (by this or another operation)
        flush(self);
        return;
      }
      settle(self);
      return;
    }
    last = call(tls);
    if (tls.has_output() && !tls.flushing()) {
      flush(self);
      return;
    }
    settle(self);
  }

private:
  template <typename Self>
  void flush(Self& self) {
    at = phase::flushing;
    initiating = false;
    const auto bytes = tls.start_flush();
    asio::async_write(socket, bytes, std::move(self));
  }

  // Acts on the last call's result once its output is on its way.
  template <typename Self>
  void settle(Self& self) {
    switch (last.then) {
    case step::next::done:
      finish(self, {}, last.bytes);
      return;
    case step::next::failed:
      finish(self, last.error, 0);
      return;
    case step::next::read_more:
      at = phase::reading;
      initiating = false;
      socket.async_read_some(tls.input_space(), std::move(self));
      return;
    }
  }

  template <typename Self>
  void finish(Self& self, std::error_code ec, std::size_t n) {
    if (!initiating) {
      self.complete(ec, n);
      return;
    }
    at = phase::posted;
    last.error = ec;
    last.bytes = n;
    const auto executor = socket.get_executor();
    asio::post(executor, std::move(self));
  }
};

struct read_call {
  asio::mutable_buffer into;
  step operator()(engine& e) const { return e.read(into); }
};
struct write_call {
  asio::const_buffer from;
  step operator()(engine& e) const { return e.write(from); }
};
struct handshake_call {
  step operator()(engine& e) const { return e.handshake(); }
};
struct shutdown_call {
  step operator()(engine& e) const { return e.shutdown(); }
};

// TLS reads and writes one buffer at a time (a record holds one); the first that is not empty.
template <typename Buffer, typename Buffers>
Buffer first_buffer(const Buffers& buffers) {
  for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
       ++it) {
    if (Buffer b{*it}; b.size() != 0) {
      return b;
    }
  }
  return Buffer{};
}

} // namespace detail

/// A connection's byte stream: a TCP socket, with TLS over it once secured. HTTP reads and writes
/// it the same either way; a plain connection pays one branch per operation.
class stream {
public:
  using socket_type = asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;

  explicit stream(socket_type socket) : socket_{std::move(socket)} {}

  /// TLS over `socket` with a new SSL object from `context`, as `side` (no handshake yet).
  stream(socket_type socket, asio::ssl::context& context, role side)
      : socket_{std::move(socket)}, tls_{std::make_unique<detail::engine>(context, side)} {}

  [[nodiscard]] executor_type get_executor() noexcept { return socket_.get_executor(); }

  /// The TCP socket underneath (options, peeks, cancel, shutdown, close).
  [[nodiscard]] socket_type& socket() noexcept { return socket_; }
  [[nodiscard]] bool secured() const noexcept { return tls_ != nullptr; }
  /// The OpenSSL object; only when secured().
  [[nodiscard]] ssl_st* native_handle() const noexcept { return tls_->native_handle(); }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if (!tls_) {
      return socket_.async_read_some(buffers, std::forward<Token>(token));
    }
    return asio::async_compose<Token, void(std::error_code, std::size_t)>(
        detail::io_op<detail::read_call>{
            socket_, *tls_, {detail::first_buffer<asio::mutable_buffer>(buffers)}},
        token, socket_);
  }

  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    if (!tls_) {
      return socket_.async_write_some(buffers, std::forward<Token>(token));
    }
    return asio::async_compose<Token, void(std::error_code, std::size_t)>(
        detail::io_op<detail::write_call>{
            socket_, *tls_, {detail::first_buffer<asio::const_buffer>(buffers)}},
        token, socket_);
  }

  /// The TLS handshake (as the role the stream was made with); secured streams only.
  template <typename Token>
  auto async_handshake(Token&& token) {
    return asio::async_compose<Token, void(std::error_code, std::size_t)>(
        detail::io_op<detail::handshake_call>{socket_, *tls_, {}}, token, socket_);
  }

  /// Sends TLS close_notify (without waiting for the peer's); secured streams only.
  template <typename Token>
  auto async_shutdown(Token&& token) {
    return asio::async_compose<Token, void(std::error_code, std::size_t)>(
        detail::io_op<detail::shutdown_call>{socket_, *tls_, {}}, token, socket_);
  }

  [[nodiscard]] bool is_open() const noexcept { return socket_.is_open(); }

  /// Lets a secured stream that sits idle give back OpenSSL's record buffers (about 34 KiB);
  /// nothing for a plain one. Never while an operation is inside OpenSSL (they all run on the
  /// stream's executor, so any time between them).
  bool release_buffers() noexcept { return tls_ && tls_->release_buffers(); }

  /// Closes the socket now, without a TLS close_notify (sending one is a write the close cannot
  /// wait for). The shutdown is marked done all the same: OpenSSL voids the session of a
  /// connection freed without one, and that session is the one kept for resumption.
  void close() noexcept;

private:
  socket_type socket_;
  std::unique_ptr<detail::engine> tls_;
};

/// For net::copy_relay (found by argument lookup): a relayed stream closed at once.
inline void close_stream(stream& s) noexcept {
  s.close();
}

/// For net::copy_relay: a half close passed on to a (secured) stream: close_notify, then the
/// TCP half close. The peer reads an end; what it still sends is read and relayed.
inline asio::awaitable<void> end_sending(stream& s) {
  if (s.secured()) {
    co_await s.async_shutdown(asio::experimental::as_tuple(asio::use_awaitable));
  }
  std::error_code ignored;
  s.socket().shutdown(asio::socket_base::shutdown_send, ignored);
}

} // namespace tether::tls
