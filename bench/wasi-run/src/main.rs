//! `wasi-run [run] [--dir HOST::GUEST | --dir DIR]... [--env K=V]... MODULE.wasm [ARGS...]`
//!
//! Runs a wasm32-wasip1 command module like `wasmtime run` (the subset the
//! benches use) on the wasmtime crate: stdin/stdout/stderr inherited, the
//! exit status is the guest's exit code. The compiled module is cached next
//! to the .wasm, keyed by the file's identity and modification time and the
//! engine's settings (see [`cache_key`]), so repeated runs skip compilation,
//! as `wasmtime run --allow-precompiled` of a `wasmtime compile`d module
//! would. File I/O runs on the calling thread, as in the wasmtime CLI.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wasmtime::{Engine, Linker, Module, Result, Store, bail};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

const USAGE: &str =
    "usage: wasi-run [run] [--dir HOST::GUEST | --dir DIR]... [--env K=V]... MODULE.wasm [ARGS...]";

struct Opts {
    dirs: Vec<String>,
    envs: Vec<String>,
    module: PathBuf,
    args: Vec<String>,
}

fn parse(argv: &[String]) -> Result<Opts> {
    let (mut dirs, mut envs) = (Vec::new(), Vec::new());
    // An optional `run`, so scripts call it as they call `wasmtime run`.
    let mut i = usize::from(argv.first().is_some_and(|a| a == "run"));
    while let Some(opt) = argv.get(i).filter(|a| a.starts_with("--")) {
        i += 1;
        if let Some(v) = opt.strip_prefix("--dir=") {
            dirs.push(v.to_owned());
        } else if let Some(v) = opt.strip_prefix("--env=") {
            envs.push(v.to_owned());
        } else if opt == "--" {
            break;
        } else if opt == "--dir" || opt == "--env" {
            let Some(v) = argv.get(i) else {
                bail!("{opt} needs a value\n{USAGE}")
            };
            i += 1;
            if opt == "--dir" { &mut dirs } else { &mut envs }.push(v.clone());
        } else {
            bail!("unknown option {opt}\n{USAGE}");
        }
    }
    let Some(module) = argv.get(i) else {
        bail!("{USAGE}")
    };
    let guest_args = argv[i + 1..].to_vec();
    Ok(Opts {
        dirs,
        envs,
        module: module.into(),
        args: guest_args,
    })
}

/// Loads a module that `load` itself serialized to `cache` earlier.
///
/// Safety: `Module::deserialize_file` trusts its input to be wasmtime's own
/// output (it maps machine code and runs it). The file is one this program
/// wrote (atomically, by rename) under a name keyed by the .wasm's metadata
/// and the engine's compatibility settings, next to the .wasm; wasmtime
/// still checks its header and version. Someone able to replace it could
/// equally replace the .wasm or this binary.
fn deserialize_own_cache(engine: &Engine, cache: &Path) -> Result<Module> {
    // SAFETY: see above; the file is our own serialization of this module.
    unsafe { Module::deserialize_file(engine, cache) }
}

/// The cache key of the module file: its identity and modification
/// (device, inode, size, mtime, ctime), so a run reads no more of a 12 MiB
/// .wasm than its metadata (reading and hashing it was 10 of a 15 ms
/// start), and the engine's compatibility settings. Cargo writes a new
/// build as a new file; anything that changes its bytes changes its mtime
/// and ctime.
fn cache_key(engine: &Engine, meta: &std::fs::Metadata) -> u64 {
    let mut h = DefaultHasher::new();
    meta.len().hash(&mut h);
    meta.modified().ok().hash(&mut h);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()).hash(&mut h);
    }
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

fn load(engine: &Engine, path: &Path) -> Result<Module> {
    let err = |e: std::io::Error| wasmtime::format_err!("{}: {e}", path.display());
    let key = cache_key(engine, &std::fs::metadata(path).map_err(err)?);
    let mut cache = path.as_os_str().to_owned();
    cache.push(format!(".{key:016x}.cwasm"));
    let cache = PathBuf::from(cache);
    if cache.exists()
        && let Ok(m) = deserialize_own_cache(engine, &cache)
    {
        return Ok(m);
    }
    let wasm = std::fs::read(path).map_err(err)?;
    let module = Module::new(engine, &wasm)?;
    // Cached only if the file did not change while it was read (a build
    // writing it): the key must name exactly these bytes.
    if std::fs::metadata(path).is_ok_and(|m| cache_key(engine, &m) == key) {
        let mut tmp = cache.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        // A cache that cannot be written only costs the next run a compilation.
        if std::fs::write(&tmp, module.serialize()?).is_ok()
            && std::fs::rename(&tmp, &cache).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(module)
}

fn run(o: &Opts) -> Result<i32> {
    let engine = Engine::default();
    let module = load(&engine, &o.module)?;
    let mut b = WasiCtxBuilder::new();
    // File I/O on this thread, into and out of the guest's memory, as the
    // wasmtime CLI does for a synchronous run: without it each fd_read /
    // fd_write is handed to a tokio blocking thread through a fresh
    // zero-filled buffer (a thread round trip and a copy per call). Set
    // before the preopens: each copies the flag when it is added.
    b.allow_blocking_current_thread(true);
    b.inherit_stdio();
    let name = o
        .module
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    b.arg(name).args(&o.args);
    for d in &o.dirs {
        let (host, guest) = d.split_once("::").unwrap_or((d, d));
        b.preopened_dir(host, guest, FsPerms::ReadWrite)
            .map_err(|e| wasmtime::format_err!("--dir {d}: {e}"))?;
    }
    for e in &o.envs {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        b.env(k, v);
    }
    let mut store = Store::new(&engine, b.build_p1());
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    // One ambient Tokio runtime for the whole run (as `wasmtime run`), not
    // one entered and left around each WASI call.
    let res = wasmtime_wasi::runtime::with_ambient_tokio_runtime(|| start.call(&mut store, ()));
    match res {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(e),
        },
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let (result, fail) = match parse(&argv) {
        Ok(o) => (run(&o), 1),
        Err(e) => (Err(e), 2),
    };
    match result {
        // Exit codes are 0..=255 on Unix; the low byte, as a shell sees it.
        Ok(code) => ExitCode::from(code.to_le_bytes()[0]),
        Err(e) => {
            eprintln!("wasi-run: {e:?}");
            ExitCode::from(fail)
        }
    }
}
