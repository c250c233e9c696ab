# SPDX-License-Identifier: Apache-2.0
"""Runs the command blocks of a Markdown page, so documentation cannot silently rot.

A page marks each fenced block with an HTML comment on the line before it:

    <!-- run -->                          the block must succeed
    <!-- run: expect-fail="TEXT" -->      the block must fail, its output containing TEXT
    <!-- run: needs-verity; without-verity="TEXT" -->
                                          needs kernel fs-verity: must succeed where it is
                                          available, else must fail with TEXT in its output
    <!-- run: needs-verity; without-verity="TEXT"; expect-fail="TEXT2" -->
                                          combinations are allowed
    <!-- output -->                       expected output (stdout + stderr, trailing blanks
                                          ignored) of the run block just before it; where a
                                          needs-verity block fails as documented, not checked
    <!-- output: contains -->             the same, but the output must only contain it
    <!-- show -->                         shown to the reader, deliberately not executed
                                          (must be justified in the page text)

Every block of the page must carry one of these markers. All run blocks execute in ONE bash
process (variables and the current directory carry over), in order, under `set -e -o pipefail`.
"""
import dataclasses
import os
import re
import shlex
import subprocess

import cfs_testlib

MARKER = re.compile(r"^<!--\s*(run|output|show)(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)\s*$")


@dataclasses.dataclass
class Block:
    kind: str  # run | output | show
    line: int  # 1-based line of the fence
    text: str
    lang: str = ""
    needs_verity: bool = False
    without_verity: str | None = None
    expect_fail: str | None = None
    contains: bool = False
    output: "Block | None" = None


def _parse_attrs(spec, line):
    attrs = {}
    for part in filter(None, (p.strip() for p in (spec or "").split(";"))):
        m = re.fullmatch(r'([\w-]+)(?:="(.*)")?', part)
        if not m:
            raise ValueError(f"line {line}: bad marker attribute {part!r}")
        attrs[m.group(1)] = m.group(2)
    return attrs


def parse(path):
    """Returns the run and show blocks of a page (output blocks attached to their run block).
    Raises ValueError naming the line of any block without a marker."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, pending, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line.strip())
        if m:
            pending = (m.group(1), _parse_attrs(m.group(2), i + 1), i + 1)
            i += 1
            continue
        f = FENCE.match(line)
        if not f:
            if line.strip():
                pending = None
            i += 1
            continue
        fence, lang, start = f.group(1), f.group(2), i + 1
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i])
            i += 1
        if i >= len(lines):
            raise ValueError(f"{path}:{start}: unterminated code block")
        i += 1
        if pending is None:
            raise ValueError(f"{path}:{start}: code block without a run/output/show marker")
        kind, attrs, _ = pending
        pending = None
        b = Block(kind, start, "\n".join(body) + "\n", lang)
        if kind == "run":
            known = {"needs-verity", "without-verity", "expect-fail"}
            if set(attrs) - known:
                raise ValueError(f"{path}:{start}: unknown attributes {set(attrs) - known}")
            b.needs_verity = "needs-verity" in attrs
            b.without_verity = attrs.get("without-verity")
            b.expect_fail = attrs.get("expect-fail")
            if b.needs_verity and not b.without_verity:
                raise ValueError(f"{path}:{start}: needs-verity requires without-verity=\"...\"")
            blocks.append(b)
        elif kind == "output":
            if not blocks or blocks[-1].kind != "run" or blocks[-1].output is not None:
                raise ValueError(f"{path}:{start}: output block does not follow a run block")
            b.contains = "contains" in attrs
            blocks[-1].output = b
        else:
            blocks.append(b)
    return blocks


def normalize(text):
    lines = [ln.rstrip() for ln in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


@dataclasses.dataclass
class Result:
    block: Block
    rc: int | None  # None = not reached
    output: str


def _script(blocks, results_dir, have_verity):
    out = ["set -e -o pipefail"]
    for n, b in enumerate(blocks):
        if b.kind != "run":
            continue
        log = shlex.quote(os.path.join(results_dir, f"{n}.out"))
        rc = shlex.quote(os.path.join(results_dir, f"{n}.rc"))
        may_fail = b.expect_fail is not None or (b.needs_verity and not have_verity)
        if may_fail:
            # A subshell outside any conditional keeps `set -e` effective inside it.
            out += ["set +e", f"( set -e -o pipefail\n{b.text})" + f" >{log} 2>&1 </dev/null",
                    f"echo $? >{rc}", "set -e"]
        else:
            out += [f"{{\n{b.text}}} >{log} 2>&1 </dev/null", f"echo 0 >{rc}"]
    return "\n".join(out) + "\n"


def run(blocks, workdir, results_dir, have_verity, env=None, timeout=600, runner=None):
    """Executes the run blocks in workdir. `runner(script_path)` may execute the script
    elsewhere (e.g. in a VM); by default it runs locally with bash. Returns [Result]."""
    script = os.path.join(results_dir, "script.sh")
    with open(script, "w") as f:
        f.write(_script(blocks, results_dir, have_verity))
    if runner is None:
        subprocess.run(["bash", script], cwd=workdir, env=env, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        runner(script)
    results = []
    for n, b in enumerate(blocks):
        if b.kind != "run":
            continue
        rc_path = os.path.join(results_dir, f"{n}.rc")
        log_path = os.path.join(results_dir, f"{n}.out")
        output = _read(log_path) or ""
        rc_text = _read(rc_path)
        rc = int(rc_text) if rc_text is not None else None
        if rc is None and os.path.exists(log_path):
            rc = -1  # started but the shell stopped inside it: a failing `run` block
        results.append(Result(b, rc, output))
    return results


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def check(results, have_verity):
    """Returns a list of problems (empty = the page is correct)."""
    problems = []
    for r in results:
        b = r.block
        where = f"block at line {b.line}"
        if r.rc is None:
            problems.append(f"{where}: never ran (an earlier block stopped the script)")
            continue
        failed_as_documented = False
        if b.needs_verity and not have_verity:
            if r.rc == 0:
                problems.append(f"{where}: succeeded without fs-verity, the page says it fails")
            elif b.without_verity not in r.output:
                problems.append(f"{where}: without fs-verity expected {b.without_verity!r} "
                                f"in the output, got:\n{r.output}")
            failed_as_documented = True
        elif b.expect_fail is not None:
            if r.rc == 0:
                problems.append(f"{where}: succeeded, the page says it fails")
            elif b.expect_fail not in r.output:
                problems.append(f"{where}: expected {b.expect_fail!r} in the output, got:\n"
                                f"{r.output}")
        elif r.rc != 0:
            problems.append(f"{where}: failed (exit {r.rc}):\n{b.text}output:\n{r.output}")
            continue
        if b.output is not None and not failed_as_documented:
            want, got = normalize(b.output.text), normalize(r.output)
            ok = want in got if b.output.contains else want == got
            if not ok:
                problems.append(f"{where}: output differs from the page (line "
                                f"{b.output.line}).\n--- page\n{want}\n--- actual\n{got}")
    return problems


def mounts_under(path):
    """Mount points at or below path, deepest first (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    found = [mp for mp in cfs_testlib.mount_points() if mp == path or mp.startswith(path + "/")]
    return sorted(found, key=len, reverse=True)


def unmount_all(path):
    for mp in mounts_under(path):
        subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def kernel_has_fsverity(scratch):
    """Probes fs-verity for real: a small ext4 with the verity feature, loop-mounted, and
    `fsverity enable` on a file in it. Needs root, mkfs.ext4 and fsverity."""
    img, mnt = os.path.join(scratch, "probe.img"), os.path.join(scratch, "probe.mnt")
    os.makedirs(mnt, exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    try:
        if subprocess.run(["mkfs.ext4", "-q", "-O", "verity", img],
                          capture_output=True).returncode != 0:
            return False
        if subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True).returncode:
            return False
        try:
            probe = os.path.join(mnt, "f")
            with open(probe, "w") as f:
                f.write("probe\n")
            return subprocess.run(["fsverity", "enable", probe],
                                  capture_output=True).returncode == 0
        finally:
            subprocess.run(["umount", mnt], capture_output=True)
    finally:
        os.unlink(img)
        os.rmdir(mnt)
