// SPDX-License-Identifier: Apache-2.0
#include "cfs/overlay/limits.h"

namespace cfs::overlay {

XattrBudget XattrBudget::cloned(std::size_t count) noexcept {
  XattrBudget b;
  b.count_ = count;
  return b;
}

bool XattrBudget::set(std::size_t key_size, std::size_t value_size,
                      std::optional<std::size_t> replaced) noexcept {
  std::int64_t used = used_;
  std::size_t count = count_;
  const auto key = static_cast<std::int64_t>(key_size);
  if (replaced) {
    // lcfs_node_unset_xattr: the last xattr takes the header with it.
    --count;
    used = count > 0 ? used - (kEntryOverhead + key + static_cast<std::int64_t>(*replaced)) : 0;
  }
  std::int64_t entry = kEntryOverhead + key + static_cast<std::int64_t>(value_size);
  if (count == 0) entry += kHeader;
  // Upstream adds in size_t: a total that went "negative" wraps and fails the check too.
  if (used + entry < 0 || used + entry > kLimit) return false;
  used_ = used + entry;
  count_ = count + 1;
  return true;
}

}  // namespace cfs::overlay
