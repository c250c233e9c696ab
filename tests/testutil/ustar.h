// SPDX-License-Identifier: Apache-2.0
// Hand-made ustar archives for unit tests whose expected offsets follow from construction:
// one 512-byte header per entry (no extensions), data padded to 512.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace cfs::testutil {

/// A ustar header with a valid checksum (`link`: a link's target, cut at 100 bytes).
inline std::string ustar_header(const std::string& name, std::uint64_t size, char type,
                                unsigned mode = 0644, unsigned uid = 0, unsigned mtime = 0,
                                const std::string& link = {}) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<std::size_t>(name.size(), 100));
  std::memcpy(h.data() + 157, link.data(), std::min<std::size_t>(link.size(), 100));
  std::snprintf(h.data() + 100, 8, "%07o", mode);
  std::snprintf(h.data() + 108, 8, "%07o", uid);
  std::snprintf(h.data() + 116, 8, "%07o", 0);
  std::snprintf(h.data() + 124, 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(h.data() + 136, 12, "%011o", mtime);
  h[156] = type;
  std::memcpy(h.data() + 257,
              "ustar\0"
              "00",
              8);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  return h;
}

/// `data` padded with zeros to a multiple of 512 bytes.
inline std::string ustar_padded(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}

}  // namespace cfs::testutil
