//! A raw image file as a block device: positioned reads (zeros past EOF),
//! writes, hole punching, data-region discovery and space-efficient copies.
//!
//! Linux gets `fallocate(PUNCH_HOLE)`, `SEEK_DATA`/`SEEK_HOLE` and the
//! `FICLONE` reflink ioctl; every other target (WASI included) falls back to
//! writing zeros / treating the whole file as data / copying non-zero blocks.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Copy/scan granularity.
pub const CHUNK: usize = 1 << 20;

/// An open image file.
#[derive(Debug)]
pub struct Dev {
    file: File,
    size: u64,
    /// Set once hole punching failed (filesystem without support).
    no_punch: bool,
}

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
        let md = file.metadata()?;
        if md.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        Ok(Dev {
            size: md.len(),
            file,
            no_punch: false,
        })
    }

    /// Image size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Read `buf.len()` bytes at `offset`; bytes past the end read as zeros.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let avail = self.size.saturating_sub(offset);
        let n = usize::try_from(avail).unwrap_or(usize::MAX).min(buf.len());
        if n > 0 {
            self.file.seek(SeekFrom::Start(offset))?;
            let mut done = 0;
            while done < n {
                match self.file.read(&mut buf[done..n]) {
                    Ok(0) => break,
                    Ok(k) => done += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf[done..n].fill(0);
        }
        buf[n..].fill(0);
        Ok(())
    }

    /// Write `data` at `offset` (the file grows if needed).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(data)?;
        self.size = self.size.max(offset + data.len() as u64);
        Ok(())
    }

    /// Change the size (truncate or zero-extend, sparse).
    pub fn set_size(&mut self, size: u64) -> io::Result<()> {
        if size != self.size {
            self.file.set_len(size)?;
            self.size = size;
        }
        Ok(())
    }

    /// Make `[offset, offset+len)` read as zeros, inside the current size;
    /// punches a hole where the platform can, else writes zeros.
    pub fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Ok(());
        }
        if !self.no_punch {
            match punch_hole(&self.file, offset, end - offset) {
                Ok(true) => return Ok(()),
                Ok(false) => self.no_punch = true,
                Err(e) => return Err(e),
            }
        }
        // No hole punching: write zeros only where the file is not zero
        // already, so holes stay holes.
        let zeros = vec![0u8; CHUNK];
        let mut cur = vec![0u8; CHUNK];
        let mut pos = offset;
        while pos < end {
            let n = usize::try_from(end - pos).unwrap_or(CHUNK).min(CHUNK);
            self.read_at(pos, &mut cur[..n])?;
            if !is_zero(&cur[..n]) {
                self.file.seek(SeekFrom::Start(pos))?;
                self.file.write_all(&zeros[..n])?;
            }
            pos += n as u64;
        }
        Ok(())
    }

    /// The next allocated region at or after `offset`: `(start, len)`.
    /// Without SEEK_DATA support the rest of the file counts as data.
    pub fn next_data(&mut self, offset: u64) -> io::Result<Option<(u64, u64)>> {
        if offset >= self.size {
            return Ok(None);
        }
        match seek_data(&self.file, offset, self.size)? {
            Some(r) => Ok(r),
            None => Ok(Some((offset, self.size - offset))),
        }
    }

    /// Flush file data to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Flush data and metadata to stable storage.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

/// `Ok(true)` if the hole was punched, `Ok(false)` if unsupported here.
#[cfg(target_os = "linux")]
fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(l)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Ok(false);
    };
    // SAFETY: plain syscall on a valid fd; no memory is passed.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            l,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) | Some(libc::EINVAL) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn punch_hole(_file: &File, _offset: u64, _len: u64) -> io::Result<bool> {
    Ok(false)
}

/// `Ok(None)` if SEEK_DATA is not available; else the next data region.
#[cfg(target_os = "linux")]
#[allow(clippy::type_complexity)]
fn seek_data(file: &File, offset: u64, size: u64) -> io::Result<Option<Option<(u64, u64)>>> {
    use std::os::fd::AsRawFd;
    let Ok(off) = libc::off_t::try_from(offset) else {
        return Ok(None);
    };
    let fd = file.as_raw_fd();
    // SAFETY: lseek on a valid fd.
    let start = unsafe { libc::lseek(fd, off, libc::SEEK_DATA) };
    if start < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(Some(None)),
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: as above.
    let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
    if end < 0 {
        return Err(io::Error::last_os_error());
    }
    let (start, end) = (start as u64, (end as u64).min(size));
    if start >= size {
        return Ok(Some(None));
    }
    Ok(Some(Some((start, end - start))))
}

#[cfg(not(target_os = "linux"))]
#[allow(clippy::type_complexity)]
fn seek_data(_file: &File, _offset: u64, _size: u64) -> io::Result<Option<Option<(u64, u64)>>> {
    Ok(None)
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

fn is_zero(b: &[u8]) -> bool {
    b.iter().all(|&x| x == 0)
}

/// Space-efficient copy of `src` to a new file `dst` (created or truncated):
/// a reflink if the filesystem offers one, else only the data regions, with
/// all-zero blocks left as holes. Returns the bytes copied (0 for reflinks).
pub fn sparse_copy(src: &Path, dst: &Path) -> io::Result<u64> {
    let mut from = Dev::open_ro(src)?;
    let out = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dst)?;
    if from.size() > 0 && reflink(from.file(), &out) {
        return Ok(0);
    }
    let mut to = Dev::from_file(out)?;
    to.set_size(from.size())?;
    let mut buf = vec![0u8; CHUNK];
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
    Ok(copied)
}

impl rbdiff::image::BlockSource for Dev {
    type Error = io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        Dev::read_at(self, offset, buf)
    }
    fn next_data(&mut self, offset: u64) -> io::Result<Option<(u64, u64)>> {
        Ok(Dev::next_data(self, offset)?.map(|(s, l)| (s, s + l)))
    }
}

impl rbdiff::image::BlockSink for Dev {
    type Error = io::Error;
    fn size(&self) -> u64 {
        self.size
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
