// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/byte_source.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "cfs/util/aligned_buffer.h"
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
  AlignedBuffer mem;
  const std::span<std::byte> buf = mem.get(64 * 1024);
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
  FdSource(UniqueFd fd, std::string what) : fd_(std::move(fd)), what_(std::move(what)) {
    // A regular file's length is known (pipes and terminals have none): the rest from here.
    auto st = sys::fstat(fd_.get(), what_);
    off_t at = ::lseek(fd_.get(), 0, SEEK_CUR);
    if (st && S_ISREG(st->st_mode) && at >= 0 && st->st_size >= at)
      size_ = static_cast<std::uint64_t>(st->st_size - at);
  }
  Result<std::size_t> read(std::span<std::byte> buf) override {
    auto n = sys::read_full(fd_.get(), buf);
    if (!n) return fail(std::move(n).error().with_context(what_));
    return n;
  }
  std::optional<std::uint64_t> known_size() const override { return size_; }

 private:
  UniqueFd fd_;
  std::string what_;
  std::optional<std::uint64_t> size_;
};

class RangeSource final : public ByteSource {
 public:
  RangeSource(int fd, std::uint64_t off, std::uint64_t len, std::string what)
      : fd_(fd), off_(off), left_(len), size_(len), what_(std::move(what)) {}
  std::optional<std::uint64_t> known_size() const override { return size_; }
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
  std::uint64_t size_;
  std::string what_;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::string data) : data_(std::move(data)) {}
  std::optional<std::uint64_t> known_size() const override { return data_.size(); }
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

/// See push_source(): a queue of pieces between the producer thread and the reader.
class PushSource final : public ByteSource {
 public:
  PushSource(std::function<Status(const PushWrite&)> produce, std::size_t max_buffered)
      : max_(std::max<std::size_t>(max_buffered, 1)) {
    thread_ = std::thread([this, produce = std::move(produce)] {
      Status st = produce([this](std::span<const std::byte> data) { return push(data); });
      std::lock_guard lk(mu_);
      done_ = true;
      if (!st) error_ = std::move(st).error();
      cv_.notify_all();
    });
  }
  ~PushSource() override {
    {
      std::lock_guard lk(mu_);
      closed_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  Result<std::size_t> read(std::span<std::byte> buf) override {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return !queue_.empty() || done_; });
    if (queue_.empty()) {
      if (error_) return fail(*error_);
      return std::size_t{0};
    }
    std::size_t done = 0;
    while (done < buf.size() && !queue_.empty()) {
      auto& front = queue_.front();
      std::size_t n = std::min(buf.size() - done, front.size() - pos_);
      std::memcpy(buf.data() + done, front.data() + pos_, n);
      done += n;
      pos_ += n;
      if (pos_ == front.size()) {
        queued_ -= front.size();
        queue_.pop_front();
        pos_ = 0;
      }
    }
    cv_.notify_all();
    return done;
  }

 private:
  Status push(std::span<const std::byte> data) {
    if (data.empty()) return {};
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return closed_ || queued_ < max_; });
    if (closed_) return fail(Errc::kConflict, "reader closed");
    queue_.emplace_back(data.begin(), data.end());
    queued_ += data.size();
    cv_.notify_all();
    return {};
  }

  std::size_t max_;
  std::deque<std::vector<std::byte>> queue_;
  std::size_t pos_ = 0, queued_ = 0;
  bool done_ = false, closed_ = false;
  std::optional<Error> error_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<ByteSource> fd_source(UniqueFd fd, std::string what) {
  return std::make_unique<FdSource>(std::move(fd), std::move(what));
}
std::unique_ptr<ByteSource> range_source(int fd, std::uint64_t offset, std::uint64_t length,
                                         std::string what) {
  return std::make_unique<RangeSource>(fd, offset, length, std::move(what));
}
std::unique_ptr<ByteSource> push_source(std::function<Status(const PushWrite&)> produce,
                                        std::size_t max_buffered) {
  return std::make_unique<PushSource>(std::move(produce), max_buffered);
}
std::unique_ptr<ByteSource> memory_source(std::string data) {
  return std::make_unique<MemorySource>(std::move(data));
}

}  // namespace cfs::oci
