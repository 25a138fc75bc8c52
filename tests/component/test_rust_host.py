"""The component in a Rust host (component/host-rust, the `wasmtime` crate),
run as a user runs it on the real-rbd corpus: inspect and validate rbd's
diffs, merge them byte-identically to rbd merge-diff, apply each chain onto a
raw image file the host lends as a block device (sha256 as the manifests
record), export-diff between two raw files, and the refusals of a verified
apply (wrong base, corrupt payload)."""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import FIXTURES, IMAGE_CASES, ROOT, component_path, image_of, manifest, recorded_sha


def host_path() -> Path:
    if os.environ.get("RBDIFF_COMPONENT_HOST"):
        return Path(os.environ["RBDIFF_COMPONENT_HOST"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "rbdiff-component-host"


def host(*args, ok=True) -> subprocess.CompletedProcess:
    exe = host_path()
    if not exe.exists():
        pytest.fail(f"Rust host not built: {exe} (run scripts/test-component.sh)")
    r = subprocess.run([str(exe), str(component_path()), *map(str, args)],
                       capture_output=True, text=True, env={**os.environ, "RUST_BACKTRACE": "0"})
    if ok:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def sha_file(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_inspect_every_diff():
    n = 0
    for case in IMAGE_CASES:
        for rel, f in manifest(case)["files"].items():
            if "diff" not in f or "parse_error" in f or not (FIXTURES / case / rel).exists():
                continue
            d = f["diff"]
            out = host("inspect", FIXTURES / case / rel).stdout
            assert f"valid=true format=Some(StreamFormat::DiffV{d['format']}) diffs=1 " \
                   f"records={d['n_w'] + d['n_z']} bytes={d['stream_bytes']}" in out, out
            assert f"w={d['n_w']} ({d['w_bytes']} bytes) z={d['n_z']} ({d['z_bytes']} bytes)" in out
            n += 1
    assert n >= 60, n


def test_validate(tmp_path):
    assert host("validate", FIXTURES / "basic-64k" / "diff" / "0..s1.diff").stdout \
        == "valid (0 warnings)\n"
    d = (FIXTURES / "basic-64k" / "diff" / "0..s1.diff").read_bytes()
    (tmp_path / "cut.diff").write_bytes(d[:1000])
    r = host("validate", tmp_path / "cut.diff", ok=False)
    assert r.returncode == 1
    assert re.search(r"invalid: ErrorKind::UnexpectedEof at stream offset \d+", r.stdout), r.stdout


def test_merges_identical_to_rbd(tmp_path):
    n = 0
    for case in IMAGE_CASES:
        for r in manifest(case)["relationships"]:
            if r["kind"] != "merge" or not (FIXTURES / case / r["output"]).exists():
                continue
            out = tmp_path / "m.diff"
            host("merge", out, *(FIXTURES / case / i for i in r["inputs"]))
            assert out.read_bytes() == (FIXTURES / case / r["output"]).read_bytes(), r["output"]
            n += 1
    assert n >= 20, n


def apply_chain(case: str, tmp: Path) -> dict:
    """Apply the case's chain onto one raw file; returns point -> copy."""
    m = manifest(case)
    _, _, snapshots = image_of(m)
    pts = ["0", *snapshots, "head"]
    image = tmp / f"{case}.raw"
    image.write_bytes(b"")
    copies, snaps = {"0": tmp / f"{case}@0.raw"}, []
    shutil.copy(image, copies["0"])
    for a, b in zip(pts, pts[1:]):
        args = [x for s in snaps for x in ("--snap", s)]
        out = host("apply", *args, image, FIXTURES / case / "diff" / f"{a}..{b}.diff").stdout
        assert f"end-snap={'-' if b == 'head' else b} verified=Verified::None" in out, out
        assert sha_file(image) == recorded_sha(m, f"raw/{b}.raw"), f"{case}: {a}..{b}"
        if b != "head":
            snaps.append(b)
        copies[b] = tmp / f"{case}@{b}.raw"
        shutil.copy(image, copies[b])
    return copies


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_apply_chain_and_export_diff(tmp_path, case):
    pts = apply_chain(case, tmp_path)
    m = manifest(case)
    _, object_size, _ = image_of(m)
    names = list(pts)
    whole_same = 0
    for i, f in enumerate(names):
        for t in names[i + 1:]:
            for whole in (False, True):
                args = ["--object-size", object_size]
                if f != "0":
                    args += ["--base", pts[f], "--from-snap", f]
                if t != "head":
                    args += ["--snap", t]
                if whole:
                    args.append("--whole-object")
                out = tmp_path / "e.diff"
                host("export-diff", *args, pts[t], out)
                work = tmp_path / "work.raw"
                shutil.copy(pts[f], work)
                host("apply", work, out)
                assert work.read_bytes() == pts[t].read_bytes(), f"{case}: {f}..{t}"
                rel = f"diff/{f}..{t}.whole.diff"
                if whole and (FIXTURES / case / rel).exists() \
                        and sha_file(out) == recorded_sha(m, rel):
                    whole_same += 1
    # Where the CLI's --whole-object output is rbd's (cli_corpus.rs), so is
    # this host's: at least one pair per case.
    assert whole_same >= 1, case


def test_verified_apply_refusals(tmp_path):
    pts = apply_chain("basic-64k", tmp_path)
    sealed = tmp_path / "s1..s2.sealed.diff"
    host("export-diff", "--base", pts["s1"], "--from-snap", "s1", "--snap", "s2",
         "--object-size", 65536, "--integrity", pts["s2"], sealed)
    # Wrong base: refused, nothing written.
    work = tmp_path / "work.raw"
    shutil.copy(pts["head"], work)
    r = host("apply", work, sealed, ok=False)
    assert r.returncode == 1
    assert "error: ImageErrorKind::WrongBase" in r.stdout, r.stdout
    assert work.read_bytes() == pts["head"].read_bytes()
    # The right base: verified.
    shutil.copy(pts["s1"], work)
    assert "verified=Verified::Full" in host("apply", work, sealed).stdout
    assert work.read_bytes() == pts["s2"].read_bytes()
    # A flipped payload bit: refused at its record's stream offset.
    d = bytearray(sealed.read_bytes())
    at = len(b"rbd diff v1\n") + 7 + 7 + 9  # f "s1", t "s2", s: the first record
    assert d[at] == ord("w")
    d[at + 17] ^= 1
    sealed.write_bytes(bytes(d))
    shutil.copy(pts["s1"], work)
    r = host("apply", work, sealed, ok=False)
    assert "error: ImageErrorKind::CorruptPayload stream-offset=Some(35) image-offset=Some(50)" \
        in r.stdout, r.stdout
