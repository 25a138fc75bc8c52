//! `import-diff`: apply a diff to an image, then create its end snapshot.

use super::{Target, input_len, no_snap, open_input, show};
use crate::dev::Dev;
use crate::errors::{EBADMSG, EEXIST, EINVAL, Fail, errstr, io_errno};
use crate::progress::{Progress, ProgressFlags};
use crate::size;
use crate::store::{Image, Store, check_name};
use rbdiff::error::{ErrorKind, Expected};
use rbdiff::image::{Applier, ApplyError};
use rbdiff::{Config, DecodeError, Event, EventReader, FormatSet, ReadError};
use std::io::Read;

const EXAMPLES: &str = "\
Examples:
  rbdiff import-diff tue.diff vm1                 # store image: needs vm1@mon, creates vm1@tue
  rbdiff import-diff --sparse-size 64K tue.diff rbd/vm1
  rbdiff import-diff tue.diff ./disk.raw          # a raw file: no snapshot checks
  rbdiff export-diff --from-snap a src@b - | rbdiff import-diff - dst

As rbd: the diff's FROM snapshot must exist in the image and its TO snapshot
must not; an 's' record resizes the image at once; 'w' payloads are cut into
--sparse-size chunks (counted from the record start) and all-zero chunks, like
'z' records, become holes; the TO snapshot is created only after every record
was applied, so an interrupted import can simply be run again.
Accepts 'rbd diff v1' and (extension) 'rbd diff v2' with its protection
record; --rbd-compat accepts v1 only, as rbd does.";

/// Apply an incremental diff to image HEAD, then create a snapshot.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Diff file ('-' for stdin).
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
    /// [pool/]image in the store, or a raw image file.
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    #[command(flatten)]
    pub names: super::RbdNames,
    /// Sparse size in B/K/M [default: 4K].
    #[arg(long, value_parser = size::bytes, default_value = "4K")]
    pub sparse_size: u64,
    /// Accept only 'rbd diff v1', as rbd 16.2.15 does.
    #[arg(long)]
    pub rbd_compat: bool,
    #[command(flatten)]
    pub progress: ProgressFlags,
}

/// rbd's message for a stream that ended inside `what`.
pub fn eof_message(what: Expected) -> &'static str {
    match what {
        Expected::Banner | Expected::DiffBanner => "rbd: failed to decode diff banner",
        Expected::DiffsBanner => "rbd: failed to decode diffs banner",
        Expected::Tag => "rbd: failed to decode tag",
        Expected::TagLength => "rbd: failed to decode tag length",
        Expected::FromSnapName => "rbd: failed to decode start snap name",
        Expected::ToSnapName => "rbd: failed to decode end snap name",
        Expected::Protection => "rbd: failed to decode snap protection status",
        Expected::ImageSize => "rbd: failed to decode image size",
        Expected::IoLength => "rbd: failed to decode IO length",
        Expected::WriteData => "rbd: failed to decode write data",
        Expected::UnknownPayload => "rbd: failed to skip tag",
        Expected::ImageOption => "rbd: failed to decode image option",
        Expected::ImageMeta => "rbd: failed to decode image meta",
        Expected::DiffCount => "rbd: failed to decode diff count",
    }
}

/// rbd's first message line and errno for a decode error. `eof_errno` is
/// what truncation maps to (import-diff: EBADMSG; import: EDOM).
pub fn decode_fail(e: &DecodeError, eof_errno: i32) -> Fail {
    match e.kind {
        ErrorKind::UnexpectedEof { expected, .. } => Fail::new(eof_errno, eof_message(expected)),
        ErrorKind::BadBanner { .. } | ErrorKind::BadSectionBanner { .. } => {
            Fail::new(EINVAL, "rbd: invalid or unexpected diff banner")
        }
        ErrorKind::NameTooLong { .. } => Fail::new(EINVAL, "rbd: failed to decode snap name"),
        _ => Fail::new(EINVAL, format!("rbd: invalid diff: {e}")),
    }
}

/// Where the diffs go.
pub enum Dest<'a> {
    /// A raw file (no snapshots).
    Raw(Dev),
    /// A store image's HEAD.
    Store { img: &'a mut Image, dev: Dev },
}

impl Dest<'_> {
    fn dev(&mut self) -> &mut Dev {
        match self {
            Dest::Raw(d) => d,
            Dest::Store { dev, .. } => dev,
        }
    }
}

/// Applies diff events to a destination with rbd's snapshot rules.
pub struct Importer<'a> {
    pub dest: Dest<'a>,
    sparse: u64,
    applier: Applier,
    to_snap: Option<String>,
    protect: bool,
    /// Diffs completed.
    pub diffs_done: u64,
    /// Size set by the last `s` record.
    pub end_size: Option<u64>,
}

impl<'a> Importer<'a> {
    pub fn new(dest: Dest<'a>, sparse: u64) -> Self {
        Importer {
            dest,
            sparse,
            applier: Applier::new(sparse),
            to_snap: None,
            protect: false,
            diffs_done: 0,
            end_size: None,
        }
    }

    fn apply(&mut self, ev: &Event<'_>) -> Result<(), Fail> {
        let dev = self.dest.dev();
        self.applier.event(dev, ev).map_err(|e| match e {
            ApplyError::Sink(io) => Fail::bare(io_errno(&io)),
            ApplyError::BeyondSize { .. } => Fail::bare(EINVAL),
        })
    }

    /// Feed one decoded event.
    pub fn event(&mut self, ev: &Event<'_>) -> Result<(), Fail> {
        match *ev {
            Event::DiffBegin { .. } => {
                self.applier = Applier::new(self.sparse);
                self.to_snap = None;
                self.protect = false;
            }
            Event::FromSnap(name) => {
                if let Dest::Store { img, .. } = &self.dest {
                    let n = show(name);
                    if img.snap(&n).is_none() {
                        return Err(Fail::new(
                            EINVAL,
                            format!("start snapshot '{n}' does not exist in the image, aborting"),
                        ));
                    }
                }
            }
            Event::ToSnap(name) => {
                let n = show(name);
                if let Dest::Store { img, .. } = &self.dest {
                    if img.snap(&n).is_some() {
                        return Err(Fail::new(
                            EEXIST,
                            format!("end snapshot '{n}' already exists, aborting"),
                        ));
                    }
                    check_name("snapshot", &n)
                        .map_err(|m| Fail::new(EINVAL, format!("rbd: {m}")))?;
                }
                self.to_snap = Some(n);
            }
            Event::Protection(p) => self.protect = p != 0,
            Event::Unknown { tag, .. } => {
                eprintln!("unrecognized tag byte {tag} in stream; skipping")
            }
            Event::Size(s) => {
                self.end_size = Some(s);
                self.apply(ev)?;
            }
            Event::DiffEnd => {
                self.apply(ev)?;
                let dev = self.dest.dev();
                self.applier.finish(dev).map_err(|e| match e {
                    ApplyError::Sink(io) => Fail::bare(io_errno(&io)),
                    ApplyError::BeyondSize { .. } => Fail::bare(EINVAL),
                })?;
                dev.sync().map_err(|e| Fail::bare(io_errno(&e)))?;
                if let (Dest::Store { img, .. }, Some(name)) = (&mut self.dest, self.to_snap.take())
                {
                    img.snap_create(&name, self.protect)?;
                }
                self.diffs_done += 1;
            }
            _ => self.apply(ev)?,
        }
        Ok(())
    }
}

/// Drive `reader` through `imp`; progress by bytes read of `total`.
pub fn pump(
    reader: &mut EventReader<Box<dyn Read>>,
    imp: &mut Importer<'_>,
    prog: &mut Progress,
    total: Option<u64>,
) -> Result<(), PumpFail> {
    loop {
        let ev = match reader.next_event() {
            Ok(Some((_, ev))) => ev,
            Ok(None) => return Ok(()),
            Err(ReadError::Decode(e)) => return Err(PumpFail::Decode(e)),
            Err(ReadError::Io(e)) => return Err(PumpFail::Other(Fail::bare(io_errno(&e)))),
        };
        imp.event(&ev).map_err(PumpFail::Other)?;
        let done = reader.bytes_read();
        match (total, imp.end_size) {
            (Some(t), _) => prog.update(done, t),
            (None, Some(s)) => prog.update(done.min(s), s),
            _ => {}
        }
    }
}

/// Why [`pump`] stopped.
pub enum PumpFail {
    /// The stream is invalid.
    Decode(DecodeError),
    /// Anything else (already carrying rbd's lines, if any).
    Other(Fail),
}

pub fn run(store: &Store, mut a: Args) -> anyhow::Result<()> {
    let v = a.names.resolve(
        &[&a.path, &a.image],
        &[super::Role::Path, super::Role::Image],
    )?;
    let [path, image] = [v[0].clone(), v[1].clone()];
    let path = super::required(path, "path")?;
    let image = super::required(image, "image name")?;
    a.path = Some(path.clone());
    let target = Target::parse(&image)?;
    let mut img_holder;
    let dest = match &target {
        Target::Raw(p) => Dest::Raw(Dev::open_rw(p).map_err(|e| {
            Fail::new(
                io_errno(&e),
                format!(
                    "rbd: error opening image {}: {}",
                    p.display(),
                    errstr(io_errno(&e))
                ),
            )
        })?),
        Target::Store(spec) => {
            no_snap(spec, "import-diff")?;
            img_holder = store.open(spec)?;
            let dev = img_holder.open_head().map_err(|e| {
                Fail::new(
                    io_errno(&e),
                    format!(
                        "rbd: error opening image {}: {}",
                        spec.image,
                        errstr(io_errno(&e))
                    ),
                )
            })?;
            Dest::Store {
                img: &mut img_holder,
                dev,
            }
        }
    };
    let fin = |f: Fail| -> anyhow::Error {
        let code = f.code;
        f.then(format!("rbd: import-diff failed: {}", errstr(code)))
            .into()
    };
    let input = open_input(&path).map_err(|e| {
        fin(Fail::new(
            io_errno(&e),
            format!("rbd: error opening {path}"),
        ))
    })?;
    let formats = if a.rbd_compat {
        FormatSet::V1
    } else {
        FormatSet::DIFFS
    };
    let mut reader = EventReader::new(input, Config::rbd_compatible().with_formats(formats));
    let mut imp = Importer::new(dest, a.sparse_size);
    let mut prog = Progress::new("Importing image diff", a.progress);
    match pump(&mut reader, &mut imp, &mut prog, input_len(&path)) {
        Ok(()) => {
            prog.finish(true);
            Ok(())
        }
        Err(PumpFail::Decode(e)) => {
            prog.finish(false);
            Err(fin(decode_fail(&e, EBADMSG)))
        }
        Err(PumpFail::Other(f)) => {
            prog.finish(false);
            Err(fin(f))
        }
    }
}
