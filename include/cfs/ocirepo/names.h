// SPDX-License-Identifier: Apache-2.0
// How OCI images are named in a repository (composefs-rs' names, so either tool reads what the
// other wrote; ../shared/reference/oci-repository.md §2.3):
//
//   streams/oci-layer-<diff_id>       a layer tar as a splitstream (content type "ocilayer")
//   streams/oci-config-<digest>       the config JSON as one object ("ociconfg"); named refs:
//                                     <diff_id> -> layer stream, composefs.image.v1 -> image
//   streams/oci-manifest-<digest>     the manifest JSON as one object ("ocimanif"); named refs:
//                                     config:<digest> -> config stream, <diff_id> -> layers
//   streams/oci-blob-<digest>         a compressed layer blob exactly as pulled (`cfs oci pull
//                                     --keep-blobs`): one external object ("oci_blob"); the
//                                     manifest stream names it by the named ref <digest>, so
//                                     gc keeps it as long as the manifest
//   streams/refs/oci/<encoded tag>    -> the manifest stream: a tag (a GC root)
//
// A tag is encoded as one path component: '%' -> "%25" first, then '/' -> "%2F".
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

#include "cfs/oci/digest.h"
#include "cfs/util/result.h"

namespace cfs::ocirepo {

/// Directory of tags below streams/refs/.
inline constexpr std::string_view kTagDir = "oci";
/// Named ref of a config stream to the merged format-1 image (composefs-rs' V1 name).
inline constexpr std::string_view kImageRefV1 = "composefs.image.v1";
/// Prefix of a manifest stream's named ref to its config stream.
inline constexpr std::string_view kConfigRefPrefix = "config:";

std::string layer_stream_name(const oci::ContentDigest& diff_id);
std::string config_stream_name(const oci::ContentDigest& digest);
std::string manifest_stream_name(const oci::ContentDigest& digest);
std::string blob_stream_name(const oci::ContentDigest& digest);

std::string encode_tag(std::string_view tag);
/// Inverse of encode_tag (kInvalidInput for a '%' escape it never writes).
Result<std::string> decode_tag(std::string_view encoded);
/// The ref name below streams/refs/ for a tag: "oci/<encoded>". Empty tags and tags starting
/// with '@' (reserved, as in composefs-rs) are kInvalidInput.
Result<std::string> tag_ref(std::string_view tag);

}  // namespace cfs::ocirepo
