//! The CLI's side of the import engine ([`rbdiff::apply`]): the
//! destination (raw file or store image, with rbd's snapshot rules), checks
//! on several threads, and the engine's errors as rbd-style failures. Used
//! by `import-diff` and `import --export-format 2`.

use crate::cmd::show;
use crate::dev::Dev;
use crate::errors::{EBADMSG, EEXIST, EINVAL, EIO, Fail, io_errno};
use crate::integ;
use crate::store::Image;
use rbdiff::apply::{Checker, EndSnap, ImportError, ImportOptions, Step};
use rbdiff::integrity::{Manifest, VerifyError};
use std::io;
use std::ops::Range;

/// The engine's error with the device's and the undo sink's errors.
pub type EngineError = ImportError<io::Error, io::Error>;

/// Where the diffs go.
pub enum Dest<'a> {
    /// A raw file (no snapshots).
    Raw(Dev),
    /// A store image's HEAD.
    Store { img: &'a mut Image, dev: Dev },
}

impl Dest<'_> {
    /// The image being written.
    pub fn dev(&mut self) -> &mut Dev {
        match self {
            Dest::Raw(d) => d,
            Dest::Store { dev, .. } => dev,
        }
    }

    /// rbd's snapshot rules for a diff's header steps: its start snapshot
    /// must exist, its end snapshot must not (store images only). Unknown
    /// tags are reported as rbd does.
    pub fn header_step(&self, step: &Step<'_>) -> Result<(), Fail> {
        match *step {
            Step::FromSnap(name) => {
                if let Dest::Store { img, .. } = self
                    && img.snap(name).is_none()
                {
                    return Err(Fail::new(
                        EINVAL,
                        format!(
                            "start snapshot '{}' does not exist in the image, aborting",
                            show(name)
                        ),
                    ));
                }
            }
            Step::ToSnap(name) => {
                if let Dest::Store { img, .. } = self {
                    if img.snap(name).is_some() {
                        return Err(Fail::new(
                            EEXIST,
                            format!("end snapshot '{}' already exists, aborting", show(name)),
                        ));
                    }
                    // Before any data is written: a name the store cannot
                    // keep, or no snapshot id left.
                    img.check_new_snap(name)?;
                }
            }
            Step::Unknown(tag) => eprintln!("unrecognized tag byte {tag} in stream; skipping"),
            _ => {}
        }
        Ok(())
    }

    /// Create a diff's end snapshot (store images; raw files have none).
    pub fn create_snap(&mut self, end: &EndSnap) -> Result<(), Fail> {
        if let (Dest::Store { img, .. }, Some(name)) = (self, &end.name) {
            img.snap_create(name, end.protect)?;
        }
        Ok(())
    }
}

/// Engine options from the CLI's flags.
pub fn options(sparse_size: u64, verify: bool) -> ImportOptions {
    ImportOptions::new()
        .with_sparse_size(sparse_size)
        .with_verify(verify)
}

/// Runs the base and result checks on one thread per core, each on its own
/// handle on the image (one thread where handles cannot be opened).
pub struct Threads;

impl Checker<Dev> for Threads {
    fn check_base(&mut self, m: &Manifest, image: &mut Dev) -> Result<(), VerifyError<io::Error>> {
        let mut readers = image.readers(integ::check_threads());
        if readers.is_empty() {
            m.check_base(image)
        } else {
            m.check_base_par(&mut readers)
        }
    }

    fn check_result(
        &mut self,
        m: &Manifest,
        image: &mut Dev,
        size: Option<u64>,
        entries: Range<usize>,
    ) -> Result<(), VerifyError<io::Error>> {
        let mut readers = image.readers(integ::check_threads());
        if readers.is_empty() {
            m.check_result(image, size)
        } else {
            m.check_result_par(&mut readers, size, entries)
        }
    }
}

/// A device error: its errno (a file grown past its filesystem's limit is
/// EFBIG, which a re-run would meet again: no journal is kept for it).
pub fn device_fail(e: &io::Error) -> Fail {
    Fail::bare(io_errno(e))
}

/// What the CLI says about an engine error, for the diff at `path` whose
/// integrity data came from `source`. Stream faults and result mismatches
/// are worded by the caller (`stream`, `result`).
pub fn engine_fail<U: std::fmt::Display>(
    e: ImportError<io::Error, U>,
    path: &str,
    source: &str,
    stream: &dyn Fn(&rbdiff::integrity::StreamFault) -> Fail,
    result: &dyn Fn(&VerifyError<io::Error>) -> Fail,
) -> Fail {
    match e {
        ImportError::Device(e) => device_fail(&e),
        ImportError::BeyondSize { .. } => Fail::bare(EINVAL),
        ImportError::IntegrityData(d) => integrity_data_fail(&d, path, source),
        ImportError::NotBase(e) => not_base(&e, path, source),
        ImportError::Stream(f) => stream(&f),
        ImportError::Result(e) => result(&e),
        ImportError::UndoUnsorted => Fail::new(
            EINVAL,
            format!(
                "rbdiff: {path} has unsorted or overlapping records: --undo cannot restore such an import"
            ),
        ),
        ImportError::UndoOutOfOrder {
            offset,
            stream_offset,
        } => Fail::new(
            EINVAL,
            format!(
                "rbdiff: record at image offset {offset} (stream offset {stream_offset}) is out of order or overlaps: \
                 --undo cannot restore such an import"
            ),
        ),
        e @ (ImportError::UndoRead(_) | ImportError::UndoWrite(_)) => {
            Fail::new(EIO, format!("rbdiff: {e}"))
        }
        e => Fail::new(EBADMSG, format!("rbdiff: {e}")),
    }
}

/// Integrity data that cannot belong to the diff or the image: refused
/// before anything was read or written.
pub fn integrity_data_fail(
    e: &rbdiff::apply::IntegrityDataError,
    path: &str,
    source: &str,
) -> Fail {
    Fail::new(
        EINVAL,
        format!(
            "rbdiff: import-diff: the integrity data of {path} ({source}) does not fit it: {e}"
        ),
    )
    .then("rbdiff: nothing was written (--no-verify imports without it)")
}

fn not_base(e: &VerifyError<io::Error>, path: &str, source: &str) -> Fail {
    let mut f = Fail::new(
        EINVAL,
        format!(
            "rbdiff: import-diff: the image is not the base {path} was made from: {e} (integrity data from {source})"
        ),
    );
    if let VerifyError::Block { offset, len, .. } = e {
        f = f.then(format!(
            "rbdiff: first mismatching block: offset {offset}, length {len}"
        ));
    }
    f.then("rbdiff: nothing was written (--force imports anyway, --no-verify skips all checks)")
}
