// SPDX-License-Identifier: Apache-2.0
// sys::reserve_fd_table: the process's descriptor table is as large as asked (the kernel's own
// count, FDSize in /proc/self/status, is the oracle), capped by the soft RLIMIT_NOFILE, and no
// descriptor is left open or replaced. sys::raise_fd_limit: the soft limit becomes the hard one.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cfs/util/sys.h"

namespace cfs {
namespace {

/// The slots of this process's descriptor table, as the kernel reports them.
long fd_table_size() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("FDSize:", 0) == 0) return std::strtol(line.c_str() + 7, nullptr, 10);
  return -1;
}

long open_fds() {
  long n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST(FdTable, ReserveGrowsTheTableAndLeavesNoDescriptor) {
  const long before = fd_table_size();
  ASSERT_GT(before, 0) << "no FDSize in /proc/self/status";
  rlimit lim{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &lim), 0);
  const long want = before * 4;
  if (lim.rlim_cur != RLIM_INFINITY && static_cast<long>(lim.rlim_cur) < want)
    GTEST_SKIP() << "soft RLIMIT_NOFILE " << lim.rlim_cur << " is below " << want;
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const long fds = open_fds();
  EXPECT_EQ(sys::reserve_fd_table(static_cast<unsigned>(want)), static_cast<unsigned>(want));
  EXPECT_GE(fd_table_size(), want);
  EXPECT_EQ(open_fds(), fds);
  // The descriptors open before still are the same files.
  EXPECT_EQ(::write(p[1], "x", 1), 1);
  char c = 0;
  EXPECT_EQ(::read(p[0], &c, 1), 1);
  EXPECT_EQ(c, 'x');
  ::close(p[0]);
  ::close(p[1]);
  // A table never shrinks: asking for fewer slots changes nothing.
  const long now = fd_table_size();
  EXPECT_EQ(sys::reserve_fd_table(16), 16u);
  EXPECT_EQ(fd_table_size(), now);
}

TEST(FdTable, ReserveStopsAtTheSoftLimit) {
  // In a child: the limit is lowered for the test alone.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const long before = fd_table_size();
    const rlim_t soft = static_cast<rlim_t>(before * 4);
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_max < soft) ::_exit(10);
    lim.rlim_cur = soft;
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(11);
    if (sys::reserve_fd_table(1u << 20) != soft) ::_exit(12);
    const long after = fd_table_size();
    ::_exit(after >= static_cast<long>(soft) && after < (1L << 20) ? 0 : 13);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 10) GTEST_SKIP() << "hard RLIMIT_NOFILE too low";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(FdTable, RaiseTakesTheSoftLimitToTheHardOne) {
  // In a child, as above; getrlimit is the oracle.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_max <= 64) ::_exit(10);
    lim.rlim_cur = 64;
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) ::_exit(11);
    const rlim_t want = lim.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : lim.rlim_max;
    if (sys::raise_fd_limit() != want) ::_exit(12);
    rlimit now{};
    if (::getrlimit(RLIMIT_NOFILE, &now) != 0 || now.rlim_cur != want) ::_exit(13);
    ::_exit(now.rlim_max == lim.rlim_max ? 0 : 14);  // the hard limit left as it was
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 10) GTEST_SKIP() << "hard RLIMIT_NOFILE too low";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace cfs
