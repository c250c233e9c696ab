// SPDX-License-Identifier: Apache-2.0
// A plain object directory (DIR/xx/rest-of-hex) as splitstream ObjectSink and ObjectOpener,
// for the OCI test tool and benchmarks. Objects are written to O_TMPFILE files and linked into
// place; no fsync (tests and benchmarks only; the repository owns durability).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <memory>
#include <string>

#include "cfs/splitstream/objects.h"
#include "cfs/util/sys.h"
#include "cfs/verity/digest.h"

namespace cfs::testtools {

class DirObjects final : public splitstream::ObjectSink {
 public:
  /// With write_objects false nothing is written: objects are only digested (benchmarks).
  DirObjects(std::string dir, verity::HashAlg alg, bool write_objects = true)
      : dir_(std::move(dir)), alg_(alg), write_(write_objects) {
    if (write_) {
      ::mkdir(dir_.c_str(), 0755);
      for (int i = 0; i < 256; ++i) {
        char sub[4];
        std::snprintf(sub, sizeof sub, "%02x", i);
        ::mkdir((dir_ + "/" + sub).c_str(), 0755);
      }
    }
  }

  verity::HashAlg algorithm() const override { return alg_; }

  Status put(const verity::Digest& d, std::span<const std::byte> content) override {
    bytes_ += content.size();
    if (!write_) return {};
    CFS_ASSIGN(UniqueFd fd, temp());
    CFS_TRY(sys::write_all(fd.get(), content));
    return link(fd.get(), d);
  }

  class Writer final : public splitstream::ObjectWriter {
   public:
    Writer(DirObjects& o, UniqueFd fd)
        : o_(o), fd_(std::move(fd)), hasher_(verity::Params{o.alg_, 4096, {}}) {}
    Status write(std::span<const std::byte> data) override {
      if (!o_.write_) {
        hasher_.update(data);
        return {};
      }
      return sys::write_all(fd_.get(), data);
    }
    Result<verity::Digest> commit() override {
      if (!o_.write_) return hasher_.finish();
      CFS_ASSIGN(verity::Digest d, verity::digest_fd(fd_.get(), {o_.alg_, 4096, {}}, "object", 1));
      CFS_TRY(o_.link(fd_.get(), d));
      return d;
    }

   private:
    DirObjects& o_;
    UniqueFd fd_;
    verity::Hasher hasher_;
  };

  Result<std::unique_ptr<splitstream::ObjectWriter>> begin(std::uint64_t size) override {
    bytes_ += size;
    UniqueFd fd;
    if (write_) {
      CFS_ASSIGN(fd, temp());
    }
    auto w = std::make_unique<Writer>(*this, std::move(fd));
    return std::unique_ptr<splitstream::ObjectWriter>(std::move(w));
  }

  splitstream::ObjectOpener opener() const {
    return [this](const verity::Digest& d) { return sys::open(path(d), O_RDONLY); };
  }

  std::string path(const verity::Digest& d) const {
    std::string h = d.hex();
    return dir_ + "/" + h.substr(0, 2) + "/" + h.substr(2);
  }
  std::uint64_t bytes() const { return bytes_; }

 private:
  Result<UniqueFd> temp() const { return sys::open(dir_, O_TMPFILE | O_RDWR, 0644); }
  Status link(int fd, const verity::Digest& d) const {
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, path(d).c_str(), AT_SYMLINK_FOLLOW) != 0 &&
        errno != EEXIST)
      return fail_errno("link " + path(d));
    return {};
  }

  std::string dir_;
  verity::HashAlg alg_;
  bool write_;
  std::atomic<std::uint64_t> bytes_{0};
};

}  // namespace cfs::testtools
