// acme.json: Traefik's format both ways, atomic replacement, 0600, corrupt files kept aside.
#include "acme/storage.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace berth::acme {
namespace {

namespace fs = std::filesystem;

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("berth_acme_storage_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "acme.json").string();
  }
  void TearDown() override {
    fs::permissions(dir_, fs::perms::owner_all);
    fs::remove_all(dir_);
  }
  std::string read(const std::string& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  fs::path dir_;
  std::string path_;
};

StorageFile sample() {
  StorageFile f;
  ResolverData& le = f["le"];
  le.account = StoredAccount{"ops@example.com", "https://ca/acct/1", R"({"status":"valid"})", std::string("\x30\x82\x01", 3), "EC256"};
  le.certificates.push_back({"a.test", {"b.test"}, "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
                             "-----BEGIN PRIVATE KEY-----\ny\n-----END PRIVATE KEY-----\n", "default"});
  f["other"];  // a resolver with nothing yet: "Account": null, "Certificates": []
  return f;
}

TEST_F(StorageTest, RoundTripInTraefiksShapeWithMode0600) {
  ASSERT_TRUE(save_storage(path_, sample()));
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string text = read(path_);
  for (const char* key : {"\"Account\"", "\"Email\"", "\"Registration\"", "\"uri\"", "\"PrivateKey\"", "\"KeyType\"",
                          "\"Certificates\"", "\"domain\"", "\"main\"", "\"sans\"", "\"certificate\"", "\"key\"",
                          "\"Store\""})
    EXPECT_NE(text.find(key), std::string::npos) << key << " in " << text;
  EXPECT_NE(text.find("\"other\":{\"Account\":null,\"Certificates\":[]}"), std::string::npos) << text;
  std::vector<Error> problems;
  StorageFile back = load_storage(path_, problems);
  EXPECT_TRUE(problems.empty());
  ASSERT_EQ(back.count("le"), 1u);
  const ResolverData& le = back.at("le");
  ASSERT_TRUE(le.account);
  EXPECT_EQ(le.account->registration_uri, "https://ca/acct/1");
  EXPECT_EQ(le.account->private_key_der, std::string("\x30\x82\x01", 3));
  ASSERT_EQ(le.certificates.size(), 1u);
  EXPECT_EQ(le.certificates[0].sans, std::vector<std::string>{"b.test"});
  EXPECT_EQ(le.certificates[0].key_pem, sample().at("le").certificates[0].key_pem);
  EXPECT_FALSE(back.at("other").account);
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
}

TEST_F(StorageTest, SymlinkedFileIsWrittenWhereItPoints) {
  const std::string target = (dir_ / "real.json").string();
  std::ofstream(target) << "{}";
  fs::create_symlink(target, path_);
  ASSERT_TRUE(save_storage(path_, sample()));
  EXPECT_TRUE(fs::is_symlink(path_));
  EXPECT_NE(read(target).find("\"le\""), std::string::npos);
}

TEST_F(StorageTest, CorruptFileIsMovedAsideNotOverwritten) {
  std::ofstream(path_) << "{\"le\": {\"Account\": ";
  ::chmod(path_.c_str(), 0600);
  std::vector<Error> problems;
  StorageFile f = load_storage(path_, problems);
  EXPECT_TRUE(f.empty());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].message.find("moved aside to " + path_ + ".corrupt-"), std::string::npos) << problems[0].message;
  EXPECT_FALSE(fs::exists(path_));
  int aside = 0;
  for (const auto& e : fs::directory_iterator(dir_))
    if (e.path().filename().string().starts_with("acme.json.corrupt-")) {
      ++aside;
      EXPECT_EQ(read(e.path().string()), "{\"le\": {\"Account\": ");
    }
  EXPECT_EQ(aside, 1);
}

TEST_F(StorageTest, OpenModeIsTightenedAndEmptyFileIsEmpty) {
  std::ofstream(path_) << "";
  ::chmod(path_.c_str(), 0644);
  std::vector<Error> problems;
  EXPECT_TRUE(load_storage(path_, problems).empty());
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].message.find("0600"), std::string::npos);
  struct stat st {};
  ::stat(path_.c_str(), &st);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(StorageTest, FailedWriteKeepsThePreviousFile) {
  ASSERT_TRUE(save_storage(path_, sample()));
  const std::string before = read(path_);
  // The writer's temp file (<path>.tmp.<pid>) cannot be made, even by root.
  fs::create_directory(path_ + ".tmp." + std::to_string(::getpid()));
  StorageFile changed = sample();
  changed["le"].certificates.clear();
  auto saved = save_storage(path_, changed);
  EXPECT_FALSE(saved);
  EXPECT_EQ(read(path_), before);
}

}  // namespace
}  // namespace berth::acme
