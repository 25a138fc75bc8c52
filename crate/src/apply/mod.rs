//! The import engine: applies a decoded diff stream (or the diffs of an
//! `rbd image v2` export) to a block device with rbd's rules, checking it
//! against its integrity data, without doing any I/O of its own.
//!
//! A driver owns the stream, the device, threads, files and messages; the
//! [`ImportEngine`] owns the rules. The loop of every driver is the same:
//!
//! ```text
//! let mut eng = ImportEngine::new(opts, known_manifest)?;   // validated at once
//! while let Some((at, ev, raw)) = reader.next_event_raw()? {
//!     match eng.event(&mut dev, &mut checker, at, &ev, raw)? {
//!         Step::FromSnap(n) => /* must exist (stores with snapshots) */,
//!         Step::ToSnap(n)   => /* must not exist */,
//!         Step::DiffApplied => /* make the device durable */,
//!         Step::DiffVerified(end) => /* image v2: create end.to_snap now */,
//!         _ => {}
//!     }
//!     if let Some(cp) = reader.decoder().checkpoint() && journal_due {
//!         let r = eng.checkpoint(&mut dev, cp)?;  // pending zeroing written
//!         /* make the device durable, then save r (decoder checkpoint + state) */
//!     }
//! }
//! eng.trailing(rest_of_a_pipe);          // a v1 trailer after `e`, if any
//! let manifest = eng.end_stream()?;      // the stream's verdict
//! eng.check_result(&mut dev, &mut checker, already_read_back)?;
//! let done = eng.finish();               // create done.end_snap now
//! ```
//!
//! What the engine does for the driver:
//! * **Integrity data first.** A manifest known before the stream (a v1
//!   trailer read from the end of a file, a sidecar, in-band `H`/`K`
//!   records) is validated against the stream length when the engine is
//!   made, and against the image size before the base check, so no check
//!   reads more than the image holds per record.
//! * **The base check** ([`Checker::check_base`]) runs before the first
//!   write: at the diff's `s` record (whose size bounds the records), or at
//!   its first record. `--force` is [`ImportOptions::check_base`] = false.
//! * **rbd's rules** ([`crate::apply::Applier`]): `s` resizes at once, `w`
//!   payloads are cut in `sparse_size` chunks counted from the record start
//!   and all-zero chunks become `write_zeroes`, as `z` records do.
//! * **A `w` record is written only once complete**, as rbd (which reads a
//!   record's whole payload before writing it): payloads up to
//!   [`ImportOptions::hold_limit`] (32 MiB, [`HOLD_LIMIT`]; rbd's own diffs
//!   never exceed the object size) are held until their last byte arrived,
//!   so a stream cut inside a payload writes nothing of that record. Larger
//!   payloads are written piece by piece as they come. A driver that hands
//!   whole payloads over in one [`Event::Data`] (see
//!   `EventReader::hold_payloads`) costs no copy.
//! * **Stream verification** ([`StreamVerifier`]): payload hashes and record
//!   extents as they come; checksum and counts at [`end_stream`](ImportEngine::end_stream)
//!   (per diff at its `e` for image v2 streams).
//! * **Undo** ([`ImportEngine::set_undo`]): the pre-image of everything the
//!   import changes, recorded before it is changed.
//! * **Checkpoints** ([`ImportEngine::checkpoint`]): at record boundaries,
//!   with pending zeroing written; the driver journals the decoder's
//!   checkpoint and [`ResumeState`] and continues with
//!   [`ImportEngine::resume`].
//!
//! Threads (reading back what was applied, parallel checks) stay in the
//! driver: [`ImportOptions::read_back`], [`ImportEngine::records_started`]
//! and [`ImportEngine::pending_zero_start`] tell it what is on the device.

mod applier;
mod check;
mod undo;

pub use applier::{Applier, ApplyError, ApplyStats};
#[cfg(feature = "std")]
pub use applier::{ApplyStreamError, apply_stream};
pub use undo::{UndoError, UndoRecorder};

pub use check::{
    Checker, IntegrityDataError, MIN_RECORD_LEN, Sequential, is_sorted, validate_extents,
    validate_manifest,
};

use crate::block::{BlockSink, BlockSource};
use crate::decode::{Checkpoint, Event};
use crate::encode::{EncodeError, Sink};
use crate::error::ErrorKind;
use crate::format::Format;
use crate::integrity::VerifyError;
use crate::integrity::{Manifest, StreamFault, StreamVerifier, TAG_CHECKSUM, TAG_HASHES};
use alloc::vec::Vec;
use core::fmt;

/// Payloads up to this many bytes are written only once complete (rbd's
/// largest object size is 32 MiB, and its diffs never cross an object).
pub const HOLD_LIMIT: u64 = 32 << 20;

/// A device an import reads (base check, undo) and writes.
pub trait Device: BlockSource + BlockSink<Error = <Self as BlockSource>::Error> {}

impl<T: BlockSource + BlockSink<Error = <T as BlockSource>::Error> + ?Sized> Device for T {}

/// How an import runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportOptions {
    /// rbd's `--sparse-size` (0: every payload byte is written as data).
    pub sparse_size: u64,
    /// Use integrity data: integrity records are not reported as unknown
    /// tags, a known manifest is validated and checked. False is rbd's
    /// behaviour (`--no-verify`, `--rbd-compat`).
    pub verify: bool,
    /// Hash the stream as it comes ([`StreamVerifier`]). Off after a resume
    /// (the check needs every byte) or for a stream known to carry no
    /// integrity data.
    pub stream_check: bool,
    /// Check the base before the first write (false: `--force`).
    pub check_base: bool,
    /// Largest `w` payload held until complete ([`HOLD_LIMIT`]).
    pub hold_limit: u64,
    /// The driver reads back every record once applied and checks its
    /// post-image hash (another thread): payloads are not hashed here.
    /// Needs a known manifest with sorted records.
    pub read_back: bool,
    /// Length of the whole stream, when known (a file): bounds the integrity
    /// data.
    pub stream_len: Option<u64>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ImportOptions {
    /// rbd's defaults (sparse size 4096) with every check on.
    pub const fn new() -> Self {
        ImportOptions {
            sparse_size: 4096,
            verify: true,
            stream_check: true,
            check_base: true,
            hold_limit: HOLD_LIMIT,
            read_back: false,
            stream_len: None,
        }
    }

    /// With rbd's `--sparse-size`.
    pub const fn with_sparse_size(mut self, n: u64) -> Self {
        self.sparse_size = n;
        self
    }

    /// With (true) or without integrity checks.
    pub const fn with_verify(mut self, on: bool) -> Self {
        self.verify = on;
        self.stream_check = on;
        self
    }

    /// With or without the stream check (see [`ImportOptions::stream_check`]).
    pub const fn with_stream_check(mut self, on: bool) -> Self {
        self.stream_check = on;
        self
    }

    /// With or without the base check.
    pub const fn with_base_check(mut self, on: bool) -> Self {
        self.check_base = on;
        self
    }

    /// Hold payloads up to `n` bytes until complete.
    pub const fn with_hold_limit(mut self, n: u64) -> Self {
        self.hold_limit = n;
        self
    }

    /// The driver reads back what was applied (see [`ImportOptions::read_back`]).
    pub const fn with_read_back(mut self, on: bool) -> Self {
        self.read_back = on;
        self
    }

    /// The stream is `n` bytes long.
    pub const fn with_stream_len(mut self, n: Option<u64>) -> Self {
        self.stream_len = n;
        self
    }
}

/// What the driver does after an event (besides continuing).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step<'a> {
    /// Nothing.
    Continue,
    /// The stream's banner (a driver recording undo sets its sink now).
    Banner(Format),
    /// The diff's start snapshot: it must exist in the image.
    FromSnap(&'a [u8]),
    /// The diff's end snapshot: it must not exist yet.
    ToSnap(&'a [u8]),
    /// A record with a tag no one knows, skipped (rbd says so).
    Unknown(u8),
    /// A diff's `e`: every record is applied and flushed to the device
    /// (make it durable now). Its end snapshot comes from
    /// [`ImportEngine::finish`] once the stream and result are verified.
    DiffApplied,
    /// An image v2 stream's diff is applied and verified: create its end
    /// snapshot now.
    DiffVerified(EndSnap),
}

/// A diff's end snapshot, to create once the diff is applied and verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndSnap {
    /// Its name, as the stream has it (`None`: the diff has no `t`).
    pub name: Option<Vec<u8>>,
    /// Protected (`p` nonzero).
    pub protect: bool,
}

/// What a journal keeps to continue an import (with the decoder's
/// [`Checkpoint`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResumeState {
    /// The diff's end snapshot, from its header.
    pub end_snap: EndSnap,
    /// The size the diff's `s` set.
    pub end_size: Option<u64>,
}

impl ResumeState {
    /// A state from a journal's fields.
    pub fn new(end_snap: EndSnap, end_size: Option<u64>) -> Self {
        ResumeState { end_snap, end_size }
    }
}

/// A checkpoint: everything before it is on the device (not necessarily
/// durable: the driver syncs before saving it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Where the decoder continues.
    pub checkpoint: Checkpoint,
    /// The engine's state there.
    pub state: ResumeState,
    /// What this run applied so far.
    pub stats: ApplyStats,
}

/// What the import did, once finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The end snapshot to create now.
    pub end_snap: EndSnap,
    /// What this run applied (of the last diff).
    pub stats: ApplyStats,
}

/// Why an import stopped. `E` is the device's error, `U` the undo sink's.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportError<E, U = core::convert::Infallible> {
    /// The device failed.
    Device(E),
    /// A record lies wholly past the image size (rbd: EINVAL).
    BeyondSize {
        /// Record offset.
        offset: u64,
        /// Record length.
        len: u64,
        /// Image size.
        size: u64,
    },
    /// The integrity data cannot belong to this stream or image: refused
    /// before any work.
    IntegrityData(IntegrityDataError),
    /// The image is not the base the diff was made from (nothing written).
    NotBase(VerifyError<E>),
    /// The stream does not match its integrity data.
    Stream(StreamFault),
    /// The imported image does not match the integrity data.
    Result(VerifyError<E>),
    /// Undo needs records in order: the integrity data lists them unsorted.
    UndoUnsorted,
    /// Undo needs records in order: this one is not (a decoder warning).
    UndoOutOfOrder {
        /// Image offset of the record.
        offset: u64,
        /// Stream offset of the record.
        stream_offset: u64,
    },
    /// Reading the image for the undo diff failed.
    UndoRead(E),
    /// Writing the undo diff failed.
    UndoWrite(EncodeError<U>),
}

impl<E: fmt::Display, U: fmt::Display> fmt::Display for ImportError<E, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Device(e) => write!(f, "device error: {e}"),
            ImportError::BeyondSize { offset, len, size } => write!(
                f,
                "record at {offset} (+{len}) lies past the image size {size}"
            ),
            ImportError::IntegrityData(e) => write!(f, "invalid integrity data: {e}"),
            ImportError::NotBase(e) => write!(f, "the image is not the diff's base: {e}"),
            ImportError::Stream(e) => e.fmt(f),
            ImportError::Result(e) => write!(f, "the imported image does not match: {e}"),
            ImportError::UndoUnsorted => {
                f.write_str("unsorted or overlapping records: undo cannot restore such an import")
            }
            ImportError::UndoOutOfOrder {
                offset,
                stream_offset,
            } => write!(
                f,
                "record at image offset {offset} (stream offset {stream_offset}) is out of order or overlaps"
            ),
            ImportError::UndoRead(e) => write!(f, "reading the image for undo failed: {e}"),
            ImportError::UndoWrite(e) => write!(f, "writing the undo diff failed: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Debug + fmt::Display, U: fmt::Debug + fmt::Display> std::error::Error
    for ImportError<E, U>
{
}

impl<E, U> From<ApplyError<E>> for ImportError<E, U> {
    fn from(e: ApplyError<E>) -> Self {
        match e {
            ApplyError::Sink(e) => ImportError::Device(e),
            ApplyError::BeyondSize { offset, len, size } => {
                ImportError::BeyondSize { offset, len, size }
            }
        }
    }
}

/// An undo sink that is never written (the default of [`ImportEngine`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUndo;

impl Sink for NoUndo {
    type Error = core::convert::Infallible;
    fn write_all(&mut self, _: &[u8]) -> Result<(), Self::Error> {
        Ok(())
    }
}

enum Undo<U> {
    Off,
    /// Set, started at the first write.
    Ready(U),
    Recording(UndoRecorder<U>),
}

/// A `w` record held until its payload is complete.
struct Held {
    offset: u64,
    len: u64,
    buf: Vec<u8>,
}

/// The import engine (see the [module documentation](self)).
pub struct ImportEngine<U: Sink = NoUndo> {
    opts: ImportOptions,
    known: Option<Manifest>,
    verifier: Option<StreamVerifier>,
    applier: Applier,
    held: Option<Held>,
    spare: Vec<u8>,
    undo: Undo<U>,
    format: Option<Format>,
    base_due: bool,
    diff_number: u64,
    diff_offset: u64,
    state: ResumeState,
    verified: Option<Manifest>,
}

type Res<T, D, U> = Result<T, ImportError<<D as BlockSource>::Error, <U as Sink>::Error>>;

impl<U: Sink> ImportEngine<U> {
    /// An engine for a new import. `known` is the integrity data known
    /// before the stream (trailer, sidecar); it is validated here against
    /// [`ImportOptions::stream_len`].
    pub fn new(opts: ImportOptions, known: Option<Manifest>) -> Result<Self, IntegrityDataError> {
        let known = known.filter(|_| opts.verify);
        if let Some(m) = &known {
            validate_manifest(m, opts.stream_len)?;
        }
        let verifier = opts.stream_check && opts.verify;
        let mut v = verifier.then(|| StreamVerifier::new(known.clone()));
        if opts.read_back
            && let Some(v) = v.as_mut()
        {
            v.defer_payloads();
        }
        Ok(ImportEngine {
            opts,
            known,
            verifier: v,
            applier: Applier::new(opts.sparse_size),
            held: None,
            spare: Vec::new(),
            undo: Undo::Off,
            format: None,
            base_due: true,
            diff_number: 0,
            diff_offset: 0,
            state: ResumeState::default(),
            verified: None,
        })
    }

    /// An engine continuing an import at a checkpoint (the decoder resumed
    /// from [`Resume::checkpoint`]): no base check, no stream check (it
    /// needs every byte); the result is still checked against `known`.
    pub fn resume(
        opts: ImportOptions,
        known: Option<Manifest>,
        state: ResumeState,
    ) -> Result<Self, IntegrityDataError> {
        let mut e = Self::new(opts.with_stream_check(false), known)?;
        e.base_due = false;
        e.state = state;
        Ok(e)
    }

    /// Record the undo diff of this import into `sink` (started at the
    /// first write, after the base check).
    pub fn set_undo(&mut self, sink: U) {
        self.undo = Undo::Ready(sink);
    }

    /// End the undo diff and give its sink back: `None` if nothing was
    /// recorded (no write happened; the sink is dropped).
    pub fn take_undo(&mut self) -> Option<Result<U, EncodeError<U::Error>>> {
        match core::mem::replace(&mut self.undo, Undo::Off) {
            Undo::Recording(r) => Some(r.finish()),
            _ => None,
        }
    }

    /// The driver reads back what is applied from now on (its thread
    /// started): payloads are not hashed here, see
    /// [`ImportOptions::read_back`]. False (and no change) without a known
    /// manifest or stream check. Call before the first event.
    pub fn read_back(&mut self) -> bool {
        let on = self
            .verifier
            .as_mut()
            .is_some_and(StreamVerifier::defer_payloads);
        self.opts.read_back = on;
        on
    }

    /// The options.
    pub fn options(&self) -> &ImportOptions {
        &self.opts
    }

    /// The integrity data known before the stream, if any.
    pub fn known(&self) -> Option<&Manifest> {
        self.known.as_ref()
    }

    /// Embedded diffs begun so far (image v2 streams; 1-based number of the
    /// current one) and the stream offset of the current one.
    pub fn diff(&self) -> (u64, u64) {
        (self.diff_number, self.diff_offset)
    }

    /// `w`/`z` records begun so far (in the current diff), as counted by the
    /// stream check (0 without it).
    pub fn records_started(&self) -> u64 {
        self.verifier.as_ref().map_or(0, StreamVerifier::records)
    }

    /// Stream offset of record `index` (0-based) once seen by the stream check.
    pub fn record_stream_offset(&self, index: usize) -> Option<u64> {
        self.verifier.as_ref()?.record_stream_offset(index)
    }

    /// Where zeroing not yet written to the device starts: every other byte
    /// of the records applied so far is on the device.
    pub fn pending_zero_start(&self) -> Option<u64> {
        self.applier.pending_zero_start()
    }

    /// What this run applied (in the current diff).
    pub fn stats(&self) -> ApplyStats {
        self.applier.stats()
    }

    /// The state a journal keeps.
    pub fn state(&self) -> &ResumeState {
        &self.state
    }

    /// Is the stream checked against integrity data as it comes?
    pub fn checks_stream(&self) -> bool {
        self.verifier.is_some()
    }
}

impl<U: Sink> ImportEngine<U> {
    /// Feed one decoded event: its stream offset, the event and the raw
    /// bytes the decoder consumed for it
    /// ([`crate::EventReader::next_event_raw`]). On an error nothing more
    /// may be fed; what was written stays (a held record is not written).
    pub fn event<'a, D: Device, C: Checker<D>>(
        &mut self,
        dev: &mut D,
        checker: &mut C,
        at: u64,
        ev: &Event<'a>,
        raw: &[u8],
    ) -> Res<Step<'a>, D, U> {
        if let Event::DiffBegin { .. } = ev {
            self.diff_number += 1;
            self.diff_offset = at;
            if self.opts.verify && self.opts.stream_check {
                self.verifier = Some(StreamVerifier::new(None));
            }
        }
        self.verify_event(at, ev, raw)
            .map_err(ImportError::Stream)?;
        match *ev {
            Event::Banner(f) => {
                self.format = Some(f);
                return Ok(Step::Banner(f));
            }
            Event::DiffBegin { .. } => {
                self.applier = Applier::new(self.opts.sparse_size);
                self.state = ResumeState::default();
            }
            Event::FromSnap(n) => return Ok(Step::FromSnap(n)),
            Event::ToSnap(n) => {
                self.state.end_snap.name = Some(n.to_vec());
                return Ok(Step::ToSnap(n));
            }
            Event::Protection(p) => self.state.end_snap.protect = p != 0,
            Event::Unknown { tag, len } => {
                let ours = len.is_some() && (tag == TAG_HASHES || tag == TAG_CHECKSUM);
                if !(ours && self.opts.verify) {
                    return Ok(Step::Unknown(tag));
                }
            }
            Event::Warning(ErrorKind::OutOfOrder { offset, .. })
                if !matches!(self.undo, Undo::Off) =>
            {
                return Err(ImportError::UndoOutOfOrder {
                    offset,
                    stream_offset: at,
                });
            }
            Event::Size(s) => {
                self.state.end_size = Some(s);
                self.before_writes(dev, checker, Some(s))?;
                self.change(dev, ev)?;
            }
            Event::Write { .. } | Event::Zero { .. } => {
                self.before_writes(dev, checker, None)?;
                self.change(dev, ev)?;
            }
            Event::Data { offset, bytes } => self.data(dev, offset, bytes)?,
            Event::DiffEnd => return self.diff_end(dev, checker),
            _ => self.applier.event(dev, ev)?,
        }
        Ok(Step::Continue)
    }

    fn verify_event(&mut self, at: u64, ev: &Event<'_>, raw: &[u8]) -> Result<(), StreamFault> {
        if let Some(v) = self.verifier.as_mut() {
            v.event(at, ev, raw);
            if let Some(f) = v.fault()
                && !matches!(f, StreamFault::Checksum { .. } | StreamFault::Count { .. })
            {
                return Err(f);
            }
        }
        Ok(())
    }

    /// Before the first change of the device: validate the known integrity
    /// data against the image, check the base, start the undo diff.
    fn before_writes<D: Device, C: Checker<D>>(
        &mut self,
        dev: &mut D,
        checker: &mut C,
        end_size: Option<u64>,
    ) -> Res<(), D, U> {
        if !core::mem::take(&mut self.base_due) {
            return Ok(());
        }
        if let Some(m) = &self.known {
            let now = BlockSink::size(dev);
            let limit = now.max(end_size.unwrap_or(0)).max(m.base_size.unwrap_or(0));
            validate_extents(m, limit).map_err(ImportError::IntegrityData)?;
            if self.opts.check_base {
                checker.check_base(m, dev).map_err(ImportError::NotBase)?;
            }
            if !matches!(self.undo, Undo::Off) && !is_sorted(m) {
                return Err(ImportError::UndoUnsorted);
            }
        }
        if let Undo::Ready(_) = self.undo
            && let Undo::Ready(sink) = core::mem::replace(&mut self.undo, Undo::Off)
        {
            let format = self.format.unwrap_or(Format::DiffV1);
            let r = UndoRecorder::new(sink, format, BlockSink::size(dev))
                .map_err(ImportError::UndoWrite)?;
            self.undo = Undo::Recording(r);
        }
        Ok(())
    }

    /// An event that changes the device: undo first, then apply (a `w`
    /// record short enough is held until complete).
    fn change<D: Device>(&mut self, dev: &mut D, ev: &Event<'_>) -> Res<(), D, U> {
        if let Undo::Recording(u) = &mut self.undo {
            u.before(dev, ev).map_err(|e| match e {
                crate::apply::UndoError::Read(e) => ImportError::UndoRead(e),
                crate::apply::UndoError::Write(e) => ImportError::UndoWrite(e),
            })?;
        }
        if let Event::Write { offset, len } = *ev
            && len > 0
            && len <= self.opts.hold_limit
        {
            // As applying the `w` would: the zeroing before it goes out.
            self.applier.flush_zero(dev)?;
            let buf = core::mem::take(&mut self.spare);
            self.held = Some(Held { offset, len, buf });
            return Ok(());
        }
        Ok(self.applier.event(dev, ev)?)
    }

    fn data<D: Device>(&mut self, dev: &mut D, offset: u64, bytes: &[u8]) -> Res<(), D, U> {
        let Some(h) = self.held.as_mut() else {
            return Ok(self.applier.event(dev, &Event::Data { offset, bytes })?);
        };
        if h.buf.is_empty() && bytes.len() as u64 == h.len {
            // The whole payload at once: no copy.
            let (o, len) = (h.offset, h.len);
            self.held = None;
            return self.write_record(dev, o, len, bytes);
        }
        h.buf.extend_from_slice(bytes);
        if h.buf.len() as u64 == h.len {
            let h = self.held.take().expect("held");
            let r = self.write_record(dev, h.offset, h.len, &h.buf);
            self.spare = h.buf;
            self.spare.clear();
            return r;
        }
        Ok(())
    }

    fn write_record<D: Device>(
        &mut self,
        dev: &mut D,
        offset: u64,
        len: u64,
        bytes: &[u8],
    ) -> Res<(), D, U> {
        self.applier.event(dev, &Event::Write { offset, len })?;
        self.applier.event(dev, &Event::Data { offset, bytes })?;
        Ok(())
    }

    fn diff_end<'a, D: Device, C: Checker<D>>(
        &mut self,
        dev: &mut D,
        checker: &mut C,
    ) -> Res<Step<'a>, D, U> {
        self.before_writes(dev, checker, None)?;
        self.applier.event(dev, &Event::DiffEnd)?;
        self.applier.finish(dev)?;
        if self.diff_number == 0 {
            return Ok(Step::DiffApplied);
        }
        // A diff of an image v2 stream: its integrity data came with it.
        if let Some(v) = self.verifier.take() {
            match v.finish() {
                Err(f) => return Err(ImportError::Stream(f)),
                Ok(Some(m)) => checker
                    .check_result(&m, dev, self.state.end_size, 0..m.entries.len())
                    .map_err(ImportError::Result)?,
                Ok(None) => {}
            }
        }
        Ok(Step::DiffVerified(core::mem::take(
            &mut self.state.end_snap,
        )))
    }

    /// At a record boundary of the driver's decoder (`checkpoint` from
    /// [`crate::Decoder::checkpoint`], the last one seen after the stream's `e`),
    /// write pending zeroing and flush the device, and return what a
    /// journal keeps. The driver makes the device durable before saving it.
    pub fn checkpoint<D: Device>(
        &mut self,
        dev: &mut D,
        checkpoint: Checkpoint,
    ) -> Res<Resume, D, U> {
        debug_assert!(self.held.is_none(), "no record is held at a boundary");
        let stats = self.applier.finish(dev)?;
        Ok(Resume {
            checkpoint,
            state: self.state.clone(),
            stats,
        })
    }

    /// Write pending zeroing and flush the device (before the driver makes
    /// it durable).
    pub fn flush<D: Device>(&mut self, dev: &mut D) -> Res<ApplyStats, D, U> {
        Ok(self.applier.finish(dev)?)
    }

    /// The stream failed (cut, invalid): write what the complete records
    /// before the failure left pending (zeroing) and drop a held record, so
    /// the image is the base plus every complete record, as rbd leaves it.
    pub fn abort<D: Device>(&mut self, dev: &mut D) -> Res<(), D, U> {
        self.held = None;
        self.applier.flush_zero(dev)?;
        Ok(())
    }

    /// Bytes that followed the end of a v1 stream read from a pipe (its
    /// integrity trailer, if any).
    pub fn trailing(&mut self, bytes: &[u8]) {
        if let Some(v) = self.verifier.as_mut() {
            v.trailing(bytes);
        }
    }

    /// [`trailing`](Self::trailing) with the rest of a pipe: reads no more
    /// than a trailer of this diff can be, plus one byte (bytes beyond are
    /// no trailer and stay unread: memory and time bounded by the stream).
    #[cfg(feature = "std")]
    pub fn read_trailing<R: std::io::Read>(&mut self, r: R) -> std::io::Result<()> {
        match self.verifier.as_mut() {
            Some(v) => v.read_trailing(r),
            None => Ok(()),
        }
    }

    /// The stream is complete: its verdict. Returns the integrity data the
    /// result is checked against (known before, or carried by the stream)
    /// and whether it came only with the stream (the base was not checked).
    pub fn end_stream(&mut self) -> Result<Option<(&Manifest, bool)>, StreamFault> {
        let carried = match self.verifier.take().map(StreamVerifier::finish) {
            Some(Err(f)) => return Err(f),
            Some(Ok(m)) => m,
            None => None,
        };
        let late = self.known.is_none() && carried.is_some();
        self.verified = self.known.take().or(carried);
        Ok(self.verified.as_ref().map(|m| (m, late)))
    }

    /// Checks the image holds what the diff leaves (after
    /// [`end_stream`](Self::end_stream)); `skip` entries were checked
    /// already (read back while applying).
    pub fn check_result<D: Device, C: Checker<D>>(
        &mut self,
        dev: &mut D,
        checker: &mut C,
        skip: usize,
    ) -> Res<(), D, U> {
        let Some(m) = &self.verified else {
            return Ok(());
        };
        // (A result check reads at most the image's size per record.)
        let all = m.entries.len();
        checker
            .check_result(m, dev, self.state.end_size, skip.min(all)..all)
            .map_err(ImportError::Result)
    }

    /// The import is complete: the end snapshot to create.
    pub fn finish(mut self) -> Finished {
        Finished {
            end_snap: core::mem::take(&mut self.state.end_snap),
            stats: self.applier.stats(),
        }
    }
}
