//! A Rust host for the rbdiff component, on the `wasmtime` crate: the
//! component's codec (inspect, validate, merge) and its `images` interface
//! (apply, export-diff) on raw image files that this host provides as the
//! component's `block-device`s.
//!
//! ```text
//! rbdiff-component-host COMPONENT.wasm inspect DIFF
//! rbdiff-component-host COMPONENT.wasm validate DIFF
//! rbdiff-component-host COMPONENT.wasm merge OUT DIFF DIFF...
//! rbdiff-component-host COMPONENT.wasm apply [--snap NAME]... [--no-verify] IMAGE DIFF
//! rbdiff-component-host COMPONENT.wasm export-diff [--base RAW] [--from-snap A] [--snap B]
//!     [--object-size BYTES] [--whole-object] [--format 1|2] [--integrity] IMAGE OUT
//! ```
//!
//! Errors print the component's error record (kind, stream offset,
//! message) and exit with 1.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    with: { "rbdiff:codec/block-device.device": FileDevice },
    imports: { default: trappable },
});

use exports::rbdiff::codec::codec;
use exports::rbdiff::codec::images;
use rbdiff::codec::block_device::{Host as BlockDeviceHost, HostDevice};

/// A raw image file as the component's block device.
pub struct FileDevice {
    file: File,
}

/// The largest read the component asks for (the WIT says 4 MiB).
const MAX_READ: u32 = 4 << 20;

/// What the store holds: WASI (the wasm32-wasip2 build imports it) and the
/// devices lent to the component.
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl BlockDeviceHost for HostState {}

impl HostState {
    fn dev(&self, r: &Resource<FileDevice>) -> wasmtime::Result<&File> {
        Ok(&self.table.get(r)?.file)
    }
}

fn msg(e: std::io::Error) -> String {
    e.to_string()
}

impl HostDevice for HostState {
    fn size(&mut self, d: Resource<FileDevice>) -> wasmtime::Result<u64> {
        Ok(self.dev(&d)?.metadata()?.len())
    }

    fn read(
        &mut self,
        d: Resource<FileDevice>,
        offset: u64,
        length: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        if length > MAX_READ {
            return Ok(Err(format!("read of {length} bytes: more than 4 MiB")));
        }
        let mut buf = vec![0u8; length as usize];
        Ok(self
            .dev(&d)?
            .read_exact_at(&mut buf, offset)
            .map(|()| buf)
            .map_err(msg))
    }

    fn write(
        &mut self,
        d: Resource<FileDevice>,
        offset: u64,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.dev(&d)?.write_all_at(&data, offset).map_err(msg))
    }

    fn write_zeroes(
        &mut self,
        d: Resource<FileDevice>,
        offset: u64,
        length: u64,
    ) -> wasmtime::Result<Result<(), String>> {
        let f = self.dev(&d)?;
        let zeros = vec![0u8; 1 << 20];
        let mut done = 0;
        while done < length {
            let n = (length - done).min(zeros.len() as u64);
            if let Err(e) = f.write_all_at(&zeros[..n as usize], offset + done) {
                return Ok(Err(msg(e)));
            }
            done += n;
        }
        Ok(Ok(()))
    }

    fn resize(
        &mut self,
        d: Resource<FileDevice>,
        size: u64,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.dev(&d)?.set_len(size).map_err(msg))
    }

    fn drop(&mut self, d: Resource<FileDevice>) -> wasmtime::Result<()> {
        self.table.delete(d)?;
        Ok(())
    }
}

/// One instance of the component.
struct Host {
    store: Store<HostState>,
    plugin: Plugin,
}

impl Host {
    fn new(path: &str) -> wasmtime::Result<Host> {
        let engine = Engine::default();
        let component = Component::from_file(&engine, path)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        let state = HostState {
            wasi: WasiCtx::builder().inherit_stderr().build(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&engine, state);
        let plugin = Plugin::instantiate(&mut store, &component, &linker)?;
        Ok(Host { store, plugin })
    }
}

/// Lend the raw file `path` to the component as a device.
fn device(
    store: &mut Store<HostState>,
    path: &str,
    write: bool,
) -> wasmtime::Result<Resource<FileDevice>> {
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|e| wasmtime::format_err!("{path}: {e}"))?;
    Ok(store.data_mut().table.push(FileDevice { file })?)
}

type Out = wasmtime::Result<ExitCode>;

fn read(path: &str) -> wasmtime::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| wasmtime::format_err!("{path}: {e}"))
}

fn decode_error(e: &codec::DecodeError) -> String {
    format!("{:?} at stream offset {}: {}", e.kind, e.offset, e.message)
}

fn inspect(h: &mut Host, path: &str) -> Out {
    let c = h.plugin.rbdiff_codec_codec();
    let options = c.call_default_options(&mut h.store)?;
    let s = c.call_inspect(&mut h.store, &[read(path)?], options)?;
    let records: u64 = s.diffs.iter().map(|d| d.n_w + d.n_z).sum();
    println!(
        "valid={} format={:?} diffs={} records={} bytes={}",
        s.valid,
        s.format,
        s.diffs.len(),
        records,
        s.stream_bytes
    );
    for d in &s.diffs {
        println!(
            "diff {}: from={:?} to={:?} size={:?} w={} ({} bytes) z={} ({} bytes)",
            d.index, d.from_snap, d.to_snap, d.size, d.n_w, d.w_bytes, d.n_z, d.z_bytes
        );
    }
    match &s.error {
        Some(e) => {
            println!("error: {}", decode_error(e));
            Ok(ExitCode::FAILURE)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

fn validate(h: &mut Host, path: &str) -> Out {
    let c = h.plugin.rbdiff_codec_codec();
    let mut options = c.call_default_options(&mut h.store)?;
    options.accept = codec::Accept::All;
    match c.call_validate(&mut h.store, &[read(path)?], options)? {
        Ok(warnings) => {
            println!("valid ({} warnings)", warnings.len());
            for w in &warnings {
                println!("warning: {}", decode_error(w));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("invalid: {}", decode_error(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The merger's host loop: pull, write, push what it asks for.
fn merge(h: &mut Host, out: &str, inputs: &[String]) -> Out {
    let data = inputs
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let m = h.plugin.rbdiff_codec_codec().merger();
    let n = u32::try_from(data.len())?;
    let merger = m.call_constructor(&mut h.store, n, codec::MergeFormat::DiffV1)?;
    let mut pos = vec![0usize; data.len()];
    let mut merged = Vec::new();
    let chunk = 64 << 10;
    let result = loop {
        let step = match m.call_pull(&mut h.store, merger, 1 << 20)? {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        merged.extend_from_slice(&step.output);
        if step.done {
            break Ok(());
        }
        if let Some(i) = step.need_input {
            let (i, d) = (i as usize, &data[i as usize]);
            let piece = &d[pos[i]..(pos[i] + chunk).min(d.len())];
            pos[i] += piece.len();
            if let Err(e) = m.call_push(&mut h.store, merger, i as u32, piece)? {
                break Err(e);
            }
        }
    };
    merger.resource_drop(&mut h.store)?;
    match result {
        Ok(()) => {
            std::fs::write(out, &merged).map_err(|e| wasmtime::format_err!("{out}: {e}"))?;
            println!("merged {} bytes", merged.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!(
                "merge failed: {:?} input {:?}: {}",
                e.kind, e.input, e.message
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn image_error(e: &images::ImageError) -> ExitCode {
    println!(
        "error: {:?} stream-offset={:?} image-offset={:?}: {}",
        e.kind, e.stream_offset, e.image_offset, e.message
    );
    ExitCode::FAILURE
}

fn apply(h: &mut Host, args: &[String]) -> Out {
    let im = h.plugin.rbdiff_codec_images();
    let mut o = im.call_default_apply_options(&mut h.store)?;
    let mut snaps = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--snap" => snaps.push(it.next().cloned().unwrap_or_default()),
            "--no-verify" => o.verify = false,
            _ => rest.push(a.clone()),
        }
    }
    let [image, diff] = rest.as_slice() else {
        return usage();
    };
    if !snaps.is_empty() {
        o.snapshots = Some(snaps);
    }
    let diff = read(diff)?;
    let dev = device(&mut h.store, image, true)?;
    let r = im.call_apply(&mut h.store, dev, &diff, &o)?;
    match r {
        Ok(r) => {
            println!(
                "applied: size={} records={} end-snap={} verified={:?}",
                r.size,
                r.records,
                r.end_snap.as_deref().unwrap_or("-"),
                r.verified
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(image_error(&e)),
    }
}

fn export_diff(h: &mut Host, args: &[String]) -> Out {
    let im = h.plugin.rbdiff_codec_images();
    let mut o = im.call_default_export_options(&mut h.store)?;
    let (mut base, mut rest) = (None, Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--base" => base = Some(val()),
            "--from-snap" => o.from_snap = Some(val()),
            "--snap" => o.to_snap = Some(val()),
            "--object-size" => o.object_size = val().parse()?,
            "--whole-object" => o.whole_object = true,
            "--integrity" => o.integrity = true,
            "--format" if val() == "2" => o.format = codec::MergeFormat::DiffV2,
            "--format" => o.format = codec::MergeFormat::DiffV1,
            _ => rest.push(a.clone()),
        }
    }
    let [image, out] = rest.as_slice() else {
        return usage();
    };
    let base = base.map(|b| device(&mut h.store, &b, false)).transpose()?;
    let to = device(&mut h.store, image, false)?;
    match im.call_export_diff(&mut h.store, base, to, &o)? {
        Ok(r) => {
            std::fs::write(out, &r.diff).map_err(|e| wasmtime::format_err!("{out}: {e}"))?;
            println!(
                "exported {} bytes: {} w ({} bytes), {} z ({} bytes)",
                r.diff.len(),
                r.writes,
                r.data_bytes,
                r.zeros,
                r.zero_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(image_error(&e)),
    }
}

fn usage() -> Out {
    eprintln!(
        "usage: rbdiff-component-host COMPONENT.wasm (inspect DIFF | validate DIFF | merge OUT DIFF... \
         | apply [--snap NAME]... [--no-verify] IMAGE DIFF | export-diff [--base RAW] [--from-snap A] \
         [--snap B] [--object-size N] [--whole-object] [--format 1|2] [--integrity] IMAGE OUT)"
    );
    Ok(ExitCode::from(2))
}

fn run(args: &[String]) -> Out {
    let [wasm, cmd, rest @ ..] = args else {
        return usage();
    };
    let mut h = Host::new(wasm)?;
    match (cmd.as_str(), rest) {
        ("inspect", [p]) => inspect(&mut h, p),
        ("validate", [p]) => validate(&mut h, p),
        ("merge", [out, ins @ ..]) if ins.len() >= 2 => merge(&mut h, out, ins),
        ("apply", r) => apply(&mut h, r),
        ("export-diff", r) => export_diff(&mut h, r),
        _ => usage(),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rbdiff-component-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}
