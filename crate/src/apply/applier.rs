//! rbd's rules for applying decoded events to a block device: [`Applier`],
//! and [`apply_stream`] (feature `std`) for a whole stream without checks.

use crate::block::{BlockSink, is_zero, usize_of};
use crate::decode::Event;
use core::fmt;
#[cfg(feature = "std")]
use std::io;

/// What applying did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
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
#[non_exhaustive]
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

#[cfg(feature = "std")]
/// Why [`apply_stream`] failed.
#[derive(Debug)]
pub enum ApplyStreamError<E> {
    /// Reading or decoding the stream failed.
    Read(crate::reader::ReadError),
    /// Applying failed.
    Apply(ApplyError<E>),
}

#[cfg(feature = "std")]
impl<E: core::fmt::Display> core::fmt::Display for ApplyStreamError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApplyStreamError::Read(e) => e.fmt(f),
            ApplyStreamError::Apply(e) => e.fmt(f),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for ApplyStreamError<E> {}

#[cfg(feature = "std")]
/// Decode `reader` (a diff v1/v2, or an image v2 whose diffs are applied in
/// order) and apply it to `sink` with [`Applier`]. Snapshot names are
/// not checked: callers that keep snapshots drive [`Applier`] themselves.
pub fn apply_stream<R: io::Read, K: BlockSink>(
    reader: R,
    sink: &mut K,
    config: crate::Config,
    sparse_size: u64,
) -> Result<ApplyStats, ApplyStreamError<K::Error>> {
    let mut events = crate::reader::EventReader::new(reader, config);
    let mut applier = Applier::new(sparse_size);
    while let Some((_, ev)) = events.next_event().map_err(ApplyStreamError::Read)? {
        applier.event(sink, &ev).map_err(ApplyStreamError::Apply)?;
    }
    applier.finish(sink).map_err(ApplyStreamError::Apply)
}
