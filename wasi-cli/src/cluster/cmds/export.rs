//! `export` of a cluster image: format 1 (the bytes; holes stay holes in a
//! file) or format 2 (order, features, stripe, image-meta, one diff per
//! snapshot and one for HEAD, as `rbd export --export-format 2`).

use super::{Extents, connect, fail, ioctx, open, with_extents};
use crate::ceph::Image;
use crate::cluster::Spec;
use crate::cmd::{Output, RawOutput};
use crate::errors::{Fail, errstr};
use crate::progress::{Progress, ProgressFlags};
use rbdiff::IoSink;
use rbdiff::export::{ExportError, ExtentSource, export_extents};
use rbdiff::{DiffHeader, Encoder, ImageHeader};
use std::io::{self, Write};

/// What the command line asked for.
pub struct Req<'a> {
    pub spec: &'a Spec,
    pub snap: Option<&'a str>,
    pub format2: bool,
    pub out: &'a str,
    pub progress: ProgressFlags,
}

fn err(code: i32) -> Fail {
    Fail::new(code, format!("rbd: export error: {}", errstr(code)))
}

pub fn run(r: &Req<'_>) -> anyhow::Result<()> {
    let snap = super::snap_of(r.spec, r.snap)?;
    let rados = connect(r.spec)?;
    let io = ioctx(&rados, r.spec)?;
    let img = open(&io, r.spec, snap, true)?;
    let mut out = Output::create(r.out).map_err(|e| fail("rbd: export error", &e))?;
    let mut prog = Progress::new("Exporting image", r.progress);
    let res = if r.format2 {
        v2(&img, &mut out, &mut prog)
    } else {
        v1(&img, &mut out, &mut prog)
    };
    match res.and_then(|()| out.commit()) {
        Ok(()) => {
            prog.finish(true);
            Ok(())
        }
        Err(e) => {
            prog.finish(false);
            Err(err(super::errno(&e)).into())
        }
    }
}

fn read_err(e: ExportError<io::Error, io::Error>) -> io::Error {
    match e {
        ExportError::Read(e) | ExportError::Write(rbdiff::EncodeError::Sink(e)) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// The image's bytes: its allocated extents (parent included) read with
/// several requests in flight; to a file at their offsets (the rest stays
/// a hole), to stdout with zeros between.
fn v1(img: &Image<'_>, out: &mut Output, prog: &mut Progress) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let size = img.size()?;
    let zeros = vec![0u8; 1 << 20];
    let (res, listed) = with_extents(img, None, size, false, |rx| -> io::Result<()> {
        let mut src = Extents::new(rx, img, None);
        let mut at = 0u64;
        while let Some(x) = src.next_extent()? {
            let Some(data) = x.data.filter(|d| !rbdiff::block::is_zero(d)) else {
                continue;
            };
            match out.raw()? {
                RawOutput::File(f) => f.write_all_at(data, x.offset)?,
                RawOutput::Stdout(s) => {
                    while at < x.offset {
                        let n = usize::try_from(x.offset - at)
                            .unwrap_or(usize::MAX)
                            .min(zeros.len());
                        s.write_all(&zeros[..n])?;
                        at += n as u64;
                    }
                    s.write_all(data)?;
                    at = x.offset + x.len;
                }
            }
            prog.update(x.offset + x.len, size);
        }
        match out.raw()? {
            RawOutput::File(f) => f.set_len(size),
            RawOutput::Stdout(s) => {
                while at < size {
                    let n = usize::try_from(size - at)
                        .unwrap_or(usize::MAX)
                        .min(zeros.len());
                    s.write_all(&zeros[..n])?;
                    at += n as u64;
                }
                Ok(())
            }
        }
    });
    res.and(listed)
}

/// `rbd image v2`: the header, then one diff per snapshot (from the one
/// before) and one for HEAD.
fn v2(img: &Image<'_>, out: &mut Output, prog: &mut Progress) -> io::Result<()> {
    img.snap_set(None)?;
    let st = img.stat()?;
    let meta = img.metadata()?;
    let pairs: Vec<(&[u8], &[u8])> = meta
        .iter()
        .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
        .collect();
    let header = ImageHeader {
        order: u64::from(st.order),
        features: st.features,
        stripe_unit: st.stripe_unit,
        stripe_count: st.stripe_count,
        meta: &pairs,
    };
    let snaps = img.snaps()?;
    let count = snaps.len() as u64 + 1;
    let mut enc = Encoder::image(IoSink(&mut *out), &header, count)
        .map_err(|e| read_err(ExportError::Write(e)))?;
    let mut prev: Option<&str> = None;
    for (i, s) in snaps.iter().map(Some).chain([None]).enumerate() {
        let name = s.map(|s| s.name.as_str());
        img.snap_set(name)?;
        let protected = match name {
            Some(n) => Some(img.snap_is_protected(n)?),
            None => None,
        };
        let h = DiffHeader {
            from: prev.map(str::as_bytes),
            to: name.map(str::as_bytes),
            protected,
            size: Some(img.size()?),
        };
        enc.begin_diff()
            .map_err(|e| read_err(ExportError::Write(e)))?;
        let (res, listed) = with_extents(img, prev, img.size()?, false, |rx| {
            let mut src = Extents::new(rx, img, None);
            export_extents(&mut src, &h, &mut enc, &mut |_, _| {}).map(drop)
        });
        res.map_err(read_err)?;
        listed?;
        prog.update(i as u64 + 1, count);
        prev = name;
    }
    enc.finish().map_err(|e| read_err(ExportError::Write(e)))?;
    Ok(())
}
