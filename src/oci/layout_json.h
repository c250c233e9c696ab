// SPDX-License-Identifier: Apache-2.0
// The JSON the docker-archive transport reads before any blob (source.cc): which image a docker
// archive's manifest.json names (an OCI layout's index.json: oci::layout_entry, image.h). Apart
// from the file access so that tests/fuzz/oci_json_fuzzer.cc reaches them with any bytes.
// Thread-safety: pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/image.h"
#include "cfs/util/result.h"

namespace cfs::oci::detail {

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
