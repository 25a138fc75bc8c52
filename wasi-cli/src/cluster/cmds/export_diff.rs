//! `export-diff` of a cluster image: the extents librbd's
//! `diff_iterate2` reports (object map / fast-diff when the image has
//! them), read with several requests in flight and written by the crate's
//! extent exporter: byte-identical to `rbd export-diff`.

use super::{Extents, connect, fail, ioctx, open, with_extents};
use crate::cluster::Spec;
use crate::cmd::Output;
use crate::errors::{EINVAL, Fail, errstr};
use crate::progress::{Progress, ProgressFlags};
use rbdiff::IoSink;
use rbdiff::export::{ExportError, ExportStats, export_extents, export_extents_sealed};
use rbdiff::integrity::{HashingSink, Manifest};
use rbdiff::{DiffHeader, Encoder, Format};
use std::io::{self, Write};

/// What the command line asked for.
pub struct Req<'a> {
    pub spec: &'a Spec,
    /// `--snap` (when the spec has no `@snap`).
    pub snap: Option<&'a str>,
    pub from_snap: Option<&'a str>,
    pub whole_object: bool,
    pub format: Format,
    /// `--integrity` (in the stream).
    pub integrity: bool,
    /// `--integrity-sidecar PATH`.
    pub sidecar: Option<&'a str>,
    pub out: &'a str,
    /// `--dry-run`: write nothing, return what would be written.
    pub dry_run: bool,
    pub progress: ProgressFlags,
}

/// What a `--dry-run` export found: the records, the bytes the encoder
/// would write (before any v1 trailer or sidecar), the integrity manifest.
pub struct DryRun {
    pub stats: ExportStats,
    pub bytes: u64,
    pub manifest: Option<Manifest>,
}

fn err(code: i32) -> Fail {
    Fail::new(code, format!("rbd: export-diff error: {}", errstr(code)))
}

type Res = Result<(ExportStats, Option<Manifest>), ExportError<io::Error, io::Error>>;

/// Encode the extents of `src` into `w`; with `seal`, also the integrity
/// manifest (v2: already in-band; v1: for the caller to append or store).
fn encode<W: Write>(
    src: &mut Extents<'_, '_>,
    w: W,
    r: &Req<'_>,
    header: &DiffHeader<'_>,
    base_size: Option<u64>,
    p: &mut dyn FnMut(u64, u64),
) -> Res {
    if !(r.integrity || r.sidecar.is_some()) {
        let mut enc = Encoder::diff(IoSink(w), r.format).map_err(ExportError::Write)?;
        let st = export_extents(src, header, &mut enc, p)?;
        enc.finish().map_err(ExportError::Write)?;
        return Ok((st, None));
    }
    let sink = HashingSink::new(IoSink(w));
    let mut enc = Encoder::diff(sink, r.format).map_err(ExportError::Write)?;
    let (st, m) = export_extents_sealed(src, header, base_size, &mut enc, p)?;
    enc.finish().map_err(ExportError::Write)?;
    Ok((st, Some(m)))
}

/// Export (or, with `dry_run`, only measure) the diff `r` asks for.
pub fn run(r: &Req<'_>) -> anyhow::Result<Option<DryRun>> {
    let snap = super::snap_of(r.spec, r.snap)?;
    let rados = connect(r.spec)?;
    let io = ioctx(&rados, r.spec)?;
    let img = open(&io, r.spec, snap, true)?;
    let st = img.stat().map_err(|e| fail("rbd: export-diff error", &e))?;
    let protected = match (r.format, snap) {
        (Format::DiffV2, Some(s)) => Some(
            img.snap_is_protected(s)
                .map_err(|e| fail("rbd: export-diff error", &e))?,
        ),
        _ => None,
    };
    let seal = r.integrity || r.sidecar.is_some();
    // The pre-image of a sealed diff: the from-snapshot.
    let base = match (seal, r.from_snap) {
        (true, Some(f)) => Some(open(&io, r.spec, Some(f), true).map_err(|e| err(e.code))?),
        _ => None,
    };
    let base_size = match &base {
        Some(b) => Some(b.size().map_err(|e| fail("rbd: export-diff error", &e))?),
        None => None,
    };
    let mut out = match r.dry_run {
        true => None,
        false => Some(Output::create(r.out).map_err(|e| fail("rbd: export-diff error", &e))?),
    };
    let mut side = match (r.sidecar, r.dry_run) {
        (Some(p), false) => {
            Some(Output::create(p).map_err(|e| fail("rbd: export-diff error", &e))?)
        }
        _ => None,
    };
    let header = DiffHeader {
        from: r.from_snap.map(str::as_bytes),
        to: snap.map(str::as_bytes),
        protected,
        size: Some(st.size),
    };
    let mut prog = Progress::new("Exporting image", r.progress);
    let mut count = crate::cmd::export_diff::Count(0);
    let (res, listed) = with_extents(&img, r.from_snap, st.size, r.whole_object, |rx| {
        let mut src = Extents::new(rx, &img, base.as_ref());
        let p = &mut |d, t| prog.update(d, t);
        let Some(o) = out.as_mut() else {
            return encode(&mut src, &mut count, r, &header, base_size, p);
        };
        let (st, m) = encode(&mut src, &mut *o, r, &header, base_size, p)?;
        let wr = |e| ExportError::Write(rbdiff::EncodeError::Sink(e));
        match (&m, side.as_mut(), r.format) {
            (Some(m), Some(s), _) => s.write_all(&m.to_trailer()).map_err(wr)?,
            (Some(m), None, Format::DiffV1) => o.write_all(&m.to_trailer()).map_err(wr)?,
            _ => {}
        }
        Ok((st, m))
    });
    // A failed write stops the listing (which then reports a cancel): the
    // export's own error first; the listing's when the export saw the
    // extents end early.
    let code = match (res, listed) {
        (Err(ExportError::Read(e) | ExportError::Write(rbdiff::EncodeError::Sink(e))), _) => {
            super::errno(&e)
        }
        (Err(_), _) => EINVAL,
        (Ok(_), Err(e)) => super::errno(&e),
        (Ok((stats, manifest)), Ok(())) => match out
            .map_or(Ok(()), Output::commit)
            .and_then(|()| side.map_or(Ok(()), Output::commit))
        {
            Ok(()) => {
                prog.finish(true);
                return Ok(r.dry_run.then_some(DryRun {
                    stats,
                    bytes: count.0,
                    manifest,
                }));
            }
            Err(e) => super::errno(&e),
        },
    };
    prog.finish(false);
    Err(err(code).into())
}
