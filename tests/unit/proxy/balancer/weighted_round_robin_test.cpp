// Unit tests for the smooth weighted round robin: exact shares per cycle, spread-out order, zero
// weights, and the plain rotation for equal weights.
#include "proxy/balancer/weighted_round_robin.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace berth::proxy::balancer {
namespace {

std::string sequence(WeightedRoundRobin& b, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += static_cast<char>('a' + b.pick());
  return out;
}

TEST(WeightedRoundRobin, SpreadsPicksSmoothlyLikeNginx) {
  WeightedRoundRobin b;
  b.reset({5, 1, 1});
  EXPECT_EQ(sequence(b, 7), "aabacaa");  // the sequence nginx documents for weights 5,1,1
  EXPECT_EQ(sequence(b, 7), "aabacaa");
}

TEST(WeightedRoundRobin, GivesEachServerItsWeightPerCycle) {
  WeightedRoundRobin b;
  b.reset({3, 1, 2});
  std::string s = sequence(b, 600);
  EXPECT_EQ(std::count(s.begin(), s.end(), 'a'), 300);
  EXPECT_EQ(std::count(s.begin(), s.end(), 'b'), 100);
  EXPECT_EQ(std::count(s.begin(), s.end(), 'c'), 200);
}

TEST(WeightedRoundRobin, NeverPicksAZeroWeight) {
  WeightedRoundRobin b;
  b.reset({0, 2, 0, 1});
  std::string s = sequence(b, 30);
  EXPECT_EQ(s.find('a'), std::string::npos);
  EXPECT_EQ(s.find('c'), std::string::npos);
  EXPECT_EQ(std::count(s.begin(), s.end(), 'b'), 20);
}

TEST(WeightedRoundRobin, AllZeroWeightsPickNothing) {
  WeightedRoundRobin b;
  b.reset({0, 0});
  EXPECT_EQ(b.pick(), -1);
  b.reset({});
  EXPECT_EQ(b.pick(), -1);
}

TEST(WeightedRoundRobin, EqualWeightsRotate) {
  WeightedRoundRobin b;
  b.reset({2, 2, 2});
  EXPECT_EQ(sequence(b, 6), "abcabc");
}

}  // namespace
}  // namespace berth::proxy::balancer
