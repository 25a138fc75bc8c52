//! The push/pull merge driver: the caller pushes chunks of each input when
//! asked and takes the merged stream in pieces. No I/O, bounded memory:
//! each input keeps only the unconsumed part of what was pushed to it, the
//! output buffer what the caller has not taken yet (plus one record header).
//! [`merge_streams`](super::merge_streams) (std) and the WebAssembly
//! component both drive it.

use super::{Action, MergeError, Merger, Record};
use crate::block::AlignedBuf;
use crate::decode::{Check, Config, Decoder, Event, FormatSet, Step};
use crate::encode::{DiffHeader, Encoder};
use crate::error::{DecodeError, ErrorKind, Expected};
use crate::format::{Format, tag};
use alloc::string::String;
use alloc::vec::Vec;

/// The part of the work that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub enum Phase {
    /// Reading an input's banner and header records.
    Header,
    /// Reading a record header (rbd: "failed to read … diff data chunk header").
    RecordHeader,
    /// Reading a record's payload (rbd: "failed to merge diff chunk").
    Data,
    /// Writing the output.
    Output,
}

/// Why a merge failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum MergeErrorKind {
    /// An input is invalid.
    Decode(DecodeError),
    /// Input `i`'s from-snapshot is not input `i-1`'s to-snapshot.
    Chain {
        /// `t` of the previous input.
        prev_to: Option<Vec<u8>>,
        /// `f` of this input.
        from: Option<Vec<u8>>,
    },
    /// An input's records are unsorted, overlapping or past its size.
    OutOfOrder {
        /// End of the previous record.
        prev_end: u64,
        /// Offset that broke the order (the diff size at its `e`).
        offset: u64,
    },
    /// An input has a record of length 0.
    ZeroLength,
    /// Reading or writing failed.
    #[cfg(feature = "std")]
    Io(std::io::Error),
    /// No inputs were given.
    NoInputs,
    /// The driver was called out of protocol (pushed to a finished input…).
    Usage(String),
}

/// A failed merge: which input (0-based), in which phase, why.
#[derive(Debug)]
pub struct MergeStreamError {
    /// The input at fault (`None` for output errors).
    pub input: Option<usize>,
    /// What was being done.
    pub phase: Phase,
    /// Why.
    pub kind: MergeErrorKind,
    /// The fault as a [`DecodeError`] located in that input's stream: the
    /// decode error itself, or the record (or `e`) that broke a merge rule.
    pub located: Option<DecodeError>,
}

impl MergeStreamError {
    fn new(input: Option<usize>, phase: Phase, kind: MergeErrorKind) -> Self {
        MergeStreamError {
            input,
            phase,
            kind,
            located: None,
        }
    }

    fn usage(input: Option<usize>, msg: impl Into<String>) -> Self {
        Self::new(input, Phase::Output, MergeErrorKind::Usage(msg.into()))
    }
}

impl MergeStreamError {
    /// A copy for sticky errors (an I/O error, which only the std driver
    /// produces and which cannot be cloned, keeps its message).
    fn duplicate(&self) -> Self {
        let kind = match &self.kind {
            MergeErrorKind::Decode(e) => MergeErrorKind::Decode(*e),
            MergeErrorKind::Chain { prev_to, from } => MergeErrorKind::Chain {
                prev_to: prev_to.clone(),
                from: from.clone(),
            },
            MergeErrorKind::OutOfOrder { prev_end, offset } => MergeErrorKind::OutOfOrder {
                prev_end: *prev_end,
                offset: *offset,
            },
            MergeErrorKind::ZeroLength => MergeErrorKind::ZeroLength,
            #[cfg(feature = "std")]
            MergeErrorKind::Io(e) => MergeErrorKind::Usage(alloc::format!("I/O error: {e}")),
            MergeErrorKind::NoInputs => MergeErrorKind::NoInputs,
            MergeErrorKind::Usage(m) => MergeErrorKind::Usage(m.clone()),
        };
        MergeStreamError {
            input: self.input,
            phase: self.phase,
            kind,
            located: self.located,
        }
    }
}

impl core::fmt::Display for MergeStreamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some(i) = self.input {
            write!(f, "diff #{}: ", i + 1)?;
        }
        match &self.kind {
            MergeErrorKind::Decode(e) => e.fmt(f),
            MergeErrorKind::Chain { prev_to, from } => {
                let show = |n: &Option<Vec<u8>>| match n {
                    Some(n) => alloc::format!("'{}'", String::from_utf8_lossy(n)),
                    None => "(none)".into(),
                };
                write!(
                    f,
                    "from-snapshot {} does not match the previous diff's to-snapshot {}",
                    show(from),
                    show(prev_to)
                )
            }
            MergeErrorKind::OutOfOrder { prev_end, offset } => {
                write!(f, "out-of-order offset ({prev_end} > {offset})")
            }
            MergeErrorKind::ZeroLength => f.write_str("zero-length record"),
            #[cfg(feature = "std")]
            MergeErrorKind::Io(e) => write!(f, "I/O error: {e}"),
            MergeErrorKind::NoInputs => f.write_str("no diffs to merge"),
            MergeErrorKind::Usage(m) => f.write_str(m),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MergeStreamError {}

/// The header of one merge input, as read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputHeader {
    /// Format of the input.
    pub format: Option<Format>,
    /// `f`.
    pub from: Option<Vec<u8>>,
    /// `t`.
    pub to: Option<Vec<u8>>,
    /// `p` (v2).
    pub protected: Option<bool>,
    /// `s`.
    pub size: Option<u64>,
}

/// Decoder policy for merge inputs: order, zero-length and size are the
/// engine's checks (with rbd's messages), headers after data are errors.
pub fn input_config() -> Config {
    Config {
        zero_length: Check::Ignore,
        order: Check::Ignore,
        beyond_size: Check::Ignore,
        trailing: Check::Ignore,
        metadata_after_data: Check::Error,
        ..Config::new()
    }
    .with_formats(FormatSet::DIFFS)
}

/// The phase of a decode error: rbd's "parse header" / "read data chunk
/// header" / "merge diff chunk".
fn phase_of(e: &DecodeError, header_done: bool) -> Phase {
    match e.kind {
        ErrorKind::UnexpectedEof {
            expected: Expected::WriteData | Expected::UnknownPayload,
            ..
        } => Phase::Data,
        ErrorKind::BadBanner { .. } | ErrorKind::NameTooLong { .. } => Phase::Header,
        ErrorKind::UnexpectedEof {
            expected:
                Expected::Banner | Expected::FromSnapName | Expected::ToSnapName | Expected::ImageSize,
            ..
        } if !header_done => Phase::Header,
        _ => Phase::RecordHeader,
    }
}

/// Checks that each input's from-snapshot is the previous input's
/// to-snapshot ([`crate::chain`]).
pub fn check_chain(headers: &[InputHeader]) -> Result<(), MergeStreamError> {
    let ends = headers.iter().map(|h| (h.from.as_deref(), h.to.as_deref()));
    match crate::chain::breaks(ends).next() {
        None => Ok(()),
        Some(i) => Err(MergeStreamError::new(
            Some(i),
            Phase::Header,
            MergeErrorKind::Chain {
                prev_to: headers[i - 1].to.clone(),
                from: headers[i].from.clone(),
            },
        )),
    }
}

/// One input: its decoder and the bytes pushed but not decoded yet.
#[derive(Debug)]
struct Input {
    dec: Decoder,
    /// `buf[pos..end]` is pushed and not decoded yet; `buf[end..]` is
    /// scratch room kept between pushes (no reallocation, no re-zeroing).
    /// 64-byte aligned, and `buf[..end]` kept ending aligned when
    /// compacted, so a [`PushMerge::push_with`] read lands aligned (see
    /// [`AlignedBuf`]).
    buf: AlignedBuf,
    pos: usize,
    end: usize,
    eof: bool,
    header: InputHeader,
    header_done: bool,
    /// Stream offset and tag of the last record header read.
    rec_offset: u64,
    rec_tag: u8,
}

impl Input {
    fn new() -> Self {
        Input {
            dec: Decoder::new(input_config()),
            buf: AlignedBuf::default(),
            pos: 0,
            end: 0,
            eof: false,
            header: InputHeader::default(),
            header_done: false,
            rec_offset: 0,
            rec_tag: 0,
        }
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            let n = self.end - self.pos;
            self.pos = self.buf.keep_tail(self.pos..self.end, 0, 0);
            self.end = self.pos + n;
        }
    }

    /// Room for `n` more bytes after the pushed ones.
    fn room(&mut self, n: usize) -> &mut [u8] {
        self.compact();
        if self.buf.len() < self.end + n {
            let kept = self.end - self.pos;
            // A page of slack: the kept tail varies by a few bytes.
            let grow = (self.end + n + 4096).next_multiple_of(4096);
            self.pos = self.buf.keep_tail(self.pos..self.end, kept + n, grow);
            self.end = self.pos + kept;
        }
        &mut self.buf[self.end..self.end + n]
    }

    fn fail(&self, i: usize, e: DecodeError) -> MergeStreamError {
        MergeStreamError {
            input: Some(i),
            phase: phase_of(&e, self.header_done),
            located: Some(e),
            kind: MergeErrorKind::Decode(e),
        }
    }

    /// Reads up to and including the next record header; `None` when more
    /// input is needed.
    fn next_record(&mut self, i: usize) -> Result<Option<Record>, MergeStreamError> {
        loop {
            let step = self
                .dec
                .decode(&self.buf[self.pos..self.end], self.eof)
                .map_err(|e| self.fail(i, e))?;
            let (offset, consumed, ev) = match step {
                Step::NeedMore(_) => {
                    self.compact();
                    return Ok(None);
                }
                Step::Done => return Ok(Some(Record::End)),
                Step::Event {
                    offset,
                    consumed,
                    event,
                } => (offset, consumed, event),
            };
            self.pos += consumed;
            let h = &mut self.header;
            let rec = match ev {
                Event::Banner(f) => {
                    h.format = Some(f);
                    None
                }
                Event::FromSnap(n) => {
                    h.from = Some(n.to_vec());
                    None
                }
                Event::ToSnap(n) => {
                    h.to = Some(n.to_vec());
                    None
                }
                Event::Protection(p) => {
                    h.protected = Some(p != 0);
                    None
                }
                Event::Size(s) => {
                    h.size = Some(s);
                    None
                }
                Event::Write { offset, len } => Some(Record::Write { offset, len }),
                Event::Zero { offset, len } => Some(Record::Zero { offset, len }),
                Event::DiffEnd => Some(Record::End),
                _ => None, // warnings, unknown v2 records, trailing bytes: skipped
            };
            if let Some(r) = rec {
                self.header_done = true;
                self.rec_offset = offset;
                self.rec_tag = match r {
                    Record::Write { .. } => tag::WRITE,
                    Record::Zero { .. } => tag::ZERO,
                    Record::End => tag::END,
                };
                return Ok(Some(r));
            }
        }
    }

    /// Passes up to `max` (> 0) payload bytes of the current `w` to `out`
    /// (or drops them). Returns the count, or `None` when more input is needed.
    fn payload(
        &mut self,
        i: usize,
        max: u64,
        out: Option<&mut Encoder<Vec<u8>>>,
    ) -> Result<Option<u64>, MergeStreamError> {
        let avail = self.end - self.pos;
        let window = usize::try_from(max).map_or(avail, |m| m.min(avail));
        let step = self
            .dec
            .decode(
                &self.buf[self.pos..self.pos + window],
                self.eof && window == avail,
            )
            .map_err(|e| self.fail(i, e))?;
        match step {
            Step::Event {
                event: Event::Data { bytes, .. },
                consumed,
                ..
            } => {
                if let Some(enc) = out {
                    enc.data(bytes).map_err(output_err)?;
                }
                self.pos += consumed;
                Ok(Some(consumed as u64))
            }
            Step::NeedMore(_) => {
                self.compact();
                Ok(None)
            }
            _ => Err(MergeStreamError::usage(
                Some(i),
                "merge engine asked for payload outside a write record",
            )),
        }
    }
}

fn output_err<E: core::fmt::Display>(e: crate::encode::EncodeError<E>) -> MergeStreamError {
    MergeStreamError::usage(None, alloc::format!("merge output refused: {e}"))
}

/// An engine error, located at the record (or `e`) that broke the rule.
fn engine_err(e: MergeError, inputs: &[Input]) -> MergeStreamError {
    let (input, kind, located) = match e {
        MergeError::OutOfOrder {
            input,
            prev_end,
            offset,
        } => {
            // At the `e`, `offset` is the diff size and records reach past it.
            let k = if inputs[input].rec_tag == tag::END {
                ErrorKind::BeyondSize {
                    end: prev_end,
                    size: offset,
                }
            } else {
                ErrorKind::OutOfOrder { prev_end, offset }
            };
            (input, MergeErrorKind::OutOfOrder { prev_end, offset }, k)
        }
        MergeError::ZeroLength { input } => (
            input,
            MergeErrorKind::ZeroLength,
            ErrorKind::ZeroLength {
                tag: inputs[input].rec_tag,
            },
        ),
        MergeError::Protocol => {
            return MergeStreamError::usage(None, "merge engine protocol error");
        }
    };
    MergeStreamError {
        input: Some(input),
        phase: Phase::RecordHeader,
        kind,
        located: Some(DecodeError::new(inputs[input].rec_offset, located)),
    }
}

/// A payload copy (or skip) in progress.
#[derive(Clone, Copy, Debug)]
struct Copy {
    input: usize,
    remaining: u64,
    emit: bool,
}

#[derive(Debug)]
enum State {
    /// Reading every input's header and first record (as rbd does).
    Headers {
        next: usize,
        first: Vec<Record>,
    },
    Run {
        engine: Merger,
        first: Vec<Option<Record>>,
        enc: Encoder<Vec<u8>>,
        copy: Option<Copy>,
    },
    Done,
    /// The merge failed; every later call reports the same error.
    Failed(MergeStreamError),
}

/// What the merge needs next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// The next chunk of input `.0` ([`PushMerge::push`]; an empty chunk ends it).
    Input(usize),
    /// Only with [`PushMerge::set_external_payloads`]: the next `len` bytes
    /// of input `input` are payload to pass to the output (`emit`) or to
    /// drop, and none of them was pushed yet. Take the [`output`](PushMerge::output)
    /// first, then move up to `len` bytes of that input's stream yourself
    /// (write them after the output taken, or skip them) and report the
    /// count with [`PushMerge::consumed_elsewhere`]. Pushing the input
    /// instead ([`Need::Input`]) is always correct too; so is pushing when
    /// the source has ended (an empty chunk: the merge then reports the
    /// truncation where it is).
    Copy {
        /// The input.
        input: usize,
        /// Payload bytes left in this piece (move at most this many).
        len: u64,
        /// Write them to the output (`false`: drop them).
        emit: bool,
    },
    /// Take the output ([`PushMerge::output`]) before going on.
    Output,
    /// The merge is complete (take the rest of the output).
    Done,
}

/// What [`PushMerge::pull`] produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullStep {
    /// Merged bytes (at most the `max` asked for).
    pub output: Vec<u8>,
    /// The input that must be pushed next.
    pub need_input: Option<usize>,
    /// Complete.
    pub done: bool,
}

/// The push/pull merge driver. See the module docs.
#[derive(Debug)]
pub struct PushMerge {
    inputs: Vec<Input>,
    format: Format,
    state: State,
    size: Option<u64>,
    records: u64,
    written: u64,
    /// Output produced before the encoder exists (never) or after it is gone.
    pending: Vec<u8>,
    /// Ask for payloads to be moved outside ([`Need::Copy`]).
    external: bool,
}

impl PushMerge {
    /// A merge of `n` inputs (in chain order) into a `format` diff.
    pub fn new(n: usize, format: Format) -> Self {
        PushMerge {
            inputs: (0..n).map(|_| Input::new()).collect(),
            format,
            state: State::Headers {
                next: 0,
                first: Vec::with_capacity(n),
            },
            size: None,
            records: 0,
            written: 0,
            pending: Vec::new(),
            external: false,
        }
    }

    /// Opt in to payloads moved by the caller: when a payload copy or skip
    /// has no pushed bytes to work on, [`advance`](Self::advance) returns
    /// [`Need::Copy`] instead of [`Need::Input`], so the caller can move
    /// the bytes from its source to its destination directly (one copy, or
    /// a kernel copy, or a seek) and report them with
    /// [`consumed_elsewhere`](Self::consumed_elsewhere). Off by default.
    pub fn set_external_payloads(&mut self, on: bool) {
        self.external = on;
    }

    /// Reports that `n` payload bytes of input `input` were moved outside
    /// the merge after a [`Need::Copy`]: written to the destination after
    /// the output taken (`emit`), or skipped. `n` may be less than asked
    /// (0 too); more than asked, bytes of another input, output not taken
    /// first, or pushed bytes not consumed yet are usage errors that end
    /// the merge.
    pub fn consumed_elsewhere(&mut self, input: usize, n: u64) -> Result<(), MergeStreamError> {
        let r = self.account_elsewhere(input, n);
        if let Err(e) = &r
            && !matches!(self.state, State::Failed(_))
        {
            self.output().clear();
            self.state = State::Failed(e.duplicate());
        }
        r
    }

    fn account_elsewhere(&mut self, i: usize, n: u64) -> Result<(), MergeStreamError> {
        let buffered = self.buffered();
        let State::Run { enc, copy, .. } = &mut self.state else {
            if let State::Failed(e) = &self.state {
                return Err(e.duplicate());
            }
            return Err(MergeStreamError::usage(
                Some(i),
                "payload reported outside a payload copy",
            ));
        };
        let Some(c) = copy.as_mut().filter(|c| c.input == i) else {
            return Err(MergeStreamError::usage(
                Some(i),
                alloc::format!("diff #{}: no payload of this input is being copied", i + 1),
            ));
        };
        if n == 0 {
            return Ok(());
        }
        if n > c.remaining {
            return Err(MergeStreamError::usage(
                Some(i),
                alloc::format!(
                    "diff #{}: {n} payload bytes reported, {} left in the piece",
                    i + 1,
                    c.remaining
                ),
            ));
        }
        let input = &mut self.inputs[i];
        if input.pos != input.end || input.eof {
            return Err(MergeStreamError::usage(
                Some(i),
                alloc::format!(
                    "diff #{}: payload reported while pushed bytes are pending or after the end",
                    i + 1
                ),
            ));
        }
        if c.emit && buffered > 0 {
            return Err(MergeStreamError::usage(
                None,
                "payload reported before the output was taken",
            ));
        }
        if input.dec.skip_payload(n) != n {
            return Err(MergeStreamError::usage(
                Some(i),
                alloc::format!("diff #{}: payload reported outside a write record", i + 1),
            ));
        }
        if c.emit {
            enc.data_elsewhere(n).map_err(output_err)?;
            self.written += n;
        }
        c.remaining -= n;
        if c.remaining == 0 {
            *copy = None;
        }
        Ok(())
    }

    /// Bytes held: pushed but not decoded yet, plus output not taken yet.
    pub fn held_bytes(&self) -> usize {
        self.inputs.iter().map(|i| i.end).sum::<usize>() + self.buffered()
    }

    /// Size of the merged image, once the headers are read.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Output bytes produced so far (taken or not).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// True while input `i` is inside a `w` payload (for error phases).
    pub fn input_in_data(&self, i: usize) -> bool {
        self.inputs.get(i).is_some_and(|x| x.dec.in_data())
    }

    /// The next chunk of input `i`; an empty chunk ends it.
    pub fn push(&mut self, i: usize, chunk: &[u8]) -> Result<(), MergeStreamError> {
        if let State::Failed(e) = &self.state {
            return Err(e.duplicate());
        }
        let n = self.inputs.len();
        let input = self.inputs.get_mut(i).ok_or_else(|| {
            MergeStreamError::usage(None, alloc::format!("input {i} out of range (0..{n})"))
        })?;
        if chunk.is_empty() {
            input.eof = true;
            return Ok(());
        }
        if input.eof {
            return Err(MergeStreamError::usage(
                Some(i),
                alloc::format!("diff #{}: data pushed after its end", i + 1),
            ));
        }
        input.room(chunk.len()).copy_from_slice(chunk);
        input.end += chunk.len();
        Ok(())
    }

    /// Like [`push`](Self::push), without a copy: `read` fills (a prefix
    /// of) the input's own buffer, at most `max` (> 0) bytes, and returns
    /// the count; 0 ends the input. Its error is handed back as is.
    #[allow(clippy::type_complexity)]
    pub fn push_with<E>(
        &mut self,
        i: usize,
        max: usize,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<Result<usize, E>, MergeStreamError> {
        if let State::Failed(e) = &self.state {
            return Err(e.duplicate());
        }
        let n = self.inputs.len();
        let input = self.inputs.get_mut(i).ok_or_else(|| {
            MergeStreamError::usage(None, alloc::format!("input {i} out of range (0..{n})"))
        })?;
        if input.eof {
            return Err(MergeStreamError::usage(
                Some(i),
                alloc::format!("diff #{}: data pushed after its end", i + 1),
            ));
        }
        let room = input.room(max.max(1));
        let cap = room.len();
        match read(room) {
            Ok(0) => {
                input.eof = true;
                Ok(Ok(0))
            }
            Ok(k) => {
                input.end += k.min(cap);
                Ok(Ok(k.min(cap)))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// The output produced and not taken yet; take it by draining the vector.
    pub fn output(&mut self) -> &mut Vec<u8> {
        match &mut self.state {
            State::Run { enc, .. } => enc.sink_mut(),
            _ => &mut self.pending,
        }
    }

    fn buffered(&self) -> usize {
        match &self.state {
            State::Run { enc, .. } => enc.sink().len(),
            _ => self.pending.len(),
        }
    }

    /// Runs until `max` output bytes are buffered, an input is needed, or the
    /// merge is complete. After an error the merge is over (the output is
    /// cleared: rbd deletes a failed merge's output).
    pub fn advance(&mut self, max: usize) -> Result<Need, MergeStreamError> {
        let r = self.run(max.max(1));
        if let Err(e) = &r
            && !matches!(self.state, State::Failed(_))
        {
            self.output().clear();
            self.state = State::Failed(e.duplicate());
        }
        r
    }

    /// [`advance`](Self::advance), then take at most `max` output bytes.
    pub fn pull(&mut self, max: usize) -> Result<PullStep, MergeStreamError> {
        let max = max.max(1);
        let need = self.advance(max)?;
        let out = self.output();
        let take = out.len().min(max);
        let output: Vec<u8> = out.drain(..take).collect();
        let done = need == Need::Done && self.buffered() == 0;
        Ok(PullStep {
            output,
            need_input: match need {
                Need::Input(i) | Need::Copy { input: i, .. } => Some(i),
                _ => None,
            },
            done,
        })
    }

    fn run(&mut self, max: usize) -> Result<Need, MergeStreamError> {
        loop {
            if self.buffered() >= max {
                return Ok(Need::Output);
            }
            match &mut self.state {
                State::Failed(e) => return Err(e.duplicate()),
                State::Done => return Ok(Need::Done),
                State::Headers { next, first } => {
                    if self.inputs.is_empty() {
                        return Err(MergeStreamError::new(
                            None,
                            Phase::Header,
                            MergeErrorKind::NoInputs,
                        ));
                    }
                    while *next < self.inputs.len() {
                        match self.inputs[*next].next_record(*next)? {
                            None => return Ok(Need::Input(*next)),
                            Some(r) => {
                                first.push(r);
                                *next += 1;
                            }
                        }
                    }
                    let first = core::mem::take(first);
                    self.start(first)?;
                }
                State::Run {
                    engine,
                    first,
                    enc,
                    copy,
                } => {
                    if let Some(c) = copy {
                        let input = &self.inputs[c.input];
                        if self.external && input.pos == input.end && !input.eof && c.remaining > 0
                        {
                            return Ok(Need::Copy {
                                input: c.input,
                                len: c.remaining,
                                emit: c.emit,
                            });
                        }
                        let room = if c.emit {
                            (max - enc.sink().len()) as u64
                        } else {
                            u64::MAX
                        };
                        let input = &mut self.inputs[c.input];
                        let before = enc.position();
                        let out = if c.emit { Some(&mut *enc) } else { None };
                        match input.payload(c.input, c.remaining.min(room), out)? {
                            None => return Ok(Need::Input(c.input)),
                            Some(n) => c.remaining -= n,
                        }
                        self.written += enc.position() - before;
                        if c.remaining == 0 {
                            *copy = None;
                        }
                        continue;
                    }
                    let action = engine
                        .next_action()
                        .map_err(|e| engine_err(e, &self.inputs))?;
                    let before = enc.position();
                    match action {
                        Action::NeedRecord(i) => {
                            let rec = match first[i].take() {
                                Some(r) => r,
                                None => match self.inputs[i].next_record(i)? {
                                    Some(r) => r,
                                    None => return Ok(Need::Input(i)),
                                },
                            };
                            engine
                                .push(i, rec)
                                .map_err(|e| engine_err(e, &self.inputs))?;
                        }
                        Action::Write { input, offset, len } => {
                            enc.begin_write(offset, len).map_err(output_err)?;
                            self.records += 1;
                            *copy = Some(Copy {
                                input,
                                remaining: len,
                                emit: true,
                            });
                        }
                        Action::Skip { input, len } => {
                            *copy = Some(Copy {
                                input,
                                remaining: len,
                                emit: false,
                            });
                        }
                        Action::Zero { offset, len } => {
                            enc.zero(offset, len).map_err(output_err)?;
                            self.records += 1;
                        }
                        Action::Done => {
                            enc.end_diff().map_err(output_err)?;
                            self.written += enc.position() - before;
                            let State::Run { enc, .. } =
                                core::mem::replace(&mut self.state, State::Done)
                            else {
                                unreachable!()
                            };
                            self.pending = enc.finish().map_err(output_err)?;
                            continue;
                        }
                    }
                    self.written += enc.position() - before;
                }
            }
        }
    }

    /// All headers are read: check the chain, write the output header and
    /// start the engine.
    fn start(&mut self, first: Vec<Record>) -> Result<(), MergeStreamError> {
        let headers: Vec<InputHeader> = self.inputs.iter().map(|i| i.header.clone()).collect();
        check_chain(&headers)?;
        let last = &headers[headers.len() - 1];
        let sizes: Vec<u64> = headers.iter().map(|h| h.size.unwrap_or(0)).collect();
        let mut enc =
            Encoder::diff(core::mem::take(&mut self.pending), self.format).map_err(output_err)?;
        let from = headers[0].from.as_deref().filter(|n| !n.is_empty());
        let to = last.to.as_deref().filter(|n| !n.is_empty());
        enc.header(&DiffHeader {
            from,
            to,
            protected: to.map(|_| last.protected.unwrap_or(false)),
            size: Some(sizes[sizes.len() - 1]),
        })
        .map_err(output_err)?;
        self.written = enc.position();
        let engine = Merger::new(&sizes);
        self.size = Some(engine.final_size());
        self.state = State::Run {
            engine,
            first: first.into_iter().map(Some).collect(),
            enc,
            copy: None,
        };
        Ok(())
    }
}
