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
use rbdiff::export::{ExportError, export_extents, export_extents_sealed};
use rbdiff::integrity::HashingSink;
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
    pub progress: ProgressFlags,
}

fn err(code: i32) -> Fail {
    Fail::new(code, format!("rbd: export-diff error: {}", errstr(code)))
}

type Res = Result<(), ExportError<io::Error, io::Error>>;

pub fn run(r: &Req<'_>) -> anyhow::Result<()> {
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
    let mut out = Output::create(r.out).map_err(|e| fail("rbd: export-diff error", &e))?;
    let mut side = match r.sidecar {
        Some(p) => Some(Output::create(p).map_err(|e| fail("rbd: export-diff error", &e))?),
        None => None,
    };
    let header = DiffHeader {
        from: r.from_snap.map(str::as_bytes),
        to: snap.map(str::as_bytes),
        protected,
        size: Some(st.size),
    };
    let mut prog = Progress::new("Exporting image", r.progress);
    let (res, listed) = with_extents(&img, r.from_snap, st.size, r.whole_object, |rx| {
        let mut src = Extents::new(rx, &img, base.as_ref());
        let p = &mut |d, t| prog.update(d, t);
        if !seal {
            let mut enc = Encoder::diff(IoSink(&mut out), r.format).map_err(ExportError::Write)?;
            export_extents(&mut src, &header, &mut enc, p)?;
            return enc.finish().map(drop).map_err(ExportError::Write);
        }
        let sink = HashingSink::new(IoSink(&mut out));
        let mut enc = Encoder::diff(sink, r.format).map_err(ExportError::Write)?;
        let (_, m) = export_extents_sealed(&mut src, &header, base_size, &mut enc, p)?;
        enc.finish().map_err(ExportError::Write)?;
        let wr = |e| ExportError::Write(rbdiff::EncodeError::Sink(e));
        match (side.as_mut(), r.format) {
            (Some(s), _) => s.write_all(&m.to_trailer()).map_err(wr),
            (None, Format::DiffV1) => out.write_all(&m.to_trailer()).map_err(wr),
            _ => Ok(()),
        }
    });
    // A failed write stops the listing (which then reports a cancel): the
    // export's own error first; the listing's when the export saw the
    // extents end early.
    let code = match (res as Res, listed) {
        (Err(ExportError::Read(e) | ExportError::Write(rbdiff::EncodeError::Sink(e))), _) => {
            super::errno(&e)
        }
        (Err(_), _) => EINVAL,
        (Ok(()), Err(e)) => super::errno(&e),
        (Ok(()), Ok(())) => match out
            .commit()
            .and_then(|()| side.map_or(Ok(()), Output::commit))
        {
            Ok(()) => {
                prog.finish(true);
                return Ok(());
            }
            Err(e) => super::errno(&e),
        },
    };
    prog.finish(false);
    Err(err(code).into())
}
