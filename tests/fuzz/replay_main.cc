// SPDX-License-Identifier: Apache-2.0
// Corpus replay driver: runs every regular file of the given directories (not recursive) or
// the given files through LLVMFuzzerTestOneInput, as libFuzzer would for one input. `.gz`
// files are decompressed first (gzip -dc), so compressed upstream seeds count. Missing
// directories are reported and skipped; exit 77 (skip) when there was no input at all.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "fuzz_target.h"

namespace {

bool read_input(const std::filesystem::path& p, std::string& out) {
  out.clear();
  bool gz = p.extension() == ".gz";
  std::string cmd = "gzip -dc -- '" + p.string() + "' 2>/dev/null";
  FILE* f = gz ? ::popen(cmd.c_str(), "r") : std::fopen(p.c_str(), "rb");
  if (f == nullptr) return false;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  bool ok = std::ferror(f) == 0;
  if (gz) return ::pclose(f) == 0 && ok;
  std::fclose(f);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    fs::path p(argv[i]);
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (const auto& e : fs::directory_iterator(p, ec))
        if (e.is_regular_file(ec)) inputs.push_back(e.path());
    } else if (fs::is_regular_file(p, ec)) {
      inputs.push_back(p);
    } else {
      std::fprintf(stderr, "replay: skipping missing corpus %s\n", argv[i]);
    }
  }
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no corpus inputs found; skipping\n");
    return 77;
  }
  std::size_t ran = 0;
  std::string data;
  for (const auto& p : inputs) {
    if (!read_input(p, data)) {
      std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
      return 1;
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
    ++ran;
  }
  std::printf("replay: %zu inputs ran without crashing\n", ran);
  return 0;
}
