#include "tether/tls/stream.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

#include <asio/error.hpp>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace tether::tls {
namespace detail {
namespace {

constexpr std::size_t input_size = 8 * 1024;

engine* owner(BIO* b) noexcept {
  return static_cast<engine*>(::BIO_get_data(b));
}

int bio_read(BIO* b, char* into, int size) {
  ::BIO_clear_retry_flags(b);
  const int n = owner(b)->take_input(into, size);
  if (n == 0) {
    ::BIO_set_retry_read(b); // nothing yet: the stream reads the socket and calls again
    return -1;
  }
  return n;
}

int bio_write(BIO* b, const char* from, int size) {
  ::BIO_clear_retry_flags(b);
  try {
    owner(b)->add_output(from, size);
  } catch (const std::bad_alloc&) {
    return -1;
  }
  return size;
}

long bio_ctrl(BIO* /*b*/, int command, long /*number*/, void* /*pointer*/) {
  // OpenSSL flushes after each record it writes: the stream hands the output over itself.
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO* b) {
  ::BIO_set_init(b, 1);
  return 1;
}

// The BIO type every engine uses: OpenSSL reads from and writes to the engine's buffers.
const BIO_METHOD* bio_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = ::BIO_meth_new(::BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tether");
    ::BIO_meth_set_read(m, bio_read);
    ::BIO_meth_set_write(m, bio_write);
    ::BIO_meth_set_ctrl(m, bio_ctrl);
    ::BIO_meth_set_create(m, bio_create);
    return m;
  }();
  return method;
}

} // namespace

engine::engine(asio::ssl::context& context, role side) {
  ssl_ = ::SSL_new(context.native_handle());
  if (ssl_ == nullptr) {
    throw std::bad_alloc{};
  }
  BIO* bio = ::BIO_new(bio_method());
  if (bio == nullptr) {
    ::SSL_free(ssl_);
    throw std::bad_alloc{};
  }
  ::BIO_set_data(bio, this);
  ::SSL_set_bio(ssl_, bio, bio); // one BIO both ways: the SSL owns its one reference
  // OpenSSL keeps its record buffers (about 34 KiB) between calls. SSL_MODE_RELEASE_BUFFERS
  // would free them whenever drained, at a malloc and a free per record each way (2,400
  // instructions a proxied request, callgrind under bench/proxy/tls.sh's load); instead the
  // proxy frees those of connections idle for a second or more (release_buffers).
  // Reading ahead takes everything the input buffer holds in one call.
  ::SSL_set_read_ahead(ssl_, 1);
  if (side == role::client) {
    ::SSL_set_connect_state(ssl_);
  } else {
    ::SSL_set_accept_state(ssl_);
  }
}

engine::~engine() {
  ::SSL_free(ssl_);
}

step engine::outcome(int result, std::size_t bytes) {
  if (result == 1) {
    return {step::next::done, bytes, {}};
  }
  switch (::SSL_get_error(ssl_, result)) {
  case SSL_ERROR_WANT_READ:
    return {step::next::read_more, 0, {}};
  case SSL_ERROR_ZERO_RETURN: // the peer's close_notify: the end of its data
    return {step::next::failed, 0, asio::error::eof};
  case SSL_ERROR_SSL: {
    const auto code = ::ERR_get_error();
    ::ERR_clear_error(); // empty again before the next call, as SSL_get_error needs
    return {step::next::failed, 0,
            std::error_code{static_cast<int>(code), asio::error::get_ssl_category()}};
  }
  default:
    // SSL_ERROR_SYSCALL and the rest: this BIO never fails, so the connection ended under it.
    ::ERR_clear_error();
    return {step::next::failed, 0, asio::error::eof};
  }
}

step engine::read(asio::mutable_buffer into) {
  if (into.size() == 0) {
    return {step::next::done, 0, {}};
  }
  std::size_t n = 0;
  const int r = ::SSL_read_ex(ssl_, into.data(), into.size(), &n);
  return outcome(r, n);
}

step engine::write(asio::const_buffer from) {
  if (from.size() == 0) {
    return {step::next::done, 0, {}};
  }
  std::size_t n = 0;
  const int r = ::SSL_write_ex(ssl_, from.data(), from.size(), &n);
  return outcome(r, n);
}

step engine::handshake() {
  return outcome(::SSL_do_handshake(ssl_), 0);
}

step engine::shutdown() {
  // close_notify goes out; the peer's is not waited for. A connection whose TLS already failed
  // has nothing to say: that is not an error of the close.
  if (::SSL_shutdown(ssl_) < 0) {
    ::ERR_clear_error();
  }
  return {step::next::done, 0, {}};
}

bool engine::release_buffers() noexcept {
  return ::SSL_free_buffers(ssl_) == 1; // refused while they hold data not read yet
}

asio::mutable_buffer engine::input_space() {
  if (!input_) {
    input_.reset(new char[input_size]); // made on the first read; not zeroed: never read before
  }
  if (input_begin_ == input_end_) {
    input_begin_ = input_end_ = 0;
  } else if (input_end_ == input_size) {
    std::memmove(input_.get(), input_.get() + input_begin_, input_end_ - input_begin_);
    input_end_ -= input_begin_;
    input_begin_ = 0;
  }
  return {input_.get() + input_end_, input_size - input_end_};
}

int engine::take_input(char* into, int size) noexcept {
  const auto n = std::min(input_end_ - input_begin_, static_cast<std::size_t>(std::max(size, 0)));
  if (n > 0) {
    std::memcpy(into, input_.get() + input_begin_, n);
    input_begin_ += n;
  }
  return static_cast<int>(n);
}

void engine::add_output(const char* from, int size) {
  output_.append(from, static_cast<std::size_t>(size));
}

asio::const_buffer engine::start_flush() {
  flushing_ = true;
  sending_.swap(output_);
  return asio::buffer(sending_);
}

void engine::flushed() noexcept {
  sending_.clear();
  flushing_ = false;
}

} // namespace detail

void stream::close() noexcept {
  if (tls_) {
    ::SSL_set_shutdown(tls_->native_handle(), SSL_SENT_SHUTDOWN);
  }
  std::error_code ignored;
  socket_.close(ignored);
}

} // namespace tether::tls
