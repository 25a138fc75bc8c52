//! `import-diff`: apply a diff to an image, then create its end snapshot.

use super::{Output, Target, input_len, no_snap, open_input, show};
use crate::dev::Dev;
use crate::errors::{EBADMSG, EEXIST, EINVAL, EIO, ENOENT, ENOSPC, Fail, errstr, io_errno};
use crate::integ::{self, Journal};
use crate::progress::{Progress, ProgressFlags};
use crate::size;
use crate::store::{Image, Store};
use rbdiff::encode::IoSink;
use rbdiff::error::{ErrorKind, Expected};
use rbdiff::image::{Applier, ApplyError, UndoRecorder};
use rbdiff::integrity::{StreamFault, StreamVerifier, TAG_CHECKSUM, TAG_HASHES, VerifyError};
use rbdiff::{Config, DecodeError, Event, EventReader, FormatSet, ReadError};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

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
record; --rbd-compat accepts v1 only, as rbd does.

Verified backups (extension, docs/integrity.md):
  rbdiff export-diff --integrity --from-snap mon vm1@tue tue.diff
  rbdiff import-diff tue.diff restored          # base checked before any write
  rbdiff import-diff --integrity tue.diff.rbdiff-integrity - restored < tue.diff
  rbdiff import-diff --undo tue.undo.diff tue.diff restored
  rbdiff import-diff tue.undo.diff restored     # back to the previous state

When the diff carries integrity data (v1 trailer, v2 'H'/'K' records, or a
sidecar: --integrity FILE, or DIFF.rbdiff-integrity next to the diff), the
image's blocks the diff overwrites are checked against it BEFORE anything is
written: a wrong base is refused (rc 22) naming the first mismatching block;
--force skips only that check. Every record is read back and checked after
it is written, on a second thread: from a file while the import waits for
each journal sync (every 512 MiB) and the last one, from a pipe as it goes
(a corrupt payload stops the import with its stream offset, rc 74); the end
snapshot is created only after all checks. (Without threads, as under WASI,
payloads are hashed while applying and the result is read back at the end.)
From a pipe without a sidecar the integrity data arrives after the data: the
base cannot be checked first, the stream and the result still are.
--no-verify (or --rbd-compat) turns all of it off.
A diff read from a file is resumable: a journal (TARGET.rbdiff-resume, or a
file in the store image's directory) records a checkpoint every 512 MiB; a
re-run continues where the interrupted one stopped, and the journal is
removed on success. --undo PATH writes a diff that restores the image as it
was before this import (refused for diffs with unsorted/overlapping records).";

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
    /// Accept only 'rbd diff v1', as rbd 16.2.15 does (no verification).
    #[arg(long)]
    pub rbd_compat: bool,
    /// Integrity sidecar of the diff (default: DIFF.rbdiff-integrity if present).
    #[arg(long, value_name = "SIDECAR", conflicts_with = "no_verify")]
    pub integrity: Option<String>,
    /// Import even if the image is not the diff's base (other checks stay on).
    #[arg(long)]
    pub force: bool,
    /// Do not check integrity data (base, payloads, result).
    #[arg(long)]
    pub no_verify: bool,
    /// Require continuing an interrupted import from its journal.
    #[arg(long)]
    pub resume: bool,
    /// Write a diff that restores the image's previous state to PATH (created exclusively).
    #[arg(long, value_name = "PATH")]
    pub undo: Option<String>,
    /// Resume journal of an import into a cluster image (default: DIFF.rbdiff-resume).
    #[arg(long, value_name = "PATH")]
    pub journal: Option<String>,
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
    /// The image being written.
    pub fn dev(&mut self) -> &mut Dev {
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
    /// The diff's TO snapshot (its exact bytes) and protection (from its header).
    pub to_snap: Option<Vec<u8>>,
    pub protect: bool,
    /// Keep the end snapshot for [`Importer::create_pending_snap`] (taken
    /// only once the import is verified) instead of creating it at `e`.
    pub defer_snap: bool,
    pending_snap: Option<(Vec<u8>, bool)>,
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
            defer_snap: false,
            pending_snap: None,
            diffs_done: 0,
            end_size: None,
        }
    }

    fn apply(&mut self, ev: &Event<'_>) -> Result<(), Fail> {
        let dev = self.dest.dev();
        self.applier.event(dev, ev).map_err(|e| match e {
            ApplyError::Sink(io) => Fail::bare(io_errno(&io)),
            // Completed with the stream offset by `Fail::at_offset`.
            e @ ApplyError::BeyondSize { .. } => Fail::bare(EINVAL).with_detail(e.to_string()),
        })
    }

    /// Create the end snapshot kept back by [`Importer::defer_snap`].
    pub fn create_pending_snap(&mut self) -> Result<(), Fail> {
        if let (Dest::Store { img, .. }, Some((name, protect))) =
            (&mut self.dest, self.pending_snap.take())
        {
            img.snap_create(&name, protect)?;
        }
        Ok(())
    }

    /// The end snapshot still to create and its protection (for a journal).
    pub fn snap_state(&self) -> (Option<Vec<u8>>, bool) {
        match &self.pending_snap {
            Some((n, p)) => (Some(n.clone()), *p),
            None => (self.to_snap.clone(), self.protect),
        }
    }

    /// Complete pending zeroing and fsync the image (before a journal entry).
    pub fn sync(&mut self) -> Result<(), Fail> {
        let dev = self.dest.dev();
        self.applier.finish(dev).map_err(|e| match e {
            ApplyError::Sink(io) => Fail::bare(io_errno(&io)),
            ApplyError::BeyondSize { .. } => Fail::bare(EINVAL),
        })?;
        dev.sync().map_err(|e| Fail::bare(io_errno(&e)))
    }

    /// Where the applier's pending zeroing starts (not written yet).
    pub fn pending_zero_start(&self) -> Option<u64> {
        self.applier.pending_zero_start()
    }

    /// What the applier did so far.
    pub fn stats(&self) -> rbdiff::image::ApplyStats {
        self.applier.stats()
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
                if let Dest::Store { img, .. } = &self.dest
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
            Event::ToSnap(name) => {
                if let Dest::Store { img, .. } = &self.dest {
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
                self.to_snap = Some(name.to_vec());
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
                if let (Dest::Store { .. }, Some(name)) = (&self.dest, self.to_snap.take()) {
                    self.pending_snap = Some((name, self.protect));
                    if !self.defer_snap {
                        self.create_pending_snap()?;
                    }
                }
                self.diffs_done += 1;
            }
            _ => self.apply(ev)?,
        }
        Ok(())
    }
}

/// Why importing a stream stopped.
pub enum PumpFail {
    /// The stream is invalid.
    Decode(DecodeError),
    /// Anything else (already carrying rbd's lines, if any).
    Other(Fail),
}

/// Bytes of stream between two journal entries (`RBDIFF_RESUME_INTERVAL`
/// overrides it, for tests).
const JOURNAL_EVERY: u64 = 512 << 20;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn note(line: &str) {
    eprintln!("rbdiff: {line}");
}

/// The stream's fault as a failure.
fn stream_fault(path: &str, f: &StreamFault) -> Fail {
    Fail::new(
        EBADMSG,
        format!("rbdiff: import-diff: integrity check of {path} failed: {f}"),
    )
    .then("rbdiff: the end snapshot was not created")
}

// TODO(issue 13): the import engine (helper engine) replaces this loop.
#[allow(clippy::too_many_lines)]
pub fn run(store: &Store, mut a: Args) -> anyhow::Result<()> {
    let v = a.names.resolve(
        &[&a.path, &a.image],
        &[super::Role::Path, super::Role::Image],
    )?;
    let [path, image] = [v[0].clone(), v[1].clone()];
    let path = super::required(path, "path")?;
    let image = super::required(image, "image name")?;
    a.path = Some(path.clone());
    if let Some(spec) = crate::cluster::parse(&image)? {
        return cluster(&spec, &a, &path);
    }
    let target = Target::parse(&image)?;
    let mut img_holder;
    let journal_fail = |e: std::io::Error| Fail::io("rbd: import-diff failed: resume journal", &e);
    let (dest, journal_path) = match &target {
        Target::Raw(p) => {
            let dev = Dev::open_rw(p).map_err(|e| {
                Fail::new(
                    io_errno(&e),
                    format!(
                        "rbd: error opening image {}: {}",
                        p.display(),
                        errstr(io_errno(&e))
                    ),
                )
            })?;
            // One writer at a time (readers are not blocked).
            match crate::safefs::try_lock(dev.file()) {
                Ok(()) => {}
                Err(crate::safefs::LockError::Busy(who)) => {
                    return Err(crate::store::busy(&p.display().to_string(), who).into());
                }
                Err(crate::safefs::LockError::Io(e)) => {
                    return Err(
                        Fail::io(&format!("rbd: error opening image {}", p.display()), &e).into(),
                    );
                }
            }
            (
                Dest::Raw(dev),
                integ::JournalFile::raw(p).map_err(journal_fail)?,
            )
        }
        Target::Store(spec) => {
            no_snap(spec, "import-diff")?;
            img_holder = store.open_rw(spec)?;
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
            let j = integ::JournalFile::store(img_holder.handle()).map_err(journal_fail)?;
            (
                Dest::Store {
                    img: &mut img_holder,
                    dev,
                },
                j,
            )
        }
    };
    let fin = |f: Fail| -> anyhow::Error {
        let code = f.code;
        f.then(format!("rbd: import-diff failed: {}", errstr(code)))
            .into()
    };
    let verify = !(a.no_verify || a.rbd_compat);
    if a.integrity.is_some() && !verify {
        return Err(Fail::new(1, "rbd: --integrity cannot be used with --rbd-compat").into());
    }
    let seekable = integ::is_regular(&path);
    // Integrity data known before the stream is read.
    let known = if verify {
        integ::find(&path, a.integrity.as_deref()).map_err(fin)?
    } else {
        None
    };
    // A journal of an interrupted import of this diff.
    let ident = if seekable {
        Some(integ::Identity::of(&path).map_err(|e| {
            fin(Fail::new(
                io_errno(&e),
                format!("rbd: error opening {path}"),
            ))
        })?)
    } else {
        None
    };
    let journal = match (&ident, ident.as_ref().and_then(|_| journal_path.load())) {
        (_, None) => None,
        (Some(id), Some(Ok(j))) if j.matches(id) => Some(j),
        (_, Some(Ok(j))) => {
            note(&format!(
                "warning: ignoring resume journal {} (it belongs to another diff: {})",
                journal_path.display(),
                j.diff_path
            ));
            None
        }
        (_, Some(Err(e))) => {
            note(&format!(
                "warning: ignoring unreadable resume journal {}: {e}",
                journal_path.display()
            ));
            None
        }
    };
    if a.resume && journal.is_none() {
        return Err(fin(Fail::new(
            ENOENT,
            format!(
                "rbdiff: import-diff --resume: no resume journal of {path} at {}",
                journal_path.display()
            ),
        )));
    }
    if journal.is_some() && a.undo.is_some() {
        return Err(fin(Fail::new(
            EINVAL,
            format!(
                "rbdiff: an interrupted import of {path} is pending ({}): the image is partly changed, \
                 so --undo cannot record its previous state; resume without --undo",
                journal_path.display()
            ),
        )));
    }
    let mut imp = Importer::new(dest, a.sparse_size);
    imp.defer_snap = true;
    // Before any write: the base check, and --undo's requirements.
    if let (Some(k), None) = (&known, &journal) {
        if !a.force
            && let Err(e) = {
                // One thread per core, each on its own handle on the image.
                let mut readers = imp.dest.dev().readers(integ::check_threads());
                if readers.is_empty() {
                    k.manifest.check_base(imp.dest.dev())
                } else {
                    k.manifest.check_base_par(&mut readers)
                }
            }
        {
            let mut f = Fail::new(
                EINVAL,
                format!(
                    "rbdiff: import-diff: the image is not the base {path} was made from: {e} (integrity data from {})",
                    k.source
                ),
            );
            if let VerifyError::Block { offset, len, .. } = e {
                f = f.then(format!(
                    "rbdiff: first mismatching block: offset {offset}, length {len}"
                ));
            }
            return Err(fin(f.then(
                "rbdiff: nothing was written (--force imports anyway, --no-verify skips all checks)",
            )));
        }
        if a.undo.is_some() && !integ::sorted(&k.manifest) {
            return Err(fin(Fail::new(
                EINVAL,
                format!(
                    "rbdiff: {path} has unsorted or overlapping records: --undo cannot restore such an import"
                ),
            )));
        }
    }
    if a.undo.as_deref() == Some("-") {
        return Err(fin(Fail::new(EINVAL, "rbdiff: --undo needs a file path")));
    }
    let formats = if a.rbd_compat {
        FormatSet::V1
    } else {
        FormatSet::DIFFS
    };
    let config = Config::rbd_compatible().with_formats(formats);
    let open_err = |e: std::io::Error| {
        fin(Fail::new(
            io_errno(&e),
            format!("rbd: error opening {path}"),
        ))
    };
    let mut reader = match &journal {
        Some(j) => {
            let cp = j.checkpoint().expect("matches() checked it");
            if let Dest::Store { img, .. } = &imp.dest
                && let Some(t) = &j.to_snap
                && img.snap(t).is_some()
            {
                // The interrupted run completed: as rbd on a re-run.
                journal_path.remove();
                return Err(fin(Fail::new(
                    EEXIST,
                    format!("end snapshot '{}' already exists, aborting", show(t)),
                )));
            }
            let mut f = File::open(&path).map_err(open_err)?;
            f.seek(SeekFrom::Start(cp.position)).map_err(open_err)?;
            note(&format!(
                "resuming the import of {path} at stream offset {} ({} records applied before; journal {})",
                cp.position,
                j.records,
                journal_path.display()
            ));
            imp.to_snap = j.to_snap.clone();
            imp.protect = j.protect;
            imp.end_size = j.end_size;
            let input: Box<dyn Read> = Box::new(f);
            EventReader::resume(input, config, &cp)
        }
        None => EventReader::new(open_input(&path).map_err(open_err)?, config),
    };
    let start_at = reader.decoder().position();
    // The stream check needs every byte: not after a resume (the result is
    // still checked when integrity data is known). A regular file without
    // integrity data (nothing at its end, no sidecar) is not hashed at all;
    // a pipe may still carry it after the data.
    let may_carry = known.is_some() || !crate::integ::is_regular(&path);
    let mut sv = (verify && journal.is_none() && may_carry)
        .then(|| StreamVerifier::new(known.as_ref().map(|k| k.manifest.clone())));
    let mut undo: Option<UndoRecorder<IoSink<Output>>> = None;
    let every = env_u64("RBDIFF_RESUME_INTERVAL")
        .unwrap_or(JOURNAL_EVERY)
        .max(1);
    let fail_after = env_u64("RBDIFF_TEST_CRASH_AFTER");
    let mut journaled_at: Option<u64> = None;
    let mut last_cp: Option<rbdiff::Checkpoint> = None;
    let prior = journal.as_ref().map_or(0, |j| j.records);
    let mut prog = Progress::new("Importing image diff", a.progress);
    let total = input_len(&path);
    // With the integrity data known first and records in order, a second
    // thread reads back what was applied while the import goes on: that
    // checks each payload as written (not hashed on this thread) and most
    // of the result before the end.
    let read_back_of = known
        .as_ref()
        .map(|k| &k.manifest)
        .filter(|m| sv.is_some() && integ::sorted(m));
    // A journaled import syncs the image every `every` bytes: the thread
    // reads back while it waits for the disk (see `ReadBack::start`).
    let journaled = seekable && a.undo.is_none();
    let (res, read_back) = std::thread::scope(|sc| {
        let mut rb = read_back_of.and_then(|m| {
            let dev = imp.dest.dev().try_clone().ok()?;
            let batch = (!journaled).then_some(integ::READ_BACK_BATCH);
            integ::ReadBack::start(sc, m, dev, batch).ok()
        });
        if rb.is_some()
            && let Some(v) = sv.as_mut()
        {
            v.defer_payloads();
        }
        let res = (|| -> Result<(), Fail> {
            loop {
                let (is_end, is_banner_of) = {
                    let (off, ev, raw) = match reader.next_event_raw() {
                        Ok(Some(x)) => x,
                        Ok(None) => break,
                        Err(ReadError::Decode(e)) => {
                            return Err(decode_fail(&e, EBADMSG).at_stream(&path, &e));
                        }
                        Err(ReadError::Io(e)) => return Err(Fail::bare(io_errno(&e))),
                    };
                    if let Some(v) = sv.as_mut() {
                        v.event(off, &ev, raw);
                        if let Some(f) = v.fault()
                            && !matches!(
                                f,
                                StreamFault::Checksum { .. } | StreamFault::Count { .. }
                            )
                        {
                            return Err(stream_fault(&path, &f));
                        }
                    }
                    if let Event::Warning(ErrorKind::OutOfOrder { offset, .. }) = ev
                        && undo.is_some()
                    {
                        return Err(Fail::new(
                            EINVAL,
                            format!(
                                "rbdiff: record at image offset {offset} (stream offset {off}) is out of order or overlaps: \
                             --undo cannot restore such an import"
                            ),
                        ));
                    }
                    let banner = match ev {
                        Event::Banner(f) => Some(f),
                        _ => None,
                    };
                    if let Some(u) = undo.as_mut() {
                        u.before(imp.dest.dev(), &ev)
                            .map_err(|e| Fail::new(EIO, format!("rbdiff: {e}")))?;
                    }
                    let ours = matches!(ev, Event::Unknown { tag, len: Some(_) } if tag == TAG_HASHES || tag == TAG_CHECKSUM);
                    if let (Event::DiffEnd, Some(rb), Some(v)) = (&ev, rb.as_mut(), sv.as_ref()) {
                        // Every record is applied but pending zeroing: read
                        // back while `e` finishes and syncs.
                        let all = usize::try_from(v.records()).unwrap_or(usize::MAX);
                        rb.advance(all, imp.pending_zero_start(), true);
                    }
                    if !(verify && ours) {
                        imp.event(&ev).map_err(|f| match ev {
                            // Where in the stream the record that failed to apply is.
                            Event::Size(_)
                            | Event::Write { .. }
                            | Event::Zero { .. }
                            | Event::Data { .. }
                            | Event::DiffEnd => f.at_offset(&path, off),
                            _ => f,
                        })?;
                    }
                    if let (Some(rb), Some(v)) = (rb.as_mut(), sv.as_ref()) {
                        let started = usize::try_from(v.records()).unwrap_or(usize::MAX);
                        match ev {
                            // The records before this one are applied.
                            Event::Write { .. } | Event::Zero { .. } => rb.advance(
                                started.saturating_sub(1),
                                imp.pending_zero_start(),
                                false,
                            ),
                            // All of them, flushed and synced.
                            Event::DiffEnd => rb.advance(started, None, true),
                            _ => {}
                        }
                        if rb.failed() {
                            // The thread's error is reported below.
                            return Err(Fail::bare(EBADMSG));
                        }
                    }
                    (matches!(ev, Event::DiffEnd), banner)
                };
                if let (Some(f), Some(p)) = (is_banner_of, a.undo.as_deref()) {
                    let out = Output::create(p).map_err(|e| {
                        Fail::new(
                            io_errno(&e),
                            format!("rbdiff: cannot create undo diff {p}: {e}"),
                        )
                    })?;
                    let size = imp.dest.dev().size();
                    undo = Some(UndoRecorder::new(IoSink(out), f, size).map_err(|e| {
                        Fail::new(EIO, format!("rbdiff: writing the undo diff failed: {e}"))
                    })?);
                }
                let pos = reader.decoder().position();
                if journaled {
                    let due = match journaled_at {
                        None => true,
                        Some(at) => pos - at >= every,
                    };
                    let cp = reader.decoder().checkpoint();
                    if cp.is_some() {
                        last_cp = cp;
                    }
                    // At the end (`e` applied, image synced): the last record
                    // boundary, so a re-run only verifies and snapshots.
                    let cp = if is_end { last_cp } else { cp.filter(|_| due) };
                    if let Some(cp) = cp {
                        if let (Some(rb), Some(v)) = (rb.as_mut(), sv.as_ref()) {
                            // What is applied, read back during the sync.
                            let started = usize::try_from(v.records()).unwrap_or(usize::MAX);
                            rb.advance(started.saturating_sub(1), imp.pending_zero_start(), true);
                        }
                        imp.sync()?;
                        let id = ident.as_ref().expect("seekable");
                        let st = imp.stats();
                        let (to_snap, protect) = imp.snap_state();
                        let j = Journal {
                            version: 1,
                            diff_path: id.path.clone(),
                            diff_size: id.size,
                            diff_head_xxh3: id.head.clone(),
                            checkpoint: crate::store::hex(&cp.to_bytes()),
                            stream_offset: cp.position,
                            records: prior + st.records,
                            data_bytes: st.data_bytes,
                            zero_bytes: st.zero_bytes,
                            to_snap,
                            protect,
                            end_size: imp.end_size,
                        };
                        journal_path.save(&j).map_err(|e| {
                            Fail::new(
                                io_errno(&e),
                                format!(
                                    "rbdiff: cannot write resume journal {}: {e}",
                                    journal_path.display()
                                ),
                            )
                        })?;
                        journaled_at = Some(pos);
                    }
                }
                if let Some(n) = fail_after
                    && pos >= n
                {
                    // Test hook: die here as a killed process would.
                    eprintln!("rbdiff: RBDIFF_TEST_CRASH_AFTER reached at stream offset {pos}");
                    std::process::exit(99);
                }
                let done = reader.bytes_read() + start_at;
                match (total, imp.end_size) {
                    (Some(t), _) => prog.update(done, t),
                    (None, Some(s)) => prog.update(done.min(s), s),
                    _ => {}
                }
            }
            Ok(())
        })();
        (res, rb.map(integ::ReadBack::finish))
    });
    // A mismatch found reading back is the cause of whatever else failed.
    let mut checked = 0;
    let res = match read_back {
        Some(Ok(n)) => {
            checked = n;
            res
        }
        Some(Err(VerifyError::Block { index, offset, .. })) => {
            let so = sv.as_ref().and_then(|v| v.record_stream_offset(index));
            Err(stream_fault(
                &path,
                &StreamFault::Payload {
                    stream_offset: so.unwrap_or(0),
                    index,
                    offset,
                },
            )
            .then("rbdiff: (found reading the record back after writing it: its payload is corrupt in the stream, or the image did not keep it)"))
        }
        Some(Err(VerifyError::Read(e))) => Err(Fail::new(
            io_errno(&e),
            format!("rbdiff: import-diff: reading the image back failed: {e}"),
        )),
        Some(Err(e)) => Err(Fail::new(EBADMSG, format!("rbdiff: import-diff: {e}"))),
        None => res,
    };
    if let Err(f) = res {
        prog.finish(false);
        // A journal only helps after an interruption or an I/O failure; a
        // stream rbd (or the integrity check) refuses would fail again.
        if !matches!(f.code, EIO | ENOSPC) {
            journal_path.remove();
        }
        if let Some(u) = undo.take() {
            // Put back what was changed, from the undo data recorded so far.
            let restored = u
                .finish()
                .map_err(|e| e.to_string())
                .and_then(|IoSink(out)| out.commit().map_err(|e| e.to_string()))
                .and_then(|()| {
                    let p = a.undo.as_deref().expect("undo path");
                    let r = File::open(p).map_err(|e| e.to_string())?;
                    rbdiff::image::apply_stream(r, imp.dest.dev(), Config::new(), a.sparse_size)
                        .map_err(|e| e.to_string())?;
                    std::fs::remove_file(p).map_err(|e| e.to_string())
                });
            let f = match restored {
                Ok(()) => f.then("rbdiff: the image was restored to its previous state"),
                Err(e) => f.then(format!(
                    "rbdiff: restoring the previous state failed: {e} (undo data kept in {})",
                    a.undo.as_deref().unwrap_or("-")
                )),
            };
            return Err(fin(f));
        }
        return Err(fin(f));
    }
    // After the stream: the v1 trailer of a pipe, then the stream's verdict.
    let mut manifest = known.map(|k| k.manifest);
    if let Some(mut v) = sv.take() {
        if manifest.is_none()
            && !seekable
            && reader.decoder().format() == Some(rbdiff::Format::DiffV1)
        {
            // At most the trailer this diff can have (plus one byte) is read.
            v.trailing(reader.buffered());
            let _ = v.read_trailing(reader.into_inner());
        }
        match v.finish() {
            Err(f) => {
                prog.finish(false);
                journal_path.remove();
                return Err(fin(stream_fault(&path, &f)));
            }
            Ok(Some(m)) => {
                if manifest.is_none() {
                    note(&format!(
                        "{path} carries integrity data after its data (read from a pipe): \
                         the base could not be checked before writing; stream verified, checking the result"
                    ));
                }
                manifest = Some(m);
            }
            Ok(None) => {}
        }
    }
    if verify
        && let Some(m) = &manifest
        && let Err(e) = {
            // What the read-back thread did not check yet, on every core.
            let all = m.entries.len();
            let mut readers = imp.dest.dev().readers(integ::check_threads());
            if readers.is_empty() {
                m.check_result(imp.dest.dev(), imp.end_size)
            } else {
                m.check_result_par(&mut readers, imp.end_size, checked.min(all)..all)
            }
        }
    {
        prog.finish(false);
        journal_path.remove();
        return Err(fin(Fail::new(
            EBADMSG,
            format!("rbdiff: import-diff: the imported image does not match {path}: {e}"),
        )
        .then("rbdiff: the end snapshot was not created")));
    }
    if let Some(u) = undo.take() {
        let IoSink(out) = u.finish().map_err(|e| {
            fin(Fail::new(
                EIO,
                format!("rbdiff: writing the undo diff failed: {e}"),
            ))
        })?;
        out.commit()
            .map_err(|e| fin(Fail::io("rbdiff: writing the undo diff failed", &e)))?;
    }
    if let Err(f) = imp.create_pending_snap() {
        prog.finish(false);
        return Err(fin(f));
    }
    journal_path.remove();
    prog.finish(true);
    Ok(())
}

/// `import-diff` into a cluster image (`rbd:pool/image`).
#[cfg(feature = "librbd")]
fn cluster(spec: &crate::cluster::Spec, a: &Args, path: &str) -> anyhow::Result<()> {
    use crate::cluster::cmds::import_diff::{Req, run};
    run(&Req {
        spec,
        path,
        sparse_size: a.sparse_size,
        rbd_compat: a.rbd_compat,
        no_verify: a.no_verify,
        force: a.force,
        sidecar: a.integrity.as_deref(),
        undo: a.undo.as_deref(),
        resume: a.resume,
        journal: a.journal.as_deref(),
        progress: a.progress,
    })
}

#[cfg(not(feature = "librbd"))]
fn cluster(spec: &crate::cluster::Spec, _: &Args, _: &str) -> anyhow::Result<()> {
    Err(crate::cluster::unsupported(&spec.image_path()).into())
}
