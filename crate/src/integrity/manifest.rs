//! Whole manifests (alloc): building, trailers, base/result checks, and the
//! stream verifier used by importers.

use super::*;
use crate::block::BlockSource;
use crate::decode::Event;
use alloc::vec;
use alloc::vec::Vec;

/// All integrity data of one diff.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Manifest {
    /// Size of the base image, if known.
    pub base_size: Option<u64>,
    /// One entry per `w`/`z` record, in stream order.
    pub entries: Vec<Entry>,
    /// The stream checksum, once known.
    pub checksum: Option<Checksum>,
}

/// Which check failed.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError<E> {
    /// Reading the image failed.
    Read(E),
    /// The image is not the size the diff was made from (or produces).
    Size {
        /// Size expected.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// The image's bytes in entry `index`'s range do not hash as recorded.
    Block {
        /// Entry index (record number, 0-based).
        index: usize,
        /// Image offset.
        offset: u64,
        /// Length.
        len: u64,
        /// True for the base check (pre-image), false for the result check.
        base: bool,
    },
}

impl<E: core::fmt::Display> core::fmt::Display for VerifyError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VerifyError::Read(e) => write!(f, "read failed: {e}"),
            VerifyError::Size { expected, actual } => {
                write!(f, "image size is {actual}, the diff expects {expected}")
            }
            VerifyError::Block {
                index,
                offset,
                len,
                base,
            } => write!(
                f,
                "{} block {offset}+{len} (record #{}) does not match the diff's {} hash",
                if *base {
                    "base image"
                } else {
                    "resulting image"
                },
                index + 1,
                if *base { "pre-image" } else { "post-image" }
            ),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for VerifyError<E> {}

/// XXH3-128 of `len` bytes of `src` at `offset`.
pub fn hash_range<S: BlockSource + ?Sized>(
    src: &mut S,
    offset: u64,
    len: u64,
    buf: &mut Vec<u8>,
) -> Result<u128, S::Error> {
    const STEP: usize = 1 << 20;
    let mut h = Hasher::new();
    let mut o = offset;
    let end = offset.saturating_add(len);
    // Within the size, without a copy where the source can; past it (or
    // without that), read (zeros past the size).
    let within = end.min(src.size());
    if o < within && src.view(o, within - o, &mut |s| h.update(s))? {
        o = within;
    }
    if o < end {
        if buf.len() < STEP {
            buf.resize(STEP, 0);
        }
        crate::block::read_through(src, o, end, buf, &mut |s| h.update(s))?;
    }
    Ok(h.digest())
}

impl Manifest {
    /// The hashes payload (header + entries), as carried by an `H` record.
    pub fn hashes_payload(&self) -> Vec<u8> {
        let h = HashesHeader {
            base_size: self.base_size,
            count: self.entries.len() as u64,
        };
        let mut out = Vec::with_capacity(HASHES_HEADER_LEN + ENTRY_LEN * self.entries.len());
        out.extend_from_slice(&h.to_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.to_bytes());
        }
        out
    }

    /// The v1 trailer / sidecar bytes: hashes payload, checksum payload, footer.
    pub fn to_trailer(&self) -> Vec<u8> {
        let mut out = self.hashes_payload();
        let mut c = self.checksum.unwrap_or(Checksum {
            records: self.entries.len() as u64,
            stream_bytes: 0,
            hash: 0,
            hashes_offset: 0,
        });
        c.hashes_offset = 0;
        out.extend_from_slice(&c.to_bytes());
        let len = out.len() as u64;
        out.extend_from_slice(&footer(len));
        out
    }

    /// Parse trailer / sidecar bytes (footer included); see
    /// [`TrailerParser`] to parse them as they arrive.
    pub fn from_trailer(b: &[u8]) -> Result<Manifest, IntegrityError> {
        let mut p = TrailerParser::new(u64::MAX);
        p.push(b).and_then(|()| p.finish()).map_err(|e| match e {
            TrailerError::Malformed(e) => e,
            // A count no byte string can hold.
            TrailerError::TooLong { .. } => IntegrityError::Truncated,
        })
    }

    /// Parse a whole hashes payload.
    pub fn from_hashes(b: &[u8]) -> Result<Manifest, IntegrityError> {
        let mut p = HashesParser::new();
        let mut m = Manifest::default();
        let header = HashesHeader::from_bytes(b)?;
        let expected = header.payload_len().unwrap_or(u64::MAX);
        if expected != b.len() as u64 {
            return Err(IntegrityError::Length {
                declared: b.len() as u64,
                expected,
            });
        }
        p.push(b, |it| match it {
            Parsed::Header(h) => m.base_size = h.base_size,
            Parsed::Entry(e) => m.entries.push(e),
        })?;
        p.finish()?;
        Ok(m)
    }

    /// Checks `base` is the image the diff was made from: its size (when
    /// recorded) and the pre-image hash of every record's range. Reads only
    /// those ranges; writes nothing.
    pub fn check_base<S: BlockSource + ?Sized>(
        &self,
        base: &mut S,
    ) -> Result<(), VerifyError<S::Error>> {
        self.check(base, self.base_size, true)
    }

    /// Checks `image` holds what applying the diff leaves: `size` (the
    /// diff's `s`) and every record's post-image hash.
    pub fn check_result<S: BlockSource + ?Sized>(
        &self,
        image: &mut S,
        size: Option<u64>,
    ) -> Result<(), VerifyError<S::Error>> {
        self.check(image, size, false)
    }

    fn check<S: BlockSource + ?Sized>(
        &self,
        image: &mut S,
        size: Option<u64>,
        base: bool,
    ) -> Result<(), VerifyError<S::Error>> {
        check_size(image, size)?;
        self.check_entries(image, 0..self.entries.len(), base)
    }

    /// Checks entries `range` (indices) of the base (`base`) or the result:
    /// the pre- or post-image hash of each one's range of `image`. No size
    /// check. Used by importers that check the result while applying.
    pub fn check_entries<S: BlockSource + ?Sized>(
        &self,
        image: &mut S,
        range: core::ops::Range<usize>,
        base: bool,
    ) -> Result<(), VerifyError<S::Error>> {
        let mut buf = vec![];
        let end = range.end.min(self.entries.len());
        let start = range.start.min(end);
        for (index, e) in self.entries[start..end].iter().enumerate() {
            let index = start + index;
            // The base reads as zeros past its end; a result is hashed as far
            // as the image reaches (records straddling the size are clipped).
            let (len, want) = if base {
                (e.len, e.pre)
            } else {
                (e.len.min(image.size().saturating_sub(e.offset)), e.post)
            };
            if hash_range(image, e.offset, len, &mut buf).map_err(VerifyError::Read)? != want {
                return Err(VerifyError::Block {
                    index,
                    offset: e.offset,
                    len: e.len,
                    base,
                });
            }
        }
        Ok(())
    }

    /// [`check_base`](Self::check_base) on one thread per source (each
    /// source a handle on the same image, e.g. [`crate::block::FileImage::try_clone`]):
    /// the entries are split in runs of about equal bytes. The first
    /// mismatching entry (lowest index) is reported, as by `check_base`.
    #[cfg(feature = "std")]
    pub fn check_base_par<S>(&self, sources: &mut [S]) -> Result<(), VerifyError<S::Error>>
    where
        S: BlockSource + Send,
        S::Error: Send,
    {
        self.check_par(sources, self.base_size, 0..self.entries.len(), true)
    }

    /// [`check_result`](Self::check_result) of entries `range` only, on one
    /// thread per source (see [`check_base_par`](Self::check_base_par)).
    #[cfg(feature = "std")]
    pub fn check_result_par<S>(
        &self,
        sources: &mut [S],
        size: Option<u64>,
        range: core::ops::Range<usize>,
    ) -> Result<(), VerifyError<S::Error>>
    where
        S: BlockSource + Send,
        S::Error: Send,
    {
        self.check_par(sources, size, range, false)
    }

    #[cfg(feature = "std")]
    fn check_par<S>(
        &self,
        sources: &mut [S],
        size: Option<u64>,
        range: core::ops::Range<usize>,
        base: bool,
    ) -> Result<(), VerifyError<S::Error>>
    where
        S: BlockSource + Send,
        S::Error: Send,
    {
        let Some(first) = sources.first_mut() else {
            return Ok(());
        };
        check_size(first, size)?;
        self.check_entries_par(sources, range, base)
    }

    /// [`check_entries`](Self::check_entries) on one thread per source (see
    /// [`check_base_par`](Self::check_base_par)).
    #[cfg(feature = "std")]
    pub fn check_entries_par<S>(
        &self,
        sources: &mut [S],
        range: core::ops::Range<usize>,
        base: bool,
    ) -> Result<(), VerifyError<S::Error>>
    where
        S: BlockSource + Send,
        S::Error: Send,
    {
        let end = range.end.min(self.entries.len());
        let start = range.start.min(end);
        if sources.len() < 2 || end - start < 2 {
            return match sources.first_mut() {
                Some(s) => self.check_entries(s, start..end, base),
                None => Ok(()),
            };
        }
        // Cut the range where the running byte count passes each share.
        let total: u64 = self.entries[start..end]
            .iter()
            .map(|e| e.len)
            .fold(0, u64::saturating_add);
        let parts = sources.len() as u64;
        let mut cuts = vec![start];
        let mut acc = 0u64;
        for (i, e) in self.entries[start..end].iter().enumerate() {
            acc = acc.saturating_add(e.len);
            let k = cuts.len() as u64;
            if k < parts && acc >= total / parts * k {
                cuts.push(start + i + 1);
            }
        }
        cuts.push(end);
        // Ranges whose thread could not be spawned are checked afterwards
        // on this thread.
        let (mut results, pending) = std::thread::scope(|sc| {
            let mut handles = vec![];
            let mut pending = vec![];
            for (src, w) in sources.iter_mut().zip(cuts.windows(2)) {
                let r = w[0]..w[1];
                if r.is_empty() {
                    continue;
                }
                let job = move || self.check_entries(src, r, base);
                match std::thread::Builder::new().spawn_scoped(sc, job) {
                    Ok(h) => handles.push(h),
                    Err(_) => pending.push(w[0]..w[1]),
                }
            }
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(p) => std::panic::resume_unwind(p),
                })
                .collect();
            (results, pending)
        });
        for r in pending {
            results.push(self.check_entries(&mut sources[0], r, base));
        }
        let mut first: Option<VerifyError<S::Error>> = None;
        for e in results.into_iter().filter_map(Result::err) {
            let better = match (&first, &e) {
                (None, _) => true,
                (
                    Some(VerifyError::Block { index: a, .. }),
                    VerifyError::Block { index: b, .. },
                ) => b < a,
                // A mismatch is definite; a read error only if there is none.
                (Some(VerifyError::Block { .. }), _) => false,
                (Some(_), VerifyError::Block { .. }) => true,
                _ => false,
            };
            if better {
                first = Some(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

fn check_size<S: BlockSource + ?Sized>(
    image: &mut S,
    size: Option<u64>,
) -> Result<(), VerifyError<S::Error>> {
    match size {
        Some(expected) if image.size() != expected => Err(VerifyError::Size {
            expected,
            actual: image.size(),
        }),
        _ => Ok(()),
    }
}

/// What [`StreamVerifier`] found wrong in a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFault {
    /// A record's payload does not hash to its recorded post-image hash.
    Payload {
        /// Stream offset of the record.
        stream_offset: u64,
        /// Record number (0-based).
        index: usize,
        /// Image offset.
        offset: u64,
    },
    /// A record is not the one the integrity data lists.
    Record {
        /// Stream offset of the record.
        stream_offset: u64,
        /// Record number (0-based).
        index: usize,
    },
    /// The stream has more or fewer records than the integrity data lists.
    Count {
        /// Listed.
        expected: u64,
        /// Found.
        actual: u64,
    },
    /// The stream's bytes do not hash to the recorded checksum.
    Checksum {
        /// Bytes hashed.
        bytes: u64,
    },
    /// The integrity data itself is malformed.
    Malformed(IntegrityError),
}

impl core::fmt::Display for StreamFault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            StreamFault::Payload {
                stream_offset,
                index,
                offset,
            } => write!(
                f,
                "payload of record #{} (image offset {offset}) at stream offset {stream_offset} is corrupt: its hash does not match",
                index + 1
            ),
            StreamFault::Record {
                stream_offset,
                index,
            } => write!(
                f,
                "record #{} at stream offset {stream_offset} differs from the one the integrity data lists",
                index + 1
            ),
            StreamFault::Count { expected, actual } => {
                write!(
                    f,
                    "stream has {actual} records, its integrity data lists {expected}"
                )
            }
            StreamFault::Checksum { bytes } => {
                write!(f, "stream checksum mismatch over its first {bytes} bytes")
            }
            StreamFault::Malformed(e) => e.fmt(f),
        }
    }
}

/// What an open record's post-image hash comes from. (One record is open
/// at a time, so the size of the `w` variant costs nothing.)
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
enum Post {
    /// A `w`: its payload, hashed as it comes (its hash goes into the
    /// checksum).
    Payload(Hasher),
    /// Known at once (a `z` when sealing: [`seal_stream`], std only).
    #[cfg_attr(not(feature = "std"), allow(dead_code))]
    Known(u128),
    /// A `z` of this length: hashed only when integrity data names the
    /// record and it lies within the image (a crafted length costs nothing).
    Zeros(u64),
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    stream_offset: u64,
    offset: u64,
    len: u64,
    post: u128,
    /// A `z` whose hash is made when (if) it is compared.
    zero: bool,
}

/// Checks a diff stream against its integrity data while it is decoded:
/// feed it every event with the raw bytes the decoder consumed for it
/// ([`crate::EventReader::next_event_raw`]).
///
/// With a manifest known beforehand (trailer read from the end of a file,
/// or a sidecar) each record is checked as soon as its payload is complete;
/// otherwise the `H`/`K` records of a v2 stream (or a v1 trailer fed through
/// [`trailing`](Self::trailing)) are checked at the end.
#[derive(Clone, Debug)]
pub struct StreamVerifier {
    preloaded: Option<Manifest>,
    stream: StreamHasher,
    mark_k: Option<(u64, u128)>,
    mark_e: Option<(u64, u128)>,
    seen: Vec<Seen>,
    /// The open record: what it is, its post-image hash, payload bytes
    /// still to come.
    record: Option<(Seen, Post, u64)>,
    in_ext: Option<u8>,
    hashes: HashesParser,
    found: Manifest,
    found_hashes: bool,
    check_buf: Vec<u8>,
    /// Bytes after the `e` (v1 trailer): all of them while they can still
    /// be this diff's trailer, else only the last [`FOOTER_LEN`].
    trailer: Vec<u8>,
    trailing_bytes: u64,
    fault: Option<StreamFault>,
    count: u64,
    ended: bool,
    zeros: ZeroHash,
    deferred: bool,
    /// The image size the last `s` record gave: no hashed record reaches
    /// past it, so hashing a `z` costs at most this much.
    size: u64,
}

impl StreamVerifier {
    /// A verifier; `preloaded` is the manifest if it is known before the data.
    pub fn new(preloaded: Option<Manifest>) -> Self {
        StreamVerifier {
            preloaded,
            stream: StreamHasher::new(),
            mark_k: None,
            mark_e: None,
            seen: Vec::new(),
            record: None,
            in_ext: None,
            hashes: HashesParser::new(),
            found: Manifest::default(),
            found_hashes: false,
            check_buf: Vec::new(),
            trailer: Vec::new(),
            trailing_bytes: 0,
            fault: None,
            count: 0,
            ended: false,
            zeros: ZeroHash::default(),
            deferred: false,
            size: 0,
        }
    }

    /// Do not hash payloads: the caller reads back every record it applied
    /// and checks it against its post-image hash (for instance
    /// [`Manifest::check_entries`] on another thread while applying), which
    /// checks the payload as written. The checksum then covers the
    /// preloaded manifest's post-image hashes. Needs a preloaded manifest
    /// (returns false and changes nothing without one).
    pub fn defer_payloads(&mut self) -> bool {
        self.deferred = self.preloaded.is_some();
        self.deferred
    }

    /// Stream offset of record `index` (0-based), once it was seen.
    pub fn record_stream_offset(&self, index: usize) -> Option<u64> {
        self.seen.get(index).map(|s| s.stream_offset)
    }

    /// Records (`w` and `z`) started so far.
    pub fn records(&self) -> u64 {
        self.count
    }

    /// The first fault found so far.
    pub fn fault(&self) -> Option<StreamFault> {
        self.fault
    }

    /// The manifest the stream carried (v2 `H`/`K` records or a v1 trailer),
    /// if complete.
    pub fn carried(&self) -> Option<&Manifest> {
        (self.found_hashes && self.found.checksum.is_some()).then_some(&self.found)
    }

    fn fail(&mut self, f: StreamFault) {
        if self.fault.is_none() {
            self.fault = Some(f);
        }
    }

    fn close_record(&mut self) {
        if let Some((mut seen, post, _)) = self.record.take() {
            seen.post = match post {
                Post::Known(h) => h,
                Post::Zeros(len) => {
                    let index = self.seen.len();
                    let named = self.preloaded.as_ref().is_some_and(|m| {
                        m.entries
                            .get(index)
                            .is_some_and(|e| e.offset == seen.offset && e.len == len)
                    });
                    // Unnamed: hashed at the end if carried integrity data names it.
                    seen.zero = !named;
                    if named {
                        self.zero_post(&seen, index)
                    } else {
                        0
                    }
                }
                Post::Payload(h) => {
                    let digest = match (&self.preloaded, self.deferred) {
                        (Some(m), true) => m
                            .entries
                            .get(self.seen.len())
                            .filter(|e| e.offset == seen.offset && e.len == seen.len)
                            .map_or(0, |e| e.post),
                        _ => h.digest(),
                    };
                    self.stream.payload(seen.len, digest);
                    digest
                }
            };
            let index = self.seen.len();
            if let Some(m) = &self.preloaded {
                match m.entries.get(index) {
                    Some(e) if e.offset == seen.offset && e.len == seen.len => {
                        if e.post != seen.post {
                            self.fail(StreamFault::Payload {
                                stream_offset: seen.stream_offset,
                                index,
                                offset: seen.offset,
                            });
                        }
                    }
                    _ => self.fail(StreamFault::Record {
                        stream_offset: seen.stream_offset,
                        index,
                    }),
                }
            }
            self.seen.push(seen);
        }
    }

    /// Feed one event and the raw bytes consumed for it.
    pub fn event(&mut self, offset: u64, ev: &Event<'_>, raw: &[u8]) {
        if !matches!(ev, Event::Data { .. }) {
            // A record's payload is complete once any other event comes.
            if let Some((_, _, left)) = &self.record
                && *left == 0
            {
                self.close_record();
            }
        }
        if !matches!(ev, Event::UnknownData(_)) {
            self.in_ext = None;
        }
        match *ev {
            Event::DiffBegin { .. } => {
                self.stream.reset();
            }
            Event::Size(size) => self.size = size,
            Event::Write { offset: o, len } => {
                self.count += 1;
                self.record = Some((
                    Seen {
                        stream_offset: offset,
                        offset: o,
                        len,
                        post: 0,
                        zero: false,
                    },
                    Post::Payload(Hasher::new()),
                    len,
                ));
                self.stream.update(raw);
                if len == 0 {
                    self.close_record();
                }
                return;
            }
            Event::Data { bytes, .. } => {
                // Hashed once, here; the checksum gets the payload's hash.
                if let Some((_, post, left)) = &mut self.record {
                    if let (Post::Payload(h), false) = (post, self.deferred) {
                        h.update(bytes);
                    }
                    *left -= bytes.len() as u64;
                }
                return;
            }
            Event::Zero { offset: o, len } => {
                self.count += 1;
                let h = Post::Zeros(len);
                self.record = Some((
                    Seen {
                        stream_offset: offset,
                        offset: o,
                        len,
                        post: 0,
                        zero: false,
                    },
                    h,
                    0,
                ));
                self.stream.update(raw);
                self.close_record();
                return;
            }
            Event::Unknown { tag, len: Some(_) } if tag == TAG_HASHES || tag == TAG_CHECKSUM => {
                if tag == TAG_CHECKSUM {
                    self.mark_k = Some((self.stream.bytes(), self.stream.digest()));
                }
                self.in_ext = Some(tag);
            }
            Event::UnknownData(b) => match self.in_ext {
                Some(TAG_HASHES) => {
                    let found = &mut self.found;
                    if let Err(e) = self.hashes.push(b, |it| match it {
                        Parsed::Header(h) => found.base_size = h.base_size,
                        Parsed::Entry(e) => found.entries.push(e),
                    }) {
                        self.fail(StreamFault::Malformed(e));
                    }
                    self.found_hashes = self.hashes.finish().is_ok();
                }
                Some(_) => {
                    self.check_buf.extend_from_slice(b);
                    if self.check_buf.len() > CHECKSUM_LEN {
                        self.fail(StreamFault::Malformed(IntegrityError::Truncated));
                    } else if self.check_buf.len() == CHECKSUM_LEN {
                        match Checksum::from_bytes(&self.check_buf) {
                            Ok(c) => self.found.checksum = Some(c),
                            Err(e) => self.fail(StreamFault::Malformed(e)),
                        }
                    }
                }
                None => {}
            },
            Event::DiffEnd => {
                self.stream.update(raw);
                self.ended = true;
                self.mark_e = Some((self.stream.bytes(), self.stream.digest()));
                return;
            }
            Event::Trailing(b) => {
                self.trailing(b);
                return;
            }
            _ => {}
        }
        self.stream.update(raw);
    }

    /// Feed bytes that follow the `e` of a v1 stream (its trailer), when they
    /// are not decoded as [`Event::Trailing`]. Memory stays bounded by the
    /// trailer this diff can have ([`trailer_limit`](Self::trailer_limit)):
    /// past that, the bytes cannot be its trailer and only the last few
    /// are kept (to tell a footer).
    pub fn trailing(&mut self, b: &[u8]) {
        self.trailing_bytes = self.trailing_bytes.saturating_add(b.len() as u64);
        if self.trailing_bytes <= self.trailer_limit() {
            self.trailer.extend_from_slice(b);
            return;
        }
        if b.len() >= FOOTER_LEN {
            self.trailer.clear();
            self.trailer.extend_from_slice(&b[b.len() - FOOTER_LEN..]);
        } else {
            self.trailer.extend_from_slice(b);
            let n = self.trailer.len();
            self.trailer.drain(..n.saturating_sub(FOOTER_LEN));
        }
        self.trailer.shrink_to(FOOTER_LEN);
    }

    /// The longest v1 trailer this diff can have (its records so far):
    /// bytes after the `e` beyond that are not one. A reader of a pipe
    /// needs to read no more than one byte past it.
    pub fn trailer_limit(&self) -> u64 {
        trailer_len(self.count).min(MAX_MANIFEST_BYTES + FOOTER_LEN as u64)
    }

    /// [`trailing`](Self::trailing) with what follows the `e` in `r`: at
    /// most [`trailer_limit`](Self::trailer_limit) bytes plus one are read
    /// (the rest, if any, is not a trailer and is left unread).
    #[cfg(feature = "std")]
    pub fn read_trailing<R: std::io::Read>(&mut self, r: R) -> std::io::Result<()> {
        let left = (self.trailer_limit() + 1).saturating_sub(self.trailing_bytes);
        let mut r = std::io::Read::take(r, left);
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match std::io::Read::read(&mut r, &mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.trailing(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The v1 trailer that followed the `e`, if the bytes there are meant as
    /// one (end with a footer). Bytes that do not end with a footer, or
    /// more than this diff's trailer can have, are not integrity data (as
    /// for a file, whose end is read first: [`read_tail`]).
    fn take_trailer(&mut self) -> Option<Result<Manifest, IntegrityError>> {
        let n = self.trailer.len();
        if self.trailing_bytes > self.trailer_limit()
            || n < FOOTER_LEN
            || parse_footer(&self.trailer[n - FOOTER_LEN..]).is_none()
        {
            return None;
        }
        Some(Manifest::from_trailer(&core::mem::take(&mut self.trailer)))
    }

    /// The post-image hash of the `z` record `s`, which integrity data names:
    /// a record reaching past the image size fails (no honest sealer makes
    /// one) instead of hashing up to 2^64 zero bytes.
    fn zero_post(&mut self, s: &Seen, index: usize) -> u128 {
        if s.offset.saturating_add(s.len) > self.size {
            self.fail(StreamFault::Record {
                stream_offset: s.stream_offset,
                index,
            });
            return 0;
        }
        self.zeros.get(s.len)
    }

    /// Final checks; returns the manifest used (preloaded or carried).
    pub fn finish(mut self) -> Result<Option<Manifest>, StreamFault> {
        self.close_record();
        if !(self.found_hashes && self.found.checksum.is_some()) {
            match self.take_trailer() {
                Some(Ok(m)) => {
                    self.found = m;
                    self.found_hashes = true;
                }
                Some(Err(e)) => self.fail(StreamFault::Malformed(e)),
                None => {}
            }
        }
        if let Some(f) = self.fault {
            return Err(f);
        }
        let carried = self.found_hashes && self.found.checksum.is_some();
        let manifest = match (self.preloaded.take(), carried) {
            (Some(m), _) => m,
            (None, true) => core::mem::take(&mut self.found),
            (None, false) => return Ok(None),
        };
        if manifest.entries.len() as u64 != self.count {
            return Err(StreamFault::Count {
                expected: manifest.entries.len() as u64,
                actual: self.count,
            });
        }
        let mut seen = core::mem::take(&mut self.seen);
        for (index, (e, s)) in manifest.entries.iter().zip(&mut seen).enumerate() {
            if e.offset != s.offset || e.len != s.len {
                return Err(StreamFault::Record {
                    stream_offset: s.stream_offset,
                    index,
                });
            }
            if s.zero {
                s.post = self.zero_post(s, index);
                if let Some(f) = self.fault {
                    return Err(f);
                }
            }
            if e.post != s.post {
                return Err(StreamFault::Payload {
                    stream_offset: s.stream_offset,
                    index,
                    offset: s.offset,
                });
            }
        }
        // In-band v2 checksums (hashes_offset > 0) cover the stream up to the
        // `K` record; trailers and sidecars cover it up to the `e`.
        if let Some(c) = manifest.checksum {
            let mark = if c.hashes_offset > 0 {
                self.mark_k
            } else {
                self.mark_e
            };
            match mark {
                Some((bytes, hash)) if c.stream_bytes == bytes && c.hash == hash => {}
                Some((bytes, _)) => return Err(StreamFault::Checksum { bytes }),
                None => return Err(StreamFault::Checksum { bytes: 0 }),
            }
        }
        Ok(Some(manifest))
    }
}

/// Why [`seal_stream`] failed.
#[cfg(feature = "std")]
#[derive(Debug)]
pub enum SealError<E> {
    /// Reading or decoding the diff failed.
    Read(crate::reader::ReadError),
    /// Reading the base image failed.
    Base(E),
    /// The stream is an image v2 export (seal its diffs one by one instead).
    NotADiff,
}

#[cfg(feature = "std")]
impl<E: core::fmt::Display> core::fmt::Display for SealError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SealError::Read(e) => e.fmt(f),
            SealError::Base(e) => write!(f, "reading the base image failed: {e}"),
            SealError::NotADiff => f.write_str("only diff streams (v1 or v2) can be sealed"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for SealError<E> {}

/// Builds the integrity manifest of an existing diff (for instance one made
/// by real `rbd`) given the base image it applies to (`None`: a diff from
/// image creation, applied to zeros). The checksum covers the diff from its
/// banner to its `e` inclusive, as in a v1 trailer or sidecar.
#[cfg(feature = "std")]
pub fn seal_stream<R: std::io::Read, B: BlockSource + ?Sized>(
    reader: R,
    mut base: Option<&mut B>,
) -> Result<Manifest, SealError<B::Error>> {
    let config = crate::Config::rbd_compatible().with_formats(crate::FormatSet::DIFFS);
    let mut events = crate::reader::EventReader::new(reader, config);
    let mut m = Manifest {
        base_size: base.as_ref().map(|b| b.size()),
        ..Manifest::default()
    };
    let mut stream = StreamHasher::new();
    let mut zeros = ZeroHash::default();
    // The open record: offset, length, pre-image hash, post-image hash.
    let mut cur: Option<(u64, u64, u128, Post)> = None;
    let mut buf = vec![];
    let close =
        |m: &mut Manifest, cur: &mut Option<(u64, u64, u128, Post)>, stream: &mut StreamHasher| {
            if let Some((offset, len, pre, post)) = cur.take() {
                let post = match post {
                    Post::Known(h) => h,
                    Post::Zeros(n) => super::hash_zeros(n),
                    Post::Payload(h) => {
                        let d = h.digest();
                        stream.payload(len, d);
                        d
                    }
                };
                m.entries.push(Entry {
                    offset,
                    len,
                    pre,
                    post,
                });
            }
        };
    while let Some((_, ev, raw)) = events.next_event_raw().map_err(SealError::Read)? {
        if let Event::Data { bytes, .. } = ev {
            if let Some((.., Post::Payload(h))) = cur.as_mut() {
                h.update(bytes);
            }
            continue;
        }
        close(&mut m, &mut cur, &mut stream);
        stream.update(raw);
        match ev {
            Event::Banner(crate::Format::ImageV2) => return Err(SealError::NotADiff),
            Event::Write { offset, len } | Event::Zero { offset, len } => {
                let pre = match base.as_deref_mut() {
                    Some(b) => hash_range(b, offset, len, &mut buf).map_err(SealError::Base)?,
                    None => zeros.get(len),
                };
                let post = match ev {
                    Event::Zero { .. } => Post::Known(zeros.get(len)),
                    _ => Post::Payload(Hasher::new()),
                };
                cur = Some((offset, len, pre, post));
            }
            _ => {}
        }
    }
    close(&mut m, &mut cur, &mut stream);
    m.checksum = Some(Checksum {
        records: m.entries.len() as u64,
        stream_bytes: stream.bytes(),
        hash: stream.digest(),
        hashes_offset: 0,
    });
    Ok(m)
}

/// Largest integrity payload read into memory (22 million records).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// Finds integrity data at the end of a diff file: a v1 trailer (footer
/// `rbdiff integrity\n`) or the `H`/`K` records of a v2 diff just before
/// its `e`. Returns `None` when there is none. Leaves the file position
/// anywhere: seek before reading the stream.
#[cfg(feature = "std")]
pub fn read_tail<F: std::io::Read + std::io::Seek>(f: &mut F) -> std::io::Result<Option<Manifest>> {
    use std::io::{Error, ErrorKind, SeekFrom};
    let len = f.seek(SeekFrom::End(0))?;
    let bad = |e: IntegrityError| Error::new(ErrorKind::InvalidData, e);
    let read_at = |f: &mut F, off: u64, n: usize| -> std::io::Result<Vec<u8>> {
        f.seek(SeekFrom::Start(off))?;
        let mut b = vec![0; n];
        f.read_exact(&mut b)?;
        Ok(b)
    };
    if len >= FOOTER_LEN as u64 {
        let foot = read_at(f, len - FOOTER_LEN as u64, FOOTER_LEN)?;
        if let Some(plen) = parse_footer(&foot) {
            // Bounded: the trailer cannot be longer than the file.
            if plen > len - FOOTER_LEN as u64 || plen > MAX_MANIFEST_BYTES {
                return Err(bad(IntegrityError::Truncated));
            }
            let start = len - FOOTER_LEN as u64 - plen;
            let n = usize::try_from(plen + FOOTER_LEN as u64)
                .map_err(|_| bad(IntegrityError::Truncated))?;
            let b = read_at(f, start, n)?;
            return Manifest::from_trailer(&b).map(Some).map_err(bad);
        }
    }
    const K_TOTAL: usize = 1 + 8 + CHECKSUM_LEN + 1;
    let k_total = K_TOTAL as u64;
    if len < k_total {
        return Ok(None);
    }
    let k = read_at(f, len - k_total, K_TOTAL)?;
    if k[0] != TAG_CHECKSUM
        || le64(&k[1..9]) != CHECKSUM_LEN as u64
        || k[k.len() - 1] != crate::format::tag::END
    {
        return Ok(None);
    }
    let Ok(c) = Checksum::from_bytes(&k[9..9 + CHECKSUM_LEN]) else {
        return Ok(None);
    };
    let h_at = c.hashes_offset;
    if h_at == 0 || h_at + 9 > len - k_total {
        return Err(bad(IntegrityError::Truncated));
    }
    let head = read_at(f, h_at, 9)?;
    let hlen = le64(&head[1..9]);
    if head[0] != TAG_HASHES || hlen > MAX_MANIFEST_BYTES || h_at + 9 + hlen != len - k_total {
        return Err(bad(IntegrityError::Truncated));
    }
    let n = usize::try_from(hlen).map_err(|_| bad(IntegrityError::Truncated))?;
    let payload = read_at(f, h_at + 9, n)?;
    let mut m = Manifest::from_hashes(&payload).map_err(bad)?;
    m.checksum = Some(c);
    Ok(Some(m))
}
