// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "cfs/registry/auth.h"
#include "cfs/util/sys.h"

namespace cfs::registry {
namespace {

namespace fs = std::filesystem;

class AuthFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cfs-auth-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::string p = dir_ + "/" + name;
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p) << text;
    return p;
  }
  std::string dir_;
};

// base64("alice:pw:with:colons") and base64("bob:x")
constexpr const char* kAlice = "YWxpY2U6cHc6d2l0aDpjb2xvbnM=";
constexpr const char* kBob = "Ym9iOng=";

TEST_F(AuthFiles, MostSpecificKeyWinsWithinAFile) {
  auto f = write("auth.json", std::string(R"({"auths":{"h:5000":{"auth":")") + kBob +
                                  R"("},"h:5000/ns":{"auth":")" + kAlice + R"("}}})");
  auto c = lookup_credentials({f}, "h:5000", "ns/app");
  ASSERT_TRUE(c && *c);
  EXPECT_EQ((*c)->creds.username, "alice");
  EXPECT_EQ((*c)->creds.password, "pw:with:colons");
  EXPECT_EQ((*c)->key, "h:5000/ns");
  c = lookup_credentials({f}, "h:5000", "other/app");
  ASSERT_TRUE(c && *c);
  EXPECT_EQ((*c)->creds.username, "bob");
  c = lookup_credentials({f}, "h:5001", "ns/app");
  ASSERT_TRUE(c);
  EXPECT_FALSE(*c);
}

TEST_F(AuthFiles, FirstFileWithAnEntryWinsAndMissingFilesAreSkipped) {
  auto a = write("a.json", R"({"auths":{"other":{"auth":"eDp5"}}})");
  auto docker =
      write("docker/config.json",
            std::string(R"({"auths":{"https://h:5000/v1/":{"auth":")") + kBob + R"("}}})");
  auto c = lookup_credentials({dir_ + "/missing.json", a, docker}, "h:5000", "x");
  ASSERT_TRUE(c && *c);
  EXPECT_EQ((*c)->creds.username, "bob");
  EXPECT_EQ((*c)->file, docker);
}

TEST_F(AuthFiles, LegacyDockercfgAndHelperOnlyEntries) {
  auto legacy = write("home/.dockercfg", std::string(R"({"h":{"auth":")") + kBob + R"("}})");
  auto helper = write("helper.json", R"({"auths":{"h":{}},"credHelpers":{"h":"secretservice"}})");
  auto c = lookup_credentials({helper, legacy}, "h", "r");
  ASSERT_TRUE(c && *c);
  EXPECT_EQ((*c)->file, legacy);
}

TEST_F(AuthFiles, BrokenFileIsAnErrorNamingIt) {
  auto f = write("bad.json", "{not json");
  auto c = lookup_credentials({f}, "h", "r");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find(f), std::string::npos);
}

TEST_F(AuthFiles, StoreAndRemoveKeepOtherEntries) {
  auto f = dir_ + "/run/containers/auth.json";
  write("run/containers/auth.json",
        R"({"auths":{"keep":{"auth":"eDp5"}},"credHelpers":{"a":"b"}})");
  ASSERT_TRUE(store_credentials(f, "h:5000", {"alice", "s3cret"}));
  struct stat st {};
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto c = lookup_credentials({f}, "h:5000", "r");
  ASSERT_TRUE(c && *c);
  EXPECT_EQ((*c)->creds.password, "s3cret");
  EXPECT_TRUE(lookup_credentials({f}, "keep", "r").value().has_value());
  EXPECT_TRUE(*remove_credentials(f, "h:5000"));
  EXPECT_FALSE(*remove_credentials(f, "h:5000"));
  EXPECT_FALSE(lookup_credentials({f}, "h:5000", "r").value().has_value());
  auto text = sys::read_file(f);
  ASSERT_TRUE(text);
  EXPECT_NE(text->find("credHelpers"), std::string::npos);
  ASSERT_TRUE(remove_all_credentials(f));
  EXPECT_FALSE(lookup_credentials({f}, "keep", "r").value().has_value());
}

TEST_F(AuthFiles, CreatesTheDirectoryPrivately) {
  auto f = dir_ + "/new/containers/auth.json";
  ASSERT_TRUE(store_credentials(f, "h", {"u", "p"}));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/new/containers").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(encode_basic({"u", "p"}), "dTpw");
}

TEST_F(AuthFiles, SearchPathFollowsTheEnvironment) {
  ::setenv("HOME", (dir_ + "/home").c_str(), 1);
  ::setenv("XDG_RUNTIME_DIR", (dir_ + "/run").c_str(), 1);
  ::unsetenv("XDG_CONFIG_HOME");
  ::unsetenv("DOCKER_CONFIG");
  ::unsetenv("REGISTRY_AUTH_FILE");
  std::vector<std::string> want = {dir_ + "/run/containers/auth.json",
                                   dir_ + "/home/.config/containers/auth.json",
                                   dir_ + "/home/.docker/config.json", dir_ + "/home/.dockercfg"};
  EXPECT_EQ(auth_file_search_path(std::nullopt), want);
  EXPECT_EQ(auth_file_for_writing(std::nullopt), want[0]);
  ::setenv("REGISTRY_AUTH_FILE", "/x/auth.json", 1);
  ::setenv("DOCKER_CONFIG", "/d", 1);
  EXPECT_EQ(
      auth_file_search_path(std::nullopt),
      (std::vector<std::string>{"/x/auth.json", "/d/config.json", dir_ + "/home/.dockercfg"}));
  EXPECT_EQ(auth_file_for_writing(std::string("/y.json")), "/y.json");
  ::unsetenv("REGISTRY_AUTH_FILE");
  ::unsetenv("DOCKER_CONFIG");
}

TEST(Credentials, ParsesUserColonPassword) {
  auto c = parse_credentials("u:p:q");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->username, "u");
  EXPECT_EQ(c->password, "p:q");
  EXPECT_FALSE(parse_credentials("nopassword"));
  EXPECT_FALSE(parse_credentials(":p"));
}

}  // namespace
}  // namespace cfs::registry
