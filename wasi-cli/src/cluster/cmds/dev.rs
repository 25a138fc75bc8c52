//! A cluster image as the crate's block device: writes and zeroing go out
//! through librbd's aio with up to `--rbd-concurrent-management-ops` in
//! flight; a read, a resize or a flush first waits for them (so reads see
//! every write before them).

use crate::ceph::{Aio, Image, Op};
use rbdiff::apply::Checker;
use rbdiff::block::{BlockSink, BlockSource};
use rbdiff::integrity::{Manifest, VerifyError};
use std::collections::VecDeque;
use std::io;

/// Zeroing is sent in pieces of at most this many bytes.
const ZERO_PIECE: u64 = 1 << 30;

/// An open cluster image (HEAD) the import engine reads and writes.
pub struct ClusterDev<'a, 'io> {
    img: &'a Image<'io>,
    aio: Aio<'a, 'io>,
    size: u64,
    spare: Vec<Vec<u8>>,
    /// Bytes of writes in flight.
    bytes: u64,
    /// Read-ahead of a check: the ranges still to read, the reads in
    /// flight (in order) and the last one read.
    plan: VecDeque<(u64, u64)>,
    ahead: Aio<'a, 'io>,
    issued: VecDeque<(u64, u64)>,
    cur: Option<(u64, Vec<u8>)>,
}

impl<'a, 'io> ClusterDev<'a, 'io> {
    /// The device over `img`, `depth` operations in flight.
    pub fn new(img: &'a Image<'io>, depth: usize) -> io::Result<Self> {
        Ok(ClusterDev {
            size: img.size()?,
            img,
            aio: Aio::new(img, depth),
            spare: Vec::new(),
            bytes: 0,
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
                self.bytes -= d.buf.len() as u64;
                if self.spare.len() < 4 {
                    self.spare.push(d.buf);
                }
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
        while self.ahead.next().is_some() {}
        self.issued.clear();
        self.cur = None;
    }

    fn read_ahead(&mut self) -> io::Result<()> {
        let mut bytes: u64 = self.issued.iter().map(|r| r.1).sum();
        while !self.ahead.full() && (self.issued.is_empty() || bytes < super::IN_FLIGHT_BYTES) {
            let Some((o, l)) = self.plan.pop_front() else {
                break;
            };
            let n = l.min(self.size.saturating_sub(o));
            let n = usize::try_from(n).map_err(|_| io::Error::from_raw_os_error(22))?;
            self.ahead.read(o, n, Vec::new())?;
            self.issued.push_back((o, l));
            bytes += l;
        }
        Ok(())
    }

    /// Serve a read from the read-ahead, if it covers it.
    fn take_ahead(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<bool> {
        let end = offset + buf.len() as u64;
        let covers = |o: u64, l: u64| offset >= o && end <= o + l;
        if !matches!(&self.cur, Some((o, b)) if covers(*o, b.len() as u64)) {
            match self.issued.front() {
                Some(&(o, l)) if covers(o, l) => {
                    self.issued.pop_front();
                    let mut b = match self.ahead.next() {
                        Some(r) => r?.buf,
                        None => return Ok(false),
                    };
                    b.resize(usize::try_from(l).unwrap_or(0), 0);
                    self.cur = Some((o, b));
                    self.read_ahead()?;
                }
                _ => return Ok(false),
            }
        }
        let Some((o, b)) = &self.cur else {
            return Ok(false);
        };
        let at = usize::try_from(offset - o).unwrap_or(0);
        buf.copy_from_slice(&b[at..at + buf.len()]);
        Ok(true)
    }

    fn room(&mut self) -> io::Result<()> {
        while self.aio.full() || (self.aio.len() > 0 && self.bytes >= super::IN_FLIGHT_BYTES) {
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
        let b = self.spare.pop().unwrap_or_default();
        self.aio.read(offset, n, b)?;
        let done = self
            .aio
            .next()
            .unwrap_or_else(|| Err(io::Error::other("read lost")))?;
        buf[..n].copy_from_slice(&done.buf[..n]);
        self.spare.push(done.buf);
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
        self.room()?;
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b.extend_from_slice(data);
        self.aio.write(offset, b)?;
        self.bytes += data.len() as u64;
        Ok(())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset.saturating_add(len);
        let mut o = offset;
        while o < end {
            let n = (end - o).min(ZERO_PIECE);
            self.room()?;
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
