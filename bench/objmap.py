#!/usr/bin/env python3
"""Store object maps (issue 16): what a diff between two store snapshots
reads from disk and how long it takes, with the object maps and without
(RBDIFF_NO_OBJECT_MAP=1: the content comparison rbdiff did before), natively
and under WASI. Driven by bench/objmap (which builds and installs); prints a
markdown table on stdout.

Cold runs: `sync; echo 3 > /proc/sys/vm/drop_caches`, then the program
itself (binary, or Python + wasmtime + the compiled module) is loaded once
with --version so that only the image data is read from disk; bytes read are
the process's `read_bytes` from /proc/<pid>/io (read after it exited, before
it is reaped).
"""
import argparse
import os
import statistics
import struct
import subprocess
import sys
import time

MiB = 1 << 20
GiB = 1 << 30


def log(*a):
    print("===", *a, file=sys.stderr, flush=True)


class Runner:
    def __init__(self, args):
        self.native = args.native
        self.wasm = args.wasm
        self.py_runner = args.runner
        self.tmp = args.tmp
        self.store = os.path.join(args.tmp, "store")

    def argv(self, kind, args, env):
        if kind == "native":
            return [self.native, "--store", self.store] + args, dict(os.environ, **env)
        if self.py_runner.endswith(".py"):
            pre = ["python3", self.py_runner]
        else:
            pre = [self.py_runner, "run"]
        pre += ["--dir", f"{self.tmp}::/b"]
        for k, v in env.items():
            pre += ["--env", f"{k}={v}"]
        return pre + [self.wasm, "--store", "/b/store"] + [
            a.replace(self.tmp, "/b") for a in args
        ], dict(os.environ)

    def run(self, kind, args, env=None, stdin=None):
        """(seconds, read_bytes) of one run; fails on a non-zero exit."""
        argv, e = self.argv(kind, args, env or {})
        t = time.perf_counter()
        p = subprocess.Popen(argv, env=e, stdin=stdin, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        err = p.stderr.read()
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        dt = time.perf_counter() - t
        rb = 0
        with open(f"/proc/{p.pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    rb = int(line.split()[1])
        p.wait()
        if p.returncode != 0:
            raise SystemExit(f"{argv}: exit {p.returncode}: {err.decode(errors='replace')}")
        return dt, rb, err.decode(errors="replace")


def drop_caches(r, kind):
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")
    # Load the program (not the data) again.
    r.run(kind, ["--version"])


def write_change(path, size, order, old=None):
    """A v1 diff of 10 x 4 MiB writes at objects spread over `size`.

    The first and last byte of each write differ from what the image held
    there (`old`: its data file; else zeros), so a precise diff of the change
    has the same extents in every image (a random edge byte equal to the old
    one is no change and the diff a byte shorter: ~8 % of the runs failed
    the same-length check in cold_table before)."""
    obj = 1 << order
    n = size // obj
    objs = sorted({(37 + i * (n // 10) + (i * 7919) % max(1, n // 20)) % n for i in range(10)})
    prev = open(old, "rb") if old else None
    with open(path, "wb") as f:
        f.write(b"rbd diff v1\n")
        for k in objs:
            data = bytearray(os.urandom(4 * MiB))
            for at in (0, len(data) - 1):
                was = 0
                if prev:
                    prev.seek(k * obj + at)
                    was = prev.read(1)[0]
                data[at] = 1 if was != 1 else 2
            f.write(b"w" + struct.pack("<QQ", k * obj, 4 * MiB))
            f.write(data)
        f.write(b"e")
    if prev:
        prev.close()
    return objs


def setup(r, full_size):
    log(f"setup: {fmt_b(full_size)} fully written image (random data), snapshot a")
    gen = subprocess.Popen(
        "openssl enc -aes-128-ctr -pass pass:objmap -nosalt -in /dev/zero 2>/dev/null"
        f" | head -c {full_size}",
        shell=True, stdout=subprocess.PIPE)
    r.run("native", ["import", "--no-progress", "-", "full"], stdin=gen.stdout)
    gen.wait()
    r.run("native", ["snap", "create", "full@a"])
    change = os.path.join(r.tmp, "change.diff")
    objs = write_change(change, full_size, 22, os.path.join(r.store, "rbd", "full", "head"))
    log(f"setup: 10 x 4 MiB via import-diff (objects {objs}), snapshot b")
    r.run("native", ["import-diff", "--no-progress", change, "full"])
    r.run("native", ["snap", "create", "full@b"])
    setup_sparse(r, change)


def setup_sparse(r, change):
    log("setup: 64 GiB sparse image, the same change")
    r.run("native", ["create", "--size", "64G", "sparse"])
    r.run("native", ["snap", "create", "sparse@a"])
    r.run("native", ["import-diff", "--no-progress", change, "sparse"])
    r.run("native", ["snap", "create", "sparse@b"])


def out_path(r, name):
    p = os.path.join(r.tmp, name)
    if os.path.exists(p):
        os.remove(p)
    return p


def cold(r, kind, args, env=None):
    drop_caches(r, kind)
    return r.run(kind, args, env)


def fmt_t(s):
    return f"{s:.2f} s" if s >= 0.1 else f"{s * 1000:.0f} ms"


def fmt_b(b):
    return f"{b / MiB:.1f} MiB" if b < GiB else f"{b / GiB:.2f} GiB"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--native", required=True)
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--runner", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--full-gib", type=float, default=4.0,
                    help="size of the fully written image (smoke runs: smaller)")
    ap.add_argument("--warm-only", action="store_true",
                    help="only the sparse image and the warm WASI/native table")
    ap.add_argument("--skip-slow", action="store_true",
                    help="no content-comparison run under WASI (8 GiB read)")
    a = ap.parse_args()
    r = Runner(a)
    if a.warm_only:
        change = os.path.join(r.tmp, "change.diff")
        write_change(change, 4 * GiB, 22)
        setup_sparse(r, change)
    else:
        cold_table(r, a)
    warm_table(r, a)


def cold_table(r, a):
    setup(r, int(a.full_gib * GiB) // (4 * MiB) * (4 * MiB))
    changed = 40 * MiB
    rows = []

    def diff_row(what, kind, img, env=None, extra=()):
        out = out_path(r, "o.diff")
        args = ["export-diff", "--no-progress", *extra, "--from-snap", "a", f"{img}@b", out]
        log(what)
        t, rb, err = cold(r, kind, args, env)
        data = open(out, "rb").read()
        os.remove(out)
        rows.append((what, t, rb, err))
        return data

    fs = f"{a.full_gib:g} GiB"
    m = diff_row(f"native, map: export-diff a..b, {fs} full image", "native", "full")
    c = diff_row("native, no map (content comparison): same", "native", "full",
                 {"RBDIFF_NO_OBJECT_MAP": "1"})
    assert m == c, "outputs differ with and without the map"
    w = diff_row("WASI, map: same", "wasm", "full")
    assert w == m, "WASI output differs"
    if not a.skip_slow:
        diff_row("WASI, no map (content comparison): same", "wasm", "full",
                 {"RBDIFF_NO_OBJECT_MAP": "1"})
    s = diff_row("native, map: export-diff a..b, 64 GiB sparse image, same change",
                 "native", "sparse")
    diff_row("WASI, map: same (64 GiB sparse)", "wasm", "sparse")
    diff_row(f"native, map: export-diff --whole-object a..b, {fs} full", "native", "full",
             extra=("--whole-object",))
    log("diff --from-snap a full@b")
    t, rb, err = cold(r, "native", ["diff", "--from-snap", "a", "full@b"])
    rows.append(("native, map: diff --from-snap a full@b", t, rb, err))
    assert len(m) > changed and len(s) == len(m), f"the same change: diffs of the same length ({len(m)}, {len(s)})"

    print(f"changed: {fmt_b(changed)} (10 x 4 MiB objects); cold page cache; goal: "
          f"reads <= 3x changed = {fmt_b(3 * changed)}\n")
    print("| run (cold page cache) | time | read from disk | / changed bytes | fallback said |")
    print("|---|---|---|---|---|")
    for what, t, rb, err in rows:
        said = "yes" if "comparing contents" in err else "no"
        print(f"| {what} | {fmt_t(t)} | {fmt_b(rb)} | {rb / changed:.2f}x | {said} |")



def median_run(r, kind, args, runs):
    ts = []
    for _ in range(runs + 1):
        out = out_path(r, "o.out")
        ts.append(r.run(kind, [x if x != "OUT" else out for x in args])[0])
    return statistics.median(ts[1:])


def warm_table(r, a):
    # Sparse store export: WASI vs native, warm (the bench/run row was 0.01x).
    start = {k: median_run(r, k, ["--version"], a.runs) for k in ["native", "wasm"]}
    print(f"\n| warm page cache, median of {a.runs} | native | WASI | WASI / native speed | "
          f"WASI minus the runner's startup (`--version`: {fmt_t(start['wasm'])} WASI, "
          f"{fmt_t(start['native'])} native) |")
    print("|---|---|---|---|---|")
    for what, args in [
        ("export-diff sparse@b (64 GiB, 40 MiB written, from creation)",
         ["export-diff", "--no-progress", "sparse@b", "OUT"]),
        ("export sparse@b (raw, 64 GiB sparse output)",
         ["export", "--no-progress", "sparse@b", "OUT"]),
    ]:
        res = {k: median_run(r, k, args, a.runs) for k in ["native", "wasm"]}
        os.remove(os.path.join(r.tmp, "o.out"))
        net = res["wasm"] - start["wasm"]
        ratio = (f"{(res['native'] - start['native']) / net:.2f}x native speed"
                 if net >= 0.02 else "within the startup's run-to-run noise")
        print(f"| {what} | {fmt_t(res['native'])} | {fmt_t(res['wasm'])} | "
              f"{res['native'] / res['wasm']:.2f}x | {fmt_t(max(net, 0))}: {ratio} |")


if __name__ == "__main__":
    main()
