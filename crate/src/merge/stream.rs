//! The std driver: merge diffs read from [`std::io::Read`]ers into a
//! [`std::io::Write`], on top of [`PushMerge`].

use super::push::{MergeErrorKind, MergeStreamError, Need, Phase, PushMerge};
use crate::format::Format;
use std::io::{self, Read, Write};

/// Merge options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeOptions {
    /// Output format: [`Format::DiffV1`] (what rbd writes) or [`Format::DiffV2`].
    pub output: Format,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            output: Format::DiffV1,
        }
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

/// Merge N consecutive diffs (v1 or v2, in chain order) from `inputs` into
/// `out`. For two v1 inputs the bytes equal `rbd merge-diff`'s output.
/// Inputs are read only up to their `e`. `progress` is called with the
/// number of input bytes read so far.
pub fn merge_streams<R: Read, W: Write>(
    inputs: &mut [R],
    mut out: W,
    opts: &MergeOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<MergeStats, MergeStreamError> {
    let mut m = PushMerge::new(inputs.len(), opts.output);
    let mut read = 0u64;
    let out_err = |e: io::Error| MergeStreamError {
        input: None,
        phase: Phase::Output,
        kind: MergeErrorKind::Io(e),
        located: None,
    };
    // Inputs are read straight into the merge's buffers, and the output is
    // written in CHUNK-sized pieces (a buffered writer passes those through
    // without copying them).
    loop {
        let need = m.advance(CHUNK)?;
        if matches!(need, Need::Output | Need::Done) {
            let o = m.output();
            if !o.is_empty() {
                out.write_all(o).map_err(out_err)?;
                o.clear();
            }
        }
        match need {
            Need::Output => {}
            Need::Done => break,
            Need::Input(i) => {
                let r = loop {
                    match m.push_with(i, CHUNK, |b| inputs[i].read(b))? {
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
                progress(read);
            }
        }
    }
    out.flush().map_err(out_err)?;
    Ok(MergeStats {
        records: m.records(),
        bytes_written: m.bytes_written(),
        size: m.size().unwrap_or(0),
    })
}
