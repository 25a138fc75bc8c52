//! `export-diff`: write the changes between two points of an image.

use super::{Output, Target};
use crate::dev::Dev;
use crate::errors::{EINVAL, Fail, errstr, io_errno};
use crate::objmap::{self, MapDev};
use crate::progress::{Progress, ProgressFlags};
use crate::size;
use crate::store::Store;
use rbdiff::IoSink;
use rbdiff::export::{ExportError, ExportOptions, ExportStats, export_diff, export_diff_sealed};
use rbdiff::integrity::{HashingSink, Manifest};
use rbdiff::{DiffHeader, EncodeError, Encoder, Format, Sink};
use std::io::Write;

const EXAMPLES: &str = "\
Examples:
  rbdiff export-diff vm1@mon mon.diff                    # everything up to snapshot mon
  rbdiff export-diff --from-snap mon vm1@tue tue.diff    # mon -> tue
  rbdiff export-diff --from-snap tue vm1 - | ssh backup 'cat > head.diff'
  rbdiff export-diff --whole-object vm1@mon mon.whole.diff
  rbdiff export-diff --from-image old.raw --from-snap a --snap b new.raw a-b.diff

SOURCE is a store image ([pool/]image[@snap], or --snap), a cluster image
(rbd:pool[/namespace]/image[@snap], native build with 'librbd'), or a raw
file; for raw files --from-image names the older raw file (default: all zeros) and
--from-snap / --snap only give the snapshot names written into the diff.
The output is created exclusively (an existing file is an error, rc 17) and
removed if the export fails. Records are sorted, never cross an object
boundary (--object-size for raw files, the image's object size in the store),
and all-zero extents are written as 'z' records, as rbd does.
--export-format 2 (an extension: rbd 16.2.15 has no such option) writes an
'rbd diff v2' stream with the snapshot's protection status.

Verified backups (extension, docs/integrity.md):
  rbdiff export-diff --integrity --from-snap mon vm1@tue tue.diff
  rbdiff export-diff --integrity --export-format 2 --from-snap mon vm1@tue tue.v2diff
  rbdiff export-diff --integrity-sidecar tue.sig --from-snap mon vm1@tue - | ssh backup 'cat > tue.diff'
  rbdiff export-diff --dry-run --from-snap mon vm1@tue      # size only, nothing written
  rbdiff export-diff --dry-run --format json --integrity vm1@tue
  rbdiff export-diff --dry-run --from-snap mon rbd:rbd/vm1@tue   # a cluster image

--integrity adds the hashes of every block the diff overwrites (before and
after) and a checksum of the stream, so import-diff can refuse a wrong base
before writing and catch corruption: v1 gets a trailer after its 'e' (rbd
reads nothing past 'e'; strict third-party parsers may reject trailing
bytes), v2 two extension records before its 'e' (rbd skips them with one
warning line each). --integrity-sidecar PATH writes the same data (v1) to a
file of its own and leaves the diff byte-identical to a plain one.
--dry-run computes the diff without writing it and prints its exact size
in bytes and its record counts (like 'zfs send -nv').";

/// Export incremental diff to file.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Source image or snapshot ([pool/]image[@snap]), or a raw file.
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,
    /// Export file ('-' for stdout).
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
    #[command(flatten)]
    pub names: super::RbdNames,
    /// Snapshot starting point.
    #[arg(long)]
    pub from_snap: Option<String>,
    /// Source snapshot name (or the TO name written for a raw file).
    #[arg(long)]
    pub snap: Option<String>,
    /// Compare whole objects.
    #[arg(long)]
    pub whole_object: bool,
    /// Raw file the diff starts from (raw sources only).
    #[arg(long, value_name = "PATH")]
    pub from_image: Option<String>,
    /// Object size for raw sources, in B/K/M [default: 4M].
    #[arg(long, value_parser = size::bytes)]
    pub object_size: Option<u64>,
    /// Diff format: 1 ('rbd diff v1', rbd's) or 2 ('rbd diff v2').
    #[arg(long, value_parser = ["1", "2"])]
    pub export_format: Option<String>,
    /// Behave exactly like rbd 16.2.15 (no --export-format, no --integrity).
    #[arg(long)]
    pub rbd_compat: bool,
    /// Add integrity data (v1: trailer after 'e'; v2: in-band records).
    #[arg(long)]
    pub integrity: bool,
    /// Write the integrity data (v1) to this file instead (created exclusively).
    #[arg(long, value_name = "PATH", conflicts_with = "integrity")]
    pub integrity_sidecar: Option<String>,
    /// Write nothing; print the size the diff would have and its record counts.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of --dry-run.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub format: String,
    #[command(flatten)]
    pub progress: ProgressFlags,
}

fn err(code: i32) -> Fail {
    Fail::new(code, format!("rbd: export-diff error: {}", errstr(code)))
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    if a.rbd_compat && a.export_format.is_some() {
        return Err(Fail::new(1, "rbd: unrecognised option '--export-format'").into());
    }
    let format = if a.export_format.as_deref() == Some("2") {
        Format::DiffV2
    } else {
        Format::DiffV1
    };
    let v = a.names.resolve(
        &[&a.source, &a.path],
        &[super::Role::Image, super::Role::Path],
    )?;
    let source = super::required(v[0].clone(), "image name")?;
    let out_path = if a.dry_run {
        v[1].clone().unwrap_or_else(|| "-".to_string())
    } else {
        super::required(v[1].clone(), "path")?
    };
    if a.rbd_compat && (a.integrity || a.integrity_sidecar.is_some()) {
        return Err(Fail::new(1, "rbd: unrecognised option '--integrity'").into());
    }
    if format == Format::DiffV2 && a.integrity_sidecar.is_some() {
        return Err(Fail::new(
            EINVAL,
            "rbdiff: --integrity-sidecar is for v1 diffs: a v2 diff carries its integrity data in-band (--integrity); 'rbdiff seal' makes a sidecar for any existing diff",
        )
        .into());
    }
    if let Some(spec) = crate::cluster::parse(&source)? {
        return cluster(&spec, &a, format, &out_path);
    }
    let target = Target::parse(&source)?;
    let Endpoints {
        from,
        to,
        from_name,
        to_name,
        protected,
        object_size,
        hint,
    } = endpoints(store, &a, &target, format)?;
    let wrap = |dev: Dev| -> MapDev {
        match &hint {
            Some((h, order)) => objmap::hinted(dev, Some(h.clone()), *order),
            None => objmap::plain(dev),
        }
    };
    let mut to = wrap(to);
    let mut from = from.map(wrap);
    let mut prog = Progress::new("Exporting image", a.progress);
    let header = DiffHeader {
        from: from_name.as_deref(),
        to: to_name.as_deref(),
        protected,
        size: None,
    };
    let opts = ExportOptions::new()
        .with_object_size(object_size)
        .with_whole_object(a.whole_object);
    let seal = a.integrity || a.integrity_sidecar.is_some();
    if a.dry_run {
        return dry_run(
            &a,
            format,
            seal,
            from.as_mut(),
            &mut to,
            &header,
            &opts,
            &mut prog,
        );
    }
    let mut out = Output::create(&out_path).map_err(|e| err(io_errno(&e)))?;
    let mut side = match &a.integrity_sidecar {
        Some(p) => Some(Output::create(p).map_err(|e| err(io_errno(&e)))?),
        None => None,
    };
    let res = (|| {
        let (_, m) = write_diff(
            &mut IoSink(&mut out),
            format,
            seal,
            from.as_mut(),
            &mut to,
            &header,
            &opts,
            &mut |d, t| prog.update(d, t),
        )?;
        if let Some(m) = m {
            match (side.as_mut(), format) {
                (Some(s), _) => s.write_all(&m.to_trailer()).map_err(wr)?,
                (None, Format::DiffV1) => out.write_all(&m.to_trailer()).map_err(wr)?,
                _ => {}
            }
        }
        Ok::<(), ExportError<std::io::Error, std::io::Error>>(())
    })();
    let code = match res {
        Ok(()) => match out
            .commit()
            .and_then(|()| side.map_or(Ok(()), Output::commit))
        {
            Ok(()) => {
                prog.finish(true);
                return Ok(());
            }
            Err(e) => io_errno(&e),
        },
        Err(e) => export_code(&e),
    };
    prog.finish(false);
    Err(err(code).into())
}

/// `export-diff` of a cluster image (`rbd:pool/image@snap`); --dry-run
/// measures it the same way (the extents librbd lists, read and encoded).
#[cfg(feature = "librbd")]
fn cluster(spec: &crate::cluster::Spec, a: &Args, format: Format, out: &str) -> anyhow::Result<()> {
    if a.from_image.is_some() {
        return Err(from_image_raw_only().into());
    }
    let dry = crate::cluster::cmds::export_diff::run(&crate::cluster::cmds::export_diff::Req {
        spec,
        snap: a.snap.as_deref(),
        from_snap: a.from_snap.as_deref(),
        whole_object: a.whole_object,
        format,
        integrity: a.integrity,
        sidecar: a.integrity_sidecar.as_deref(),
        out,
        dry_run: a.dry_run,
        progress: a.progress,
    })?;
    if let Some(d) = dry {
        report(a, format, &d.stats, d.manifest.as_ref(), d.bytes);
    }
    Ok(())
}

/// `--from-image` names the older raw file of a raw source.
fn from_image_raw_only() -> Fail {
    Fail::new(
        EINVAL,
        "rbd: --from-image is for raw files only (an image's older state is named by --from-snap)",
    )
}

#[cfg(not(feature = "librbd"))]
fn cluster(spec: &crate::cluster::Spec, _: &Args, _: Format, _: &str) -> anyhow::Result<()> {
    Err(crate::cluster::unsupported(&spec.image_path()).into())
}

/// The two endpoints of an export, opened, with the snapshot names written
/// into the diff, the object size and the object-map hint.
struct Endpoints {
    from: Option<Dev>,
    to: Dev,
    from_name: Option<Vec<u8>>,
    to_name: Option<Vec<u8>>,
    protected: Option<bool>,
    object_size: u64,
    hint: Option<(rbdiff::objmap::ObjectSet, u8)>,
}

/// Resolves and opens the two endpoints of an export.
fn endpoints(
    store: &Store,
    a: &Args,
    target: &Target,
    format: Format,
) -> anyhow::Result<Endpoints> {
    let with_code = |f: Fail| if f.lines.is_empty() { err(f.code) } else { f };
    let open = |p: &std::path::Path| Dev::open_ro(p).map_err(|e| err(io_errno(&e)));
    if let Some(f) = &a.from_image
        && crate::cluster::parse(f)?.is_some()
    {
        return Err(Fail::new(
            EINVAL,
            format!(
                "rbd: --from-image {f}: a cluster image cannot be the base of a raw file's diff \
                 (export-diff the cluster image itself, with --from-snap)"
            ),
        )
        .into());
    }
    match &target {
        Target::Raw(p) => Ok(Endpoints {
            from: a
                .from_image
                .as_ref()
                .map(|f| open(std::path::Path::new(f)))
                .transpose()?,
            to: open(p)?,
            from_name: a.from_snap.clone().map(String::into_bytes),
            to_name: a.snap.clone().map(String::into_bytes),
            protected: None,
            object_size: a.object_size.unwrap_or(4 << 20),
            hint: None,
        }),
        Target::Store(spec) => {
            if a.from_image.is_some() {
                return Err(from_image_raw_only().into());
            }
            let snap = match (&spec.snap, &a.snap) {
                (Some(_), Some(_)) => {
                    return Err(Fail::new(EINVAL, "rbd: snapshot given twice").into());
                }
                (s, o) => s.clone().or(o.clone()),
            };
            let img = store.open(&spec.head())?;
            let ends = img
                .endpoints(a.from_snap.as_deref(), snap.as_deref())
                .map_err(with_code)?;
            let hint =
                objmap::diff_hint(&img, &spec.head().to_string(), ends.from_idx, ends.to_idx)
                    .map(|h| (h, img.meta.order));
            let protected = match format {
                Format::DiffV2 => ends.to_protected,
                _ => None,
            };
            Ok(Endpoints {
                from: ends.from,
                to: ends.to,
                from_name: ends.from_name,
                to_name: ends.to_name,
                protected,
                object_size: img.meta.object_size(),
                hint,
            })
        }
    }
}

/// --dry-run: export into a counting sink and print what would be written.
#[allow(clippy::too_many_arguments)]
fn dry_run(
    a: &Args,
    format: Format,
    seal: bool,
    from: Option<&mut MapDev>,
    to: &mut MapDev,
    header: &DiffHeader<'_>,
    opts: &ExportOptions,
    prog: &mut Progress,
) -> anyhow::Result<()> {
    let mut count = Count(0);
    let res = write_diff(
        IoSink(&mut count),
        format,
        seal,
        from,
        to,
        header,
        opts,
        &mut |d, t| prog.update(d, t),
    );
    let (stats, m) = match res {
        Ok(x) => x,
        Err(e) => {
            prog.finish(false);
            return Err(err(export_code(&e)).into());
        }
    };
    prog.finish(true);
    report(a, format, &stats, m.as_ref(), count.0);
    Ok(())
}

/// Print what a --dry-run found: the diff's size (`encoded` bytes from the
/// encoder, plus a v1 trailer), its records and its integrity data.
fn report(a: &Args, format: Format, stats: &ExportStats, m: Option<&Manifest>, encoded: u64) {
    let seal = a.integrity || a.integrity_sidecar.is_some();
    let trailer = match (m, format, a.integrity) {
        (Some(m), Format::DiffV1, true) => m.to_trailer().len() as u64,
        _ => 0,
    };
    let sidecar = match (m, &a.integrity_sidecar) {
        (Some(m), Some(_)) => Some(m.to_trailer().len() as u64),
        _ => None,
    };
    let bytes = encoded + trailer;
    let integrity = match (seal, format, &a.integrity_sidecar) {
        (false, ..) => "none".to_string(),
        (true, _, Some(p)) => format!("sidecar {p}"),
        (true, Format::DiffV1, None) => "trailer".to_string(),
        (true, _, None) => "in-band".to_string(),
    };
    if a.format == "json" {
        let v = serde_json::json!({
            "format": format.name(),
            "bytes": bytes,
            "writes": stats.writes,
            "zeros": stats.zeros,
            "data_bytes": stats.data_bytes,
            "zero_bytes": stats.zero_bytes,
            "integrity": integrity,
            "sidecar_bytes": sidecar,
        });
        println!("{v}");
    } else {
        println!("size: {bytes} bytes ({})", format.name());
        println!(
            "records: {} w ({} bytes), {} z ({} bytes)",
            stats.writes, stats.data_bytes, stats.zeros, stats.zero_bytes
        );
        match sidecar {
            Some(n) => println!("integrity: {integrity} ({n} bytes)"),
            None => println!("integrity: {integrity}"),
        }
    }
}

fn wr(e: std::io::Error) -> ExportError<std::io::Error, std::io::Error> {
    ExportError::Write(EncodeError::Sink(e))
}

fn export_code(e: &ExportError<std::io::Error, std::io::Error>) -> i32 {
    match e {
        ExportError::Read(e) | ExportError::Write(EncodeError::Sink(e)) => io_errno(e),
        _ => EINVAL,
    }
}

/// An output that only counts the bytes written to it (for --dry-run).
pub struct Count(pub u64);

impl Write for Count {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Export one diff into `sink`; with `seal`, also its integrity manifest
/// (v2: already written in-band; v1: for the caller to append or store).
#[allow(clippy::too_many_arguments)]
fn write_diff<S: Sink<Error = std::io::Error>>(
    sink: S,
    format: Format,
    seal: bool,
    from: Option<&mut MapDev>,
    to: &mut MapDev,
    header: &DiffHeader<'_>,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(ExportStats, Option<Manifest>), ExportError<std::io::Error, std::io::Error>> {
    if !seal {
        let mut enc = Encoder::diff(sink, format).map_err(ExportError::Write)?;
        let st = export_diff(from, to, header, opts, &mut enc, progress)?;
        enc.finish().map_err(ExportError::Write)?;
        return Ok((st, None));
    }
    let mut enc = Encoder::diff(HashingSink::new(sink), format).map_err(ExportError::Write)?;
    let (st, m) = export_diff_sealed(from, to, header, opts, &mut enc, progress)?;
    enc.finish().map_err(ExportError::Write)?;
    Ok((st, Some(m)))
}
