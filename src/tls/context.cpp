#include "tether/tls/context.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <stdexcept>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace tether::tls {

// Mozilla's "intermediate" configuration (version 5.7): the TLS 1.2 suites; TLS 1.3's are
// OpenSSL's defaults, which are the same three.
constexpr const char* intermediate_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
constexpr const char* intermediate_groups = "X25519:P-256:P-384";

namespace {

// OpenSSL's error queue as one line ("no start line; ..."), emptied.
std::string openssl_errors() {
  std::string out;
  while (const unsigned long e = ::ERR_get_error()) {
    const char* reason = ::ERR_reason_error_string(e);
    if (!out.empty()) {
      out += "; ";
    }
    out += reason != nullptr ? reason : "error " + std::to_string(e);
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

[[noreturn]] void fail(const std::string& what) {
  ::ERR_clear_error();
  throw std::invalid_argument(what);
}

// A certificate, key or CA bundle is far smaller; a file past this is a wrong path.
constexpr off_t max_file_size = 4 * 1024 * 1024;

// Looking at the file ourselves first gives the operating system's reason (no such file,
// permission denied), which OpenSSL's "system lib" does not say, and keeps OpenSSL from reading
// what is not a file: a config naming /dev/zero or a FIFO would never finish loading.
void check_readable(const std::string& file, const char* field) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    fail(std::string{field} + " " + file + ": cannot read it: " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    fail(std::string{field} + " " + file + ": not a regular file");
  }
  if (st.st_size > max_file_size) {
    fail(std::string{field} + " " + file + ": " + std::to_string(st.st_size) +
         " bytes, too large for PEM certificates or keys (4 MiB at most)");
  }
  std::ifstream in{file};
  if (!in) {
    fail(std::string{field} + " " + file + ": cannot read it: " + std::strerror(errno));
  }
}

struct bio_deleter {
  void operator()(BIO* b) const noexcept { ::BIO_free(b); }
};
struct x509_deleter {
  void operator()(X509* x) const noexcept { ::X509_free(x); }
};
struct pkey_deleter {
  void operator()(EVP_PKEY* k) const noexcept { ::EVP_PKEY_free(k); }
};
using x509_ptr = std::unique_ptr<X509, x509_deleter>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;

std::string time_text(const ASN1_TIME* t) {
  std::unique_ptr<BIO, bio_deleter> out{::BIO_new(::BIO_s_mem())};
  ::ASN1_TIME_print(out.get(), t);
  char* data = nullptr;
  const long n = ::BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

x509_ptr read_certificate(const std::string& file, const char* field) {
  check_readable(file, field);
  std::unique_ptr<BIO, bio_deleter> in{::BIO_new_file(file.c_str(), "r")};
  x509_ptr cert{in ? ::PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr) : nullptr};
  if (!cert) {
    fail(std::string{field} + " " + file + ": not a PEM certificate (" + openssl_errors() + ")");
  }
  if (::X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
    fail(std::string{field} + " " + file + ": the certificate expired on " +
         time_text(X509_get0_notAfter(cert.get())));
  }
  if (::X509_cmp_current_time(X509_get0_notBefore(cert.get())) >= 0) {
    fail(std::string{field} + " " + file + ": the certificate is not valid before " +
         time_text(X509_get0_notBefore(cert.get())));
  }
  return cert;
}

pkey_ptr read_key(const std::string& file, const char* field) {
  check_readable(file, field);
  std::unique_ptr<BIO, bio_deleter> in{::BIO_new_file(file.c_str(), "r")};
  // No passphrase callback: an encrypted key fails here rather than prompting on a terminal.
  pkey_ptr key{in ? ::PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr) : nullptr};
  if (!key) {
    // The key's bytes are never quoted: only the file's name and OpenSSL's reason.
    fail(std::string{field} + " " + file + ": not an unencrypted PEM private key (" +
         openssl_errors() + ")");
  }
  return key;
}

// The names a certificate serves: its subjectAltName DNS entries, or its CN when it has none.
std::vector<std::string> dns_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(::X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
      if (name->type == GEN_DNS) {
        const auto* text = ::ASN1_STRING_get0_data(name->d.dNSName);
        names.emplace_back(reinterpret_cast<const char*>(text),
                           static_cast<std::size_t>(::ASN1_STRING_length(name->d.dNSName)));
      }
    }
    ::GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256] = {};
    if (::X509_NAME_get_text_by_NID(::X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) >
        0) {
      names.emplace_back(cn);
    }
  }
  return names;
}

// ALPN's wire format: each protocol prefixed with its length.
std::string alpn_wire(const std::vector<std::string>& protocols, const char* field) {
  std::string out;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) {
      throw std::invalid_argument(std::string{field} + ": a protocol name of 1 to 255 bytes");
    }
    out += static_cast<char>(p.size());
    out += p;
  }
  return out;
}

int openssl_version(version v) noexcept {
  return v == version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

// What every tether context has, client or server.
void apply_common(SSL_CTX* ctx, version min) {
  ::SSL_CTX_set_min_proto_version(ctx, openssl_version(min));
  ::SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (::SSL_CTX_set_cipher_list(ctx, intermediate_ciphers) != 1 ||
      ::SSL_CTX_set1_groups_list(ctx, intermediate_groups) != 1) {
    fail("tls: OpenSSL refused the intermediate ciphers or groups (" + openssl_errors() + ")");
  }
}

void load_pair(SSL_CTX* ctx, const std::string& cert_file, const std::string& key_file,
               const char* cert_field, const char* key_field) {
  const auto cert = read_certificate(cert_file, cert_field);
  const auto key = read_key(key_file, key_field);
  if (::X509_check_private_key(cert.get(), key.get()) != 1) {
    fail(std::string{cert_field} + " " + cert_file + " does not match " + key_field + " " +
         key_file);
  }
  if (::SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    fail(std::string{cert_field} + " " + cert_file + ": " + openssl_errors());
  }
  if (::SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
    fail(std::string{key_field} + " " + key_file + ": " + openssl_errors());
  }
}

void load_trust(SSL_CTX* ctx, const std::string& ca_file, const char* field) {
  if (ca_file.empty()) {
    if (::SSL_CTX_set_default_verify_paths(ctx) != 1) {
      fail("tls: the system's trust store could not be loaded (" + openssl_errors() + ")");
    }
    return;
  }
  check_readable(ca_file, field);
  if (::SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
    fail(std::string{field} + " " + ca_file + ": no PEM certificate in it (" + openssl_errors() +
         ")");
  }
}

} // namespace

const char* to_string(version v) noexcept {
  return v == version::tls1_3 ? "TLSv1.3" : "TLSv1.2";
}

void client_options::validate() const {
  if (handshake_timeout <= clock::duration::zero()) {
    throw std::invalid_argument("tls handshake_timeout must be greater than 0");
  }
  if (cert_file.empty() != key_file.empty()) {
    throw std::invalid_argument("tls cert_file and key_file go together: both or neither");
  }
  (void)alpn_wire(alpn, "tls alpn");
}

void server_options::validate() const {
  if (certificates.empty()) {
    throw std::invalid_argument("tls certificates: at least one (cert_file and key_file)");
  }
  for (const auto& c : certificates) {
    if (c.cert_file.empty() || c.key_file.empty()) {
      throw std::invalid_argument("tls certificates: each needs cert_file and key_file");
    }
  }
  if (require_client_certificate && client_ca_file.empty()) {
    throw std::invalid_argument("tls require_client_certificate needs client_ca_file");
  }
  (void)alpn_wire(alpn, "tls alpn");
}

client_context::client_context(client_options options)
    : options_{std::move(options)}, context_{asio::ssl::context::tls_client} {
  options_.validate();
  SSL_CTX* ctx = context_.native_handle();
  apply_common(ctx, options_.min_version);
  if (options_.verify) {
    load_trust(ctx, options_.ca_file, "tls ca_file");
    ::SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    ::SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!options_.cert_file.empty()) {
    load_pair(ctx, options_.cert_file, options_.key_file, "tls cert_file", "tls key_file");
  }
  const auto wire = alpn_wire(options_.alpn, "tls alpn");
  if (!wire.empty() &&
      ::SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0) {
    fail("tls alpn: " + openssl_errors());
  }
}

struct server_context::entry {
  asio::ssl::context context{asio::ssl::context::tls_server};
  std::vector<std::string> names;
  std::string alpn; // the server's protocols, wire format
};

namespace {

bool name_matches(const std::string& pattern, std::string_view name) {
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    // A wildcard stands for exactly one label.
    const auto dot = name.find('.');
    return dot != std::string_view::npos && dot > 0 &&
           ::strcasecmp(pattern.c_str() + 1, std::string{name.substr(dot)}.c_str()) == 0;
  }
  return pattern.size() == name.size() &&
         ::strncasecmp(pattern.data(), name.data(), name.size()) == 0;
}

int choose_certificate(SSL* ssl, int* /*alert*/, void* arg) {
  const char* name = ::SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (name == nullptr) {
    return SSL_TLSEXT_ERR_NOACK; // no SNI: the default certificate
  }
  const auto& entries = *static_cast<std::vector<std::unique_ptr<server_context::entry>>*>(arg);
  // Exact names before wildcards, as browsers and nginx pick.
  for (const bool wildcards : {false, true}) {
    for (std::size_t i = 1; i < entries.size(); ++i) {
      for (const auto& pattern : entries[i]->names) {
        if ((pattern.rfind("*.", 0) == 0) == wildcards && name_matches(pattern, name)) {
          ::SSL_set_SSL_CTX(ssl, entries[i]->context.native_handle());
          return SSL_TLSEXT_ERR_OK;
        }
      }
    }
  }
  return SSL_TLSEXT_ERR_OK; // a name no other certificate has: the default
}

int choose_protocol(SSL* /*ssl*/, const unsigned char** out, unsigned char* out_size,
                    const unsigned char* offered, unsigned offered_size, void* arg) {
  const auto& ours = *static_cast<const std::string*>(arg);
  unsigned char* chosen = nullptr;
  if (::SSL_select_next_proto(
          &chosen, out_size, reinterpret_cast<const unsigned char*>(ours.data()),
          static_cast<unsigned>(ours.size()), offered, offered_size) != OPENSSL_NPN_NEGOTIATED) {
    // RFC 7301 3.2: a client that offers only protocols we do not speak is refused with
    // no_application_protocol, not served in one it did not ask for.
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

} // namespace

server_context::server_context(server_options options) : options_{std::move(options)} {
  options_.validate();
  for (std::size_t i = 0; i < options_.certificates.size(); ++i) {
    const auto& pair = options_.certificates[i];
    auto e = std::make_unique<entry>();
    SSL_CTX* ctx = e->context.native_handle();
    apply_common(ctx, options_.min_version);
    load_pair(ctx, pair.cert_file, pair.key_file, "tls cert_file", "tls key_file");
    e->names = dns_names(::SSL_CTX_get0_certificate(ctx));
    e->alpn = alpn_wire(options_.alpn, "tls alpn");
    if (!e->alpn.empty()) { // none listed: no protocol is chosen, and no offer refused
      ::SSL_CTX_set_alpn_select_cb(ctx, choose_protocol, &e->alpn);
    }
    // Resumed sessions are only accepted by the listener that made them.
    static constexpr unsigned char session_context[] = "tether";
    ::SSL_CTX_set_session_id_context(ctx, session_context, sizeof session_context - 1);
    // Clients resume with tickets (TLS 1.3's, and RFC 5077's for TLS 1.2), which need no state
    // here; OpenSSL's own cache of sessions by ID is a locked table every full handshake
    // writes to, which only TLS 1.2 clients without tickets would use (nginx's default too).
    ::SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (!options_.client_ca_file.empty()) {
      load_trust(ctx, options_.client_ca_file, "tls client_ca_file");
      ::SSL_CTX_set_client_CA_list(ctx, ::SSL_load_client_CA_file(options_.client_ca_file.c_str()));
      ::SSL_CTX_set_verify(
          ctx,
          SSL_VERIFY_PEER |
              (options_.require_client_certificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
          nullptr);
    }
    struct stat st {};
    if (::stat(pair.key_file.c_str(), &st) == 0 && (st.st_mode & S_IROTH) != 0) {
      warnings_.push_back("tls key_file " + pair.key_file +
                          " is readable by every user of this machine (chmod o-r it)");
    }
    entries_.push_back(std::move(e));
  }
  // OpenSSL's macro casts the callback C-style: its warning is OpenSSL's, not ours.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
  ::SSL_CTX_set_tlsext_servername_callback(entries_.front()->context.native_handle(),
                                           choose_certificate);
#pragma GCC diagnostic pop
  ::SSL_CTX_set_tlsext_servername_arg(entries_.front()->context.native_handle(), &entries_);
}

server_context::~server_context() = default;

asio::ssl::context& server_context::native() noexcept {
  return entries_.front()->context;
}

const std::vector<std::string>& server_context::names(std::size_t index) const {
  return entries_.at(index)->names;
}

std::string check_server_options(const server_options& options) {
  try {
    const server_context check{options};
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return {};
}

} // namespace tether::tls
