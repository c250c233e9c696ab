// SPDX-License-Identifier: Apache-2.0
// Fuzzes the tar reader through the layer splitter: any input either fails cleanly or splits
// into a splitstream that (1) reassembles to exactly the input and (2) reads back entry by
// entry with LayerReader. Objects stay in memory. Any crash, sanitizer report, mismatch or
// unbounded allocation is a bug.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "cfs/oci/layer_stream.h"
#include "cfs/splitstream/format.h"
#include "fuzz_target.h"

namespace {

using namespace cfs;

class Objects final : public splitstream::ObjectSink {
 public:
  verity::HashAlg algorithm() const override { return verity::HashAlg::kSha256; }
  Status put(const verity::Digest& d, std::span<const std::byte> c) override {
    objects[d.hex()] = std::string(reinterpret_cast<const char*>(c.data()), c.size());
    return {};
  }
  Result<std::unique_ptr<splitstream::ObjectWriter>> begin(std::uint64_t) override {
    return fail(Errc::kInvalidInput, "not used");
  }
  std::map<std::string, std::string> objects;
};

UniqueFd memfd_with(const std::string& s) {
  UniqueFd fd(::memfd_create("f", MFD_CLOEXEC));
  FUZZ_CHECK(fd && ::write(fd.get(), s.data(), s.size()) == static_cast<ssize_t>(s.size()),
             "memfd");
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  Objects objs;
  splitstream::WriterOptions wo;
  wo.content_type = splitstream::kOciLayer;
  wo.threads = 1;
  auto w = splitstream::Writer::create(objs, wo);
  FUZZ_CHECK(w.has_value(), "writer");
  auto src = oci::memory_source(input);
  if (!oci::split_tar(*src, **w, "fuzz")) return 0;
  std::string ss;
  FUZZ_CHECK((*w)->finish([&](std::span<const std::byte> b) {
                   ss.append(reinterpret_cast<const char*>(b.data()), b.size());
                   return Status{};
                 })
                 .has_value(),
             "finish");

  auto r = splitstream::Reader::open(memfd_with(ss), "ss");
  FUZZ_CHECK(r.has_value(), "reopen");
  std::string back;
  auto opener = [&](const verity::Digest& d) -> Result<UniqueFd> {
    return memfd_with(objs.objects.at(d.hex()));
  };
  FUZZ_CHECK(r->reassemble(opener,
                           [&](std::span<const std::byte> b) {
                             back.append(reinterpret_cast<const char*>(b.data()), b.size());
                             return Status{};
                           })
                 .has_value(),
             "reassemble");
  FUZZ_CHECK(back == input, "reassembled stream differs from the input");

  auto r2 = splitstream::Reader::open(memfd_with(ss), "ss");
  FUZZ_CHECK(r2.has_value(), "reopen");
  oci::LayerReader lr(*r2, "fuzz");
  for (int i = 0; i < 100000; ++i) {
    auto e = lr.next();
    FUZZ_CHECK(e.has_value(), "an archive that splits must read back");
    if (!*e) break;
  }
  return 0;
}
