#include "common/env/env.h"

#include <dirent.h>

#include <string>
#include <vector>

#include "common/env/faulty_env.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

std::string Dir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
  std::system(("rm -rf '" + dir + "' && mkdir -p '" + dir + "'").c_str());
  return dir;
}

std::vector<std::string> Files(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  return names;
}

TEST(EnvTest, WritesAllOrNothingUnderEveryFault) {
  for (FaultyEnv::Fault fault : {FaultyEnv::Fault::kWrite, FaultyEnv::Fault::kSync,
                                 FaultyEnv::Fault::kRename, FaultyEnv::Fault::kDiskFull,
                                 FaultyEnv::Fault::kTornWrite}) {
    SCOPED_TRACE(static_cast<int>(fault));
    const std::string dir = Dir("faults");
    const std::string path = dir + "/state.bin";
    FaultyEnv env(Env::Default());
    ASSERT_TRUE(WriteFileAtomically(&env, path, "the last good state").ok());
    env.Inject(fault);
    const absl::Status failed = WriteFileAtomically(&env, path, std::string(4096, 'n'));
    EXPECT_FALSE(failed.ok());
    EXPECT_EQ(env.faults_injected(), 1);
    EXPECT_EQ(*env.ReadFile(path, 1 << 20), "the last good state");
    // Nothing left behind but the file itself.
    EXPECT_EQ(Files(dir), std::vector<std::string>{"state.bin"});
    if (fault == FaultyEnv::Fault::kDiskFull) {
      EXPECT_EQ(failed.code(), absl::StatusCode::kResourceExhausted);
      EXPECT_FALSE(WriteFileAtomically(&env, path, "still full").ok());  // until cleared
      env.Clear();
    }
    ASSERT_TRUE(WriteFileAtomically(&env, path, "recovered").ok());
    EXPECT_EQ(*env.ReadFile(path, 1 << 20), "recovered");
  }
}

TEST(EnvTest, DefaultEnvReadsWhatItWroteAndNamesWhatIsMissing) {
  const std::string dir = Dir("default");
  Env* env = Env::Default();
  ASSERT_TRUE(WriteFileAtomically(env, dir + "/a", "bytes").ok());
  EXPECT_EQ(*env->ReadFile(dir + "/a", 10), "bytes");
  EXPECT_EQ(env->ReadFile(dir + "/a", 2).status().code(), absl::StatusCode::kResourceExhausted);
  const absl::Status missing = env->ReadFile(dir + "/none", 10).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.message().find("none"), absl::string_view::npos);
  FaultyEnv fake(env);
  fake.SetNow(absl::FromUnixSeconds(42));
  EXPECT_EQ(fake.Now(), absl::FromUnixSeconds(42));
}

}  // namespace
}  // namespace fedge
