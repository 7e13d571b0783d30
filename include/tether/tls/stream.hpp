#pragma once

#include <memory>
#include <system_error>
#include <utility>

#include <asio/ip/tcp.hpp>
#include <asio/ssl/stream.hpp>

namespace tether::tls {

/// A connection's byte stream: a TCP socket, with TLS over it once secured. HTTP reads and writes
/// it the same either way; a plain connection pays one branch per operation.
class stream {
public:
  using socket_type = asio::ip::tcp::socket;
  using ssl_stream = asio::ssl::stream<socket_type>;
  using executor_type = socket_type::executor_type;

  explicit stream(socket_type socket) : plain_{std::move(socket)} {}

  /// TLS over `socket` with a new SSL object from `context` (no handshake yet).
  stream(socket_type socket, asio::ssl::context& context)
      : plain_{socket.get_executor()}, tls_{std::make_unique<ssl_stream>(std::move(socket),
                                                                         context)} {}

  [[nodiscard]] executor_type get_executor() noexcept { return plain_.get_executor(); }

  /// The TCP socket underneath (options, peeks, shutdown, close).
  [[nodiscard]] socket_type& socket() noexcept { return tls_ ? tls_->next_layer() : plain_; }
  [[nodiscard]] bool secured() const noexcept { return tls_ != nullptr; }
  /// The TLS stream; only when secured().
  [[nodiscard]] ssl_stream& tls() noexcept { return *tls_; }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    if (tls_) {
      return tls_->async_read_some(buffers, std::forward<Token>(token));
    }
    return plain_.async_read_some(buffers, std::forward<Token>(token));
  }

  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    if (tls_) {
      return tls_->async_write_some(buffers, std::forward<Token>(token));
    }
    return plain_.async_write_some(buffers, std::forward<Token>(token));
  }

  [[nodiscard]] bool is_open() const noexcept {
    return tls_ ? tls_->next_layer().is_open() : plain_.is_open();
  }

  /// Closes the socket now, without a TLS close_notify (sending one is a write the close cannot
  /// wait for). The shutdown is marked done all the same: OpenSSL voids the session of a
  /// connection freed without one, and that session is the one kept for resumption.
  void close() noexcept {
    if (tls_) {
      ::SSL_set_shutdown(tls_->native_handle(), SSL_SENT_SHUTDOWN);
    }
    std::error_code ignored;
    socket().close(ignored);
  }

private:
  socket_type plain_;
  std::unique_ptr<ssl_stream> tls_;
};

} // namespace tether::tls
