"""A Python host for the rbdiff component (PyPI wasmtime), shared by the tests.

Environment:
  RBDIFF_COMPONENT  path of the built component (default: $CARGO_TARGET_DIR or
                    ./target, then wasm32-wasip2/release/rbdiff_component.wasm)
  RBDIFF_FIXTURES   the real-rbd corpus (default tests/fixtures/rbd-16.2.15)
"""

import ctypes
import hashlib
import json
import os
from pathlib import Path

import pytest
from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, ResourceHost, ResourceType, Variant

ROOT = Path(__file__).resolve().parents[2]


def _fast_byte_lists():
    """PyPI wasmtime (50.0.1) lowers and lifts `list<u8>` one byte at a
    time through its C API's value array (~10 us a byte: 40 s for a 4 MiB
    image). Fill and read that array in bulk instead: same values, same
    API, ~1000x faster. Anything but `bytes` for `list<u8>` takes the
    library's own path."""
    from wasmtime import _ffi as ffi
    from wasmtime.component import _types

    val_t = ffi.wasmtime_component_val_t
    size, kind_at, val_at = ctypes.sizeof(val_t), val_t.kind.offset, val_t.of.offset
    u8 = ffi.WASMTIME_COMPONENT_U8.value
    lower, lift = _types.ListType.convert_to_c, _types.ListType.convert_from_c

    def convert_to_c(self, store, val, ptr):
        if not isinstance(val, (bytes, bytearray)) or not self._is_bytes():
            return lower(self, store, val, ptr)
        n = len(val)
        raw = ffi.wasmtime_component_vallist_t()
        ffi.wasmtime_component_vallist_new_uninit(raw, n)
        if n:
            buf = bytearray(n * size)
            buf[kind_at::size] = bytes([u8]) * n
            buf[val_at::size] = val
            ctypes.memmove(raw.data, (ctypes.c_char * len(buf)).from_buffer(buf), len(buf))
        ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
        ptr.contents.of.list = raw

    def convert_from_c(self, c):
        if not self._is_bytes():
            return lift(self, c)
        assert c.kind == ffi.WASMTIME_COMPONENT_LIST.value
        try:
            n = c.of.tuple.size
            if n == 0:
                return b""
            raw = ctypes.string_at(ctypes.addressof(c.of.tuple.data.contents), n * size)
            assert raw[kind_at::size] == bytes([u8]) * n, "not a list of u8 values"
            return raw[val_at::size]
        finally:
            ffi.wasmtime_component_valtuple_delete(ctypes.byref(c.of.tuple))

    _types.ListType.convert_to_c = convert_to_c
    _types.ListType.convert_from_c = convert_from_c


_fast_byte_lists()
INTERFACE = "rbdiff:codec/codec@0.1.0"
IMAGES = "rbdiff:codec/images@0.1.0"
BLOCK_DEVICE = "rbdiff:codec/block-device@0.1.0"
DEVICE_TYPE = 1  # the host's id for its `device` resource type


def component_path() -> Path:
    if os.environ.get("RBDIFF_COMPONENT"):
        return Path(os.environ["RBDIFF_COMPONENT"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "wasm32-wasip2" / "release" / "rbdiff_component.wasm"


FIXTURES = Path(os.environ.get("RBDIFF_FIXTURES", ROOT / "tests" / "fixtures" / "rbd-16.2.15"))
assert FIXTURES.is_dir(), f"real-rbd corpus not found at {FIXTURES}"


def manifest(case: str) -> dict:
    return json.loads((FIXTURES / case / "manifest.json").read_text())


# The corpus cases with one image and a chain of snapshots.
IMAGE_CASES = ["basic-64k", "empty", "grow", "shrink", "discard-zero"]


def recorded_sha(m: dict, rel: str):
    """sha256 of corpus file `rel` (e.g. raw/s1.raw) as the manifest records it."""
    for k in ("files", "unstored_files"):
        if rel in m[k] and "sha256" in m[k][rel]:
            return m[k][rel]["sha256"]
    return None


def image_of(m: dict):
    """The case's image: (name, object size, snapshot names in order)."""
    (name, img), = m["images"].items()
    return name, img["object_size"], [s["name"] for s in img["snapshots"]]


def py(v):
    """Host values as plain Python: records -> dicts with snake_case keys."""
    if isinstance(v, Record):
        return {k.replace("-", "_"): py(x) for k, x in vars(v).items()}
    if isinstance(v, list):
        return [py(x) for x in v]
    if isinstance(v, Variant):
        return Variant(v.tag, py(v.payload))
    return v


class RbdError(Exception):
    """An `err` result of the component, as a dict (decode-error or merge-error)."""

    def __init__(self, err: dict):
        super().__init__(err.get("message"))
        self.err = err


def unwrap(r):
    """A WIT `result` as PyPI wasmtime lifts it: tagged (Variant) when the ok
    and err types are both records, untagged otherwise. In this WIT an
    untagged ok is never a record, so an untagged record is the error."""
    if isinstance(r, Variant):
        if r.tag == "ok":
            return py(r.payload)
        raise RbdError(py(r.payload))
    if isinstance(r, Record):
        raise RbdError(py(r))
    return py(r)


class MemDevice:
    """A block device in memory: what the component's `block-device` import
    sees. `calls` logs every call (op, offset, length); `fail` makes the
    calls of one op fail (with the host's message)."""

    def __init__(self, data: bytes = b""):
        self.data = bytearray(data)
        self.calls = []
        self.fail = {}

    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def _check(self, op, offset, length):
        self.calls.append((op, offset, length))
        if op in self.fail:
            return self.fail[op]
        if op != "resize" and offset + length > len(self.data):
            return f"{op} at {offset}+{length} past the size {len(self.data)}"
        return None

    # The `device` methods. Results are lifted untagged by PyPI wasmtime:
    # `ok` is the bytes (or None), `err` the message string.
    def size(self):
        return len(self.data)

    def read(self, offset, length):
        return self._check("read", offset, length) or bytes(self.data[offset:offset + length])

    def write(self, offset, data):
        err = self._check("write", offset, len(data))
        if not err:
            self.data[offset:offset + len(data)] = data
        return err

    def write_zeroes(self, offset, length):
        err = self._check("write-zeroes", offset, length)
        if not err:
            self.data[offset:offset + length] = bytes(length)
        return err

    def resize(self, size):
        err = self._check("resize", size, 0)
        if not err:
            if size < len(self.data):
                del self.data[size:]
            else:
                self.data.extend(bytes(size - len(self.data)))
        return err


def define_block_device(linker: Linker, devices: dict):
    """The `block-device` import: `[method]device.*` calls go to the
    MemDevice whose rep (the key in `devices`) the handle carries."""
    inst = linker.root().add_instance(BLOCK_DEVICE)
    inst.add_resource("device", ResourceType.host(DEVICE_TYPE), lambda store, rep: None)

    def method(name):
        def call(store, handle, *args):
            return getattr(devices[handle.to_host(store).rep], name)(*args)
        return call

    for wit, py_name in (("size", "size"), ("read", "read"), ("write", "write"),
                         ("write-zeroes", "write_zeroes"), ("resize", "resize")):
        inst.add_func(f"[method]device.{wit}", method(py_name))


def unwrap_tagged(r):
    """A WIT `result` whose ok and err are both records (lifted tagged)."""
    assert isinstance(r, Variant), r
    if r.tag == "ok":
        return py(r.payload)
    raise RbdError(py(r.payload))


class Codec:
    """One instance of the component in its own store."""

    def __init__(self, engine: Engine, component: Component):
        linker = Linker(engine)
        linker.add_wasip2()  # the wasm32-wasip2 build imports wasi:cli/io
        self.devices = {}
        define_block_device(linker, self.devices)
        self.store = Store(engine)
        self.store.set_wasi(WasiConfig())
        self.inst = linker.instantiate(self.store, component)
        self.iface = self.inst.get_export_index(self.store, INTERFACE)
        assert self.iface is not None, f"component does not export {INTERFACE}"
        self._funcs = {}

    def func(self, name: str, iface: str = INTERFACE):
        if (iface, name) not in self._funcs:
            parent = self.iface if iface == INTERFACE else self.inst.get_export_index(
                self.store, iface)
            assert parent is not None, f"component does not export {iface}"
            idx = self.inst.get_export_index(self.store, name, parent)
            assert idx is not None, f"missing export {name}"
            self._funcs[(iface, name)] = self.inst.get_func(self.store, idx)
        return self._funcs[(iface, name)]

    def raw(self, name: str, *args, iface: str = INTERFACE):
        f = self.func(name, iface)
        r = f(self.store, *args)
        f.post_return(self.store)
        return r

    # -- block devices (the `images` interface) ----------------------------
    def device(self, dev: "MemDevice"):
        """A borrow handle of `dev` for a call."""
        rep = next((r for r, d in self.devices.items() if d is dev), len(self.devices) + 1)
        self.devices[rep] = dev
        return ResourceHost.borrow(rep, DEVICE_TYPE)

    def export_options(self, **kw) -> Record:
        o = self.raw("default-export-options", iface=IMAGES)
        for k, v in kw.items():
            setattr(o, k.replace("_", "-"), v)
        return o

    def apply_options(self, **kw) -> Record:
        o = self.raw("default-apply-options", iface=IMAGES)
        for k, v in kw.items():
            setattr(o, k.replace("_", "-"), v)
        return o

    def apply(self, dev, diff: bytes, **opts) -> dict:
        """`apply` of `diff` onto MemDevice `dev`."""
        r = self.raw("apply", self.device(dev), diff, self.apply_options(**opts), iface=IMAGES)
        return unwrap_tagged(r)

    def export_diff(self, frm, to, **opts) -> dict:
        """`export-diff` from MemDevice `frm` (None: zeros) to `to`."""
        r = self.raw("export-diff", None if frm is None else self.device(frm), self.device(to),
                     self.export_options(**opts), iface=IMAGES)
        return unwrap_tagged(r)

    # -- plain functions ---------------------------------------------------
    def version(self) -> str:
        return self.raw("version")

    def options(self, **kw) -> Record:
        o = self.raw("default-options")
        for k, v in kw.items():
            setattr(o, k.replace("_", "-"), v)
        return o

    def inspect(self, chunks, **opts) -> dict:
        return py(self.raw("inspect", list(chunks), self.options(**opts)))

    def validate(self, chunks, **opts) -> list:
        return unwrap(self.raw("validate", list(chunks), self.options(**opts)))

    # -- resources ---------------------------------------------------------
    def decoder(self, **opts) -> "DecoderHandle":
        return DecoderHandle(self, self.raw("[constructor]decoder", self.options(**opts)))

    def merger(self, inputs: int, fmt: str = "diff-v1") -> "MergerHandle":
        return MergerHandle(self, self.raw("[constructor]merger", inputs, fmt))

    def merge(self, streams, chunk=1 << 16, pull=1 << 16, fmt="diff-v1", trace=None) -> bytes:
        """Merge byte strings with the pull/push loop a host would use."""
        m = self.merger(len(streams), fmt)
        pos = [0] * len(streams)
        out = bytearray()
        try:
            while True:
                step = m.pull(pull)
                if trace is not None:
                    trace.append(step)
                out += step["output"]
                if step["done"]:
                    return bytes(out)
                i = step["need_input"]
                if i is not None:
                    piece = streams[i][pos[i]:pos[i] + chunk]
                    pos[i] += len(piece)
                    m.push(i, piece)  # b"" = end of input i
        finally:
            m.drop()


class DecoderHandle:
    def __init__(self, codec: Codec, res):
        self.c, self.res = codec, res

    def push(self, chunk: bytes) -> list:
        return unwrap(self.c.raw("[method]decoder.push", self.res, chunk))

    def finish_events(self) -> list:
        return unwrap(self.c.raw("[method]decoder.finish-events", self.res))

    def finish(self) -> dict:
        return unwrap(self.c.raw("[method]decoder.finish", self.res))

    def summary(self) -> dict:
        return py(self.c.raw("[method]decoder.summary", self.res))

    def position(self) -> int:
        return self.c.raw("[method]decoder.position", self.res)

    def drop(self):
        self.res.drop(self.c.store)


class MergerHandle:
    def __init__(self, codec: Codec, res):
        self.c, self.res = codec, res

    def push(self, i: int, chunk: bytes):
        return unwrap(self.c.raw("[method]merger.push", self.res, i, chunk))

    def pull(self, max_bytes: int) -> dict:
        return unwrap(self.c.raw("[method]merger.pull", self.res, max_bytes))

    def size(self):
        return self.c.raw("[method]merger.size", self.res)

    def drop(self):
        self.res.drop(self.c.store)


@pytest.fixture(scope="session")
def engine():
    return Engine()


@pytest.fixture(scope="session")
def component(engine):
    p = component_path()
    if not p.exists():
        pytest.fail(f"component not built: {p} (run scripts/test-component.sh)")
    return Component.from_file(engine, str(p))


@pytest.fixture
def codec(engine, component):
    return Codec(engine, component)
