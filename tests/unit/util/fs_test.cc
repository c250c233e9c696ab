// SPDX-License-Identifier: Apache-2.0
// The util file helpers against the kernel: AtomicFile, getdents64 + DirentCursor,
// rename_noreplace, copy_range. Expected values are what the files on disk show (stat,
// readdir through std::filesystem, contents), not the helpers' own answers.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "cfs/util/atomic_file.h"
#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"
#include "testutil/temp_dir.h"

namespace cfs {
namespace {

namespace fs = std::filesystem;
using testutil::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<std::string> names_in(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

TEST(AtomicFile, AppearsWholeOnCommit) {
  TempDir d;
  const std::string target = d / "out.img";
  d.write("out.img", "previous");
  auto f = AtomicFile::create(target, 0640);
  ASSERT_TRUE(f) << f.error().message();
  ASSERT_TRUE(sys::write_all(f->fd(), std::as_bytes(std::span("new contents", 12))));
  // Until commit the old file is untouched and the new bytes are in an unnamed O_TMPFILE file
  // (or, where the filesystem has none, a temp name of the documented form).
  EXPECT_EQ(slurp(target), "previous");
  for (const auto& name : names_in(d.path()))
    EXPECT_TRUE(name == "out.img" || AtomicFile::is_temp_name(name)) << name;
  ASSERT_TRUE(f->commit());
  EXPECT_EQ(slurp(target), "new contents");
  struct stat st;
  ASSERT_EQ(::stat(target.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(names_in(d.path()), std::set<std::string>{"out.img"});
}

TEST(AtomicFile, DroppedWithoutCommitLeavesNothing) {
  TempDir d;
  d.write("keep", "old");
  {
    auto f = AtomicFile::create(d / "keep", 0644);
    ASSERT_TRUE(f);
    ASSERT_TRUE(sys::write_all(f->fd(), std::as_bytes(std::span("partial", 7))));
  }
  EXPECT_EQ(slurp(d / "keep"), "old");
  EXPECT_EQ(names_in(d.path()), std::set<std::string>{"keep"});
  auto missing = AtomicFile::create(d / "no-such-dir/x");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is_errno(ENOENT));
}

TEST(Getdents, CursorListsWhatReaddirLists) {
  TempDir d;
  std::set<std::string> want{"a", "bb", std::string(255, 'n'),
                             "d\x01"
                             "e",
                             "sub"};
  for (const auto& n : want)
    if (n != "sub") d.write(n, "x");
  d.mkdirs("sub");
  auto fd = sys::open(d.path(), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(fd);
  std::set<std::string> got;
  // A small buffer forces several getdents calls.
  std::array<std::byte, 512> buf;
  for (;;) {
    auto n = sys::getdents(fd->get(), buf, d.path());
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
    sys::DirentCursor cur(std::span<const std::byte>(buf.data(), *n));
    std::string_view name;
    unsigned char type;
    std::uint64_t ino;
    while (cur.next(name, type, ino)) {
      if (name == "." || name == "..") continue;
      struct stat st;
      ASSERT_EQ(::fstatat(fd->get(), std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW), 0);
      EXPECT_EQ(ino, st.st_ino) << name;
      EXPECT_EQ(type, S_ISDIR(st.st_mode) ? DT_DIR : DT_REG) << name;
      got.insert(std::string(name));
    }
  }
  EXPECT_EQ(got, want);
}

TEST(Getdents, CursorStopsAtMalformedRecords) {
  // struct linux_dirent64: u64 d_ino, s64 d_off, u16 d_reclen, u8 d_type, char d_name[].
  std::array<std::byte, 64> buf{};
  auto put = [&](std::size_t at, std::uint64_t ino, std::uint16_t reclen, const char* name) {
    std::memcpy(buf.data() + at, &ino, 8);
    std::memcpy(buf.data() + at + 16, &reclen, 2);
    buf[at + 18] = static_cast<std::byte>(DT_REG);
    std::memcpy(buf.data() + at + 19, name, std::strlen(name));
  };
  put(0, 7, 24, "ok");
  put(24, 8, 200, "toolong");  // runs past the buffer
  sys::DirentCursor cur(buf);
  std::string_view name;
  unsigned char type;
  std::uint64_t ino;
  ASSERT_TRUE(cur.next(name, type, ino));
  EXPECT_EQ(name, "ok");
  EXPECT_EQ(ino, 7u);
  EXPECT_FALSE(cur.next(name, type, ino));
  put(24, 8, 10, "x");  // shorter than its own header
  sys::DirentCursor again(buf);
  ASSERT_TRUE(again.next(name, type, ino));
  EXPECT_FALSE(again.next(name, type, ino));
}

TEST(RenameNoReplace, NeverReplaces) {
  TempDir d;
  d.write("src", "new");
  d.write("dst", "old");
  auto dir = sys::open(d.path(), O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(dir);
  auto r = sys::rename_noreplace(dir->get(), "src", dir->get(), "dst");
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_EQ(slurp(d / "dst"), "old");
  EXPECT_EQ(slurp(d / "src"), "new");
  r = sys::rename_noreplace(dir->get(), "src", dir->get(), "fresh");
  ASSERT_TRUE(r);
  EXPECT_TRUE(*r);
  EXPECT_EQ(slurp(d / "fresh"), "new");
  EXPECT_FALSE(fs::exists(d / "src"));
  auto missing = sys::rename_noreplace(dir->get(), "src", dir->get(), "other");
  ASSERT_FALSE(missing);
  EXPECT_TRUE(missing.error().is_errno(ENOENT));
}

TEST(CopyRange, CopiesToEofOrSaysUnsupported) {
  TempDir d;
  std::string data = testutil::random_bytes(3 << 20, 5);
  d.write("src", data);
  auto src = sys::open(d / "src", O_RDONLY);
  auto dst = sys::open(d / "dst", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_TRUE(src && dst);
  // A size smaller than the file (it "grew" since it was measured): still copied to EOF.
  auto r = sys::copy_range(src->get(), dst->get(), 1000, "src");
  ASSERT_TRUE(r) << r.error().message();
  if (r->unsupported) GTEST_SKIP() << "copy_file_range unsupported here";
  EXPECT_EQ(r->copied, data.size());
  EXPECT_TRUE(slurp(d / "dst") == data);

  // From a pipe, copy_file_range cannot work: reported, not an error.
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  ASSERT_EQ(::write(wr.get(), "abc", 3), 3);
  auto dst2 = sys::open(d / "dst2", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_TRUE(dst2);
  auto u = sys::copy_range(rd.get(), dst2->get(), 3, "pipe");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_TRUE(u->unsupported);
  EXPECT_EQ(u->copied, 0u);
}

}  // namespace
}  // namespace cfs

TEST(CurrentUmask, MatchesWhatUmaskSyscallReports) {
  // Oracle: umask(2) itself, which returns the previous mask.
  const mode_t saved = ::umask(027);
  const auto seen = cfs::sys::current_umask();
  ::umask(saved);
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(*seen, 027U);
  const auto again = cfs::sys::current_umask();
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, saved);
}
