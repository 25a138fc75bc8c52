//! The rbdiff integrity extension: proof that a diff lands on the right base,
//! and checksums that stock `rbd` still accepts. The format is specified in
//! `docs/integrity.md`; in short:
//!
//! * a **hashes** payload: a 32-byte header (magic `RBDIFFH1`, hash id,
//!   base size, entry count) and one 48-byte entry per `w`/`z` record:
//!   offset, length, the XXH3-128 of the base image's bytes there (the
//!   *pre-image*) and of the bytes the record leaves there (the *post-image*);
//! * a **checksum** payload (48 bytes, magic `RBDIFFK1`): record count, the
//!   XXH3-128 of the diff's bytes from its banner up to the checksum (each
//!   `w` payload replaced by its hash, see [`StreamHasher`]), and where the
//!   hashes payload starts.
//!
//! They travel as two v2 records with tags [`TAG_HASHES`] (`H`) and
//! [`TAG_CHECKSUM`] (`K`) just before the `e` (rbd skips each by its length
//! with one warning), or for v1 as a trailer after the `e` (rbd never reads
//! past `e`), or as a detached sidecar file with the trailer's bytes.

use crate::format::le64;
use backend::Xxh3;

/// The XXH3-128 implementation: with `std` on x86_64/aarch64 one that picks
/// AVX2/NEON at run time (twox-hash); elsewhere xxhash-rust, whose SIMD
/// path is chosen at compile time (SSE2, or simd128 on wasm32 when built
/// with it). Both compute the same standard XXH3-128.
#[cfg(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64")))]
mod backend {
    #[derive(Clone)]
    pub struct Xxh3(twox_hash::XxHash3_128);

    impl Xxh3 {
        pub fn new() -> Self {
            Xxh3(twox_hash::XxHash3_128::new())
        }
        pub fn update(&mut self, b: &[u8]) {
            self.0.write(b)
        }
        pub fn digest128(&self) -> u128 {
            self.0.finish_128()
        }
        pub fn reset(&mut self) {
            *self = Xxh3::new();
        }
    }

    pub fn xxh3_128(b: &[u8]) -> u128 {
        twox_hash::XxHash3_128::oneshot(b)
    }
}

#[cfg(not(all(feature = "std", any(target_arch = "x86_64", target_arch = "aarch64"))))]
mod backend {
    pub use xxhash_rust::xxh3::{Xxh3, xxh3_128};
}
use backend::xxh3_128;

/// v2 record tag of the hashes payload (`H`, 0x48).
pub const TAG_HASHES: u8 = b'H';
/// v2 record tag of the checksum payload (`K`, 0x4b).
pub const TAG_CHECKSUM: u8 = b'K';
/// Magic opening a hashes payload.
pub const HASHES_MAGIC: &[u8; 8] = b"RBDIFFH1";
/// Magic opening a checksum payload.
pub const CHECKSUM_MAGIC: &[u8; 8] = b"RBDIFFK1";
/// Magic closing a v1 trailer or a sidecar file.
pub const TRAILER_MAGIC: &[u8; 17] = b"rbdiff integrity\n";
/// Hash id of XXH3-128.
pub const HASH_XXH3_128: u8 = 1;
/// Length of the hashes header.
pub const HASHES_HEADER_LEN: usize = 32;
/// Length of one entry.
pub const ENTRY_LEN: usize = 48;
/// Length of the checksum payload.
pub const CHECKSUM_LEN: usize = 48;
/// Length of the trailer footer: le64 payload length + magic.
pub const FOOTER_LEN: usize = 8 + TRAILER_MAGIC.len();
/// Size value meaning "base size unknown".
pub const UNKNOWN_SIZE: u64 = u64::MAX;

/// XXH3-128 of `bytes`.
pub fn hash(bytes: &[u8]) -> u128 {
    xxh3_128(bytes)
}

/// XXH3-128 of `len` zero bytes.
pub fn hash_zeros(len: u64) -> u128 {
    let mut h = Hasher::new();
    h.zeros(len);
    h.digest()
}

/// XXH3-128 of runs of zeros, the last length remembered (the `z` records
/// of a diff, and zero bases, mostly have one length: the object size).
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ZeroHash(Option<(u64, u128)>);

#[cfg(feature = "alloc")]
impl ZeroHash {
    /// [`hash_zeros`]`(len)`.
    pub(crate) fn get(&mut self, len: u64) -> u128 {
        match self.0 {
            Some((l, h)) if l == len => h,
            _ => {
                let h = hash_zeros(len);
                self.0 = Some((len, h));
                h
            }
        }
    }
}

/// Streaming XXH3-128 with a byte count.
#[derive(Clone)]
pub struct Hasher {
    inner: Xxh3,
    bytes: u64,
}

impl core::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Hasher")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new()
    }
}

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Hasher {
            inner: Xxh3::new(),
            bytes: 0,
        }
    }

    /// Add bytes.
    pub fn update(&mut self, b: &[u8]) {
        self.inner.update(b);
        self.bytes += b.len() as u64;
    }

    /// Add `len` zero bytes.
    pub fn zeros(&mut self, mut len: u64) {
        const Z: [u8; 4096] = [0; 4096];
        while len > 0 {
            let n = usize::try_from(len).unwrap_or(Z.len()).min(Z.len());
            self.update(&Z[..n]);
            len -= n as u64;
        }
    }

    /// Bytes hashed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The hash so far.
    pub fn digest(&self) -> u128 {
        self.inner.digest128()
    }

    /// Start again.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.bytes = 0;
    }
}

/// The stream checksum's hasher. The checksum covers a diff's bytes with
/// every `w` payload replaced by its XXH3-128 (16 bytes, little-endian): a
/// payload is hashed once, for its post-image hash, and the checksum covers
/// that hash (so it still binds every payload byte, and the entries list).
/// [`bytes`](Self::bytes) counts the real stream bytes.
#[derive(Clone, Debug, Default)]
pub struct StreamHasher {
    inner: Hasher,
    bytes: u64,
}

impl StreamHasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        StreamHasher::default()
    }

    /// Stream bytes that are not part of a `w` payload.
    pub fn update(&mut self, b: &[u8]) {
        self.inner.update(b);
        self.bytes += b.len() as u64;
    }

    /// A `w` payload of `len` bytes whose XXH3-128 is `digest`.
    pub fn payload(&mut self, len: u64, digest: u128) {
        self.inner.update(&digest.to_le_bytes());
        self.bytes += len;
    }

    /// Stream bytes covered so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The checksum so far.
    pub fn digest(&self) -> u128 {
        self.inner.digest()
    }

    /// Start again.
    pub fn reset(&mut self) {
        self.inner.reset();
        self.bytes = 0;
    }
}

/// One record's hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Entry {
    /// Record offset.
    pub offset: u64,
    /// Record length.
    pub len: u64,
    /// XXH3-128 of the base image's bytes in the range (zeros past its end).
    pub pre: u128,
    /// XXH3-128 of the bytes the record leaves in the range.
    pub post: u128,
}

impl Entry {
    /// The 48-byte encoding.
    pub fn to_bytes(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..32].copy_from_slice(&self.pre.to_le_bytes());
        b[32..48].copy_from_slice(&self.post.to_le_bytes());
        b
    }

    /// Decode 48 bytes.
    pub fn from_bytes(b: &[u8]) -> Entry {
        Entry {
            offset: le64(&b[..8]),
            len: le64(&b[8..16]),
            pre: le128(&b[16..32]),
            post: le128(&b[32..48]),
        }
    }
}

fn le128(b: &[u8]) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    u128::from_le_bytes(a)
}

/// The hashes header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HashesHeader {
    /// Size of the base image, if known.
    pub base_size: Option<u64>,
    /// Number of entries.
    pub count: u64,
}

impl HashesHeader {
    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; HASHES_HEADER_LEN] {
        let mut b = [0u8; HASHES_HEADER_LEN];
        b[..8].copy_from_slice(HASHES_MAGIC);
        b[8] = HASH_XXH3_128;
        b[16..24].copy_from_slice(&self.base_size.unwrap_or(UNKNOWN_SIZE).to_le_bytes());
        b[24..32].copy_from_slice(&self.count.to_le_bytes());
        b
    }

    /// Decode 32 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<HashesHeader, IntegrityError> {
        if b.len() < HASHES_HEADER_LEN || &b[..8] != HASHES_MAGIC {
            return Err(IntegrityError::BadMagic);
        }
        if b[8] != HASH_XXH3_128 {
            return Err(IntegrityError::UnknownHash(b[8]));
        }
        let size = le64(&b[16..24]);
        Ok(HashesHeader {
            base_size: (size != UNKNOWN_SIZE).then_some(size),
            count: le64(&b[24..32]),
        })
    }

    /// Length of the whole hashes payload, or `None` on overflow.
    pub fn payload_len(&self) -> Option<u64> {
        self.count
            .checked_mul(ENTRY_LEN as u64)?
            .checked_add(HASHES_HEADER_LEN as u64)
    }
}

/// The checksum payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Checksum {
    /// `w` and `z` records in the diff.
    pub records: u64,
    /// Bytes covered: from the diff's banner up to the checksum (v2), or to
    /// the `e` inclusive (v1 trailer, sidecar).
    pub stream_bytes: u64,
    /// XXH3-128 of those bytes, each `w` payload replaced by its own
    /// XXH3-128 ([`StreamHasher`]).
    pub hash: u128,
    /// Offset of the hashes payload: in the stream for v2 (of its `H` tag),
    /// from the start of the trailer for v1 and sidecars.
    pub hashes_offset: u64,
}

impl Checksum {
    /// The 48-byte encoding.
    pub fn to_bytes(&self) -> [u8; CHECKSUM_LEN] {
        let mut b = [0u8; CHECKSUM_LEN];
        b[..8].copy_from_slice(CHECKSUM_MAGIC);
        b[8..16].copy_from_slice(&self.records.to_le_bytes());
        b[16..24].copy_from_slice(&self.stream_bytes.to_le_bytes());
        b[24..40].copy_from_slice(&self.hash.to_le_bytes());
        b[40..48].copy_from_slice(&self.hashes_offset.to_le_bytes());
        b
    }

    /// Decode 48 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Checksum, IntegrityError> {
        if b.len() < CHECKSUM_LEN || &b[..8] != CHECKSUM_MAGIC {
            return Err(IntegrityError::BadMagic);
        }
        Ok(Checksum {
            records: le64(&b[8..16]),
            stream_bytes: le64(&b[16..24]),
            hash: le128(&b[24..40]),
            hashes_offset: le64(&b[40..48]),
        })
    }
}

/// Footer of a v1 trailer or sidecar: le64 length of what precedes it, magic.
pub fn footer(payload_len: u64) -> [u8; FOOTER_LEN] {
    let mut b = [0u8; FOOTER_LEN];
    b[..8].copy_from_slice(&payload_len.to_le_bytes());
    b[8..].copy_from_slice(TRAILER_MAGIC);
    b
}

/// The payload length named by a footer (the last [`FOOTER_LEN`] bytes of a
/// file), if they are one.
pub fn parse_footer(b: &[u8]) -> Option<u64> {
    (b.len() == FOOTER_LEN && &b[8..] == TRAILER_MAGIC).then(|| le64(&b[..8]))
}

/// A malformed integrity payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntegrityError {
    /// Magic bytes missing.
    BadMagic,
    /// Hash id not known.
    UnknownHash(u8),
    /// Payload shorter than it says.
    Truncated,
    /// Payload length disagrees with the entry count.
    Length {
        /// Declared.
        declared: u64,
        /// Expected from the count.
        expected: u64,
    },
}

impl core::fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            IntegrityError::BadMagic => f.write_str("integrity data has no valid magic"),
            IntegrityError::UnknownHash(h) => write!(f, "integrity data uses unknown hash id {h}"),
            IntegrityError::Truncated => f.write_str("integrity data is truncated"),
            IntegrityError::Length { declared, expected } => write!(
                f,
                "integrity hashes payload is {declared} bytes, its entry count needs {expected}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for IntegrityError {}

/// What [`HashesParser`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The header.
    Header(HashesHeader),
    /// One entry.
    Entry(Entry),
}

/// A streaming parser of a hashes payload: feed it the pieces as they come
/// (for instance [`crate::Event::UnknownData`]); it keeps at most 48 bytes.
#[derive(Clone, Copy, Debug)]
pub struct HashesParser {
    buf: [u8; ENTRY_LEN],
    have: usize,
    header: Option<HashesHeader>,
    seen: u64,
}

impl Default for HashesParser {
    fn default() -> Self {
        HashesParser {
            buf: [0; ENTRY_LEN],
            have: 0,
            header: None,
            seen: 0,
        }
    }
}

impl HashesParser {
    /// A fresh parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; `on` gets the header, then every entry.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        mut on: impl FnMut(Parsed),
    ) -> Result<(), IntegrityError> {
        while !bytes.is_empty() {
            let want = if self.header.is_none() {
                HASHES_HEADER_LEN
            } else {
                ENTRY_LEN
            };
            if let Some(h) = self.header
                && self.seen >= h.count
            {
                return Err(IntegrityError::Length {
                    declared: h.payload_len().unwrap_or(u64::MAX) + bytes.len() as u64,
                    expected: h.payload_len().unwrap_or(u64::MAX),
                });
            }
            let n = (want - self.have).min(bytes.len());
            self.buf[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == want {
                self.have = 0;
                if self.header.is_none() {
                    let h = HashesHeader::from_bytes(&self.buf[..HASHES_HEADER_LEN])?;
                    self.header = Some(h);
                    on(Parsed::Header(h));
                } else {
                    self.seen += 1;
                    on(Parsed::Entry(Entry::from_bytes(&self.buf)));
                }
            }
        }
        Ok(())
    }

    /// Checks the payload is complete; returns its header.
    pub fn finish(&self) -> Result<HashesHeader, IntegrityError> {
        match self.header {
            Some(h) if self.seen == h.count && self.have == 0 => Ok(h),
            _ => Err(IntegrityError::Truncated),
        }
    }
}

#[cfg(feature = "alloc")]
mod manifest;
#[cfg(feature = "alloc")]
pub use manifest::*;
#[cfg(feature = "alloc")]
mod trailer;
#[cfg(feature = "alloc")]
pub use trailer::*;

/// A [`crate::Sink`] that computes the stream checksum ([`StreamHasher`])
/// of what passes through it. Before each `w` payload is written, tell it
/// the payload's hash with [`payload`](Self::payload): those bytes are then
/// counted, not hashed again. Or, when the hash is made elsewhere (on
/// another thread), announce the payload with
/// [`payload_later`](Self::payload_later) and hand its hash to
/// [`resolve`](Self::resolve) afterwards, in order: the bytes written in
/// between are kept until then.
#[derive(Debug)]
pub struct HashingSink<S> {
    inner: S,
    hasher: StreamHasher,
    skip: u64,
    /// Payloads from the first whose hash is still to come on, each with
    /// the bytes written after it.
    #[cfg(feature = "alloc")]
    later: alloc::collections::VecDeque<Later>,
}

/// A payload queued in a [`HashingSink`].
#[cfg(feature = "alloc")]
#[derive(Debug)]
struct Later {
    len: u64,
    digest: Option<u128>,
    after: alloc::vec::Vec<u8>,
}

impl<S> HashingSink<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        HashingSink {
            inner,
            hasher: StreamHasher::new(),
            skip: 0,
            #[cfg(feature = "alloc")]
            later: Default::default(),
        }
    }

    /// The checksum of what was written since the last reset (up to the
    /// first payload whose hash is still to come).
    pub fn hasher(&self) -> &StreamHasher {
        &self.hasher
    }

    /// The next `len` bytes written are a `w` payload hashing to `digest`.
    pub fn payload(&mut self, len: u64, digest: u128) {
        self.skip += len;
        #[cfg(feature = "alloc")]
        if !self.later.is_empty() {
            self.later.push_back(Later {
                len,
                digest: Some(digest),
                after: alloc::vec::Vec::new(),
            });
            return;
        }
        self.hasher.payload(len, digest);
    }

    /// The next `len` bytes written are a `w` payload whose hash will be
    /// given to [`resolve`](Self::resolve).
    #[cfg(feature = "alloc")]
    pub fn payload_later(&mut self, len: u64) {
        self.skip += len;
        self.later.push_back(Later {
            len,
            digest: None,
            after: alloc::vec::Vec::new(),
        });
    }

    /// The hash of the oldest payload announced by
    /// [`payload_later`](Self::payload_later) and not resolved yet; false
    /// (and nothing done) when there is none.
    #[cfg(feature = "alloc")]
    pub fn resolve(&mut self, digest: u128) -> bool {
        let Some(l) = self.later.iter_mut().find(|l| l.digest.is_none()) else {
            return false;
        };
        l.digest = Some(digest);
        while let Some(Later {
            len,
            digest: Some(d),
            ..
        }) = self.later.front()
        {
            let (len, d) = (*len, *d);
            self.hasher.payload(len, d);
            if let Some(l) = self.later.pop_front() {
                self.hasher.update(&l.after);
            }
        }
        true
    }

    /// Payloads whose hash is still to come.
    #[cfg(feature = "alloc")]
    pub fn unresolved(&self) -> usize {
        self.later.iter().filter(|l| l.digest.is_none()).count()
    }

    /// Start hashing afresh (at the banner of an embedded diff).
    pub fn reset(&mut self) {
        self.hasher.reset();
        self.skip = 0;
        #[cfg(feature = "alloc")]
        self.later.clear();
    }

    /// The inner sink.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The inner sink.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: crate::Sink> crate::Sink for HashingSink<S> {
    type Error = S::Error;
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), S::Error> {
        self.inner.write_all(bytes)?;
        let n = usize::try_from(self.skip)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        self.skip -= n as u64;
        #[cfg(feature = "alloc")]
        if let Some(l) = self.later.back_mut() {
            l.after.extend_from_slice(&bytes[n..]);
            return Ok(());
        }
        self.hasher.update(&bytes[n..]);
        Ok(())
    }
}
