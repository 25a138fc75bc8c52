//! A cluster image as the crate's block device: writes and zeroing go out
//! through librbd's aio with up to `--rbd-concurrent-management-ops` in
//! flight and their buffers within [`BUDGET`]; a read, a resize or a flush
//! first waits for them (so reads see every write before them).

use super::pool::{BUDGET, Pool};
use crate::ceph::{Aio, AlignedBuf, Image, Op};
use rbdiff::apply::Checker;
use rbdiff::block::{BlockSink, BlockSource};
use rbdiff::integrity::{Manifest, VerifyError};
use std::collections::VecDeque;
use std::io;

/// Zeroing is sent in pieces of at most this many bytes.
const ZERO_PIECE: u64 = 1 << 30;

/// A check's ranges longer than this are not read ahead (each would be one
/// buffer of its length: a `z` record may span the whole image) but read
/// as the check asks, 1 MiB at a time.
const AHEAD_MAX: u64 = 8 << 20;

/// An open cluster image (HEAD) the import engine reads and writes.
pub struct ClusterDev<'a, 'io> {
    img: &'a Image<'io>,
    aio: Aio<'a, 'io>,
    size: u64,
    /// The buffers of the writes and of the read-ahead.
    pool: Pool,
    /// Read-ahead of a check: the ranges still to read, the reads in
    /// flight (in order) and the last one read (offset, length, bytes).
    plan: VecDeque<(u64, u64)>,
    ahead: Aio<'a, 'io>,
    issued: VecDeque<(u64, u64)>,
    cur: Option<(u64, u64, AlignedBuf)>,
}

impl<'a, 'io> ClusterDev<'a, 'io> {
    /// The device over `img`, `depth` operations in flight.
    pub fn new(img: &'a Image<'io>, depth: usize) -> io::Result<Self> {
        Ok(ClusterDev {
            size: img.size()?,
            img,
            aio: Aio::new(img, depth),
            pool: Pool::new(BUDGET),
            plan: VecDeque::new(),
            ahead: Aio::new(img, depth),
            issued: VecDeque::new(),
            cur: None,
        })
    }

    /// Wait for the oldest operation; keep its buffer.
    fn complete_one(&mut self) -> io::Result<()> {
        if let Some(r) = self.aio.next() {
            let d = r?;
            if d.op == Op::Write {
                self.pool.give(d.buf);
            }
        }
        Ok(())
    }

    /// Wait for everything in flight; the first error.
    pub fn settle(&mut self) -> io::Result<()> {
        let mut first = None;
        while self.aio.len() > 0 {
            if let Err(e) = self.complete_one() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The ranges the next reads ask for, in order: they are read ahead.
    fn plan(&mut self, ranges: impl Iterator<Item = (u64, u64)>) {
        self.plan = ranges.filter(|r| r.1 > 0).collect();
    }

    /// Stop reading ahead (waits for what is in flight).
    fn unplan(&mut self) {
        self.plan.clear();
        while let Some(r) = self.ahead.next() {
            if let Ok(d) = r {
                self.pool.give(d.buf);
            }
        }
        self.issued.clear();
        if let Some((_, _, b)) = self.cur.take() {
            self.pool.give(b);
        }
    }

    fn read_ahead(&mut self) -> io::Result<()> {
        while !self.ahead.full() {
            let Some(&(o, l)) = self.plan.front() else {
                break;
            };
            if l > AHEAD_MAX {
                self.plan.pop_front();
                continue;
            }
            if !self.pool.room(l) {
                break;
            }
            self.plan.pop_front();
            let n = l.min(self.size.saturating_sub(o));
            let n = usize::try_from(n).map_err(|_| io::Error::from_raw_os_error(22))?;
            let b = self.pool.take(usize::try_from(l).unwrap_or(n));
            self.ahead.read(o, n, b)?;
            self.issued.push_back((o, l));
        }
        Ok(())
    }

    /// Serve a read from the read-ahead, if it covers it.
    fn take_ahead(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        let end = offset + buf.len() as u64;
        let covers = |o: u64, l: u64| offset >= o && end <= o + l;
        if !matches!(self.cur, Some((o, l, _)) if covers(o, l)) {
            match self.issued.front() {
                Some(&(o, l)) if covers(o, l) => {
                    self.issued.pop_front();
                    let d = match self.ahead.next() {
                        Some(r) => r?,
                        None => return Ok(false),
                    };
                    // Past the end of the image: zeros.
                    let mut b = d.buf;
                    b[d.len..usize::try_from(l).unwrap_or(0)].fill(0);
                    if let Some((_, _, old)) = self.cur.replace((o, l, b)) {
                        self.pool.give(old);
                    }
                    self.read_ahead()?;
                }
                _ => return Ok(false),
            }
        }
        let Some((o, _, b)) = &self.cur else {
            return Ok(false);
        };
        let at = usize::try_from(offset - o).unwrap_or(0);
        buf.copy_from_slice(&b[at..at + buf.len()]);
        Ok(true)
    }

    /// Wait for writes until one more of `len` bytes may go out.
    fn room(&mut self, len: u64) -> io::Result<()> {
        while self.aio.full() || (self.aio.len() > 0 && !self.pool.room(len)) {
            self.complete_one()?;
        }
        Ok(())
    }
}

impl BlockSource for ClusterDev<'_, '_> {
    type Error = io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.settle()?;
        if !self.issued.is_empty() || self.cur.is_some() || !self.plan.is_empty() {
            if self.issued.is_empty() {
                self.read_ahead()?;
            }
            if self.take_ahead(offset, buf)? {
                return Ok(());
            }
        }
        buf.fill(0);
        if offset >= self.size {
            return Ok(());
        }
        let n = usize::try_from(self.size - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let b = self.pool.take(n);
        self.aio.read(offset, n, b)?;
        let done = self
            .aio
            .next()
            .unwrap_or_else(|| Err(io::Error::other("read lost")))?;
        buf[..n].copy_from_slice(&done.buf[..n]);
        self.pool.give(done.buf);
        Ok(())
    }
}

impl BlockSink for ClusterDev<'_, '_> {
    type Error = io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn set_size(&mut self, size: u64) -> io::Result<()> {
        self.settle()?;
        self.img.resize(size)?;
        self.size = size;
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.room(data.len() as u64)?;
        let mut b = self.pool.take(data.len());
        b[..data.len()].copy_from_slice(data);
        self.aio.write(offset, data.len(), b)?;
        Ok(())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset.saturating_add(len);
        let mut o = offset;
        while o < end {
            let n = (end - o).min(ZERO_PIECE);
            self.room(0)?;
            self.aio.write_zeroes(o, n)?;
            o += n;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.settle()?;
        self.img.flush()
    }
}

/// The base and result checks of an import into a cluster image, with the
/// records' ranges read ahead (several requests in flight, as the writes).
pub struct AheadChecker;

impl<'a, 'io> Checker<ClusterDev<'a, 'io>> for AheadChecker {
    fn check_base(
        &mut self,
        m: &Manifest,
        dev: &mut ClusterDev<'a, 'io>,
    ) -> Result<(), VerifyError<io::Error>> {
        dev.plan(m.entries.iter().map(|e| (e.offset, e.len)));
        let r = m.check_base(dev);
        dev.unplan();
        r
    }

    fn check_result(
        &mut self,
        m: &Manifest,
        dev: &mut ClusterDev<'a, 'io>,
        size: Option<u64>,
        entries: std::ops::Range<usize>,
    ) -> Result<(), VerifyError<io::Error>> {
        let actual = BlockSource::size(dev);
        if let Some(expected) = size
            && actual != expected
        {
            return Err(VerifyError::Size { expected, actual });
        }
        let end = entries.end.min(m.entries.len());
        let start = entries.start.min(end);
        let ranges = m.entries[start..end]
            .iter()
            .map(|e| (e.offset, e.len.min(actual.saturating_sub(e.offset))));
        dev.plan(ranges);
        let r = m.check_entries(dev, start..end, false);
        dev.unplan();
        r
    }
}
