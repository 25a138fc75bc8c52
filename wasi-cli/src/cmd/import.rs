//! `import`: create a store image from a raw file (format 1) or from an
//! `rbd image v2` export with its snapshots and metadata (format 2).

use super::create::ImageOpts;
use super::import_diff::decode_fail;
use super::{input_len, open_input};
use crate::apply::{self, Dest, Threads, engine_fail};
use crate::errors::{EBADMSG, EDOM, EINVAL, Fail, errstr, io_errno};
use crate::progress::{Progress, ProgressFlags};
use crate::size;
use crate::store::{DEFAULT_FEATURES, DEFAULT_ORDER, ImageMeta, Spec, Store};
use rbdiff::apply::{ImportEngine, NoUndo, Step};
use rbdiff::{Config, DecodeError, Event, EventReader, FormatSet, ReadError};
use std::io::Read;

const EXAMPLES: &str = "\
Examples:
  rbdiff import disk.raw vm1                         # raw bytes -> vm1 (holes kept)
  rbdiff import --object-size 64K disk.raw rbd/vm1
  gunzip -c vm1.raw.gz | rbdiff import - vm1
  rbdiff import --export-format 2 vm1.v2 restored    # snapshots, protection, image-meta
  rbdiff export --export-format 2 vm1 - | rbdiff import --export-format 2 - copy

The image must not exist; its name defaults to the file's base name. Format 1
writes only non-zero --sparse-size chunks (a new image reads as zeros).
Format 2 recreates order, features, stripe unit/count (unless given on the
command line), image-meta, and every snapshot, then HEAD; on failure the
partial image is removed unless snapshots were already created (as rbd,
whose cleanup cannot remove an image with snapshots).
Embedded diffs that carry integrity data ('rbdiff export --export-format 2
--integrity', docs/integrity.md) are verified as they are imported: the
stream checksum and each payload, then the image is read back against the
diff's post-image hashes before its snapshot is created (a mismatch fails
the import, rc 74). rbd itself skips that data.";

/// Import image from file.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Import file ('-' for stdin).
    pub path: String,
    /// Destination [pool/]image (default: the file's base name).
    pub image: Option<String>,
    #[command(flatten)]
    pub opts: ImageOpts,
    /// Sparse size in B/K/M [default: 4K].
    #[arg(long, value_parser = size::bytes, default_value = "4K")]
    pub sparse_size: u64,
    /// Format of the image file: 1 (raw) or 2 ('rbd image v2').
    #[arg(long, default_value = "1", value_parser = ["1", "2"])]
    pub export_format: String,
    #[command(flatten)]
    pub progress: ProgressFlags,
}

fn import_failed(f: Fail) -> anyhow::Error {
    let code = f.code;
    f.then(format!("rbd: import failed: {}", errstr(code)))
        .into()
}

fn dest_spec(a: &Args) -> Result<Spec, Fail> {
    let name = match &a.image {
        Some(n) => n.clone(),
        None if a.path == "-" => {
            return Err(Fail::new(
                EINVAL,
                "rbd: destination image name was not specified",
            ));
        }
        None => std::path::Path::new(&a.path)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let spec = Spec::parse(&name)?;
    super::no_snap(&spec, "import")?;
    Ok(spec)
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    if let Some(img) = &a.image
        && let Some(spec) = crate::cluster::parse(img)?
    {
        return cluster(&spec, &a);
    }
    let spec = dest_spec(&a).map_err(import_failed)?;
    if std::fs::metadata(&a.path).is_ok_and(|m| m.is_dir()) {
        return Err(import_failed(Fail::new(
            crate::errors::EISDIR,
            "rbd: cannot import a directory",
        )));
    }
    if store.exists(&spec) {
        return Err(import_failed(Fail::new(
            crate::errors::EEXIST,
            "rbd: image creation failed",
        )));
    }
    let input = open_input(&a.path).map_err(|e| {
        import_failed(Fail::new(
            io_errno(&e),
            format!("rbd: error opening {}", a.path),
        ))
    })?;
    let total = input_len(&a.path);
    let mut prog = Progress::new("Importing image", a.progress);
    let r = if a.export_format == "2" {
        import_v2(store, &spec, &a, input, total, &mut prog)
    } else {
        import_v1(store, &spec, &a, input, total, &mut prog)
    };
    prog.finish(r.is_ok());
    r.map_err(import_failed)
}

fn import_v1(
    store: &Store,
    spec: &Spec,
    a: &Args,
    mut input: Box<dyn Read>,
    total: Option<u64>,
    prog: &mut Progress,
) -> Result<(), Fail> {
    let meta = a.opts.meta(total.unwrap_or(0), None)?;
    let img = store
        .create(spec, meta)
        .map_err(|f| Fail::new(f.code, "rbd: image creation failed"))?;
    let res = (|| -> std::io::Result<()> {
        let mut dev = img.open_head()?;
        let chunk = usize::try_from(img.meta.object_size()).unwrap_or(1 << 22);
        let sparse = usize::try_from(a.sparse_size).unwrap_or(usize::MAX);
        let mut buf = rbdiff::block::AlignedBuf::zeroed(chunk);
        let mut pos = 0u64;
        loop {
            // fill a whole chunk (stdin gives short reads)
            let mut n = 0;
            while n < chunk {
                match input.read(&mut buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            let pieces: Vec<&[u8]> = if sparse == 0 {
                vec![data]
            } else {
                data.chunks(sparse).collect()
            };
            let mut o = pos;
            for p in pieces {
                if sparse == 0 || !rbdiff::block::is_zero(p) {
                    dev.write_at(o, p)?;
                }
                o += p.len() as u64;
            }
            pos += n as u64;
            if let Some(t) = total {
                prog.update(pos, t);
            }
            if n < chunk {
                break;
            }
        }
        dev.set_size(pos)?;
        dev.sync()
    })();
    match res {
        Ok(()) => {
            let mut img = img;
            img.meta.size = img.head_size().unwrap_or(0);
            img.save()
                .map_err(|e| Fail::io("rbd: failed to import image", &e))
        }
        Err(e) => {
            let code = io_errno(&e);
            let _ = img.remove();
            Err(Fail::new(code, "rbd: failed to import image"))
        }
    }
}

fn import_v2(
    store: &Store,
    spec: &Spec,
    a: &Args,
    input: Box<dyn Read>,
    total: Option<u64>,
    prog: &mut Progress,
) -> Result<(), Fail> {
    let mut reader = EventReader::new(
        input,
        Config::rbd_compatible().with_formats(FormatSet::IMAGE),
    );
    let mut base = ImageMeta::new(0, DEFAULT_ORDER, DEFAULT_FEATURES, 0, 1);
    let header_failed = |f: Fail| f.then("rbd: import header failed.");
    // The image header, up to the diff count.
    loop {
        match reader.next_event() {
            Ok(Some((_, ev))) => match ev {
                Event::Order(o) => {
                    base.order = u8::try_from(o)
                        .ok()
                        .filter(|o| (12..=25).contains(o))
                        .ok_or_else(|| {
                            header_failed(Fail::new(EINVAL, format!("rbd: invalid order {o}")))
                        })?;
                }
                Event::Features(f) => base.features = f,
                Event::StripeUnit(u) => base.stripe_unit = u,
                Event::StripeCount(c) => base.stripe_count = c,
                Event::Meta { key, value } => {
                    base.meta.insert(key.to_vec(), value.to_vec());
                }
                Event::Unknown { tag, .. } => {
                    eprintln!(
                        "rbd: invalid tag in image properties zone: {}Skip it.",
                        char::from(tag)
                    );
                }
                Event::DiffCount(_) => break,
                _ => {}
            },
            Ok(None) => break,
            Err(ReadError::Decode(e)) => return Err(header_failed(decode_fail(&e, EDOM))),
            Err(ReadError::Io(e)) => return Err(header_failed(Fail::bare(io_errno(&e)))),
        }
    }
    if base.stripe_unit == 0 {
        base.stripe_unit = base.object_size();
    }
    // rbd sets each image-meta pair through librbd, which refuses a `conf_`
    // key that is no image option or a value it cannot take: the import
    // fails (rc 22). Checked before anything is created.
    for (k, v) in &base.meta {
        let (k, v) = (String::from_utf8_lossy(k), String::from_utf8_lossy(v));
        if rbdiff::image_meta::check(&k, &v).is_err() {
            return Err(Fail::new(EINVAL, "rbd: failed to import image-meta"));
        }
    }
    // rbd creates the image with the stream's byte size; the diffs resize it.
    let initial = total.unwrap_or(base.object_size());
    let meta = a.opts.meta(initial, Some(&base))?;
    let mut img = store
        .create(spec, meta)
        .map_err(|f| Fail::new(f.code, "rbd: image creation failed"))?;
    let dev = match img.open_head() {
        Ok(d) => d,
        Err(e) => {
            let _ = img.remove();
            return Err(Fail::io("rbd: failed to open image", &e));
        }
    };
    let r = {
        let mut dest = Dest::Store { img: &mut img, dev };
        pump_verified(reader, &mut dest, a.sparse_size, prog, total)
    };
    let fail = match r {
        Ok(()) => {
            img.meta.size = img.head_size().unwrap_or(img.meta.size);
            return img
                .save()
                .map_err(|e| Fail::io("rbd: failed to import image", &e));
        }
        Err(PumpFail::Decode(e)) => decode_fail(&e, EDOM),
        Err(PumpFail::Other(f)) => f,
    };
    let code = fail.code;
    // rbd removes the partial image, which fails (silently) once snapshots
    // were created: then the image stays, with the snapshots completed.
    if img.meta.snapshots.is_empty() {
        let _ = img.remove();
    }
    Err(fail
        .then(format!("rbd: import-diff failed: {}", errstr(code)))
        .then("rbd: failed to import image"))
}

/// Why importing a stream stopped.
enum PumpFail {
    /// The stream is invalid.
    Decode(DecodeError),
    /// Anything else (already carrying rbd's lines, if any).
    Other(Fail),
}

/// Drives `reader` into `dest` through the import engine (progress by
/// bytes read of `total`), verifying the image export's diffs that carry
/// integrity data: the stream (checksum, payload hashes) as it is applied,
/// then the image against the post-image hashes before the diff's snapshot
/// is created. (The base of each diff is the image the previous one left,
/// and its integrity data comes after its records: it cannot be checked
/// before writing.) A `w` record is written only once complete, as rbd.
fn pump_verified(
    reader: EventReader<Box<dyn Read>>,
    dest: &mut Dest<'_>,
    sparse_size: u64,
    prog: &mut Progress,
    total: Option<u64>,
) -> Result<(), PumpFail> {
    let limit = usize::try_from(rbdiff::apply::HOLD_LIMIT).unwrap_or(usize::MAX);
    let mut reader = reader.hold_payloads(limit);
    let mut eng = ImportEngine::<NoUndo>::new(apply::options(sparse_size, true), None)
        .map_err(|e| PumpFail::Other(Fail::new(EINVAL, format!("rbdiff: import: {e}"))))?;
    loop {
        let (off, ev, raw) = match reader.next_event_raw() {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(()),
            Err(e) => {
                // rbd leaves the complete records before the failure.
                let _ = eng.abort(dest.dev());
                return Err(match e {
                    ReadError::Decode(e) => PumpFail::Decode(e),
                    ReadError::Io(e) => PumpFail::Other(Fail::bare(io_errno(&e))),
                });
            }
        };
        let step = eng
            .event(dest.dev(), &mut Threads, off, &ev, raw)
            .map_err(|e| {
                let (diff, at) = eng.diff();
                let bad = |what: String| {
                    Fail::new(
                        EBADMSG,
                        format!(
                            "rbdiff: import: integrity check of diff #{diff} (stream offset {at}) failed: {what}"
                        ),
                    )
                };
                PumpFail::Other(engine_fail(
                    e,
                    "",
                    "",
                    &|f| bad(f.to_string()),
                    &|e| bad(format!("the imported image does not match it: {e}")),
                ))
            })?;
        match step {
            Step::DiffVerified(end) => {
                dest.dev()
                    .sync()
                    .map_err(|e| PumpFail::Other(apply::device_fail(&e)))?;
                dest.create_snap(&end).map_err(PumpFail::Other)?;
            }
            s => dest.header_step(&s).map_err(PumpFail::Other)?,
        }
        let done = reader.bytes_read();
        match (total, eng.state().end_size) {
            (Some(t), _) => prog.update(done, t),
            (None, Some(s)) => prog.update(done.min(s), s),
            _ => {}
        }
    }
}

/// `import` into a new cluster image (`rbd:pool/image`).
#[cfg(feature = "librbd")]
fn cluster(spec: &crate::cluster::Spec, a: &Args) -> anyhow::Result<()> {
    let features = a.opts.features()?;
    crate::cluster::cmds::import::run(&crate::cluster::cmds::import::Req {
        spec,
        path: &a.path,
        create: crate::ceph::CreateOpts {
            order: a.opts.order()?.map(u64::from),
            features,
            stripe_unit: a.opts.stripe_unit,
            stripe_count: a.opts.stripe_count,
        },
        sparse_size: a.sparse_size,
        format2: a.export_format == "2",
        progress: a.progress,
    })
}

#[cfg(not(feature = "librbd"))]
fn cluster(spec: &crate::cluster::Spec, _: &Args) -> anyhow::Result<()> {
    Err(crate::cluster::unsupported(&spec.image_path()).into())
}
