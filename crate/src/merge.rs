//! Merge of consecutive diffs, as an I/O-free engine plus a stream driver.
//!
//! [`Merger`] sees record headers of N inputs (in chain order) and tells its
//! driver what to do: fetch the next record of an input, emit a `w` piece
//! copied from an input, skip input payload, emit a `z`. For two inputs its
//! output is the one `rbd merge-diff` writes, byte for byte: records of the
//! second diff win and are copied whole, records of the first are cut around
//! them, the image growth `[first size, second size)` becomes `z`, and data
//! past the final size is dropped.
//!
//! For N inputs the same rule generalises: at each image position the latest
//! input's record wins, and a shrink to `size_i` in input `i` zeroes
//! everything at or past `size_i` that earlier inputs wrote (a virtual `z`
//! ranked just below input `i`'s own records).
//!
//! Inputs must be like rbd's: ascending, non-overlapping, non-empty records
//! within their own size (a missing `s` counts as size 0, as in rbd).

use alloc::vec::Vec;

/// A record header of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// `w offset len` (payload follows in the input).
    Write {
        /// Image offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// `z offset len`.
    Zero {
        /// Image offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// `e`.
    End,
}

/// What the driver must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the next record header of input `.0` and [`push`](Merger::push) it.
    NeedRecord(usize),
    /// Emit `w offset len`, its payload being the next `len` payload bytes of `input`.
    Write {
        /// Input to copy from.
        input: usize,
        /// Output image offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Read and drop the next `len` payload bytes of `input`.
    Skip {
        /// Input.
        input: usize,
        /// Bytes.
        len: u64,
    },
    /// Emit `z offset len`.
    Zero {
        /// Output image offset.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Emit `e`: the merge is complete.
    Done,
}

/// Why the merge cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeError {
    /// Input `input` has a record starting before the previous one ended
    /// (or, at its end, records past its size): rbd's "out-of-order offset".
    OutOfOrder {
        /// Input index.
        input: usize,
        /// End of the previous record (rbd's left number).
        prev_end: u64,
        /// Offset of the record, or the diff size at its end.
        offset: u64,
    },
    /// Input `input` has a record of length 0.
    ZeroLength {
        /// Input index.
        input: usize,
    },
    /// A record was pushed for an input that was not asked for one.
    Protocol,
}

impl core::fmt::Display for MergeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            MergeError::OutOfOrder {
                input,
                prev_end,
                offset,
            } => write!(
                f,
                "out-of-order offset in diff #{} ({prev_end} > {offset})",
                input + 1
            ),
            MergeError::ZeroLength { input } => {
                write!(f, "zero-length record in diff #{}", input + 1)
            }
            MergeError::Protocol => f.write_str("merge driver protocol error"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cur {
    Need,
    Rec {
        write: bool,
        start: u64,
        end: u64,
        /// For writes: image offset of the next payload byte in the input.
        pos: u64,
    },
    Ended,
}

/// The I/O-free merge engine. See the module docs.
#[derive(Clone, Debug)]
pub struct Merger {
    sizes: Vec<u64>,
    cur: Vec<Cur>,
    last_end: Vec<u64>,
    p: u64,
    final_size: u64,
    asked: Option<usize>,
}

impl Merger {
    /// An engine for inputs whose `s` sizes are `sizes` (in chain order;
    /// rbd treats a missing size as 0).
    pub fn new(sizes: &[u64]) -> Self {
        Merger {
            sizes: sizes.to_vec(),
            cur: alloc::vec![Cur::Need; sizes.len()],
            last_end: alloc::vec![0; sizes.len()],
            p: 0,
            final_size: sizes.last().copied().unwrap_or(0),
            asked: None,
        }
    }

    /// The size of the merged image (the last input's size).
    pub fn final_size(&self) -> u64 {
        self.final_size
    }

    /// Hand over the record asked for by [`Action::NeedRecord`].
    pub fn push(&mut self, input: usize, rec: Record) -> Result<(), MergeError> {
        if self.asked != Some(input) {
            return Err(MergeError::Protocol);
        }
        self.asked = None;
        let last = self.last_end[input];
        let (write, offset, len) = match rec {
            Record::End => {
                // rbd compares the cursor with the diff size at the end.
                let size = self.sizes[input];
                if last > size {
                    return Err(MergeError::OutOfOrder {
                        input,
                        prev_end: last,
                        offset: size,
                    });
                }
                self.cur[input] = Cur::Ended;
                return Ok(());
            }
            Record::Write { offset, len } => (true, offset, len),
            Record::Zero { offset, len } => (false, offset, len),
        };
        if len == 0 {
            return Err(MergeError::ZeroLength { input });
        }
        if offset < last {
            return Err(MergeError::OutOfOrder {
                input,
                prev_end: last,
                offset,
            });
        }
        let end = offset.checked_add(len).ok_or(MergeError::OutOfOrder {
            input,
            prev_end: last,
            offset,
        })?;
        self.last_end[input] = end;
        self.cur[input] = Cur::Rec {
            write,
            start: offset,
            end,
            pos: offset,
        };
        Ok(())
    }

    /// The next thing to do.
    pub fn next_action(&mut self) -> Result<Action, MergeError> {
        if let Some(i) = self.asked {
            return Ok(Action::NeedRecord(i));
        }
        loop {
            let drain = self.p >= self.final_size;
            let horizon = if drain { u64::MAX } else { self.p };
            if let Some(action) = self.catch_up(horizon) {
                return Ok(action);
            }
            if drain {
                return Ok(Action::Done);
            }
            let p = self.p;
            let (winner, q) = self.winner_at(p);
            self.p = q;
            match winner {
                None => continue,
                Some((_, None)) => {
                    return Ok(Action::Zero {
                        offset: p,
                        len: q - p,
                    });
                }
                Some((_, Some(i))) => {
                    let Cur::Rec {
                        write, start, end, ..
                    } = self.cur[i]
                    else {
                        unreachable!()
                    };
                    if write {
                        self.cur[i] = Cur::Rec {
                            write,
                            start,
                            end,
                            pos: q,
                        };
                        return Ok(Action::Write {
                            input: i,
                            offset: p,
                            len: q - p,
                        });
                    }
                    return Ok(Action::Zero {
                        offset: p,
                        len: q - p,
                    });
                }
            }
        }
    }

    /// Step 1 of [`Self::next_action`]: the action that brings every input
    /// to a current record ending past `horizon`, or `None` once they all
    /// are.
    fn catch_up(&mut self, horizon: u64) -> Option<Action> {
        let n = self.cur.len();
        // 1. Every input has a current record ending past `p`, with its
        //    payload consumed up to `p`.
        for i in 0..n {
            match self.cur[i] {
                Cur::Need => {
                    self.asked = Some(i);
                    return Some(Action::NeedRecord(i));
                }
                Cur::Rec {
                    write,
                    start,
                    end,
                    pos,
                } => {
                    if end <= horizon {
                        if write && pos < end {
                            self.cur[i] = Cur::Rec {
                                write,
                                start,
                                end,
                                pos: end,
                            };
                            return Some(Action::Skip {
                                input: i,
                                len: end - pos,
                            });
                        }
                        self.asked = Some(i);
                        self.cur[i] = Cur::Need;
                        return Some(Action::NeedRecord(i));
                    }
                    if write && pos < horizon {
                        self.cur[i] = Cur::Rec {
                            write,
                            start,
                            end,
                            pos: horizon,
                        };
                        return Some(Action::Skip {
                            input: i,
                            len: horizon - pos,
                        });
                    }
                }
                Cur::Ended => {}
            }
        }
        None
    }

    /// Steps 2 and 3 of [`Self::next_action`]: the winner at `p` (its rank
    /// and, for a record, its input) and where it stops.
    fn winner_at(&self, p: u64) -> (Option<(u64, Option<usize>)>, u64) {
        let n = self.cur.len();
        // 2. The winner at `p`: the highest rank covering it. Input i's
        //    shrink zeroes rank 2i+1, its records rank 2i+2.
        let mut winner: Option<(u64, Option<usize>)> = None; // (rank, record input)
        for i in (0..n).rev() {
            if let Cur::Rec { start, .. } = self.cur[i]
                && start <= p
            {
                winner = Some((2 * i as u64 + 2, Some(i)));
                break;
            }
            if self.sizes[i] <= p {
                winner = Some((2 * i as u64 + 1, None));
                break;
            }
        }
        // 3. Where the winner stops: its end, the final size, or the start
        //    of anything ranked higher.
        let mut q = self.final_size;
        let rank = winner.map_or(0, |w| w.0);
        if let Some((_, Some(i))) = winner
            && let Cur::Rec { end, .. } = self.cur[i]
        {
            q = q.min(end);
        }
        for i in 0..n {
            if 2 * i as u64 + 1 > rank && self.sizes[i] > p {
                q = q.min(self.sizes[i]);
            }
            if 2 * i as u64 + 2 > rank
                && let Cur::Rec { start, .. } = self.cur[i]
                && start > p
            {
                q = q.min(start);
            }
        }
        (winner, q)
    }
}

mod push;
pub use push::{
    InputHeader, MergeErrorKind, MergeStreamError, Need, Phase, PullStep, PushMerge, check_chain,
    input_config,
};

#[cfg(feature = "std")]
mod stream;
#[cfg(feature = "std")]
pub use stream::{
    BufCopier, Copier, CopyError, MergeOptions, MergeStats, merge_streams, merge_streams_with,
};
