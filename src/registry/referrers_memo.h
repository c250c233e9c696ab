// SPDX-License-Identifier: Apache-2.0
// What a repository remembers of a registry without the referrers API (docs/lazy.md "The
// referrers listing"): every lazy mount lists the image's referrers, and on such a registry
// (docker-registry 2.8) that is the API's 404 and then the fallback tag, one round trip after
// the other. Remembered, a mount asks the tag first (one request), and the API only when there
// is no tag (a registry that has the API since makes none for its pushes).
//
//   REPO/cfs-registries/<registry>   "no-referrers-api <unix seconds>\n", <registry> as the
//                                    reference spells it ("host:port", "[v6]:port", "host")
//
// A hint, never trusted for anything but the order of two requests: written whole or not at
// all (AtomicFile, not fsynced: a crash loses at most the hint), ignored when malformed, larger
// than a line, from the future or older than kReferrersMemoMaxAge (then the API is asked first
// again and the memo renewed), and best effort both ways: a repository that cannot be written
// (read-only) keeps what it had, and the mount goes on as without it. Thread-safety: free
// functions; concurrent writers replace the file whole (the last one wins, with the same hint).
#pragma once

#include <chrono>
#include <string_view>

#include "cfs/repo/repository.h"

namespace cfs::registry::detail {

inline constexpr std::string_view kRegistriesDir = "cfs-registries";
/// A registry upgraded since is noticed at the latest after this long: until then, a referrer
/// pushed since the upgrade to an image that already had a fallback tag is not seen (an older
/// lazy artifact of the same image is used instead; a seal only checked when one is required,
/// which asks the API first).
inline constexpr std::chrono::hours kReferrersMemoMaxAge{24};

/// True when `repo` remembers that `registry` answered the referrers API as a registry without
/// it does, less than kReferrersMemoMaxAge before `now`. Anything else: false.
bool remembers_no_referrers_api(const repo::Repository& repo, std::string_view registry,
                                std::chrono::system_clock::time_point now);

/// Remembers at `now` that `registry` has no referrers API (`absent`), or forgets it. Best effort.
void remember_referrers_api(repo::Repository& repo, std::string_view registry, bool absent,
                            std::chrono::system_clock::time_point now);

}  // namespace cfs::registry::detail
