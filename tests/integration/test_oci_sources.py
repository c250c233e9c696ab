#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration
# ctest-timeout: 300
"""OCI sources and JSON: oci:, oci-archive: and docker-archive: references resolved to the
manifest, config and layers skopeo sees (skopeo inspect --raw / --config as the oracle),
platform selection in an index, and the import of every layer with both digests checked;
hostile layouts get errors naming what is wrong."""
import hashlib
import json
import os
import shutil

import cfs_testlib as t
import oci_testlib as o


def resolve(ref, *opts, check=True):
    p = o.driver("resolve", *opts, ref, check=check)
    if not check and p.returncode != 0:
        return None, p.stderr.decode()
    return json.loads(p.stdout), p.stderr.decode()


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Sources(t.unittest.TestCase):
    def setUp(self):
        if not o.have("umoci", "skopeo"):
            self.skipTest("needs umoci and skopeo")
        self.d = self.enterContext(t.tempdir("cfs-oci-sources-"))
        self.img = o.UmociImage(self.d)
        root = self.p("root")
        os.makedirs(self.p("root", "usr", "bin"))
        with open(self.p("root", "usr", "bin", "x"), "wb") as f:
            f.write(os.urandom(5000))
        self.img.insert(root)
        os.makedirs(self.p("two", "usr", "lib"))
        with open(self.p("two", "usr", "lib", "y"), "wb") as f:
            f.write(b"y" * 100)
        self.img.insert(self.p("two"))

    def p(self, *parts):
        return os.path.join(self.d, *parts)

    def skopeo_raw(self, ref, *opts):
        return t.run(["skopeo", "inspect", "--raw", *opts, ref]).stdout

    def test_oci_layout_and_archive_match_skopeo(self):
        layout = self.img.layout
        for ref in (f"oci:{layout}:t", f"oci:{layout}"):
            with self.subTest(ref=ref):
                j, _ = resolve(ref)
                raw = self.skopeo_raw(f"oci:{layout}:t")
                self.assertEqual(bytes.fromhex(j["manifest_hex"]), raw)
                self.assertEqual(j["manifest"], digest_of(raw))
                config = json.loads(t.run(["skopeo", "inspect", "--config", "--raw",
                                           f"oci:{layout}:t"]).stdout)
                self.assertEqual([l["diff_id"] for l in j["layers"]], config["rootfs"]["diff_ids"])
                self.assertEqual(j["layers"], [
                    {"mediaType": l["mediaType"], "digest": l["digest"], "size": l["size"],
                     "diff_id": d, "source_size": l["size"]}
                    for l, d in zip(json.loads(raw)["layers"], config["rootfs"]["diff_ids"])])
        archive = self.p("img.tar")
        t.run(["skopeo", "copy", f"oci:{layout}:t", f"oci-archive:{archive}:t"])
        j, _ = resolve(f"oci-archive:{archive}:t")
        raw = self.skopeo_raw(f"oci-archive:{archive}:t")
        self.assertEqual(j["manifest"], digest_of(raw))
        # An archive member's length is known before reading it.
        self.assertEqual([l["source_size"] for l in j["layers"]],
                         [l["size"] for l in json.loads(raw)["layers"]])
        pulled = json.loads(o.driver("pull", f"oci-archive:{archive}:t", self.p("objs"),
                                     self.d).stdout)
        self.assertEqual([l["diff_id"] for l in pulled["layers"]],
                         [l["diff_id"] for l in j["layers"]])

    def test_docker_archive(self):
        archive = self.p("docker.tar")
        t.run(["skopeo", "copy", f"oci:{self.img.layout}:t",
               f"docker-archive:{archive}:example.com/test:1"])
        j, _ = resolve(f"docker-archive:{archive}")
        j2, _ = resolve(f"docker-archive:{archive}:example.com/test:1")
        self.assertEqual(j, j2)
        raw = bytes.fromhex(j["manifest_hex"])
        skopeo = self.skopeo_raw(f"docker-archive:{archive}")
        # The manifest is made up from manifest.json, as skopeo makes it up: same config and
        # layers (skopeo's may differ in media types and formatting).
        ours, theirs = json.loads(raw), json.loads(skopeo)
        self.assertEqual(ours["mediaType"], "application/vnd.docker.distribution.manifest.v2+json")
        self.assertEqual(ours["config"]["digest"], theirs["config"]["digest"])
        self.assertEqual([(l["digest"], l["size"]) for l in ours["layers"]],
                         [(l["digest"], l["size"]) for l in theirs["layers"]])
        self.assertEqual([l["source_size"] for l in j["layers"]],
                         [l["size"] for l in theirs["layers"]])
        if raw == skopeo:
            print("docker-archive: manifest bytes identical to skopeo's")
        config = json.loads(t.run(["skopeo", "inspect", "--config", "--raw",
                                   f"oci:{self.img.layout}:t"]).stdout)
        self.assertEqual([l["diff_id"] for l in j["layers"]], config["rootfs"]["diff_ids"])
        pulled = json.loads(o.driver("pull", f"docker-archive:{archive}", self.p("objs"),
                                     self.d).stdout)
        self.assertEqual(len(pulled["layers"]), 2)
        _, err = resolve(f"docker-archive:{archive}:other:tag", check=False)
        self.assertIn("no image tagged 'other:tag' (tags: example.com/test:1)", err)

    def write_blob(self, data):
        d = digest_of(data)
        with open(os.path.join(self.img.layout, "blobs", "sha256", d[7:]), "wb") as f:
            f.write(data)
        return {"digest": d, "size": len(data)}

    def set_index(self, entries):
        with open(os.path.join(self.img.layout, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": entries}, f)

    def test_platform_selection(self):
        m = self.img.manifest()
        amd = self.write_blob(json.dumps(m).encode())
        arm = self.write_blob(json.dumps(m, indent=1).encode())  # another manifest, same image
        mt = "application/vnd.oci.image.manifest.v1+json"
        index = self.write_blob(json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": mt, **arm, "platform": {"os": "linux", "architecture": "arm64",
                                                      "variant": "v8"}},
                {"mediaType": mt, **amd, "platform": {"os": "linux", "architecture": "amd64"}},
            ]}).encode())
        self.set_index([{"mediaType": "application/vnd.oci.image.index.v1+json", **index,
                         "annotations": {"org.opencontainers.image.ref.name": "multi"}}])
        ref = f"oci:{self.img.layout}:multi"
        j, _ = resolve(ref, "--platform", "linux/amd64")
        self.assertEqual((j["index"], j["manifest"]), (index["digest"], amd["digest"]))
        for plat in ("linux/arm64", "linux/arm64/v8"):
            j, _ = resolve(ref, "--platform", plat)
            self.assertEqual(j["manifest"], arm["digest"])
        if os.uname().machine == "x86_64":
            j, _ = resolve(ref)
            self.assertEqual(j["manifest"], amd["digest"])
        _, err = resolve(ref, "--platform", "linux/s390x", check=False)
        self.assertIn("no image for platform linux/s390x (the index has: linux/arm64/v8, "
                      "linux/amd64)", err)
        # index.json listing one entry per platform, no tags: index.json is the index.
        self.set_index([{"mediaType": mt, **arm, "platform": {"os": "linux",
                                                               "architecture": "arm64"}},
                        {"mediaType": mt, **amd, "platform": {"os": "linux",
                                                               "architecture": "amd64"}}])
        j, _ = resolve(f"oci:{self.img.layout}", "--platform", "linux/arm64")
        self.assertEqual(j["manifest"], arm["digest"])

    def test_docker_schema2_manifest(self):
        m = self.img.manifest()
        m["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
        m["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
        for l in m["layers"]:
            l["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
        raw = json.dumps(m, indent=3).encode()
        desc = self.write_blob(raw)
        self.set_index([{"mediaType": m["mediaType"], **desc,
                         "annotations": {"org.opencontainers.image.ref.name": "v2s2"}}])
        j, _ = resolve(f"oci:{self.img.layout}:v2s2")
        self.assertEqual(bytes.fromhex(j["manifest_hex"]), raw)  # kept, never re-serialised
        self.assertEqual(j["manifest"], desc["digest"])
        o.driver("pull", f"oci:{self.img.layout}:v2s2", self.p("objs"), self.d)

    def test_hostile_layouts(self):
        layout = self.img.layout
        m = self.img.manifest()
        cases = []

        def tagged(name, manifest_bytes, fix_digest=True, desc=None):
            d = desc or self.write_blob(manifest_bytes)
            entries = json.loads(o.read(os.path.join(layout, "index.json")))["manifests"]
            entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", **d,
                            "annotations": {"org.opencontainers.image.ref.name": name}})
            self.set_index(entries)
            return f"oci:{layout}:{name}"

        missing = json.loads(json.dumps(m))
        missing["layers"][1]["digest"] = "sha256:" + "ab" * 32
        cases.append(("missing blob", tagged("missing", json.dumps(missing).encode()),
                      "pull", ["no blob sha256:" + "ab" * 32]))
        config = json.loads(o.read(self.img.blob(m["config"]["digest"])))
        config["rootfs"]["diff_ids"][0] = "sha256:" + "cd" * 32
        lying = json.loads(json.dumps(m))
        lying["config"].update(self.write_blob(json.dumps(config).encode()))
        cases.append(("lying diff_id", tagged("lying", json.dumps(lying).encode()), "pull",
                      ["layer 0", "the config says sha256:" + "cd" * 32]))
        raw = json.dumps(m).encode()
        good = self.write_blob(raw)
        cases.append(("tampered manifest", tagged("tampered", raw, desc={
            "digest": good["digest"], "size": good["size"] + 1}), "resolve",
            ["descriptor says", str(good["size"] + 1)]))
        traversal = json.loads(json.dumps(m))
        traversal["config"]["digest"] = "sha256:../../../../etc/passwd"
        cases.append(("traversal", tagged("trav", json.dumps(traversal).encode()), "resolve",
                      ["digest 'sha256:../../../../etc/passwd'"]))
        fewer = json.loads(json.dumps(m))
        fewer["layers"] = fewer["layers"][:1]
        cases.append(("layer count", tagged("fewer", json.dumps(fewer).encode()), "resolve",
                      ["the manifest has 1 layers, the config 2 diff_ids"]))
        cases.append(("not json", tagged("notjson", b"{not json"), "resolve", ["not valid JSON"]))
        for name, ref, cmd, needles in cases:
            with self.subTest(name):
                args = [ref] if cmd == "resolve" else [ref, self.p("objs"), self.d]
                p = o.driver(cmd, *args, check=False)
                err = p.stderr.decode()
                self.assertEqual(p.returncode, 1, err)
                for n in needles:
                    self.assertIn(n, err)
        os.unlink(os.path.join(layout, "oci-layout"))
        _, err = resolve(f"oci:{layout}:t", check=False)
        self.assertIn("not an OCI image layout", err)
        shutil.rmtree(layout)


if __name__ == "__main__":
    t.main()
