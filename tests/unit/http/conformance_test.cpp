// Conformance of tether's HTTP/1.1 parser with the llhttp test corpus (../shared/corpus/llhttp,
// or the directory TETHER_LLHTTP_CORPUS names). Every case is parsed twice, whole and one byte
// at a time; invalid cases must be rejected, valid ones must give llhttp's method, URL, headers
// and body, and lenient-mode cases must be rejected (tether is strict). Cases where tether
// differs on purpose are listed below with the reason.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tether/http/parser.hpp"

namespace tether::http {
namespace {

namespace fs = std::filesystem;

struct parsed_message {
  std::string method, url, reason;
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool complete = false;
  bool operator==(const parsed_message&) const = default;
};

struct collector final : parser_handler {
  std::vector<parsed_message> messages;
  parser* owner = nullptr;
  bool head_responses = false; // every response answers a HEAD request (llhttp's skipBody)
  void on_head(const message_head& h) override {
    parsed_message m;
    m.method = std::string{h.method};
    m.url = std::string{h.target};
    m.status = h.status;
    for (const auto& x : h.headers) {
      m.headers.emplace_back(std::string{x.name}, std::string{x.value});
    }
    messages.push_back(std::move(m));
  }
  void on_body(std::string_view piece) override { messages.back().body += piece; }
  void on_message_complete() override {
    messages.back().complete = true;
    if (head_responses) {
      owner->expect_head_response();
    }
  }
};

struct outcome {
  bool error = false;
  std::string error_text;
  std::vector<parsed_message> messages;
};

outcome parse(parser::kind k, const std::string& bytes, bool byte_by_byte, bool head_responses) {
  parser p{k};
  collector c;
  c.owner = &p;
  c.head_responses = head_responses;
  if (head_responses) {
    p.expect_head_response();
  }
  outcome o;
  if (byte_by_byte) {
    for (std::size_t i = 0; i < bytes.size() && !p.error() && !p.upgraded(); ++i) {
      std::string one(1, bytes[i]); // a fresh buffer each time: views must not outlive a feed
      p.feed(one, c);
    }
  } else {
    p.feed(bytes, c);
  }
  o.error = static_cast<bool>(p.error());
  o.error_text = p.error().message();
  o.messages = std::move(c.messages);
  return o;
}

// --- reading the corpus -------------------------------------------------------------------

std::string unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out += s[i];
      continue;
    }
    const char c = s[++i];
    switch (c) {
    case 'r':
      out += '\r';
      break;
    case 'n':
      out += '\n';
      break;
    case 't':
      out += '\t';
      break;
    case 'f':
      out += '\f';
      break;
    case 'x':
      out += static_cast<char>(std::stoi(std::string{s.substr(i + 1, 2)}, nullptr, 16));
      i += 2;
      break;
    default:
      if (c >= '0' && c <= '7') {
        std::size_t j = i;
        int v = 0;
        while (j < s.size() && j < i + 3 && s[j] >= '0' && s[j] <= '7') {
          v = v * 8 + (s[j] - '0');
          ++j;
        }
        out += static_cast<char>(v);
        i = j - 1;
      } else {
        out += c;
      }
    }
  }
  return out;
}

// llhttp's runner: drop the final newline, join backslash-continued lines, LF -> CRLF, escapes.
std::string message_bytes(std::string block) {
  if (!block.empty() && block.back() == '\n') {
    block.pop_back();
  }
  std::string joined;
  for (std::size_t i = 0; i < block.size(); ++i) {
    if (block[i] == '\\' && i + 1 < block.size() && block[i + 1] == '\n') {
      ++i;
      continue;
    }
    joined += block[i];
  }
  std::string crlf;
  for (const char c : joined) {
    if (c == '\n') {
      crlf += "\r\n";
    } else {
      crlf += c;
    }
  }
  return unescape(crlf);
}

struct expectation {
  bool error = false;
  std::string error_reason;
  std::vector<parsed_message> messages;
};

expectation read_log(const std::string& log) {
  expectation e;
  std::istringstream in{log};
  std::string line;
  parsed_message* m = nullptr;
  std::string last_kind;
  const auto span = [&](const std::string& l, std::string& kind) -> std::optional<std::string> {
    const auto open = l.find("span[");
    if (open == std::string::npos) {
      return std::nullopt;
    }
    const auto close = l.find(']', open);
    kind = l.substr(open + 5, close - open - 5);
    // A lone CR or LF is written bare: span[body]=lf
    if (l.compare(close + 1, 3, "=lf") == 0) {
      return std::string{"\n"};
    }
    if (l.compare(close + 1, 3, "=cr") == 0) {
      return std::string{"\r"};
    }
    const auto q1 = l.find("=\"", close);
    const auto q2 = l.rfind('"');
    return unescape(l.substr(q1 + 2, q2 - q1 - 2));
  };
  while (std::getline(in, line)) {
    if (line.find("message begin") != std::string::npos) {
      e.messages.emplace_back();
      m = &e.messages.back();
      last_kind.clear();
      continue;
    }
    if (line.find("error code=") != std::string::npos) {
      e.error = true;
      const auto r = line.find("reason=");
      e.error_reason = r == std::string::npos ? line : line.substr(r + 7);
      continue;
    }
    if (m == nullptr) {
      continue;
    }
    if (line.find("message complete") != std::string::npos) {
      m->complete = true;
      continue;
    }
    std::string kind;
    const auto value = span(line, kind);
    if (!value) {
      continue;
    }
    if (kind == "method") {
      m->method += *value;
    } else if (kind == "url") {
      m->url += *value;
    } else if (kind == "status") {
      m->reason += *value;
    } else if (kind == "header_field") {
      if (last_kind != "header_field") {
        m->headers.emplace_back();
      }
      m->headers.back().first += *value;
    } else if (kind == "header_value") {
      if (m->headers.empty()) {
        m->headers.emplace_back();
      }
      m->headers.back().second += *value;
    } else if (kind == "body") {
      m->body += *value;
    }
    last_kind = kind;
  }
  return e;
}

struct corpus_case {
  std::string name; // file:line
  std::string type; // request, response, request-lenient-...
  std::string bytes;
  expectation expected;
  bool skip = false;
  bool skip_body = false;
};

std::vector<corpus_case> read_corpus(const fs::path& root) {
  std::vector<corpus_case> cases;
  for (const char* dir : {"request", "response"}) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator{root / dir}) {
      if (entry.path().extension() == ".md") {
        files.push_back(entry.path());
      }
    }
    std::sort(files.begin(), files.end());
    for (const auto& file : files) {
      std::ifstream in{file};
      std::string line;
      int number = 0;
      std::optional<corpus_case> current;
      std::string block;
      enum { outside, in_http, in_log } where = outside;
      while (std::getline(in, line)) {
        ++number;
        if (where == outside && line.rfind("<!-- meta=", 0) == 0) {
          current = corpus_case{};
          current->name =
              std::string{dir} + "/" + file.filename().string() + ":" + std::to_string(number);
          const auto t = line.find("\"type\": \"");
          current->type = line.substr(t + 9, line.find('"', t + 9) - t - 9);
          current->skip =
              line.find("noScan") != std::string::npos || line.find("pause") != std::string::npos;
          current->skip_body = line.find("skipBody") != std::string::npos;
          // A server cannot skip a request's body: that mode tests llhttp's callback API.
          current->skip = current->skip || (current->skip_body && std::string{dir} == "request");
        } else if (where == outside && current && line == "```http") {
          where = in_http;
          block.clear();
        } else if (where == outside && current && line == "```log") {
          where = in_log;
          block.clear();
        } else if (where != outside && line == "```") {
          if (where == in_http) {
            current->bytes = message_bytes(block);
          } else {
            current->expected = read_log(block);
            cases.push_back(std::move(*current));
            current.reset();
          }
          where = outside;
        } else if (where != outside) {
          block += line;
          block += '\n';
        }
      }
    }
  }
  return cases;
}

std::optional<fs::path> corpus_root() {
  if (const char* env = std::getenv("TETHER_LLHTTP_CORPUS")) {
    return fs::path{env};
  }
  for (fs::path p = fs::current_path(); p.has_parent_path() && p != p.parent_path();
       p = p.parent_path()) {
    if (fs::exists(p / "shared" / "corpus" / "llhttp" / "request")) {
      return p / "shared" / "corpus" / "llhttp";
    }
    if (fs::exists(p / ".." / "shared" / "corpus" / "llhttp" / "request")) {
      return fs::canonical(p / ".." / "shared" / "corpus" / "llhttp");
    }
  }
  return std::nullopt;
}

// Cases where tether deliberately differs from llhttp's default mode, with the reason.
const std::map<std::string, std::string>& known_differences() {
  static const std::map<std::string, std::string> list{
      {"request/method.md:404",
       "RTSP/1.0, not HTTP: llhttp parses RTSP as well; tether speaks HTTP only"},
      {"request/method.md:432",
       "ANNOUNCE is an RTSP method: http-parser 2.9 knows a fixed set of HTTP methods and "
       "answers others 501 Not Implemented, as RFC 9110 allows for an unrecognised method"},
      {"request/method.md:484",
       "QUERY is a draft method http-parser 2.9 does not know: 501 Not Implemented"},
      {"request/method.md:374",
       "ICE/1.0 (Icecast), not HTTP: the protocol name must be HTTP/ exactly"},
      {"request/sample.md:316",
       "an HTTP/0.9 request line (no version): tether speaks HTTP/1.0 and 1.1 only"},
      {"request/transfer-encoding.md:753",
       "deflate, chunked: a request body in a coding besides chunked is answered 501 (RFC 9112 "
       "6.1); a proxy would otherwise pass on a body it cannot read"},
      {"request/transfer-encoding.md:795",
       "deflate then chunked in two fields: the same coding list, the same 501"},
      {"request/transfer-encoding.md:188",
       "trailer fields after a chunked body are checked but not reported with the head's "
       "headers (llhttp reports them in the same callbacks)"},
  };
  return list;
}

TEST(llhttp_conformance, every_case_agrees_or_is_listed_with_its_reason) {
  const auto root = corpus_root();
  if (!root) {
    GTEST_SKIP() << "llhttp corpus not found (looked for ../shared/corpus/llhttp from the build "
                    "directory up; set TETHER_LLHTTP_CORPUS to point at it)";
  }
  const auto cases = read_corpus(*root);
  ASSERT_GT(cases.size(), 200U) << "the corpus reader found too few cases in " << *root;
  int agreed = 0, skipped = 0, listed = 0;
  std::vector<std::string> differ;
  for (const auto& c : cases) {
    if (c.skip) {
      ++skipped;
      continue;
    }
    const auto k =
        c.type.rfind("response", 0) == 0 ? parser::kind::response : parser::kind::request;
    const bool lenient = c.type.find("lenient") != std::string::npos;
    const auto whole = parse(k, c.bytes, false, c.skip_body);
    const auto bytewise = parse(k, c.bytes, true, c.skip_body);
    // llhttp reports an upgrade as a pause "error"; for tether it is the start of a tunnel.
    const bool expects_error =
        c.expected.error &&
        c.expected.error_reason.find("Pause on CONNECT/Upgrade") == std::string::npos;
    std::string problem;
    if (whole.error != bytewise.error || whole.messages != bytewise.messages) {
      problem = "whole and byte-by-byte parses differ";
    } else if (expects_error || lenient) {
      if (!whole.error) {
        problem = "accepted; llhttp: " +
                  (lenient ? std::string{"lenient-only"} : c.expected.error_reason);
      }
    } else {
      // Valid: every message llhttp completed must match, and no error before them.
      std::size_t complete = 0;
      for (const auto& m : c.expected.messages) {
        complete += m.complete ? 1 : 0;
      }
      if (whole.error && complete > 0 &&
          std::count_if(whole.messages.begin(), whole.messages.end(),
                        [](const auto& m) { return m.complete; }) < static_cast<long>(complete)) {
        problem = "rejected (" + whole.error_text + ")";
      }
      for (std::size_t i = 0; problem.empty() && i < c.expected.messages.size(); ++i) {
        const auto& want = c.expected.messages[i];
        if (!want.complete) {
          continue;
        }
        if (i >= whole.messages.size()) {
          problem = "message " + std::to_string(i) + " missing";
          break;
        }
        const auto& got = whole.messages[i];
        if (k == parser::kind::request && (got.method != want.method || got.url != want.url)) {
          problem = "request line differs: " + got.method + " " + got.url;
        } else if (got.headers.size() != want.headers.size()) {
          problem = "header count differs";
        } else if (got.body != want.body) {
          problem = "body differs: " + std::to_string(got.body.size()) + " bytes, llhttp " +
                    std::to_string(want.body.size());
        } else {
          for (std::size_t h = 0; h < got.headers.size(); ++h) {
            std::string want_value = want.headers[h].second;
            while (!want_value.empty() && (want_value.back() == ' ' || want_value.back() == '\t')) {
              want_value.pop_back();
            }
            if (got.headers[h].first != want.headers[h].first ||
                got.headers[h].second != want_value) {
              problem = "header " + got.headers[h].first + " differs";
              break;
            }
          }
        }
      }
    }
    if (problem.empty()) {
      ++agreed;
    } else if (known_differences().count(c.name) != 0) {
      ++listed;
    } else {
      differ.push_back(c.name + " [" + c.type + "]: " + problem);
    }
  }
  std::printf("llhttp corpus: %zu cases, %d agree, %d listed differences, %d skipped (callback "
              "API), %zu unexplained\n",
              cases.size(), agreed, listed, skipped, differ.size());
  for (const auto& d : differ) {
    ADD_FAILURE() << d;
  }
}

} // namespace
} // namespace tether::http
