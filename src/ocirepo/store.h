// SPDX-License-Identifier: Apache-2.0
// Internal: splitstreams in a repository, as the OCI code writes and reads them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cfs/repo/repository.h"
#include "cfs/splitstream/objects.h"
#include "cfs/splitstream/reader.h"
#include "cfs/util/result.h"

namespace cfs::ocirepo::detail {

/// The repository as a splitstream writer's object sink. put() skips objects the repository
/// has and otherwise writes and commits a new one (the repository computes the digest again
/// and it must agree). Repository::create_object() and commit_object() change no state of the
/// Repository object, so the writer's worker threads call them concurrently.
class RepoSink final : public splitstream::ObjectSink {
 public:
  explicit RepoSink(repo::Repository& repo) : repo_(repo) {}
  verity::HashAlg algorithm() const override { return repo_.algorithm(); }
  Status put(const verity::Digest& digest, std::span<const std::byte> content) override;
  Result<std::unique_ptr<splitstream::ObjectWriter>> begin(std::uint64_t size) override;

 private:
  repo::Repository& repo_;
};

/// Opens the splitstream object `stream`, checking algorithm and content type.
Result<splitstream::Reader> open_stream(const repo::Repository& repo, const verity::Digest& stream,
                                        std::uint64_t content_type, const std::string& what);

/// The whole byte stream of a small splitstream (a manifest or config), up to `max` bytes.
Result<std::string> read_small_stream(const repo::Repository& repo, splitstream::Reader& reader,
                                      std::uint64_t max, const std::string& what);

/// A splitstream holding one document (or blob) as one external object, with named refs;
/// stored as an object, not named.
Result<verity::Digest> write_document(
    repo::Repository& repo, std::uint64_t content_type, const std::string& raw,
    const std::vector<std::pair<std::string, verity::Digest>>& refs);

}  // namespace cfs::ocirepo::detail
