//! `import` into a new cluster image: format 1 (raw bytes; all-zero
//! blocks of `--sparse-size` skipped) or format 2 (`rbd image v2`: the
//! layout and image-meta from its header, then every embedded diff applied
//! by the crate's import engine, each snapshot created and protected as
//! the stream says). As rbd, a failed import removes the image.

use super::dev::ClusterDev;
use super::{connect, errno, fail, ioctx, open};
use crate::ceph::{CreateOpts, IoCtx};
use crate::cluster::{Spec, flags};
use crate::cmd::import_diff::decode_fail;
use crate::errors::{EBADMSG, EINVAL, Fail, errstr};
use crate::progress::{Progress, ProgressFlags};
use rbdiff::apply::{ImportEngine, ImportOptions, Sequential, Step};
use rbdiff::block::BlockSink;
use rbdiff::{Config, Event, EventReader, FormatSet, ReadError};
use std::io::{self, Read};

/// What the command line asked for.
pub struct Req<'a> {
    pub spec: &'a Spec,
    pub path: &'a str,
    /// `--order`/`--object-size` and the other layout flags (override a
    /// v2 stream's header).
    pub create: CreateOpts,
    pub sparse_size: u64,
    pub format2: bool,
    pub progress: ProgressFlags,
}

fn failed(f: Fail) -> Fail {
    let code = f.code;
    f.then(format!("rbd: import failed: {}", errstr(code)))
}

fn input(path: &str) -> Result<Box<dyn Read>, Fail> {
    if path == "-" {
        return Ok(Box::new(io::stdin().lock()));
    }
    let f = std::fs::File::open(path)
        .map_err(|e| failed(Fail::io(&format!("rbd: error opening {path}"), &e)))?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(failed(Fail::new(21, "rbd: cannot import a directory")));
    }
    Ok(Box::new(f))
}

pub fn run(r: &Req<'_>) -> anyhow::Result<()> {
    if r.spec.snap.is_some() {
        return Err(Fail::new(
            EINVAL,
            "rbd: snapshot name was specified, but is not valid here",
        )
        .into());
    }
    let mut inp = input(r.path)?;
    let rados = connect(r.spec)?;
    let io = ioctx(&rados, r.spec)?;
    let mut prog = Progress::new("Importing image", r.progress);
    let res = if r.format2 {
        v2(r, &io, &mut inp)
    } else {
        v1(r, &io, &mut inp, &mut prog)
    };
    match res {
        Ok(()) => {
            prog.finish(true);
            Ok(())
        }
        Err(f) => {
            prog.finish(false);
            Err(f.into())
        }
    }
}

/// Create the image, run `body` on it, remove it again if that fails.
fn create_then(
    r: &Req<'_>,
    io: &IoCtx<'_>,
    size: u64,
    o: &CreateOpts,
    meta: &[(String, String)],
    body: impl FnOnce(&mut ClusterDev<'_, '_>, &crate::ceph::Image<'_>) -> Result<(), Fail>,
) -> Result<(), Fail> {
    io.create(&r.spec.image, size, o)
        .map_err(|e| failed(fail("rbd: image creation failed", &e)))?;
    let res = (|| {
        let img = open(io, r.spec, None, false)?;
        // rbd's messages: the image-meta's failure alone, the data's with
        // "failed to import image" after it.
        for (k, v) in meta {
            img.metadata_set(k, v)
                .map_err(|e| Fail::new(errno(&e), "rbd: failed to import image-meta"))?;
        }
        let mut dev = ClusterDev::new(&img, flags().rbd_concurrent_management_ops)
            .map_err(|e| fail("rbd: failed to open image", &e))?;
        body(&mut dev, &img)
            .and_then(|()| {
                dev.flush()
                    .map_err(|e| fail("rbd: import: writing the image failed", &e))
            })
            .map_err(|f| f.then("rbd: failed to import image"))
    })();
    if let Err(f) = res {
        let _ = io.remove(&r.spec.image);
        return Err(failed(f));
    }
    Ok(())
}

/// Read until `buf` is full or the input ends; bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Raw bytes: the image is made the file's size (stdin: grown as it comes)
/// and only blocks that are not all zeros are written.
fn v1(r: &Req<'_>, io: &IoCtx<'_>, inp: &mut dyn Read, prog: &mut Progress) -> Result<(), Fail> {
    let total = (r.path != "-")
        .then(|| std::fs::metadata(r.path).map(|m| m.len()).ok())
        .flatten();
    let block = usize::try_from(r.sparse_size)
        .unwrap_or(4096)
        .clamp(512, 1 << 22);
    create_then(r, io, total.unwrap_or(0), &r.create, &[], |dev, _| {
        let mut buf = rbdiff::block::AlignedBuf::zeroed(4 << 20);
        let mut at = 0u64;
        loop {
            let n = read_full(inp, &mut buf)
                .map_err(|e| Fail::io("rbd: error reading import file", &e))?;
            if n == 0 {
                break;
            }
            let end = at + n as u64;
            if end > dev.size() {
                dev.set_size(end)
                    .map_err(|e| fail("rbd: can't resize image during import", &e))?;
            }
            // Runs of chunks that are not all zeros, one write each (as
            // rbd's calc_sparse_extent); zero chunks are skipped.
            let mut run: Option<usize> = None;
            for (i, b) in buf[..n].chunks(block).enumerate() {
                match (rbdiff::block::is_zero(b), run) {
                    (false, None) => run = Some(i * block),
                    (true, Some(start)) => {
                        dev.write_at(at + start as u64, &buf[start..i * block])
                            .map_err(|e| fail("rbd: import: writing the image failed", &e))?;
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(start) = run {
                dev.write_at(at + start as u64, &buf[start..n])
                    .map_err(|e| fail("rbd: import: writing the image failed", &e))?;
            }
            at = end;
            prog.update(at, total.unwrap_or(at));
        }
        if dev.size() != at {
            dev.set_size(at)
                .map_err(|e| fail("rbd: final image resize failed", &e))?;
        }
        Ok(())
    })
}

/// The layout and image-meta of an `rbd image v2` header.
#[derive(Default)]
struct Header {
    create: CreateOpts,
    meta: Vec<(String, String)>,
}

fn read_header<R: Read>(reader: &mut EventReader<R>) -> Result<Header, Fail> {
    let mut h = Header::default();
    loop {
        let ev = match reader.next_event() {
            Ok(Some((_, ev))) => ev,
            Ok(None) => return Err(Fail::new(EBADMSG, "rbd: import header failed.")),
            Err(ReadError::Decode(d)) => return Err(decode_fail(&d, 33)),
            Err(ReadError::Io(e)) => return Err(Fail::io("rbd: import header failed.", &e)),
        };
        match ev {
            Event::Order(o) => h.create.order = Some(o),
            Event::Features(f) => h.create.features = Some(f),
            Event::StripeUnit(u) => h.create.stripe_unit = Some(u),
            Event::StripeCount(c) => h.create.stripe_count = Some(c),
            Event::Meta { key, value } => h.meta.push((
                String::from_utf8_lossy(key).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            )),
            Event::ImageHeaderEnd => return Ok(h),
            _ => {}
        }
    }
}

/// `rbd image v2`: create the image as its header says (the command line's
/// layout flags win), set its image-meta, apply every diff.
fn v2(r: &Req<'_>, io: &IoCtx<'_>, inp: &mut dyn Read) -> Result<(), Fail> {
    let config = Config::rbd_compatible().with_formats(FormatSet::IMAGE);
    let mut reader = EventReader::new(inp, config).hold_payloads(32 << 20);
    let h = read_header(&mut reader).map_err(failed)?;
    let o = CreateOpts {
        order: r.create.order.or(h.create.order),
        features: r.create.features.or(h.create.features),
        stripe_unit: r.create.stripe_unit.or(h.create.stripe_unit),
        stripe_count: r.create.stripe_count.or(h.create.stripe_count),
    };
    let size = match r.path {
        "-" => 1u64 << o.order.unwrap_or(22),
        p => std::fs::metadata(p).map_or(0, |m| m.len()),
    };
    create_then(r, io, size, &o, &h.meta, |dev, img| {
        let opts = ImportOptions::new().with_sparse_size(r.sparse_size);
        let mut eng: ImportEngine =
            ImportEngine::new(opts, None).map_err(|e| Fail::new(EINVAL, format!("rbdiff: {e}")))?;
        loop {
            let (at, ev, raw) = match reader.next_event_raw() {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(ReadError::Decode(d)) => return Err(decode_fail(&d, EBADMSG)),
                Err(ReadError::Io(e)) => {
                    return Err(Fail::io("rbd: error reading import file", &e));
                }
            };
            let step = eng
                .event(dev, &mut Sequential, at, &ev, raw)
                .map_err(|e| Fail::new(EINVAL, format!("rbd: import-diff failed: {e}")))?;
            match step {
                Step::DiffVerified(end) => super::import_diff::create_snap(img, &end)?,
                Step::Unknown(t) => eprintln!("unrecognized tag byte {t} in stream; skipping"),
                _ => {}
            }
        }
        eng.end_stream()
            .map_err(|f| Fail::new(EBADMSG, format!("rbdiff: import: {f}")))?;
        Ok(())
    })
}
