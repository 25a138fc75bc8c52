//! The push (sans-IO) decoder.
//!
//! [`Decoder::decode`] is handed the bytes the caller has (from the first
//! unconsumed byte on) and answers with one [`Step`]: either "I need at least
//! `n` bytes here" (nothing consumed), or "I consumed `consumed` bytes, here is
//! an [`Event`]". Payloads of `w` records come out as [`Event::Data`] slices
//! borrowed from the caller's input, as far as they reach, so a record of any
//! size decodes in constant memory. Everything else (names, image-meta) is
//! bounded by [`Config`], so the caller's buffer is bounded too.
//!
//! The decoder owns no buffer; [`crate::pump::Pump`] (feature `alloc`) is a
//! ready driver that keeps the few bytes a split item needs.

use crate::error::{DecodeError, ErrorKind, Expected, Zone};
use crate::format::{self, Format, le32, le64, tag};

/// What to do when a check fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Check {
    /// Accept silently.
    Ignore,
    /// Accept, and report an [`Event::Warning`] before the item.
    Warn,
    /// Fail with a [`DecodeError`].
    Error,
}

/// What to do with an unknown tag in a diff v1 stream (v1 has no lengths).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum UnknownV1 {
    /// Fail (the default: the rest of a v1 stream cannot be trusted).
    Error,
    /// Skip the one tag byte and go on, as `rbd import-diff` does
    /// ("unrecognized tag byte N in stream; skipping").
    SkipByte,
}

/// A set of stream formats the decoder accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FormatSet(u8);

impl FormatSet {
    /// Diff v1, diff v2 and image v2.
    pub const ALL: FormatSet = FormatSet(0b111);
    /// Diff v1 and diff v2.
    pub const DIFFS: FormatSet = FormatSet(0b011);
    /// Only diff v1 (what rbd import-diff and merge-diff read).
    pub const V1: FormatSet = FormatSet(0b001);
    /// Only image v2 (what `rbd import --export-format 2` reads).
    pub const IMAGE: FormatSet = FormatSet(0b100);

    fn bit(f: Format) -> u8 {
        match f {
            Format::DiffV1 => 1,
            Format::DiffV2 => 2,
            Format::ImageV2 => 4,
        }
    }

    /// Whether `f` is in the set.
    pub fn contains(self, f: Format) -> bool {
        self.0 & Self::bit(f) != 0
    }

    /// The one format in the set, if there is exactly one.
    pub fn single(self) -> Option<Format> {
        match self.0 {
            1 => Some(Format::DiffV1),
            2 => Some(Format::DiffV2),
            4 => Some(Format::ImageV2),
            _ => None,
        }
    }
}

/// Decoder limits and validation policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Which banners are accepted.
    pub formats: FormatSet,
    /// Longest snapshot name accepted (rbd: 4096).
    pub max_name_len: u32,
    /// Longest image-meta key or value accepted.
    pub max_meta_len: u32,
    /// Unknown tags in diff v1.
    pub unknown_v1: UnknownV1,
    /// Unknown tags in v2 streams (skipped by their length unless `Error`).
    pub unknown_v2: Check,
    /// `w`/`z` records of length 0.
    pub zero_length: Check,
    /// Records that start before the previous one ended.
    pub order: Check,
    /// Records that reach past the `s` size.
    pub beyond_size: Check,
    /// `f`/`t`/`p`/`s` after data records.
    pub metadata_after_data: Check,
    /// v2 records whose declared length disagrees with their layout.
    pub length_mismatch: Check,
    /// Bytes after the end of the stream.
    pub trailing: Check,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// The default policy: structural problems are errors, questionable but
    /// readable content (unsorted, zero-length, beyond the size, trailing
    /// bytes) is reported as warnings.
    pub const fn new() -> Self {
        Config {
            formats: FormatSet::ALL,
            max_name_len: 4096,
            max_meta_len: 1 << 20,
            unknown_v1: UnknownV1::Error,
            unknown_v2: Check::Warn,
            zero_length: Check::Warn,
            order: Check::Warn,
            beyond_size: Check::Warn,
            metadata_after_data: Check::Error,
            length_mismatch: Check::Warn,
            trailing: Check::Warn,
        }
    }

    /// Accept what rbd 16.2.15's readers accept (skipping unknown v1 tags one
    /// byte at a time), warning about everything questionable.
    pub const fn rbd_compatible() -> Self {
        Config {
            unknown_v1: UnknownV1::SkipByte,
            metadata_after_data: Check::Warn,
            ..Config::new()
        }
    }

    /// Every check is an error: for streams that must be clean.
    pub const fn strict() -> Self {
        Config {
            formats: FormatSet::ALL,
            max_name_len: 4096,
            max_meta_len: 1 << 20,
            unknown_v1: UnknownV1::Error,
            unknown_v2: Check::Error,
            zero_length: Check::Error,
            order: Check::Error,
            beyond_size: Check::Error,
            metadata_after_data: Check::Error,
            length_mismatch: Check::Error,
            trailing: Check::Error,
        }
    }

    /// The same policy, accepting only `formats`.
    pub const fn with_formats(mut self, formats: FormatSet) -> Self {
        self.formats = formats;
        self
    }

    /// The largest number of bytes [`Step::NeedMore`] can ask for: the size
    /// a driver's buffer must be able to reach.
    pub fn max_item_len(&self) -> usize {
        let name = 13 + self.max_name_len as usize;
        let meta = 17 + 2 * self.max_meta_len as usize;
        name.max(meta).max(32)
    }
}

/// What [`Decoder::decode`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The stream banner.
    Banner(Format),
    /// `O`: image order (image v2 header).
    Order(u64),
    /// `T`: image feature bits.
    Features(u64),
    /// `U`: stripe unit.
    StripeUnit(u64),
    /// `C`: stripe count.
    StripeCount(u64),
    /// `M`: one image-meta pair.
    Meta {
        /// Key bytes.
        key: &'a [u8],
        /// Value bytes (may hold any byte).
        value: &'a [u8],
    },
    /// `E`: end of the image header.
    ImageHeaderEnd,
    /// The diffs section of an image v2 stream and its declared diff count.
    DiffCount(u64),
    /// The banner of embedded diff number `index` (0-based).
    DiffBegin {
        /// Index of the diff in the image stream.
        index: u64,
    },
    /// `f`: from-snapshot name.
    FromSnap(&'a [u8]),
    /// `t`: to-snapshot name.
    ToSnap(&'a [u8]),
    /// `p`: the protection byte as read (rbd: nonzero = protected).
    Protection(u8),
    /// `s`: image size at the end point.
    Size(u64),
    /// `w` record header; its `len` bytes follow as [`Event::Data`].
    Write {
        /// Image offset.
        offset: u64,
        /// Payload length.
        len: u64,
    },
    /// A piece of the current `w` payload.
    Data {
        /// Image offset of `bytes[0]`.
        offset: u64,
        /// Payload bytes, borrowed from the input.
        bytes: &'a [u8],
    },
    /// `z` record: `len` bytes at `offset` read as zeros.
    Zero {
        /// Image offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// A record with a tag this decoder does not know, being skipped: in v2 by
    /// its length (`len`), in v1 (rbd-compatible mode) one byte only.
    Unknown {
        /// The tag byte.
        tag: u8,
        /// Declared payload length (v2); `None` in v1.
        len: Option<u64>,
    },
    /// A piece of an unknown record's payload.
    UnknownData(&'a [u8]),
    /// A check configured as [`Check::Warn`] failed for the item that follows.
    Warning(ErrorKind),
    /// `e`: end of a diff.
    DiffEnd,
    /// Bytes after the end of the stream.
    Trailing(&'a [u8]),
}

/// One step of decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// At least this many bytes (counted from the start of the input given)
    /// are needed to make progress; nothing was consumed.
    NeedMore(usize),
    /// `consumed` bytes of the input were used; `offset` is the stream offset
    /// of the first of them.
    Event {
        /// Stream offset of the item.
        offset: u64,
        /// Bytes of the input consumed (may be 0 for warnings).
        consumed: usize,
        /// What was found.
        event: Event<'a>,
    },
    /// The stream is complete and no bytes follow.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Banner,
    ImageTag,
    ImageSkip { remaining: u64 },
    DiffsHeader,
    DiffBanner,
    DiffTag,
    Data { remaining: u64, offset: u64 },
    Skip { remaining: u64 },
    Done,
}

/// Per-diff validation state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DiffState {
    size: Option<u64>,
    prev_end: Option<u64>,
    seen_data: bool,
}

/// A decoder state saved at a record boundary, to resume a stream later
/// from [`position`](Checkpoint::position) (for resumable imports).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Stream offset to resume reading at.
    pub position: u64,
    format: Format,
    diff_format: Format,
    embedded: bool,
    diff_index: u64,
    diff_total: u64,
    diff: DiffState,
}

fn format_code(f: Format) -> u8 {
    match f {
        Format::DiffV1 => 1,
        Format::DiffV2 => 2,
        Format::ImageV2 => 3,
    }
}

fn format_of(c: u8) -> Option<Format> {
    match c {
        1 => Some(Format::DiffV1),
        2 => Some(Format::DiffV2),
        3 => Some(Format::ImageV2),
        _ => None,
    }
}

impl Checkpoint {
    /// Length of [`to_bytes`](Self::to_bytes).
    pub const LEN: usize = 48;

    /// A fixed-size encoding (for a resume journal).
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0] = 1; // version
        b[1] = format_code(self.format);
        b[2] = format_code(self.diff_format);
        b[3] = u8::from(self.embedded)
            | u8::from(self.diff.size.is_some()) << 1
            | u8::from(self.diff.prev_end.is_some()) << 2
            | u8::from(self.diff.seen_data) << 3;
        b[8..16].copy_from_slice(&self.position.to_le_bytes());
        b[16..24].copy_from_slice(&self.diff_index.to_le_bytes());
        b[24..32].copy_from_slice(&self.diff_total.to_le_bytes());
        b[32..40].copy_from_slice(&self.diff.size.unwrap_or(0).to_le_bytes());
        b[40..48].copy_from_slice(&self.diff.prev_end.unwrap_or(0).to_le_bytes());
        b
    }

    /// Decode [`to_bytes`](Self::to_bytes) output.
    pub fn from_bytes(b: &[u8]) -> Option<Checkpoint> {
        if b.len() != Self::LEN || b[0] != 1 {
            return None;
        }
        let flags = b[3];
        Some(Checkpoint {
            position: le64(&b[8..16]),
            format: format_of(b[1])?,
            diff_format: format_of(b[2])?,
            embedded: flags & 1 != 0,
            diff_index: le64(&b[16..24]),
            diff_total: le64(&b[24..32]),
            diff: DiffState {
                size: (flags & 2 != 0).then(|| le64(&b[32..40])),
                prev_end: (flags & 4 != 0).then(|| le64(&b[40..48])),
                seen_data: flags & 8 != 0,
            },
        })
    }
}

/// The push decoder. See the module docs.
#[derive(Clone, Debug)]
pub struct Decoder {
    config: Config,
    state: State,
    pos: u64,
    format: Option<Format>,
    diff_format: Format,
    embedded: bool,
    diff_index: u64,
    diff_total: u64,
    diff: DiffState,
    /// Warnings already reported for the item at `pos`.
    warned: u8,
    trailing_warned: bool,
    failed: Option<DecodeError>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(Config::new())
    }
}

/// Outcome of one check for the item being decoded.
enum Verdict {
    Pass,
    Warn(ErrorKind),
}

/// In a state method: returns `NeedMore` (or, at `eof`, the error naming
/// what is cut short) unless `input` holds at least `n` bytes.
macro_rules! need {
    ($dec:ident, $input:ident, $eof:ident, $n:expr, $exp:expr) => {{
        let n: usize = $n;
        if $input.len() < n {
            return if $eof {
                Err($dec.eof($exp, (n - $input.len()) as u64))
            } else {
                Ok(Step::NeedMore(n))
            };
        }
    }};
}

/// In a state method: applies a check, returning its warning (before the
/// item, nothing consumed) or its error.
macro_rules! verdict {
    ($dec:ident, $check:expr, $failed:expr, $kind:expr, $nth:expr) => {
        if let Verdict::Warn(k) = $dec.check($check, $failed, $kind, $nth)? {
            return Ok($dec.ev(0, Event::Warning(k)));
        }
    };
}

/// The head of a known diff record, read by [`Decoder::diff_tag`].
#[derive(Clone, Copy)]
struct RecordHead {
    tag: u8,
    /// Bytes before the record's fields: the tag, and in v2 its length.
    head: usize,
    /// The declared length (v2; 0 in v1).
    len: u64,
    v2: bool,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new(config: Config) -> Self {
        Decoder {
            config,
            state: State::Banner,
            pos: 0,
            format: None,
            diff_format: Format::DiffV1,
            embedded: false,
            diff_index: 0,
            diff_total: 0,
            diff: DiffState::default(),
            warned: 0,
            trailing_warned: false,
            failed: None,
        }
    }

    /// The state at a record boundary (between records of a diff, not inside
    /// a payload), to [`resume`](Self::resume) from later.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        if self.state != State::DiffTag || self.failed.is_some() || self.warned != 0 {
            return None;
        }
        Some(Checkpoint {
            position: self.pos,
            format: self.format?,
            diff_format: self.diff_format,
            embedded: self.embedded,
            diff_index: self.diff_index,
            diff_total: self.diff_total,
            diff: self.diff,
        })
    }

    /// A decoder that continues a stream from `cp`: feed it the stream's
    /// bytes from `cp.position` on.
    pub fn resume(config: Config, cp: &Checkpoint) -> Self {
        let mut d = Decoder::new(config);
        d.state = State::DiffTag;
        d.pos = cp.position;
        d.format = Some(cp.format);
        d.diff_format = cp.diff_format;
        d.embedded = cp.embedded;
        d.diff_index = cp.diff_index;
        d.diff_total = cp.diff_total;
        d.diff = cp.diff;
        d
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stream offset of the next byte to be consumed.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The stream format, once the banner was read.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// True once the end of the stream (the last `e`) was consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// True while inside the payload of a `w` record.
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data { .. })
    }

    /// Inside the payload of a `w` record: the image offset of its next
    /// byte and how many bytes it has left.
    pub fn payload_left(&self) -> Option<(u64, u64)> {
        match self.state {
            State::Data { remaining, offset } => Some((offset, remaining)),
            _ => None,
        }
    }

    /// Accounts for `n` bytes of the current `w` payload that the caller
    /// consumed outside the decoder (copied or skipped straight from the
    /// source, e.g. with a kernel copy): the decoder goes on at the first
    /// byte after them, as if they had come out as [`Event::Data`].
    ///
    /// Accounts at most what the payload has left and returns the count
    /// accounted; 0 when not inside a `w` payload (or after an error).
    pub fn skip_payload(&mut self, n: u64) -> u64 {
        if self.failed.is_some() {
            return 0;
        }
        let State::Data { remaining, offset } = self.state else {
            return 0;
        };
        let take = n.min(remaining);
        if take == 0 {
            return 0;
        }
        let left = remaining - take;
        self.state = if left == 0 {
            State::DiffTag
        } else {
            State::Data {
                remaining: left,
                // offset + remaining was checked against overflow at the header
                offset: offset.saturating_add(take),
            }
        };
        self.pos = self.pos.saturating_add(take);
        self.warned = 0;
        take
    }

    /// Decode the next item from `input`, which must start at the first byte
    /// not consumed yet. `eof` says no bytes follow `input`.
    ///
    /// After an error every later call returns the same error.
    pub fn decode<'a>(&mut self, input: &'a [u8], eof: bool) -> Result<Step<'a>, DecodeError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.step(input, eof);
        match &r {
            Ok(Step::Event { consumed, .. }) if *consumed > 0 => {
                self.pos += *consumed as u64;
                self.warned = 0;
            }
            Err(e) => self.failed = Some(*e),
            _ => {}
        }
        r
    }

    fn err(&self, kind: ErrorKind) -> DecodeError {
        DecodeError::new(self.pos, kind)
    }

    fn eof(&self, expected: Expected, missing: u64) -> DecodeError {
        self.err(ErrorKind::UnexpectedEof { expected, missing })
    }

    fn ev<'a>(&self, consumed: usize, event: Event<'a>) -> Step<'a> {
        Step::Event {
            offset: self.pos,
            consumed,
            event,
        }
    }

    /// Applies `check` to a failed condition. Warnings already reported for
    /// this item (when it is decoded again after `NeedMore`) are not repeated.
    fn check(
        &mut self,
        check: Check,
        failed: bool,
        kind: ErrorKind,
        nth: &mut u8,
    ) -> Result<Verdict, DecodeError> {
        if !failed {
            return Ok(Verdict::Pass);
        }
        match check {
            Check::Ignore => Ok(Verdict::Pass),
            Check::Error => Err(self.err(kind)),
            Check::Warn => {
                let me = *nth;
                *nth += 1;
                if me < self.warned {
                    Ok(Verdict::Pass)
                } else {
                    self.warned += 1;
                    Ok(Verdict::Warn(kind))
                }
            }
        }
    }

    fn step<'a>(&mut self, input: &'a [u8], eof: bool) -> Result<Step<'a>, DecodeError> {
        match self.state {
            State::Banner => self.banner(input, eof),
            State::ImageTag => self.image_tag(input, eof),
            State::ImageSkip { remaining } | State::Skip { remaining } => {
                self.skip(input, eof, remaining)
            }
            State::DiffsHeader => self.diffs_header(input, eof),
            State::DiffBanner => self.diff_banner(input, eof),
            State::DiffTag => self.diff_tag(input, eof),
            State::Data { remaining, offset } => self.data(input, eof, remaining, offset),
            State::Done => self.done(input),
        }
    }

    /// An image v2 header record, or its end.
    fn image_tag<'a>(&mut self, input: &'a [u8], eof: bool) -> Result<Step<'a>, DecodeError> {
        need!(self, input, eof, 1, Expected::Tag);
        let t = input[0];
        if t == tag::IMAGE_END {
            self.state = State::DiffsHeader;
            return Ok(self.ev(1, Event::ImageHeaderEnd));
        }
        need!(self, input, eof, 9, Expected::TagLength);
        let len = le64(&input[1..9]);
        let mut nth = 0u8;
        match t {
            tag::ORDER | tag::FEATURES | tag::STRIPE_UNIT | tag::STRIPE_COUNT => {
                need!(self, input, eof, 17, Expected::ImageOption);
                let v = le64(&input[9..17]);
                verdict!(
                    self,
                    self.config.length_mismatch,
                    len != 8,
                    ErrorKind::LengthMismatch {
                        tag: t,
                        declared: len,
                        actual: 8
                    },
                    &mut nth
                );
                let ev = match t {
                    tag::ORDER => Event::Order(v),
                    tag::FEATURES => Event::Features(v),
                    tag::STRIPE_UNIT => Event::StripeUnit(v),
                    _ => Event::StripeCount(v),
                };
                Ok(self.ev(17, ev))
            }
            tag::META => {
                need!(self, input, eof, 13, Expected::ImageMeta);
                let klen = le32(&input[9..13]);
                self.meta_len_ok(klen)?;
                let k_end = 13 + klen as usize;
                need!(self, input, eof, k_end + 4, Expected::ImageMeta);
                let vlen = le32(&input[k_end..k_end + 4]);
                self.meta_len_ok(vlen)?;
                let end = k_end + 4 + vlen as usize;
                need!(self, input, eof, end, Expected::ImageMeta);
                let actual = 8 + u64::from(klen) + u64::from(vlen);
                verdict!(
                    self,
                    self.config.length_mismatch,
                    len != actual,
                    ErrorKind::LengthMismatch {
                        tag: t,
                        declared: len,
                        actual
                    },
                    &mut nth
                );
                Ok(self.ev(
                    end,
                    Event::Meta {
                        key: &input[13..k_end],
                        value: &input[k_end + 4..end],
                    },
                ))
            }
            _ => {
                if self.config.unknown_v2 == Check::Error {
                    return Err(self.err(ErrorKind::UnknownTag {
                        tag: t,
                        zone: Zone::ImageHeader,
                    }));
                }
                self.state = State::ImageSkip { remaining: len };
                Ok(self.ev(
                    9,
                    Event::Unknown {
                        tag: t,
                        len: Some(len),
                    },
                ))
            }
        }
    }

    /// The payload of an unknown v2 record (in the image header or a diff).
    fn skip<'a>(
        &mut self,
        input: &'a [u8],
        eof: bool,
        remaining: u64,
    ) -> Result<Step<'a>, DecodeError> {
        if remaining == 0 {
            self.state = if matches!(self.state, State::ImageSkip { .. }) {
                State::ImageTag
            } else {
                State::DiffTag
            };
            return self.step(input, eof);
        }
        if input.is_empty() {
            // Like write data: name all the bytes the payload still needs.
            return if eof {
                Err(self.eof(Expected::UnknownPayload, remaining))
            } else {
                Ok(Step::NeedMore(1))
            };
        }
        let take = take_len(remaining, input.len());
        let left = remaining - take as u64;
        self.state = match (self.state, left) {
            (State::ImageSkip { .. }, 0) => State::ImageTag,
            (State::ImageSkip { .. }, r) => State::ImageSkip { remaining: r },
            (_, 0) => State::DiffTag,
            (_, r) => State::Skip { remaining: r },
        };
        Ok(self.ev(take, Event::UnknownData(&input[..take])))
    }

    /// The banner and count of the diffs that follow an image v2 header.
    fn diffs_header<'a>(&mut self, input: &'a [u8], eof: bool) -> Result<Step<'a>, DecodeError> {
        let banner = format::IMAGE_DIFFS_BANNER_V2;
        let have = input.len().min(banner.len());
        if input[..have] != banner[..have] {
            return Err(self.err(ErrorKind::BadSectionBanner {
                expected: Expected::DiffsBanner,
            }));
        }
        need!(self, input, eof, banner.len(), Expected::DiffsBanner);
        need!(self, input, eof, banner.len() + 8, Expected::DiffCount);
        let count = le64(&input[19..27]);
        self.diff_total = count;
        self.diff_index = 0;
        self.state = if count == 0 {
            State::Done
        } else {
            State::DiffBanner
        };
        Ok(self.ev(27, Event::DiffCount(count)))
    }

    /// The banner of a diff embedded in an image v2 stream.
    fn diff_banner<'a>(&mut self, input: &'a [u8], eof: bool) -> Result<Step<'a>, DecodeError> {
        let banner = format::DIFF_BANNER_V2;
        let have = input.len().min(banner.len());
        if input[..have] != banner[..have] {
            return Err(self.err(ErrorKind::BadSectionBanner {
                expected: Expected::DiffBanner,
            }));
        }
        need!(self, input, eof, banner.len(), Expected::DiffBanner);
        self.begin_diff(Format::DiffV2, true);
        Ok(self.ev(
            12,
            Event::DiffBegin {
                index: self.diff_index,
            },
        ))
    }

    /// A diff record: `e`, an unknown tag, or a known record (see
    /// [`Self::diff_record`]).
    fn diff_tag<'a>(&mut self, input: &'a [u8], eof: bool) -> Result<Step<'a>, DecodeError> {
        need!(self, input, eof, 1, Expected::Tag);
        let t = input[0];
        if t == tag::END {
            self.state = if self.embedded {
                self.diff_index += 1;
                if self.diff_index >= self.diff_total {
                    State::Done
                } else {
                    State::DiffBanner
                }
            } else {
                State::Done
            };
            return Ok(self.ev(1, Event::DiffEnd));
        }
        let v2 = self.diff_format == Format::DiffV2;
        let known = matches!(
            t,
            tag::FROM_SNAP | tag::TO_SNAP | tag::PROTECTION | tag::SIZE | tag::WRITE | tag::ZERO
        );
        if !known && !v2 {
            return match self.config.unknown_v1 {
                UnknownV1::Error => Err(self.err(ErrorKind::UnknownTag {
                    tag: t,
                    zone: Zone::DiffV1,
                })),
                UnknownV1::SkipByte => Ok(self.ev(1, Event::Unknown { tag: t, len: None })),
            };
        }
        if v2 {
            need!(self, input, eof, 9, Expected::TagLength);
        }
        let len = if v2 { le64(&input[1..9]) } else { 0 };
        if !known {
            if self.config.unknown_v2 == Check::Error {
                return Err(self.err(ErrorKind::UnknownTag {
                    tag: t,
                    zone: Zone::DiffV2,
                }));
            }
            self.state = State::Skip { remaining: len };
            return Ok(self.ev(
                9,
                Event::Unknown {
                    tag: t,
                    len: Some(len),
                },
            ));
        }
        let rec = RecordHead {
            tag: t,
            head: if v2 { 9 } else { 1 },
            len,
            v2,
        };
        match t {
            tag::FROM_SNAP | tag::TO_SNAP => self.snap_name(input, eof, rec),
            tag::PROTECTION => self.protection(input, eof, rec),
            tag::SIZE => self.size(input, eof, rec),
            _ => self.io(input, eof, rec),
        }
    }

    /// The checks of a header record (`f`, `t`, `p`, `s`), in order: after
    /// data records, then its declared length (`mismatch`: it is not the
    /// `actual` one).
    fn header_checks(
        &mut self,
        rec: RecordHead,
        mismatch: bool,
        actual: u64,
    ) -> Result<Verdict, DecodeError> {
        let mut nth = 0u8;
        let after = self.check(
            self.config.metadata_after_data,
            self.diff.seen_data,
            ErrorKind::MetadataAfterData { tag: rec.tag },
            &mut nth,
        )?;
        if let Verdict::Warn(k) = after {
            return Ok(Verdict::Warn(k));
        }
        self.check(
            self.config.length_mismatch,
            mismatch,
            ErrorKind::LengthMismatch {
                tag: rec.tag,
                declared: rec.len,
                actual,
            },
            &mut nth,
        )
    }

    /// An `f` or `t` record: a snapshot name.
    fn snap_name<'a>(
        &mut self,
        input: &'a [u8],
        eof: bool,
        rec: RecordHead,
    ) -> Result<Step<'a>, DecodeError> {
        let RecordHead {
            tag: t,
            head: h,
            len,
            v2,
        } = rec;
        let exp = if t == tag::FROM_SNAP {
            Expected::FromSnapName
        } else {
            Expected::ToSnapName
        };
        need!(self, input, eof, h + 4, exp);
        let n = le32(&input[h..h + 4]);
        if n > self.config.max_name_len {
            return Err(self.err(ErrorKind::NameTooLong {
                len: n,
                max: self.config.max_name_len,
            }));
        }
        let end = h + 4 + n as usize;
        need!(self, input, eof, end, exp);
        let actual = 4 + u64::from(n);
        if let Verdict::Warn(k) = self.header_checks(rec, v2 && len != actual, actual)? {
            return Ok(self.ev(0, Event::Warning(k)));
        }
        let name = &input[h + 4..end];
        let ev = if t == tag::FROM_SNAP {
            Event::FromSnap(name)
        } else {
            Event::ToSnap(name)
        };
        Ok(self.ev(end, ev))
    }

    /// A `p` record: the protection flag.
    fn protection<'a>(
        &mut self,
        input: &'a [u8],
        eof: bool,
        rec: RecordHead,
    ) -> Result<Step<'a>, DecodeError> {
        let RecordHead {
            head: h, len, v2, ..
        } = rec;
        need!(self, input, eof, h + 1, Expected::Protection);
        // rbd 16.2.15 declares 8 and writes 1 byte; rbd reads 1.
        if let Verdict::Warn(k) = self.header_checks(
            rec,
            v2 && len != 1 && len != format::PROTECTION_DECLARED_LEN,
            1,
        )? {
            return Ok(self.ev(0, Event::Warning(k)));
        }
        Ok(self.ev(h + 1, Event::Protection(input[h])))
    }

    /// An `s` record: the image size.
    fn size<'a>(
        &mut self,
        input: &'a [u8],
        eof: bool,
        rec: RecordHead,
    ) -> Result<Step<'a>, DecodeError> {
        let RecordHead {
            head: h, len, v2, ..
        } = rec;
        need!(self, input, eof, h + 8, Expected::ImageSize);
        if let Verdict::Warn(k) = self.header_checks(rec, v2 && len != 8, 8)? {
            return Ok(self.ev(0, Event::Warning(k)));
        }
        let size = le64(&input[h..h + 8]);
        self.diff.size = Some(size);
        Ok(self.ev(h + 8, Event::Size(size)))
    }

    /// A `w` or `z` record's header (a `w`'s payload follows in
    /// [`State::Data`]).
    fn io<'a>(
        &mut self,
        input: &'a [u8],
        eof: bool,
        rec: RecordHead,
    ) -> Result<Step<'a>, DecodeError> {
        let RecordHead {
            tag: t,
            head: h,
            len,
            v2,
        } = rec;
        need!(self, input, eof, h + 16, Expected::IoLength);
        let off = le64(&input[h..h + 8]);
        let n = le64(&input[h + 8..h + 16]);
        let Some(end) = off.checked_add(n) else {
            return Err(self.err(ErrorKind::OffsetOverflow {
                offset: off,
                len: n,
            }));
        };
        let mut nth = 0u8;
        verdict!(
            self,
            self.config.zero_length,
            n == 0,
            ErrorKind::ZeroLength { tag: t },
            &mut nth
        );
        if let Some(prev_end) = self.diff.prev_end {
            verdict!(
                self,
                self.config.order,
                off < prev_end,
                ErrorKind::OutOfOrder {
                    prev_end,
                    offset: off
                },
                &mut nth
            );
        }
        if let Some(size) = self.diff.size {
            verdict!(
                self,
                self.config.beyond_size,
                end > size,
                ErrorKind::BeyondSize { end, size },
                &mut nth
            );
        }
        let actual = if t == tag::WRITE {
            n.checked_add(16)
        } else {
            Some(16)
        };
        verdict!(
            self,
            self.config.length_mismatch,
            v2 && Some(len) != actual,
            ErrorKind::LengthMismatch {
                tag: t,
                declared: len,
                actual: actual.unwrap_or(u64::MAX)
            },
            &mut nth
        );
        self.diff.prev_end = Some(end);
        self.diff.seen_data = true;
        if t == tag::WRITE {
            if n > 0 {
                self.state = State::Data {
                    remaining: n,
                    offset: off,
                };
            }
            Ok(self.ev(
                h + 16,
                Event::Write {
                    offset: off,
                    len: n,
                },
            ))
        } else {
            Ok(self.ev(
                h + 16,
                Event::Zero {
                    offset: off,
                    len: n,
                },
            ))
        }
    }

    /// Payload bytes of a `w` record, as far as `input` reaches.
    fn data<'a>(
        &mut self,
        input: &'a [u8],
        eof: bool,
        remaining: u64,
        offset: u64,
    ) -> Result<Step<'a>, DecodeError> {
        if input.is_empty() {
            return if eof {
                Err(self.eof(Expected::WriteData, remaining))
            } else {
                Ok(Step::NeedMore(1))
            };
        }
        let take = take_len(remaining, input.len());
        let left = remaining - take as u64;
        self.state = if left == 0 {
            State::DiffTag
        } else {
            State::Data {
                remaining: left,
                offset: offset + take as u64,
            }
        };
        Ok(self.ev(
            take,
            Event::Data {
                offset,
                bytes: &input[..take],
            },
        ))
    }

    /// After the end of the stream: trailing bytes, per [`Config::trailing`].
    fn done<'a>(&mut self, input: &'a [u8]) -> Result<Step<'a>, DecodeError> {
        if input.is_empty() {
            return Ok(Step::Done);
        }
        match self.config.trailing {
            Check::Error => Err(self.err(ErrorKind::TrailingBytes)),
            Check::Warn if !self.trailing_warned => {
                self.trailing_warned = true;
                Ok(self.ev(0, Event::Warning(ErrorKind::TrailingBytes)))
            }
            _ => Ok(self.ev(input.len(), Event::Trailing(input))),
        }
    }

    fn meta_len_ok(&self, n: u32) -> Result<(), DecodeError> {
        if n > self.config.max_meta_len {
            Err(self.err(ErrorKind::MetaTooLong {
                len: n,
                max: self.config.max_meta_len,
            }))
        } else {
            Ok(())
        }
    }

    fn begin_diff(&mut self, fmt: Format, embedded: bool) {
        self.diff_format = fmt;
        self.embedded = embedded;
        self.diff = DiffState::default();
        self.state = State::DiffTag;
    }

    fn banner<'a>(&mut self, input: &'a [u8], eof: bool) -> Result<Step<'a>, DecodeError> {
        let formats = self.config.formats;
        let bad = |input: &[u8]| {
            let mut found = [0u8; 13];
            let n = input.len().min(12);
            found[..n].copy_from_slice(&input[..n]);
            ErrorKind::BadBanner {
                expected: formats.single(),
                found,
                found_len: u8::try_from(n).unwrap_or(12),
            }
        };
        if input.len() < 12 {
            if !eof {
                return Ok(Step::NeedMore(12));
            }
            let prefix_ok = [Format::DiffV1, Format::DiffV2, Format::ImageV2]
                .into_iter()
                .any(|f| formats.contains(f) && f.banner().starts_with(input));
            return Err(if prefix_ok {
                self.eof(Expected::Banner, (12 - input.len()) as u64)
            } else {
                self.err(bad(input))
            });
        }
        let b = &input[..12];
        for f in [Format::DiffV1, Format::DiffV2] {
            if formats.contains(f) && b == f.banner() {
                self.format = Some(f);
                self.begin_diff(f, false);
                return Ok(self.ev(12, Event::Banner(f)));
            }
        }
        if formats.contains(Format::ImageV2) && b == &format::IMAGE_BANNER_V2[..12] {
            if input.len() < 13 {
                return if eof {
                    Err(self.eof(Expected::Banner, 1))
                } else {
                    Ok(Step::NeedMore(13))
                };
            }
            if input[12] == b'\n' {
                self.format = Some(Format::ImageV2);
                self.state = State::ImageTag;
                return Ok(self.ev(13, Event::Banner(Format::ImageV2)));
            }
        }
        Err(self.err(bad(input)))
    }
}

/// `min(remaining, available)` as a usize, without truncating casts.
#[inline]
fn take_len(remaining: u64, available: usize) -> usize {
    match usize::try_from(remaining) {
        Ok(r) => r.min(available),
        Err(_) => available,
    }
}
