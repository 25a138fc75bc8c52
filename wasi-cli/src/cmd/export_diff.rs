//! `export-diff`: write the changes between two points of an image.

use super::{Output, Target};
use crate::dev::Dev;
use crate::errors::{EINVAL, ENOENT, Fail, errstr, io_errno};
use crate::progress::{Progress, ProgressFlags};
use crate::size;
use crate::store::Store;
use rbdiff::encode::IoSink;
use rbdiff::image::{ExportError, ExportOptions, export_diff};
use rbdiff::{DiffHeader, EncodeError, Encoder, Format};

const EXAMPLES: &str = "\
Examples:
  rbdiff export-diff vm1@mon mon.diff                    # everything up to snapshot mon
  rbdiff export-diff --from-snap mon vm1@tue tue.diff    # mon -> tue
  rbdiff export-diff --from-snap tue vm1 - | ssh backup 'cat > head.diff'
  rbdiff export-diff --whole-object vm1@mon mon.whole.diff
  rbdiff export-diff --from-image old.raw --from-snap a --snap b new.raw a-b.diff

SOURCE is a store image ([pool/]image[@snap], or --snap), or a raw file; for
raw files --from-image names the older raw file (default: all zeros) and
--from-snap / --snap only give the snapshot names written into the diff.
The output is created exclusively (an existing file is an error, rc 17) and
removed if the export fails. Records are sorted, never cross an object
boundary (--object-size for raw files, the image's object size in the store),
and all-zero extents are written as 'z' records, as rbd does.
--export-format 2 (an extension: rbd 16.2.15 has no such option) writes an
'rbd diff v2' stream with the snapshot's protection status.";

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
    /// Behave exactly like rbd 16.2.15 (no --export-format).
    #[arg(long)]
    pub rbd_compat: bool,
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
    let out_path = super::required(v[1].clone(), "path")?;
    let target = Target::parse(&source)?;
    // Resolve the two endpoints to files, the names and the object size.
    let (from_path, to_path, from_name, to_name, protected, object_size) = match &target {
        Target::Raw(p) => {
            let from = a.from_image.as_ref().map(std::path::PathBuf::from);
            (
                from,
                p.clone(),
                a.from_snap.clone(),
                a.snap.clone(),
                None,
                a.object_size.unwrap_or(4 << 20),
            )
        }
        Target::Store(spec) => {
            if a.from_image.is_some() {
                return Err(Fail::new(EINVAL, "rbd: --from-image is for raw files only").into());
            }
            let snap = match (&spec.snap, &a.snap) {
                (Some(_), Some(_)) => {
                    return Err(Fail::new(EINVAL, "rbd: snapshot given twice").into());
                }
                (s, o) => s.clone().or(o.clone()),
            };
            let img = store.open(&spec.head())?;
            let to_path = img.data_path(snap.as_deref())?;
            let to_idx = snap.as_deref().and_then(|s| img.snap_index(s));
            let from_path = match &a.from_snap {
                None => None,
                Some(f) => {
                    let Some(fi) = img.snap_index(f) else {
                        return Err(err(ENOENT).into());
                    };
                    if to_idx.is_some_and(|ti| fi > ti) {
                        return Err(err(EINVAL).into());
                    }
                    Some(img.snap_path(&img.meta.snapshots[fi]))
                }
            };
            let protected = match (format, snap.as_deref()) {
                (Format::DiffV2, Some(s)) => img.snap(s).map(|s| s.protected),
                _ => None,
            };
            (
                from_path,
                to_path,
                a.from_snap.clone(),
                snap,
                protected,
                img.meta.object_size(),
            )
        }
    };
    let open = |p: &std::path::Path| Dev::open_ro(p).map_err(|e| err(io_errno(&e)));
    let mut to = open(&to_path)?;
    let mut from = match &from_path {
        Some(p) => Some(open(p)?),
        None => None,
    };
    let mut out = Output::create(&out_path).map_err(|e| err(io_errno(&e)))?;
    let mut prog = Progress::new("Exporting image", a.progress);
    let header = DiffHeader {
        from: from_name.as_deref().map(str::as_bytes),
        to: to_name.as_deref().map(str::as_bytes),
        protected,
        size: None,
    };
    let opts = ExportOptions {
        object_size,
        whole_object: a.whole_object,
        ..ExportOptions::default()
    };
    let res = (|| {
        let mut enc = Encoder::diff(IoSink(&mut out), format).map_err(ExportError::Write)?;
        export_diff(
            from.as_mut(),
            &mut to,
            &header,
            &opts,
            &mut enc,
            &mut |d, t| prog.update(d, t),
        )?;
        enc.finish().map_err(ExportError::Write)?;
        Ok::<(), ExportError<std::io::Error, std::io::Error>>(())
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
