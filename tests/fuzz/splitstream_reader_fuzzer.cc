// SPDX-License-Identifier: Apache-2.0
// Fuzzes the splitstream reader with untrusted files: header (both layouts), info, reference
// tables, named refs, and every chunk of the stream. Any crash, sanitizer report, hang or
// unbounded allocation is a bug; errors are expected. Inline bytes read must never exceed the
// stream_size the file declares.
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "cfs/splitstream/reader.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  cfs::UniqueFd fd(::memfd_create("fuzz", MFD_CLOEXEC));
  if (!fd || ::write(fd.get(), data, size) != static_cast<ssize_t>(size)) return 0;
  auto r = cfs::splitstream::Reader::open(std::move(fd), "fuzz");
  if (!r) return 0;
  (void)r->named_ref("config");
  static std::array<std::byte, 4096> buf;
  for (int steps = 0; steps < 100000; ++steps) {
    auto n = r->read_inline(buf);
    if (!n) return 0;
    if (r->inline_read() > r->stream_size()) {
      std::fprintf(stderr, "splitstream_reader_fuzzer: read past stream_size\n");
      std::abort();
    }
    if (*n > 0) continue;
    auto e = r->next_external();
    if (!e || !*e) break;
    if ((*e)->index >= r->object_refs().size()) std::abort();
  }
  return 0;
}
