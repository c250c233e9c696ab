// SPDX-License-Identifier: Apache-2.0
// Test double for splitstream object storage: objects in memory, opened as memfds, and dumped
// as OBJDIR/xx/rest for the independent decoder.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>

#include "cfs/splitstream/objects.h"
#include "cfs/verity/digest.h"

namespace cfs::splitstream::testing {

inline std::string as_string(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}
inline std::span<const std::byte> as_bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

class MemoryObjects final : public ObjectSink {
 public:
  explicit MemoryObjects(verity::HashAlg alg = verity::HashAlg::kSha256) : alg_(alg) {}

  verity::HashAlg algorithm() const override { return alg_; }

  Status put(const verity::Digest& digest, std::span<const std::byte> content) override {
    std::lock_guard lk(mu_);
    ++puts_;
    objects_.emplace(digest.hex(), as_string(content));
    return {};
  }

  class Writer final : public ObjectWriter {
   public:
    explicit Writer(MemoryObjects& o) : o_(o) {}
    Status write(std::span<const std::byte> d) override {
      data_ += as_string(d);
      return {};
    }
    Result<verity::Digest> commit() override {
      auto d = verity::digest_bytes(as_bytes_of(data_), {o_.alg_, 4096, {}});
      std::lock_guard lk(o_.mu_);
      ++o_.streamed_;
      o_.objects_.emplace(d.hex(), data_);
      return d;
    }

   private:
    MemoryObjects& o_;
    std::string data_;
  };

  Result<std::unique_ptr<ObjectWriter>> begin(std::uint64_t) override {
    return std::unique_ptr<ObjectWriter>(std::make_unique<Writer>(*this));
  }

  ObjectOpener opener() const {
    return [this](const verity::Digest& d) -> Result<UniqueFd> {
      std::lock_guard lk(mu_);
      auto it = objects_.find(d.hex());
      if (it == objects_.end()) return fail(Errc::kObjectMissing, "object " + d.hex());
      UniqueFd fd(::memfd_create("obj", MFD_CLOEXEC));
      if (!fd || ::write(fd.get(), it->second.data(), it->second.size()) !=
                     static_cast<ssize_t>(it->second.size()))
        return fail_errno("memfd");
      ::lseek(fd.get(), 0, SEEK_SET);
      return fd;
    };
  }

  void dump(const std::string& dir) const {
    std::lock_guard lk(mu_);
    for (const auto& [hex, data] : objects_) {
      std::filesystem::create_directories(dir + "/" + hex.substr(0, 2));
      std::ofstream(dir + "/" + hex.substr(0, 2) + "/" + hex.substr(2), std::ios::binary) << data;
    }
  }

  std::size_t size() const {
    std::lock_guard lk(mu_);
    return objects_.size();
  }
  const std::map<std::string, std::string>& objects() const { return objects_; }
  std::size_t streamed() const { return streamed_; }

 private:
  verity::HashAlg alg_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> objects_;
  std::size_t puts_ = 0;
  std::size_t streamed_ = 0;
};

}  // namespace cfs::splitstream::testing
