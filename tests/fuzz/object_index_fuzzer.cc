// SPDX-License-Identifier: Apache-2.0
// Fuzzes the object index parser (ocirepo/object_index.h) with untrusted documents: a lazy
// mount reads one from a registry. Errors are expected; an index that parses must encode to a
// document that parses to the same encoding, and every object it lists must be found.
#include <cstdint>
#include <string>
#include <string_view>

#include "cfs/ocirepo/object_index.h"
#include "fuzz_target.h"
#include "object_index_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cfs::ocirepo;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ix = parse_object_index(text, "fuzz");
  if (!ix) return 0;
  const std::string json = encode_object_index(*ix);
  auto again = parse_object_index(json, "again");
  FUZZ_CHECK(again.has_value(), "an encoded index does not parse");
  FUZZ_CHECK(encode_object_index(*again) == json, "encoding is not stable");
  check_listed_objects(*ix);
  return 0;
}
