//! A cluster image as the crate's block device: writes and zeroing go out
//! through librbd's aio with up to `--rbd-concurrent-management-ops` in
//! flight; a read, a resize or a flush first waits for them (so reads see
//! every write before them).

use crate::ceph::{Aio, Image, Op};
use rbdiff::block::{BlockSink, BlockSource};
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
