"""A Python host for the rbdiff component (PyPI wasmtime), shared by the tests.

Environment:
  RBDIFF_COMPONENT  path of the built component (default: $CARGO_TARGET_DIR or
                    ./target, then wasm32-wasip2/release/rbdiff_component.wasm)
  RBDIFF_FIXTURES   the real-rbd corpus (default tests/fixtures/rbd-16.2.15)
"""

import json
import os
from pathlib import Path

import pytest
from wasmtime import Engine, Store, WasiConfig
from wasmtime.component import Component, Linker, Record, Variant

ROOT = Path(__file__).resolve().parents[2]
INTERFACE = "rbdiff:codec/codec@0.1.0"


def component_path() -> Path:
    if os.environ.get("RBDIFF_COMPONENT"):
        return Path(os.environ["RBDIFF_COMPONENT"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "wasm32-wasip2" / "release" / "rbdiff_component.wasm"


FIXTURES = Path(os.environ.get("RBDIFF_FIXTURES", ROOT / "tests" / "fixtures" / "rbd-16.2.15"))
assert FIXTURES.is_dir(), f"real-rbd corpus not found at {FIXTURES}"


def manifest(case: str) -> dict:
    return json.loads((FIXTURES / case / "manifest.json").read_text())


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


class Codec:
    """One instance of the component in its own store."""

    def __init__(self, engine: Engine, component: Component):
        linker = Linker(engine)
        linker.add_wasip2()  # the wasm32-wasip2 build imports wasi:cli/io
        self.store = Store(engine)
        self.store.set_wasi(WasiConfig())
        self.inst = linker.instantiate(self.store, component)
        self.iface = self.inst.get_export_index(self.store, INTERFACE)
        assert self.iface is not None, f"component does not export {INTERFACE}"
        self._funcs = {}

    def func(self, name: str):
        if name not in self._funcs:
            idx = self.inst.get_export_index(self.store, name, self.iface)
            assert idx is not None, f"missing export {name}"
            self._funcs[name] = self.inst.get_func(self.store, idx)
        return self._funcs[name]

    def raw(self, name: str, *args):
        f = self.func(name)
        r = f(self.store, *args)
        f.post_return(self.store)
        return r

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
