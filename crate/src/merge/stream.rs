//! The std driver: merge diffs read from [`std::io::Read`]ers into a
//! [`std::io::Write`], on top of [`PushMerge`].

use super::push::{MergeErrorKind, MergeStreamError, Need, Phase, PushMerge};
use crate::block::AlignedBuf;
use crate::format::Format;
use alloc::vec;
use std::io::{self, Read, Write};

/// Merge options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MergeOptions {
    /// Output format: [`Format::DiffV1`] (what rbd writes) or [`Format::DiffV2`].
    pub output: Format,
}

impl Default for MergeOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl MergeOptions {
    /// A v1 diff out, as rbd writes.
    pub const fn new() -> Self {
        MergeOptions {
            output: Format::DiffV1,
        }
    }

    /// With this output format.
    pub const fn with_output(mut self, f: Format) -> Self {
        self.output = f;
        self
    }
}

/// What a merge did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    /// Records written.
    pub records: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Image size of the result.
    pub size: u64,
}

/// Read and write size: large enough for page-cache speed.
const CHUNK: usize = 1 << 20;

/// Read size after a payload of more than this was moved by the copier
/// (and for an input's first read): records are big, so read little more
/// than the next record header and let the copier move the rest of its
/// payload. Small records keep CHUNK-sized reads.
const SMALL: usize = 64 << 10;

/// Largest payload piece handed to a copier at once (progress is reported
/// between pieces).
const COPY_STEP: u64 = 64 << 20;

/// Why moving a payload outside the merge failed.
#[derive(Debug)]
pub enum CopyError {
    /// Reading (or seeking) the input failed.
    Read(io::Error),
    /// Writing the output failed.
    Write(io::Error),
}

impl core::fmt::Display for CopyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CopyError::Read(e) => write!(f, "read failed: {e}"),
            CopyError::Write(e) => write!(f, "write failed: {e}"),
        }
    }
}

impl std::error::Error for CopyError {}

/// The payload mover of [`merge_streams`], for any reader and writer: reads
/// into a reusable 1 MiB buffer and writes that out (a skip reads and drops).
#[derive(Debug, Default)]
pub struct BufCopier {
    buf: AlignedBuf,
}

impl BufCopier {
    /// A copier; its buffer is allocated on first use.
    pub fn new() -> Self {
        BufCopier {
            buf: AlignedBuf::default(),
        }
    }

    /// Moves up to `len` bytes from `r` to `w` (`emit`) or drops them;
    /// returns the count, less than `len` only when `r` ended.
    pub fn copy<R: Read + ?Sized, W: Write + ?Sized>(
        &mut self,
        r: &mut R,
        w: &mut W,
        len: u64,
        emit: bool,
    ) -> Result<u64, CopyError> {
        if self.buf.is_empty() {
            self.buf = AlignedBuf::zeroed(CHUNK);
        }
        let mut done = 0u64;
        while done < len {
            let want = usize::try_from(len - done).map_or(CHUNK, |n| n.min(CHUNK));
            let k = match r.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(k) => k.min(want),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            if emit {
                w.write_all(&self.buf[..k]).map_err(CopyError::Write)?;
            }
            done += k as u64;
        }
        Ok(done)
    }
}

/// A payload mover for [`merge_streams_with`]: `(input, output, len, emit)`
/// moves up to `len` bytes of `input` to `output` (`emit`) or skips them,
/// and returns the count (less than `len`, 0 included, only when the input
/// ended).
pub type Copier<'a, R, W> = dyn FnMut(&mut R, &mut W, u64, bool) -> Result<u64, CopyError> + 'a;

/// Merge N consecutive diffs (v1 or v2, in chain order) from `inputs` into
/// `out`. For two v1 inputs the bytes equal `rbd merge-diff`'s output.
/// Inputs are read only up to their `e`. `progress` is called with the
/// number of input bytes read so far.
///
/// Payloads that are not in the read buffer go from the input to `out`
/// through one buffer ([`BufCopier`]), in pieces of up to 1 MiB (a
/// `BufWriter` as `out` passes pieces as large as its capacity through and
/// copies smaller ones, so keep its capacity small); [`merge_streams_with`]
/// takes a mover of your own (a kernel copy, a seek to skip).
pub fn merge_streams<R: Read, W: Write>(
    inputs: &mut [R],
    out: W,
    opts: &MergeOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<MergeStats, MergeStreamError> {
    let mut c = BufCopier::new();
    merge_streams_with(inputs, out, opts, progress, &mut |r, w, len, emit| {
        c.copy(r, w, len, emit)
    })
}

/// [`merge_streams`] with a payload mover of your own: called with the
/// input, the output (everything merged before the payload is written to
/// it already), up to how many bytes to move, and whether to write them
/// (`false`: skip them); see [`Copier`].
pub fn merge_streams_with<R: Read, W: Write>(
    inputs: &mut [R],
    mut out: W,
    opts: &MergeOptions,
    progress: &mut dyn FnMut(u64),
    copy: &mut Copier<'_, R, W>,
) -> Result<MergeStats, MergeStreamError> {
    let mut m = PushMerge::new(inputs.len(), opts.output);
    m.set_external_payloads(true);
    let mut read = 0u64;
    // Payload bytes of each input moved by `copy` since its last read.
    let mut copied = vec![u64::MAX; inputs.len()];
    let out_err = |e: io::Error| MergeStreamError {
        input: None,
        phase: Phase::Output,
        kind: MergeErrorKind::Io(e),
        located: None,
    };
    // Inputs are read straight into the merge's buffers, and the output is
    // written in CHUNK-sized pieces (a buffered writer passes those through
    // without copying them). Payloads not read yet go straight from the
    // input to the output through `copy`.
    loop {
        let need = m.advance(CHUNK)?;
        if !matches!(need, Need::Input(_)) {
            let o = m.output();
            if !o.is_empty() {
                out.write_all(o).map_err(out_err)?;
                o.clear();
            }
        }
        let i = match need {
            Need::Output => continue,
            Need::Done => break,
            Need::Input(i) => i,
            Need::Copy {
                input: i,
                len,
                emit,
            } => {
                let step = len.min(COPY_STEP);
                let n = copy(&mut inputs[i], &mut out, step, emit).map_err(|e| match e {
                    CopyError::Read(e) => MergeStreamError {
                        input: Some(i),
                        phase: Phase::Data,
                        kind: MergeErrorKind::Io(e),
                        located: None,
                    },
                    CopyError::Write(e) => out_err(e),
                })?;
                if n > 0 {
                    m.consumed_elsewhere(i, n)?;
                    read += n;
                    copied[i] = copied[i].saturating_add(n);
                    progress(read);
                    continue;
                }
                // The input ended inside the payload: a push says so, and
                // the merge reports the truncation where it is.
                i
            }
        };
        let max = if copied[i] > SMALL as u64 {
            SMALL
        } else {
            CHUNK
        };
        let r = loop {
            match m.push_with(i, max, |b| inputs[i].read(b))? {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => break r,
            }
        };
        let n = r.map_err(|e| MergeStreamError {
            input: Some(i),
            phase: if m.input_in_data(i) {
                Phase::Data
            } else {
                Phase::RecordHeader
            },
            kind: MergeErrorKind::Io(e),
            located: None,
        })?;
        read += n as u64;
        copied[i] = 0;
        progress(read);
    }
    out.flush().map_err(out_err)?;
    Ok(MergeStats {
        records: m.records(),
        bytes_written: m.bytes_written(),
        size: m.size().unwrap_or(0),
    })
}
