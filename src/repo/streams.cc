// SPDX-License-Identifier: Apache-2.0
#include "cfs/repo/streams.h"

#include "cfs/splitstream/reader.h"
#include "cfs/util/sys.h"

namespace cfs::repo {

Result<std::uint64_t> cat_stream(const Repository& repo, std::string_view name, int out_fd) {
  CFS_ASSIGN(auto stream, repo.resolve_stream(name));
  CFS_ASSIGN(auto fd, repo.open_object(stream.first));
  splitstream::ReaderOptions o;
  o.algorithm = repo.algorithm();
  CFS_ASSIGN(auto reader, splitstream::Reader::open(std::move(fd),
                                                    repo.path() + "/streams/" + stream.second, o));
  std::uint64_t written = 0;
  auto write = [&](std::span<const std::byte> bytes) -> Status {
    auto st = sys::write_all(out_fd, bytes);
    if (st) written += bytes.size();
    return st;
  };
  auto st = reader.reassemble([&](const verity::Digest& d) { return repo.open_object(d); }, write);
  if (!st) return fail(std::move(st).error());
  return written;
}

}  // namespace cfs::repo
