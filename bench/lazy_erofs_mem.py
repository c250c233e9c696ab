#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Peak memory of `cfs oci mount --lazy --no-fill` as a function of the lazy artifact's EROFS,
builds alternating in one run (issue 15, docs/design.md "The fetched EROFS is decoded straight
into that memfd"):

  debian    the Debian image pushed with its lazy metadata (an honest 4-5 MB EROFS)
  refused   a small image whose artifact carries its EROFS padded with zeros to --pad-mib, the
            annotation naming the padded bytes' real fs-verity digest (so it is fetched whole
            and hashed), the index naming the original image: refused at the index check
  accepted  the same, the index naming the padded image too (an unsealed artifact's registry
            controls all three): mounted, and registered by the daemon

Since session 20 a zstd EROFS blob decodes to at most 1024 times its size or 64 MiB
(registry::lazy_erofs_limit): with --pad-mib past 64 both padded cases are refused while they
decode (exit 1, at most the bound held); --pad-mib 48 shows the accepted path.

Two numbers per mount: the command's max RSS (/usr/bin/time -v: the process that fetched the
metadata, before it daemonized), which does not count a memfd's pages unless they are mapped and
touched, and the peak of a memory cgroup holding the command and its daemon until 1 s after it
returned (cgroup v1 memory.max_usage_in_bytes, or v2 memory.peak), which does (and also the page
cache of what the registration writes, the same for every build).

  bench/lazy_erofs_mem.py --ab LABEL=BUILD_DIR ... [--runs 3] [--pad-mib 512] [--tmp DIR]

Needs root, docker-registry, skopeo, umoci, zstd, fsverity and a memory cgroup hierarchy."""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time, urllib.request
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402

NOTLS = "--tls-verify=false"
ap = argparse.ArgumentParser()
ap.add_argument("--ab", action="append", required=True, metavar="LABEL=BUILD_DIR")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--pad-mib", type=int, default=512)
ap.add_argument("--image", default="oci:/var/cache/cfs-oci-debian/layout:bookworm")
ap.add_argument("--tmp", default=None)
args = ap.parse_args()
builds = [(s.split("=", 1)[0], os.path.join(os.path.abspath(s.split("=", 1)[1]), "bin", "cfs"))
          for s in args.ab]
if os.path.isdir("/sys/fs/cgroup/memory"):
    cg, peak_file, reset = "/sys/fs/cgroup/memory/cfs-bench-erofs-mem", "memory.max_usage_in_bytes", True
else:
    cg, peak_file, reset = "/sys/fs/cgroup/cfs-bench-erofs-mem", "memory.peak", False
tmp = tempfile.mkdtemp(prefix="lazy-erofs-mem-", dir=args.tmp)
reg = r.Registry()
reg.start()
mnt = os.path.join(tmp, "mnt")
os.makedirs(mnt)
try:
    def http(name, what, data=None, method="GET", ct=None):
        req = urllib.request.Request(f"http://{reg.host}/v2/{name}/{what}", data=data, method=method)
        req.add_header("Accept", "application/vnd.oci.image.manifest.v1+json, "
                                 "application/vnd.oci.image.index.v1+json")
        if ct:
            req.add_header("Content-Type", ct)
        with urllib.request.urlopen(req) as resp:
            return resp.read(), resp.headers

    def put_blob(name, data):
        _, h = http(name, "blobs/uploads/", b"", method="POST")
        loc = h["Location"]
        url = loc if loc.startswith("http") else f"http://{reg.host}{loc}"
        d = r.sha256_bytes(data)
        req = urllib.request.Request(f"{url}{'&' if '?' in url else '?'}digest={d}", data=data,
                                     method="PUT")
        req.add_header("Content-Type", "application/octet-stream")
        urllib.request.urlopen(req).close()
        return d

    def zstd(data, d=False):
        return subprocess.run(["zstd", "-dc" if d else "-c"], input=data, stdout=subprocess.PIPE,
                              check=True).stdout

    cfs0 = builds[0][1]

    def cfs(*a):
        return subprocess.run([cfs0, *a], check=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)

    src = os.path.join(tmp, "src")
    cfs("repo", "init", "--repo", src, "--insecure")
    cfs("oci", "pull", "--repo", src, args.image, "debian")
    cfs("oci", "push", "--repo", src, NOTLS, "--compression=zstd-chunked", "debian",
        reg.ref("bench/debian:v1"))
    layout = os.path.join(tmp, "img")
    r.build_image(layout, "v1", [{"etc/hostname": b"cfs\n", "usr/share/big": os.urandom(1 << 20)}])
    cfs("oci", "pull", "--repo", src, f"oci:{layout}:v1", "app")
    for case in ("refused", "accepted"):
        n = f"bench/{case}"
        cfs("oci", "push", "--repo", src, NOTLS, "--compression=none", "app", reg.ref(f"{n}:v1"))
        raw, _ = http(n, "manifests/v1")
        manifest = r.sha256_bytes(raw)
        listing = json.loads(http(n, "manifests/" + manifest.replace(":", "-"))[0])
        lazy = [m for m in listing["manifests"]
                if m.get("artifactType") == "application/vnd.cfs.lazy-metadata.v1"]
        artifact = json.loads(http(n, "manifests/" + lazy[0]["digest"])[0])
        el = [l for l in artifact["layers"] if "composefs.erofs" in l["mediaType"]][0]
        il = [l for l in artifact["layers"] if "object-index" in l["mediaType"]][0]
        # The EROFS's own fs-verity digest (the seal's key); the compact index the blob carries
        # since session 15 is dropped with its annotation (the padded blob has none), so the
        # mount reads the index layer, which is what the cases edit.
        key, = [k for k in el["annotations"] if k.startswith("composefs.merged.erofs.v1.fsverity-")]
        el["annotations"].pop("vnd.cfs.object-index.v2+zstd", None)
        alg = key.rsplit("-", 2)[1]
        erofs = zstd(http(n, "blobs/" + el["digest"])[0], True)
        padded = os.path.join(tmp, "padded")
        with open(padded, "wb") as f:
            f.write(erofs)
            f.truncate(args.pad_mib << 20)
        got = subprocess.run(["fsverity", "digest", f"--hash-alg={alg}", "--compact", padded],
                             check=True, stdout=subprocess.PIPE).stdout.decode().strip()
        with open(padded, "rb") as f:
            z = zstd(f.read())
        el["digest"], el["size"] = put_blob(n, z), len(z)
        el["annotations"][key] = got
        if case == "accepted":
            index = json.loads(zstd(http(n, "blobs/" + il["digest"])[0], True))
            index["image"] = got
            zi = zstd(json.dumps(index).encode())
            il["digest"], il["size"] = put_blob(n, zi), len(zi)
        raw = json.dumps(artifact).encode()
        http(n, "manifests/" + r.sha256_bytes(raw), raw, method="PUT", ct=artifact["mediaType"])
        # Only the edited v1 artifact: a mount takes the newest lazy artifact listed, and the
        # slim one (v2, since session 16) would carry the honest EROFS.
        listing["manifests"] = [m for m in listing["manifests"]
                                if m.get("artifactType") != "application/vnd.cfs.lazy-metadata.v2"]
        listing["manifests"].append({"mediaType": artifact["mediaType"],
                                     "digest": r.sha256_bytes(raw), "size": len(raw),
                                     "artifactType": "application/vnd.cfs.lazy-metadata.v1"})
        http(n, "manifests/" + manifest.replace(":", "-"), json.dumps(listing).encode(),
             method="PUT", ct=listing["mediaType"])
    os.makedirs(cg, exist_ok=True)
    cases = (("debian", "bench/debian:v1"), ("refused", "bench/refused:v1"),
             ("accepted", "bench/accepted:v1"))
    res = {}
    for _ in range(args.runs):
        for case, ref in cases:
            for label, b in builds:
                repo = os.path.join(tmp, f"repo-{label}")
                subprocess.run(["rm", "-rf", repo], check=True)
                subprocess.run([b, "repo", "init", "--repo", repo, "--insecure"], check=True,
                               stdout=subprocess.DEVNULL)
                if reset:  # v1: the page cache the last run left charged here reclaimed first
                    with open(os.path.join(cg, "memory.force_empty"), "w") as f:
                        f.write("0")
                    with open(os.path.join(cg, peak_file), "w") as f:
                        f.write("0")
                else:  # v2: a fresh group (memory.peak cannot be reset on older kernels)
                    os.rmdir(cg)
                    os.makedirs(cg)
                cmd = (f"echo $$ > {cg}/cgroup.procs; exec /usr/bin/time -v {b} oci mount --lazy "
                       f"--no-fill --repo {repo} {NOTLS} {reg.ref(ref)} {mnt}")
                p = subprocess.run(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                err = p.stderr.decode()
                time.sleep(1.0)  # the daemon's registration
                with open(os.path.join(cg, peak_file)) as f:
                    peak = int(f.read()) / 2**20
                rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) / 1024
                mounted = subprocess.run(["mountpoint", "-q", mnt]).returncode == 0
                if mounted:
                    subprocess.run(["umount", mnt], check=True)
                res.setdefault((case, label), []).append(
                    (rss, peak, "mounted" if mounted else f"exit {p.returncode}"))
    print(f"EROFS padded to {args.pad_mib} MiB; medians [ranges] of {args.runs} runs, MiB")
    for case, _ in cases:
        for label, _ in builds:
            v = res[(case, label)]
            a, c = [x[0] for x in v], [x[1] for x in v]
            print(f"{case:9} {label:8} max RSS {statistics.median(a):7.1f} [{min(a):.1f}-{max(a):.1f}]"
                  f"  cgroup peak {statistics.median(c):7.1f} [{min(c):.1f}-{max(c):.1f}]"
                  f"  {sorted(set(x[2] for x in v))}")
    with open("/proc/loadavg") as f:
        print("load average:", " ".join(f.read().split()[:3]))
finally:
    subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    reg.stop()
