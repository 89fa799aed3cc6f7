// Unit tests for htpasswd.h: htpasswd/htdigest parsing, password hash formats, the basic-auth cache,
// Authorization header parsing and stateless digest nonces. Vectors come from openssl passwd,
// libxcrypt, python3 hashlib/hmac and a real `curl --digest` exchange.
#include "proxy/middleware/htpasswd.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace berth::proxy::middleware {
namespace {

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using Clock = DigestAuth::Clock;
using Creds = std::vector<BasicCredential>;  // a bare braced list would also match the copy constructor

// ---- htpasswd / htdigest lines

TEST(ParseBasicCredential, SplitsUserAndHash) {
  auto c = parse_basic_credential("alice:$apr1$XXXXabcd$6yTD6XCxsY2xIa.k04Ln7.");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->user, "alice");
  EXPECT_EQ(c->hash, "$apr1$XXXXabcd$6yTD6XCxsY2xIa.k04Ln7.");
}

TEST(ParseBasicCredential, RequiresExactlyOneColon) {
  EXPECT_FALSE(parse_basic_credential("alice").ok());
  EXPECT_FALSE(parse_basic_credential("alice:x:y").ok());
  EXPECT_TRUE(parse_basic_credential(":").ok());  // Traefik accepts it; it just never matches
}

TEST(ParseHtpasswd, SkipsBlankLinesCommentsAndCarriageReturns) {
  auto users = parse_htpasswd("# admins\r\n\r\n  alice:{SHA}x  \r\n\t\nbob:$2y$05$abc\n#carol:h", "users.htpasswd");
  ASSERT_TRUE(users.ok()) << users.error().to_string();
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].user, "alice");
  EXPECT_EQ((*users)[0].hash, "{SHA}x");
  EXPECT_EQ((*users)[1].user, "bob");
  EXPECT_EQ((*users)[1].hash, "$2y$05$abc");
}

TEST(ParseHtpasswd, NamesTheLineOfAMalformedEntry) {
  auto users = parse_htpasswd("alice:h\n\n# note\nbob\ncarol:h\n", "/etc/users");
  ASSERT_FALSE(users.ok());
  EXPECT_EQ(users.error().where, "/etc/users:4");
  EXPECT_EQ(users.error().to_string(), "/etc/users:4: expected user:hash");
}

TEST(ParseHtpasswd, AcceptsAnEmptyFile) {
  auto users = parse_htpasswd("", "f");
  ASSERT_TRUE(users.ok());
  EXPECT_TRUE(users->empty());
}

TEST(ParseHtdigest, ReadsUserRealmAndLowerCasedHa1) {
  auto users = parse_htdigest("# x\nalice:traefik:CC6292A804B584BCBD1657DDD96D47DC\n", "digest");
  ASSERT_TRUE(users.ok());
  ASSERT_EQ(users->size(), 1u);
  EXPECT_EQ((*users)[0].user, "alice");
  EXPECT_EQ((*users)[0].realm, "traefik");
  EXPECT_EQ((*users)[0].ha1, "cc6292a804b584bcbd1657ddd96d47dc");
}

TEST(ParseHtdigest, NamesTheLineOfAMalformedEntry) {
  auto users = parse_htdigest("alice:traefik:aa\nbob:traefik\n", "digest");
  ASSERT_FALSE(users.ok());
  EXPECT_EQ(users.error().where, "digest:2");
  EXPECT_FALSE(parse_digest_credential("a:b:c:d").ok());
  EXPECT_FALSE(parse_digest_credential("a").ok());
}

// ---- hash formats

TEST(CheckPassword, AcceptsBcryptHash) {
  EXPECT_TRUE(check_password("secret", "$2b$04$F18QM8nvYkpH/ybV9.phNu96wotNEXY/dkFUTh.YqDylkTGFDPV/2"));
  EXPECT_TRUE(check_password("secret", "$2y$05$h3WcFvxRbJJaHE.fyM5LouDN0BGfW/CjXg9Cq1yMmO954Z4lmg3.q"));
  EXPECT_TRUE(check_password("secret", "$2a$05$XCKzyE6t4mnc1f.iNy2YuOcO58L8fK6ss3aJdItl15rl/13QYZXGy"));
  EXPECT_TRUE(check_password("secret", "$2y$10$dVbOm99PQoGW7DHg1lZzmOmt0TqHzDwWE5IpZybfXoodtR6R3uiNq"));
  EXPECT_TRUE(check_password("", "$2b$04$PXSJZjCoPlCQZXWxmROTsOgpwfeUAt0HrGHiRsMKS0vSLysWWPIOq"));
}

TEST(CheckPassword, RejectsWrongPasswordForBcrypt) {
  EXPECT_FALSE(check_password("Secret", "$2b$04$F18QM8nvYkpH/ybV9.phNu96wotNEXY/dkFUTh.YqDylkTGFDPV/2"));
  EXPECT_FALSE(check_password("", "$2y$05$h3WcFvxRbJJaHE.fyM5LouDN0BGfW/CjXg9Cq1yMmO954Z4lmg3.q"));
  EXPECT_FALSE(check_password("secret", "$2y$05$h3WcFvxRbJJaHE.fyM5LouDN0BGfW/CjXg9Cq1yMmO954Z4lmg3.r"));
}

TEST(CheckPassword, RejectsPasswordsWithNulForBcrypt) {
  // crypt() would stop at the NUL and accept "secret".
  EXPECT_FALSE(check_password("secret\0junk"sv, "$2y$05$h3WcFvxRbJJaHE.fyM5LouDN0BGfW/CjXg9Cq1yMmO954Z4lmg3.q"));
}

TEST(CheckPassword, TreatsEveryBcryptMinorLikeGo) {
  // libxcrypt alone gives $2x$ the old 8-bit bug; Go's bcrypt (Traefik) ignores the minor.
  const std::string rest = "05$5pkhOexMNSjvuOrjhCnZE.rUUgyOceLeYKZf.CmlE2tzTUWPOiwSe";
  for (std::string prefix : {"$2a$", "$2b$", "$2x$", "$2y$"}) {
    EXPECT_TRUE(check_password("p\xc3\xa4sswort", prefix + rest)) << prefix;
    EXPECT_FALSE(check_password("passwort", prefix + rest)) << prefix;
  }
  EXPECT_FALSE(check_password("p\xc3\xa4sswort", "$2z$" + rest));
}

TEST(CheckPassword, RejectsMalformedBcryptHashes) {
  EXPECT_FALSE(check_password("secret", "$2y$"));
  EXPECT_FALSE(check_password("secret", "$2y$05$"));
  EXPECT_FALSE(check_password("secret", "$2y$99$h3WcFvxRbJJaHE.fyM5LouDN0BGfW/CjXg9Cq1yMmO954Z4lmg3.q"));
  EXPECT_FALSE(check_password("secret", "$2y$05$h3WcFvxRbJJaHE.fyM5Lou"));
}

// Vectors: openssl passwd -apr1 -salt XXXXabcd secret (and the others alike).
TEST(CheckPassword, AcceptsApr1Md5Hash) {
  EXPECT_TRUE(check_password("secret", "$apr1$XXXXabcd$6yTD6XCxsY2xIa.k04Ln7."));
  EXPECT_TRUE(check_password("", "$apr1$Ab$hROsfEwt0y.p/DM64DdOw/"));
  EXPECT_TRUE(check_password("a much longer password than sixteen bytes, really",
                             "$apr1$12345678$MgqyYzJ7cFlaOdwRwue.l."));
}

TEST(CheckPassword, RejectsWrongPasswordForApr1Md5) {
  EXPECT_FALSE(check_password("secret!", "$apr1$XXXXabcd$6yTD6XCxsY2xIa.k04Ln7."));
  EXPECT_FALSE(check_password("secret", "$apr1$XXXXabce$6yTD6XCxsY2xIa.k04Ln7."));
  EXPECT_FALSE(check_password("secret", "$apr1$XXXXabcd$6yTD6XCxsY2xIa.k04Ln7"));
  EXPECT_FALSE(check_password("secret", "$apr1$XXXXabcd"));
  EXPECT_FALSE(check_password("secret", "$1$XXXXabcd$6yTD6XCxsY2xIa.k04Ln7."));  // the magic is hashed in
}

TEST(CheckPassword, AcceptsMd5CryptHash) {
  EXPECT_TRUE(check_password("secret", "$1$saltsalt$9xy1btjgzLYfb7hivXtC//"));
  EXPECT_FALSE(check_password("secreT", "$1$saltsalt$9xy1btjgzLYfb7hivXtC//"));
}

TEST(CheckPassword, AcceptsSha1Hash) {
  EXPECT_TRUE(check_password("secret", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="));
  EXPECT_FALSE(check_password("secret2", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="));
  EXPECT_FALSE(check_password("secret", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ"));
  EXPECT_FALSE(check_password("secret", "{SHA}"));
}

TEST(CheckPassword, RejectsPlaintextAndUnknownFormats) {
  EXPECT_FALSE(check_password("secret", "secret"));
  EXPECT_FALSE(check_password("", ""));
  EXPECT_FALSE(check_password("secret", "{sha}5en6G6MezRroT3XKqkdPOmY/BfQ="));
  EXPECT_FALSE(check_password("secret", "$5$rounds=1000$salt$abc"));
  EXPECT_FALSE(check_password("secret", "$"));
}

// ---- BasicAuthUsers

TEST(BasicAuthUsers, VerifiesKnownUsersOnly) {
  BasicAuthUsers users({{"alice", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="},
                        {"bob", "$2y$05$h3WcFvxRbJJaHE.fyM5LouDN0BGfW/CjXg9Cq1yMmO954Z4lmg3.q"}});
  EXPECT_EQ(users.size(), 2u);
  EXPECT_TRUE(users.verify("alice", "secret"));
  EXPECT_TRUE(users.verify("bob", "secret"));
  EXPECT_FALSE(users.verify("carol", "secret"));
  EXPECT_FALSE(users.verify("Alice", "secret"));
  EXPECT_FALSE(users.verify("alice", "wrong"));
}

TEST(BasicAuthUsers, LaterEntryReplacesEarlierOne) {
  BasicAuthUsers users(Creds{{"alice", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="},
                             {"alice", "$1$saltsalt$9xy1btjgzLYfb7hivXtC//"}});
  EXPECT_EQ(users.size(), 1u);
  EXPECT_TRUE(users.verify("alice", "secret"));
  BasicAuthUsers other(Creds{{"alice", "$1$saltsalt$9xy1btjgzLYfb7hivXtC//"}, {"alice", "{SHA}x"}});
  EXPECT_FALSE(other.verify("alice", "secret"));
}

TEST(BasicAuthUsers, RemembersAVerifiedPasswordButNotOthers) {
  using Quick = BasicAuthUsers::Quick;
  BasicAuthUsers users(Creds{{"u", "$2y$12$xM6BZtqT/0TWz1Ut4PgRT.L4JcPZTlJLAP13UhRikqKAgcI5Id1j."}});
  EXPECT_EQ(users.quick_verify("u", "slow"), Quick::kNeedsHash);  // bcrypt, nothing remembered yet
  EXPECT_EQ(users.quick_verify("nobody", "slow"), Quick::kRejected);
  ASSERT_TRUE(users.verify("u", "slow"));
  EXPECT_EQ(users.quick_verify("u", "slow"), Quick::kAccepted);  // answered without bcrypt
  EXPECT_EQ(users.quick_verify("u", "slow "), Quick::kNeedsHash);
  EXPECT_FALSE(users.verify("u", "slow "));
  EXPECT_FALSE(users.verify("u", ""));
  EXPECT_TRUE(users.verify("u", "slow"));
}

TEST(BasicAuthUsers, AgreesUnderConcurrentVerifies) {
  BasicAuthUsers users({{"a", "$2b$04$F18QM8nvYkpH/ybV9.phNu96wotNEXY/dkFUTh.YqDylkTGFDPV/2"},
                        {"b", "$apr1$XXXXabcd$6yTD6XCxsY2xIa.k04Ln7."},
                        {"c", "$2b$04$PXSJZjCoPlCQZXWxmROTsOgpwfeUAt0HrGHiRsMKS0vSLysWWPIOq"}});
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        int k = (i + t) % 6;
        bool got = k == 0   ? users.verify("a", "secret")
                   : k == 1 ? users.verify("a", "nope")
                   : k == 2 ? users.verify("b", "secret")
                   : k == 3 ? users.verify("b", "")
                   : k == 4 ? users.verify("c", "")
                            : users.verify("c", "secret");
        if (got != (k % 2 == 0)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(BasicAuthUsers, ParsesBasicAuthorization) {
  std::string user, password;
  ASSERT_TRUE(BasicAuthUsers::parse_authorization("Basic dXNlcjpzZWNyZXQ=", user, password));
  EXPECT_EQ(user, "user");
  EXPECT_EQ(password, "secret");
  ASSERT_TRUE(BasicAuthUsers::parse_authorization("  bAsIc \t YWxhZGRpbjpvcGVuIHNlc2FtZQ==  ", user, password));
  EXPECT_EQ(user, "aladdin");
  EXPECT_EQ(password, "open sesame");
}

TEST(BasicAuthUsers, AllowsEmptyPasswordAndColonsInIt) {
  std::string user, password;
  ASSERT_TRUE(BasicAuthUsers::parse_authorization("Basic dXNlcjo=", user, password));  // "user:"
  EXPECT_EQ(user, "user");
  EXPECT_EQ(password, "");
  ASSERT_TRUE(BasicAuthUsers::parse_authorization("Basic dTphOmI6", user, password));  // "u:a:b:"
  EXPECT_EQ(user, "u");
  EXPECT_EQ(password, "a:b:");
  ASSERT_TRUE(BasicAuthUsers::parse_authorization("Basic Og==", user, password));  // ":"
  EXPECT_EQ(user, "");
  EXPECT_EQ(password, "");
}

TEST(BasicAuthUsers, RejectsMalformedBasicAuthorization) {
  std::string user, password;
  for (std::string_view bad : {"", "Basic", "Basic ", "Basicdxnlcjpzzwnyzxq=", "Bearer dXNlcjpzZWNyZXQ=",
                               "Basic dXNlcjpzZWNyZXQ",      // padding missing
                               "Basic dXNlcjpzZWNyZXQ==",    // too much padding
                               "Basic dXNl cjpzZWNyZXQ=",    // space inside
                               "Basic dXNlcjpzZWNy=XQ=",     // '=' inside
                               "Basic dXNlcjpzZWNyZXQ-",     // URL alphabet
                               "Basic dXNlcg==",             // "user": no colon
                               "Basic ====", "Digest dXNlcjpzZWNyZXQ="}) {
    EXPECT_FALSE(BasicAuthUsers::parse_authorization(bad, user, password)) << bad;
  }
}

// ---- Digest: parsing

// A real header sent by `curl --digest -u alice:wonderland http://.../dir/index.html?x=1` after a
// challenge with kNonce and kOpaque.
constexpr std::string_view kNonce = "AAAAAGVT8QBSEBjmnwLtZkzb6AW6dbDJDsytmyLMn0ra9ZAhG7ErwA";
constexpr std::string_view kOpaque = "pIgVZUJ47FWFZa4nS1vvEQ";
constexpr std::string_view kCurlHeader =
    R"(Digest username="alice", realm="traefik", nonce="AAAAAGVT8QBSEBjmnwLtZkzb6AW6dbDJDsytmyLMn0ra9ZAhG7ErwA", )"
    R"(uri="/dir/index.html?x=1", cnonce="M2ZmN2FkODFjODBiYTM2NGVlNjQyMTQ3MDBhYTBlYTc=", nc=00000001, qop=auth, )"
    R"(response="fc5d489c23cca2ba9c301705b9693082", opaque="pIgVZUJ47FWFZa4nS1vvEQ", algorithm=MD5)";

TEST(ParseDigestAuthorization, ReadsCurlHeader) {
  auto f = parse_digest_authorization(kCurlHeader);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->username, "alice");
  EXPECT_EQ(f->realm, "traefik");
  EXPECT_EQ(f->nonce, kNonce);
  EXPECT_EQ(f->uri, "/dir/index.html?x=1");
  EXPECT_EQ(f->cnonce, "M2ZmN2FkODFjODBiYTM2NGVlNjQyMTQ3MDBhYTBlYTc=");
  EXPECT_EQ(f->nc, "00000001");
  EXPECT_EQ(f->qop, "auth");
  EXPECT_EQ(f->response, "fc5d489c23cca2ba9c301705b9693082");
  EXPECT_EQ(f->opaque, kOpaque);
  EXPECT_EQ(f->algorithm, "MD5");
}

TEST(ParseDigestAuthorization, ReadsEscapesBareValuesAndOddSpacing) {
  auto f = parse_digest_authorization(
      "digest  USERNAME = \"a\\\"l\\\\ice\" ,,realm=\"\",nonce=n ,uri=/x?y=1,response=\"r\", extra=\"x,y\" , ");
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->username, "a\"l\\ice");
  EXPECT_EQ(f->realm, "");
  EXPECT_EQ(f->nonce, "n");
  EXPECT_EQ(f->uri, "/x?y=1");
  EXPECT_EQ(f->response, "r");
  EXPECT_EQ(f->qop, "");
}

TEST(ParseDigestAuthorization, RejectsMalformedHeaders) {
  const std::string ok = R"(username="a", realm="r", nonce="n", uri="/", response="x")";
  for (const std::string& bad : std::vector<std::string>{
           "", std::string("Digest"), std::string("Digest "), "Basic " + ok, "Digestusername=\"a\"",
           "Digest " + ok + ", username=\"b\"",                      // repeated field
           "Digest " + ok + ", REALM=\"b\"",                         // repeated, other case
           std::string(R"(Digest realm="r", nonce="n", uri="/", response="x")"),  // no username
           std::string(R"(Digest username="a", realm="r", nonce="n", uri="/")"),  // no response
           "Digest " + ok + ", qop=auth",                            // qop without nc/cnonce
           "Digest " + ok + ", qop=auth, nc=00000001",
           "Digest " + ok + ", cnonce=\"unterminated",
           "Digest " + ok + ", cnonce=\"ends in backslash\\",
           "Digest " + ok + ", cnonce=",
           "Digest " + ok + ", =x",
           "Digest " + ok + ", cnonce",
           "Digest " + ok + ", cnonce x",
           "Digest " + ok + ", cnonce=\"a\"b",
           "Digest " + ok + " x=y",
           "Digest " + ok + ", na\"me=x",
       }) {
    EXPECT_FALSE(parse_digest_authorization(bad).ok()) << bad;
  }
  EXPECT_TRUE(parse_digest_authorization("Digest " + ok).ok());
}

TEST(ParseDigestAuthorization, SurvivesEveryPrefixAndByteFlip) {
  // Under ASan this catches any read past the end; the answers themselves do not matter.
  std::string header(kCurlHeader);
  for (size_t n = 0; n <= header.size(); ++n) {
    std::string prefix = header.substr(0, n);  // own buffer, so ASan sees its end
    (void)parse_digest_authorization(prefix);
  }
  for (size_t i = 0; i < header.size(); ++i) {
    for (char c : {'"', '\\', ',', '=', ' ', '\0', '\x80'}) {
      std::string mutated = header;
      mutated[i] = c;
      (void)parse_digest_authorization(mutated);
      (void)parse_digest_authorization(std::string_view(mutated).substr(0, i + 1));
    }
  }
}

// ---- Digest: verification
// Independent vectors (python3 hashlib/hmac): secret "test-secret", issued at 1700000000;
// HA1 = MD5("alice:traefik:wonderland").

const Clock::time_point kIssued = Clock::time_point(std::chrono::seconds(1700000000));

DigestAuth test_auth() {
  return DigestAuth("traefik",
                    {{"alice", "traefik", "cc6292a804b584bcbd1657ddd96d47dc"},
                     {"bob", "elsewhere", "00000000000000000000000000000000"}},
                    5min, "test-secret");
}

DigestFields curl_fields() {
  auto f = parse_digest_authorization(kCurlHeader);
  EXPECT_TRUE(f.ok());
  return f.ok() ? *f : DigestFields{};
}

std::string md5_hex(std::string_view s) {
  unsigned char d[16];
  unsigned n = 0;
  EVP_Digest(s.data(), s.size(), d, &n, EVP_md5(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) (out += kHex[d[i] >> 4]) += kHex[d[i] & 15];
  return out;
}

TEST(DigestAuth, DerivesOpaqueAndNonceFromTheSecret) {
  DigestAuth auth = test_auth();
  EXPECT_EQ(auth.opaque(), kOpaque);
  EXPECT_EQ(auth.issue_nonce(kIssued), kNonce);
  EXPECT_EQ(auth.issue_nonce(kIssued + 999ms), kNonce);  // whole seconds
  EXPECT_EQ(auth.size(), 1u);                              // bob is in another realm
}

TEST(DigestAuth, AcceptsCurlResponse) {
  EXPECT_EQ(test_auth().verify(curl_fields(), "GET", "/dir/index.html?x=1", kIssued + 10s), DigestVerdict::kAccepted);
}

TEST(DigestAuth, AcceptsIndependentlyComputedResponses) {
  DigestAuth auth = test_auth();
  DigestFields f = curl_fields();
  f.cnonce = "0a4f113b";
  f.response = "c48ac4005ad18006e70bccccf5a2a4a6";
  EXPECT_EQ(auth.verify(f, "GET", "/dir/index.html?x=1", kIssued), DigestVerdict::kAccepted);
  // RFC 2069 style: no qop, nc or cnonce.
  DigestFields plain = curl_fields();
  plain.qop = plain.nc = plain.cnonce = plain.algorithm = "";
  plain.response = "93ee16ff9b21b56c229322c2b1a6897b";
  EXPECT_EQ(auth.verify(plain, "GET", "/dir/index.html?x=1", kIssued), DigestVerdict::kAccepted);
}

TEST(DigestAuth, AcceptsItsOwnFreshNonce) {
  DigestAuth auth("r", {{"u", "r", md5_hex("u:r:pw")}}, 1min);  // per-process secret
  auto now = Clock::now();
  DigestFields f;
  f.username = "u";
  f.realm = "r";
  f.nonce = auth.issue_nonce(now);
  f.uri = "/a";
  f.qop = "auth";
  f.nc = "00000002";
  f.cnonce = "c";
  f.opaque = auth.opaque();
  f.response = md5_hex(md5_hex("u:r:pw") + ":" + f.nonce + ":00000002:c:auth:" + md5_hex("POST:/a"));
  EXPECT_EQ(auth.verify(f, "POST", "/a", now + 30s), DigestVerdict::kAccepted);
  EXPECT_EQ(auth.verify(f, "GET", "/a", now + 30s), DigestVerdict::kRejected);
  EXPECT_EQ(auth.verify(f, "POST", "/a", now + 61s), DigestVerdict::kStale);
}

TEST(DigestAuth, RejectsWrongPassword) {
  DigestFields f = curl_fields();
  f.response = md5_hex(md5_hex("alice:traefik:wonderlant") + ":" + f.nonce + ":" + f.nc + ":" + f.cnonce +
                       ":auth:" + md5_hex("GET:/dir/index.html?x=1"));
  EXPECT_EQ(test_auth().verify(f, "GET", "/dir/index.html?x=1", kIssued), DigestVerdict::kRejected);
  f = curl_fields();
  f.response = "FC5D489C23CCA2BA9C301705B9693082";  // digests are lower-case hex
  EXPECT_EQ(test_auth().verify(f, "GET", "/dir/index.html?x=1", kIssued), DigestVerdict::kRejected);
}

TEST(DigestAuth, ReportsStaleOnlyWhenTheResponseIsRight) {
  DigestAuth auth = test_auth();
  DigestFields f = curl_fields();
  EXPECT_EQ(auth.verify(f, "GET", "/dir/index.html?x=1", kIssued + 5min), DigestVerdict::kAccepted);
  EXPECT_EQ(auth.verify(f, "GET", "/dir/index.html?x=1", kIssued + 5min + 1s), DigestVerdict::kStale);
  f.response[0] = '0';
  EXPECT_EQ(auth.verify(f, "GET", "/dir/index.html?x=1", kIssued + 5min + 1s), DigestVerdict::kRejected);
}

TEST(DigestAuth, RejectsTamperedOrForeignNonces) {
  DigestAuth auth = test_auth();
  const std::string uri = "/dir/index.html?x=1";
  // Flip each character in turn; the response is recomputed so only the nonce MAC can refuse it.
  std::string nonce(kNonce);
  for (size_t i = 0; i < nonce.size(); ++i) {
    DigestFields f = curl_fields();
    f.nonce = nonce;
    f.nonce[i] = f.nonce[i] == 'A' ? 'B' : 'A';
    f.response = md5_hex("cc6292a804b584bcbd1657ddd96d47dc:" + f.nonce + ":" + f.nc + ":" + f.cnonce + ":auth:" +
                         md5_hex("GET:" + uri));
    EXPECT_EQ(auth.verify(f, "GET", uri, kIssued), DigestVerdict::kRejected) << i;
  }
  DigestAuth other("traefik", {{"alice", "traefik", "cc6292a804b584bcbd1657ddd96d47dc"}}, 5min, "other-secret");
  DigestFields f = curl_fields();
  f.opaque = other.opaque();
  EXPECT_EQ(other.verify(f, "GET", uri, kIssued), DigestVerdict::kRejected);
  const std::string nonce_a = std::string(kNonce) + "A", nonce_cut = std::string(kNonce).substr(1);
  for (const std::string& bad : std::vector<std::string>{"", "!!!!", "AAAA", nonce_a, nonce_cut}) {
    f = curl_fields();
    f.nonce = bad;
    EXPECT_EQ(auth.verify(f, "GET", uri, kIssued), DigestVerdict::kRejected) << bad;
  }
}

TEST(DigestAuth, RejectsMismatchedFields) {
  DigestAuth auth = test_auth();
  const std::string uri = "/dir/index.html?x=1";
  auto with = [](auto edit) {
    DigestFields f = curl_fields();
    edit(f);
    return f;
  };
  EXPECT_EQ(auth.verify(with([](auto& f) { f.realm = "Traefik"; }), "GET", uri, kIssued), DigestVerdict::kRejected);
  EXPECT_EQ(auth.verify(with([](auto& f) { f.opaque = ""; }), "GET", uri, kIssued), DigestVerdict::kRejected);
  EXPECT_EQ(auth.verify(with([](auto& f) { f.algorithm = "SHA-256"; }), "GET", uri, kIssued), DigestVerdict::kRejected);
  EXPECT_EQ(auth.verify(with([](auto& f) { f.qop = "auth-int"; }), "GET", uri, kIssued), DigestVerdict::kRejected);
  EXPECT_EQ(auth.verify(with([](auto& f) { f.username = "bob"; }), "GET", uri, kIssued), DigestVerdict::kRejected);
  EXPECT_EQ(auth.verify(with([](auto& f) { f.username = "mallory"; }), "GET", uri, kIssued), DigestVerdict::kRejected);
  EXPECT_EQ(auth.verify(curl_fields(), "GET", "/dir/index.html", kIssued), DigestVerdict::kRejected);
  EXPECT_EQ(auth.verify(with([](auto& f) { f.algorithm = "md5"; }), "GET", uri, kIssued), DigestVerdict::kAccepted);
}

TEST(DigestAuth, RendersTheChallenge) {
  DigestAuth auth = test_auth();
  EXPECT_EQ(auth.challenge(false, kIssued),
            R"(Digest realm="traefik", nonce="AAAAAGVT8QBSEBjmnwLtZkzb6AW6dbDJDsytmyLMn0ra9ZAhG7ErwA", )"
            R"(opaque="pIgVZUJ47FWFZa4nS1vvEQ", algorithm=MD5, qop="auth")");
  EXPECT_TRUE(auth.challenge(true, kIssued).ends_with(R"(qop="auth", stale=true)"));
  DigestAuth odd("a \"b\"\\\r\nc", {}, 1min, "s");
  EXPECT_TRUE(odd.challenge(false).starts_with(R"(Digest realm="a \"b\"\\c", nonce=")"));
}

}  // namespace
}  // namespace berth::proxy::middleware
