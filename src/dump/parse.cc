// SPDX-License-Identifier: Apache-2.0
#include "cfs/dump/parse.h"

namespace cfs::dump {

Result<Tree> parse(std::string_view, const ParseOptions& opts) {
  return fail(Errc::kUnsupportedFeature, opts.source_name + ": dump parser not implemented yet");
}

Result<Tree> parse_file(const std::string& path, const ParseOptions&) {
  return fail(Errc::kUnsupportedFeature, path + ": dump parser not implemented yet");
}

}  // namespace cfs::dump
