// SPDX-License-Identifier: Apache-2.0
// Fuzzes the dump parser (lenient and strict) and, for accepted input, the printer and the
// round trip: print(parse(x)) must parse again to a tree that prints identically, and strict
// mode may only reject more. Any crash, sanitizer report or mismatch is a bug.
#include <cstdint>
#include <string>
#include <string_view>

#include "cfs/dump/parse.h"
#include "cfs/dump/print.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string lenient_dump;
  for (bool strict : {false, true}) {
    cfs::dump::ParseOptions opts;
    opts.strict = strict;
    auto tree = cfs::dump::parse(text, opts);
    if (!tree) {
      FUZZ_CHECK(!tree.error().context().empty(), "error without context");
      continue;
    }
    std::string once;
    cfs::dump::print_dump(*tree, once);
    std::string ls;
    cfs::dump::print_ls(*tree, ls);
    auto again = cfs::dump::parse(once, cfs::dump::ParseOptions{});
    FUZZ_CHECK(again.has_value(), "printed dump does not parse");
    std::string twice;
    cfs::dump::print_dump(*again, twice);
    FUZZ_CHECK(once == twice, "print(parse(print(parse(x)))) differs from print(parse(x))");
    // Strict mode only adds checks: whatever it accepts, lenient mode accepts identically.
    if (!strict)
      lenient_dump = std::move(once);
    else
      FUZZ_CHECK(lenient_dump == once, "strict accepted what lenient parsed differently");
  }
  return 0;
}
