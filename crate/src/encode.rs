//! The encoder: writes streams byte-identical to rbd's writers.
//!
//! Misuse (data longer or shorter than declared, records after the end,
//! headers after data, out-of-order records) is reported as
//! [`EncodeError::Misuse`] before anything wrong reaches the sink.

use crate::format::{self, Format, tag};
use core::fmt;

/// Where encoded bytes go.
pub trait Sink {
    /// The sink's error.
    type Error;
    /// Write all of `bytes`.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

impl<S: Sink + ?Sized> Sink for &mut S {
    type Error = S::Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        (**self).write_all(bytes)
    }
}

#[cfg(feature = "alloc")]
impl Sink for alloc::vec::Vec<u8> {
    type Error = core::convert::Infallible;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A [`Sink`] over any [`std::io::Write`].
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct IoSink<W>(pub W);

#[cfg(feature = "std")]
impl<W: std::io::Write> Sink for IoSink<W> {
    type Error = std::io::Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        self.0.write_all(bytes)
    }
}

/// A wrong call sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misuse {
    /// A record call outside a diff (image stream before `begin_diff`).
    NotInDiff,
    /// A call after the stream (or diff) ended.
    AfterEnd,
    /// A header record after data records.
    HeaderAfterData,
    /// `data` bytes did not match the length given to `begin_write`.
    DataLength {
        /// Bytes still expected.
        expected: u64,
        /// Bytes given.
        got: u64,
    },
    /// A record that starts before the previous one ended.
    OutOfOrder {
        /// End of the previous record.
        prev_end: u64,
        /// Start of this one.
        offset: u64,
    },
    /// A record of length 0.
    ZeroLength,
    /// `offset + length` overflows.
    Overflow,
    /// A record that exists only in v2 streams (`p`, unknown tags), or only in v1.
    WrongFormat,
    /// More or fewer diffs than declared in the image header.
    DiffCount {
        /// Declared count.
        declared: u64,
        /// Diffs written.
        written: u64,
    },
    /// An image-meta key given twice.
    DuplicateMeta,
    /// A string longer than 4 GiB.
    TooLong,
    /// An extension record with a tag the format already uses (it would be
    /// read as that record).
    ReservedTag(u8),
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Misuse::NotInDiff => f.write_str("record written outside a diff"),
            Misuse::AfterEnd => f.write_str("record written after the end"),
            Misuse::HeaderAfterData => f.write_str("header record after data records"),
            Misuse::DataLength { expected, got } => {
                write!(
                    f,
                    "write data length mismatch: {expected} bytes expected, {got} given"
                )
            }
            Misuse::OutOfOrder { prev_end, offset } => {
                write!(
                    f,
                    "record at {offset} starts before the previous record's end {prev_end}"
                )
            }
            Misuse::ZeroLength => f.write_str("zero-length record"),
            Misuse::Overflow => f.write_str("record offset + length overflows"),
            Misuse::WrongFormat => f.write_str("record not valid in this stream format"),
            Misuse::DiffCount { declared, written } => {
                write!(
                    f,
                    "image stream declares {declared} diffs, {written} written"
                )
            }
            Misuse::DuplicateMeta => f.write_str("image-meta key given twice"),
            Misuse::TooLong => f.write_str("string longer than 4 GiB"),
            Misuse::ReservedTag(t) => write!(
                f,
                "extension tag {} is a known record tag",
                crate::format::TagDisplay(t)
            ),
        }
    }
}

/// An encoder error.
#[derive(Debug, PartialEq, Eq)]
pub enum EncodeError<E> {
    /// The sink failed; the stream is incomplete.
    Sink(E),
    /// The calls were out of sequence; nothing of the bad call was written.
    Misuse(Misuse),
}

impl<E: fmt::Display> fmt::Display for EncodeError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Sink(e) => write!(f, "write failed: {e}"),
            EncodeError::Misuse(m) => write!(f, "encoder misuse: {m}"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Debug + fmt::Display> std::error::Error for EncodeError<E> {}

/// The header of one diff, written in rbd's order `f`, `t`, `p`, `s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffHeader<'a> {
    /// `f` record, if any.
    pub from: Option<&'a [u8]>,
    /// `t` record, if any.
    pub to: Option<&'a [u8]>,
    /// `p` record (v2 only; rbd writes it iff there is a `t`).
    pub protected: Option<bool>,
    /// `s` record (rbd always writes one).
    pub size: Option<u64>,
}

/// The header of an image v2 stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageHeader<'a> {
    /// Object order (`O`).
    pub order: u64,
    /// Feature bits (`T`).
    pub features: u64,
    /// Stripe unit (`U`).
    pub stripe_unit: u64,
    /// Stripe count (`C`).
    pub stripe_count: u64,
    /// Image-meta pairs in any order; written sorted by key like rbd.
    pub meta: &'a [(&'a [u8], &'a [u8])],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EState {
    Header,
    Body,
    Between,
    Finished,
}

type Res<E> = Result<(), EncodeError<E>>;

/// The encoder. See the module docs.
#[derive(Debug)]
pub struct Encoder<S> {
    sink: S,
    image: bool,
    diff_format: Format,
    state: EState,
    pending: u64,
    prev_end: Option<u64>,
    declared: u64,
    written_diffs: u64,
    strict: bool,
    written: u64,
}

impl<S: Sink> Encoder<S> {
    fn raw(sink: S, image: bool, diff_format: Format) -> Self {
        Encoder {
            sink,
            image,
            diff_format,
            state: EState::Header,
            pending: 0,
            prev_end: None,
            declared: 0,
            written_diffs: 0,
            strict: true,
            written: 0,
        }
    }

    /// A standalone diff stream (`Format::DiffV1` or `Format::DiffV2`); writes the banner.
    pub fn diff(sink: S, format: Format) -> Result<Self, EncodeError<S::Error>> {
        if format == Format::ImageV2 {
            return Err(EncodeError::Misuse(Misuse::WrongFormat));
        }
        let mut e = Encoder::raw(sink, false, format);
        e.put(format.banner())?;
        Ok(e)
    }

    /// An image v2 stream holding `diff_count` diffs: writes the banner, the
    /// header records (`O T U C`, `M` sorted by key, `E`), the diffs banner and
    /// the count. Then call [`begin_diff`](Self::begin_diff) for each diff.
    pub fn image(
        sink: S,
        header: &ImageHeader<'_>,
        diff_count: u64,
    ) -> Result<Self, EncodeError<S::Error>> {
        let mut e = Encoder::raw(sink, true, Format::DiffV2);
        e.put(format::IMAGE_BANNER_V2)?;
        for (t, v) in [
            (tag::ORDER, header.order),
            (tag::FEATURES, header.features),
            (tag::STRIPE_UNIT, header.stripe_unit),
            (tag::STRIPE_COUNT, header.stripe_count),
        ] {
            e.put(&[t])?;
            e.put(&8u64.to_le_bytes())?;
            e.put(&v.to_le_bytes())?;
        }
        // Sorted by key without allocating: repeatedly take the next larger key.
        let mut last: Option<&[u8]> = None;
        for _ in 0..header.meta.len() {
            let mut next: Option<(&[u8], &[u8])> = None;
            for &(k, v) in header.meta {
                if last.is_some_and(|l| k <= l) {
                    continue;
                }
                match next {
                    Some((nk, _)) if nk == k => {
                        return Err(EncodeError::Misuse(Misuse::DuplicateMeta));
                    }
                    Some((nk, _)) if nk < k => {}
                    _ => next = Some((k, v)),
                }
            }
            let Some((k, v)) = next else {
                return Err(EncodeError::Misuse(Misuse::DuplicateMeta));
            };
            let klen = u32::try_from(k.len()).map_err(|_| EncodeError::Misuse(Misuse::TooLong))?;
            let vlen = u32::try_from(v.len()).map_err(|_| EncodeError::Misuse(Misuse::TooLong))?;
            e.put(&[tag::META])?;
            e.put(&(8 + u64::from(klen) + u64::from(vlen)).to_le_bytes())?;
            e.put(&klen.to_le_bytes())?;
            e.put(k)?;
            e.put(&vlen.to_le_bytes())?;
            e.put(v)?;
            last = Some(k);
        }
        e.put(&[tag::IMAGE_END])?;
        e.put(format::IMAGE_DIFFS_BANNER_V2)?;
        e.put(&diff_count.to_le_bytes())?;
        e.declared = diff_count;
        e.state = if diff_count == 0 {
            EState::Finished
        } else {
            EState::Between
        };
        Ok(e)
    }

    /// Allow what rbd's readers accept but its writers never produce:
    /// unsorted or overlapping records, zero-length records, headers after
    /// data. Used to re-encode hand-made streams faithfully.
    pub fn lenient(mut self) -> Self {
        self.strict = false;
        self
    }

    /// The format of the diffs written (v1, or v2 also inside image streams).
    pub fn diff_format(&self) -> Format {
        self.diff_format
    }

    /// The sink, mutably (for instance to reset a hashing sink at the start
    /// of an embedded diff).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.written
    }

    /// The sink (for instance to check how much was written).
    pub fn sink(&self) -> &S {
        &self.sink
    }

    fn put(&mut self, b: &[u8]) -> Res<S::Error> {
        self.sink.write_all(b).map_err(EncodeError::Sink)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn misuse<T>(m: Misuse) -> Result<T, EncodeError<S::Error>> {
        Err(EncodeError::Misuse(m))
    }

    fn in_diff(&self) -> Res<S::Error> {
        if self.pending > 0 {
            return Self::misuse(Misuse::DataLength {
                expected: self.pending,
                got: 0,
            });
        }
        match self.state {
            EState::Header | EState::Body => Ok(()),
            EState::Between => Self::misuse(Misuse::NotInDiff),
            EState::Finished => Self::misuse(Misuse::AfterEnd),
        }
    }

    fn header_ok(&self) -> Res<S::Error> {
        self.in_diff()?;
        if self.strict && self.state == EState::Body {
            return Self::misuse(Misuse::HeaderAfterData);
        }
        Ok(())
    }

    /// The record tag, plus the v2 length field.
    fn tag(&mut self, t: u8, len: u64) -> Res<S::Error> {
        self.put(&[t])?;
        if self.diff_format == Format::DiffV2 {
            self.put(&len.to_le_bytes())?;
        }
        Ok(())
    }

    /// Start the next embedded diff of an image stream (`rbd diff v2\n`).
    pub fn begin_diff(&mut self) -> Res<S::Error> {
        if !self.image || self.state != EState::Between {
            return Self::misuse(if self.state == EState::Finished {
                Misuse::AfterEnd
            } else {
                Misuse::NotInDiff
            });
        }
        if self.written_diffs >= self.declared {
            return Self::misuse(Misuse::DiffCount {
                declared: self.declared,
                written: self.written_diffs + 1,
            });
        }
        self.put(format::DIFF_BANNER_V2)?;
        self.state = EState::Header;
        self.prev_end = None;
        Ok(())
    }

    fn name(&mut self, t: u8, name: &[u8]) -> Res<S::Error> {
        self.header_ok()?;
        let n = u32::try_from(name.len()).map_err(|_| EncodeError::Misuse(Misuse::TooLong))?;
        self.tag(t, 4 + u64::from(n))?;
        self.put(&n.to_le_bytes())?;
        self.put(name)
    }

    /// `f` record.
    pub fn from_snap(&mut self, name: &[u8]) -> Res<S::Error> {
        self.name(tag::FROM_SNAP, name)
    }

    /// `t` record.
    pub fn to_snap(&mut self, name: &[u8]) -> Res<S::Error> {
        self.name(tag::TO_SNAP, name)
    }

    /// `p` record (v2 only), written as rbd 16.2.15 does: declared length 8, one byte.
    pub fn protection(&mut self, protected: bool) -> Res<S::Error> {
        self.header_ok()?;
        if self.diff_format != Format::DiffV2 {
            return Self::misuse(Misuse::WrongFormat);
        }
        self.tag(tag::PROTECTION, format::PROTECTION_DECLARED_LEN)?;
        self.put(&[u8::from(protected)])
    }

    /// `s` record.
    pub fn size(&mut self, size: u64) -> Res<S::Error> {
        self.header_ok()?;
        self.tag(tag::SIZE, 8)?;
        self.put(&size.to_le_bytes())
    }

    /// The whole header in rbd's order: `f`, `t`, `p` (v2), `s`.
    pub fn header(&mut self, h: &DiffHeader<'_>) -> Res<S::Error> {
        if let Some(f) = h.from {
            self.from_snap(f)?;
        }
        if let Some(t) = h.to {
            self.to_snap(t)?;
        }
        if let Some(p) = h.protected
            && self.diff_format == Format::DiffV2
        {
            self.protection(p)?;
        }
        if let Some(s) = h.size {
            self.size(s)?;
        }
        Ok(())
    }

    fn record_ok(&mut self, offset: u64, len: u64) -> Res<S::Error> {
        self.in_diff()?;
        let end = offset
            .checked_add(len)
            .ok_or(EncodeError::Misuse(Misuse::Overflow))?;
        if self.strict {
            if len == 0 {
                return Self::misuse(Misuse::ZeroLength);
            }
            if let Some(prev_end) = self.prev_end
                && offset < prev_end
            {
                return Self::misuse(Misuse::OutOfOrder { prev_end, offset });
            }
        }
        self.prev_end = Some(end);
        self.state = EState::Body;
        Ok(())
    }

    /// `w` record header; follow with exactly `len` bytes of [`data`](Self::data).
    pub fn begin_write(&mut self, offset: u64, len: u64) -> Res<S::Error> {
        let declared = len
            .checked_add(16)
            .ok_or(EncodeError::Misuse(Misuse::Overflow))?;
        self.record_ok(offset, len)?;
        self.tag(tag::WRITE, declared)?;
        self.put(&offset.to_le_bytes())?;
        self.put(&len.to_le_bytes())?;
        self.pending = len;
        Ok(())
    }

    /// Payload bytes of the current `w` record.
    pub fn data(&mut self, bytes: &[u8]) -> Res<S::Error> {
        if bytes.len() as u64 > self.pending {
            return Self::misuse(Misuse::DataLength {
                expected: self.pending,
                got: bytes.len() as u64,
            });
        }
        self.put(bytes)?;
        self.pending -= bytes.len() as u64;
        Ok(())
    }

    /// Accounts for `n` payload bytes of the current `w` record that reached
    /// the destination by other means (a zero-copy transfer past this
    /// encoder's sink): checked against the declared length like
    /// [`data`](Self::data), counted in [`position`](Self::position),
    /// nothing written to the sink.
    pub fn data_elsewhere(&mut self, n: u64) -> Res<S::Error> {
        if n > self.pending {
            return Self::misuse(Misuse::DataLength {
                expected: self.pending,
                got: n,
            });
        }
        self.pending -= n;
        self.written = self.written.saturating_add(n);
        Ok(())
    }

    /// A whole `w` record.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Res<S::Error> {
        self.begin_write(offset, bytes.len() as u64)?;
        self.data(bytes)
    }

    /// A `z` record.
    pub fn zero(&mut self, offset: u64, len: u64) -> Res<S::Error> {
        self.record_ok(offset, len)?;
        self.tag(tag::ZERO, 16)?;
        self.put(&offset.to_le_bytes())?;
        self.put(&len.to_le_bytes())
    }

    /// A record with a tag of its own (v2 only), which rbd skips by its length.
    pub fn extension(&mut self, t: u8, payload: &[u8]) -> Res<S::Error> {
        self.in_diff()?;
        if self.diff_format != Format::DiffV2 {
            return Self::misuse(Misuse::WrongFormat);
        }
        if matches!(
            t,
            tag::FROM_SNAP
                | tag::TO_SNAP
                | tag::PROTECTION
                | tag::SIZE
                | tag::WRITE
                | tag::ZERO
                | tag::END
        ) {
            return Self::misuse(Misuse::ReservedTag(t));
        }
        self.tag(t, payload.len() as u64)?;
        self.put(payload)
    }

    /// `e`: ends the diff.
    pub fn end_diff(&mut self) -> Res<S::Error> {
        self.in_diff()?;
        self.put(&[tag::END])?;
        if self.image {
            self.written_diffs += 1;
            self.state = if self.written_diffs == self.declared {
                EState::Finished
            } else {
                EState::Between
            };
        } else {
            self.state = EState::Finished;
        }
        Ok(())
    }

    /// Checks that the stream is complete and returns the sink.
    pub fn finish(self) -> Result<S, EncodeError<S::Error>> {
        match self.state {
            EState::Finished => Ok(self.sink),
            EState::Between => Self::misuse(Misuse::DiffCount {
                declared: self.declared,
                written: self.written_diffs,
            }),
            _ if self.pending > 0 => Self::misuse(Misuse::DataLength {
                expected: self.pending,
                got: 0,
            }),
            _ => Self::misuse(Misuse::NotInDiff),
        }
    }
}
