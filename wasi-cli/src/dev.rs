//! A raw image file as a block device: positioned reads (zeros past EOF),
//! writes, hole punching, data-region discovery and space-efficient copies.
//!
//! Linux gets `fallocate(PUNCH_HOLE)`, `SEEK_DATA`/`SEEK_HOLE` and the
//! `FICLONE` reflink ioctl; every other target (WASI included) falls back to
//! writing zeros / treating the whole file as data / copying non-zero blocks.

use crate::objmap::Tracker;
use rbdiff::block::{BlockSink, BlockSource, FileImage, is_zero};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Copy/scan granularity.
pub const CHUNK: usize = 1 << 20;

/// An open image file: the codec's [`FileImage`] (positioned I/O, hole
/// punching, `SEEK_DATA`) with the conveniences the commands use; a store
/// image's HEAD also carries the [`Tracker`] that keeps its object map exact.
#[derive(Debug)]
pub struct Dev(FileImage, Option<Box<Tracker>>);

impl Dev {
    /// Open read-only.
    pub fn open_ro(path: &Path) -> io::Result<Dev> {
        let file = File::open(path)?;
        Dev::from_file(file)
    }

    /// Open read-write (the file must exist).
    pub fn open_rw(path: &Path) -> io::Result<Dev> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Dev::from_file(file)
    }

    /// Wrap an open file.
    pub fn from_file(file: File) -> io::Result<Dev> {
        if file.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        Ok(Dev(FileImage::new(file)?, None))
    }

    /// Route writes through `tracker` (a store HEAD's object map).
    pub fn with_tracker(self, tracker: Option<Tracker>) -> Dev {
        Dev(self.0, tracker.map(Box::new))
    }

    /// A second handle on the same file (reads on another thread).
    pub fn try_clone(&self) -> io::Result<Dev> {
        Ok(Dev(self.0.try_clone()?, None))
    }

    /// Handles for reading on up to `n` threads (at least one unless the
    /// file cannot be duplicated, as under WASI).
    pub fn readers(&self, n: usize) -> Vec<Dev> {
        (0..n).map_while(|_| self.try_clone().ok()).collect()
    }

    /// Image size in bytes.
    pub fn size(&self) -> u64 {
        BlockSource::size(&self.0)
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        self.0.file()
    }

    /// Read `buf.len()` bytes at `offset`; bytes past the end read as zeros.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, buf)
    }

    /// Write `data` at `offset` (the file grows if needed).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let len = data.len() as u64;
        let end = offset.saturating_add(len);
        let grows = end > self.size();
        if let Some(t) = self.1.as_mut() {
            if grows {
                t.before_resize(end)?;
            }
            t.before_write(offset, len)?;
        }
        self.0.write_at(offset, data)?;
        if let Some(t) = self.1.as_mut() {
            if grows {
                t.resized(end);
            }
            t.wrote(offset, len);
        }
        Ok(())
    }

    /// Change the size (truncate or zero-extend, sparse).
    pub fn set_size(&mut self, size: u64) -> io::Result<()> {
        if size != self.size() {
            if let Some(t) = self.1.as_mut() {
                t.before_resize(size)?;
            }
            self.0.set_size(size)?;
            if let Some(t) = self.1.as_mut() {
                t.resized(size);
            }
        }
        Ok(())
    }

    /// Make `[offset, offset+len)` read as zeros, inside the current size;
    /// punches a hole where the platform can, else writes zeros only over data.
    pub fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset.saturating_add(len).min(self.size());
        if offset >= end {
            return Ok(());
        }
        if let Some(t) = self.1.as_mut() {
            t.before_zero(offset, end - offset)?;
        }
        self.0.write_zeroes(offset, end - offset)?;
        if let Some(t) = self.1.as_mut() {
            t.zeroed(offset, end - offset);
        }
        Ok(())
    }

    /// The next allocated region at or after `offset`: `(start, len)`.
    /// Without SEEK_DATA support the rest of the file counts as data.
    pub fn next_data(&mut self, offset: u64) -> io::Result<Option<(u64, u64)>> {
        Ok(self.0.next_data(offset)?.map(|(s, e)| (s, e - s)))
    }

    /// Flush file data to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        self.0.file().flush()
    }

    /// Flush data and metadata to stable storage (a tracked HEAD's object
    /// map is then written exact).
    pub fn sync(&mut self) -> io::Result<()> {
        self.0.file().sync_all()?;
        if let Some(t) = self.1.as_mut() {
            t.commit(self.0.file())?;
        }
        Ok(())
    }
}

/// Try a reflink (copy-on-write clone) of `src` into `dst`.
#[cfg(target_os = "linux")]
fn reflink(src: &File, dst: &File) -> bool {
    use std::os::fd::AsRawFd;
    // FICLONE = _IOW(0x94, 9, int)
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: ioctl with an fd argument, no memory passed.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    r == 0
}

#[cfg(not(target_os = "linux"))]
fn reflink(_src: &File, _dst: &File) -> bool {
    false
}

/// Space-efficient copy of `from` into `out` (a new, empty file opened
/// read-write, synced before returning): a reflink if the filesystem offers
/// one, else only the data regions, with all-zero blocks left as holes.
/// Returns the bytes copied (0 for reflinks).
pub fn sparse_copy(from: &mut Dev, out: File) -> io::Result<u64> {
    if from.size() > 0 && reflink(from.file(), &out) {
        out.sync_all()?;
        return Ok(0);
    }
    let mut to = Dev::from_file(out)?;
    to.set_size(from.size())?;
    let mut buf = rbdiff::block::AlignedBuf::zeroed(CHUNK);
    let mut pos = 0u64;
    let mut copied = 0u64;
    while let Some((start, len)) = from.next_data(pos)? {
        let end = start + len;
        let mut p = start;
        while p < end {
            let n = usize::try_from(end - p).unwrap_or(CHUNK).min(CHUNK);
            from.read_at(p, &mut buf[..n])?;
            // keep holes: write only non-zero 4 KiB blocks
            for (i, blk) in buf[..n].chunks(4096).enumerate() {
                if !is_zero(blk) {
                    to.write_at(p + (i * 4096) as u64, blk)?;
                    copied += blk.len() as u64;
                }
            }
            p += n as u64;
        }
        pos = end;
    }
    to.flush()?;
    to.sync()?;
    Ok(copied)
}

impl BlockSource for Dev {
    type Error = io::Error;
    fn size(&self) -> u64 {
        Dev::size(self)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        Dev::read_at(self, offset, buf)
    }
    fn next_data(&mut self, offset: u64) -> io::Result<Option<(u64, u64)>> {
        self.0.next_data(offset)
    }
    fn view(&mut self, offset: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> io::Result<bool> {
        self.0.view(offset, len, f)
    }
}

impl BlockSink for Dev {
    type Error = io::Error;
    fn size(&self) -> u64 {
        Dev::size(self)
    }
    fn set_size(&mut self, size: u64) -> io::Result<()> {
        Dev::set_size(self, size)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        Dev::write_at(self, offset, data)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        Dev::write_zeroes(self, offset, len)
    }
    fn flush(&mut self) -> io::Result<()> {
        Dev::flush(self)
    }
}
