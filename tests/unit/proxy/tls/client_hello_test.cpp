// Unit tests for the ClientHello SNI parser, on real ClientHellos that an OpenSSL client writes into a
// memory BIO: whole, cut short, re-split over several records by hand, and with length fields that lie.
// Inputs are copied into heap blocks of their exact size, so under ASan any read past the end shows.
#include "proxy/tls/client_hello.h"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace berth::proxy::tls {
namespace {

using Bytes = std::vector<uint8_t>;

// ---- real ClientHellos ----

struct HelloSpec {
  std::string sni;                // empty: no server_name extension
  bool tls13_only = false;
  std::vector<std::string> alpn;  // protocols offered, in order
};

// The bytes an OpenSSL client sends first: SSL_connect once over memory BIOs, then drain the wbio.
Bytes client_hello(const HelloSpec& spec) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()), &SSL_CTX_free);
  if (!ctx) {
    ADD_FAILURE() << "SSL_CTX_new";
    return {};
  }
  if (spec.tls13_only) SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), &SSL_free);
  if (!spec.sni.empty()) {
    EXPECT_EQ(SSL_set_tlsext_host_name(ssl.get(), spec.sni.c_str()), 1);
  }
  if (!spec.alpn.empty()) {
    std::string wire;
    for (const auto& p : spec.alpn) wire += char(p.size()) + p;
    EXPECT_EQ(SSL_set_alpn_protos(ssl.get(), reinterpret_cast<const unsigned char*>(wire.data()),
                                  unsigned(wire.size())),
              0);  // 0 is success here
  }
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), rbio, wbio);  // the SSL owns both now
  int rc = SSL_connect(ssl.get());
  EXPECT_EQ(rc, -1);
  EXPECT_EQ(SSL_get_error(ssl.get(), rc), SSL_ERROR_WANT_READ);
  Bytes out(BIO_ctrl_pending(wbio));
  if (out.empty()) {
    ADD_FAILURE() << "the client wrote no ClientHello";
  } else {
    EXPECT_EQ(BIO_read(wbio, out.data(), int(out.size())), int(out.size()));
  }
  return out;
}

Bytes client_hello(std::string sni) {
  HelloSpec spec;
  spec.sni = std::move(sni);
  return client_hello(spec);
}

// ---- taking hellos apart ----

uint32_t get(const Bytes& b, size_t at, size_t width) {
  uint32_t v = 0;
  for (size_t i = 0; i < width; ++i) v = (v << 8) | b.at(at + i);
  return v;
}

void put(Bytes& b, size_t at, size_t width, uint32_t v) {
  for (size_t i = width; i-- > 0; v >>= 8) b.at(at + i) = uint8_t(v);
}

size_t record_count(const Bytes& b) {
  size_t n = 0;
  for (size_t pos = 0; pos + 5 <= b.size(); pos += 5 + get(b, pos + 3, 2)) ++n;
  return n;
}

// The handshake message carried by the records of `b` (their payloads joined).
Bytes handshake_message(const Bytes& b) {
  Bytes m;
  for (size_t pos = 0; pos + 5 <= b.size(); pos += 5 + get(b, pos + 3, 2))
    m.insert(m.end(), b.begin() + long(pos + 5), b.begin() + long(pos + 5 + get(b, pos + 3, 2)));
  return m;
}

// The same handshake message in new records: payloads of `sizes` bytes, the last record takes the rest.
Bytes resplit(const Bytes& hello, const std::vector<size_t>& sizes) {
  Bytes m = handshake_message(hello), out;
  size_t pos = 0;
  for (size_t i = 0; i <= sizes.size() && pos < m.size(); ++i) {
    size_t n = i < sizes.size() ? sizes[i] : m.size() - pos;
    out.insert(out.end(), {22, hello.at(1), hello.at(2), uint8_t(n >> 8), uint8_t(n)});
    out.insert(out.end(), m.begin() + long(pos), m.begin() + long(pos + n));
    pos += n;
  }
  return out;
}

// Where the length fields of a one-record hello are (offsets from the start of the record).
struct Layout {
  size_t record_length = 3;      // 2 bytes
  size_t hello_length = 6;       // 3 bytes
  size_t body = 9;
  size_t session_id_length = 0;  // 1 byte
  size_t cipher_suites_length = 0;
  size_t extensions_length = 0;  // 2 bytes
  size_t end = 0;                // end of the hello
  // The server_name extension, when there is one.
  size_t sni_ext_length = 0;     // its extension_data length, 2 bytes
  size_t sni_list_length = 0;    // ServerNameList length, 2 bytes
  size_t sni_name_length = 0;    // the first HostName's length, 2 bytes
};

Layout layout_of(const Bytes& h) {
  Layout l;
  l.end = l.body + get(h, l.hello_length, 3);
  l.session_id_length = l.body + 2 + 32;
  l.cipher_suites_length = l.session_id_length + 1 + get(h, l.session_id_length, 1);
  size_t compression = l.cipher_suites_length + 2 + get(h, l.cipher_suites_length, 2);
  l.extensions_length = compression + 1 + get(h, compression, 1);
  for (size_t pos = l.extensions_length + 2; pos + 4 <= l.end; pos += 4 + get(h, pos + 2, 2)) {
    if (get(h, pos, 2) != 0) continue;
    l.sni_ext_length = pos + 2;
    l.sni_list_length = pos + 4;
    l.sni_name_length = pos + 7;  // after the 1-byte name_type
  }
  return l;
}

// ---- running the parser ----

struct Parsed {
  HelloStatus status;
  std::string name;
};

// Parses the first `n` bytes of `b` from a heap block of exactly `n` bytes.
Parsed parse(const Bytes& b, size_t n) {
  std::unique_ptr<uint8_t[]> exact(new uint8_t[n]);
  std::copy(b.begin(), b.begin() + long(n), exact.get());
  Parsed p{HelloStatus::kMalformed, "stale"};
  p.status = parse_client_hello(std::span<const uint8_t>(exact.get(), n), p.name);
  return p;
}

Parsed parse(const Bytes& b) { return parse(b, b.size()); }

Parsed parse(std::string_view text) { return parse(Bytes(text.begin(), text.end())); }

}  // namespace

// gtest prints statuses by name (found by ADL, so in the enum's namespace; static keeps it in this file).
static std::string_view name_of(HelloStatus s) {
  switch (s) {
    case HelloStatus::kNotTls: return "kNotTls";
    case HelloStatus::kNeedMore: return "kNeedMore";
    case HelloStatus::kDone: return "kDone";
    case HelloStatus::kMalformed: return "kMalformed";
  }
  return "?";
}

static void PrintTo(HelloStatus s, std::ostream* os) { *os << name_of(s); }

namespace {

// Every proper prefix asks for more; the whole thing gives `name`.
void expect_needs_more_until_whole(const Bytes& b, const std::string& name) {
  for (size_t n = 0; n < b.size(); ++n) {
    Parsed p = parse(b, n);
    ASSERT_EQ(p.status, HelloStatus::kNeedMore) << "prefix of " << n << " of " << b.size() << " bytes";
  }
  Parsed p = parse(b);
  EXPECT_EQ(p.status, HelloStatus::kDone);
  EXPECT_EQ(p.name, name);
}

bool undecided_or_refused(HelloStatus s) { return s == HelloStatus::kNeedMore || s == HelloStatus::kMalformed; }

// ---- the server name ----

TEST(ClientHello, ReadsTheServerName) {
  Bytes h = client_hello("example.com");
  ASSERT_EQ(record_count(h), 1u);
  Parsed p = parse(h);
  EXPECT_EQ(p.status, HelloStatus::kDone);
  EXPECT_EQ(p.name, "example.com");
}

TEST(ClientHello, SaysWhetherAcmeTlsIsOffered) {
  auto offers_acme = [](std::vector<std::string> alpn) {
    Bytes h = client_hello(HelloSpec{"a.test", false, std::move(alpn)});
    std::string name;
    bool acme = true;
    EXPECT_EQ(parse_client_hello(h, name, &acme), HelloStatus::kDone);
    EXPECT_EQ(name, "a.test");
    return acme;
  };
  EXPECT_TRUE(offers_acme({"acme-tls/1"}));  // an ACME CA validating TLS-ALPN-01
  EXPECT_TRUE(offers_acme({"h2", "acme-tls/1"}));
  EXPECT_FALSE(offers_acme({"h2", "http/1.1"}));
  EXPECT_FALSE(offers_acme({"acme-tls/2"}));
  EXPECT_FALSE(offers_acme({}));
}

TEST(ClientHello, ServerNameIsLowerCasedWithoutItsTrailingDot) {
  Parsed p = parse(client_hello("WWW.Example.COM."));
  EXPECT_EQ(p.status, HelloStatus::kDone);
  EXPECT_EQ(p.name, "www.example.com");
  p = parse(client_hello("Api.Example.Org"));
  EXPECT_EQ(p.status, HelloStatus::kDone);
  EXPECT_EQ(p.name, "api.example.org");
}

TEST(ClientHello, NoServerNameIsDoneWithAnEmptyName) {
  Bytes h = client_hello(HelloSpec{});
  Parsed p = parse(h);  // starts from a stale name: it must be cleared
  EXPECT_EQ(p.status, HelloStatus::kDone);
  EXPECT_EQ(p.name, "");
}

TEST(ClientHello, HelloWithoutAnyExtensionsIsDone) {
  // A hello that ends after legacy_compression_methods (allowed before TLS 1.3): cut a real one there.
  Bytes h = client_hello("example.com");
  Layout l = layout_of(h);
  h.resize(l.extensions_length);
  put(h, l.record_length, 2, uint32_t(h.size() - 5));
  put(h, l.hello_length, 3, uint32_t(h.size() - 9));
  Parsed p = parse(h);
  EXPECT_EQ(p.status, HelloStatus::kDone);
  EXPECT_EQ(p.name, "");
}

TEST(ClientHello, BytesAfterTheHelloAreIgnored) {
  Bytes h = client_hello("example.com");
  Bytes more = h;
  more.insert(more.end(), {23, 3, 3, 0, 5, 'x', 'y', 'z', 'z', 'y'});
  Parsed p = parse(more);
  EXPECT_EQ(p.status, HelloStatus::kDone);
  EXPECT_EQ(p.name, "example.com");
  more = h;
  more.insert(more.end(), {22, 3});  // the start of a record that is not there yet
  EXPECT_EQ(parse(more).status, HelloStatus::kDone);
}

// ---- partial and split hellos ----

TEST(ClientHello, EveryPrefixOfAHelloNeedsMore) {
  expect_needs_more_until_whole(client_hello("prefix.example.com"), "prefix.example.com");
  expect_needs_more_until_whole(client_hello(HelloSpec{}), "");
}

TEST(ClientHello, HelloSplitOverTwoRecordsAtEveryPoint) {
  Bytes h = client_hello("Split.Example.com");
  size_t message = handshake_message(h).size();
  for (size_t first = 1; first < message; ++first) {
    Bytes two = resplit(h, {first});
    ASSERT_EQ(record_count(two), 2u);
    Parsed p = parse(two);
    ASSERT_EQ(p.status, HelloStatus::kDone) << "first record of " << first << " bytes";
    ASSERT_EQ(p.name, "split.example.com") << "first record of " << first << " bytes";
  }
}

TEST(ClientHello, HelloSplitOverSeveralRecordsNeedsMoreUntilTheLast) {
  Bytes h = client_hello("several.example.com");
  // Inside the 4-byte handshake header, inside the random, at the extensions, around the name.
  Layout l = layout_of(h);
  size_t name = l.sni_name_length - l.body + 4;  // offset in the handshake message
  for (const auto& sizes : std::vector<std::vector<size_t>>{
           {2, 1}, {1, 1, 1}, {3, 40}, {20, 20}, {name, 5}, {name + 3, 1}, {l.extensions_length - 5, 2}}) {
    Bytes split = resplit(h, sizes);
    ASSERT_EQ(record_count(split), sizes.size() + 1);
    expect_needs_more_until_whole(split, "several.example.com");
  }
}

TEST(ClientHello, RecordOfAnotherTypeInsideTheHelloIsMalformed) {
  Bytes split = resplit(client_hello("example.com"), {50});
  split.at(5 + 50) = 23;  // the second record: application_data instead of handshake
  EXPECT_EQ(parse(split).status, HelloStatus::kMalformed);
}

TEST(ClientHello, OpenSslsOwnSplitOfAHelloOverSixteenKilobytesParses) {
  // ALPN protocols enough for a hello longer than one record can hold: OpenSSL writes two records.
  HelloSpec spec;
  spec.sni = "Big.Example.com";
  for (int i = 0; i < 100; ++i) spec.alpn.push_back("proto-" + std::to_string(i) + std::string(190, 'p'));
  Bytes h = client_hello(spec);
  ASSERT_GT(h.size(), 16384u + 5);
  ASSERT_GE(record_count(h), 2u);
  Parsed p = parse(h);
  EXPECT_EQ(p.status, HelloStatus::kDone);
  EXPECT_EQ(p.name, "big.example.com");
  EXPECT_EQ(parse(h, 16384 + 5).status, HelloStatus::kNeedMore);  // first record only
  EXPECT_EQ(parse(h, h.size() - 1).status, HelloStatus::kNeedMore);
}

TEST(ClientHello, Tls13OnlyHelloWithALongAlpnListParses) {
  HelloSpec spec;
  spec.sni = "tls13.example.com";
  spec.tls13_only = true;
  for (int i = 0; i < 120; ++i) spec.alpn.push_back("h2-draft-" + std::to_string(i));
  Bytes h = client_hello(spec);
  ASSERT_GT(h.size(), 1500u);  // more than one TCP segment
  EXPECT_EQ(record_count(h), 1u);
  expect_needs_more_until_whole(h, "tls13.example.com");
}

// ---- not TLS, or not a ClientHello ----

TEST(ClientHello, PlainHttpIsNotTls) {
  EXPECT_EQ(parse(std::string_view("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")).status, HelloStatus::kNotTls);
  EXPECT_EQ(parse(std::string_view("G")).status, HelloStatus::kNotTls);  // one byte is enough to tell
  EXPECT_EQ(parse(std::string_view("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")).status, HelloStatus::kNotTls);
}

TEST(ClientHello, NothingYetNeedsMore) { EXPECT_EQ(parse(Bytes{}).status, HelloStatus::kNeedMore); }

TEST(ClientHello, AlertRecordIsNotTls) {
  EXPECT_EQ(parse(Bytes{21, 3, 3, 0, 2, 2, 40}).status, HelloStatus::kNotTls);
  EXPECT_EQ(parse(Bytes{21}).status, HelloStatus::kNotTls);
}

TEST(ClientHello, HandshakeRecordThatIsNotAClientHelloIsMalformed) {
  Bytes h = client_hello("example.com");
  h.at(5) = 2;  // server_hello
  EXPECT_EQ(parse(h).status, HelloStatus::kMalformed);
}

// ---- lengths that lie ----

TEST(ClientHello, RecordLengthsThatOverrunNeverReadPastTheEnd) {
  Bytes h = client_hello("example.com");
  Layout l = layout_of(h);
  for (uint32_t length : {uint32_t(h.size() - 5 + 1), uint32_t(16384), uint32_t(16384 + 2048 + 1), uint32_t(0xffff)}) {
    Bytes bad = h;
    put(bad, l.record_length, 2, length);
    EXPECT_TRUE(undecided_or_refused(parse(bad).status)) << "record length " << length;
  }
  Bytes empty = h;
  put(empty, l.record_length, 2, 0);
  EXPECT_TRUE(undecided_or_refused(parse(empty).status));
}

TEST(ClientHello, HelloLengthsThatOverrunNeverReadPastTheEnd) {
  Bytes h = client_hello("example.com");
  Layout l = layout_of(h);
  for (uint32_t length : {uint32_t(l.end - l.body + 1), uint32_t(0x10000), uint32_t(0xffffff)}) {
    Bytes bad = h;
    put(bad, l.hello_length, 3, length);
    EXPECT_TRUE(undecided_or_refused(parse(bad).status)) << "hello length " << length;
  }
}

TEST(ClientHello, HelloLengthTooShortForItsBodyIsMalformed) {
  Bytes h = client_hello("example.com");
  Layout l = layout_of(h);
  for (uint32_t length : {0u, 10u, uint32_t(l.cipher_suites_length - l.body + 1)}) {
    Bytes bad = h;
    put(bad, l.hello_length, 3, length);
    EXPECT_EQ(parse(bad).status, HelloStatus::kMalformed) << "hello length " << length;
  }
}

// Each field is made one byte longer than what holds it: the bytes are all there (the hello goes on),
// so a reader that only checks against the end of the input would read on; it must stop at its parent.
TEST(ClientHello, InnerLengthsThatOverrunTheirParentAreMalformed) {
  Bytes h = client_hello("inner.example.com");
  Layout l = layout_of(h);
  ASSERT_NE(l.sni_ext_length, 0u);
  struct Field {
    const char* what;
    size_t at;
    uint32_t value;
  };
  for (const Field& f : std::vector<Field>{
           {"cipher_suites", l.cipher_suites_length, 0xffff},
           {"extensions", l.extensions_length, uint32_t(l.end - l.extensions_length - 2 + 1)},
           {"extensions", l.extensions_length, 0xffff},
           {"server_name extension", l.sni_ext_length, uint32_t(l.end - l.sni_ext_length - 2 + 1)},
           {"server_name_list", l.sni_list_length, get(h, l.sni_ext_length, 2) - 2 + 1},
           {"host_name", l.sni_name_length, get(h, l.sni_list_length, 2) - 3 + 1},
           {"host_name", l.sni_name_length, 0xffff},
       }) {
    Bytes bad = h;
    put(bad, f.at, 2, f.value);
    EXPECT_EQ(parse(bad).status, HelloStatus::kMalformed) << f.what << " length " << f.value;
  }
  // The name list and the name grown together so that both agree, but run into the next extension:
  // the server_name extension's own length must still bound them.
  ASSERT_LT(l.sni_name_length + 2 + get(h, l.sni_name_length, 2) + 4, l.end) << "server_name is the last extension";
  Bytes bad = h;
  put(bad, l.sni_list_length, 2, get(h, l.sni_list_length, 2) + 4);
  put(bad, l.sni_name_length, 2, get(h, l.sni_name_length, 2) + 4);
  EXPECT_EQ(parse(bad).status, HelloStatus::kMalformed);
}

TEST(ClientHello, EverySingleByteChangeIsSafe) {
  Bytes h = client_hello("Mutate.Example.com");
  for (size_t at = 0; at < h.size(); ++at) {
    for (int change : {0, 1, 2, 3}) {
      Bytes bad = h;
      uint8_t& b = bad[at];
      b = change == 0 ? 0 : change == 1 ? 0xff : change == 2 ? uint8_t(b + 1) : uint8_t(b - 1);
      Parsed p = parse(bad);
      if (p.status == HelloStatus::kDone) {
        // Whatever name came out obeys the contract.
        for (char c : p.name) EXPECT_FALSE(c >= 'A' && c <= 'Z') << "byte " << at;
      }
      // A decision, once made, does not change when more bytes come.
      if (p.status != HelloStatus::kNeedMore) {
        bad.insert(bad.end(), {22, 3, 3, 0, 1, 0});
        Parsed longer = parse(bad);
        EXPECT_EQ(longer.status, p.status) << "byte " << at;
        EXPECT_EQ(longer.name, p.name) << "byte " << at;
      }
    }
  }
}

}  // namespace
}  // namespace berth::proxy::tls
