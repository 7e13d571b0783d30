#include "tether/tls/handshake.hpp"

#include <deque>

#include <asio/error.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/address.hpp>
#include <asio/ssl/error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tether/core/error.hpp"

namespace tether::tls {

/// The sessions a server gave for one identity, offered on the next connections. Lives as long
/// as the identity and every SSL that may still deliver a ticket (a TLS 1.3 server sends them
/// after the handshake; they are read with the first response).
///
/// A TLS 1.3 ticket is used once (RFC 8446, C.4: reusing one lets the connections be linked, and
/// OpenSSL's client marks it spent), so a few are kept: a server gives two after a full
/// handshake and one after each resumption, enough for connections opened together. A TLS 1.2
/// session stays until a newer one comes: it may be resumed again and again.
class session_cache {
public:
  session_cache() = default;
  session_cache(const session_cache&) = delete;
  session_cache& operator=(const session_cache&) = delete;
  ~session_cache() {
    for (auto* s : sessions_) {
      ::SSL_SESSION_free(s);
    }
  }

  /// Takes the reference the new-session callback hands over.
  void keep(SSL_SESSION* s) {
    sessions_.push_back(s);
    if (sessions_.size() > kept) {
      ::SSL_SESSION_free(sessions_.front());
      sessions_.pop_front();
    }
  }

  /// Offers the newest resumable session on `ssl` (nothing when there is none).
  void offer(SSL* ssl) {
    while (!sessions_.empty()) {
      SSL_SESSION* newest = sessions_.back();
      if (::SSL_SESSION_is_resumable(newest) == 0) {
        ::SSL_SESSION_free(newest);
        sessions_.pop_back();
        continue;
      }
      ::SSL_set_session(ssl, newest); // takes a reference of its own
      if (::SSL_SESSION_get_protocol_version(newest) >= TLS1_3_VERSION) {
        ::SSL_SESSION_free(newest);
        sessions_.pop_back();
      }
      return;
    }
  }

private:
  static constexpr std::size_t kept = 4;
  std::deque<SSL_SESSION*> sessions_; // oldest first
};

namespace {

constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

// Where an SSL keeps a pointer to its identity's session_cache (its shared_ptr is held by the
// SSL too, through the same slot's free function).
int cache_index() {
  static const int index = ::SSL_get_ex_new_index(
      0, nullptr, nullptr, nullptr,
      [](void* /*parent*/, void* ptr, CRYPTO_EX_DATA* /*ad*/, int /*idx*/, long /*argl*/,
         void* /*argp*/) { delete static_cast<std::shared_ptr<session_cache>*>(ptr); });
  return index;
}

int on_new_session(SSL* ssl, SSL_SESSION* session) {
  auto* cache = static_cast<std::shared_ptr<session_cache>*>(::SSL_get_ex_data(ssl, cache_index()));
  if (cache == nullptr) {
    return 0; // not ours to keep: OpenSSL frees it
  }
  (*cache)->keep(session);
  return 1; // the reference is the cache's now
}

// A verification failure, from the result OpenSSL kept on the SSL.
std::error_code from_verify_result(long result) noexcept {
  switch (result) {
  case X509_V_OK:
    return {};
  case X509_V_ERR_CERT_HAS_EXPIRED:
    return make_error_code(errc::tls_certificate_expired);
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
  case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
  case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
  case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
  case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    return make_error_code(errc::tls_unknown_ca);
  case X509_V_ERR_HOSTNAME_MISMATCH:
  case X509_V_ERR_IP_ADDRESS_MISMATCH:
    return make_error_code(errc::tls_hostname_mismatch);
  default:
    return make_error_code(errc::tls_certificate_invalid);
  }
}

// What a failed handshake's error means: the verification result first (OpenSSL reports a
// failed verification as a generic "certificate verify failed"), then the alert or reason.
std::error_code classify(SSL* ssl, std::error_code ec) noexcept {
  if (const auto verified = from_verify_result(::SSL_get_verify_result(ssl)); verified) {
    return verified;
  }
  if (ec.category() != asio::error::get_ssl_category()) {
    return ec; // the socket's own (a reset, the peer gone): said as it is
  }
  switch (ERR_GET_REASON(static_cast<unsigned long>(ec.value()))) {
  case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
  case SSL_R_UNSUPPORTED_PROTOCOL:
  case SSL_R_NO_PROTOCOLS_AVAILABLE:
  case SSL_R_WRONG_SSL_VERSION:
  case SSL_R_VERSION_TOO_LOW:
    return make_error_code(errc::tls_protocol_version);
  case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
  case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
  case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
  case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
  case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    return make_error_code(errc::tls_certificate_refused);
  default:
    return make_error_code(errc::tls_handshake_failed);
  }
}

} // namespace

void handshake_counters::completed(stream& s) noexcept {
  SSL* ssl = s.native_handle();
  (::SSL_session_reused(ssl) != 0 ? resumed : full).fetch_add(1, std::memory_order_relaxed);
  (::SSL_version(ssl) == TLS1_3_VERSION ? tls1_3 : tls1_2).fetch_add(1, std::memory_order_relaxed);
}

namespace {

// failure_cause follows errc's tls_* codes in order; the last, `other`, is tls_handshake_failed's.
constexpr auto first_tls = static_cast<int>(errc::tls_certificate_expired);
static_assert(static_cast<int>(errc::tls_handshake_failed) - first_tls ==
              static_cast<int>(failure_cause::other));
static_assert(static_cast<int>(errc::tls_handshake_timeout) - first_tls ==
              static_cast<int>(failure_cause::timeout));

constexpr std::array<const char*, failure_causes> cause_names = {
    "certificate_expired", "unknown_ca",       "hostname_mismatch", "certificate_invalid",
    "certificate_refused", "protocol_version", "timeout",           "other"};

} // namespace

const char* to_string(failure_cause cause) noexcept {
  return cause_names[static_cast<std::size_t>(cause)];
}

failure_cause cause_of(std::error_code ec) noexcept {
  return is_tls_error(ec) ? static_cast<failure_cause>(ec.value() - first_tls)
                          : failure_cause::other;
}

client_identity::client_identity(std::shared_ptr<client_context> context, std::string_view host,
                                 std::shared_ptr<handshake_counters> counters)
    : context_{std::move(context)}, name_{context_->options().server_name.empty()
                                              ? std::string{host}
                                              : context_->options().server_name},
      counters_{std::move(counters)} {
  std::error_code not_address;
  (void)asio::ip::make_address(name_, not_address);
  name_is_address_ = !not_address;
  if (context_->options().session_resumption) {
    sessions_ = std::make_shared<session_cache>();
    SSL_CTX* ctx = context_->native().native_handle();
    // Idempotent: every identity of the context installs the same callback.
    ::SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    ::SSL_CTX_sess_set_new_cb(ctx, on_new_session);
  }
}

client_identity::~client_identity() = default;
client_identity::client_identity(client_identity&&) noexcept = default;
client_identity& client_identity::operator=(client_identity&&) noexcept = default;

stream client_identity::open(asio::ip::tcp::socket socket) {
  stream s{std::move(socket), context_->native(), role::client};
  SSL* ssl = s.native_handle();
  if (context_->options().verify) {
    if (name_is_address_) {
      ::X509_VERIFY_PARAM_set1_ip_asc(::SSL_get0_param(ssl), name_.c_str());
    } else {
      ::SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ::SSL_set1_host(ssl, name_.c_str());
    }
  }
  if (!name_is_address_) {
    // RFC 6066: no SNI for an address. OpenSSL's macro casts C-style: its warning, not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
    ::SSL_set_tlsext_host_name(ssl, name_.c_str());
#pragma GCC diagnostic pop
  }
  if (sessions_) {
    ::SSL_set_ex_data(ssl, cache_index(), new std::shared_ptr<session_cache>{sessions_});
    sessions_->offer(ssl);
  }
  return s;
}

asio::awaitable<std::error_code> client_identity::async_handshake(stream& s) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer{s.get_executor(), context_->options().handshake_timeout};
  auto done = co_await (s.async_handshake(use_tuple) || timer.async_wait(use_tuple));
  std::error_code ec;
  if (done.index() == 1) {
    ec = make_error_code(errc::tls_handshake_timeout);
  } else if (auto [error, ignored] = std::get<0>(done); error) {
    ec = classify(s.native_handle(), error);
  }
  if (ec) {
    ::ERR_clear_error();
    if (counters_ != nullptr) {
      counters_->failed_by(cause_of(ec));
    }
    s.close();
    co_return ec;
  }
  if (counters_ != nullptr) {
    counters_->completed(s);
  }
  co_return ec;
}

std::string_view client_identity::alpn(stream& s) noexcept {
  const unsigned char* data = nullptr;
  unsigned size = 0;
  ::SSL_get0_alpn_selected(s.native_handle(), &data, &size);
  return {reinterpret_cast<const char*>(data), size};
}

asio::awaitable<std::error_code> async_accept(stream& s) {
  auto [error, ignored] = co_await s.async_handshake(use_tuple);
  if (error) {
    const auto ec = classify(s.native_handle(), error);
    ::ERR_clear_error();
    co_return ec;
  }
  co_return std::error_code{};
}

std::error_code classify_failure(stream& s, std::error_code ec) noexcept {
  if (!s.secured() || ec.category() != asio::error::get_ssl_category()) {
    return ec;
  }
  const auto out = classify(s.native_handle(), ec);
  ::ERR_clear_error();
  return out;
}

std::string peer_subject(stream& s) {
  X509* cert = ::SSL_get0_peer_certificate(s.native_handle());
  if (cert == nullptr) {
    return {};
  }
  BIO* out = ::BIO_new(::BIO_s_mem());
  ::X509_NAME_print_ex(out, ::X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  const long n = ::BIO_get_mem_data(out, &data);
  std::string subject(data, static_cast<std::size_t>(n));
  ::BIO_free(out);
  return subject;
}

std::string_view protocol_version(stream& s) noexcept {
  return ::SSL_get_version(s.native_handle());
}

} // namespace tether::tls
