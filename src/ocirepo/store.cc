// SPDX-License-Identifier: Apache-2.0
#include "ocirepo/store.h"

#include <fmt/format.h>

#include "cfs/splitstream/writer.h"

namespace cfs::ocirepo::detail {

namespace {

class RepoObjectWriter final : public splitstream::ObjectWriter {
 public:
  RepoObjectWriter(repo::Repository& repo, repo::NewObject obj)
      : repo_(repo), obj_(std::move(obj)) {}
  Status write(std::span<const std::byte> data) override { return obj_.write(data); }
  Result<verity::Digest> commit() override { return repo_.commit_object(std::move(obj_)); }
  // The writer hashed the pieces as they passed: the object is not read back.
  Result<verity::Digest> commit_digested(const verity::Digest& digest) override {
    return repo_.commit_object(std::move(obj_), digest);
  }

 private:
  repo::Repository& repo_;
  repo::NewObject obj_;
};

}  // namespace

Status RepoSink::put(const verity::Digest& digest, std::span<const std::byte> content) {
  // Known absent without a lookup in most imports (a fan-out directory is listed once).
  CFS_ASSIGN(bool need, repo_.need_object(digest));
  if (!need) return {};
  CFS_ASSIGN(repo::NewObject obj, repo_.create_object());
  CFS_TRY(obj.write(content));
  // The splitstream writer digested exactly these bytes; commit_object does not do it again.
  CFS_TRY(repo_.commit_object(std::move(obj), digest));
  return {};
}

Result<std::unique_ptr<splitstream::ObjectWriter>> RepoSink::begin(std::uint64_t) {
  CFS_ASSIGN(repo::NewObject obj, repo_.create_object());
  return std::unique_ptr<splitstream::ObjectWriter>(
      std::make_unique<RepoObjectWriter>(repo_, std::move(obj)));
}

Result<splitstream::Reader> open_stream(const repo::Repository& repo, const verity::Digest& stream,
                                        std::uint64_t content_type, const std::string& what) {
  CFS_ASSIGN_CTX(UniqueFd fd, repo.open_object(stream), what);
  splitstream::ReaderOptions o;
  o.algorithm = repo.algorithm();
  o.content_type = content_type;
  return splitstream::Reader::open(std::move(fd), what, o);
}

Result<std::string> read_small_stream(const repo::Repository& repo, splitstream::Reader& reader,
                                      std::uint64_t max, const std::string& what) {
  if (reader.stream_size() > max)
    return fail(Errc::kInvalidInput, fmt::format("{}: {} bytes exceed the limit of {}", what,
                                                 reader.stream_size(), max));
  std::string out;
  out.reserve(reader.stream_size());
  CFS_TRY_CTX(reader.reassemble([&](const verity::Digest& d) { return repo.open_object(d); },
                                [&](std::span<const std::byte> b) -> Status {
                                  out.append(reinterpret_cast<const char*>(b.data()), b.size());
                                  return {};
                                }),
              what);
  return out;
}

Result<verity::Digest> write_document(
    repo::Repository& repo, std::uint64_t content_type, const std::string& raw,
    const std::vector<std::pair<std::string, verity::Digest>>& refs) {
  RepoSink sink(repo);
  splitstream::WriterOptions wo;
  wo.content_type = content_type;
  wo.threads = 1;
  CFS_ASSIGN(auto w, splitstream::Writer::create(sink, wo));
  CFS_TRY(w->write_external(std::as_bytes(std::span(raw))));
  for (const auto& [name, target] : refs) CFS_TRY(w->add_named_ref(name, target));
  CFS_ASSIGN(auto fin, w->finish_object());
  return fin.first;
}

}  // namespace cfs::ocirepo::detail
