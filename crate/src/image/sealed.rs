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
//! (Hashing on a second thread does not pay on machines whose two CPUs are
//! hyperthreads of one core: measured in `bench/integrity`.)

use super::{Encoder, ExportHooks, Exported};
use crate::encode::Sink;
use crate::integrity::{Entry, Hasher, HashingSink, Manifest, ZeroHash, hash};

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

    fn object_done(&mut self) {
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
