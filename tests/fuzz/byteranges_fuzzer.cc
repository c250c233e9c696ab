// SPDX-License-Identifier: Apache-2.0
// Fuzzes the multipart/byteranges reader (registry/multipart.h) with untrusted response bodies:
// a lazy mount reads a registry's answer to a request of several ranges with it. The first
// input byte splits the rest into pieces (feeds of different sizes); the ranges asked are fixed
// (those of the corpus files). Errors are expected; whatever is delivered must lie within the
// ranges asked, each range's bytes at most its length, and a finished read must have seen its
// closing boundary.
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_target.h"
#include "registry/multipart.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cfs::registry::detail;
  if (size == 0) return 0;
  const std::size_t step = 1 + data[0] % 64;
  auto body = std::as_bytes(std::span(data + 1, size - 1));
  const std::vector<ByterangesReader::Range> asked{{10, 3}, {100, 5}, {50, 1}};
  std::vector<std::uint64_t> got(asked.size());
  ByterangesReader r("fuzz", "B0UND", asked,
                     [&](std::size_t i, std::span<const std::byte> b) -> cfs::Status {
                       FUZZ_CHECK(i < asked.size(), "a part outside the ranges asked");
                       got[i] += b.size();
                       FUZZ_CHECK(got[i] <= asked[i].length, "more bytes than the range");
                       return {};
                     });
  for (std::size_t off = 0; off < body.size(); off += step) {
    auto st = r.feed(body.subspan(off, std::min(step, body.size() - off)));
    if (!st) return 0;
  }
  if (r.finish())
    for (std::size_t i = 0; i < asked.size(); ++i)
      FUZZ_CHECK(got[i] == 0 || got[i] == asked[i].length, "a part cut short yet finished");
  return 0;
}
