//! Raw image files as [`BlockSource`] and [`BlockSink`].

use super::{BlockSink, BlockSource, is_zero};
use alloc::vec;
use std::fs::File;
use std::io::{self, Write};

/// A raw image file (a VM disk image, an `rbd export` output).
///
/// Reads past the end give zeros. `write_zeroes` never allocates: ranges
/// that already read as zeros (holes included) are left alone, so sparse
/// files stay sparse.
#[derive(Debug)]
pub struct FileImage {
    file: File,
    size: u64,
    zero_buf: alloc::vec::Vec<u8>,
    scratch: alloc::vec::Vec<u8>,
}

impl FileImage {
    /// Wrap an open file; its current length is the image size.
    pub fn new(file: File) -> io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(FileImage {
            file,
            size,
            zero_buf: alloc::vec::Vec::new(),
            scratch: alloc::vec::Vec::new(),
        })
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Unwrap the file.
    pub fn into_file(self) -> File {
        self.file
    }

    fn pread(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_at(buf, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Read, Seek, SeekFrom};
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.read(buf)
        }
    }

    fn pwrite(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.write_all_at(data, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Seek, SeekFrom};
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.write_all(data)
        }
    }
}

impl BlockSource for FileImage {
    type Error = io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = match self.pread(offset + done as u64, &mut buf[done..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                buf[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }
}

impl BlockSink for FileImage {
    type Error = io::Error;
    fn size(&self) -> u64 {
        self.size
    }
    fn set_size(&mut self, size: u64) -> io::Result<()> {
        self.file.set_len(size)?;
        self.size = size;
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.pwrite(offset, data)
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        const STEP: usize = 1 << 20;
        let want = usize::try_from(len).unwrap_or(STEP).min(STEP);
        if self.scratch.len() < want {
            self.scratch = vec![0; want];
            self.zero_buf = vec![0; want];
        }
        let mut cur = core::mem::take(&mut self.scratch);
        let mut o = offset;
        let end = offset + len;
        let mut result = Ok(());
        while o < end && result.is_ok() {
            let n = usize::try_from(end - o).unwrap_or(want).min(want);
            let c = &mut cur[..n];
            result = self.read_at(o, c);
            if result.is_ok() && !is_zero(c) {
                let z = core::mem::take(&mut self.zero_buf);
                result = self.pwrite(o, &z[..n]);
                self.zero_buf = z;
            }
            o += n as u64;
        }
        self.scratch = cur;
        result
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()
    }
}

/// Why [`apply_stream`] failed.
#[derive(Debug)]
pub enum ApplyStreamError<E> {
    /// Reading or decoding the stream failed.
    Read(crate::reader::ReadError),
    /// Applying failed.
    Apply(super::ApplyError<E>),
}

impl<E: core::fmt::Display> core::fmt::Display for ApplyStreamError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ApplyStreamError::Read(e) => e.fmt(f),
            ApplyStreamError::Apply(e) => e.fmt(f),
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for ApplyStreamError<E> {}

/// Decode `reader` (a diff v1/v2, or an image v2 whose diffs are applied in
/// order) and apply it to `sink` with [`super::Applier`]. Snapshot names are
/// not checked: callers that keep snapshots drive [`super::Applier`] themselves.
pub fn apply_stream<R: io::Read, K: BlockSink>(
    reader: R,
    sink: &mut K,
    config: crate::Config,
    sparse_size: u64,
) -> Result<super::ApplyStats, ApplyStreamError<K::Error>> {
    let mut events = crate::reader::EventReader::new(reader, config);
    let mut applier = super::Applier::new(sparse_size);
    while let Some((_, ev)) = events.next_event().map_err(ApplyStreamError::Read)? {
        applier.event(sink, &ev).map_err(ApplyStreamError::Apply)?;
    }
    applier.finish(sink).map_err(ApplyStreamError::Apply)
}
