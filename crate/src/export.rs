//! The export engine: the diff between two block devices (or one and an
//! all-zero image), written as `rbd export-diff` writes it
//! ([`export_diff`]), optionally with its integrity data
//! ([`export_diff_sealed`], hashing hooks in [`ExportHooks`]).

use crate::block::{AlignedBuf, BlockSource, is_zero, same_bytes, usize_of};
use crate::encode::{DiffHeader, EncodeError, Encoder, Sink};
use crate::format::Format;
use crate::integrity::{Checksum, HashingSink, Manifest, TAG_CHECKSUM, TAG_HASHES};
use alloc::vec::Vec;
use core::fmt;

/// Options of [`export_diff`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
        Self::new()
    }
}

impl ExportOptions {
    /// rbd's defaults: 4 MiB objects, precise extents.
    pub const fn new() -> Self {
        ExportOptions {
            object_size: 4 << 20,
            whole_object: false,
            merge_gap: 4096,
            hash_thread: true,
        }
    }

    /// With this object size.
    pub const fn with_object_size(mut self, n: u64) -> Self {
        self.object_size = n;
        self
    }

    /// Whole changed objects (`--whole-object`) or precise extents.
    pub const fn with_whole_object(mut self, on: bool) -> Self {
        self.whole_object = on;
        self
    }

    /// Changed runs closer than `n` bytes become one record.
    pub const fn with_merge_gap(mut self, n: u64) -> Self {
        self.merge_gap = n;
        self
    }

    /// Hash on a second thread (true) or on the exporting thread.
    pub const fn with_hash_thread(mut self, on: bool) -> Self {
        self.hash_thread = on;
        self
    }
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
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
#[non_exhaustive]
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
    fn object_done(&mut self, to: &mut AlignedBuf, base: &mut AlignedBuf, enc: &mut Encoder<S>) {
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
    let mut tbuf = AlignedBuf::zeroed(obj);
    let mut fbuf = AlignedBuf::zeroed(if from.is_some() { obj } else { 0 });
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
            && opts.object_size <= hashing::PAR_MAX_OBJECT
            && let Some(mut hooks) = hashing::ParHooks::new(&mut m)
        {
            let stats = export_records(from, to, header, opts, enc, progress, &mut hooks);
            hooks.finish(enc);
            break 'export stats;
        }
        let mut hooks = hashing::Hooks::new(&mut m);
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
mod hashing;
pub use extents::{ExtentSource, ReadExtent, export_extents, export_extents_sealed};
