// Decoding gzip and deflate bodies (tether/http/content_coding.hpp). The inputs are made here
// with zlib's own deflate, in each of the three wrappers a server may send.
#include "tether/http/content_coding.hpp"

#include <string>

#include <gtest/gtest.h>
#include <zlib.h>

#include "tether/http/error.hpp"

namespace tether::http {
namespace {

constexpr int gzip_wrapper = 16 + MAX_WBITS;
constexpr int zlib_wrapper = MAX_WBITS;
constexpr int raw_deflate = -MAX_WBITS;

std::string compressed(std::string_view text, int window_bits) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY),
            Z_OK);
  std::string out(deflateBound(&z, static_cast<uLong>(text.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

const std::string text = [] {
  std::string t;
  for (int i = 0; i < 2000; ++i) {
    t += "line " + std::to_string(i) + " of a body that compresses well\n";
  }
  return t;
}();

TEST(content_coding, decodes_gzip_and_deflate_with_and_without_its_zlib_wrapper) {
  for (const auto& [coding, bits] : {std::pair{"gzip", gzip_wrapper},
                                     {"x-gzip", gzip_wrapper},
                                     {"deflate", zlib_wrapper},
                                     {"deflate", raw_deflate},
                                     {"GZIP", gzip_wrapper}}) {
    std::string body = compressed(text, bits);
    ASSERT_LT(body.size(), text.size() / 10);
    EXPECT_FALSE(decode_body(body, coding, 1 << 20)) << coding << " " << bits;
    EXPECT_EQ(body, text) << coding << " " << bits;
  }
}

TEST(content_coding, undoes_several_codings_last_applied_first) {
  std::string body = compressed(compressed(text, zlib_wrapper), gzip_wrapper);
  EXPECT_FALSE(decode_body(body, "deflate, identity,gzip", 1 << 20));
  EXPECT_EQ(body, text);
  std::string plain = "as it came";
  EXPECT_FALSE(decode_body(plain, "identity", 1 << 20));
  EXPECT_EQ(plain, "as it came");
}

TEST(content_coding, reads_every_member_of_a_gzip_body) {
  std::string body = compressed("first, ", gzip_wrapper) + compressed("second", gzip_wrapper);
  EXPECT_FALSE(decode_body(body, "gzip", 1 << 20));
  EXPECT_EQ(body, "first, second");
  std::string deflated = compressed("one", zlib_wrapper) + compressed("two", zlib_wrapper);
  EXPECT_EQ(decode_body(deflated, "deflate", 1 << 20), errc::bad_content_coding)
      << "deflate has one stream";
}

TEST(content_coding, refuses_more_than_five_layers) {
  std::string body = "x";
  for (std::size_t i = 0; i < max_codings + 1; ++i) {
    body = compressed(body, gzip_wrapper);
  }
  std::string six = body;
  EXPECT_EQ(decode_body(six, "gzip, gzip, gzip, gzip, gzip, gzip", 1 << 20),
            errc::bad_content_coding);
  std::string five = compressed("x", gzip_wrapper);
  for (std::size_t i = 1; i < max_codings; ++i) {
    five = compressed(five, gzip_wrapper);
  }
  EXPECT_FALSE(decode_body(five, "gzip,gzip,gzip,gzip,gzip", 1 << 20));
  EXPECT_EQ(five, "x");
}

TEST(content_coding, takes_only_the_codings_it_decodes) {
  EXPECT_TRUE(decodable("gzip"));
  EXPECT_TRUE(decodable("deflate, gzip"));
  EXPECT_TRUE(decodable(" identity "));
  EXPECT_FALSE(decodable("br"));
  EXPECT_FALSE(decodable("gzip, zstd"));
  std::string body = "whatever";
  EXPECT_EQ(decode_body(body, "br", 1 << 20), errc::bad_content_coding);
  EXPECT_EQ(body, "whatever");
}

TEST(content_coding, refuses_corrupt_truncated_and_trailing_data_and_keeps_the_body) {
  const std::string good = compressed(text, gzip_wrapper);
  std::string corrupt = good;
  corrupt[corrupt.size() / 2] = static_cast<char>(corrupt[corrupt.size() / 2] ^ 0x55);
  std::string truncated = good.substr(0, good.size() - 10);
  std::string trailing = good + "junk";
  std::string not_gzip = "plain text, labelled gzip";
  for (std::string* body : {&corrupt, &truncated, &trailing, &not_gzip}) {
    const std::string before = *body;
    EXPECT_EQ(decode_body(*body, "gzip", 1 << 20), errc::bad_content_coding) << before.size();
    EXPECT_EQ(*body, before);
  }
  std::string deflate_junk = "not deflate in any wrapper";
  EXPECT_EQ(decode_body(deflate_junk, "deflate", 1 << 20), errc::bad_content_coding);
}

TEST(content_coding, a_body_that_inflates_past_the_limit_is_refused) {
  // 8 MiB of zeros in about 8 KiB: a decompression bomb against a 1 MiB limit.
  const std::string zeros(8 << 20, '\0');
  std::string bomb = compressed(zeros, gzip_wrapper);
  ASSERT_LT(bomb.size(), 16U << 10);
  const std::string before = bomb;
  EXPECT_EQ(decode_body(bomb, "gzip", 1 << 20), errc::body_too_large);
  EXPECT_EQ(bomb, before);
  std::string fits = compressed(zeros, gzip_wrapper);
  EXPECT_FALSE(decode_body(fits, "gzip", 8 << 20)) << "exactly the limit is allowed";
  EXPECT_EQ(fits.size(), zeros.size());
}

} // namespace
} // namespace tether::http
