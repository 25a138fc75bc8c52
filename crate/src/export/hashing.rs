//! The hashes of [`export_diff_sealed`](super::export_diff_sealed): the
//! pre- and post-image hash of every record.
//!
//! They cost a pass over the base's and the new image's changed bytes. The
//! cheap pass is the one made while those bytes are still in the CPU cache,
//! right after each piece is read ([`ExportHooks::read`]): the whole read
//! span of an object is hashed piece by piece, and when the object's only
//! record covers exactly that span (an object rewritten through, the common
//! case of heavy change) its hashes are those. Otherwise the records are
//! hashed from the object's buffers afterwards. Whether to hash the span
//! while reading is guessed from the previous object that had records.
//!
//! With threads ([`ParHooks`], `std`), the hashing leaves the exporting
//! thread altogether: each object's buffers go to a hashing thread once its
//! records are written, the export goes on into a second pair of buffers,
//! and the hashes come back into the manifest and the stream checksum
//! ([`HashingSink::payload_later`]) in order.

use super::{Encoder, ExportHooks, Exported};
use crate::block::AlignedBuf;
use crate::encode::Sink;
use crate::integrity::{Entry, Hasher, HashingSink, Manifest, ZeroHash, hash};
#[cfg(feature = "std")]
use alloc::vec::Vec;

/// The span of an object read so far, and its hashes when speculating.
#[derive(Debug)]
struct Span {
    start: usize,
    end: usize,
    /// The new image's and the base's (`None`: diffing from zeros) bytes.
    hashes: Option<(Hasher, Option<Hasher>)>,
}

/// The export hooks that fill in a manifest's entries and give each `w`
/// payload's hash to the stream checksum.
#[derive(Debug)]
pub(super) struct Hooks<'m> {
    m: &'m mut Manifest,
    zeros: ZeroHash,
    /// Hash the read span of the objects to come.
    speculate: bool,
    span: Option<Span>,
    /// Records of the current object.
    records: usize,
    /// The current object's only record so far covers its span.
    whole: bool,
}

impl<'m> Hooks<'m> {
    pub(super) fn new(m: &'m mut Manifest) -> Self {
        Hooks {
            m,
            zeros: ZeroHash::default(),
            speculate: true,
            span: None,
            records: 0,
            whole: false,
        }
    }
}

impl<S: Sink> ExportHooks<HashingSink<S>> for Hooks<'_> {
    fn read(&mut self, at: usize, to: &[u8], base: Option<&[u8]>) {
        let speculate = self.speculate;
        let s = self.span.get_or_insert_with(|| Span {
            start: at,
            end: at,
            hashes: speculate.then(|| (Hasher::new(), base.map(|_| Hasher::new()))),
        });
        if s.end != at {
            // Not contiguous (export_records never does this): no span.
            s.hashes = None;
            s.start = at;
        }
        if let Some((t, b)) = s.hashes.as_mut() {
            t.update(to);
            if let (Some(h), Some(bytes)) = (b.as_mut(), base) {
                h.update(bytes);
            }
        }
        s.end = at + to.len();
    }

    fn record(&mut self, r: &Exported<'_>, enc: &mut Encoder<HashingSink<S>>) {
        let len = r.data.len() as u64;
        self.records += 1;
        let span = self
            .span
            .as_ref()
            .filter(|s| self.records == 1 && s.start == r.at && s.end == r.at + r.data.len());
        self.whole = span.is_some();
        let (pre, post) = match span.and_then(|s| s.hashes.as_ref()) {
            Some((t, b)) => (
                b.as_ref()
                    .map_or_else(|| self.zeros.get(len), Hasher::digest),
                if r.zero {
                    self.zeros.get(len)
                } else {
                    t.digest()
                },
            ),
            None => (
                r.base.map_or_else(|| self.zeros.get(len), hash),
                if r.zero {
                    self.zeros.get(len)
                } else {
                    hash(r.data)
                },
            ),
        };
        if !r.zero {
            enc.sink_mut().payload(len, post);
        }
        self.m.entries.push(Entry {
            offset: r.offset,
            len,
            pre,
            post,
        });
    }

    fn object_done(
        &mut self,
        _: &mut AlignedBuf,
        _: &mut AlignedBuf,
        _: &mut Encoder<HashingSink<S>>,
    ) {
        // Objects with records tell whether the next ones are likely to be
        // rewritten through (one record over the whole span read).
        if self.records > 0 {
            self.speculate = self.whole && self.records == 1;
        }
        self.span = None;
        self.records = 0;
        self.whole = false;
    }
}

/// Objects up to this size are hashed on a second thread by [`ParHooks`]
/// (each in-flight object holds its buffers: rbd's largest objects are
/// 32 MiB).
#[cfg(feature = "std")]
pub(super) const PAR_MAX_OBJECT: u64 = 32 << 20;

/// One record of an object handed to the hashing thread.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
struct Rec {
    at: usize,
    len: usize,
    zero: bool,
}

/// An object's buffers and records, to hash; sent back with the hashes.
#[cfg(feature = "std")]
#[derive(Debug, Default)]
struct Job {
    to: AlignedBuf,
    base: AlignedBuf,
    /// Diffing from a base image (else from zeros).
    has_base: bool,
    recs: Vec<Rec>,
    /// Index of the first record's entry in the manifest.
    first: usize,
    /// (pre, post) of each record, filled by the hashing thread.
    hashes: Vec<(u128, u128)>,
}

#[cfg(feature = "std")]
impl Job {
    fn hash(&mut self, zeros: &mut ZeroHash) {
        self.hashes.clear();
        for r in &self.recs {
            let len = r.len as u64;
            let range = r.at..r.at + r.len;
            let pre = if self.has_base {
                hash(&self.base[range.clone()])
            } else {
                zeros.get(len)
            };
            let post = if r.zero {
                zeros.get(len)
            } else {
                hash(&self.to[range])
            };
            self.hashes.push((pre, post));
        }
    }
}

/// The export hooks of [`Hooks`], with the hashing on a second thread (see
/// the module docs). [`finish`](Self::finish) must be called after the
/// last object, before the manifest or the stream checksum is used.
#[cfg(feature = "std")]
#[derive(Debug)]
pub(super) struct ParHooks<'m> {
    m: &'m mut Manifest,
    /// The object being exported.
    job: Job,
    to_worker: Option<std::sync::mpsc::Sender<Job>>,
    from_worker: std::sync::mpsc::Receiver<Job>,
    worker: Option<std::thread::JoinHandle<()>>,
    /// Jobs sent and not back yet.
    in_flight: usize,
    /// A pair of buffers to export the next object into.
    spare: Option<(AlignedBuf, AlignedBuf)>,
    /// A spare pair was allocated (one is enough: hashing an object is
    /// much quicker than reading the next one).
    allocated: bool,
}

#[cfg(feature = "std")]
impl<'m> ParHooks<'m> {
    /// The hooks with their hashing thread, or `None` when no thread can
    /// be started (as under WASI preview 1).
    pub(super) fn new(m: &'m mut Manifest) -> Option<Self> {
        let (to_worker, jobs) = std::sync::mpsc::channel::<Job>();
        let (done, from_worker) = std::sync::mpsc::channel();
        let worker = std::thread::Builder::new()
            .name("rbdiff-hash".into())
            .spawn(move || {
                let mut zeros = ZeroHash::default();
                for mut job in jobs {
                    job.hash(&mut zeros);
                    if done.send(job).is_err() {
                        break;
                    }
                }
            })
            .ok()?;
        Some(ParHooks {
            m,
            job: Job::default(),
            to_worker: Some(to_worker),
            from_worker,
            worker: Some(worker),
            in_flight: 0,
            spare: None,
            allocated: false,
        })
    }

    /// Waits for one job to come back and takes in its hashes.
    fn receive<S: Sink>(&mut self, enc: &mut Encoder<HashingSink<S>>) {
        let Ok(job) = self.from_worker.recv() else {
            self.worker_died()
        };
        self.in_flight -= 1;
        for ((r, &(pre, post)), e) in job
            .recs
            .iter()
            .zip(&job.hashes)
            .zip(&mut self.m.entries[job.first..])
        {
            e.pre = pre;
            e.post = post;
            if !r.zero {
                enc.sink_mut().resolve(post);
            }
        }
        self.spare = Some((job.to, job.base));
    }

    /// Waits for the hashes of every object exported so far.
    pub(super) fn finish<S: Sink>(&mut self, enc: &mut Encoder<HashingSink<S>>) {
        while self.in_flight > 0 {
            self.receive(enc);
        }
    }

    /// The hashing thread stopped early, which only a panic does: pass it
    /// on.
    fn worker_died(&mut self) -> ! {
        self.to_worker = None;
        match self.worker.take().map(std::thread::JoinHandle::join) {
            Some(Err(p)) => std::panic::resume_unwind(p),
            _ => panic!("the hashing thread stopped with jobs in flight"),
        }
    }
}

#[cfg(feature = "std")]
impl<S: Sink> ExportHooks<HashingSink<S>> for ParHooks<'_> {
    fn record(&mut self, r: &Exported<'_>, enc: &mut Encoder<HashingSink<S>>) {
        let len = r.data.len() as u64;
        if self.job.recs.is_empty() {
            self.job.first = self.m.entries.len();
        }
        self.job.recs.push(Rec {
            at: r.at,
            len: r.data.len(),
            zero: r.zero,
        });
        self.job.has_base = r.base.is_some();
        if !r.zero {
            enc.sink_mut().payload_later(len);
        }
        self.m.entries.push(Entry {
            offset: r.offset,
            len,
            pre: 0,
            post: 0,
        });
    }

    fn object_done(
        &mut self,
        to: &mut AlignedBuf,
        base: &mut AlignedBuf,
        enc: &mut Encoder<HashingSink<S>>,
    ) {
        if self.job.recs.is_empty() {
            return;
        }
        let (t, b) = match self.spare.take() {
            Some(pair) => pair,
            None if !self.allocated => {
                self.allocated = true;
                (AlignedBuf::zeroed(to.len()), AlignedBuf::zeroed(base.len()))
            }
            None => {
                self.receive(enc);
                self.spare.take().unwrap_or_default()
            }
        };
        let mut job = core::mem::take(&mut self.job);
        job.to = core::mem::replace(to, t);
        job.base = core::mem::replace(base, b);
        match self.to_worker.as_ref().map(|tx| tx.send(job)) {
            Some(Ok(())) => self.in_flight += 1,
            _ => self.worker_died(),
        }
    }
}

#[cfg(feature = "std")]
impl Drop for ParHooks<'_> {
    fn drop(&mut self) {
        // Closing the channel ends the thread (after the jobs in flight,
        // when the export failed half-way).
        self.to_worker = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
