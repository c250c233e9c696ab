// SPDX-License-Identifier: Apache-2.0
// The local transports on hand-made archives that lie (the archives written by skopeo, umoci
// and docker are in tests/integration/test_oci_sources.py).
#include "cfs/oci/source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "testutil/temp_dir.h"
#include "testutil/ustar.h"

namespace cfs::oci {
namespace {

using ::testing::HasSubstr;

// A member whose size (base-256, 2^64 - 512) wraps its end offset past zero: the index scan
// refused it only when the sum did not wrap, and otherwise started again at byte 0, forever
// (oci_json_fuzzer; its input is tests/fuzz/corpus/oci-json/tar-size-wraps-offset).
TEST(Source, ArchiveMemberSizeThatWrapsTheOffsetIsRefused) {
  testutil::TempDir dir;
  ASSERT_TRUE(dir.ok());
  std::string h = testutil::ustar_header("index.json", 0, '0');
  std::memset(h.data() + 124, 0, 12);
  h[124] = '\x80';  // base-256: 0xffff'ffff'ffff'fe00 = 2^64 - 512 in the last 8 bytes
  std::memset(h.data() + 128, 0xff, 6);
  h[134] = '\xfe';
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(h.data() + 148, 8, "%06o", sum);
  for (const char* kind : {"oci-archive:", "docker-archive:"}) {
    auto src = open_source(kind + dir.write("a.tar", h + std::string(1024, '\0')));
    ASSERT_FALSE(src) << kind;
    EXPECT_THAT(src.error().message(),
                HasSubstr("a.tar: member 'index.json' extends past the end of the archive"));
  }
}

}  // namespace
}  // namespace cfs::oci
