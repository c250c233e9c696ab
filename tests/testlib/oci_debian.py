# SPDX-License-Identifier: Apache-2.0
"""A realistic two-layer OCI image, built with Debian's own tools and cached, for the OCI tests
and bench/oci.sh:

  layer 1  a Debian bookworm minbase rootfs (`debootstrap --variant=minbase`, from the Debian
           mirror apt is configured with), /dev emptied as container images ship it, inserted
           with `umoci insert`;
  layer 2  `umoci unpack`, then packages installed with `dpkg -i` in a chroot (.debs fetched on
           the host with `apt-get download`) and files and directories deleted, then
           `umoci repack`, which writes the deletions as real whiteouts.

The layout lands in CACHE/layout (tag `bookworm`) whole or not at all: it is built under a
temporary name and renamed; CACHE/build.json records what went in and what it cost.

  python3 tests/testlib/oci_debian.py [CACHE]    builds the cache if missing, prints the layout
"""
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

CACHE = os.environ.get("CFS_OCI_DEBIAN_CACHE", "/var/cache/cfs-oci-debian")
TAG = "bookworm"
# Installed by layer 2; libcap2-bin first so iputils-ping's postinst gives ping a file
# capability (a security.capability xattr, the one xattr composefs-rs keeps).
PACKAGES = ["hello", "tree", "libcap2-bin", "iputils-ping"]
# Deleted by layer 2: whole directories and single files, none owned by PACKAGES.
DELETED = ["/usr/share/info", "/usr/share/doc/apt", "/usr/share/doc/bash", "/var/log/dpkg.log",
           "/var/log/apt", "/etc/motd", "/var/cache/debconf/templates.dat-old"]


def mirror():
    """The Debian mirror apt uses here (CFS_DEBIAN_MIRROR overrides)."""
    if os.environ.get("CFS_DEBIAN_MIRROR"):
        return os.environ["CFS_DEBIAN_MIRROR"]
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            for stanza in f.read().split("\n\n"):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if "bookworm" in fields.get("Suites", "").split() and "deb" in fields.get(
                        "Types", "").split():
                    return fields["URIs"].split()[0]
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    w = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                    if len(w) >= 3 and w[0] == "deb" and w[2] == "bookworm":
                        return w[1]
    # Only apt's own mirror is reachable from CI machines: never guess another host.
    raise RuntimeError("no bookworm mirror in /etc/apt/sources.list*; set CFS_DEBIAN_MIRROR")


def run(args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kw)


def build(cache=CACHE, log=sys.stderr):
    """Returns CACHE/layout, building it first when missing (root, network to the mirror)."""
    layout = os.path.join(cache, "layout")
    if os.path.exists(layout):
        return layout
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(layout):
            return layout
        work = tempfile.mkdtemp(prefix="build-", dir=cache)
        try:
            _build(work, log)
            os.rename(os.path.join(work, "layout"), layout)
            os.replace(os.path.join(work, "build.json"), os.path.join(cache, "build.json"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return layout


def _build(work, log):
    start = time.monotonic()
    rootfs, image = os.path.join(work, "rootfs"), os.path.join(work, "layout") + ":" + TAG
    print(f"oci_debian: debootstrap --variant=minbase bookworm from {mirror()} ...", file=log,
          flush=True)
    run(["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror()])
    t_debootstrap = time.monotonic() - start
    for name in os.listdir(os.path.join(rootfs, "dev")):
        p = os.path.join(rootfs, "dev", name)
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    run(["umoci", "init", "--layout", os.path.join(work, "layout")])
    run(["umoci", "new", "--image", image])
    run(["umoci", "insert", "--image", image, rootfs, "/"])
    shutil.rmtree(rootfs)

    # Layer 2: unpack, install, delete, repack.
    bundle = os.path.join(work, "bundle")
    run(["umoci", "unpack", "--image", image, bundle])
    root = os.path.join(bundle, "rootfs")
    debs = os.path.join(work, "debs")
    os.mkdir(debs)
    run(["apt-get", "download", *PACKAGES], cwd=debs)
    incoming = os.path.join(root, "tmp", "debs")
    shutil.copytree(debs, incoming)
    null = os.path.join(root, "dev", "null")  # maintainer scripts write to /dev/null
    os.mknod(null, 0o20666, os.makedev(1, 3))
    try:
        run(["chroot", root, "sh", "-c", "dpkg -i /tmp/debs/*.deb"],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"})
    finally:
        os.unlink(null)
    shutil.rmtree(incoming)
    for path in DELETED:
        p = root + path
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
    run(["umoci", "repack", "--image", image, bundle])
    run(["umoci", "gc", "--layout", os.path.join(work, "layout")])
    shutil.rmtree(bundle)
    with open(os.path.join(work, "build.json"), "w") as f:
        json.dump({"seconds": round(time.monotonic() - start, 1),
                   "debootstrap_seconds": round(t_debootstrap, 1), "mirror": mirror(),
                   "tag": TAG, "packages": PACKAGES, "deleted": DELETED,
                   "debs": sorted(os.listdir(debs))}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else CACHE))
