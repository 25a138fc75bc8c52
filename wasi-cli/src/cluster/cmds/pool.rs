//! The buffers of the reads and writes a command has in flight, reused from
//! one request to the next, their memory bounded: what keeps a cluster
//! command's peak memory at librados' own plus [`BUDGET`].

use crate::ceph::AlignedBuf;

/// Bytes of buffers a command holds at once: in flight, being encoded or
/// hashed, and kept for reuse (beyond that, one buffer is always allowed).
/// rbd keeps up to `--rbd-concurrent-management-ops` (10) whole 4 MiB
/// objects in flight, 40 MiB; the reads of a single OSD here run as fast
/// from 16 MiB (bench/cluster).
pub const BUDGET: u64 = 20 << 20;

/// [`BUDGET`] of a sealed export, which reads the base as well: librados'
/// message buffers for two streams of reads come on top (a sealed export
/// peaked at 65-68 MiB with 20 MiB, 57-58 MiB with 16, as fast).
pub const SEALED_BUDGET: u64 = 16 << 20;

/// Buffers handed out and kept, all counted by length.
#[derive(Debug)]
pub struct Pool {
    spare: Vec<AlignedBuf>,
    /// Capacity of the buffers handed out.
    out: u64,
    /// Capacity of the spare buffers.
    kept: u64,
    budget: u64,
}

impl Pool {
    /// A pool whose buffers total at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        Pool {
            spare: Vec::new(),
            out: 0,
            kept: 0,
            budget,
        }
    }

    /// A buffer of `len` bytes may be taken now: none is out, or it fits
    /// in the budget beside those that are.
    pub fn room(&self, len: u64) -> bool {
        self.out == 0 || self.out + len <= self.budget
    }

    /// A buffer of at least `len` bytes (stale contents, never zeroed
    /// again): the smallest spare that is long enough, else a new one,
    /// after dropping spares the budget has no room for.
    pub fn take(&mut self, len: usize) -> AlignedBuf {
        let fit = self
            .spare
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= len)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        let b = if let Some(i) = fit {
            let b = self.spare.swap_remove(i);
            self.kept -= b.len() as u64;
            b
        } else {
            while self.out + self.kept + len as u64 > self.budget {
                let Some(b) = self.spare.pop() else { break };
                self.kept -= b.len() as u64;
            }
            // Zeroed by the allocator (fresh pages), not by a pass here.
            AlignedBuf::zeroed(len)
        };
        self.out += b.len() as u64;
        b
    }

    /// Give back a buffer [`take`](Self::take) handed out: kept for reuse
    /// while the budget has room for it.
    pub fn give(&mut self, b: AlignedBuf) {
        let cap = b.len() as u64;
        self.out = self.out.saturating_sub(cap);
        if cap > 0 && self.out + self.kept + cap <= self.budget {
            self.kept += cap;
            self.spare.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_reused() {
        let mut p = Pool::new(10);
        assert!(p.room(100), "one buffer is always allowed");
        let a = p.take(4);
        let b = p.take(4);
        assert_eq!(p.out, 8);
        assert!(p.room(2) && !p.room(3));
        let pa = a.as_ptr();
        p.give(a);
        // The spare is reused for a shorter request, not a longer one.
        let c = p.take(3);
        assert_eq!(c.as_ptr(), pa);
        assert_eq!(c.len(), 4);
        p.give(c);
        p.give(b);
        assert_eq!((p.out, p.kept), (0, 8));
        // A longer buffer: the spares that do not fit beside it go.
        let d = p.take(6);
        assert_eq!(d.len(), 6);
        assert!(p.out + p.kept <= 10, "{} + {}", p.out, p.kept);
        p.give(d);
        assert!(p.kept <= 10);
    }
}
