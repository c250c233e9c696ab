// SPDX-License-Identifier: Apache-2.0
// The fan-out directories of an object store (STORE/ab/ for the objects whose names start with
// "ab", cfs/tree/object_name.h), each opened once, and which object names are known to be
// absent, so that adding a new object needs no lookup of its name first.
//
// Why: a negative lookup of each new object's name in its fan-out directory was 13.5 % of the
// CPU time of filling an empty store (session 8 profile, docs/design.md). Here each directory
// is listed once, when an object first goes to it (a directory made by this process is empty,
// no listing), and the listed names are kept as 64-bit keys (bytes 1-8 of the digest). probe()
// then answers "known absent" when neither the listing nor an earlier probe of this process
// had the key, and records the key: from then on that key answers "may exist", so a second
// add of the same content (or another digest sharing the key, which an attacker could craft)
// takes the full check as before. "Known absent" only holds for this process's view: another
// process may add the same object at any time, which the writer learns from linkat's EEXIST
// and must take as "already there" (a lost race), exactly as without this index.
//
// Thread-safety: probe() and dir() may be called from many threads; one mutex per fan-out
// directory.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::store {

class FanoutDirs {
 public:
  /// root_fd: the store's directory (not owned; must outlive this); `what` names it in errors.
  FanoutDirs(int root_fd, std::string what);
  ~FanoutDirs();
  FanoutDirs(const FanoutDirs&) = delete;
  FanoutDirs& operator=(const FanoutDirs&) = delete;

  struct Probe {
    int dirfd = -1;             ///< the digest's fan-out directory (owned by FanoutDirs)
    bool known_absent = false;  ///< no object of that name as far as this process knows
  };

  /// Opens (creating, mode 0755) the digest's fan-out directory and lists it, both the first
  /// time only; says whether the digest's name is known to be absent, and records it. A
  /// directory over 256 KiB (~900k objects in the store) is not listed: "may exist" there.
  Result<Probe> probe(const verity::Digest& digest);

  /// The digest's fan-out directory (opened, or made, once; not listed, nothing recorded): for
  /// a writer that only names objects relative to it.
  Result<int> dir(const verity::Digest& digest);

 private:
  struct Dir;
  Result<Dir*> open_dir(std::size_t index, bool list);

  int root_fd_;
  std::string what_;
  std::array<std::unique_ptr<Dir>, 256> dirs_;
};

}  // namespace cfs::store
