#!/usr/bin/env python3
"""Run a wasm32-wasip1 command module like `wasmtime run`, using PyPI wasmtime.

usage: wasmtime_run.py [--dir HOST::GUEST | --dir DIR]... [--env K=V]... MODULE.wasm [ARGS...]

stdin/stdout/stderr are inherited; the exit status is the guest's exit code.
The compiled module is cached next to the .wasm (keyed by its sha256), so
repeated runs skip compilation.
"""
import hashlib
import os
import sys

from wasmtime import Engine, ExitTrap, Linker, Module, Store, WasiConfig, WasmtimeError


def main(argv):
    dirs, env = [], []
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        opt = argv[i]
        if opt in ("--dir", "--env") and i + 1 < len(argv):
            (dirs if opt == "--dir" else env).append(argv[i + 1])
            i += 2
        elif opt.startswith("--dir="):
            dirs.append(opt[6:])
            i += 1
        elif opt.startswith("--env="):
            env.append(opt[6:])
            i += 1
        elif opt == "--":
            i += 1
            break
        else:
            print(f"wasmtime_run: unknown option {opt}", file=sys.stderr)
            return 2
    if i >= len(argv):
        print(__doc__, file=sys.stderr)
        return 2
    module_path, args = argv[i], argv[i + 1:]

    engine = Engine()
    with open(module_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = f"{module_path}.{digest}.cwasm"
    module = None
    if os.path.exists(cache):
        try:
            module = Module.deserialize_file(engine, cache)
        except WasmtimeError:
            module = None
    if module is None:
        module = Module.from_file(engine, module_path)
        tmp = f"{cache}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(module.serialize())
        os.replace(tmp, cache)

    cfg = WasiConfig()
    cfg.argv = [os.path.basename(module_path), *args]
    for d in dirs:
        host, _, guest = d.partition("::")
        cfg.preopen_dir(host, guest or host)
    if env:
        cfg.env = [tuple(e.split("=", 1)) if "=" in e else (e, "") for e in env]
    cfg.inherit_stdin()
    cfg.inherit_stdout()
    cfg.inherit_stderr()

    store = Store(engine)
    store.set_wasi(cfg)
    linker = Linker(engine)
    linker.define_wasi()
    inst = linker.instantiate(store, module)
    try:
        inst.exports(store)["_start"](store)
    except ExitTrap as e:
        return e.code
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    sys.exit(main(sys.argv[1:]))
