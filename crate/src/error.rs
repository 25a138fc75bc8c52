//! Decode errors: a stream offset and a precise kind, no allocation.

use crate::format::{Format, TagDisplay};
use core::fmt;

/// What the decoder was reading when the stream ended or went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Expected {
    /// The stream banner (`rbd diff v1\n`, `rbd diff v2\n` or `rbd image v2\n`).
    Banner,
    /// A record tag.
    Tag,
    /// The le64 length after a v2 tag.
    TagLength,
    /// The from-snapshot name of an `f` record.
    FromSnapName,
    /// The to-snapshot name of a `t` record.
    ToSnapName,
    /// The byte of a `p` record.
    Protection,
    /// The le64 of an `s` record.
    ImageSize,
    /// The le64 offset and le64 length of a `w` or `z` record.
    IoLength,
    /// The payload bytes of a `w` record.
    WriteData,
    /// The payload of a record with an unknown tag (skipped by its v2 length).
    UnknownPayload,
    /// The le64 value of an `O`, `T`, `U` or `C` image header record.
    ImageOption,
    /// The key and value of an `M` record.
    ImageMeta,
    /// The `rbd image diffs v2\n` banner.
    DiffsBanner,
    /// The le64 diff count after the diffs banner.
    DiffCount,
    /// The `rbd diff v2\n` banner of an embedded diff.
    DiffBanner,
}

impl Expected {
    /// A few words naming the item.
    pub fn describe(self) -> &'static str {
        match self {
            Expected::Banner => "the stream banner",
            Expected::Tag => "a record tag",
            Expected::TagLength => "the record length",
            Expected::FromSnapName => "the from-snapshot name",
            Expected::ToSnapName => "the to-snapshot name",
            Expected::Protection => "the protection status byte",
            Expected::ImageSize => "the image size",
            Expected::IoLength => "the record offset and length",
            Expected::WriteData => "write data",
            Expected::UnknownPayload => "the payload of an unknown record",
            Expected::ImageOption => "an image option value",
            Expected::ImageMeta => "an image-meta key/value",
            Expected::DiffsBanner => "the 'rbd image diffs v2' banner",
            Expected::DiffCount => "the diff count",
            Expected::DiffBanner => "the 'rbd diff v2' banner of an embedded diff",
        }
    }
}

/// Where a tag was read: this decides which tags are valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Zone {
    /// A diff v1 stream.
    DiffV1,
    /// A diff v2 stream (standalone or embedded).
    DiffV2,
    /// The image v2 header (O T U C M E).
    ImageHeader,
}

impl Zone {
    fn valid_tags(self) -> &'static str {
        match self {
            Zone::DiffV1 => "f t s w z e",
            Zone::DiffV2 => "f t p s w z e",
            Zone::ImageHeader => "O T U C M E",
        }
    }
}

/// The precise reason of a decode error or warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case", tag = "kind"))]
#[non_exhaustive]
pub enum ErrorKind {
    /// The banner is not one that was expected. `found` holds the first bytes read.
    BadBanner {
        /// The stream kind expected, if the decoder was told one.
        expected: Option<Format>,
        /// The first bytes of the stream (up to 13).
        found: [u8; 13],
        /// How many bytes of `found` are valid.
        found_len: u8,
    },
    /// A section banner inside an image v2 stream is wrong.
    BadSectionBanner {
        /// Which banner was expected.
        expected: Expected,
    },
    /// The stream ended in the middle of an item.
    UnexpectedEof {
        /// What was being read.
        expected: Expected,
        /// How many more bytes that item needed, at least.
        missing: u64,
    },
    /// A tag that is not valid in this zone.
    UnknownTag {
        /// The tag byte.
        tag: u8,
        /// The zone it was found in.
        zone: Zone,
    },
    /// A snapshot name longer than the configured limit.
    NameTooLong {
        /// Declared length.
        len: u32,
        /// Limit.
        max: u32,
    },
    /// An image-meta key or value longer than the configured limit.
    MetaTooLong {
        /// Declared length.
        len: u32,
        /// Limit.
        max: u32,
    },
    /// A `w` or `z` record of length 0 (rbd merge-diff rejects these).
    ZeroLength {
        /// The record tag.
        tag: u8,
    },
    /// `offset + length` does not fit in 64 bits.
    OffsetOverflow {
        /// Record offset.
        offset: u64,
        /// Record length.
        len: u64,
    },
    /// A record reaches past the image size given by the `s` record.
    BeyondSize {
        /// Record end (offset + length).
        end: u64,
        /// Image size.
        size: u64,
    },
    /// A record starts before the previous one ended (unsorted or overlapping).
    OutOfOrder {
        /// End of the previous record.
        prev_end: u64,
        /// Offset of this record.
        offset: u64,
    },
    /// A header record (`f`, `t`, `p`, `s`) after data records.
    MetadataAfterData {
        /// The tag.
        tag: u8,
    },
    /// A v2 record whose declared length does not match its layout.
    LengthMismatch {
        /// The tag.
        tag: u8,
        /// Declared le64 length.
        declared: u64,
        /// Length of the payload as rbd reads it.
        actual: u64,
    },
    /// Bytes after the end of the stream.
    TrailingBytes,
}

/// The kind of an [`ErrorKind`] without its details, with a stable name
/// ([`as_str`](Self::as_str), kebab-case: `unexpected-eof`, `unknown-tag`,
/// …): what front ends map to their own error types (the component's WIT
/// `error-kind` has one case per code) and what JSON output names.
///
/// Exhaustive on purpose: a new code is a new case in every mapping (the
/// compiler finds them), not a string that some front end fails to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum ErrorCode {
    /// The banner is not one that was expected. `found` holds the first bytes read.
    BadBanner,
    /// A section banner inside an image v2 stream is wrong.
    BadSectionBanner,
    /// The stream ended in the middle of an item.
    UnexpectedEof,
    /// A tag that is not valid in this zone.
    UnknownTag,
    /// A snapshot name longer than the configured limit.
    NameTooLong,
    /// An image-meta key or value longer than the configured limit.
    MetaTooLong,
    /// A `w` or `z` record of length 0 (rbd merge-diff rejects these).
    ZeroLength,
    /// `offset + length` does not fit in 64 bits.
    OffsetOverflow,
    /// A record reaches past the image size given by the `s` record.
    BeyondSize,
    /// A record starts before the previous one ended (unsorted or overlapping).
    OutOfOrder,
    /// A header record (`f`, `t`, `p`, `s`) after data records.
    MetadataAfterData,
    /// A v2 record whose declared length does not match its layout.
    LengthMismatch,
    /// Bytes after the end of the stream.
    TrailingBytes,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::BadBanner,
        ErrorCode::BadSectionBanner,
        ErrorCode::UnexpectedEof,
        ErrorCode::UnknownTag,
        ErrorCode::NameTooLong,
        ErrorCode::MetaTooLong,
        ErrorCode::ZeroLength,
        ErrorCode::OffsetOverflow,
        ErrorCode::BeyondSize,
        ErrorCode::OutOfOrder,
        ErrorCode::MetadataAfterData,
        ErrorCode::LengthMismatch,
        ErrorCode::TrailingBytes,
    ];

    /// The stable kebab-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadBanner => "bad-banner",
            ErrorCode::BadSectionBanner => "bad-section-banner",
            ErrorCode::UnexpectedEof => "unexpected-eof",
            ErrorCode::UnknownTag => "unknown-tag",
            ErrorCode::NameTooLong => "name-too-long",
            ErrorCode::MetaTooLong => "meta-too-long",
            ErrorCode::ZeroLength => "zero-length",
            ErrorCode::OffsetOverflow => "offset-overflow",
            ErrorCode::BeyondSize => "beyond-size",
            ErrorCode::OutOfOrder => "out-of-order",
            ErrorCode::MetadataAfterData => "metadata-after-data",
            ErrorCode::LengthMismatch => "length-mismatch",
            ErrorCode::TrailingBytes => "trailing-bytes",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorKind {
    /// The kind without its details.
    pub const fn code(&self) -> ErrorCode {
        match self {
            ErrorKind::BadBanner { .. } => ErrorCode::BadBanner,
            ErrorKind::BadSectionBanner { .. } => ErrorCode::BadSectionBanner,
            ErrorKind::UnexpectedEof { .. } => ErrorCode::UnexpectedEof,
            ErrorKind::UnknownTag { .. } => ErrorCode::UnknownTag,
            ErrorKind::NameTooLong { .. } => ErrorCode::NameTooLong,
            ErrorKind::MetaTooLong { .. } => ErrorCode::MetaTooLong,
            ErrorKind::ZeroLength { .. } => ErrorCode::ZeroLength,
            ErrorKind::OffsetOverflow { .. } => ErrorCode::OffsetOverflow,
            ErrorKind::BeyondSize { .. } => ErrorCode::BeyondSize,
            ErrorKind::OutOfOrder { .. } => ErrorCode::OutOfOrder,
            ErrorKind::MetadataAfterData { .. } => ErrorCode::MetadataAfterData,
            ErrorKind::LengthMismatch { .. } => ErrorCode::LengthMismatch,
            ErrorKind::TrailingBytes => ErrorCode::TrailingBytes,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::BadBanner {
                expected,
                found,
                found_len,
            } => {
                f.write_str("bad banner ")?;
                write_escaped(f, &found[..found_len as usize])?;
                match expected {
                    Some(fmt) => write!(f, " (expected '{}\\n')", fmt.name()),
                    None => f.write_str(
                        " (expected 'rbd diff v1\\n', 'rbd diff v2\\n' or 'rbd image v2\\n')",
                    ),
                }
            }
            ErrorKind::BadSectionBanner { expected } => {
                write!(f, "bad banner (expected {})", expected.describe())
            }
            ErrorKind::UnexpectedEof { expected, missing } => write!(
                f,
                "unexpected end of stream while reading {} ({} more byte{} needed)",
                expected.describe(),
                missing,
                if missing == 1 { "" } else { "s" }
            ),
            ErrorKind::UnknownTag { tag, zone } => write!(
                f,
                "unknown record tag {} (expected one of {})",
                TagDisplay(tag),
                zone.valid_tags()
            ),
            ErrorKind::NameTooLong { len, max } => {
                write!(
                    f,
                    "snapshot name of {len} bytes is longer than the limit of {max}"
                )
            }
            ErrorKind::MetaTooLong { len, max } => {
                write!(
                    f,
                    "image-meta string of {len} bytes is longer than the limit of {max}"
                )
            }
            ErrorKind::ZeroLength { tag } => write!(f, "zero-length {} record", TagDisplay(tag)),
            ErrorKind::OffsetOverflow { offset, len } => {
                write!(f, "record offset {offset} + length {len} overflows 64 bits")
            }
            ErrorKind::BeyondSize { end, size } => {
                write!(f, "record ends at {end}, past the image size {size}")
            }
            ErrorKind::OutOfOrder { prev_end, offset } => write!(
                f,
                "record at image offset {offset} starts before the previous record's end {prev_end} (out of order or overlapping)"
            ),
            ErrorKind::MetadataAfterData { tag } => {
                write!(f, "header record {} after data records", TagDisplay(tag))
            }
            ErrorKind::LengthMismatch {
                tag,
                declared,
                actual,
            } => write!(
                f,
                "record {} declares length {declared} but its payload is {actual} bytes",
                TagDisplay(tag)
            ),
            ErrorKind::TrailingBytes => f.write_str("trailing bytes after the end of the stream"),
        }
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("'")?;
    for &b in bytes {
        match b {
            b'\n' => f.write_str("\\n")?,
            b'\\' => f.write_str("\\\\")?,
            b'\'' => f.write_str("\\'")?,
            0x20..=0x7e => write!(f, "{}", b as char)?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_str("'")
}

/// A decode error: the stream offset of the offending item and what was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DecodeError {
    /// Stream offset (bytes from the start of the stream) of the offending item.
    pub offset: u64,
    /// What was wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::UnknownTag { tag, zone } => write!(
                f,
                "unknown record tag {} at stream offset {} (expected one of {})",
                TagDisplay(tag),
                self.offset,
                zone.valid_tags()
            ),
            kind => write!(f, "{kind} at stream offset {}", self.offset),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}

impl DecodeError {
    /// An error at `offset`.
    pub const fn new(offset: u64, kind: ErrorKind) -> Self {
        DecodeError { offset, kind }
    }

    /// True for truncation (the stream ended early).
    pub fn is_eof(&self) -> bool {
        matches!(self.kind, ErrorKind::UnexpectedEof { .. })
    }
}
