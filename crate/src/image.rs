//! Block images: apply a diff to one, or compute a diff between two.
//!
//! Both engines are written once against two small traits,
//! [`BlockSource`] (read side) and [`BlockSink`] (write side). `Vec<u8>` is
//! the naive in-memory model; [`FileImage`] (feature `std`) is a raw image
//! file, on Linux, macOS and WASI alike.

use crate::decode::Event;
use crate::encode::{DiffHeader, EncodeError, Encoder, Sink};
use crate::format::Format;
use crate::integrity::{Checksum, HashingSink, Manifest, TAG_CHECKSUM, TAG_HASHES};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// A readable image.
pub trait BlockSource {
    /// The source's error.
    type Error;
    /// Image size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; bytes past the size read as zeros.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// The first allocated region `(start, end)` at or after `offset`, if the
    /// source knows its holes; the default says everything is data.
    fn next_data(&mut self, offset: u64) -> Result<Option<(u64, u64)>, Self::Error> {
        Ok((offset < self.size()).then(|| (offset, self.size())))
    }
    /// Hand the bytes `[offset, offset + len)` (within the size) to `f` in
    /// order, as one or more slices, without copying them where the source
    /// can: a slice hands itself, a [`FileImage`] maps the file on Linux.
    /// `Ok(false)`: the source has no such path and nothing was handed (the
    /// caller reads with [`read_at`](Self::read_at)); the default.
    fn view(
        &mut self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, Self::Error> {
        let _ = (offset, len, f);
        Ok(false)
    }
}

/// Hand `[offset, end)` of `src` to `f`, read into `buf` (not empty) a
/// `buf.len()` bytes at a time: what [`BlockSource::view`] falls back to.
pub(crate) fn read_through<S: BlockSource + ?Sized>(
    src: &mut S,
    mut offset: u64,
    end: u64,
    buf: &mut [u8],
    f: &mut dyn FnMut(&[u8]),
) -> Result<(), S::Error> {
    while offset < end {
        let n = usize_of(end - offset).min(buf.len());
        src.read_at(offset, &mut buf[..n])?;
        f(&buf[..n]);
        offset += n as u64;
    }
    Ok(())
}

/// A writable image.
pub trait BlockSink {
    /// The sink's error.
    type Error;
    /// Image size in bytes.
    fn size(&self) -> u64;
    /// Grow (with zeros) or shrink the image.
    fn set_size(&mut self, size: u64) -> Result<(), Self::Error>;
    /// Write `data` at `offset` (within the size).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;
    /// Make `len` bytes at `offset` read as zeros (within the size).
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), Self::Error>;
    /// Make everything written durable.
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl BlockSource for [u8] {
    type Error = core::convert::Infallible;
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        read_slice(self, offset, buf);
        Ok(())
    }
    fn view(
        &mut self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, Self::Error> {
        let start = usize_of(offset).min(self.len());
        let end = usize_of(offset.saturating_add(len)).min(self.len());
        f(&self[start..end]);
        Ok(true)
    }
}

impl BlockSource for Vec<u8> {
    type Error = core::convert::Infallible;
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.as_mut_slice().read_at(offset, buf)
    }
    fn view(
        &mut self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, Self::Error> {
        self.as_mut_slice().view(offset, len, f)
    }
}

fn read_slice(src: &[u8], offset: u64, buf: &mut [u8]) {
    buf.fill(0);
    if offset < src.len() as u64 {
        let o = usize_of(offset);
        let n = (src.len() - o).min(buf.len());
        buf[..n].copy_from_slice(&src[o..o + n]);
    }
}

impl BlockSink for Vec<u8> {
    type Error = core::convert::Infallible;
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn set_size(&mut self, size: u64) -> Result<(), Self::Error> {
        self.resize(usize_of(size), 0);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        let o = usize_of(offset);
        self[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), Self::Error> {
        let o = usize_of(offset);
        self[o..o + usize_of(len)].fill(0);
        Ok(())
    }
}

/// True if every byte is zero.
///
/// Checks 256-byte blocks (OR of 32 words, which LLVM turns into SIMD ORs)
/// with an early exit per block; on wasm32 with `simd128` it uses `v128`
/// loads directly, which Cranelift compiles to SSE/NEON.
#[inline]
pub fn is_zero(buf: &[u8]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        is_zero_simd128(buf)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut blocks = buf.chunks_exact(256);
        for b in &mut blocks {
            let mut acc = 0u64;
            for w in b.chunks_exact(8) {
                let mut a = [0u8; 8];
                a.copy_from_slice(w);
                acc |= u64::from_ne_bytes(a);
            }
            if acc != 0 {
                return false;
            }
        }
        blocks.remainder().iter().fold(0, |a, &b| a | b) == 0
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn is_zero_simd128(buf: &[u8]) -> bool {
    use core::arch::wasm32::{v128, v128_any_true, v128_load, v128_or};
    let mut blocks = buf.chunks_exact(64);
    for b in &mut blocks {
        let p = b.as_ptr().cast::<v128>();
        // SAFETY: `b` is 64 readable bytes; `v128_load` accepts unaligned
        // pointers.
        let (x0, x1, x2, x3) = unsafe {
            (
                v128_load(p),
                v128_load(p.add(1)),
                v128_load(p.add(2)),
                v128_load(p.add(3)),
            )
        };
        if v128_any_true(v128_or(v128_or(x0, x1), v128_or(x2, x3))) {
            return false;
        }
    }
    blocks.remainder().iter().fold(0, |a, &b| a | b) == 0
}

/// `a == b`. On wasm32 `memcmp` is a byte loop: there, 64-byte blocks are
/// compared as `v128` (with `simd128`) or `u64` words instead.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        if a.len() != b.len() {
            return false;
        }
        let mut xa = a.chunks_exact(64);
        let mut xb = b.chunks_exact(64);
        for (x, y) in (&mut xa).zip(&mut xb) {
            if !same_64(x, y) {
                return false;
            }
        }
        xa.remainder() == xb.remainder()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        a == b
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn same_64(x: &[u8], y: &[u8]) -> bool {
    use core::arch::wasm32::{v128, v128_any_true, v128_load, v128_or, v128_xor};
    debug_assert!(x.len() == 64 && y.len() == 64);
    let (p, q) = (x.as_ptr().cast::<v128>(), y.as_ptr().cast::<v128>());
    // SAFETY: both slices are 64 readable bytes; `v128_load` accepts
    // unaligned pointers.
    let d = unsafe {
        v128_or(
            v128_or(
                v128_xor(v128_load(p), v128_load(q)),
                v128_xor(v128_load(p.add(1)), v128_load(q.add(1))),
            ),
            v128_or(
                v128_xor(v128_load(p.add(2)), v128_load(q.add(2))),
                v128_xor(v128_load(p.add(3)), v128_load(q.add(3))),
            ),
        )
    };
    !v128_any_true(d)
}

#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
#[inline]
fn same_64(x: &[u8], y: &[u8]) -> bool {
    let mut acc = 0u64;
    for (p, q) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
        a.copy_from_slice(p);
        b.copy_from_slice(q);
        acc |= u64::from_ne_bytes(a) ^ u64::from_ne_bytes(b);
    }
    acc == 0
}

/// What applying did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ApplyStats {
    /// `w` and `z` records applied.
    pub records: u64,
    /// Bytes written as data.
    pub data_bytes: u64,
    /// Bytes written as zeros (`z` records and zero chunks of `w` records).
    pub zero_bytes: u64,
    /// Image size at the end.
    pub size: u64,
}

/// Why applying failed.
#[derive(Debug, PartialEq, Eq)]
pub enum ApplyError<E> {
    /// The sink failed.
    Sink(E),
    /// A record lies entirely past the image size (rbd: EINVAL).
    BeyondSize {
        /// Record offset.
        offset: u64,
        /// Record length.
        len: u64,
        /// Image size.
        size: u64,
    },
}

impl<E: fmt::Display> fmt::Display for ApplyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::Sink(e) => write!(f, "write failed: {e}"),
            ApplyError::BeyondSize { offset, len, size } => write!(
                f,
                "record at {offset} (+{len}) lies past the image size {size}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl<E: fmt::Debug + fmt::Display> std::error::Error for ApplyError<E> {}

#[derive(Clone, Copy, Debug)]
struct WriteState {
    /// Record start (sparse chunks are counted from here, as rbd does).
    start: u64,
    /// Record end.
    end: u64,
    /// Index of the chunk whose state `chunk_data` describes.
    chunk: u64,
    /// The current chunk had a non-zero byte.
    chunk_data: bool,
}

/// Applies decoded events to a [`BlockSink`] the way `rbd import-diff` does:
/// `s` resizes at once; a `w` payload is cut in `sparse_size` chunks counted
/// from the record start, all-zero chunks become `write_zeroes`, the rest are
/// written; `z` becomes `write_zeroes`; records straddling the size are
/// clipped and records wholly past it fail.
///
/// Snapshot checks (`f` must exist, `t` must not) belong to the caller, which
/// sees the same events.
#[derive(Clone, Debug)]
pub struct Applier {
    sparse: u64,
    write: Option<WriteState>,
    pending_zero: Option<(u64, u64)>,
    stats: ApplyStats,
}

impl Applier {
    /// An applier; `sparse_size` 0 writes every payload byte as data
    /// (rbd's default is 4096).
    pub fn new(sparse_size: u64) -> Self {
        Applier {
            sparse: sparse_size,
            write: None,
            pending_zero: None,
            stats: ApplyStats::default(),
        }
    }

    /// What was done so far.
    pub fn stats(&self) -> ApplyStats {
        self.stats
    }

    /// Where the zeroing still pending starts (runs of zeros are joined
    /// across records and written later); every other byte of the records
    /// applied so far has reached the sink.
    pub fn pending_zero_start(&self) -> Option<u64> {
        self.pending_zero.map(|(s, _)| s)
    }

    /// Write the zeroing still pending (see
    /// [`pending_zero_start`](Self::pending_zero_start)), without flushing
    /// the sink.
    pub fn flush_zero<K: BlockSink>(&mut self, sink: &mut K) -> Result<(), ApplyError<K::Error>> {
        if let Some((s, e)) = self.pending_zero.take()
            && e > s
        {
            sink.write_zeroes(s, e - s).map_err(ApplyError::Sink)?;
            self.stats.zero_bytes += e - s;
        }
        Ok(())
    }

    fn zero_range<K: BlockSink>(
        &mut self,
        sink: &mut K,
        s: u64,
        e: u64,
    ) -> Result<(), ApplyError<K::Error>> {
        match self.pending_zero {
            Some((ps, pe)) if pe == s => self.pending_zero = Some((ps, e)),
            _ => {
                self.flush_zero(sink)?;
                self.pending_zero = Some((s, e));
            }
        }
        Ok(())
    }

    /// Check a record against the current size: `Some(clipped end)`, `None`
    /// when empty.
    fn clip<K: BlockSink>(
        sink: &K,
        offset: u64,
        len: u64,
    ) -> Result<Option<u64>, ApplyError<K::Error>> {
        if len == 0 {
            return Ok(None);
        }
        let size = sink.size();
        if offset >= size {
            return Err(ApplyError::BeyondSize { offset, len, size });
        }
        Ok(Some(offset.saturating_add(len).min(size)))
    }

    /// Apply one event.
    pub fn event<K: BlockSink>(
        &mut self,
        sink: &mut K,
        ev: &Event<'_>,
    ) -> Result<(), ApplyError<K::Error>> {
        match *ev {
            Event::Data { offset, bytes } => return self.data(sink, offset, bytes),
            Event::Size(s) => {
                self.flush_zero(sink)?;
                if sink.size() != s {
                    sink.set_size(s).map_err(ApplyError::Sink)?;
                }
            }
            Event::Write { offset, len } => {
                self.flush_zero(sink)?;
                self.stats.records += 1;
                if Self::clip(sink, offset, len)?.is_some() {
                    self.write = Some(WriteState {
                        start: offset,
                        end: offset + len,
                        chunk: 0,
                        chunk_data: false,
                    });
                }
            }
            Event::Zero { offset, len } => {
                self.stats.records += 1;
                if let Some(end) = Self::clip(sink, offset, len)? {
                    self.zero_range(sink, offset, end)?;
                }
            }
            Event::DiffEnd => {
                self.flush_zero(sink)?;
                self.write = None;
            }
            _ => {}
        }
        self.stats.size = sink.size();
        Ok(())
    }

    fn data<K: BlockSink>(
        &mut self,
        sink: &mut K,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), ApplyError<K::Error>> {
        let Some(mut w) = self.write else {
            return Ok(());
        };
        let size = sink.size();
        let mut o = offset;
        let mut at = 0;
        // Consecutive data pieces are written with one `write_at`:
        // (image offset, start, end in `bytes`).
        let mut run: Option<(u64, usize, usize)> = None;
        while at < bytes.len() {
            // The piece up to the end of the current sparse chunk.
            let (chunk, chunk_end) = match (o - w.start).checked_div(self.sparse) {
                None => (0, w.end),
                Some(c) => (
                    c,
                    w.start
                        .saturating_add((c + 1).saturating_mul(self.sparse))
                        .min(w.end),
                ),
            };
            if chunk != w.chunk {
                w.chunk = chunk;
                w.chunk_data = false;
            }
            let n = usize_of(chunk_end - o).min(bytes.len() - at);
            let piece = &bytes[at..at + n];
            let clipped = usize_of(size.saturating_sub(o)).min(n);
            if clipped > 0 {
                if self.sparse == 0 || w.chunk_data || !is_zero(piece) {
                    w.chunk_data = true;
                    match &mut run {
                        Some((_, _, end)) if *end == at => *end = at + clipped,
                        _ => {
                            self.write_run(sink, bytes, run.take())?;
                            self.flush_zero(sink)?;
                            run = Some((o, at, at + clipped));
                        }
                    }
                } else {
                    self.write_run(sink, bytes, run.take())?;
                    self.zero_range(sink, o, o + clipped as u64)?;
                }
            }
            o += n as u64;
            at += n;
        }
        self.write_run(sink, bytes, run)?;
        if o >= w.end {
            self.write = None;
        } else {
            self.write = Some(w);
        }
        Ok(())
    }

    fn write_run<K: BlockSink>(
        &mut self,
        sink: &mut K,
        bytes: &[u8],
        run: Option<(u64, usize, usize)>,
    ) -> Result<(), ApplyError<K::Error>> {
        if let Some((off, s, e)) = run {
            sink.write_at(off, &bytes[s..e]).map_err(ApplyError::Sink)?;
            self.stats.data_bytes += (e - s) as u64;
        }
        Ok(())
    }

    /// Flush pending zeroes (call at the end of the stream).
    pub fn finish<K: BlockSink>(
        &mut self,
        sink: &mut K,
    ) -> Result<ApplyStats, ApplyError<K::Error>> {
        self.flush_zero(sink)?;
        sink.flush().map_err(ApplyError::Sink)?;
        self.stats.size = sink.size();
        Ok(self.stats)
    }
}

/// Options of [`export_diff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// Object size: records never cross an object boundary (rbd: 4 MiB).
    pub object_size: u64,
    /// Report every changed object whole (`--whole-object`).
    pub whole_object: bool,
    /// Changed runs closer than this are reported as one record.
    pub merge_gap: u64,
    /// [`export_diff_sealed`] makes its hashes on a second thread (with
    /// `std`, when one can be started, for objects up to 32 MiB); else on
    /// the exporting thread.
    pub hash_thread: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            object_size: 4 << 20,
            whole_object: false,
            merge_gap: 4096,
            hash_thread: true,
        }
    }
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ExportStats {
    /// `w` records.
    pub writes: u64,
    /// `z` records.
    pub zeros: u64,
    /// Payload bytes of `w` records.
    pub data_bytes: u64,
    /// Bytes covered by `z` records.
    pub zero_bytes: u64,
}

/// Why an export failed.
#[derive(Debug)]
pub enum ExportError<R, W> {
    /// Reading an image failed.
    Read(R),
    /// Writing the stream failed.
    Write(EncodeError<W>),
    /// The object size is 0 or does not fit in memory.
    ObjectSize(u64),
}

impl<R: fmt::Display, W: fmt::Display> fmt::Display for ExportError<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Read(e) => write!(f, "read failed: {e}"),
            ExportError::Write(e) => e.fmt(f),
            ExportError::ObjectSize(s) => write!(f, "unusable object size {s}"),
        }
    }
}

#[cfg(feature = "std")]
impl<R: fmt::Debug + fmt::Display, W: fmt::Debug + fmt::Display> std::error::Error
    for ExportError<R, W>
{
}

/// The span `(first, last)` of `[start, end)` holding data in `src`
/// (per [`BlockSource::next_data`]), `None` if it is all hole.
fn data_span<A: BlockSource + ?Sized>(
    src: &mut A,
    start: u64,
    end: u64,
) -> Result<Option<(u64, u64)>, A::Error> {
    let mut first = None;
    let mut last = start;
    let mut p = start;
    while p < end {
        match src.next_data(p)? {
            Some((s, e)) if s < end && e > s.max(p) => {
                first.get_or_insert(s.max(start));
                last = e.min(end);
                p = e;
            }
            _ => break,
        }
    }
    Ok(first.map(|f| (f, last)))
}

/// Changed byte runs `[start, end)` of `to` against `from` (or zeros),
/// compared in 4 KiB blocks, runs closer than `gap` joined.
fn changed_runs(to: &[u8], from: Option<&[u8]>, gap: usize, out: &mut Vec<(usize, usize)>) {
    const BLOCK: usize = 4096;
    out.clear();
    let mut run: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < to.len() {
        let e = (i + BLOCK).min(to.len());
        let t = &to[i..e];
        let same = match from {
            Some(f) => same_bytes(t, &f[i..e]),
            None => is_zero(t),
        };
        if !same {
            let differs = |k: usize| match from {
                Some(f) => to[k] != f[k],
                None => to[k] != 0,
            };
            let first = (i..e).find(|&k| differs(k)).unwrap_or(i);
            let last = (i..e).rev().find(|&k| differs(k)).unwrap_or(e - 1) + 1;
            run = match run {
                Some((s, re)) if first - re < gap => Some((s, last)),
                Some(r) => {
                    out.push(r);
                    Some((first, last))
                }
                None => Some((first, last)),
            };
        }
        i = e;
    }
    out.extend(run);
}

/// Computes the diff from `from` (or an all-zero image when `None`) to
/// `to` and writes it, header to `e`, into `enc`: `f`/`t`/`p` from `header`,
/// `s` = `to`'s size unless given. Records are ascending, never cross an
/// object boundary, and all-zero extents are `z` records, the shape
/// `rbd export-diff` produces. `progress(done, total)` is called per object.
pub fn export_diff<A, B, S>(
    from: Option<&mut A>,
    to: &mut B,
    header: &DiffHeader<'_>,
    opts: &ExportOptions,
    enc: &mut Encoder<S>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportStats, ExportError<A::Error, S::Error>>
where
    A: BlockSource + ?Sized,
    B: BlockSource<Error = A::Error> + ?Sized,
    S: Sink,
{
    let mut none = |_: &Exported<'_>, _: &mut Encoder<S>| {};
    let stats = export_records(from, to, header, opts, enc, progress, &mut none)?;
    enc.end_diff().map_err(ExportError::Write)?;
    Ok(stats)
}

/// One record written by [`export_records`]: its range, the bytes it
/// carries (zeros for `z`) and the base image's bytes there (`None` when
/// diffing from zeros).
#[derive(Clone, Copy, Debug)]
pub struct Exported<'a> {
    /// Image offset.
    pub offset: u64,
    /// The record's bytes.
    pub data: &'a [u8],
    /// The base's bytes in the same range.
    pub base: Option<&'a [u8]>,
    /// True for a `z` record (`data` is all zeros).
    pub zero: bool,
    /// Where `data` (and `base`) start in the object's bytes (the
    /// positions [`ExportHooks::read`] got them at).
    pub at: usize,
}

/// Size of the pieces [`export_records`] reads (and hands to
/// [`ExportHooks::read`]): small enough to stay in a CPU cache.
pub const READ_PIECE: usize = 256 << 10;

/// What [`export_records`] calls while it reads and writes.
pub trait ExportHooks<S: Sink> {
    /// A piece of an object was read: the new image's bytes at `at` in the
    /// object (and the base's, when diffing from a base image). The pieces
    /// of an object come in order and cover the part of it that is read;
    /// then come its records.
    fn read(&mut self, at: usize, to: &[u8], base: Option<&[u8]>) {
        let _ = (at, to, base);
    }

    /// One record: for a `w` after its header and before its payload is
    /// written, for a `z` after it.
    fn record(&mut self, rec: &Exported<'_>, enc: &mut Encoder<S>);

    /// The object is done (the next `read` is of another object). `to` and
    /// `base` are the buffers it was read into (`base` is empty when
    /// diffing from zeros): a hook may swap them for buffers of the same
    /// lengths, to look at them on another thread.
    fn object_done(&mut self, to: &mut Vec<u8>, base: &mut Vec<u8>, enc: &mut Encoder<S>) {
        let _ = (to, base, enc);
    }
}

impl<S: Sink, F: FnMut(&Exported<'_>, &mut Encoder<S>)> ExportHooks<S> for F {
    fn record(&mut self, rec: &Exported<'_>, enc: &mut Encoder<S>) {
        self(rec, enc)
    }
}

/// The 4 KiB-aligned span `[lo, hi)` of the object `[start, end)` (offsets
/// in the object) holding data in either image: only it is read and
/// compared, the rest is a hole in both, zeros on both sides.
fn object_span<A, B, E>(
    to: &mut B,
    from: Option<&mut A>,
    start: u64,
    end: u64,
) -> Result<(usize, usize), ExportError<A::Error, E>>
where
    A: BlockSource + ?Sized,
    B: BlockSource<Error = A::Error> + ?Sized,
{
    let n = usize_of(end - start);
    let mut span = data_span(to, start, end).map_err(ExportError::Read)?;
    if let Some(src) = from {
        span = match (span, data_span(src, start, end).map_err(ExportError::Read)?) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (x, y) => x.or(y),
        };
    }
    Ok(match span {
        Some((a, b)) => {
            let lo = usize_of(a - start) / 4096 * 4096;
            (
                lo,
                usize_of(b - start)
                    .div_ceil(4096)
                    .saturating_mul(4096)
                    .min(n),
            )
        }
        None => (0, 0),
    })
}

/// Writes the records of one object's changed `runs` (offsets in the
/// object at `start`; `t` the new bytes, `f` the base's), calling
/// `hooks.record` for each.
fn emit_runs<R, S: Sink>(
    runs: &[(usize, usize)],
    start: u64,
    t: &[u8],
    f: Option<&[u8]>,
    enc: &mut Encoder<S>,
    hooks: &mut dyn ExportHooks<S>,
    stats: &mut ExportStats,
) -> Result<(), ExportError<R, S::Error>> {
    for &(s, e) in runs {
        let piece = &t[s..e];
        let off = start + s as u64;
        let rec = Exported {
            offset: off,
            data: piece,
            base: f.map(|f| &f[s..e]),
            zero: is_zero(piece),
            at: s,
        };
        if rec.zero {
            enc.zero(off, piece.len() as u64)
                .map_err(ExportError::Write)?;
            hooks.record(&rec, enc);
            stats.zeros += 1;
            stats.zero_bytes += piece.len() as u64;
        } else {
            enc.begin_write(off, piece.len() as u64)
                .map_err(ExportError::Write)?;
            hooks.record(&rec, enc);
            enc.data(piece).map_err(ExportError::Write)?;
            stats.writes += 1;
            stats.data_bytes += piece.len() as u64;
        }
    }
    Ok(())
}

/// [`export_diff`] without the final `e`: writes the header and the records,
/// calling `hooks` for each one and after each object (integrity hashing
/// hooks in here).
pub fn export_records<A, B, S>(
    from: Option<&mut A>,
    to: &mut B,
    header: &DiffHeader<'_>,
    opts: &ExportOptions,
    enc: &mut Encoder<S>,
    progress: &mut dyn FnMut(u64, u64),
    hooks: &mut dyn ExportHooks<S>,
) -> Result<ExportStats, ExportError<A::Error, S::Error>>
where
    A: BlockSource + ?Sized,
    B: BlockSource<Error = A::Error> + ?Sized,
    S: Sink,
{
    let obj = usize::try_from(opts.object_size)
        .ok()
        .filter(|&o| o > 0 && o <= 1 << 30)
        .ok_or(ExportError::ObjectSize(opts.object_size))?;
    let size = to.size();
    let mut h = *header;
    if h.size.is_none() {
        h.size = Some(size);
    }
    enc.header(&h).map_err(ExportError::Write)?;
    let mut from = from;
    let mut tbuf = vec![0u8; obj];
    let mut fbuf = if from.is_some() {
        vec![0u8; obj]
    } else {
        Vec::new()
    };
    let mut runs = Vec::new();
    let mut stats = ExportStats::default();
    let mut start = 0u64;
    while start < size {
        let end = start.saturating_add(obj as u64).min(size);
        let n = usize_of(end - start);
        // Skip what is a hole in both images (it reads as zeros in both):
        // with sparse sources the work is proportional to allocated data.
        let to_data = to.next_data(start).map_err(ExportError::Read)?;
        let from_data = match from.as_deref_mut() {
            Some(src) => src.next_data(start).map_err(ExportError::Read)?,
            None => None,
        };
        let next = match (to_data, from_data) {
            (Some((a, _)), Some((b, _))) => Some(a.min(b)),
            (a, b) => a.or(b).map(|(s, _)| s),
        };
        match next {
            None => break,
            Some(ds) if ds >= size => break,
            Some(ds) if ds >= end => {
                // The object holding `ds` (aligned, so at or past `end`).
                start = (ds / obj as u64) * obj as u64;
                progress(start, size);
                continue;
            }
            _ => {}
        }
        let (lo, hi) = object_span(to, from.as_deref_mut(), start, end)?;
        let full = opts.whole_object;
        // Read in pieces that stay in the CPU cache while a hook looks at
        // them (integrity hashing) before the next piece is read.
        let mut p = lo;
        while p < hi {
            let e = (p + READ_PIECE).min(hi);
            to.read_at(start + p as u64, &mut tbuf[p..e])
                .map_err(ExportError::Read)?;
            if let Some(src) = from.as_deref_mut() {
                src.read_at(start + p as u64, &mut fbuf[p..e])
                    .map_err(ExportError::Read)?;
            }
            let base = from.is_some().then(|| &fbuf[p..e]);
            hooks.read(p, &tbuf[p..e], base);
            p = e;
        }
        if full {
            tbuf[..lo].fill(0);
            tbuf[hi..n].fill(0);
            if from.is_some() {
                fbuf[..lo].fill(0);
                fbuf[hi..n].fill(0);
            }
        }
        let f = from.is_some().then(|| &fbuf[..n]);
        let t = &tbuf[..n];
        if opts.whole_object {
            let changed = match f {
                Some(f) => !same_bytes(&t[lo..hi], &f[lo..hi]),
                None => !is_zero(&t[lo..hi]),
            };
            runs.clear();
            if changed {
                runs.push((0, n));
            }
        } else {
            changed_runs(
                &t[lo..hi],
                f.map(|f| &f[lo..hi]),
                usize_of(opts.merge_gap).max(1),
                &mut runs,
            );
            for r in &mut runs {
                *r = (r.0 + lo, r.1 + lo);
            }
        }
        emit_runs(&runs, start, t, f, enc, hooks, &mut stats)?;
        hooks.object_done(&mut tbuf, &mut fbuf, enc);
        start = end;
        progress(start, size);
    }
    Ok(stats)
}

/// [`export_diff`] plus the integrity extension (see [`crate::integrity`]):
/// for a v2 diff the `H` and `K` records are written before the `e`; for v1
/// the returned manifest (with its checksum over banner..`e`) is for the
/// caller to append as a trailer ([`Manifest::to_trailer`]) or to write as
/// a sidecar. The [`HashingSink`] must have been created (or reset) at the
/// start of this diff. `base_size` is the size of `from` when it is a real
/// image (`None` when diffing from creation).
///
/// With `std` the hashes are made on a second thread while the export goes
/// on (see [`ExportOptions::hash_thread`]); the stream and the manifest
/// are the same either way.
#[cfg_attr(not(feature = "std"), allow(unused_labels))]
pub fn export_diff_sealed<A, B, S>(
    from: Option<&mut A>,
    to: &mut B,
    header: &DiffHeader<'_>,
    opts: &ExportOptions,
    enc: &mut Encoder<HashingSink<S>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(ExportStats, Manifest), ExportError<A::Error, S::Error>>
where
    A: BlockSource + ?Sized,
    B: BlockSource<Error = A::Error> + ?Sized,
    S: Sink,
{
    let base_size = from.as_ref().map(|f| f.size());
    let mut m = Manifest {
        base_size,
        ..Manifest::default()
    };
    let stats = 'export: {
        #[cfg(feature = "std")]
        if opts.hash_thread
            && opts.object_size <= sealed::PAR_MAX_OBJECT
            && let Some(mut hooks) = sealed::ParHooks::new(&mut m)
        {
            let stats = export_records(from, to, header, opts, enc, progress, &mut hooks);
            hooks.finish(enc);
            break 'export stats;
        }
        let mut hooks = sealed::Hooks::new(&mut m);
        export_records(from, to, header, opts, enc, progress, &mut hooks)
    }?;
    seal_end(stats, m, enc)
}

/// The end of [`export_diff_sealed`]: `H` and `K` records for v2, the `e`.
fn seal_end<S: Sink, R>(
    stats: ExportStats,
    mut m: Manifest,
    enc: &mut Encoder<HashingSink<S>>,
) -> Result<(ExportStats, Manifest), ExportError<R, S::Error>> {
    let w = ExportError::Write;
    if enc.diff_format() == Format::DiffV2 {
        let hashes_offset = enc.sink().hasher().bytes();
        enc.extension(TAG_HASHES, &m.hashes_payload()).map_err(w)?;
        let h = enc.sink().hasher();
        let c = Checksum {
            records: m.entries.len() as u64,
            stream_bytes: h.bytes(),
            hash: h.digest(),
            hashes_offset,
        };
        enc.extension(TAG_CHECKSUM, &c.to_bytes()).map_err(w)?;
        enc.end_diff().map_err(w)?;
        m.checksum = Some(c);
    } else {
        enc.end_diff().map_err(w)?;
        let h = enc.sink().hasher();
        m.checksum = Some(Checksum {
            records: m.entries.len() as u64,
            stream_bytes: h.bytes(),
            hash: h.digest(),
            hashes_offset: 0,
        });
    }
    Ok((stats, m))
}

mod extents;
mod sealed;
mod undo;
pub use extents::{ExtentSource, ReadExtent, export_extents, export_extents_sealed};
pub use undo::{UndoError, UndoRecorder};

#[cfg(feature = "std")]
mod file;
#[cfg(feature = "std")]
pub use file::*;
