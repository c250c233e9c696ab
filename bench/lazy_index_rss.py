#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Peak RSS (/usr/bin/time -v) of `cfs oci mount --lazy --no-fill` of a small image whose lazy
metadata artifact carries an honest index, one padded to 200 MB with spaces (valid JSON) and
one padded with ",0" (trailing content: simdjson indexes every byte before it finds out), with
two builds alternating in one run (issue 15, docs/design.md "An object index is parsed only
within what its image can need").

  bench/lazy_index_rss.py BEFORE_CFS AFTER_CFS [--runs 3] [--tmp DIR]

Needs docker-registry, skopeo, umoci and zstd (as the registry tests)."""
import argparse, json, os, re, subprocess, sys, tempfile, urllib.request
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("before")
ap.add_argument("after")
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--tmp", default=None)
args = ap.parse_args()
before, after = args.before, args.after
tmp = tempfile.mkdtemp(prefix="lazy-index-rss-", dir=args.tmp)
reg = r.Registry()
reg.start()
try:
    def http(name, what, data=None, method="GET", ct=None):
        req = urllib.request.Request(f"http://{reg.host}/v2/{name}/{what}", data=data, method=method)
        req.add_header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
        if ct: req.add_header("Content-Type", ct)
        with urllib.request.urlopen(req) as resp:
            return resp.read(), resp.headers
    def put_blob(name, data):
        _, h = http(name, "blobs/uploads/", b"", method="POST")
        loc = h["Location"]; url = loc if loc.startswith("http") else f"http://{reg.host}{loc}"
        d = r.sha256_bytes(data)
        req = urllib.request.Request(f"{url}{'&' if '?' in url else '?'}digest={d}", data=data, method="PUT")
        req.add_header("Content-Type", "application/octet-stream")
        urllib.request.urlopen(req).close()
        return d
    zstd = lambda data, d=False: subprocess.run(["zstd", "-dc" if d else "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout
    cfs = lambda *a, **kw: subprocess.run([after, *a], check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    layout = os.path.join(tmp, "img")
    r.build_image(layout, "v1", [{"etc/hostname": b"cfs\n", "usr/bin/tool": b"#!/bin/sh\necho tool\n" * 10,
                                  "usr/share/big": os.urandom(1 << 20)}])
    src = os.path.join(tmp, "src")
    cfs("repo", "init", "--repo", src, "--insecure")
    cfs("oci", "pull", "--repo", src, f"oci:{layout}:v1", "app")
    name = "cfs/rss"
    for tag, pad, fill in (("honest", 0, b" "), ("padded", 200_000_000, b" "), ("commas", 200_000_000, b",0")):
        cfs("oci", "push", "--repo", src, "--tls-verify=false", "--compression=none", "app", reg.ref(f"{name}-{tag}:v1"))
        if not pad: continue
        n = f"{name}-{tag}"
        raw, _ = http(n, "manifests/v1"); manifest = r.sha256_bytes(raw)
        listing = json.loads(http(n, "manifests/" + manifest.replace(":", "-"))[0])
        lazy = [m for m in listing["manifests"] if m.get("artifactType") == "application/vnd.cfs.lazy-metadata.v1"]
        artifact = json.loads(http(n, "manifests/" + lazy[0]["digest"])[0])
        il = [l for l in artifact["layers"] if "object-index" in l["mediaType"]][0]
        # A mount reads the index layer only when the EROFS layer announces no compact index
        # (since session 15), and takes the v1 artifact only when no slim v2 one is listed (since
        # session 16): the hostile registry this measures sends neither.
        el = [l for l in artifact["layers"] if "composefs.erofs" in l["mediaType"]][0]
        el.get("annotations", {}).pop("vnd.cfs.object-index.v2+zstd", None)
        listing["manifests"] = [m for m in listing["manifests"]
                                if m.get("artifactType") != "application/vnd.cfs.lazy-metadata.v2"]
        index = zstd(http(n, "blobs/" + il["digest"])[0], True)
        z = zstd(index + fill * (pad // len(fill)))
        il["digest"], il["size"] = put_blob(n, z), len(z)
        raw = json.dumps(artifact).encode()
        http(n, "manifests/" + r.sha256_bytes(raw), raw, method="PUT", ct=artifact["mediaType"])
        listing["manifests"].append({"mediaType": artifact["mediaType"], "digest": r.sha256_bytes(raw),
                                     "size": len(raw), "artifactType": "application/vnd.cfs.lazy-metadata.v1"})
        http(n, "manifests/" + manifest.replace(":", "-"), json.dumps(listing).encode(), method="PUT", ct=listing["mediaType"])
        print(f"{tag} index: {len(index) + pad} bytes ({len(z)} compressed)")
    mnt = os.path.join(tmp, "mnt"); os.makedirs(mnt)
    rows = []
    for run in range(args.runs):
        for label, b in (("before", before), ("after", after)):
            for tag in ("honest", "padded", "commas"):
                repo = os.path.join(tmp, f"repo-{label}-{tag}-{run}")
                subprocess.run([b, "repo", "init", "--repo", repo, "--insecure"], check=True, stdout=subprocess.DEVNULL)
                p = subprocess.run(["/usr/bin/time", "-v", b, "oci", "mount", "--lazy", "--repo", repo, "--tls-verify=false",
                                    "--no-fill", reg.ref(f"{name}-{tag}:v1"), mnt], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                err = p.stderr.decode()
                rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1))
                wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", err).group(1)
                status = "mounted" if subprocess.run(["mountpoint", "-q", mnt]).returncode == 0 else "refused"
                if status == "mounted": subprocess.run(["umount", mnt], check=True)
                msg = [l for l in err.splitlines() if l.startswith("cfs:")]
                rows.append((label, tag, rss, wall, status, p.returncode))
                print(f"{label:6} {tag:6} run {run}: maxrss {rss/1024:8.1f} MiB  wall {wall}  exit {p.returncode} {status}  {msg[0][-260:] if msg else ''}", flush=True)
finally:
    reg.stop()
