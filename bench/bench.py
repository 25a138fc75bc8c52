#!/usr/bin/env python3
"""The measurements behind bench/run (run that, not this: it installs and builds).

usage: bench.py --native BIN --wasm WASM --decode-example BIN --runner PY|WASMTIME --tmp DIR
                [--runs N] [--only ROW,...] [--keep]
                [--base-native BIN --base-wasm WASM --base-decode-example BIN]

Generates every input in --tmp (removed at the end unless --keep), then for
each row runs the peer and rbdiff side by side (peer, native, wasm, peer, ...)
--runs times, and prints one markdown table: median seconds of each, the
ratio against the goal, and peak RSS (max over the runs, from wait4).
Exits 1 if an output differs from the peer's where the bytes must be equal.

With --base-*, every rbdiff command also runs with the base build's binaries,
interleaved (base, then this build, on the same inputs and the same warm
cache), and a second table compares the two: before/after an engine change
on one machine in one run, so that load hits both alike.
"""
import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = [sys.executable, os.path.join(HERE, "gen.py")]
MiB, GiB = 1 << 20, 1 << 30
RSS_DIR = "/tmp"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, cwd=None, stdout=subprocess.DEVNULL, before=None):
    """Run `cmd` under GNU time; (seconds, peak RSS KiB). `before` runs first, untimed.

    The RSS comes from `/usr/bin/time -f %M` (the command's own ru_maxrss,
    not this Python parent's, which a forked child would inherit)."""
    if before:
        before()
    rss_file = os.path.join(RSS_DIR, "rss")
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file, *map(str, cmd)], cwd=cwd,
                       stdout=stdout, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n"
                         f"{p.stderr.decode(errors='replace')}")
    with open(rss_file) as f:
        rss = int(f.read().split()[-1])
    return dt, rss


def sh(script, cwd=None):
    return ["sh", "-ec", script]


def gen(*args):
    subprocess.run(GEN + [str(a) for a in args], check=True)


def rm(*paths):
    def f():
        for p in paths:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    return f


def drop_dirty():
    """Start runs without another run's dirty pages in flight."""
    os.sync()


class Bench:
    def __init__(self, a):
        self.a = a
        self.t = a.tmp
        self.rows = []
        self.failed = False
        self.wasm_startup = None
        self.section = ""
        # (section, label, base median, this build's median)
        self.ab = []

    def p(self, name):
        return os.path.join(self.t, name)

    def w(self, name):
        """The same file as the wasm guest sees it (--dir TMP::/b)."""
        return "/b/" + name

    def native(self, *args):
        return [self.a.native, *map(str, args)]

    def wasm(self, *args):
        if self.a.runner.endswith(".py"):  # PyPI wasmtime (tests/tools/wasmtime_run.py)
            return [sys.executable, self.a.runner, "--dir", f"{self.t}::/b", self.a.wasm, *map(str, args)]
        # the wasmtime CLI
        return [self.a.runner, "run", "--dir", f"{self.t}::/b", self.a.wasm, *map(str, args)]

    def based(self, cmd):
        """`cmd` with the base build's binaries, or None if it runs no rbdiff."""
        if not self.a.base_native:
            return None
        swap = {self.a.native: self.a.base_native, self.a.wasm: self.a.base_wasm,
                self.a.decode_example: self.a.base_decode_example}
        out = [swap.get(str(c), c) for c in cmd]
        return out if out != list(cmd) else None

    def measure(self, variants, runs=None):
        """variants: [(label, cmd, before)] run round-robin; label -> (median s, max RSS KiB, all).

        With a base build, each rbdiff variant runs first with the base's
        binaries (label "base LABEL"), so the outputs left are this build's."""
        runs = runs or self.a.runs
        twins = []
        for label, cmd, before in variants:
            b = self.based(cmd)
            if b:
                twins.append((f"base {label}", b, before))
            twins.append((label, cmd, before))
        variants = twins
        res = {label: [] for label, _, _ in variants}
        rss = {label: 0 for label, _, _ in variants}
        for i in range(runs):
            for label, cmd, before in variants:
                dt, r = run(cmd, before=before)
                res[label].append(dt)
                rss[label] = max(rss[label], r)
                log(f"    run {i + 1}/{runs} {label}: {dt:.3f} s, {r / 1024:.1f} MiB")
        for label in res:
            if label.startswith("base "):
                new = label[5:]
                self.ab.append((self.section, new, statistics.median(res[label]), statistics.median(res[new]),
                                rss[label], rss[new]))
        return {k: (statistics.median(v), rss[k], v) for k, v in res.items()}

    def row(self, measure, peer, peer_m, ours_m, ratio, goal, met, note=""):
        self.rows.append((measure, peer, peer_m, ours_m, ratio, goal, met, note))

    # --- rows -------------------------------------------------------------

    def decode(self):
        f = self.p("d1g.diff")
        if not os.path.exists(f):
            log("  generating a 1 GiB v1 diff")
            gen("diff", f, "--size", 8 * GiB, "--payload", GiB, "--seed", 11, "--from", "a", "--to", "b")
        size = os.path.getsize(f)
        run(["cat", f])  # page cache warm
        m = self.measure([
            ("cat", ["cat", f], None),
            ("decode_file", [self.a.decode_example, f], None),
            ("verify", self.native("verify", "--no-progress", f), None),
            ("wasm verify", self.wasm("verify", "--no-progress", self.w("d1g.diff")), None),
        ])
        c = m["cat"][0]
        mb = lambda t: f"{size / t / 1e6:.0f} MB/s"
        for label, name in (("decode_file", "decode + validate 1 GiB diff (crate: Pump, examples/decode_file)"),
                            ("verify", "decode + validate 1 GiB diff (`rbdiff verify`, native)")):
            t, r, _ = m[label]
            self.row(name, "`cat F >/dev/null`", f"{c:.3f} s ({mb(c)})", f"{t:.3f} s ({mb(t)}), {r / 1024:.1f} MiB",
                     c / t, "≥ 0.8× throughput", c / t >= 0.8)
        self.wasm_row("`rbdiff verify` 1 GiB", m["verify"], m["wasm verify"])
        self.verify_rss_small = None
        return m

    def startup(self):
        """Median time of the wasm runner for `rbdiff --version` (Python,
        wasmtime import, module load): a fixed cost inside every wasm figure."""
        if self.wasm_startup is None:
            m = self.measure([("wasm --version", self.wasm("--version"), None)])
            self.wasm_startup = m["wasm --version"][0]
        return self.wasm_startup

    def wasm_row(self, what, nat, was):
        t, r, _ = was
        s = self.startup()
        net = max(t - s, 1e-3)
        self.row(f"wasm32-wasip1: {what}", "native build", f"{nat[0]:.3f} s",
                 f"{t:.3f} s, {r / 1024:.1f} MiB (host process)", nat[0] / t, "≥ 0.6× native", nat[0] / t >= 0.6,
                 f"{nat[0] / net:.2f}× without the runner's {s:.2f} s startup")

    def merge2(self):
        d1, d2 = self.p("m1.diff"), self.p("m2.diff")
        if not os.path.exists(d2):
            log("  generating two ~512 MiB v1 diffs")
            gen("diff", d1, "--size", 4 * GiB, "--payload", 512 * MiB, "--seed", 21, "--from", "s0", "--to", "s1")
            gen("diff", d2, "--size", 5 * GiB, "--payload", 512 * MiB, "--seed", 22, "--from", "s1", "--to", "s2")
        o_rbd, o_nat, o_wasm = self.p("m.rbd"), self.p("m.nat"), self.p("m.wasm")
        run(["cat", d1, d2])
        m = self.measure([
            ("rbd", ["rbd", "merge-diff", "--no-progress", d1, d2, o_rbd], rm(o_rbd)),
            ("native", self.native("merge-diff", "--no-progress", d1, d2, o_nat), rm(o_nat)),
            ("wasm", self.wasm("merge-diff", "--no-progress", self.w("m1.diff"), self.w("m2.diff"), self.w("m.wasm")),
             rm(o_wasm)),
        ])
        same = filecmp.cmp(o_rbd, o_nat, shallow=False) and filecmp.cmp(o_rbd, o_wasm, shallow=False)
        self.failed |= not same
        out = os.path.getsize(o_rbd)
        rt, nt = m["rbd"][0], m["native"][0]
        self.row("merge-diff of two ~512 MiB v1 diffs" + f" ({out / MiB:.0f} MiB out)",
                 "`rbd merge-diff` 16.2.15", f"{rt:.3f} s, {m['rbd'][1] / 1024:.1f} MiB",
                 f"{nt:.3f} s, {m['native'][1] / 1024:.1f} MiB", rt / nt, "≥ 1.0× speed, identical bytes",
                 rt / nt >= 1.0 and same, "bytes identical" if same else "OUTPUT DIFFERS")
        self.wasm_row("merge-diff 2 × 512 MiB", m["native"], m["wasm"])
        for p in (o_rbd, o_nat, o_wasm):
            os.unlink(p)

    def chain(self):
        n = 10
        ds = [self.p(f"c{i}.diff") for i in range(n)]
        if not os.path.exists(ds[-1]):
            log("  generating a chain of 10 v1 diffs (~100 MiB each)")
            for i, d in enumerate(ds):
                gen("diff", d, "--size", 4 * GiB, "--payload", 100 * MiB, "--seed", 31 + i,
                    "--from", f"s{i}", "--to", f"s{i + 1}")
        o_rbd, o_nat, o_wasm = self.p("c.rbd"), self.p("c.nat"), self.p("c.wasm")
        script = []
        prev = ds[0]
        for i in range(1, n):
            out = o_rbd if i == n - 1 else self.p(f"c.rbd{i}")
            script.append(f"rm -f {out}; rbd merge-diff --no-progress {prev} {ds[i]} {out}")
            if i > 1:
                script.append(f"rm -f {prev}")
            prev = out
        run(["cat", *ds])
        m = self.measure([
            ("rbd", sh("\n".join(script)), rm(o_rbd)),
            ("native", self.native("merge-diff", "--no-progress", *ds, o_nat), rm(o_nat)),
            ("wasm", self.wasm("merge-diff", "--no-progress", *[self.w(f"c{i}.diff") for i in range(n)],
                               self.w("c.wasm")), rm(o_wasm)),
        ])
        same = filecmp.cmp(o_rbd, o_nat, shallow=False) and filecmp.cmp(o_nat, o_wasm, shallow=False)
        self.failed |= not same
        rt, nt = m["rbd"][0], m["native"][0]
        self.row("merge of a chain of 10 diffs (10 × ~100 MiB) into one",
                 "9 pairwise `rbd merge-diff` runs", f"{rt:.3f} s, {m['rbd'][1] / 1024:.1f} MiB",
                 f"{nt:.3f} s, {m['native'][1] / 1024:.1f} MiB", rt / nt, "≥ 5× faster", rt / nt >= 5,
                 "bytes identical to the pairwise result" if same else "OUTPUT DIFFERS")
        self.wasm_row("merge-diff of 10", m["native"], m["wasm"])
        self.chain_small_rss = None
        for p in (o_rbd, o_nat, o_wasm):
            os.unlink(p)

    def export_raw(self):
        a, a2, b = self.p("r_a.raw"), self.p("r_a2.raw"), self.p("r_b.raw")
        if not os.path.exists(b):
            log("  generating two 2 GiB raw images, 5% changed")
            gen("image", a, "--size", 2 * GiB, "--seed", 41)
            shutil.copyfile(a, a2)
            shutil.copyfile(a, b)
            gen("modify", b, "--bytes", 2 * GiB // 20, "--seed", 42)
        o_nat, o_wasm = self.p("x.nat"), self.p("x.wasm")
        run(["cat", a, a2, b])
        m = self.measure([
            ("cmp", ["cmp", a, a2], None),
            ("native", self.native("export-diff", "--no-progress", "--from-image", a, b, o_nat), rm(o_nat)),
            ("wasm", self.wasm("export-diff", "--no-progress", "--from-image", self.w("r_a.raw"), self.w("r_b.raw"),
                               self.w("x.wasm")), rm(o_wasm)),
        ])
        same = filecmp.cmp(o_nat, o_wasm, shallow=False)
        self.failed |= not same
        ct, nt = m["cmp"][0], m["native"][0]
        self.row("export-diff between two 2 GiB raw images, 5% changed",
                 "`cmp` of two equal 2 GiB files (reads both through)", f"{ct:.3f} s",
                 f"{nt:.3f} s, {m['native'][1] / 1024:.1f} MiB", nt / ct, "≤ 1.2× its time", nt / ct <= 1.2,
                 f"{os.path.getsize(o_nat) / MiB:.0f} MiB diff")
        self.rows[-1] = self.rows[-1][:4] + (f"{nt / ct:.2f}× time",) + self.rows[-1][5:]
        self.wasm_row("export-diff 2 GiB raw", m["native"], m["wasm"])
        for p in (o_nat, o_wasm):
            os.unlink(p)

    def export_sparse(self, gib, with_wasm):
        a, b = self.p(f"s{gib}_a.raw"), self.p(f"s{gib}_b.raw")
        if not os.path.exists(b):
            log(f"  generating two sparse {gib} GiB images (200 MiB data, then 100 MiB written)")
            with open(a, "wb") as f:
                f.truncate(gib * GiB)
            gen("modify", a, "--bytes", 200 * MiB, "--seed", 51)
            subprocess.run(["cp", "--sparse=always", a, b], check=True)
            gen("modify", b, "--bytes", 100 * MiB, "--seed", 52)
        o_cp, o_nat, o_wasm = self.p("sp.cp"), self.p("sp.nat"), self.p("sp.wasm")
        alloc = os.stat(b).st_blocks * 512
        v = [("cp", ["cp", "--sparse=always", b, o_cp], rm(o_cp)),
             ("native", self.native("export-diff", "--no-progress", "--from-image", a, b, o_nat), rm(o_nat))]
        m = self.measure(v, runs=self.a.runs)
        if with_wasm:
            # WASI has no SEEK_DATA: the guest reads every byte of both
            # images (minutes), so this one runs once.
            m.update(self.measure([("wasm", self.wasm(
                "export-diff", "--no-progress", "--from-image", self.w(os.path.basename(a)),
                self.w(os.path.basename(b)), self.w("sp.wasm")), rm(o_wasm))], runs=1))
        ct, nt = m["cp"][0], m["native"][0]
        self.row(f"export-diff between two sparse {gib} GiB images, 100 MiB written ({alloc / MiB:.0f} MiB allocated)",
                 "`cp --sparse=always` of one", f"{ct:.3f} s",
                 f"{nt:.3f} s, {m['native'][1] / 1024:.1f} MiB", nt / ct, "time ∝ allocated data", None,
                 f"{os.path.getsize(o_nat) / MiB:.0f} MiB diff")
        self.rows[-1] = self.rows[-1][:4] + (f"{nt / ct:.2f}× time",) + self.rows[-1][5:]
        if with_wasm:
            same = filecmp.cmp(o_nat, o_wasm, shallow=False)
            self.failed |= not same
            self.wasm_row(f"export-diff sparse {gib} GiB (1 run)", m["native"], m["wasm"])
        for p in (o_cp, o_nat, o_wasm):
            rm(p)()
        return nt

    def import_diff(self):
        f = self.p("d1g.diff")
        img, img_w, img_dd = self.p("imp.raw"), self.p("imp_w.raw"), self.p("imp_dd.raw")
        size = 8 * GiB

        def fresh(p):
            def f():
                rm(p)()
                with open(p, "wb") as fh:
                    fh.truncate(size)
                drop_dirty()
            return f

        run(["cat", f])
        m = self.measure([
            ("dd", ["dd", f"if={f}", f"of={img_dd}", "bs=4M", "conv=notrunc,fsync", "status=none"], fresh(img_dd)),
            ("native", self.native("import-diff", "--no-progress", f, img), fresh(img)),
            ("wasm", self.wasm("import-diff", "--no-progress", self.w("d1g.diff"), self.w("imp_w.raw")), fresh(img_w)),
        ])
        same = filecmp.cmp(img, img_w, shallow=False)
        self.failed |= not same
        dt, nt = m["dd"][0], m["native"][0]
        self.row("import-diff of a 1 GiB diff into a raw image (ends with fsync)",
                 "`dd bs=4M conv=notrunc,fsync` of the diff file", f"{dt:.3f} s",
                 f"{nt:.3f} s, {m['native'][1] / 1024:.1f} MiB", nt / dt, "≤ 1.3× its time", nt / dt <= 1.3)
        self.rows[-1] = self.rows[-1][:4] + (f"{nt / dt:.2f}× time",) + self.rows[-1][5:]
        self.wasm_row("import-diff 1 GiB", m["native"], m["wasm"])
        for p in (img, img_w, img_dd):
            rm(p)()

    def rss_flat(self):
        small, big = self.p("c0.diff"), self.p("d1g.diff")
        m = self.measure([
            ("small", self.native("verify", "--no-progress", small), None),
            ("big", self.native("verify", "--no-progress", big), None),
        ], runs=1)
        rs, rb = m["small"][1], m["big"][1]
        self.row("peak RSS flat as inputs grow: `rbdiff verify` of a 100 MiB vs a 1 GiB diff", "—",
                 f"{rs / 1024:.1f} MiB", f"{rb / 1024:.1f} MiB", rb / rs, "≤ 64 MiB, flat", rb <= 64 * 1024 and rb <= rs * 1.1)
        self.rows[-1] = self.rows[-1][:4] + (f"{rb / rs:.2f}× RSS",) + self.rows[-1][5:]

    def ab_table(self):
        out = ["| row | command | base: median, peak RSS | this build: median, peak RSS | this build / base time |",
               "|---|---|---|---|---|"]
        for section, label, bt, nt, br, nr in self.ab:
            out.append(f"| {section} | {label} | {bt:.3f} s, {br / 1024:.1f} MiB | {nt:.3f} s, {nr / 1024:.1f} MiB "
                       f"| {nt / bt:.2f}× |")
        return "\n".join(out)

    def table(self):
        out = ["| measure | peer (same inputs, same run) | peer: median | rbdiff: median, peak RSS | ratio | goal | met? | note |",
               "|---|---|---|---|---|---|---|---|"]
        for measure, peer, pm, om, ratio, goal, met, note in self.rows:
            r = ratio if isinstance(ratio, str) else f"{ratio:.2f}×"
            mt = "see note" if met is None else ("yes" if met else "**no**")
            out.append(f"| {measure} | {peer} | {pm} | {om} | {r} | {goal} | {mt} | {note} |")
        return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--native", required=True)
    ap.add_argument("--wasm", required=True)
    ap.add_argument("--decode-example", required=True)
    ap.add_argument("--runner", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="decode,merge2,chain,export_raw,sparse,import,rss")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--base-native", help="a base build to compare with (interleaved): its rbdiff")
    ap.add_argument("--base-wasm", help="… its rbdiff.wasm")
    ap.add_argument("--base-decode-example", help="… its examples/decode_file")
    ap.add_argument("--sparse", default="20,200", help="sparse image sizes in GiB (wasm runs the first)")
    ap.add_argument("--no-wasm-sparse", action="store_true", help="skip the (slow) wasm sparse export")
    a = ap.parse_args()
    os.makedirs(a.tmp, exist_ok=True)
    global RSS_DIR
    RSS_DIR = a.tmp
    b = Bench(a)
    only = a.only.split(",")
    steps = [
        ("decode", b.decode),
        ("merge2", b.merge2),
        ("chain", b.chain),
        ("export_raw", b.export_raw),
        ("sparse", lambda: [b.export_sparse(int(g), i == 0 and not a.no_wasm_sparse)
                               for i, g in enumerate(a.sparse.split(","))]),
        ("import", b.import_diff),
        ("rss", b.rss_flat),
    ]
    t0 = time.time()
    # The wasm runner caches the compiled module next to the .wasm; compile it
    # now so that no measured run pays for it.
    run(b.wasm("--version"))
    try:
        for name, f in steps:
            if name in only:
                log(f"== {name}  (load average {os.getloadavg()[0]:.2f})")
                b.section = name
                f()
    finally:
        if not a.keep:
            shutil.rmtree(a.tmp, ignore_errors=True)
    load = os.getloadavg()
    print(b.table())
    print()
    if b.ab:
        print("Before and after: the same rbdiff commands with the base build, interleaved with this build's")
        print()
        print(b.ab_table())
        print()
    print(f"Medians of {a.runs} runs (peak RSS: the max over them, GNU time %M; for wasm the whole host process: the runner, wasmtime and the guest's linear memory). Wall time of the bench "
          f"{time.time() - t0:.0f} s; load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.")
    if b.failed:
        print("FAILED: an output differs from the peer's (see the notes).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
