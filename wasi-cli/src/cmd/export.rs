//! `export`: an image as raw bytes (format 1) or with all its snapshots
//! and metadata (format 2).

use super::{Output, Target};
use crate::dev::{CHUNK, Dev};
use crate::errors::{EINVAL, Fail, errstr, io_errno};
use crate::objmap::{self, MapDev};
use crate::progress::{Progress, ProgressFlags};
use crate::store::Store;
use rbdiff::IoSink;
use rbdiff::block::BlockSource;
use rbdiff::export::{ExportError, ExportOptions, export_diff, export_diff_sealed};
use rbdiff::integrity::HashingSink;
use rbdiff::{DiffHeader, EncodeError, Encoder, ImageHeader};
use std::io::{Seek, SeekFrom, Write};

const EXAMPLES: &str = "\
Examples:
  rbdiff export vm1@mon vm1-mon.raw          # raw bytes (sparse file)
  rbdiff export vm1 - | gzip > vm1.raw.gz
  rbdiff export --export-format 2 vm1 vm1.v2 # every snapshot, image-meta, layout
  rbdiff export --export-format 2 vm1 - | rbdiff import --export-format 2 - copy

Format 1 writes the image bytes (holes stay holes in a file; stdout gets
every byte). Format 2 ('rbd image v2') writes order, features, stripe unit
and count, the image-meta sorted by key, then one diff per snapshot in
creation order and one for HEAD; like rbd, an @snap does not limit it.
The output is created exclusively (rc 17 if it exists).
--integrity (format 2, extension): every embedded diff carries its
integrity data as two extension records before its 'e' (docs/integrity.md;
rbd skips them with one warning line each):
  rbdiff export --export-format 2 --integrity vm1 vm1.v2
  rbdiff inspect vm1.v2                      # shows and checks each diff's data";

/// Export image to file.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Source image or snapshot ([pool/]image[@snap]), or a raw file (format 1).
    #[arg(value_name = "SOURCE")]
    pub source: Option<String>,
    /// Export file ('-' for stdout).
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
    #[command(flatten)]
    pub names: super::RbdNames,
    /// Snapshot name.
    #[arg(long)]
    pub snap: Option<String>,
    /// Format of the export: 1 (raw) or 2 (with snapshots and metadata).
    #[arg(long, default_value = "1", value_parser = ["1", "2"])]
    pub export_format: String,
    /// Seal every embedded diff with integrity data (format 2 only).
    #[arg(long)]
    pub integrity: bool,
    #[command(flatten)]
    pub progress: ProgressFlags,
}

fn err(code: i32) -> Fail {
    Fail::new(code, format!("rbd: export error: {}", errstr(code)))
}

/// Copy `src` to `out`: holes skipped (seek) for files, zeros written to stdout.
fn export_raw(src: &mut MapDev, out: &mut Output, prog: &mut Progress) -> std::io::Result<()> {
    let size = src.size();
    let mut buf = rbdiff::block::AlignedBuf::zeroed(CHUNK);
    let is_file = out.path().is_some();
    let zeros = vec![0u8; CHUNK];
    let mut pos = 0u64;
    let mut written_to = 0u64; // bytes emitted so far (stdout) / file cursor
    let mut file_out = if is_file {
        Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(out.path().expect("file"))?,
        )
    } else {
        None
    };
    while pos < size {
        let (ds, dl) = src.next_data(pos)?.map_or((size, 0), |(s, e)| (s, e - s));
        // hole [pos, ds)
        if file_out.is_none() {
            let mut p = written_to;
            while p < ds {
                let n = usize::try_from(ds - p).unwrap_or(CHUNK).min(CHUNK);
                out.write_all(&zeros[..n])?;
                p += n as u64;
            }
            written_to = ds;
        }
        let end = ds + dl;
        let mut p = ds;
        while p < end {
            let n = usize::try_from(end - p).unwrap_or(CHUNK).min(CHUNK);
            src.read_at(p, &mut buf[..n])?;
            if let Some(f) = file_out.as_mut() {
                if !rbdiff::block::is_zero(&buf[..n]) {
                    f.seek(SeekFrom::Start(p))?;
                    f.write_all(&buf[..n])?;
                }
            } else {
                out.write_all(&buf[..n])?;
                written_to = p + n as u64;
            }
            p += n as u64;
            prog.update(p, size);
        }
        pos = end.max(pos + 1).min(size.max(end));
        if dl == 0 {
            break;
        }
    }
    if let Some(f) = file_out {
        f.set_len(size)?;
        f.sync_all()?;
    } else {
        let mut p = written_to;
        while p < size {
            let n = usize::try_from(size - p).unwrap_or(CHUNK).min(CHUNK);
            out.write_all(&zeros[..n])?;
            p += n as u64;
        }
    }
    Ok(())
}

/// `--export-format 1`: the raw image bytes.
fn export_v1(
    store: &Store,
    a: &Args,
    target: &Target,
    out_path: &str,
    prog: &mut Progress,
) -> anyhow::Result<()> {
    let mut src = match target {
        Target::Raw(p) => objmap::plain(Dev::open_ro(p).map_err(|e| err(io_errno(&e)))?),
        Target::Store(spec) => {
            let img = store.open(&spec.head())?;
            let snap = spec.snap.as_deref().or(a.snap.as_deref());
            let dev = img.open_data(snap)?;
            let idx = snap.and_then(|s| img.lookup(s));
            let hint = objmap::diff_hint(&img, &spec.head().to_string(), None, idx);
            objmap::hinted(dev, hint, img.meta.order)
        }
    };
    let mut out = Output::create(out_path).map_err(|e| err(io_errno(&e)))?;
    match export_raw(&mut src, &mut out, prog).and_then(|()| out.commit()) {
        Ok(()) => {
            prog.finish(true);
            Ok(())
        }
        Err(e) => {
            prog.finish(false);
            Err(err(io_errno(&e)).into())
        }
    }
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    let v = a.names.resolve(
        &[&a.source, &a.path],
        &[super::Role::Image, super::Role::Path],
    )?;
    let source = super::required(v[0].clone(), "image name")?;
    let out_path = super::required(v[1].clone(), "path")?;
    if let Some(spec) = crate::cluster::parse(&source)? {
        return cluster(&spec, &a, &out_path);
    }
    let target = Target::parse(&source)?;
    let mut prog = Progress::new("Exporting image", a.progress);
    if a.export_format == "1" && a.integrity {
        return Err(Fail::new(EINVAL, "rbdiff: --integrity needs --export-format 2").into());
    }
    if a.export_format == "1" {
        return export_v1(store, &a, &target, &out_path, &mut prog);
    }
    let Target::Store(spec) = target else {
        return Err(Fail::new(EINVAL, "rbd: --export-format 2 needs a store image").into());
    };
    let img = store.open(&spec.head())?;
    if let Some(s) = spec.snap.as_deref().or(a.snap.as_deref()) {
        img.check_snap(Some(s))?;
    }
    let m = &img.meta;
    let meta: Vec<(&[u8], &[u8])> = m
        .meta
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    let header = ImageHeader {
        order: u64::from(m.order),
        features: m.features,
        stripe_unit: m.stripe_unit,
        stripe_count: m.stripe_count,
        meta: &meta,
    };
    let mut out = Output::create(&out_path).map_err(|e| err(io_errno(&e)))?;
    let opts = ExportOptions::new().with_object_size(m.object_size());
    let n = m.snapshots.len() as u64 + 1;
    let res = (|| -> Result<(), ExportError<std::io::Error, std::io::Error>> {
        let mut enc = Encoder::image(HashingSink::new(IoSink(&mut out)), &header, n)
            .map_err(ExportError::Write)?;
        // One diff: plain, or sealed (its checksum starts at its banner).
        let one = |enc: &mut Encoder<HashingSink<IoSink<&mut Output>>>,
                   from: Option<&mut MapDev>,
                   to: &mut MapDev,
                   h: &DiffHeader<'_>|
         -> Result<(), ExportError<std::io::Error, std::io::Error>> {
            enc.sink_mut().reset();
            enc.begin_diff().map_err(ExportError::Write)?;
            if a.integrity {
                export_diff_sealed(from, to, h, &opts, enc, &mut |_, _| {})?;
            } else {
                export_diff(from, to, h, &opts, enc, &mut |_, _| {})?;
            }
            Ok(())
        };
        let name = spec.head().to_string();
        let order = m.order;
        let hinted = |dev: std::io::Result<Dev>, from: Option<usize>, to: Option<usize>| {
            Ok(objmap::hinted(
                dev?,
                objmap::diff_hint(&img, &name, from, to),
                order,
            ))
        };
        let mut prev: Option<(&[u8], MapDev)> = None;
        for (i, s) in m.snapshots.iter().enumerate() {
            let mut to =
                hinted(img.open_snap(s), i.checked_sub(1), Some(i)).map_err(ExportError::Read)?;
            if let Some((_, p)) = prev.as_mut() {
                p.set_hint(to.hint().cloned());
            }
            let h = DiffHeader {
                from: prev.as_ref().map(|(n, _)| *n),
                to: Some(s.name.as_slice()),
                protected: Some(s.protected),
                size: None,
            };
            one(&mut enc, prev.as_mut().map(|(_, d)| d), &mut to, &h)?;
            prog.update(i as u64 + 1, n);
            prev = Some((s.name.as_slice(), to));
        }
        let last = m.snapshots.len().checked_sub(1);
        let mut head = hinted(img.open_head_ro(), last, None).map_err(ExportError::Read)?;
        if let Some((_, p)) = prev.as_mut() {
            p.set_hint(head.hint().cloned());
        }
        let h = DiffHeader {
            from: prev.as_ref().map(|(n, _)| *n),
            to: None,
            protected: None,
            size: None,
        };
        one(&mut enc, prev.as_mut().map(|(_, d)| d), &mut head, &h)?;
        enc.finish().map_err(ExportError::Write)?;
        Ok(())
    })();
    let code = match res {
        Ok(()) => match out.commit() {
            Ok(()) => {
                prog.finish(true);
                return Ok(());
            }
            Err(e) => io_errno(&e),
        },
        Err(ExportError::Read(e)) | Err(ExportError::Write(EncodeError::Sink(e))) => io_errno(&e),
        Err(_) => EINVAL,
    };
    prog.finish(false);
    Err(err(code).into())
}

/// `export` of a cluster image (`rbd:pool/image[@snap]`).
#[cfg(feature = "librbd")]
fn cluster(spec: &crate::cluster::Spec, a: &Args, out: &str) -> anyhow::Result<()> {
    if a.integrity {
        return Err(Fail::new(
            crate::errors::EOPNOTSUPP,
            "rbdiff: export --integrity is not available for cluster images yet \
             (export-diff --integrity is)",
        )
        .into());
    }
    crate::cluster::cmds::export::run(&crate::cluster::cmds::export::Req {
        spec,
        snap: a.snap.as_deref(),
        format2: a.export_format == "2",
        out,
        progress: a.progress,
    })
}

#[cfg(not(feature = "librbd"))]
fn cluster(spec: &crate::cluster::Spec, _: &Args, _: &str) -> anyhow::Result<()> {
    Err(crate::cluster::unsupported(&spec.image_path()).into())
}
