//! `import-diff`: apply a diff to an image, then create its end snapshot.

use super::{Output, Target, input_len, no_snap, open_input, show};
use crate::apply::{self, Dest, EngineError, Threads, engine_fail};
use crate::dev::Dev;
use crate::errors::{EBADMSG, EEXIST, EINVAL, EIO, ENOENT, ENOSPC, Fail, errstr, io_errno};
use crate::integ::{self, Journal, JournalFile};
use crate::progress::{Progress, ProgressFlags};
use crate::size;
use crate::store::{Image, Store};
use rbdiff::IoSink;
use rbdiff::apply::{EndSnap, ImportEngine, ImportError, ResumeState, Step};
use rbdiff::integrity::{StreamFault, VerifyError};
use rbdiff::{Config, DecodeError, Event, EventReader, FormatSet, ReadError};
use rbdiff::{ErrorKind, Expected};
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

/// The import engine as the CLI runs it (undo diffs go to a file).
type Engine = ImportEngine<IoSink<Output>>;

/// Bytes of stream between two journal entries (`RBDIFF_RESUME_INTERVAL`
/// overrides it, for tests).
const JOURNAL_EVERY: u64 = 512 << 20;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn note(line: &str) {
    eprintln!("rbdiff: {line}");
}

/// Said when the integrity data came after the data (a pipe without a
/// sidecar): the stream was verified, the base could not be.
pub fn note_late_integrity(path: &str) {
    note(&format!(
        "{path} carries integrity data after its data (read from a pipe): \
         the base could not be checked before writing; stream verified, checking the result"
    ));
}

/// The stream's fault as a failure.
fn stream_fault(path: &str, f: &StreamFault) -> Fail {
    Fail::new(
        EBADMSG,
        format!("rbdiff: import-diff: integrity check of {path} failed: {f}"),
    )
    .then("rbdiff: the end snapshot was not created")
}

fn result_fail(path: &str, e: &VerifyError<std::io::Error>) -> Fail {
    Fail::new(
        EBADMSG,
        format!("rbdiff: import-diff: the imported image does not match {path}: {e}"),
    )
    .then("rbdiff: the end snapshot was not created")
}

/// What one `import-diff` run works with.
struct Run<'a> {
    a: &'a Args,
    path: String,
    journal_path: JournalFile,
    seekable: bool,
    verify: bool,
    /// Integrity data known before the stream is read.
    known: Option<integ::Known>,
    /// The diff file's identity (files only: they can be resumed).
    ident: Option<integ::Identity>,
    /// The journal of an interrupted import of this diff.
    journal: Option<Journal>,
}

impl Run<'_> {
    fn fail(&self, e: EngineError) -> Fail {
        let source = self.known.as_ref().map_or("", |k| k.source.as_str());
        let path = &self.path;
        engine_fail(e, path, source, &|f| stream_fault(path, f), &|e| {
            result_fail(path, e)
        })
    }
}

fn fin(f: Fail) -> anyhow::Error {
    let code = f.code;
    f.then(format!("rbd: import-diff failed: {}", errstr(code)))
        .into()
}

fn open_err(path: &str) -> impl Fn(std::io::Error) -> anyhow::Error + '_ {
    move |e| {
        fin(Fail::new(
            io_errno(&e),
            format!("rbd: error opening {path}"),
        ))
    }
}

/// The destination (locked: one writer at a time) and where its journal lives.
fn open_dest<'i>(
    store: &Store,
    target: &Target,
    holder: &'i mut Option<Image>,
) -> Result<(Dest<'i>, JournalFile), Fail> {
    let opening = |name: &dyn std::fmt::Display, e: std::io::Error| {
        Fail::new(
            io_errno(&e),
            format!("rbd: error opening image {name}: {}", errstr(io_errno(&e))),
        )
    };
    let journal_fail = |e: std::io::Error| Fail::io("rbd: import-diff failed: resume journal", &e);
    match target {
        Target::Raw(p) => {
            let dev = Dev::open_rw(p).map_err(|e| opening(&p.display(), e))?;
            // One writer at a time (readers are not blocked).
            match crate::safefs::try_lock(dev.file()) {
                Ok(()) => {}
                Err(crate::safefs::LockError::Busy(who)) => {
                    return Err(crate::store::busy(&p.display().to_string(), who));
                }
                Err(crate::safefs::LockError::Io(e)) => {
                    return Err(Fail::io(
                        &format!("rbd: error opening image {}", p.display()),
                        &e,
                    ));
                }
            }
            let j = JournalFile::raw(p).map_err(journal_fail)?;
            Ok((Dest::Raw(dev), j))
        }
        Target::Store(spec) => {
            no_snap(spec, "import-diff")?;
            let img = holder.insert(store.open_rw(spec)?);
            let dev = img.open_head().map_err(|e| opening(&spec.image, e))?;
            let j = JournalFile::store(img.handle()).map_err(journal_fail)?;
            Ok((Dest::Store { img, dev }, j))
        }
    }
}

/// The journal of an interrupted import of the diff identified by `ident`.
fn find_journal(ident: Option<&integ::Identity>, journal_path: &JournalFile) -> Option<Journal> {
    let id = ident?;
    match journal_path.load()? {
        Ok(j) if j.matches(id) => Some(j),
        Ok(j) => {
            note(&format!(
                "warning: ignoring resume journal {} (it belongs to another diff: {})",
                journal_path.display(),
                j.diff_path
            ));
            None
        }
        Err(e) => {
            note(&format!(
                "warning: ignoring unreadable resume journal {}: {e}",
                journal_path.display()
            ));
            None
        }
    }
}

/// What is known before the stream: integrity data, identity, journal; and
/// the refusals that need no stream.
fn prepare<'a>(a: &'a Args, path: String, journal_path: JournalFile) -> anyhow::Result<Run<'a>> {
    let verify = !(a.no_verify || a.rbd_compat);
    if a.integrity.is_some() && !verify {
        return Err(Fail::new(1, "rbd: --integrity cannot be used with --rbd-compat").into());
    }
    let seekable = integ::is_regular(&path);
    let known = if verify {
        integ::find(&path, a.integrity.as_deref()).map_err(fin)?
    } else {
        None
    };
    let ident = if seekable {
        Some(integ::Identity::of(&path).map_err(open_err(&path))?)
    } else {
        None
    };
    let journal = find_journal(ident.as_ref(), &journal_path);
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
    if a.undo.as_deref() == Some("-") {
        return Err(fin(Fail::new(EINVAL, "rbdiff: --undo needs a file path")));
    }
    Ok(Run {
        a,
        path,
        journal_path,
        seekable,
        verify,
        known,
        ident,
        journal,
    })
}

/// The engine and the reader: new, or continuing an interrupted import.
fn start(r: &Run<'_>, dest: &Dest<'_>) -> anyhow::Result<(Engine, EventReader<Box<dyn Read>>)> {
    let formats = if r.a.rbd_compat {
        FormatSet::V1
    } else {
        FormatSet::DIFFS
    };
    let config = Config::rbd_compatible().with_formats(formats);
    // A regular file without integrity data (nothing at its end, no
    // sidecar) is not hashed at all; a pipe may still carry it after the
    // data.
    let may_carry = r.known.is_some() || !r.seekable;
    let opts = apply::options(r.a.sparse_size, r.verify)
        .with_stream_check(r.verify && may_carry)
        .with_base_check(!r.a.force)
        .with_stream_len(r.seekable.then(|| input_len(&r.path)).flatten());
    let known = r.known.as_ref().map(|k| k.manifest.clone());
    let source = r.known.as_ref().map_or("", |k| k.source.as_str());
    let bad = |e| fin(apply::integrity_data_fail(&e, &r.path, source));
    let Some(j) = &r.journal else {
        let eng = Engine::new(opts, known).map_err(bad)?;
        let input = open_input(&r.path).map_err(open_err(&r.path))?;
        return Ok((eng, hold(EventReader::new(input, config))));
    };
    let cp = j.checkpoint().expect("matches() checked it");
    if let Dest::Store { img, .. } = dest
        && let Some(t) = &j.to_snap
        && img.snap(t).is_some()
    {
        // The interrupted run completed: as rbd on a re-run.
        r.journal_path.remove();
        return Err(fin(Fail::new(
            EEXIST,
            format!("end snapshot '{}' already exists, aborting", show(t)),
        )));
    }
    let mut f = File::open(&r.path).map_err(open_err(&r.path))?;
    f.seek(SeekFrom::Start(cp.position))
        .map_err(open_err(&r.path))?;
    note(&format!(
        "resuming the import of {} at stream offset {} ({} records applied before; journal {})",
        r.path,
        cp.position,
        j.records,
        r.journal_path.display()
    ));
    let end_snap = EndSnap {
        name: j.to_snap.clone(),
        protect: j.protect,
    };
    let state = ResumeState::new(end_snap, j.end_size);
    let eng = Engine::resume(opts, known, state).map_err(bad)?;
    let input: Box<dyn Read> = Box::new(f);
    Ok((eng, hold(EventReader::resume(input, config, &cp))))
}

/// `w` payloads the engine holds until complete come whole from the reader.
fn hold(r: EventReader<Box<dyn Read>>) -> EventReader<Box<dyn Read>> {
    let limit = usize::try_from(rbdiff::apply::HOLD_LIMIT).unwrap_or(usize::MAX);
    r.hold_payloads(limit)
}

/// Saves a journal entry every `every` bytes of stream (files only).
struct Journaler<'r> {
    run: &'r Run<'r>,
    every: u64,
    at: Option<u64>,
    last: Option<rbdiff::Checkpoint>,
    prior: u64,
    /// Test builds: die as a killed process would past this stream offset.
    #[cfg(feature = "test-hooks")]
    crash_after: Option<u64>,
}

impl<'r> Journaler<'r> {
    fn new(run: &'r Run<'r>) -> Self {
        Journaler {
            run,
            every: env_u64("RBDIFF_RESUME_INTERVAL")
                .unwrap_or(JOURNAL_EVERY)
                .max(1),
            at: None,
            last: None,
            prior: run.journal.as_ref().map_or(0, |j| j.records),
            #[cfg(feature = "test-hooks")]
            crash_after: env_u64("RBDIFF_TEST_CRASH_AFTER"),
        }
    }

    /// A diff read from a file is journaled (unless --undo: a re-run
    /// could not record the previous state).
    fn enabled(&self) -> bool {
        self.run.seekable && self.run.a.undo.is_none()
    }

    /// After an event: at a record boundary once `every` bytes passed (and
    /// at the end, the last boundary: a re-run only verifies and
    /// snapshots), sync the image and save the journal.
    fn after(
        &mut self,
        eng: &mut Engine,
        dev: &mut Dev,
        decoder: &rbdiff::Decoder,
        is_end: bool,
        rb: Option<&mut integ::ReadBack<'_>>,
    ) -> Result<(), Fail> {
        let pos = decoder.position();
        // Killed once the stream passed the offset, before journaling it.
        #[cfg(feature = "test-hooks")]
        if let Some(n) = self.crash_after
            && pos >= n
        {
            eprintln!("rbdiff: RBDIFF_TEST_CRASH_AFTER reached at stream offset {pos}");
            std::process::exit(99);
        }
        if self.enabled() {
            let due = self.at.is_none_or(|at| pos - at >= self.every);
            let cp = decoder.checkpoint();
            if cp.is_some() {
                self.last = cp;
            }
            let cp = if is_end {
                self.last
            } else {
                cp.filter(|_| due)
            };
            if let Some(cp) = cp {
                if let Some(rb) = rb {
                    // What is applied, read back during the sync.
                    let started = usize::try_from(eng.records_started()).unwrap_or(usize::MAX);
                    rb.advance(started.saturating_sub(1), eng.pending_zero_start(), true);
                }
                let saved = eng.checkpoint(dev, cp).map_err(|e| self.run.fail(e))?;
                dev.sync().map_err(|e| apply::device_fail(&e))?;
                self.save(&saved)?;
                self.at = Some(pos);
            }
        }
        Ok(())
    }

    fn save(&self, r: &rbdiff::apply::Resume) -> Result<(), Fail> {
        let id = self.run.ident.as_ref().expect("seekable");
        let j = Journal {
            version: 1,
            diff_path: id.path.clone(),
            diff_size: id.size,
            diff_head_xxh3: id.head.clone(),
            checkpoint: crate::store::hex(&r.checkpoint.to_bytes()),
            stream_offset: r.checkpoint.position,
            records: self.prior + r.stats.records,
            data_bytes: r.stats.data_bytes,
            zero_bytes: r.stats.zero_bytes,
            to_snap: r.state.end_snap.name.clone(),
            protect: r.state.end_snap.protect,
            end_size: r.state.end_size,
        };
        let path = &self.run.journal_path;
        path.save(&j).map_err(|e| {
            Fail::new(
                io_errno(&e),
                format!(
                    "rbdiff: cannot write resume journal {}: {e}",
                    path.display()
                ),
            )
        })
    }
}

/// The stream's events through the engine, with the read-back thread (if
/// any) told what is on the image, the journal and the progress.
#[allow(clippy::too_many_arguments)]
fn pump(
    r: &Run<'_>,
    reader: &mut EventReader<Box<dyn Read>>,
    eng: &mut Engine,
    dest: &mut Dest<'_>,
    jr: &mut Journaler<'_>,
    mut rb: Option<&mut integ::ReadBack<'_>>,
    prog: &mut Progress,
) -> Result<(), Fail> {
    let total = input_len(&r.path);
    let start_at = reader.decoder().position();
    let mut record_at = start_at;
    loop {
        let is_end = {
            let (off, ev, raw) = match reader.next_event_raw() {
                Ok(Some(x)) => x,
                Ok(None) => return Ok(()),
                Err(e) => {
                    // rbd leaves the complete records before the failure.
                    let _ = eng.abort(dest.dev());
                    return Err(match e {
                        ReadError::Decode(e) => decode_fail(&e, EBADMSG).at_stream(&r.path, &e),
                        ReadError::Io(e) => Fail::bare(io_errno(&e)),
                    });
                }
            };
            let is_end = matches!(ev, Event::DiffEnd);
            if let (true, Some(rb)) = (is_end, rb.as_deref_mut()) {
                // Every record is applied but pending zeroing: read back
                // while `e` finishes and syncs.
                let all = usize::try_from(eng.records_started()).unwrap_or(usize::MAX);
                rb.advance(all, eng.pending_zero_start(), true);
            }
            if let Event::Write { .. } | Event::Zero { .. } = ev {
                record_at = off;
            }
            let step = eng
                .event(dest.dev(), &mut Threads, off, &ev, raw)
                .map_err(|e| {
                    // A record that fails to apply: where it starts (a held
                    // `w` is written at its last payload byte).
                    let located =
                        matches!(e, ImportError::Device(_) | ImportError::BeyondSize { .. });
                    let at = if let Event::Data { .. } = ev {
                        record_at
                    } else {
                        off
                    };
                    let past = matches!(e, ImportError::BeyondSize { .. }).then(|| e.to_string());
                    let mut f = r.fail(e);
                    if let Some(d) = past {
                        f = f.with_detail(d);
                    }
                    if located { f.at_offset(&r.path, at) } else { f }
                })?;
            match step {
                Step::Banner(_) => start_undo(r, eng)?,
                Step::DiffApplied => dest.dev().sync().map_err(|e| apply::device_fail(&e))?,
                s => dest.header_step(&s)?,
            }
            if let Some(rb) = rb.as_deref_mut() {
                let started = usize::try_from(eng.records_started()).unwrap_or(usize::MAX);
                match ev {
                    // The records before this one are applied.
                    Event::Write { .. } | Event::Zero { .. } => {
                        rb.advance(started.saturating_sub(1), eng.pending_zero_start(), false);
                    }
                    // All of them, flushed and synced.
                    Event::DiffEnd => rb.advance(started, None, true),
                    _ => {}
                }
                if rb.failed() {
                    // The thread's error is reported by the caller.
                    return Err(Fail::bare(EBADMSG));
                }
            }
            is_end
        };
        jr.after(eng, dest.dev(), reader.decoder(), is_end, rb.as_deref_mut())?;
        let done = reader.bytes_read() + start_at;
        match (total, eng.state().end_size) {
            (Some(t), _) => prog.update(done, t),
            (None, Some(s)) => prog.update(done.min(s), s),
            _ => {}
        }
    }
}

/// --undo: the undo diff is created at the stream's banner.
fn start_undo(r: &Run<'_>, eng: &mut Engine) -> Result<(), Fail> {
    if let Some(p) = r.a.undo.as_deref() {
        let out = Output::create(p).map_err(|e| {
            Fail::new(
                io_errno(&e),
                format!("rbdiff: cannot create undo diff {p}: {e}"),
            )
        })?;
        eng.set_undo(IoSink(out));
    }
    Ok(())
}

/// Applies the stream; with the integrity data known first and records in
/// order, a second thread reads back what was applied while the import goes
/// on: that checks each payload as written (not hashed on this thread) and
/// most of the result before the end. Returns the entries it checked.
fn apply_stream(
    r: &Run<'_>,
    reader: &mut EventReader<Box<dyn Read>>,
    eng: &mut Engine,
    dest: &mut Dest<'_>,
    prog: &mut Progress,
) -> Result<usize, Fail> {
    let mut jr = Journaler::new(r);
    // A journaled import syncs the image every `every` bytes: the thread
    // reads back while it waits for the disk (see `ReadBack::start`).
    let batch = (!jr.enabled()).then_some(integ::READ_BACK_BATCH);
    let read_back_of = r
        .known
        .as_ref()
        .map(|k| &k.manifest)
        .filter(|m| eng.checks_stream() && rbdiff::apply::is_sorted(m));
    let (res, read_back) = std::thread::scope(|sc| {
        let mut rb = read_back_of.and_then(|m| {
            let dev = dest.dev().try_clone().ok()?;
            integ::ReadBack::start(sc, m, dev, batch).ok()
        });
        // Payloads are checked as written, not hashed here. (Without
        // threads, as under WASI, they are hashed while applying.)
        if rb.is_some() {
            eng.read_back();
        }
        let res = pump(r, reader, eng, dest, &mut jr, rb.as_mut(), prog);
        (res, rb.map(integ::ReadBack::finish))
    });
    // A mismatch found reading back is the cause of whatever else failed.
    match read_back {
        Some(Ok(n)) => res.map(|()| n),
        Some(Err(VerifyError::Block { index, offset, .. })) => {
            let so = eng.record_stream_offset(index);
            Err(stream_fault(
                &r.path,
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
        None => res.map(|()| 0),
    }
}

/// After a failure: the journal only helps after an interruption or an I/O
/// failure (a stream rbd or the integrity check refuses, or a size the
/// filesystem cannot hold, would fail again); with --undo, put back what
/// was changed.
fn failed(r: &Run<'_>, eng: &mut Engine, dest: &mut Dest<'_>, f: Fail) -> anyhow::Error {
    if !matches!(f.code, EIO | ENOSPC) {
        r.journal_path.remove();
    }
    let Some(u) = eng.take_undo() else {
        return fin(f);
    };
    let p = r.a.undo.as_deref().unwrap_or("-");
    let restored = u
        .map_err(|e| e.to_string())
        .and_then(|IoSink(out)| out.commit().map_err(|e| e.to_string()))
        .and_then(|()| {
            let undo = File::open(p).map_err(|e| e.to_string())?;
            rbdiff::apply::apply_stream(undo, dest.dev(), Config::new(), r.a.sparse_size)
                .map_err(|e| e.to_string())?;
            std::fs::remove_file(p).map_err(|e| e.to_string())
        });
    fin(match restored {
        Ok(()) => f.then("rbdiff: the image was restored to its previous state"),
        Err(e) => f.then(format!(
            "rbdiff: restoring the previous state failed: {e} (undo data kept in {p})"
        )),
    })
}

/// After the stream: a pipe's v1 trailer, the stream's verdict, the result
/// check (what the read-back thread did not check yet).
fn verify_end(
    r: &Run<'_>,
    reader: EventReader<Box<dyn Read>>,
    eng: &mut Engine,
    dest: &mut Dest<'_>,
    checked: usize,
) -> Result<(), Fail> {
    if eng.checks_stream()
        && r.known.is_none()
        && !r.seekable
        && reader.decoder().format() == Some(rbdiff::Format::DiffV1)
    {
        // At most the trailer this diff can have (plus one byte) is read.
        eng.trailing(reader.buffered());
        let _ = eng.read_trailing(reader.into_inner());
    }
    match eng.end_stream() {
        Err(f) => return Err(stream_fault(&r.path, &f)),
        Ok(Some((_, true))) => note_late_integrity(&r.path),
        Ok(_) => {}
    }
    if r.verify {
        eng.check_result(dest.dev(), &mut Threads, checked)
            .map_err(|e| r.fail(e))?;
    }
    Ok(())
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
    if let Some(spec) = crate::cluster::parse(&image)? {
        return cluster(&spec, &a, &path);
    }
    let target = Target::parse(&image)?;
    let mut holder = None;
    let (mut dest, journal_path) = open_dest(store, &target, &mut holder)?;
    let r = prepare(&a, path, journal_path)?;
    let (mut eng, mut reader) = start(&r, &dest)?;
    let mut prog = Progress::new("Importing image diff", a.progress);
    let res = apply_stream(&r, &mut reader, &mut eng, &mut dest, &mut prog)
        .and_then(|checked| verify_end(&r, reader, &mut eng, &mut dest, checked));
    if let Err(f) = res {
        prog.finish(false);
        return Err(failed(&r, &mut eng, &mut dest, f));
    }
    if let Some(u) = eng.take_undo() {
        let IoSink(out) = u.map_err(|e| {
            fin(Fail::new(
                EIO,
                format!("rbdiff: writing the undo diff failed: {e}"),
            ))
        })?;
        out.commit()
            .map_err(|e| fin(Fail::io("rbdiff: writing the undo diff failed", &e)))?;
    }
    if let Err(f) = dest.create_snap(&eng.finish().end_snap) {
        prog.finish(false);
        return Err(fin(f));
    }
    r.journal_path.remove();
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
