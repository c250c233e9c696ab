// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/byte_source.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "cfs/util/sys.h"

namespace cfs::oci {

Result<std::size_t> read_full(ByteSource& src, std::span<std::byte> buf) {
  std::size_t done = 0;
  while (done < buf.size()) {
    CFS_ASSIGN(std::size_t n, src.read(buf.subspan(done)));
    if (n == 0) break;
    done += n;
  }
  return done;
}

Result<std::string> read_all(ByteSource& src, std::uint64_t max_size, const std::string& what) {
  std::string out;
  std::vector<std::byte> buf(64 * 1024);
  for (;;) {
    CFS_ASSIGN(std::size_t n, src.read(buf));
    if (n == 0) return out;
    if (out.size() + n > max_size)
      return fail(Errc::kInvalidInput, fmt::format("{}: larger than {} bytes", what, max_size));
    out.append(reinterpret_cast<const char*>(buf.data()), n);
  }
}

namespace {

class FdSource final : public ByteSource {
 public:
  FdSource(UniqueFd fd, std::string what) : fd_(std::move(fd)), what_(std::move(what)) {}
  Result<std::size_t> read(std::span<std::byte> buf) override {
    auto n = sys::read_full(fd_.get(), buf);
    if (!n) return fail(std::move(n).error().with_context(what_));
    return n;
  }

 private:
  UniqueFd fd_;
  std::string what_;
};

class RangeSource final : public ByteSource {
 public:
  RangeSource(int fd, std::uint64_t off, std::uint64_t len, std::string what)
      : fd_(fd), off_(off), left_(len), what_(std::move(what)) {}
  Result<std::size_t> read(std::span<std::byte> buf) override {
    if (left_ == 0 || buf.empty()) return 0;
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(left_, buf.size()));
    auto n = sys::pread_full(fd_, buf.subspan(0, want), off_);
    if (!n) return fail(std::move(n).error().with_context(what_));
    if (*n == 0) return fail(Errc::kInvalidInput, what_ + ": file ends before the member does");
    off_ += *n;
    left_ -= *n;
    return n;
  }

 private:
  int fd_;
  std::uint64_t off_;
  std::uint64_t left_;
  std::string what_;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::string data) : data_(std::move(data)) {}
  Result<std::size_t> read(std::span<std::byte> buf) override {
    std::size_t n = std::min(buf.size(), data_.size() - pos_);
    std::memcpy(buf.data(), data_.data() + pos_, n);
    pos_ += n;
    return n;
  }

 private:
  std::string data_;
  std::size_t pos_ = 0;
};

}  // namespace

std::unique_ptr<ByteSource> fd_source(UniqueFd fd, std::string what) {
  return std::make_unique<FdSource>(std::move(fd), std::move(what));
}
std::unique_ptr<ByteSource> range_source(int fd, std::uint64_t offset, std::uint64_t length,
                                         std::string what) {
  return std::make_unique<RangeSource>(fd, offset, length, std::move(what));
}
std::unique_ptr<ByteSource> memory_source(std::string data) {
  return std::make_unique<MemorySource>(std::move(data));
}

}  // namespace cfs::oci
