"""The rbdiff component loaded in a real host (PyPI wasmtime), checked against
the real-rbd 16.2.15 corpus: manifests (header values, records, counts),
rbd's own error observations, and rbd merge-diff outputs byte for byte."""

import hashlib
import os
import re
import shlex
import shutil
import struct
import subprocess

import pytest

from conftest import FIXTURES, ROOT, RbdError, component_path, manifest

CASES = ["basic-64k", "discard-zero", "empty", "grow", "shrink", "import-diff", "merge-diff"]


def read(case, rel) -> bytes:
    return (FIXTURES / case / rel).read_bytes()


def diff_files():
    """Every stored diff whose manifest entry has a parsed summary."""
    out = []
    for case in CASES:
        for rel, f in manifest(case)["files"].items():
            if "diff" in f and "parse_error" not in f and (FIXTURES / case / rel).exists():
                out.append(pytest.param(case, rel, f["diff"], id=f"{case}/{rel}"))
    return out


def image_v2_files():
    out = []
    for case in CASES:
        for rel, f in manifest(case)["files"].items():
            if "export_v2" in f:
                out.append(pytest.param(case, rel, f["export_v2"], id=f"{case}/{rel}"))
    return out


def check_diff(d: dict, m: dict):
    """A component diff-summary against a manifest diff summary."""
    assert d["header_tags"] == m["header_tags"]
    assert d["from_snap"] == m.get("from_snap")
    assert d["to_snap"] == m.get("to_snap")
    assert d["size"] == m.get("size")
    if "protected" in m:
        assert d["protected"] == bool(m["protected"])
    else:
        assert d["protected"] is None
    assert [(r["tag"], r["offset"], r["length"]) for r in d["records"]] == [
        (r[0], r[1], r[2]) for r in m["records"]
    ]
    for k in ("n_w", "n_z", "w_bytes", "z_bytes", "records_sorted", "records_overlap",
              "stream_bytes"):
        assert d[k] == m[k], k
    # An empty payload counts as all zero, as in the manifests.
    assert d["w_all_zero_records"] == sum(1 for r in m["records"] if r[0] == "w" and r[4])
    if "w_all_zero_records" in m:
        assert d["w_all_zero_records"] == m["w_all_zero_records"]
    if "records_beyond_size" in m:
        assert d["records_beyond_size"] == m["records_beyond_size"]
    assert d["complete"] is True
    assert d["records_truncated"] is False
    assert d["integrity"] is None  # rbd writes no rbdiff integrity data


# --------------------------------------------------------------------------- basics

def test_component_exports_and_version(codec):
    ws = (ROOT / "Cargo.toml").read_text()
    version = re.search(r'\[workspace\.package\][^\[]*?version\s*=\s*"([^"]+)"', ws).group(1)
    assert codec.version() == version
    for name in ("default-options", "version", "inspect", "validate", "[constructor]decoder",
                 "[method]decoder.push", "[method]decoder.finish", "[method]decoder.finish-events",
                 "[method]decoder.summary", "[method]decoder.position", "[constructor]merger",
                 "[method]merger.push", "[method]merger.pull", "[method]merger.size"):
        codec.func(name)
    opts = codec.options()
    assert (opts.mode, opts.accept) == ("default", "all")


# --------------------------------------------------------------------------- inspect

@pytest.mark.parametrize("case,rel,m", diff_files())
def test_inspect_matches_manifest(codec, case, rel, m):
    data = read(case, rel)
    s = codec.inspect([data])
    assert s["error"] is None, s["error"]
    assert s["valid"]
    assert s["format"] == {1: "diff-v1", 2: "diff-v2"}[m["format"]]
    assert len(s["diffs"]) == 1
    check_diff(s["diffs"][0], m)
    assert s["trailing_bytes"] == m["trailing_bytes"]
    assert s["stream_bytes"] == len(data)
    # What the default mode warns about is what the manifest flags.
    kinds = {w["kind"] for w in s["warnings"]}
    assert ("out-of-order" in kinds) == (not m["records_sorted"] or m["records_overlap"])
    assert ("beyond-size" in kinds) == m.get("records_beyond_size", False)


@pytest.mark.parametrize("case,rel,m", image_v2_files())
def test_inspect_image_v2_matches_manifest(codec, case, rel, m):
    data = read(case, rel)
    s = codec.inspect([data])
    assert s["valid"] and s["error"] is None
    assert s["format"] == "image-v2"
    hdr = {r[0]: r for r in m["header_records"]}
    img = s["image"]
    assert img["order"] == hdr["O"][2]
    assert img["features"] == hdr["T"][2]
    assert img["stripe_unit"] == hdr["U"][2]
    assert img["stripe_count"] == hdr["C"][2]
    assert [(p["key"], p["value"]) for p in img["meta"]] == [
        (r[2], r[3]) for r in m["header_records"] if r[0] == "M"
    ]
    assert s["diff_count"] == m["diff_count"]
    assert len(s["diffs"]) == len(m["diffs"])
    for i, (d, md) in enumerate(zip(s["diffs"], m["diffs"])):
        assert d["index"] == i
        assert d["stream_offset"] == md["stream_offset"]
        check_diff(d, md)
    assert s["stream_bytes"] == len(data)


def coalesce(events):
    """Merge consecutive payload pieces (their split depends on the chunking)."""
    out = []
    for e in events:
        last = out[-1] if out else None
        if (last and e["kind"] == "data" and last["kind"] == "data"
                and last["image_offset"] + last["length"] == e["image_offset"]):
            last["length"] += e["length"]
        elif (last and e["kind"] == "unknown-data" and last["kind"] == "unknown-data"):
            last["length"] += e["length"]
        else:
            out.append(dict(e))
    return out


def decode_all(codec, data, size, **opts):
    dec = codec.decoder(**opts)
    events = []
    for i in range(0, len(data), size):
        events += dec.push(data[i:i + size])
    events += dec.finish_events()
    summary = dec.finish()
    pos = dec.position()
    dec.drop()
    return coalesce(events), summary, pos


@pytest.mark.parametrize("case,rel,sizes", [
    ("basic-64k", "diff/s1..s2.diff", [1, 2, 3, 5, 17, 64]),
    ("basic-64k", "diff/0..s2.diff", [4093]),
    ("grow", "export/image.v2", [1, 13, 4096]),
    ("basic-64k", "export/image.v2", [7919]),
    ("import-diff", "inputs/unknown-tag-with-payload.diff", [1, 3]),
])
def test_chunked_push_equals_one_push(codec, case, rel, sizes):
    data = read(case, rel)
    opts = {"mode": "rbd-compatible"}
    whole_events, whole_summary, pos = decode_all(codec, data, len(data), **opts)
    assert pos == len(data)
    assert whole_summary == codec.inspect([data], **opts)
    for size in sizes:
        events, summary, pos = decode_all(codec, data, size, **opts)
        assert events == whole_events, size
        assert summary == whole_summary, size
        assert pos == len(data)
    # inspect() over chunks is the same too.
    chunks = [data[i:i + sizes[0]] for i in range(0, len(data), sizes[0])]
    assert codec.inspect(chunks, **opts) == whole_summary


def test_events_match_manifest(codec):
    m = manifest("basic-64k")["files"]["diff/s1..s2.diff"]["diff"]
    data = read("basic-64k", "diff/s1..s2.diff")
    events, summary, _ = decode_all(codec, data, 10)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "banner" and events[0]["format"] == "diff-v1"
    assert kinds[-1] == "diff-end" and events[-1]["stream_offset"] == len(data) - 1
    names = {e["kind"]: e["name"] for e in events if e["kind"] in ("from-snap", "to-snap")}
    assert names == {"from-snap": m["from_snap"], "to-snap": m["to_snap"]}
    assert [e["value"] for e in events if e["kind"] == "size"] == [m["size"]]
    header = [{"from-snap": "f", "to-snap": "t", "size": "s"}[k] for k in kinds
              if k in ("from-snap", "to-snap", "size")]
    assert header == m["header_tags"]
    recs = [(e["kind"][0], e["image_offset"], e["length"]) for e in events
            if e["kind"] in ("write", "zero")]
    assert recs == [tuple(r[:3]) for r in m["records"]]
    # Every write is followed by exactly its payload length; no bytes are returned.
    for i, e in enumerate(events):
        if e["kind"] == "write":
            nxt = events[i + 1]
            assert nxt["kind"] == "data"
            assert (nxt["image_offset"], nxt["length"]) == (e["image_offset"], e["length"])
    # Stream offsets are increasing and the records' agree with the summary.
    offs = [e["stream_offset"] for e in events]
    assert offs == sorted(offs)
    assert [r["stream_offset"] for r in summary["diffs"][0]["records"]] == [
        e["stream_offset"] for e in events if e["kind"] in ("write", "zero")
    ]


# --------------------------------------------------------------------------- errors

def test_truncated_in_data_first_error(codec):
    """import-diff/inputs/truncated-in-data.diff is the start of
    basic-64k/diff/0..s1.diff cut inside the first w record's data."""
    f = manifest("import-diff")["files"]["inputs/truncated-in-data.diff"]
    data = read("import-diff", "inputs/truncated-in-data.diff")
    assert len(data) == f["size"]
    src = manifest("basic-64k")["files"]["diff/0..s1.diff"]["diff"]
    assert src["header_tags"] == ["t", "s"]
    first_w = src["records"][0]
    data_start = 12 + (1 + 4 + len(src["to_snap"])) + 9 + 17  # banner, t, s, w header
    missing = first_w[2] - (len(data) - data_start)
    assert 0 < missing < first_w[2]

    s = codec.inspect([data])
    assert not s["valid"]
    err = s["error"]
    assert err["kind"] == "unexpected-eof"
    assert err["offset"] == len(data)           # the first byte that is missing
    assert "write data" in err["message"]       # rbd: "failed to decode write data"
    assert f"{missing} more bytes" in err["message"]
    assert s["diffs"][0]["n_w"] == 1 and not s["diffs"][0]["complete"]

    with pytest.raises(RbdError) as e:
        codec.validate([data])
    assert e.value.err == err

    # Streaming: pushes succeed until the end of input is declared; the error
    # is then sticky and also in the summary.
    dec = codec.decoder()
    evs = dec.push(data)
    assert [e["kind"] for e in evs][-2:] == ["write", "data"]
    with pytest.raises(RbdError) as e1:
        dec.finish()
    assert e1.value.err == err
    with pytest.raises(RbdError) as e2:
        dec.push(b"more")
    assert e2.value.err == err
    assert dec.summary()["error"] == err
    dec.drop()


def test_unknown_tag_offset_matches_manifest(codec):
    for case, rel in [("import-diff", "inputs/unknown-tag.diff"),
                      ("merge-diff", "inputs/second.unknown-tag.diff")]:
        pe = manifest(case)["files"][rel]["parse_error"]  # "unknown tag 'X' at N"
        tag, at = re.fullmatch(r"unknown tag '(.)' at (\d+)", pe).groups()
        data = read(case, rel)
        with pytest.raises(RbdError) as e:
            codec.validate([data])
        assert e.value.err["kind"] == "unknown-tag"
        assert e.value.err["offset"] == int(at)
        assert data[int(at)] == ord(tag)


# What rbd import-diff said when the stream ended early -> what the codec was reading.
RBD_EOF = {
    "failed to decode diff banner": "the stream banner",
    "failed to decode end snap name": "the to-snapshot name",
    "failed to decode IO length": "the record offset and length",
    "failed to decode write data": "write data",
    "failed to decode tag": "a record tag",
}


def import_diff_observations():
    out = []
    for name, o in manifest("import-diff")["observations"]["errors"].items():
        args = shlex.split(o["cmd"].split("<")[0])
        src = args[-2]
        if src == "-" or not (FIXTURES / "import-diff" / src).is_file():
            continue  # missing-file / stdin observations are not about a stream
        stderr = o["stderr"]
        if o["rc"] == 0:
            expect = ("valid", stderr.count("unrecognized tag byte"))
        elif o["rc"] == 74:
            expect = ("eof", next(v for k, v in RBD_EOF.items() if k in stderr))
        elif "invalid or unexpected diff banner" in stderr:
            expect = ("banner", None)
        elif "AioCompletion" in stderr:
            expect = ("beyond-size", None)  # librbd refused a write past the image end
        else:
            continue  # target-image errors (snapshot exists / missing): not the stream's
        out.append(pytest.param(src, expect, id=name))
    return out


@pytest.mark.parametrize("src,expect", import_diff_observations())
def test_rbd_import_diff_observations(codec, src, expect):
    """Decode as rbd import-diff reads (v1 only, rbd-compatible) and compare
    with what rbd 16.2.15 did with the same file."""
    data = (FIXTURES / "import-diff" / src).read_bytes()
    s = codec.inspect([data], mode="rbd-compatible", accept="diff-v1")
    what, arg = expect
    if what == "valid":
        assert s["valid"], s["error"]
        assert s["unknown_records"] == arg  # one "skipping" line per byte
    elif what == "eof":
        assert s["error"]["kind"] == "unexpected-eof"
        assert arg in s["error"]["message"]
    elif what == "banner":
        assert s["error"]["kind"] == "bad-banner" and s["error"]["offset"] == 0
    else:
        assert s["valid"]
        assert "beyond-size" in {w["kind"] for w in s["warnings"]}
        assert s["diffs"][0]["records_beyond_size"]


def test_strict_mode_makes_warnings_errors(codec):
    data = read("import-diff", "inputs/unsorted-overlapping.diff")
    warnings = codec.validate([data])
    assert warnings and warnings[0]["kind"] == "out-of-order"
    with pytest.raises(RbdError) as e:
        codec.validate([data], mode="strict")
    assert e.value.err == warnings[0]
    # The default mode rejects unknown v1 tags; rbd-compatible skips them.
    unk = read("import-diff", "inputs/unknown-tag.diff")
    assert codec.validate([unk], mode="rbd-compatible") == []
    with pytest.raises(RbdError):
        codec.validate([unk])
    # accept restricts formats.
    with pytest.raises(RbdError) as e:
        codec.validate([read("basic-64k", "export/image.v2")], accept="diffs")
    assert e.value.err["kind"] == "bad-banner"


# --------------------------------------------------------------------------- merge

def merge_observations(ok: bool):
    out = []
    for name, o in manifest("merge-diff")["observations"]["errors"].items():
        cmd = o["cmd"]
        stdin = cmd.split("<")[1].strip() if "<" in cmd else None
        args = shlex.split(cmd.split("<")[0])
        a, b, dst = args[-3:]
        a = stdin if a == "-" else a
        if "-" in (a, b) or not all((FIXTURES / "merge-diff" / p).is_file() for p in (a, b)):
            continue  # rbd CLI-level cases (second input from stdin, missing file)
        if (o["rc"] == 0) != ok or "error create" in o["stderr"]:
            continue
        out.append(pytest.param(a, b, dst, o, id=name))
    return out


@pytest.mark.parametrize("a,b,dst,o", merge_observations(ok=True))
def test_merge_reproduces_rbd_merge_diff(codec, a, b, dst, o):
    base = FIXTURES / "merge-diff"
    got = codec.merge([(base / a).read_bytes(), (base / b).read_bytes()])
    want = (base / dst).read_bytes()
    assert len(got) == len(want)
    assert got == want


def test_merge_basic_small_chunks_bounded_output(codec):
    base = FIXTURES / "basic-64k" / "diff"
    ins = [(base / "0..s1.diff").read_bytes(), (base / "s1..s2.diff").read_bytes()]
    want = (FIXTURES / "merge-diff" / "out" / "basic.0..s1+s1..s2.diff").read_bytes()
    trace = []
    got = codec.merge(ins, chunk=997, pull=1000, trace=trace)
    assert got == want
    assert all(len(t["output"]) <= 1000 for t in trace)
    assert {t["need_input"] for t in trace} == {0, 1, None}
    # Output arrives as it is produced, not all at the end.
    assert sum(1 for t in trace if t["output"]) >= len(want) // 1000


def rbd_merge_failure(stderr: str):
    """(input index or None, phase, kind) of an rbd merge-diff failure."""
    which = re.search(r"\b(first|second) diff\b", stderr)
    idx = {"first": 0, "second": 1}[which.group(1)] if which else None
    if "must be equal with the second FROM" in stderr:
        return 1, "header", "snapshot-chain"
    if "failed to merge diff chunk" in stderr:
        return idx, "data", "invalid-input"
    if "data chunk header" in stderr or "out-of-order offset" in stderr:
        return idx, "record-header", "invalid-input"
    if "diff header" in stderr:
        return idx, "header", "invalid-input"
    raise AssertionError(f"unclassified rbd stderr: {stderr!r}")


@pytest.mark.parametrize("a,b,dst,o", merge_observations(ok=False))
def test_merge_failures_match_rbd(codec, a, b, dst, o):
    base = FIXTURES / "merge-diff"
    ins = [(base / a).read_bytes(), (base / b).read_bytes()]
    if "invalid banner 'rbd diff v2" in o["stderr"]:
        # rbd merge-diff reads v1 only; rbdiff merges v2 inputs too, and the
        # embedded v2 diffs hold the same records as the v1 ones
        # (relationship v2_vs_v1), so the result is rbd's v1 merge.
        got = codec.merge(ins)
        want = (base / "out" / "basic.0..s1+s1..s2.diff").read_bytes()
        assert got == want
        return
    with pytest.raises(RbdError) as e:
        codec.merge(ins, chunk=4096)
    err = e.value.err
    idx, phase, kind = rbd_merge_failure(o["stderr"])
    if idx is None:  # rbd names the input only in some messages: the broken one
        idx = next(i for i, d in enumerate(ins) if not codec.inspect([d])["valid"])
    assert (err["input"], err["phase"], err["kind"]) == (idx, phase, kind), err
    m = re.search(r"\((\d+ > \d+)\)", o["stderr"])
    if m:  # rbd's numbers for out-of-order records
        assert f"({m.group(1)})" in err["message"]
        assert err["decode"]["kind"] in ("out-of-order", "beyond-size")
    if kind == "invalid-input":
        assert err["decode"] is not None
        assert err["message"].startswith(f"diff #{idx + 1}: ")


def test_merge_error_is_sticky(codec):
    base = FIXTURES / "merge-diff" / "inputs"
    ins = [(base / "a-unsorted.diff").read_bytes(), (base / "b.diff").read_bytes()]
    m = codec.merger(2)
    with pytest.raises(RbdError) as first:
        while not (st := m.pull(1 << 20))["done"]:
            if st["need_input"] is not None:
                i = st["need_input"]
                m.push(i, ins[i])
                ins[i] = b""
    for call in (lambda: m.pull(10), lambda: m.push(0, b"x")):
        with pytest.raises(RbdError) as again:
            call()
        assert again.value.err == first.value.err
    m.drop()


def parse_v1(data: bytes):
    """A minimal v1 reader for the test oracle (size, records with data)."""
    assert data[:12] == b"rbd diff v1\n"
    p, size, recs = 12, None, []
    while True:
        t = data[p:p + 1]
        p += 1
        if t in (b"f", b"t"):
            (n,) = struct.unpack_from("<I", data, p)
            p += 4 + n
        elif t == b"s":
            (size,) = struct.unpack_from("<Q", data, p)
            p += 8
        elif t in (b"w", b"z"):
            off, ln = struct.unpack_from("<QQ", data, p)
            p += 16
            recs.append((t, off, ln, data[p:p + ln] if t == b"w" else None))
            if t == b"w":
                p += ln
        elif t == b"e":
            return size, recs
        else:
            raise AssertionError(f"bad tag {t!r} at {p - 1}")


def apply_v1(image: bytearray, diff: bytes) -> bytearray:
    size, recs = parse_v1(diff)
    del image[size:]
    image.extend(bytes(size - len(image)))
    for t, off, ln, payload in recs:
        image[off:off + ln] = payload if t == b"w" else bytes(ln)
    return image


def test_merge_three_diffs_applies_to_head(codec):
    """N-way: 0..s1 + s1..s2 + s2..head merged at once gives rbd's HEAD image
    (sha256 from the manifest's apply relationships)."""
    man = manifest("basic-64k")
    base = FIXTURES / "basic-64k" / "diff"
    ins = [(base / n).read_bytes() for n in ("0..s1.diff", "s1..s2.diff", "s2..head.diff")]
    merged = codec.merge(ins, chunk=30000, pull=50000)
    head = next(r["result_sha256"] for r in man["relationships"]
                if r["kind"] == "apply" and r["base"] == "zeros" and r["diff"] == "diff/0..head.diff")
    assert hashlib.sha256(apply_v1(bytearray(), merged)).hexdigest() == head
    s = codec.inspect([merged], mode="strict")
    assert s["valid"]
    d = s["diffs"][0]
    assert d["from_snap"] is None and d["to_snap"] is None  # head has no t
    # Merging rbd's own two-way output with the third diff gives the same bytes.
    rbd2 = (FIXTURES / "merge-diff" / "out" / "basic.0..s1+s1..s2.diff").read_bytes()
    assert codec.merge([rbd2, ins[2]]) == merged


def test_merge_v2_output(codec):
    base = FIXTURES / "basic-64k" / "diff"
    ins = [(base / "0..s1.diff").read_bytes(), (base / "s1..s2.diff").read_bytes()]
    v1 = codec.inspect([codec.merge(ins)])
    v2 = codec.inspect([codec.merge(ins, fmt="diff-v2")])
    assert v2["format"] == "diff-v2" and v2["valid"]
    r1, r2 = v1["diffs"][0], v2["diffs"][0]
    assert [(r["tag"], r["offset"], r["length"]) for r in r1["records"]] == [
        (r["tag"], r["offset"], r["length"]) for r in r2["records"]]
    assert r2["header_tags"] == ["t", "p", "s"] and r2["protected"] is False


def test_merge_usage_errors(codec):
    m = codec.merger(0)
    with pytest.raises(RbdError) as e:
        m.pull(100)
    assert e.value.err["kind"] == "no-inputs"
    m.drop()
    m = codec.merger(2)
    assert m.size() is None
    with pytest.raises(RbdError) as e:
        m.push(2, b"x")
    assert e.value.err["kind"] == "usage" and e.value.err["phase"] == "call"
    m.push(0, b"")
    with pytest.raises(RbdError) as e:
        m.push(0, b"rbd diff v1\n")
    assert (e.value.err["kind"], e.value.err["input"]) == ("usage", 0)
    m.drop()
    # The size is known once the headers are read.
    base = FIXTURES / "grow" / "diff"
    want = manifest("grow")["files"]["diff/s1..s2.diff"]["diff"]["size"]
    m = codec.merger(2)
    ins = [(base / "0..s1.diff").read_bytes(), (base / "s1..s2.diff").read_bytes()]
    while m.size() is None:
        st = m.pull(1 << 16)
        if st["need_input"] is not None:
            m.push(st["need_input"], ins[st["need_input"]])
            ins[st["need_input"]] = b""
    assert m.size() == want
    m.drop()


# --------------------------------------------------------------------------- wasmtime CLI

@pytest.mark.skipif(shutil.which("wasmtime") is None, reason="wasmtime CLI not installed")
def test_wasmtime_cli_invoke():
    """The one-liner of component/README.md."""
    stream = list(b"rbd diff v1\n" + b"e")
    call = (f"rbdiff:codec/codec.validate@0.1.0([{stream}], "
            "{mode: default, accept: all, max-records: 10, max-warnings: 10})").replace(" ", "")
    # The CLI provides no `block-device`: it traps if called (the codec never does).
    r = subprocess.run(["wasmtime", "run", "-Wunknown-imports-trap", "--invoke", call,
                        str(component_path())],
                       capture_output=True, text=True, env=dict(os.environ, RUST_BACKTRACE="0"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok([])"
