// SPDX-License-Identifier: Apache-2.0
// Fuzzes what the registry client parses from the network and the command line: image
// references (a parsed reference must print as a reference that parses to the same value),
// WWW-Authenticate challenges, auth-file keys, and manifest/index descriptors (an index the
// client extends must parse again with the new entry). Any crash or mismatch is a bug.
#include <cstdint>
#include <string>
#include <string_view>

#include "cfs/registry/reference.h"
#include "fuzz_target.h"
#include "registry/challenge.h"
#include "registry/descriptors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace cfs::registry;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto r = parse_reference(text)) {
    auto again = parse_reference(r->str());
    FUZZ_CHECK(again.has_value(), "a printed reference does not parse");
    FUZZ_CHECK(again->registry == r->registry && again->repository == r->repository &&
                   again->tag == r->tag && again->digest == r->digest,
               "reference round trip changed it");
  }
  for (const auto& ch : detail::parse_challenges(text))
    FUZZ_CHECK(!ch.scheme.empty(), "empty scheme");
  if (auto k = normalize_registry_key(text)) {
    auto again = normalize_registry_key(*k);
    FUZZ_CHECK(again && *again == *k, "a normalised key is not stable");
  }
  for (auto type : {kOciManifest, kOciIndex}) {
    auto children = detail::manifest_children(text, type, "fuzz");
    (void)children;
  }
  auto d = cfs::oci::ContentDigest::parse("sha256:" + std::string(64, 'e')).value();
  (void)detail::referrer_of(text, kOciManifest, d);
  Descriptor added;
  added.media_type = kOciManifest;
  added.digest = d;
  added.size = 1;
  added.artifact_type = "a/b";
  if (auto idx = detail::add_to_index(text, added); idx && *idx) {
    auto listed = detail::manifest_children(**idx, kOciIndex, "extended");
    FUZZ_CHECK(listed.has_value(), "an extended index does not parse");
    bool found = false;
    for (const auto& e : *listed) found = found || e.digest == d;
    FUZZ_CHECK(found, "the added descriptor is missing");
  }
  return 0;
}
