#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: vm;root
# ctest-timeout: 600
# ctest-cost: 14
# ctest-lock: vm
"""mount.composefs on an old kernel, for real: Debian bookworm's 6.1 cloud kernel (fetched
with `apt-get download`, cached like test_vm_verity.py's) lacks file-backed EROFS, overlayfs'
fsconfig parser, data-only layers, verity=, lowerdir+ and detached layers, so every probe falls
back (loop device, mount(2), plain lower layers, EROFS stacked beneath the overlay, tryverity
without the option). The checks are in guest_init_old.sh."""
import test_vm_verity as vm


def main():
    vm.run_vm(lambda v: [6, 1] <= v < [6, 5],
              ("CONFIG_EXT4_FS=", "CONFIG_OVERLAY_FS=", "CONFIG_EROFS_FS=", "CONFIG_VIRTIO_BLK=",
               "CONFIG_TMPFS_XATTR=y"),
              "guest_init_old.sh")


if __name__ == "__main__":
    main()
