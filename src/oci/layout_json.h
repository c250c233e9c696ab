// SPDX-License-Identifier: Apache-2.0
// The JSON the local transports read before any blob (source.cc): which image an OCI layout's
// index.json or a docker archive's manifest.json names. Apart from the file access so that
// tests/fuzz/oci_json_fuzzer.cc reaches them with any bytes.
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/image.h"
#include "cfs/util/result.h"

namespace cfs::oci::detail {

/// The index.json entry `tag` names (kRefNameAnnotation), or without a tag its only entry;
/// nullopt when it has one entry per platform, so index.json itself is the index to choose from.
/// kInvalidInput naming `what` (the layout) and the tags it has otherwise.
Result<std::optional<Descriptor>> layout_entry(const Index& index, std::string_view tag,
                                               const std::string& what);

/// One image of a docker archive's manifest.json: the members holding its config and layers.
struct DockerArchiveImage {
  std::string config;
  std::vector<std::string> layers;
};

/// The manifest.json entry whose RepoTags has `ref`, or without one its only entry.
/// kInvalidInput naming `what` (the archive), the entry and the field otherwise.
Result<DockerArchiveImage> docker_archive_image(std::string_view raw, std::string_view ref,
                                                const std::string& what);

}  // namespace cfs::oci::detail
