// Fuzzes tether's HTTP/1.1 parser (requests and responses), and what a server reads of a
// request's head next (its target's form, its Host rules: request_target.hpp). The first byte picks
// the kind and how the input is split across feeds; the rest is the bytes a peer sent. Each input
// is parsed twice, whole and split into pieces each in a fresh buffer, and both parses must agree
// on everything (error, heads, bodies): a header view that outlived its feed, or a check that
// depends on where a read ended, shows up as a difference or as an ASan report.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tether/http/parser.hpp"
#include "tether/http/request_target.hpp"

namespace {

using namespace tether::http;

struct transcript final : parser_handler {
  std::string log;
  void on_head(const message_head& h) override {
    log += "H:" + std::string{h.method} + " " + std::string{h.target} + " " +
           std::to_string(h.status) + " " + std::string{h.reason} + "\n";
    for (const auto& x : h.headers) {
      log += std::string{x.name} + ":" + std::string{x.value} + "\n";
    }
    log += "F" + std::to_string(static_cast<int>(h.framing)) + " L" +
           std::to_string(h.content_length) + " K" + std::to_string(h.keep_alive) + "\n";
    if (!h.method.empty()) {
      request_target target;
      std::string_view authority;
      auto ec = read_request_target(h.method, h.target, target);
      if (!ec) {
        ec = check_host(h.headers, h.version_minor, target, authority);
      }
      log += "T" + std::to_string(static_cast<int>(target.form)) + " " + std::string{authority} +
             " " + std::string{host_of(authority)} + " " + std::string{target.path_and_query} +
             " " + ec.message() + "\n";
    }
  }
  void on_body(std::string_view piece) override { log += piece; }
  void on_message_complete() override { log += "\nC\n"; }
};

std::string run(parser::kind k, const std::string& input, std::size_t split) {
  parser p{k};
  transcript t;
  if (split == 0) {
    p.feed(input, t);
  } else {
    for (std::size_t i = 0; i < input.size() && !p.error() && !p.upgraded(); i += split) {
      const std::string piece = input.substr(i, split); // a fresh buffer each time
      p.feed(piece, t);
    }
  }
  if (!p.error() && !p.upgraded()) {
    p.finish(t);
  }
  return t.log + "\nE:" + p.error().message();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) {
    return 0;
  }
  const auto k = (data[0] & 1U) != 0 ? parser::kind::response : parser::kind::request;
  const std::size_t split = 1U + (data[0] >> 1U) % 16U;
  const std::string input{reinterpret_cast<const char*>(data + 1), size - 1};
  const std::string whole = run(k, input, 0);
  const std::string pieces = run(k, input, split);
  if (whole != pieces) {
    std::fprintf(stderr, "whole and split (%zu) parses differ:\n--- whole\n%s\n--- split\n%s\n",
                 split, whole.c_str(), pieces.c_str());
    std::abort();
  }
  return 0;
}
