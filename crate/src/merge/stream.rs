//! The std driver: merge diffs read from [`std::io::Read`]ers.

use super::{Action, MergeError, Merger, Record};
use crate::decode::{Check, Config, Event, FormatSet};
use crate::encode::{DiffHeader, EncodeError, Encoder, IoSink};
use crate::error::{DecodeError, ErrorKind, Expected};
use crate::format::Format;
use crate::reader::{EventReader, ReadError};
use alloc::vec::Vec;
use std::io::{self, Read, Write};

/// Merge options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeOptions {
    /// Output format: [`Format::DiffV1`] (what rbd writes) or [`Format::DiffV2`].
    pub output: Format,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            output: Format::DiffV1,
        }
    }
}

/// What a merge did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Records written.
    pub records: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Image size of the result.
    pub size: u64,
}

/// The part of the work that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Why a stream merge failed.
#[derive(Debug)]
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
        /// Offset that broke the order.
        offset: u64,
    },
    /// An input has a record of length 0.
    ZeroLength,
    /// Reading or writing failed.
    Io(io::Error),
    /// No inputs were given.
    NoInputs,
}

/// A failed stream merge: which input (0-based), in which phase, why.
#[derive(Debug)]
pub struct MergeStreamError {
    /// The input at fault (`None` for output errors).
    pub input: Option<usize>,
    /// What was being done.
    pub phase: Phase,
    /// Why.
    pub kind: MergeErrorKind,
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
                    Some(n) => alloc::format!("'{}'", alloc::string::String::from_utf8_lossy(n)),
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
            MergeErrorKind::Io(e) => write!(f, "I/O error: {e}"),
            MergeErrorKind::NoInputs => f.write_str("no diffs to merge"),
        }
    }
}

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

struct Input<R> {
    reader: EventReader<R>,
    header_done: bool,
}

impl<R: Read> Input<R> {
    fn err(&self, i: usize, e: ReadError) -> MergeStreamError {
        match e {
            ReadError::Decode(d) => MergeStreamError {
                input: Some(i),
                phase: phase_of(&d, self.header_done),
                kind: MergeErrorKind::Decode(d),
            },
            ReadError::Io(io) => MergeStreamError {
                input: Some(i),
                phase: if self.reader.decoder().in_data() {
                    Phase::Data
                } else {
                    Phase::RecordHeader
                },
                kind: MergeErrorKind::Io(io),
            },
        }
    }

    /// Reads up to and including the next record header.
    fn next_record(
        &mut self,
        i: usize,
        header: Option<&mut InputHeader>,
    ) -> Result<Record, MergeStreamError> {
        let mut header = header;
        loop {
            let ev = match self.reader.next_event() {
                Ok(Some((_, ev))) => ev,
                Ok(None) => return Ok(Record::End),
                Err(e) => return Err(self.err(i, e)),
            };
            match (ev, header.as_deref_mut()) {
                (Event::Banner(f), Some(h)) => h.format = Some(f),
                (Event::FromSnap(n), Some(h)) => h.from = Some(n.to_vec()),
                (Event::ToSnap(n), Some(h)) => h.to = Some(n.to_vec()),
                (Event::Protection(p), Some(h)) => h.protected = Some(p != 0),
                (Event::Size(s), Some(h)) => h.size = Some(s),
                (Event::Write { offset, len }, _) => {
                    self.header_done = true;
                    return Ok(Record::Write { offset, len });
                }
                (Event::Zero { offset, len }, _) => {
                    self.header_done = true;
                    return Ok(Record::Zero { offset, len });
                }
                (Event::DiffEnd, _) => {
                    self.header_done = true;
                    return Ok(Record::End);
                }
                _ => {} // warnings, unknown v2 records: skipped
            }
        }
    }

    /// Passes the next `len` payload bytes to `out` (or drops them).
    fn payload(
        &mut self,
        i: usize,
        mut len: u64,
        mut out: Option<&mut Encoder<IoSink<io::BufWriter<&mut dyn Write>>>>,
    ) -> Result<(), MergeStreamError> {
        while len > 0 {
            let max = usize::try_from(len).unwrap_or(usize::MAX);
            let bytes = match self.reader.next_limited(max) {
                Ok(Some((_, Event::Data { bytes, .. }))) => bytes,
                Ok(_) => unreachable!("the decoder is inside a write payload"),
                Err(e) => return Err(self.err(i, e)),
            };
            if let Some(enc) = out.as_deref_mut() {
                enc.data(bytes).map_err(output_err)?;
            }
            len -= bytes.len() as u64;
        }
        Ok(())
    }
}

fn output_err(e: EncodeError<io::Error>) -> MergeStreamError {
    MergeStreamError {
        input: None,
        phase: Phase::Output,
        kind: match e {
            EncodeError::Sink(io) => MergeErrorKind::Io(io),
            EncodeError::Misuse(m) => MergeErrorKind::Io(io::Error::other(alloc::format!("{m}"))),
        },
    }
}

fn engine_err(e: MergeError) -> MergeStreamError {
    let (input, kind) = match e {
        MergeError::OutOfOrder {
            input,
            prev_end,
            offset,
        } => (Some(input), MergeErrorKind::OutOfOrder { prev_end, offset }),
        MergeError::ZeroLength { input } => (Some(input), MergeErrorKind::ZeroLength),
        MergeError::Protocol => (
            None,
            MergeErrorKind::Io(io::Error::other("merge protocol error")),
        ),
    };
    MergeStreamError {
        input,
        phase: Phase::RecordHeader,
        kind,
    }
}

/// Checks that each input's from-snapshot is the previous input's
/// to-snapshot (compared as rbd does: a missing name equals an empty one).
pub fn check_chain(headers: &[InputHeader]) -> Result<(), MergeStreamError> {
    let name = |n: &Option<Vec<u8>>| n.clone().unwrap_or_default();
    for i in 1..headers.len() {
        if name(&headers[i - 1].to) != name(&headers[i].from) {
            return Err(MergeStreamError {
                input: Some(i),
                phase: Phase::Header,
                kind: MergeErrorKind::Chain {
                    prev_to: headers[i - 1].to.clone(),
                    from: headers[i].from.clone(),
                },
            });
        }
    }
    Ok(())
}

/// Merge N consecutive diffs (v1 or v2, in chain order) from `inputs` into
/// `out`. For two v1 inputs the bytes equal `rbd merge-diff`'s output.
/// `progress` is called with the number of input bytes read so far.
pub fn merge_streams<R: Read, W: Write>(
    inputs: &mut [R],
    mut out: W,
    opts: &MergeOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<MergeStats, MergeStreamError> {
    if inputs.is_empty() {
        return Err(MergeStreamError {
            input: None,
            phase: Phase::Header,
            kind: MergeErrorKind::NoInputs,
        });
    }
    let mut ins: Vec<Input<&mut R>> = inputs
        .iter_mut()
        .map(|r| Input {
            reader: EventReader::new(r, input_config()),
            header_done: false,
        })
        .collect();
    // Headers, and each input's first record (rbd reads both headers first).
    let mut headers = alloc::vec![InputHeader::default(); ins.len()];
    let mut first = Vec::with_capacity(ins.len());
    for (i, input) in ins.iter_mut().enumerate() {
        first.push(input.next_record(i, Some(&mut headers[i]))?);
    }
    check_chain(&headers)?;
    let last = &headers[headers.len() - 1];
    let sizes: Vec<u64> = headers.iter().map(|h| h.size.unwrap_or(0)).collect();
    let out_dyn: &mut dyn Write = &mut out;
    let mut enc = Encoder::diff(
        IoSink(io::BufWriter::with_capacity(1 << 20, out_dyn)),
        opts.output,
    )
    .map_err(output_err)?;
    let from = headers[0].from.as_deref().filter(|n| !n.is_empty());
    let to = last.to.as_deref().filter(|n| !n.is_empty());
    enc.header(&DiffHeader {
        from,
        to,
        protected: to.map(|_| last.protected.unwrap_or(false)),
        size: Some(sizes[sizes.len() - 1]),
    })
    .map_err(output_err)?;

    let mut engine = Merger::new(&sizes);
    let mut first: Vec<Option<Record>> = first.into_iter().map(Some).collect();
    let mut stats = MergeStats {
        size: engine.final_size(),
        ..MergeStats::default()
    };
    loop {
        match engine.next_action().map_err(engine_err)? {
            Action::NeedRecord(i) => {
                let rec = match first[i].take() {
                    Some(r) => r,
                    None => ins[i].next_record(i, None)?,
                };
                engine.push(i, rec).map_err(engine_err)?;
                progress(ins.iter().map(|x| x.reader.bytes_read()).sum());
            }
            Action::Write { input, offset, len } => {
                enc.begin_write(offset, len).map_err(output_err)?;
                ins[input].payload(input, len, Some(&mut enc))?;
                stats.records += 1;
            }
            Action::Skip { input, len } => ins[input].payload(input, len, None)?,
            Action::Zero { offset, len } => {
                enc.zero(offset, len).map_err(output_err)?;
                stats.records += 1;
            }
            Action::Done => break,
        }
    }
    enc.end_diff().map_err(output_err)?;
    stats.bytes_written = enc.position();
    let IoSink(mut w) = enc.finish().map_err(output_err)?;
    w.flush().map_err(|e| output_err(EncodeError::Sink(e)))?;
    progress(ins.iter().map(|x| x.reader.bytes_read()).sum());
    Ok(stats)
}
