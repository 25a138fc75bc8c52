//! A push/pull driver for [`rbdiff::merge::Merger`]: the host pushes chunks
//! of each input when asked and pulls the merged stream in pieces.
//!
//! It does what [`rbdiff::merge::merge_streams`] does (same decoder policy,
//! header and chain checks, output header, error messages) without
//! `std::io::Read`, which a component cannot block on. Memory: each input
//! keeps the unconsumed part of the chunks pushed to it; the output buffer
//! holds at most `max` bytes plus one record header.

use rbdiff::encode::{DiffHeader, EncodeError, Encoder, Sink};
use rbdiff::merge::{
    Action, InputHeader, MergeError, MergeErrorKind, MergeStreamError, Merger, Phase, Record,
    check_chain, input_config,
};
use rbdiff::{DecodeError, Decoder, ErrorKind, Event, Expected, Format, Step};
use std::cell::RefCell;
use std::rc::Rc;

/// What kind of failure (see the WIT `merge-error-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeFailureKind {
    /// An input is invalid (`decode` says how).
    InvalidInput,
    /// Snapshot names do not chain.
    SnapshotChain,
    /// No inputs.
    NoInputs,
    /// The caller broke the protocol.
    Usage,
}

/// A merge failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeFailure {
    /// Kind.
    pub kind: MergeFailureKind,
    /// Input at fault.
    pub input: Option<usize>,
    /// Phase (`None`: a call-protocol error).
    pub phase: Option<Phase>,
    /// The decode error of an invalid input.
    pub decode: Option<DecodeError>,
    /// Message.
    pub message: String,
}

impl MergeFailure {
    fn usage(input: Option<usize>, message: impl Into<String>) -> Self {
        MergeFailure {
            kind: MergeFailureKind::Usage,
            input,
            phase: None,
            decode: None,
            message: message.into(),
        }
    }

    /// A failure with the crate's [`MergeStreamError`] message.
    fn from_stream(e: MergeStreamError, decode: Option<DecodeError>) -> Self {
        let kind = match &e.kind {
            MergeErrorKind::Chain { .. } => MergeFailureKind::SnapshotChain,
            MergeErrorKind::NoInputs => MergeFailureKind::NoInputs,
            _ => MergeFailureKind::InvalidInput,
        };
        MergeFailure {
            kind,
            input: e.input,
            phase: Some(e.phase),
            decode,
            message: e.to_string(),
        }
    }

    fn decode(input: usize, e: DecodeError, header_done: bool) -> Self {
        Self::from_stream(
            MergeStreamError {
                input: Some(input),
                phase: phase_of(&e, header_done),
                kind: MergeErrorKind::Decode(e),
            },
            Some(e),
        )
    }
}

/// The phase of a decode error, as `merge_streams` reports it (rbd's
/// "parse header" / "read data chunk header" / "merge diff chunk").
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

/// The output buffer, shared between the encoder and the driver.
#[derive(Clone, Default)]
struct Out(Rc<RefCell<Vec<u8>>>);

impl Sink for Out {
    type Error = core::convert::Infallible;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(())
    }
}

/// One input: its decoder and the bytes pushed but not decoded yet.
struct Input {
    dec: Decoder,
    buf: Vec<u8>,
    pos: usize,
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
            buf: Vec::new(),
            pos: 0,
            eof: false,
            header: InputHeader::default(),
            header_done: false,
            rec_offset: 0,
            rec_tag: 0,
        }
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// Reads up to and including the next record header; `None` when more
    /// input is needed.
    fn next_record(&mut self, i: usize) -> Result<Option<Record>, MergeFailure> {
        loop {
            let step = self
                .dec
                .decode(&self.buf[self.pos..], self.eof)
                .map_err(|e| MergeFailure::decode(i, e, self.header_done))?;
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
            let header = !self.header_done;
            match ev {
                Event::Banner(f) if header => h.format = Some(f),
                Event::FromSnap(n) if header => h.from = Some(n.to_vec()),
                Event::ToSnap(n) if header => h.to = Some(n.to_vec()),
                Event::Protection(p) if header => h.protected = Some(p != 0),
                Event::Size(s) if header => h.size = Some(s),
                Event::Write { offset: o, len } => {
                    self.header_done = true;
                    (self.rec_offset, self.rec_tag) = (offset, b'w');
                    return Ok(Some(Record::Write { offset: o, len }));
                }
                Event::Zero { offset: o, len } => {
                    self.header_done = true;
                    (self.rec_offset, self.rec_tag) = (offset, b'z');
                    return Ok(Some(Record::Zero { offset: o, len }));
                }
                Event::DiffEnd => {
                    self.header_done = true;
                    (self.rec_offset, self.rec_tag) = (offset, b'e');
                    return Ok(Some(Record::End));
                }
                _ => {} // warnings, unknown v2 records: skipped, as merge_streams does
            }
        }
    }

    /// Passes up to `max` (> 0) payload bytes of the current `w` to `out`
    /// (or drops them). Returns the count, or `None` when more input is needed.
    fn payload(
        &mut self,
        i: usize,
        max: u64,
        out: Option<&mut Encoder<Out>>,
    ) -> Result<Option<u64>, MergeFailure> {
        let avail = self.buf.len() - self.pos;
        let window = usize::try_from(max).map_or(avail, |m| m.min(avail));
        let step = self
            .dec
            .decode(
                &self.buf[self.pos..self.pos + window],
                self.eof && window == avail,
            )
            .map_err(|e| MergeFailure::decode(i, e, self.header_done))?;
        match step {
            Step::Event {
                event: Event::Data { bytes, .. },
                consumed,
                ..
            } => {
                if let Some(enc) = out {
                    enc.data(bytes).map_err(output_failure)?;
                }
                self.pos += consumed;
                Ok(Some(consumed as u64))
            }
            Step::NeedMore(_) => {
                self.compact();
                Ok(None)
            }
            _ => Err(MergeFailure::usage(
                Some(i),
                "merge engine asked for payload outside a write record",
            )),
        }
    }
}

fn output_failure(e: EncodeError<core::convert::Infallible>) -> MergeFailure {
    MergeFailure::usage(None, format!("merge output refused: {e}"))
}

/// A payload copy (or skip) in progress.
#[derive(Clone, Copy)]
struct Copy {
    input: usize,
    remaining: u64,
    emit: bool,
}

enum State {
    /// Reading every input's header and first record (as rbd does).
    Headers {
        next: usize,
        first: Vec<Record>,
    },
    Run {
        engine: Merger,
        first: Vec<Option<Record>>,
        enc: Encoder<Out>,
        copy: Option<Copy>,
    },
    Done,
    Failed(MergeFailure),
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

/// The push/pull merge driver.
pub struct PushMerge {
    inputs: Vec<Input>,
    format: Format,
    out: Out,
    state: State,
    size: Option<u64>,
}

impl PushMerge {
    /// A merge of `n` inputs into a `format` diff.
    pub fn new(n: usize, format: Format) -> Self {
        let state = if n == 0 {
            State::Failed(MergeFailure::from_stream(
                MergeStreamError {
                    input: None,
                    phase: Phase::Header,
                    kind: MergeErrorKind::NoInputs,
                },
                None,
            ))
        } else {
            State::Headers {
                next: 0,
                first: Vec::with_capacity(n),
            }
        };
        PushMerge {
            inputs: (0..n).map(|_| Input::new()).collect(),
            format,
            out: Out::default(),
            state,
            size: None,
        }
    }

    /// Bytes held: pushed but not decoded yet, plus output not pulled yet.
    pub fn held_bytes(&self) -> usize {
        self.inputs.iter().map(|i| i.buf.len()).sum::<usize>() + self.buffered()
    }

    /// Size of the merged image, once the headers are read.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The next chunk of input `i`; an empty chunk ends it.
    pub fn push(&mut self, i: usize, chunk: &[u8]) -> Result<(), MergeFailure> {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let n = self.inputs.len();
        let input = self
            .inputs
            .get_mut(i)
            .ok_or_else(|| MergeFailure::usage(None, format!("input {i} out of range (0..{n})")))?;
        if chunk.is_empty() {
            input.eof = true;
            return Ok(());
        }
        if input.eof {
            return Err(MergeFailure::usage(
                Some(i),
                format!("diff #{}: data pushed after its end", i + 1),
            ));
        }
        input.compact();
        input.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// Runs until `max` output bytes are ready, an input is needed, or the
    /// merge is complete.
    pub fn pull(&mut self, max: usize) -> Result<PullStep, MergeFailure> {
        let max = max.max(1);
        let r = self.run(max);
        let need_input = match r {
            Ok(need) => need,
            Err(e) => {
                // A failed merge hands out nothing more (rbd deletes its output).
                self.out.0.borrow_mut().clear();
                self.state = State::Failed(e.clone());
                return Err(e);
            }
        };
        let mut out = self.out.0.borrow_mut();
        let take = out.len().min(max);
        let output: Vec<u8> = out.drain(..take).collect();
        let done = need_input.is_none() && out.is_empty() && matches!(self.state, State::Done);
        Ok(PullStep {
            output,
            need_input,
            done,
        })
    }

    fn buffered(&self) -> usize {
        self.out.0.borrow().len()
    }

    /// Advances the merge; `Some(i)` when input `i` is needed.
    fn run(&mut self, max: usize) -> Result<Option<usize>, MergeFailure> {
        loop {
            if let State::Failed(e) = &self.state {
                return Err(e.clone());
            }
            let buffered = self.buffered();
            if buffered >= max {
                return Ok(None);
            }
            match &mut self.state {
                State::Failed(e) => return Err(e.clone()),
                State::Done => return Ok(None),
                State::Headers { next, first } => {
                    while *next < self.inputs.len() {
                        match self.inputs[*next].next_record(*next)? {
                            None => return Ok(Some(*next)),
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
                        let room = if c.emit {
                            (max - buffered) as u64
                        } else {
                            u64::MAX
                        };
                        let input = &mut self.inputs[c.input];
                        let out = if c.emit { Some(&mut *enc) } else { None };
                        match input.payload(c.input, c.remaining.min(room), out)? {
                            None => return Ok(Some(c.input)),
                            Some(n) => c.remaining -= n,
                        }
                        if c.remaining == 0 {
                            *copy = None;
                        }
                        continue;
                    }
                    let action = engine
                        .next_action()
                        .map_err(|e| engine_failure(e, &self.inputs))?;
                    match action {
                        Action::NeedRecord(i) => {
                            let rec = match first[i].take() {
                                Some(r) => r,
                                None => match self.inputs[i].next_record(i)? {
                                    Some(r) => r,
                                    None => return Ok(Some(i)),
                                },
                            };
                            engine
                                .push(i, rec)
                                .map_err(|e| engine_failure(e, &self.inputs))?;
                        }
                        Action::Write { input, offset, len } => {
                            enc.begin_write(offset, len).map_err(output_failure)?;
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
                            enc.zero(offset, len).map_err(output_failure)?;
                        }
                        Action::Done => {
                            enc.end_diff().map_err(output_failure)?;
                            self.state = State::Done;
                        }
                    }
                }
            }
        }
    }

    /// All headers are read: check the chain, write the output header and
    /// start the engine (as `merge_streams` does).
    fn start(&mut self, first: Vec<Record>) -> Result<(), MergeFailure> {
        let headers: Vec<InputHeader> = self.inputs.iter().map(|i| i.header.clone()).collect();
        check_chain(&headers).map_err(|e| MergeFailure::from_stream(e, None))?;
        let last = &headers[headers.len() - 1];
        let sizes: Vec<u64> = headers.iter().map(|h| h.size.unwrap_or(0)).collect();
        let mut enc = Encoder::diff(self.out.clone(), self.format).map_err(output_failure)?;
        let from = headers[0].from.as_deref().filter(|n| !n.is_empty());
        let to = last.to.as_deref().filter(|n| !n.is_empty());
        enc.header(&DiffHeader {
            from,
            to,
            protected: to.map(|_| last.protected.unwrap_or(false)),
            size: Some(sizes[sizes.len() - 1]),
        })
        .map_err(output_failure)?;
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

/// An engine error with rbd's message, located at the record (or `e`) that
/// broke the rule in its input.
fn engine_failure(e: MergeError, inputs: &[Input]) -> MergeFailure {
    let (input, kind, decode) = match e {
        MergeError::OutOfOrder {
            input,
            prev_end,
            offset,
        } => {
            let at = inputs[input].rec_offset;
            // At the `e`, `offset` is the diff size and the records reach past it.
            let k = if inputs[input].rec_tag == b'e' {
                ErrorKind::BeyondSize {
                    end: prev_end,
                    size: offset,
                }
            } else {
                ErrorKind::OutOfOrder { prev_end, offset }
            };
            (
                input,
                MergeErrorKind::OutOfOrder { prev_end, offset },
                DecodeError::new(at, k),
            )
        }
        MergeError::ZeroLength { input } => {
            let (at, tag) = (inputs[input].rec_offset, inputs[input].rec_tag);
            (
                input,
                MergeErrorKind::ZeroLength,
                DecodeError::new(at, ErrorKind::ZeroLength { tag }),
            )
        }
        MergeError::Protocol => {
            return MergeFailure::usage(None, "merge engine protocol error");
        }
    };
    MergeFailure::from_stream(
        MergeStreamError {
            input: Some(input),
            phase: Phase::RecordHeader,
            kind,
        },
        Some(decode),
    )
}
