//! Undo: record what an import overwrites, as a diff that restores it.

use crate::block::{BlockSource, is_zero};
use crate::decode::Event;
use crate::encode::{DiffHeader, EncodeError, Encoder, Sink};
use crate::format::Format;
use alloc::vec;
use alloc::vec::Vec;

/// Why recording undo data failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UndoError<R, W> {
    /// Reading the image failed.
    Read(R),
    /// Writing the undo diff failed.
    Write(EncodeError<W>),
}

impl<R: core::fmt::Display, W: core::fmt::Display> core::fmt::Display for UndoError<R, W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            UndoError::Read(e) => write!(f, "reading the image for undo failed: {e}"),
            UndoError::Write(e) => write!(f, "writing the undo diff failed: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl<R: core::fmt::Debug + core::fmt::Display, W: core::fmt::Debug + core::fmt::Display>
    std::error::Error for UndoError<R, W>
{
}

/// Builds the undo diff of an import: call [`before`](Self::before) with
/// every event *before* applying it. The result, applied to the imported
/// image, restores the image as it was (size and content). Records are in
/// import order; for imports whose records overlap each other the undo
/// diff is only right when applied in reverse, so importers should refuse
/// `--undo` for such streams (the decoder reports them as out of order).
#[derive(Debug)]
pub struct UndoRecorder<S> {
    enc: Encoder<S>,
    buf: Vec<u8>,
    size: u64,
}

impl<S: Sink> UndoRecorder<S> {
    /// Starts an undo diff (v1 or v2) for an image of `size` bytes.
    pub fn new(sink: S, format: Format, size: u64) -> Result<Self, EncodeError<S::Error>> {
        let mut enc = Encoder::diff(sink, format)?.lenient();
        enc.header(&DiffHeader {
            size: Some(size),
            ..DiffHeader::default()
        })?;
        Ok(UndoRecorder {
            enc,
            buf: Vec::new(),
            size,
        })
    }

    fn save<I: BlockSource + ?Sized>(
        &mut self,
        image: &mut I,
        offset: u64,
        end: u64,
    ) -> Result<(), UndoError<I::Error, S::Error>> {
        const STEP: u64 = 4 << 20;
        let mut o = offset;
        while o < end {
            let n = (end - o).min(STEP);
            let len = usize::try_from(n).unwrap_or(usize::MAX);
            if self.buf.len() < len {
                self.buf = vec![0; len];
            }
            let b = &mut self.buf[..len];
            image.read_at(o, b).map_err(UndoError::Read)?;
            if is_zero(b) {
                self.enc.zero(o, n).map_err(UndoError::Write)?;
            } else {
                self.enc.write(o, b).map_err(UndoError::Write)?;
            }
            o += n;
        }
        Ok(())
    }

    /// Saves what `ev` is about to change in `image`.
    pub fn before<I: BlockSource + ?Sized>(
        &mut self,
        image: &mut I,
        ev: &Event<'_>,
    ) -> Result<(), UndoError<I::Error, S::Error>> {
        // Only what lies within the original size matters: the undo diff's
        // `s` cuts everything past it.
        let size = image.size().min(self.size);
        match *ev {
            Event::Size(s) if s < size => self.save(image, s, size),
            Event::Write { offset, len } | Event::Zero { offset, len } if offset < size => {
                self.save(image, offset, offset.saturating_add(len).min(size))
            }
            _ => Ok(()),
        }
    }

    /// The size of the image the undo diff restores.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Ends the undo diff and returns the sink.
    pub fn finish(mut self) -> Result<S, EncodeError<S::Error>> {
        self.enc.end_diff()?;
        self.enc.finish()
    }
}
