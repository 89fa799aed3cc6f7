// Which CA problems are refusals (retried from a minute on) and which say nothing about the request
// (retried within seconds): a badNonce that outlived its retries must not hold an order for a minute.
#include "acme/client.h"

#include <gtest/gtest.h>

namespace berth::acme {
namespace {

Problem problem(std::string type, int status) {
  Problem p;
  p.type = std::move(type);
  p.status = status;
  return p;
}

TEST(ProblemTest, MatchesTheShortTypeAfterTheNamespace) {
  EXPECT_TRUE(problem("urn:ietf:params:acme:error:badNonce", 400).is("badNonce"));
  EXPECT_FALSE(problem("urn:ietf:params:acme:error:badNonce", 400).is("Nonce"));
  EXPECT_FALSE(problem("badNonce", 400).is("badNonce"));
}

TEST(ProblemTest, ValidationAndPolicyAnswersAreRefusals) {
  EXPECT_TRUE(problem("urn:ietf:params:acme:error:unauthorized", 403).is_refusal());
  EXPECT_TRUE(problem("urn:ietf:params:acme:error:rejectedIdentifier", 400).is_refusal());
  EXPECT_TRUE(problem("urn:ietf:params:acme:error:rateLimited", 429).is_refusal());
  EXPECT_TRUE(problem("urn:ietf:params:acme:error:malformed", 400).is_refusal());
}

TEST(ProblemTest, NonceServerAndTransportProblemsAreNotRefusals) {
  EXPECT_FALSE(problem("urn:ietf:params:acme:error:badNonce", 400).is_refusal());
  EXPECT_FALSE(problem("urn:ietf:params:acme:error:serverInternal", 500).is_refusal());
  EXPECT_FALSE(problem("urn:ietf:params:acme:error:malformed", 503).is_refusal());  // a proxy in front, overloaded
  EXPECT_FALSE(problem("", 0).is_refusal());  // no answer at all
}

}  // namespace
}  // namespace berth::acme
