"""The component's `images` interface (apply, export-diff) on block devices
the host provides (in memory here), checked against the real-rbd 16.2.15
corpus: the image after each diff of every chain has the sha256 the
manifests record, export-diff re-applies to the target, its --whole-object
output is rbd's bytes wherever the CLI's is, and equals the CLI's output
everywhere; wrong bases, corrupt payloads, snapshot rules and device
failures are refused as `rbdiff import-diff` refuses them."""

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from conftest import (FIXTURES, IMAGE_CASES, ROOT, MemDevice, RbdError, image_of, manifest,
                      recorded_sha)


def sha(b) -> str:
    return hashlib.sha256(b).hexdigest()


def diff_bytes(case: str, rel: str) -> bytes:
    return (FIXTURES / case / rel).read_bytes()


def build_chain(codec, case: str) -> dict:
    """Every point of `case` ("0" = before the first snapshot, ..., "head"),
    built by applying the chain's diffs one after the other to one device,
    with rbd's snapshot rules; each point's sha256 checked against the
    manifest on the way."""
    m = manifest(case)
    _, _, snaps = image_of(m)
    pts = ["0", *snaps, "head"]
    dev, have, content = MemDevice(), [], {"0": b""}
    for a, b in zip(pts, pts[1:]):
        r = codec.apply(dev, diff_bytes(case, f"diff/{a}..{b}.diff"), snapshots=list(have))
        assert r["end_snap"] == (None if b == "head" else b), (case, a, b)
        assert r["size"] == len(dev.data)
        assert r["verified"] == "none"  # rbd's diffs carry no integrity data
        assert dev.sha256() == recorded_sha(m, f"raw/{b}.raw"), f"{case}: {a}..{b}"
        if r["end_snap"]:
            have.append(r["end_snap"])
        content[b] = bytes(dev.data)
    return content


@pytest.fixture(scope="module")
def chains(engine, component):
    from conftest import Codec
    codec = Codec(engine, component)
    return {case: build_chain(codec, case) for case in IMAGE_CASES}


# --------------------------------------------------------------------------- apply

@pytest.mark.parametrize("case", IMAGE_CASES)
def test_apply_chain_matches_manifest_sha(codec, case):
    content = build_chain(codec, case)
    assert len(content) >= 3


def test_apply_every_relationship(codec, chains):
    """Every `apply` relationship of the manifests (base + diff = result,
    as rbd import-diff verified), whole-object diffs included."""
    n = 0
    for case in IMAGE_CASES:
        m = manifest(case)
        for r in m["relationships"]:
            if r["kind"] != "apply" or not (FIXTURES / case / r["diff"]).exists():
                continue
            base = "0" if r["base"] == "zeros" else r["base"][len("raw/"):-len(".raw")]
            dev = MemDevice(chains[case][base])
            codec.apply(dev, diff_bytes(case, r["diff"]))
            assert dev.sha256() == r["result_sha256"], f"{case}: {r['base']} + {r['diff']}"
            n += 1
    assert n >= 50, n


def test_apply_rbd_sparse_rules(codec, chains):
    """rbd's --sparse-size: all-zero 4 KiB chunks of `w` payloads become
    write-zeroes (counted as zero bytes), with the same result."""
    d = diff_bytes("basic-64k", "diff/0..s2.diff")
    dense = MemDevice()
    r0 = codec.apply(dense, d, sparse_size=0)
    sparse = MemDevice()
    r1 = codec.apply(sparse, d)
    assert dense.data == sparse.data == chains["basic-64k"]["s2"]
    # (`z` records are zero bytes either way.)
    assert r1["zero_bytes"] > r0["zero_bytes"] and r1["data_bytes"] < r0["data_bytes"]
    assert r0["data_bytes"] + r0["zero_bytes"] == r1["data_bytes"] + r1["zero_bytes"]
    assert len([c for c in sparse.calls if c[0] == "write-zeroes"]) > \
        len([c for c in dense.calls if c[0] == "write-zeroes"])


def test_apply_snapshot_rules(codec, chains):
    d = diff_bytes("basic-64k", "diff/s1..s2.diff")
    dev = MemDevice(chains["basic-64k"]["s1"])
    with pytest.raises(RbdError) as e:
        codec.apply(dev, d, snapshots=["s0"])
    assert e.value.err["kind"] == "snapshot-missing"
    assert e.value.err["message"] == "start snapshot 's1' does not exist in the image, aborting"
    with pytest.raises(RbdError) as e:
        codec.apply(dev, d, snapshots=["s1", "s2"])
    assert e.value.err["kind"] == "snapshot-exists"
    assert "end snapshot 's2' already exists" in e.value.err["message"]
    assert not [c for c in dev.calls if c[0] != "read"]  # nothing written
    assert bytes(dev.data) == chains["basic-64k"]["s1"]
    r = codec.apply(dev, d, snapshots=["s1"])
    assert r["end_snap"] == "s2" and bytes(dev.data) == chains["basic-64k"]["s2"]


def test_apply_record_past_size_is_einval(codec):
    """A record wholly past the image size fails (rbd: EINVAL); the one
    before it was applied."""
    d = bytearray(b"rbd diff v1\n")
    d += b"s" + (8192).to_bytes(8, "little")
    d += b"w" + (0).to_bytes(8, "little") + (4).to_bytes(8, "little") + b"abcd"
    at = len(d)
    d += b"z" + (16384).to_bytes(8, "little") + (4096).to_bytes(8, "little") + b"e"
    dev = MemDevice()
    with pytest.raises(RbdError) as e:
        codec.apply(dev, bytes(d))
    assert e.value.err["kind"] == "beyond-size"
    assert e.value.err["image_offset"] == 16384
    assert e.value.err["stream_offset"] == at
    assert bytes(dev.data[:4]) == b"abcd" and len(dev.data) == 8192


def test_apply_cut_inside_payload_leaves_complete_records(codec, chains):
    """A stream cut inside a `w` payload: the base plus the complete records
    before it, as rbd leaves the image (it reads a whole payload before
    writing it); the error names the offset where the stream ended."""
    case = "basic-64k"
    d = diff_bytes(case, "diff/0..s1.diff")
    s = codec.inspect([d])["diffs"][0]
    recs = s["records"]
    assert len(recs) >= 3 and all(r["tag"] == "w" for r in recs[:3])
    cut = recs[2]["stream_offset"] + 17 + recs[2]["length"] // 2
    dev = MemDevice()
    with pytest.raises(RbdError) as e:
        codec.apply(dev, d[:cut])
    assert e.value.err["kind"] == "invalid-stream"
    assert e.value.err["decode"]["kind"] == "unexpected-eof"
    assert e.value.err["stream_offset"] == len(d[:cut])
    want = bytearray(s["size"])
    for r in recs[:2]:
        o, n = r["offset"], r["length"]
        want[o:o + n] = chains[case]["s1"][o:o + n]
    assert dev.data == want
    assert not any(op == "write" and off == recs[2]["offset"] for op, off, _ in dev.calls)


def test_apply_device_failure(codec, chains):
    dev = MemDevice(chains["basic-64k"]["s1"])
    dev.fail["write"] = "EIO (injected)"
    with pytest.raises(RbdError) as e:
        codec.apply(dev, diff_bytes("basic-64k", "diff/s1..s2.diff"))
    err = e.value.err
    assert err["kind"] == "device"
    assert "EIO (injected)" in err["message"] and err["image_offset"] is not None


# --------------------------------------------------------------------------- verified apply

def sealed(codec, chains, fmt="diff-v1", frm="s1", to="s2"):
    """basic-64k's `frm`..`to` exported with integrity data."""
    c = chains["basic-64k"]
    return codec.export_diff(None if frm == "0" else MemDevice(c[frm]), MemDevice(c[to]),
                             from_snap=None if frm == "0" else frm, to_snap=to,
                             object_size=65536, format=fmt, integrity=True)["diff"]


@pytest.mark.parametrize("fmt", ["diff-v1", "diff-v2"])
def test_verified_apply(codec, chains, fmt):
    c = chains["basic-64k"]
    d = sealed(codec, chains, fmt)
    dev = MemDevice(c["s1"])
    r = codec.apply(dev, d)
    assert r["verified"] == "full"
    assert bytes(dev.data) == c["s2"]
    # Without the base check (--force) the stream and result are still checked.
    dev = MemDevice(c["s1"])
    assert codec.apply(dev, d, check_base=False)["verified"] == "no-base"
    # verify off: rbd's behaviour (the v2 integrity records are unknown tags).
    dev = MemDevice(c["s1"])
    assert codec.apply(dev, d, verify=False)["verified"] == "none"
    assert bytes(dev.data) == c["s2"]


@pytest.mark.parametrize("fmt", ["diff-v1", "diff-v2"])
def test_wrong_base_refused_nothing_written(codec, chains, fmt):
    c = chains["basic-64k"]
    d = sealed(codec, chains, fmt)
    for base in (c["s2"], c["head"][:len(c["s1"])], bytes(len(c["s1"]))):
        dev = MemDevice(base)
        with pytest.raises(RbdError) as e:
            codec.apply(dev, d)
        assert e.value.err["kind"] == "wrong-base", e.value.err
        assert "not the diff's base" in e.value.err["message"]
        assert {op for op, _, _ in dev.calls} <= {"read"}
        assert bytes(dev.data) == base


def test_sidecar_checks_base_of_plain_diff(codec, chains):
    """A plain (rbd-identical) diff with its integrity data apart."""
    c = chains["basic-64k"]
    d = sealed(codec, chains)
    plain = codec.export_diff(MemDevice(c["s1"]), MemDevice(c["s2"]), from_snap="s1",
                              to_snap="s2", object_size=65536)["diff"]
    side = d[len(plain):]
    assert d[:len(plain)] == plain and side
    dev = MemDevice(c["s2"])
    with pytest.raises(RbdError) as e:
        codec.apply(dev, plain, sidecar=side)
    assert e.value.err["kind"] == "wrong-base"
    dev = MemDevice(c["s1"])
    assert codec.apply(dev, plain, sidecar=side)["verified"] == "full"
    assert bytes(dev.data) == c["s2"]
    with pytest.raises(RbdError) as e:
        codec.apply(dev, plain, sidecar=b"not integrity data")
    assert e.value.err["kind"] == "invalid-integrity-data"


@pytest.mark.parametrize("fmt", ["diff-v1", "diff-v2"])
def test_corrupt_payload_refused_with_offset(codec, chains, fmt):
    c = chains["basic-64k"]
    d = bytearray(sealed(codec, chains, fmt, frm="0", to="s1"))
    recs = codec.inspect([bytes(d)])["diffs"][0]["records"]
    assert len(recs) >= 5 and all(r["tag"] == "w" for r in recs)
    k = len(recs) // 2
    bad = recs[k]
    header = 17 if fmt == "diff-v1" else 25  # tag, (v2: length), offset, length
    d[bad["stream_offset"] + header + bad["length"] // 3] ^= 0x40
    dev = MemDevice()
    with pytest.raises(RbdError) as e:
        codec.apply(dev, bytes(d))
    err = e.value.err
    assert err["kind"] == "corrupt-payload", err
    assert err["stream_offset"] == bad["stream_offset"]
    assert err["image_offset"] == bad["offset"]
    assert f"at stream offset {bad['stream_offset']}" in err["message"]
    # The records before it are applied; none after it.
    for r in recs[:k]:
        o, n = r["offset"], r["length"]
        assert bytes(dev.data[o:o + n]) == c["s1"][o:o + n]
    assert not [c for c in dev.calls if c[0] in ("write", "write-zeroes") and c[1] > bad["offset"]]


# --------------------------------------------------------------------------- export-diff

def changed_objects(frm: bytes, to: bytes, os_: int):
    out = []
    for start in range(0, len(to), os_):
        t = to[start:start + os_]
        f = frm[start:start + len(t)].ljust(len(t), b"\0")
        if t != f:
            out.append(("z" if not any(t) else "w", start, len(t)))
    return out


def records_of(m: dict, rel: str):
    for k in ("files", "unstored_files"):
        r = m[k].get(rel, {}).get("diff", {}).get("records")
        if r is not None:
            return [(x[0], x[1], x[2]) for x in r]
    return None


def cli_path() -> Path:
    if os.environ.get("RBDIFF_BIN"):
        return Path(os.environ["RBDIFF_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "rbdiff"


def cli_export(tmp: Path, frm, to: bytes, f, t, os_: int, whole: bool) -> bytes:
    """The CLI's `export-diff` of the same two images (raw files)."""
    cli = cli_path()
    assert cli.exists(), f"CLI not built: {cli} (cargo build -p rbdiff-cli)"
    (tmp / "to.raw").write_bytes(to)
    args = [str(cli), "export-diff", "--no-progress", "--object-size", f"{os_}B"]
    if frm is not None:
        (tmp / "from.raw").write_bytes(frm)
        args += ["--from-image", str(tmp / "from.raw"), "--from-snap", f]
    if t != "head":
        args += ["--snap", t]
    if whole:
        args.append("--whole-object")
    out = tmp / "out.diff"
    out.unlink(missing_ok=True)
    subprocess.run(args + [str(tmp / "to.raw"), str(out)], check=True)
    return out.read_bytes()


def test_export_diff_reapplies_and_matches_rbd_and_cli(codec, chains, tmp_path):
    pairs = whole_same = 0
    for case in IMAGE_CASES:
        m = manifest(case)
        _, os_, _ = image_of(m)
        content = chains[case]
        pts = list(content)
        for i, f in enumerate(pts):
            for t in pts[i + 1:]:
                base = None if f == "0" else MemDevice(content[f])
                names = dict(from_snap=None if f == "0" else f,
                             to_snap=None if t == "head" else t, object_size=os_)
                for whole in (False, True):
                    got = codec.export_diff(base, MemDevice(content[t]), whole_object=whole,
                                            **names)
                    d = got["diff"]
                    dev = MemDevice(content[f])
                    codec.apply(dev, d)
                    assert bytes(dev.data) == content[t], f"{case}: {f}..{t} re-applied"
                    assert d == cli_export(tmp_path, content.get(f) if f != "0" else None,
                                           content[t], f, t, os_, whole), f"{case}: {f}..{t}"
                    rel = f"diff/{f}..{t}.whole.diff"
                    rbd = records_of(m, rel)
                    if whole and rbd is not None \
                            and changed_objects(content[f], content[t], os_) == rbd:
                        assert sha(d) == recorded_sha(m, rel), f"{case}: {rel} bytes"
                        whole_same += 1
                pairs += 1
    assert pairs >= 35, pairs
    assert whole_same >= 30, whole_same


def test_export_diff_v2_and_integrity_inspect(codec, chains):
    c = chains["basic-64k"]
    r = codec.export_diff(MemDevice(c["s1"]), MemDevice(c["s2"]), from_snap="s1", to_snap="s2",
                          protected=True, format="diff-v2", integrity=True, object_size=65536)
    s = codec.inspect([r["diff"]])
    assert s["valid"] and s["format"] == "diff-v2"
    d = s["diffs"][0]
    assert (d["from_snap"], d["to_snap"], d["protected"]) == ("s1", "s2", True)
    assert d["integrity"]["ok"] and d["integrity"]["entries"] == r["writes"] + r["zeros"]
    assert (d["n_w"], d["w_bytes"]) == (r["writes"], r["data_bytes"])


def test_export_diff_errors(codec, chains):
    c = chains["basic-64k"]
    with pytest.raises(RbdError) as e:
        codec.export_diff(None, MemDevice(c["s1"]), object_size=0)
    assert e.value.err["kind"] == "invalid-options"
    with pytest.raises(RbdError) as e:
        codec.export_diff(None, MemDevice(c["s1"]), protected=True)
    assert e.value.err["kind"] == "invalid-options"
    dev = MemDevice(c["s1"])
    dev.fail["read"] = "EIO (injected)"
    with pytest.raises(RbdError) as e:
        codec.export_diff(None, dev)
    assert e.value.err["kind"] == "device" and "EIO (injected)" in e.value.err["message"]
