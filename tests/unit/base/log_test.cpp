// Unit tests for berth's own log: zerolog's JSON layout, log.filePath, and reopening on SIGUSR1.
#include "base/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace berth::log {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Log, ParsesFormats) {
  Format f;
  EXPECT_TRUE(parse_format("JSON", f));
  EXPECT_EQ(f, Format::kJson);
  EXPECT_TRUE(parse_format("common", f));
  EXPECT_EQ(f, Format::kCommon);
  EXPECT_FALSE(parse_format("logfmt", f));
}

TEST(Log, WritesJsonLinesToTheFileAndReopensItAfterARename) {
  const auto dir = std::filesystem::temp_directory_path() / ("berth_log_" + std::to_string(::getpid()));
  const std::string path = (dir / "logs" / "berth.log").string();  // the directory is created
  auto opened = open_output(Format::kJson, path);
  ASSERT_TRUE(opened) << opened.error().to_string();
  LOG_INFO("hello \"world\"\n<tab>\t");
  LOG_DEBUG("below the level: not written");
  std::string text = read_file(path);
  ASSERT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
  EXPECT_EQ(text.rfind(R"({"level":"info","time":")", 0), 0u) << text;
  auto o = boost::json::parse(text).as_object();
  EXPECT_EQ(o.at("message").as_string(), "hello \"world\"\n<tab>\t");
  const std::string time(o.at("time").as_string());
  EXPECT_EQ(time.size(), 20u) << time;  // 2026-01-02T03:04:05Z
  EXPECT_EQ(time.back(), 'Z');
  std::vector<std::string> keys;
  for (const auto& kv : o) keys.emplace_back(kv.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"level", "time", "message"}));

  std::filesystem::rename(path, path + ".1");
  reopen();
  LOG_WARN("after the rename");
  text = read_file(path);
  EXPECT_EQ(boost::json::parse(text).as_object().at("level").as_string(), "warn");
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  const std::string old_text = read_file(path + ".1");
  EXPECT_EQ(std::count(old_text.begin(), old_text.end(), '\n'), 1);

  ASSERT_TRUE(open_output(Format::kCommon, ""));  // back to stderr
  LOG_ERROR("to stderr again");
  EXPECT_EQ(read_file(path), text);
  std::filesystem::remove_all(dir);
}

TEST(Log, OpenOutputNamesAFileItCannotOpen) {
  auto opened = open_output(Format::kJson, "/proc/berth-no-such-dir/berth.log");
  ASSERT_FALSE(opened);
  EXPECT_NE(opened.error().to_string().find("/proc/berth-no-such-dir"), std::string::npos) << opened.error().to_string();
}

}  // namespace
}  // namespace berth::log
