// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/image_source.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

namespace cfs::registry {
namespace {

// One blob download feeding a reader: the fetch thread is the BlobSink side, read() the
// ByteSource side, a bounded queue of chunks between them.
class StreamingBlob final : public oci::ByteSource, private BlobSink {
 public:
  StreamingBlob(Client& client, const Reference& repo, oci::ContentDigest digest,
                const SourceOptions& options)
      : digest_(std::move(digest)), limit_(options.buffer_bytes) {
    thread_ = std::thread([this, &client, repo, dir = options.download_dir] {
      Status st =
          client.fetch_blob(repo, BlobFetch{digest_, std::nullopt, this}, FetchOptions{dir, false});
      std::lock_guard lock(mu_);
      done_ = true;
      if (!st) error_ = std::move(st).error();
      cv_.notify_all();
    });
  }

  ~StreamingBlob() override {
    {
      std::lock_guard lock(mu_);
      cancelled_ = true;
      cv_.notify_all();
    }
    thread_.join();
  }

  Result<std::size_t> read(std::span<std::byte> buf) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !chunks_.empty() || done_; });
    if (chunks_.empty()) {
      if (error_) return fail(*error_);
      return std::size_t{0};  // the client verified the digest: the end is real
    }
    std::string& front = chunks_.front();
    const std::size_t n = std::min(buf.size(), front.size() - front_offset_);
    std::memcpy(buf.data(), front.data() + front_offset_, n);
    front_offset_ += n;
    buffered_ -= n;
    consumed_ += n;
    if (front_offset_ == front.size()) {
      chunks_.pop_front();
      front_offset_ = 0;
    }
    cv_.notify_all();
    return n;
  }

  // fetch_blob ends the stream only after the bytes matched the digest (a mismatch is an
  // error, and a restart after the reader took bytes is refused): the reader need not hash it.
  const oci::ContentDigest* verified_digest() const override { return &digest_; }

 private:
  Status write(std::span<const std::byte> data) override {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return buffered_ < limit_ || cancelled_; });
    if (cancelled_) return fail_errno("blob reader gone", ECANCELED);
    chunks_.emplace_back(reinterpret_cast<const char*>(data.data()), data.size());
    buffered_ += data.size();
    cv_.notify_all();
    return {};
  }

  // A resumed download whose saved prefix was damaged starts over: possible only while the
  // reader has taken nothing yet.
  Status restart() override {
    std::lock_guard lock(mu_);
    if (consumed_ > 0) return BlobSink::restart();
    chunks_.clear();
    front_offset_ = 0;
    buffered_ = 0;
    return {};
  }

  const oci::ContentDigest digest_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> chunks_;
  std::size_t front_offset_ = 0;
  std::size_t buffered_ = 0;
  std::uint64_t consumed_ = 0;
  std::size_t limit_;
  bool done_ = false;
  bool cancelled_ = false;
  std::optional<Error> error_;
  std::thread thread_;  // last: started after every member above exists
};

class RegistrySource final : public oci::ImageSource {
 public:
  RegistrySource(Client& client, Reference ref, std::string name, SourceOptions options)
      : client_(client), ref_(std::move(ref)), name_(std::move(name)), options_(options) {}

  const std::string& name() const noexcept override { return name_; }

  Result<std::pair<oci::RawManifest, std::optional<oci::Descriptor>>> top() override {
    CFS_ASSIGN(auto m, client_.get_manifest(ref_));
    // The client checked the bytes against the digest asked for or the registry's
    // Docker-Content-Digest; resolve_image checks them again against this descriptor.
    oci::Descriptor d;
    d.media_type = m.media_type;
    d.digest = m.digest;
    d.size = m.bytes.size();
    return std::make_pair(oci::RawManifest{std::move(m.bytes), std::move(m.media_type)},
                          std::make_optional(std::move(d)));
  }

  Result<oci::RawManifest> manifest(const oci::Descriptor& d) override {
    CFS_ASSIGN(auto m, client_.get_manifest(ref_.with_digest(d.digest.str())));
    return oci::RawManifest{std::move(m.bytes), std::move(m.media_type)};
  }

  Result<std::unique_ptr<oci::ByteSource>> blob(const oci::ContentDigest& d) override {
    return std::unique_ptr<oci::ByteSource>(
        std::make_unique<StreamingBlob>(client_, ref_, d, options_));
  }

  Result<std::uint64_t> blob_size(const oci::ContentDigest& d) override {
    CFS_ASSIGN(auto info, client_.stat_blob(ref_, d));
    if (!info) return fail(Errc::kObjectMissing, ref_.str() + ": no blob " + d.str());
    return info->size;
  }

 private:
  Client& client_;
  Reference ref_;
  std::string name_;
  SourceOptions options_;
};

}  // namespace

bool is_registry_reference(std::string_view reference) {
  return reference.starts_with("docker://");
}

Result<std::unique_ptr<oci::ImageSource>> open_registry_source(Client& client,
                                                               std::string_view reference,
                                                               const SourceOptions& options) {
  if (!is_registry_reference(reference))
    return fail(Errc::kInvalidInput,
                std::string(reference) + ": not a registry reference (docker://HOST/NAME:TAG)");
  CFS_ASSIGN(auto ref, parse_reference(reference));
  return std::unique_ptr<oci::ImageSource>(
      std::make_unique<RegistrySource>(client, std::move(ref), std::string(reference), options));
}

}  // namespace cfs::registry
