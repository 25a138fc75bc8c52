//! What a stream holds: a summary built from decoder events, shared by the
//! CLI's `inspect`, the browser viewer and the component.

use crate::decode::{Config, Decoder, Event};
use crate::error::{DecodeError, ErrorCode, ErrorKind};
use crate::format::Format;
use crate::integrity::StreamVerifier;
use crate::pump::{Pump, PumpError};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Limits on what the summary keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectOptions {
    /// Records kept per diff in [`DiffSummary::records`] (counts are always complete).
    pub max_records: usize,
    /// Warnings kept in [`Summary::warnings`].
    pub max_warnings: usize,
}

impl Default for InspectOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl InspectOptions {
    /// 100 000 records and 100 warnings kept.
    pub const fn new() -> Self {
        InspectOptions {
            max_records: 100_000,
            max_warnings: 100,
        }
    }

    /// Keep at most `n` records per diff.
    pub const fn with_max_records(mut self, n: usize) -> Self {
        self.max_records = n;
        self
    }

    /// Keep at most `n` warnings.
    pub const fn with_max_warnings(mut self, n: usize) -> Self {
        self.max_warnings = n;
        self
    }
}

/// An error or warning with its stream offset.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Finding {
    /// Stream offset.
    pub offset: u64,
    /// Kind (serialized as its stable kebab-case name: `unexpected-eof`,
    /// `unknown-tag`, …).
    pub kind: ErrorCode,
    /// Human message.
    pub message: String,
}

impl Finding {
    fn new(offset: u64, kind: &ErrorKind) -> Self {
        Finding {
            offset,
            kind: kind.code(),
            message: kind.to_string(),
        }
    }
}

/// One image-meta pair (lossy UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MetaPair {
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
}

/// The image v2 header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ImageInfo {
    /// Object order.
    pub order: Option<u64>,
    /// Feature bits.
    pub features: Option<u64>,
    /// Stripe unit.
    pub stripe_unit: Option<u64>,
    /// Stripe count.
    pub stripe_count: Option<u64>,
    /// Image-meta pairs in stream order.
    pub meta: Vec<MetaPair>,
}

/// One record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct RecordSummary {
    /// Stream offset of the tag.
    pub stream_offset: u64,
    /// `'w'` or `'z'`.
    pub tag: char,
    /// Image offset.
    pub offset: u64,
    /// Length.
    pub length: u64,
}

/// One diff (the stream itself, or one embedded in an image v2 stream).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct DiffSummary {
    /// Index in the image stream (0 for a standalone diff).
    pub index: u64,
    /// Stream offset of the diff's banner.
    pub stream_offset: u64,
    /// Bytes from the banner to the `e` inclusive.
    pub stream_bytes: u64,
    /// Header tags in stream order (`f`, `t`, `p`, `s`).
    pub header_tags: Vec<String>,
    /// From-snapshot.
    pub from_snap: Option<String>,
    /// To-snapshot.
    pub to_snap: Option<String>,
    /// Protection (v2 `p`).
    pub protected: Option<bool>,
    /// Image size (`s`).
    pub size: Option<u64>,
    /// `w` records.
    pub n_w: u64,
    /// `z` records.
    pub n_z: u64,
    /// Payload bytes of `w` records.
    pub w_bytes: u64,
    /// Bytes covered by `z` records.
    pub z_bytes: u64,
    /// `w` records whose payload is entirely zero.
    pub w_all_zero_records: u64,
    /// Unknown records skipped.
    pub n_unknown: u64,
    /// Records ascending by offset.
    pub records_sorted: bool,
    /// Some records overlap.
    pub records_overlap: bool,
    /// Some record reaches past `s`.
    pub records_beyond_size: bool,
    /// The `e` was read.
    pub complete: bool,
    /// The records (up to [`InspectOptions::max_records`]).
    pub records: Vec<RecordSummary>,
    /// More records exist than were kept.
    pub records_truncated: bool,
    /// The rbdiff integrity data the diff carries (`H`/`K` records, or a v1
    /// trailer), checked against the stream; only with [`Inspector::event_raw`].
    pub integrity: Option<IntegritySummary>,
}

/// What the integrity extension of a diff says, and whether the stream
/// matches it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct IntegritySummary {
    /// Records listed.
    pub entries: u64,
    /// Base image size recorded, if any.
    pub base_size: Option<u64>,
    /// The stream matches: payload hashes, record list, count and checksum.
    pub ok: bool,
    /// What does not match.
    pub fault: Option<String>,
}

/// What a stream holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Summary {
    /// Stream format.
    pub format: Option<Format>,
    /// Image v2 header.
    pub image: Option<ImageInfo>,
    /// Declared diff count (image v2).
    pub diff_count: Option<u64>,
    /// The diffs.
    pub diffs: Vec<DiffSummary>,
    /// Bytes read.
    pub stream_bytes: u64,
    /// Bytes after the end.
    pub trailing_bytes: u64,
    /// Unknown records skipped (all diffs and the image header).
    pub unknown_records: u64,
    /// Warnings (up to [`InspectOptions::max_warnings`]).
    pub warnings: Vec<Finding>,
    /// All warnings.
    pub warnings_total: u64,
    /// The error that stopped decoding.
    pub error: Option<Finding>,
    /// Decoded to the end without error.
    pub valid: bool,
}

/// Builds a [`Summary`] from events.
#[derive(Clone, Debug, Default)]
pub struct Inspector {
    opts: InspectOptions,
    s: Summary,
    cur: Option<DiffSummary>,
    prev: Option<(u64, u64)>,
    write_zero: bool,
    done: bool,
    verifier: Option<StreamVerifier>,
}

impl Inspector {
    /// A fresh inspector.
    pub fn new(opts: InspectOptions) -> Self {
        Inspector {
            opts,
            ..Inspector::default()
        }
    }

    /// The summary so far (for progress displays).
    pub fn summary(&self) -> &Summary {
        &self.s
    }

    /// The diff being decoded, if any.
    pub fn current_diff(&self) -> Option<&DiffSummary> {
        self.cur.as_ref()
    }

    fn diff(&mut self) -> &mut DiffSummary {
        self.cur.get_or_insert_with(DiffSummary::default)
    }

    fn record(&mut self, stream_offset: u64, tag: char, offset: u64, length: u64) {
        let max = self.opts.max_records;
        let prev = self.prev;
        let d = self.diff();
        let end = offset.saturating_add(length);
        if let Some((pstart, pend)) = prev {
            if offset < pstart {
                d.records_sorted = false;
            }
            if offset < pend && end > pstart {
                d.records_overlap = true;
            }
        }
        if d.size.is_some_and(|s| end > s) {
            d.records_beyond_size = true;
        }
        if d.records.len() < max {
            d.records.push(RecordSummary {
                stream_offset,
                tag,
                offset,
                length,
            });
        } else {
            d.records_truncated = true;
        }
        self.prev = Some((offset, end));
    }

    fn close_w(&mut self) {
        if self.write_zero {
            self.diff().w_all_zero_records += 1;
            self.write_zero = false;
        }
    }

    /// Feed one event with the raw bytes the decoder consumed for it
    /// ([`crate::Pump::feed_raw`], [`crate::EventReader::next_event_raw`]):
    /// this also checks the rbdiff integrity data a diff carries.
    pub fn event_raw(&mut self, offset: u64, ev: &Event<'_>, raw: &[u8]) {
        if matches!(
            ev,
            Event::Banner(Format::DiffV1 | Format::DiffV2) | Event::DiffBegin { .. }
        ) {
            self.verifier = Some(StreamVerifier::new(None));
        }
        if let Some(v) = self.verifier.as_mut() {
            v.event(offset, ev, raw);
        }
        let v2_end = matches!(ev, Event::DiffEnd) && self.s.format != Some(Format::DiffV1);
        self.event(offset, ev);
        if v2_end {
            self.close_integrity();
        }
    }

    fn close_integrity(&mut self) {
        let Some(v) = self.verifier.take() else {
            return;
        };
        let summary = match (v.carried().cloned(), v.finish()) {
            (_, Ok(Some(m))) => Some(IntegritySummary {
                entries: m.entries.len() as u64,
                base_size: m.base_size,
                ok: true,
                fault: None,
            }),
            (_, Ok(None)) => None,
            (m, Err(f)) => Some(IntegritySummary {
                entries: m.as_ref().map_or(0, |m| m.entries.len() as u64),
                base_size: m.and_then(|m| m.base_size),
                ok: false,
                fault: Some(f.to_string()),
            }),
        };
        if let Some(d) = self.s.diffs.last_mut() {
            d.integrity = summary;
        }
    }

    /// Feed one event.
    pub fn event(&mut self, offset: u64, ev: &Event<'_>) {
        if !matches!(ev, Event::Data { .. }) {
            self.close_w();
        }
        match *ev {
            Event::Banner(f) => {
                self.s.format = Some(f);
                if f == Format::ImageV2 {
                    self.s.image = Some(ImageInfo::default());
                } else {
                    self.start_diff(0, offset);
                }
            }
            Event::Order(v) => self.image().order = Some(v),
            Event::Features(v) => self.image().features = Some(v),
            Event::StripeUnit(v) => self.image().stripe_unit = Some(v),
            Event::StripeCount(v) => self.image().stripe_count = Some(v),
            Event::Meta { key, value } => self.image().meta.push(MetaPair {
                key: String::from_utf8_lossy(key).into_owned(),
                value: String::from_utf8_lossy(value).into_owned(),
            }),
            Event::ImageHeaderEnd => {}
            Event::DiffCount(n) => self.s.diff_count = Some(n),
            Event::DiffBegin { index } => self.start_diff(index, offset),
            Event::FromSnap(n) => {
                let d = self.diff();
                d.header_tags.push("f".into());
                d.from_snap = Some(String::from_utf8_lossy(n).into_owned());
            }
            Event::ToSnap(n) => {
                let d = self.diff();
                d.header_tags.push("t".into());
                d.to_snap = Some(String::from_utf8_lossy(n).into_owned());
            }
            Event::Protection(p) => {
                let d = self.diff();
                d.header_tags.push("p".into());
                d.protected = Some(p != 0);
            }
            Event::Size(s) => {
                let d = self.diff();
                d.header_tags.push("s".into());
                d.size = Some(s);
            }
            Event::Write { offset: o, len } => {
                let d = self.diff();
                d.n_w += 1;
                d.w_bytes += len;
                // Vacuously all-zero when empty, as the corpus manifests count it.
                self.write_zero = true;
                self.record(offset, 'w', o, len);
            }
            Event::Data { bytes, .. } => {
                if self.write_zero && bytes.iter().any(|&b| b != 0) {
                    self.write_zero = false;
                }
            }
            Event::Zero { offset: o, len } => {
                let d = self.diff();
                d.n_z += 1;
                d.z_bytes += len;
                self.record(offset, 'z', o, len);
            }
            Event::Unknown { .. } => {
                self.s.unknown_records += 1;
                if let Some(d) = self.cur.as_mut() {
                    d.n_unknown += 1;
                }
            }
            Event::UnknownData(_) => {}
            Event::Warning(k) => {
                self.s.warnings_total += 1;
                if self.s.warnings.len() < self.opts.max_warnings {
                    self.s.warnings.push(Finding::new(offset, &k));
                }
            }
            Event::DiffEnd => {
                if let Some(mut d) = self.cur.take() {
                    d.complete = true;
                    d.stream_bytes = offset + 1 - d.stream_offset;
                    self.s.diffs.push(d);
                }
            }
            Event::Trailing(b) => self.s.trailing_bytes += b.len() as u64,
        }
    }

    fn image(&mut self) -> &mut ImageInfo {
        self.s.image.get_or_insert_with(ImageInfo::default)
    }

    fn start_diff(&mut self, index: u64, offset: u64) {
        self.prev = None;
        self.cur = Some(DiffSummary {
            index,
            stream_offset: offset,
            records_sorted: true,
            ..DiffSummary::default()
        });
    }

    /// Record the error that stopped decoding.
    pub fn error(&mut self, e: &DecodeError) {
        self.close_w();
        self.s.error = Some(Finding::new(e.offset, &e.kind));
    }

    /// Mark the stream as fully decoded.
    pub fn done(&mut self) {
        self.done = true;
    }

    /// The summary. `stream_bytes` is the number of bytes read.
    pub fn finish(mut self, stream_bytes: u64) -> Summary {
        self.close_w();
        if self.s.error.is_none() {
            // v1: the trailer (if any) came as trailing bytes after the `e`.
            self.close_integrity();
        }
        if let Some(mut d) = self.cur.take() {
            d.stream_bytes = stream_bytes.saturating_sub(d.stream_offset);
            self.s.diffs.push(d);
        }
        self.s.stream_bytes = stream_bytes;
        self.s.valid = self.done && self.s.error.is_none();
        self.s
    }
}

/// One stream being inspected, fed in chunks: the [`Pump`], the
/// [`Inspector`] and the error that stopped decoding (sticky: once a
/// stream failed, every later feed returns the same error). The driver the
/// CLI's `inspect`, the browser viewer and the component share; they only
/// read their input and show the [`Summary`].
#[derive(Clone, Debug)]
pub struct InspectSession {
    pump: Pump,
    insp: Inspector,
    error: Option<DecodeError>,
    integrity: bool,
    ended: bool,
    fed: u64,
}

impl InspectSession {
    /// A session at the start of a stream, decoding with `config`.
    pub fn new(config: Config, opts: InspectOptions) -> Self {
        InspectSession {
            pump: Pump::new(Decoder::new(config)),
            insp: Inspector::new(opts),
            error: None,
            integrity: true,
            ended: false,
            fed: 0,
        }
    }

    /// Whether the integrity data a diff carries is checked against the
    /// stream's bytes (on by default; off, the stream is not hashed and
    /// [`DiffSummary::integrity`] stays `None`).
    #[must_use]
    pub fn check_integrity(mut self, on: bool) -> Self {
        self.integrity = on;
        self
    }

    /// Feeds the next chunk (`eof`: nothing follows it). Returns `true` once
    /// the stream is complete, or the error that stopped it.
    pub fn feed(&mut self, chunk: &[u8], eof: bool) -> Result<bool, DecodeError> {
        self.feed_with(chunk, eof, |_, _, _| {})
    }

    /// [`feed`](Self::feed), also handing `on` every event with its stream
    /// offset and the raw bytes the decoder consumed for it, after the
    /// inspector saw it.
    pub fn feed_with<F>(&mut self, chunk: &[u8], eof: bool, mut on: F) -> Result<bool, DecodeError>
    where
        F: FnMut(u64, &Event<'_>, &[u8]),
    {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.fed += chunk.len() as u64;
        self.ended |= eof;
        let (insp, integrity) = (&mut self.insp, self.integrity);
        let r = self.pump.feed_raw(chunk, eof, |offset, ev, raw| {
            if integrity {
                insp.event_raw(offset, &ev, raw);
            } else {
                insp.event(offset, &ev);
            }
            on(offset, &ev, raw);
            Ok::<(), core::convert::Infallible>(())
        });
        match r {
            Ok(done) => {
                if done {
                    self.insp.done();
                }
                Ok(done)
            }
            Err(PumpError::Decode(e)) => {
                self.insp.error(&e);
                self.error = Some(e);
                Err(e)
            }
            Err(PumpError::Handler(never)) => match never {},
        }
    }

    /// Ends the stream (a truncated stream fails here), once: later calls
    /// return the same result without feeding again.
    pub fn end_with<F>(&mut self, on: F) -> Result<(), DecodeError>
    where
        F: FnMut(u64, &Event<'_>, &[u8]),
    {
        if self.ended {
            return self.error.map_or(Ok(()), Err);
        }
        self.feed_with(&[], true, on).map(|_| ())
    }

    /// [`end_with`](Self::end_with) without a callback.
    pub fn end(&mut self) -> Result<(), DecodeError> {
        self.end_with(|_, _, _| {})
    }

    /// The error that stopped decoding, if any.
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }

    /// True once the stream ended and every byte fed was decoded.
    pub fn is_done(&self) -> bool {
        self.pump.is_done()
    }

    /// Stream offset of the next byte the decoder consumes.
    pub fn position(&self) -> u64 {
        self.pump.position()
    }

    /// Bytes fed until decoding stopped (the chunk that failed included).
    pub fn bytes_fed(&self) -> u64 {
        self.fed
    }

    /// The inspector (the summary so far, the diff being decoded).
    pub fn inspector(&self) -> &Inspector {
        &self.insp
    }

    /// The summary as it stands, `stream_bytes` being the bytes read (see
    /// [`Inspector::finish`]); the session goes on.
    pub fn summary(&self, stream_bytes: u64) -> Summary {
        self.insp.clone().finish(stream_bytes)
    }

    /// The final summary, `stream_bytes` being the bytes read.
    pub fn finish(self, stream_bytes: u64) -> Summary {
        self.insp.finish(stream_bytes)
    }
}
