#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What one request costs the registry the lazy benchmarks run against: Debian's
docker-registry (distribution 2.8) on 127.0.0.1, configured as the tests configure it, its CPU
per request (user + system, from /proc/PID/stat) and the wall time per request, by kind.

  bench/registry_cost.py [--requests 200] [--blob-mib 10]

A random blob is uploaded once; then, over one kept-alive connection, each kind of request is
repeated: `GET /v2/` (the ping), a blob HEAD, blob GETs of one range (4 KiB and 80 KiB, at the
start, the middle and the end of the blob) and of 20 ranges spread over it. The point is the
lazy mount's arithmetic: a request costs the registry a fixed amount of CPU on the same cores the
mount and the workload use, whatever its size, and each further range of a multi-range request
costs a part of that again (distribution 2.8 opens a 4 MiB buffered reader per request and
refills it after every seek). bench/README.md "Lazy mounts" has the numbers of this host."""
import argparse
import hashlib
import http.client
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "testlib"))
import cfs_registry as r  # noqa: E402


def cpu_s(pid):
    # utime and stime are the 14th and 15th fields; the command name may hold spaces.
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upload(conn, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn.request("POST", "/v2/bench/cost/blobs/uploads/")
    resp = conn.getresponse()
    resp.read()
    if resp.status != 202:
        sys.exit(f"registry_cost: upload start answered {resp.status}")
    loc = resp.getheader("Location")
    conn.request("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={digest}", body=data)
    resp = conn.getresponse()
    resp.read()
    if resp.status != 201:
        sys.exit(f"registry_cost: upload answered {resp.status}")
    return digest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="requests of each kind")
    ap.add_argument("--blob-mib", type=int, default=10)
    args = ap.parse_args()
    size = args.blob_mib << 20
    with r.Registry(access_log=True) as reg:  # the lazy benchmarks log every request too
        conn = http.client.HTTPConnection("127.0.0.1", reg.port)
        blob = f"/v2/bench/cost/blobs/{upload(conn, os.urandom(size))}"
        spread = ",".join(f"{i * (size // 20)}-{i * (size // 20) + 4095}" for i in range(20))
        kinds = [("GET /v2/ (ping)", "GET", "/v2/", None, 200),
                 ("HEAD blob", "HEAD", blob, None, 200),
                 ("GET 4 KiB at 0", "GET", blob, "bytes=0-4095", 206),
                 ("GET 4 KiB mid-blob", "GET", blob, f"bytes={size // 2}-{size // 2 + 4095}", 206),
                 ("GET 4 KiB at the end", "GET", blob, f"bytes={size - 4096}-{size - 1}", 206),
                 ("GET 80 KiB mid-blob", "GET", blob,
                  f"bytes={size // 2}-{size // 2 + 80 * 1024 - 1}", 206),
                 ("GET 20 ranges of 4 KiB", "GET", blob, f"bytes={spread}", 206)]
        print(f"docker-registry pid {reg.proc.pid}, blob {args.blob_mib} MiB, "
              f"{args.requests} requests of each kind, one kept-alive connection")
        print(f"{'request':<26} {'wall ms':>8} {'registry CPU ms':>16}")
        for label, method, path, rng, want in kinds:
            headers = {"Range": rng} if rng else {}
            t0, c0 = time.perf_counter(), cpu_s(reg.proc.pid)
            for _ in range(args.requests):
                conn.request(method, path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != want:
                    sys.exit(f"registry_cost: {label} answered {resp.status}, not {want}")
            t1, c1 = time.perf_counter(), cpu_s(reg.proc.pid)
            n = args.requests
            print(f"{label:<26} {1000 * (t1 - t0) / n:8.2f} {1000 * (c1 - c0) / n:16.2f}")


if __name__ == "__main__":
    main()
