//! The integrity checks of an import: validating integrity data against the
//! stream and the image before any work, and the [`Checker`] a driver may
//! replace to run the base and result checks on several threads.

use crate::block::BlockSource;
use crate::integrity::{Manifest, VerifyError};
use core::fmt;
use core::ops::Range;

/// Smallest encoding of a `w` or `z` record (tag, offset, length): a stream
/// of `n` bytes holds at most `n / MIN_RECORD_LEN` records.
pub const MIN_RECORD_LEN: u64 = 17;

/// Integrity data that cannot belong to the stream or the image it is
/// applied to. Found before any block is read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntegrityDataError {
    /// The checksum's record count differs from the number of entries.
    Count {
        /// Records the checksum counts.
        records: u64,
        /// Entries listed.
        entries: u64,
    },
    /// More entries than a stream of this length can hold.
    TooManyEntries {
        /// Entries listed.
        entries: u64,
        /// Stream length in bytes.
        stream_len: u64,
    },
    /// The checksum covers more bytes than the stream has.
    StreamBytes {
        /// Bytes the checksum covers.
        declared: u64,
        /// Stream length in bytes.
        stream_len: u64,
    },
    /// An entry reaches past the largest size the image has during the
    /// import (its size before, the diff's `s`, the recorded base size).
    Extent {
        /// Entry index (0-based).
        index: usize,
        /// Image offset.
        offset: u64,
        /// Length.
        len: u64,
        /// The image size it must stay within.
        limit: u64,
    },
}

impl fmt::Display for IntegrityDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IntegrityDataError::Count { records, entries } => write!(
                f,
                "its checksum counts {records} records but it lists {entries}"
            ),
            IntegrityDataError::TooManyEntries {
                entries,
                stream_len,
            } => write!(
                f,
                "it lists {entries} records, more than a stream of {stream_len} bytes can hold"
            ),
            IntegrityDataError::StreamBytes {
                declared,
                stream_len,
            } => write!(
                f,
                "its checksum covers {declared} bytes, the stream has {stream_len}"
            ),
            IntegrityDataError::Extent {
                index,
                offset,
                len,
                limit,
            } => write!(
                f,
                "record #{} ({offset}+{len}) reaches past the image size {limit}",
                index + 1
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for IntegrityDataError {}

/// Checks what can be checked of `m` against a stream of `stream_len` bytes
/// (when known) without reading anything: record counts and the bytes the
/// checksum covers.
pub fn validate_manifest(m: &Manifest, stream_len: Option<u64>) -> Result<(), IntegrityDataError> {
    let entries = m.entries.len() as u64;
    if let Some(c) = m.checksum
        && c.records != entries
    {
        return Err(IntegrityDataError::Count {
            records: c.records,
            entries,
        });
    }
    let Some(stream_len) = stream_len else {
        return Ok(());
    };
    if entries > stream_len / MIN_RECORD_LEN {
        return Err(IntegrityDataError::TooManyEntries {
            entries,
            stream_len,
        });
    }
    if let Some(c) = m.checksum
        && (c.stream_bytes > stream_len || c.hashes_offset > stream_len)
    {
        return Err(IntegrityDataError::StreamBytes {
            declared: c.stream_bytes.max(c.hashes_offset),
            stream_len,
        });
    }
    Ok(())
}

/// Checks every entry of `m` lies within `limit` bytes (the largest size the
/// image has during the import): a check reads at most the image's size per
/// record, however large the lengths the integrity data declares.
pub fn validate_extents(m: &Manifest, limit: u64) -> Result<(), IntegrityDataError> {
    for (index, e) in m.entries.iter().enumerate() {
        if e.offset.checked_add(e.len).is_none_or(|end| end > limit) {
            return Err(IntegrityDataError::Extent {
                index,
                offset: e.offset,
                len: e.len,
                limit,
            });
        }
    }
    Ok(())
}

/// True if the manifest's records are ascending and do not overlap (what an
/// undo diff and reading back while applying need).
pub fn is_sorted(m: &Manifest) -> bool {
    m.entries
        .windows(2)
        .all(|w| w[1].offset >= w[0].offset.saturating_add(w[0].len))
}

/// Runs the base and result checks of an import. The defaults check on the
/// calling thread; a driver with threads overrides them (e.g. with
/// [`Manifest::check_base_par`] over several handles on the image).
pub trait Checker<D: BlockSource + ?Sized> {
    /// Is `image` the base `m` was made from? See [`Manifest::check_base`].
    fn check_base(&mut self, m: &Manifest, image: &mut D) -> Result<(), VerifyError<D::Error>> {
        m.check_base(image)
    }

    /// Does `image` hold what the diff leaves: `size` (when known) and the
    /// post-image hashes of `entries` (the others were checked already).
    fn check_result(
        &mut self,
        m: &Manifest,
        image: &mut D,
        size: Option<u64>,
        entries: Range<usize>,
    ) -> Result<(), VerifyError<D::Error>> {
        if let Some(expected) = size
            && image.size() != expected
        {
            return Err(VerifyError::Size {
                expected,
                actual: image.size(),
            });
        }
        m.check_entries(image, entries, false)
    }
}

/// The default [`Checker`]: everything on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sequential;

impl<D: BlockSource + ?Sized> Checker<D> for Sequential {}
