#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: vm;root
# ctest-timeout: 600
# ctest-cost: 16
# ctest-lock: vm
"""docs/by-hand.md on a kernel WITH fs-verity: every command block of the page runs, in order,
inside a throw-away VM (the Debian cloud kernel and QEMU set-up of test_vm_verity.py), and
must succeed and print what the page shows, including the blocks marked needs-verity that
integration.test_docs_by_hand can only check for their documented failure on this host.

The guest runs the host's own bash, coreutils, util-linux, e2fsprogs, erofs-utils, attr,
fsverity and cfs binaries (copied with their libraries), so outputs are comparable with the
host run."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cfs_testlib as t  # noqa: E402
import docrun  # noqa: E402

PAGE = os.path.join(t.SOURCE_DIR, "docs", "by-hand.md")
# Programs the page runs, by the name it uses. Shell builtins (printf, echo, cd) need nothing.
GUEST_TOOLS = ["bash", "mkdir", "truncate", "mkfs.ext4", "mount", "umount", "seq", "tail",
               "losetup", "fsverity", "ls", "cp", "rm", "stat", "setfattr", "getfattr",
               "mkfs.erofs", "od", "cat", "head"]
CFS_NAMES = ["cfs", "mkcomposefs", "composefs-info", "mount.composefs"]
MODULES = ["lib/libcrc32c", "crypto/crc32c_generic", "drivers/block/loop", "fs/erofs/erofs",
           "fs/overlayfs/overlay"]

GUEST_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for i in 1 2; do for m in /lib/modules/*.ko; do insmod "$m" 2>/dev/null; done; done
mount -t tmpfs -o size=768m tmp /tmp
. /params
mkdir -p "$WORK" "$RESULTS"
echo "GUEST: kernel $(uname -r)"
cd "$WORK" && env -i PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
  LC_ALL=C HOME=/root /usr/local/bin/bash /script.sh >/dev/null 2>&1
echo "GUEST-RC $?"
for f in "$RESULTS"/*; do
  echo "@@FILE ${f##*/}"; base64 "$f"; echo "@@END"
done
echo GUEST-DONE
poweroff -f
"""


def import_vm_helpers():
    try:
        import test_vm_verity as vm  # noqa: E402 (kernel download, initramfs helpers, boot)
    except ImportError as e:
        t.skip(f"VM helpers (tests/vm/test_vm_verity.py) unavailable: {e}")
    return vm


def build_initramfs(vm, w, moddir, script, work, results):
    r = os.path.join(w, "initramfs")
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc", "root", "lib/modules", "usr/local/bin"):
        os.makedirs(os.path.join(r, d), exist_ok=True)
    shutil.copy2(shutil.which("busybox"), os.path.join(r, "bin", "busybox"))
    for name in GUEST_TOOLS:
        path = shutil.which(name)
        if not path:
            t.skip(f"host tool {name} missing")
        real = os.path.realpath(path)
        vm.copy_with_libs(real, r)
        # Under the name the page uses (mkfs.ext4 must not run as plain mke2fs).
        os.symlink(real, os.path.join(r, "usr", "local", "bin", name))
    cfs = os.path.realpath(t.tool("cfs"))
    vm.copy_with_libs(cfs, r)  # for its libraries; the build tree may be under /tmp, which
    shutil.copy2(cfs, os.path.join(r, "usr", "local", "bin", "cfs"))  # the guest hides
    for name in CFS_NAMES[1:]:
        os.symlink("cfs", os.path.join(r, "usr", "local", "bin", name))
    for conf in ("/etc/mke2fs.conf",):
        if os.path.exists(conf):
            shutil.copy(conf, os.path.join(r, "etc"))
    open(os.path.join(r, "etc", "fstab"), "w").close()
    os.symlink("/proc/self/mounts", os.path.join(r, "etc", "mtab"))
    for m in MODULES:
        found = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(moddir, "kernel"))
                 for f in fs if os.path.join(dp, f).split("/kernel/", 1)[1].startswith(m + ".ko")]
        if not found:
            continue  # built into the kernel
        dst = os.path.join(r, "lib", "modules", os.path.basename(m) + ".ko")
        f = found[0]
        if f.endswith(".xz"):
            with open(dst, "wb") as out:
                subprocess.run(["xz", "-dc", f], stdout=out, check=True)
        elif f.endswith(".zst"):
            with open(dst, "wb") as out:
                subprocess.run(["zstd", "-dqc", f], stdout=out, check=True)
        else:
            shutil.copy(f, dst)
    # Module load order matters (crc32c before users); names sort usefully enough except loop.
    with open(os.path.join(r, "params"), "w") as f:
        f.write(f'WORK="{work}"\nRESULTS="{results}"\n')
    shutil.copy(script, os.path.join(r, "script.sh"))
    with open(os.path.join(r, "init"), "w") as f:
        f.write(GUEST_INIT)
    os.chmod(os.path.join(r, "init"), 0o755)
    out = os.path.join(w, "initramfs.gz")
    files = subprocess.run(["find", "."], cwd=r, capture_output=True, check=True).stdout
    cp = subprocess.run(["cpio", "-o", "-H", "newc"], cwd=r, input=files, capture_output=True,
                        check=True).stdout
    with open(out, "wb") as f:
        subprocess.run(["gzip", "-1"], input=cp, stdout=f, check=True)
    return out


def unpack_results(console, results):
    for m in re.finditer(r"^@@FILE (\S+)\n(.*?)^@@END$", console, re.S | re.M):
        import base64
        with open(os.path.join(results, m.group(1)), "wb") as f:
            f.write(base64.b64decode(m.group(2)))


def main():
    t.require_root()
    for tool in ("qemu-system-x86_64", "busybox", "cpio", "gzip", "dpkg-deb", "ldd"):
        if not shutil.which(tool):
            t.skip(f"missing host tool {tool} (scripts/install-deps.sh)")
    vm = import_vm_helpers()
    deb, kver = vm.kernel_package()
    vmlinuz, moddir = vm.unpack_kernel(deb, kver)
    blocks = docrun.parse(PAGE)
    w = tempfile.mkdtemp(prefix="cfs-docvm-")
    ok = False
    try:
        work, results = os.path.join(w, "w"), os.path.join(w, "r")
        os.makedirs(results)

        def runner(script):
            initrd = build_initramfs(vm, w, moddir, script, work, results)
            with open(os.path.join(w, "disk.img"), "wb") as f:
                f.truncate(1 << 20)  # boot() attaches one disk; the page makes its own
            accel = os.environ.get("CFS_VM_ACCEL", "auto")
            if accel == "auto":
                accel = "kvm" if os.path.exists("/dev/kvm") and not os.path.isdir(
                    "/sys/module/kvm_pvm") else "tcg"
            text = vm.boot(w, vmlinuz, initrd, accel)
            if "GUEST-DONE" not in text and accel == "kvm":
                text = vm.boot(w, vmlinuz, initrd, "tcg")
            if "GUEST-DONE" not in text and "Kernel panic" in text:
                text = vm.boot(w, vmlinuz, initrd, "tcg", smp=1)
            if "GUEST-DONE" not in text:
                print(text[-4000:])
                raise AssertionError("the guest did not finish")
            unpack_results(text, results)

        res = docrun.run(blocks, work, results, have_verity=True, runner=runner)
        problems = docrun.check(res, have_verity=True)
        for p in problems:
            print(p + "\n")
        print(f"{len(res)} blocks run in the VM, {len(problems)} problems")
        ok = not problems
    finally:
        if ok:
            shutil.rmtree(w, ignore_errors=True)
        else:
            print(f"scratch directory kept: {w}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
