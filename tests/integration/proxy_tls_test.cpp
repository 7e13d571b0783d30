// tether proxy with TLS on both sides, against real peers: curl and openssl s_client as clients
// of a TLS listener (SNI, mTLS, a stalled handshake), sslscan auditing it, and Debian's nginx
// as a TLS upstream (verification, SNI, client certificates per cluster, an unknown CA). The
// certificates come from the openssl CLI (support/make_test_ca.sh).
#include "proxy_fixture.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "nginx_server.hpp"
#include "test_ca.hpp"
#include "tether/tls/context.hpp"

namespace tether::testing {
namespace {

const test_ca& ca() {
  return test_ca::get();
}

std::string metrics_of(const proxy_fixture& p) {
  return run("curl -sS http://127.0.0.1:" + std::to_string(p.admin_port()) + "/metrics");
}

bool has(const std::string& text, const std::string& series) {
  return text.find(series) != std::string::npos;
}

/// A proxy whose listener terminates TLS (`tls` is the listener's tls: mapping) in front of a
/// plain backend.
std::string tls_listener_yaml(std::uint16_t backend, const std::string& tls,
                              const std::string& downstream = "") {
  return "workers: 1\n"
         "listeners:\n  - {name: secure, address: 127.0.0.1, port: 0, tls: " +
         tls +
         "}\n"
         "admin: {address: 127.0.0.1, port: 0}\n" +
         downstream +
         "routes: [{path_prefix: /, cluster: backend}]\n"
         "clusters:\n  - {name: backend, endpoints: [\"127.0.0.1:" +
         std::to_string(backend) + "\"]}\n";
}

std::string server_pair() {
  return "{cert_file: " + ca().path("server.pem") + ", key_file: " + ca().path("server.key") + "}";
}

std::string curl_tls(std::uint16_t port, const std::string& host = "localhost",
                     const std::string& extra = "") {
  return "curl -sS --max-time 5 --cacert " + ca().path("ca.pem") + " --resolve " + host + ":" +
         std::to_string(port) + ":127.0.0.1 " + extra + " https://" + host + ":" +
         std::to_string(port) + "/hello 2>&1";
}

TEST(proxy_tls_listener, terminates_tls_for_curl) {
  nginx_server backend;
  proxy_fixture proxy{tls_listener_yaml(backend.port(), server_pair()), nullptr};
  EXPECT_EQ(run(curl_tls(proxy.port())), "hello\n");
  // Three requests on one connection: one handshake.
  const auto three = run(curl_tls(proxy.port()) + " && " + curl_tls(proxy.port()));
  EXPECT_EQ(three, "hello\nhello\n");
  const auto m = metrics_of(proxy);
  EXPECT_TRUE(
      has(m, "tether_proxy_downstream_tls_handshakes_total{listener=\"secure\",result=\"full\"} 3"))
      << m;
  EXPECT_TRUE(has(
      m, "tether_proxy_downstream_tls_protocol_total{listener=\"secure\",version=\"TLSv1.3\"} 3"))
      << m;
}

TEST(proxy_tls_listener, resumes_sessions_from_tickets_at_both_versions) {
  nginx_server backend;
  proxy_fixture proxy{tls_listener_yaml(backend.port(), server_pair()), nullptr};
  char dir[] = "/tmp/tether-sessions-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    const std::string session = std::string{dir} + "/session" + version;
    const std::string s_client = "printf 'GET /hello HTTP/1.1\\r\\nHost: localhost\\r\\n"
                                 "Connection: close\\r\\n\\r\\n' | openssl s_client -ign_eof " +
                                 std::string{version} +
                                 " -connect 127.0.0.1:" + std::to_string(proxy.port()) +
                                 " -CAfile " + ca().path("ca.pem");
    const auto first = run(s_client + " -sess_out " + session + " 2>&1");
    EXPECT_TRUE(has(first, "New, TLSv1")) << version << "\n" << first;
    const auto again = run(s_client + " -sess_in " + session + " 2>&1");
    EXPECT_TRUE(has(again, "Reused, TLSv1")) << version << "\n" << again;
    EXPECT_TRUE(has(again, "hello")) << again;
  }
  std::filesystem::remove_all(dir);
  const auto m = metrics_of(proxy);
  EXPECT_TRUE(has(
      m, "tether_proxy_downstream_tls_handshakes_total{listener=\"secure\",result=\"resumed\"} 2"))
      << m;
}

TEST(proxy_tls_listener, chooses_the_certificate_by_sni) {
  nginx_server backend;
  const std::string tls = "{certificates: [" + server_pair() +
                          ", {cert_file: " + ca().path("other.pem") +
                          ", key_file: " + ca().path("other.key") + "}]}";
  proxy_fixture proxy{tls_listener_yaml(backend.port(), tls), nullptr};
  // Each name is verified by curl against the certificate it got.
  EXPECT_EQ(run(curl_tls(proxy.port(), "localhost")), "hello\n");
  EXPECT_EQ(run(curl_tls(proxy.port(), "other.test")), "hello\n");
  EXPECT_EQ(run(curl_tls(proxy.port(), "api.wild.test")), "hello\n");
  // No SNI, or a name no certificate has: the default.
  const std::string s_client =
      "echo | openssl s_client -connect 127.0.0.1:" + std::to_string(proxy.port()) + " 2>/dev/null";
  EXPECT_TRUE(has(run(s_client + " -noservername | grep '^subject'"), "CN = localhost"));
  EXPECT_TRUE(has(run(s_client + " -servername nowhere.test | grep '^subject'"), "CN = localhost"));
  EXPECT_TRUE(has(run(s_client + " -servername x.wild.test | grep '^subject'"), "CN = other.test"));
}

TEST(proxy_tls_listener, requires_client_certificates_when_told) {
  nginx_server backend;
  const std::string tls =
      "{cert_file: " + ca().path("server.pem") + ", key_file: " + ca().path("server.key") +
      ", client_ca_file: " + ca().path("ca.pem") + ", require_client_certificate: true}";
  proxy_fixture proxy{tls_listener_yaml(backend.port(), tls), nullptr};
  const std::string cert =
      "--cert " + ca().path("client.pem") + " --key " + ca().path("client.key");
  EXPECT_EQ(run(curl_tls(proxy.port(), "localhost", cert)), "hello\n");
  const auto refused = run(curl_tls(proxy.port()));
  EXPECT_FALSE(has(refused, "hello")) << refused;
  const auto m = metrics_of(proxy);
  EXPECT_TRUE(has(m, "tether_proxy_downstream_tls_handshake_failures_total{cause=\"certificate_"
                     "refused\",listener=\"secure\"} 1"))
      << m;
}

TEST(proxy_tls_listener, routes_and_logs_by_the_client_certificates_subject) {
  nginx_server backend{"    location = /who { return 200 \"public\\n\"; }\n"};
  nginx_server operators{"    location = /who { return 200 \"operators\\n\"; }\n"};
  char log_name[] = "/tmp/tether-access-XXXXXX";
  ::close(::mkstemp(log_name));
  const std::string yaml =
      "workers: 1\n"
      "listeners:\n  - {name: secure, address: 127.0.0.1, port: 0, tls: {cert_file: " +
      ca().path("server.pem") + ", key_file: " + ca().path("server.key") +
      ", client_ca_file: " + ca().path("ca.pem") +
      "}}\n"
      "admin: {address: 127.0.0.1, port: 0}\n"
      "log: {level: warn, access_log: " +
      log_name +
      "}\n"
      "routes:\n"
      "  - {path_prefix: /, cluster: operators, client_subject: CN=client-one}\n"
      "  - {path_prefix: /, cluster: public}\n"
      "clusters:\n"
      "  - {name: operators, endpoints: [\"127.0.0.1:" +
      std::to_string(operators.port()) +
      "\"]}\n"
      "  - {name: public, endpoints: [\"127.0.0.1:" +
      std::to_string(backend.port()) + "\"]}\n";
  {
    proxy_fixture proxy{yaml, nullptr};
    const auto who = [&](const std::string& cert) {
      auto command = curl_tls(proxy.port(), "localhost",
                              cert.empty() ? ""
                                           : "--cert " + ca().path(cert + ".pem") + " --key " +
                                                 ca().path(cert + ".key"));
      command.replace(command.find("/hello"), 6, "/who");
      return run(command);
    };
    EXPECT_EQ(who("client"), "operators\n");
    EXPECT_EQ(who("client2"), "public\n");
    EXPECT_EQ(who(""), "public\n"); // no certificate: asked for, not required
    proxy.get().stop();             // the access log is written out by then
  }
  std::ifstream in{log_name};
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
  }
  ::unlink(log_name);
  ASSERT_EQ(lines.size(), 3U);
  EXPECT_TRUE(has(lines[0], "cluster=operators")) << lines[0];
  EXPECT_TRUE(has(lines[0], "client_subject=\"CN=client-one\"")) << lines[0];
  EXPECT_TRUE(has(lines[1], "client_subject=\"CN=client-two\"")) << lines[1];
  EXPECT_FALSE(has(lines[2], "client_subject")) << lines[2];
}

TEST(proxy_tls_listener, a_stalled_handshake_ends_at_the_header_timeout) {
  nginx_server backend;
  proxy_fixture proxy{tls_listener_yaml(backend.port(), server_pair(),
                                        "downstream: {request_header_timeout: 300ms}\n"),
                      nullptr};
  bool closed = false;
  // Two bytes of a TLS record header, then nothing.
  const auto answer = proxy.raw(std::string{"\x16\x03", 2}, &closed);
  EXPECT_TRUE(closed) << "the proxy kept a stalled handshake open";
  EXPECT_TRUE(answer.empty());
  const auto m = metrics_of(proxy);
  EXPECT_TRUE(has(m, "tether_proxy_downstream_tls_handshake_failures_total{cause=\"timeout\","
                     "listener=\"secure\"} 1"))
      << m;
}

TEST(proxy_tls_listener, sslscan_finds_no_old_protocol_weak_cipher_or_renegotiation) {
  nginx_server backend;
  proxy_fixture proxy{tls_listener_yaml(backend.port(), server_pair()), nullptr};
  const auto scan =
      run("sslscan --no-colour --no-heartbleed 127.0.0.1:" + std::to_string(proxy.port()));
  ASSERT_TRUE(has(scan, "TLSv1.3   enabled")) << scan;
  EXPECT_TRUE(has(scan, "TLSv1.2   enabled")) << scan;
  for (const char* off :
       {"SSLv2     disabled", "SSLv3     disabled", "TLSv1.0   disabled", "TLSv1.1   disabled"}) {
    EXPECT_TRUE(has(scan, off)) << off << "\n" << scan;
  }
  EXPECT_TRUE(has(scan, "Session renegotiation not supported")) << scan;
  for (const char* weak : {"RC4", "DES-CBC3", "NULL", "EXP", "MD5", "CBC"}) {
    // Accepted ciphers are listed as "Preferred|Accepted  TLSvX  bits  NAME".
    for (std::size_t at = scan.find("Accepted"); at != std::string::npos;
         at = scan.find("Accepted", at + 1)) {
      const auto line = scan.substr(at, scan.find('\n', at) - at);
      EXPECT_FALSE(has(line, weak)) << line;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream TLS

/// A proxy on a plain listener; `clusters` is the clusters section's items, `routes` the routes.
std::string tls_upstream_yaml(const std::string& routes, const std::string& clusters) {
  return "workers: 1\n"
         "listeners: [{name: main, address: 127.0.0.1, port: 0}]\n"
         "admin: {address: 127.0.0.1, port: 0}\n"
         "routes:\n" +
         routes + "clusters:\n" + clusters;
}

std::string secure_cluster(const std::string& name, std::uint16_t port, const std::string& tls) {
  return "  - {name: " + name + ", endpoints: [\"127.0.0.1:" + std::to_string(port) +
         "\"], tls: " + tls + "}\n";
}

TEST(proxy_tls_upstream, verifies_and_sends_sni_to_a_tls_upstream) {
  nginx_server nginx{"",
                     nginx_server::tls_settings{ca().path("server.pem"), ca().path("server.key")}};
  const std::string tls = "{ca_file: " + ca().path("ca.pem") + ", server_name: localhost}";
  proxy_fixture proxy{tls_upstream_yaml("  - {path_prefix: /, cluster: secure}\n",
                                        secure_cluster("secure", nginx.port(), tls)),
                      nullptr};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/hello")), "hello\n");
  }
  const auto log = nginx.tls_log(5);
  ASSERT_EQ(log.size(), 5U);
  std::set<long> connections;
  for (const auto& l : log) {
    connections.insert(l.connection);
    EXPECT_EQ(l.server_name, "localhost");
  }
  EXPECT_EQ(connections.size(), 1U); // pooled: one handshake for five requests
  const auto m = metrics_of(proxy);
  EXPECT_TRUE(
      has(m, "tether_proxy_upstream_tls_handshakes_total{cluster=\"secure\",result=\"full\"} 1"))
      << m;
}

TEST(proxy_tls_upstream, a_reload_after_the_ca_file_changed_makes_new_connections) {
  nginx_server nginx{"",
                     nginx_server::tls_settings{ca().path("server.pem"), ca().path("server.key")}};
  const auto ca_copy =
      std::filesystem::temp_directory_path() / ("tether-ca-" + std::to_string(::getpid()) + ".pem");
  std::filesystem::copy_file(ca().path("ca.pem"), ca_copy,
                             std::filesystem::copy_options::overwrite_existing);
  const std::string tls = "{ca_file: " + ca_copy.string() + ", server_name: localhost}";
  const auto yaml = tls_upstream_yaml("  - {path_prefix: /, cluster: secure}\n",
                                      secure_cluster("secure", nginx.port(), tls));
  proxy_fixture proxy{yaml, nullptr};
  const auto config = *load_config(yaml, "tls.yaml").value;
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/hello")), "hello\n");
  // The same config and files: the cluster and its pooled connection stay.
  ASSERT_TRUE(proxy.get().reload(config).empty());
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/hello")), "hello\n");
  // The CA file written again (a rotation): the cluster is built anew and verifies with it.
  std::filesystem::copy_file(ca().path("ca.pem"), ca_copy,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::last_write_time(ca_copy, std::filesystem::file_time_type::clock::now());
  ASSERT_TRUE(proxy.get().reload(config).empty());
  EXPECT_EQ(run("curl -sS --max-time 5 " + proxy.url("/hello")), "hello\n");
  const auto log = nginx.tls_log(3);
  ASSERT_EQ(log.size(), 3U);
  EXPECT_EQ(log[0].connection, log[1].connection);
  EXPECT_NE(log[1].connection, log[2].connection);
  std::filesystem::remove(ca_copy);
}

TEST(proxy_tls_upstream, never_shares_a_connection_across_client_certificates) {
  nginx_server nginx{"", nginx_server::tls_settings{ca().path("server.pem"),
                                                    ca().path("server.key"), ca().path("ca.pem")}};
  const auto with = [&](const char* cert) {
    return "{ca_file: " + ca().path("ca.pem") +
           ", cert_file: " + ca().path(std::string{cert} + ".pem") +
           ", key_file: " + ca().path(std::string{cert} + ".key") + "}";
  };
  proxy_fixture proxy{tls_upstream_yaml("  - {path_prefix: /one/, cluster: one}\n"
                                        "  - {path_prefix: /, cluster: two}\n",
                                        secure_cluster("one", nginx.port(), with("client")) +
                                            secure_cluster("two", nginx.port(), with("client2"))),
                      nullptr};
  for (int i = 0; i < 3; ++i) {
    run("curl -sS --max-time 5 " + proxy.url("/one/x"));
    run("curl -sS --max-time 5 " + proxy.url("/two"));
  }
  const auto log = nginx.tls_log(6);
  ASSERT_EQ(log.size(), 6U);
  std::set<long> one;
  std::set<long> two;
  for (const auto& l : log) {
    ASSERT_TRUE(l.client_dn == "CN=client-one" || l.client_dn == "CN=client-two") << l.client_dn;
    (l.client_dn == "CN=client-one" ? one : two).insert(l.connection);
  }
  EXPECT_EQ(one.size(), 1U);
  EXPECT_EQ(two.size(), 1U);
  EXPECT_NE(*one.begin(), *two.begin());
}

TEST(proxy_tls_upstream, an_unknown_ca_is_a_502_counted_by_cause_and_not_retried) {
  nginx_server nginx{"",
                     nginx_server::tls_settings{ca().path("server.pem"), ca().path("server.key")}};
  // The system's trust store does not know the test CA.
  proxy_fixture proxy{
      tls_upstream_yaml(
          "  - {path_prefix: /, cluster: secure}\n",
          "  - name: secure\n    endpoints: [\"127.0.0.1:" + std::to_string(nginx.port()) +
              "\"]\n    tls: {}\n"
              "    retry: {num_retries: 2, retry_on: [connect-failure]}\n"),
      nullptr};
  const auto status =
      run("curl -s -o /dev/null -w '%{http_code}' --max-time 5 " + proxy.url("/hello"));
  EXPECT_EQ(status, "502");
  const auto m = metrics_of(proxy);
  EXPECT_TRUE(has(m, "tether_proxy_upstream_tls_handshake_failures_total{cause=\"unknown_ca\","
                     "cluster=\"secure\"} 1"))
      << m;
  // Retries on connect failures were allowed; a certificate error is not one to retry.
  EXPECT_TRUE(has(m, "tether_proxy_retries_total{cluster=\"secure\",reason=\"connect_failure\"} 0"))
      << m;
  EXPECT_TRUE(nginx.access_log().empty());
}

// ---------------------------------------------------------------------------------------------
// Checked before start

std::vector<std::string> errors_of(const std::string& listener_tls) {
  const auto yaml = tls_listener_yaml(1, listener_tls);
  return proxy::load_config(yaml, "tls.yaml").errors;
}

TEST(proxy_tls_listener, a_reload_reads_certificates_again) {
  nginx_server backend;
  // The listener's pair under names of its own, replaced on disk as a rotation would.
  const auto dir =
      std::filesystem::temp_directory_path() / ("tether-rotate-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto cert = (dir / "cert.pem").string();
  const auto key = (dir / "key.pem").string();
  const auto place = [&](const std::string& pem, const std::string& private_key) {
    std::filesystem::copy_file(ca().path(pem), cert,
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(ca().path(private_key), key,
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::permissions(key, std::filesystem::perms::owner_read |
                                          std::filesystem::perms::owner_write);
  };
  place("server.pem", "server.key");
  const auto yaml = tls_listener_yaml(backend.port(), "{certificates: [{cert_file: " + cert +
                                                          ", key_file: " + key + "}]}");
  proxy_fixture proxy{yaml, nullptr};
  const std::string subject =
      "echo | openssl s_client -connect 127.0.0.1:" + std::to_string(proxy.port()) +
      " -servername localhost 2>/dev/null | grep '^subject'";
  EXPECT_TRUE(has(run(subject), "CN = localhost"));

  place("other.pem", "other.key");
  auto errors = proxy.get().reload(*load_config(yaml, "tls.yaml").value);
  ASSERT_TRUE(errors.empty()) << errors[0];
  EXPECT_TRUE(has(run(subject), "CN = other.test")) << "new connections get the new certificate";

  // A certificate that does not match its key: the reload is refused, the last pair stays.
  std::filesystem::copy_file(ca().path("server.pem"), cert,
                             std::filesystem::copy_options::overwrite_existing);
  errors = proxy.get().reload(proxy.get().running_config());
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_TRUE(has(errors[0], "does not match")) << errors[0];
  EXPECT_TRUE(has(run(subject), "CN = other.test"));
  std::filesystem::remove_all(dir);
}

TEST(proxy_tls_config, says_which_file_is_wrong_and_how) {
  const auto mismatch = errors_of("{cert_file: " + ca().path("server.pem") +
                                  ", key_file: " + ca().path("other.key") + "}");
  ASSERT_EQ(mismatch.size(), 1U);
  EXPECT_TRUE(has(mismatch[0], "tls.yaml:3:")) << mismatch[0];
  EXPECT_TRUE(has(mismatch[0], "server.pem does not match tls key_file")) << mismatch[0];

  const auto missing =
      errors_of("{cert_file: /nonexistent/cert.pem, key_file: " + ca().path("server.key") + "}");
  ASSERT_EQ(missing.size(), 1U);
  EXPECT_TRUE(has(missing[0], "/nonexistent/cert.pem: cannot read it: No such file")) << missing[0];

  const auto expired = errors_of("{cert_file: " + ca().path("expired.pem") +
                                 ", key_file: " + ca().path("expired.key") + "}");
  ASSERT_EQ(expired.size(), 1U);
  EXPECT_TRUE(has(expired[0], "expired.pem: the certificate expired on Jan 31")) << expired[0];

  // A device or a FIFO would never finish reading: refused before OpenSSL opens it.
  const auto device =
      errors_of("{cert_file: /dev/zero, key_file: " + ca().path("server.key") + "}");
  ASSERT_EQ(device.size(), 1U);
  EXPECT_TRUE(has(device[0], "/dev/zero: not a regular file")) << device[0];

  const auto not_a_key = errors_of("{cert_file: " + ca().path("server.pem") +
                                   ", key_file: " + ca().path("server.pem") + "}");
  ASSERT_EQ(not_a_key.size(), 1U);
  EXPECT_TRUE(has(not_a_key[0], "not an unencrypted PEM private key")) << not_a_key[0];
  EXPECT_FALSE(has(not_a_key[0], "BEGIN")) << "no file content in messages";
}

TEST(proxy_tls_config, a_key_file_every_user_can_read_gets_a_warning) {
  const std::string readable = ca().path("readable.key");
  std::filesystem::copy_file(ca().path("server.key"), readable,
                             std::filesystem::copy_options::overwrite_existing);
  ::chmod(readable.c_str(), 0644);
  const tls::server_context open_key{{{{ca().path("server.pem"), readable}}}};
  ASSERT_EQ(open_key.warnings().size(), 1U);
  EXPECT_TRUE(has(open_key.warnings()[0], "readable.key is readable by every user"))
      << open_key.warnings()[0];
  const tls::server_context closed_key{{{{ca().path("server.pem"), ca().path("server.key")}}}};
  EXPECT_TRUE(closed_key.warnings().empty());
}

TEST(proxy_tls_config, config_shows_paths_never_keys) {
  nginx_server backend;
  proxy_fixture proxy{tls_listener_yaml(backend.port(), server_pair()), nullptr};
  const auto config =
      run("curl -sS http://127.0.0.1:" + std::to_string(proxy.admin_port()) + "/config");
  EXPECT_TRUE(has(config, ca().path("server.key"))) << config;
  EXPECT_FALSE(has(config, "PRIVATE KEY")) << config;
}

} // namespace
} // namespace tether::testing
