// SPDX-License-Identifier: Apache-2.0
// OCI image JSON (image-spec v1.1: manifest, index, config; Docker's schema 2 manifest and
// manifest list): parsed for reading only. The raw bytes are always kept next to the parsed
// form, because digests are over those bytes: nothing here re-serialises a manifest or config.
// Thread-safety: value types and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/oci/digest.h"
#include "cfs/util/result.h"

namespace cfs::oci {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayer = "application/vnd.docker.image.rootfs.diff.tar";

/// The annotation naming an image in an OCI layout's index.json.
inline constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";

/// Largest manifest or index read (what containerd accepts), and largest config.
inline constexpr std::uint64_t kMaxManifestSize = 4u << 20;
inline constexpr std::uint64_t kMaxConfigSize = 32u << 20;
/// Most layers a manifest may list (parse_manifest refuses more): the kernel's overlayfs stack
/// limit (OVL_MAX_STACK), which containers/storage's overlay driver applies too, so no image
/// podman or Docker (125) can run has more. The OCI spec sets none; without one, a 4 MiB
/// manifest repeating one descriptor ~25k times made a pull merge one layer ~25k times
/// (docs/design.md "A cap on the layers of a manifest").
inline constexpr std::size_t kMaxLayers = 500;

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;  ///< "" when none
  /// "os/arch[/variant]".
  std::string str() const;
  /// Parses "os/arch[/variant]" (kInvalidInput otherwise).
  static Result<Platform> parse(std::string_view text);
  /// The platform this program runs on: linux and the GOARCH name of the CPU (amd64, arm64,
  /// arm with variant v7, 386, ppc64le, s390x, riscv64).
  static Platform current();
  /// True if an index entry for `this` platform serves `want`: same os and architecture, and
  /// the same variant when `want` names one (arm64's "v8" and "" are the same).
  bool serves(const Platform& want) const;
};

struct Descriptor {
  std::string media_type;
  ContentDigest digest;
  std::uint64_t size = 0;
  std::optional<Platform> platform;
  std::map<std::string, std::string> annotations;
  std::string artifact_type;
};

enum class ManifestKind { kManifest, kIndex };

/// Whether raw JSON is an image manifest or an index / manifest list: by its mediaType field,
/// else by `media_type_hint` (a descriptor's or an HTTP Content-Type), else by its shape.
Result<ManifestKind> manifest_kind(std::string_view raw, std::string_view media_type_hint = {});

struct Manifest {
  std::string raw;
  ContentDigest digest;    ///< sha256 of raw
  std::string media_type;  ///< OCI or Docker schema 2
  Descriptor config;
  std::vector<Descriptor> layers;
  std::string artifact_type;
  std::optional<Descriptor> subject;
  std::map<std::string, std::string> annotations;
  /// A container image (its config is an image config), not an artifact.
  bool is_image() const noexcept {
    return config.media_type == kOciConfig || config.media_type == kDockerConfig;
  }
};

struct Index {
  std::string raw;
  ContentDigest digest;
  std::string media_type;
  std::vector<Descriptor> manifests;
};

struct ImageConfig {
  std::string raw;
  ContentDigest digest;
  Platform platform;
  std::vector<ContentDigest> diff_ids;  ///< rootfs.diff_ids, one per layer
};

/// Parsers: `what` names the document in errors, which also name the field. parse_manifest
/// refuses more than kMaxLayers layers: every source (oci:, oci-archive:, docker-archive:'s
/// made-up manifest, docker://, a lazy mount's) reaches the layers only through it.
Result<Manifest> parse_manifest(std::string raw, const std::string& what);
Result<Index> parse_index(std::string raw, const std::string& what);
Result<ImageConfig> parse_config(std::string raw, const std::string& what);

/// The entry of an index for `want` (kInvalidInput listing the platforms it has otherwise).
/// Entries without a platform are skipped; the first match wins.
Result<Descriptor> select_platform(const Index& index, const Platform& want,
                                   const std::string& what);

/// The entry of an OCI layout's index.json that `tag` names (kRefNameAnnotation; the first if
/// several do), or without a tag its only entry; nullopt when it has one entry per platform, so
/// index.json itself is the index to choose from. kInvalidInput naming `what` (the layout) and
/// the tags it has otherwise. The one home of this choice: a pull from the layout (oci:,
/// oci-archive:) and a push from it (registry/layout.cc) pick the same image.
Result<std::optional<Descriptor>> layout_entry(const Index& index, std::string_view tag,
                                               const std::string& what);

}  // namespace cfs::oci
