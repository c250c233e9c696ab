#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Installs every Debian 12 package that building, testing and benchmarking cfs needs.
# Idempotent; needs root (or sudo). Set CFS_SKIP_APT=1 to only check.
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ clang cmake ninja-build pkg-config clang-format clang-tidy libclang-rt-14-dev lld
  # libraries
  libssl-dev libfuse3-dev libcli11-dev libfmt-dev libexpected-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcurl4-openssl-dev libzstd-dev zlib1g-dev libisal-dev nlohmann-json3-dev libsimdjson-dev
  # runtime tools used by the tests as independent oracles
  fuse3 erofs-utils fsverity attr python3 e2fsprogs util-linux groff-base man-db
  # readelf: the ELF loader oracle of the lazy mount's library prefetch
  binutils
  # OCI and registry oracles: loopback registry, skopeo, umoci, compressors, htpasswd, openssl;
  # debootstrap, the archive keyring and libcap2-bin (setcap) for the cached Debian image
  docker-registry skopeo umoci zstd pigz tar apache2-utils openssl debootstrap libarchive-tools
  debian-archive-keyring libcap2-bin
  # podman (containers/storage 1.43): an outside zstd:chunked reader
  podman
  # VM harness for real kernel fs-verity tests
  qemu-system-x86 busybox-static cpio xz-utils file
  # benchmarks
  hyperfine fuse-overlayfs time
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ "${CFS_SKIP_APT:-0}" = 1 ]; then
  echo "install-deps: missing: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
