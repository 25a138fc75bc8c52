//! Object maps: which objects of an image exist and which changed since the
//! previous snapshot, rbd's `object-map` / `fast-diff` model.
//!
//! An [`ObjectMap`] holds one of rbd's four states per object, two bits
//! each, four objects a byte (the first in the high bits, as Ceph's
//! `BitVector<2>`):
//!
//! | state | meaning |
//! |---|---|
//! | [`OBJECT_NONEXISTENT`] | reads as zeros |
//! | [`OBJECT_EXISTS`] | may hold data; written since the previous snapshot |
//! | [`OBJECT_PENDING`] | being removed (treated as [`OBJECT_EXISTS`]) |
//! | [`OBJECT_EXISTS_CLEAN`] | may hold data; unchanged since the previous snapshot |
//!
//! A map is a claim: it may over-report (an object marked as existing that
//! reads as zeros, one marked written that holds the same bytes) but never
//! under-report. From the maps of an image's snapshots (and HEAD)
//! [`may_differ`] gives the objects a diff between two of them has to look
//! at, the way librbd's `DiffRequest` does; [`Hinted`] hands those to the
//! export engines ([`crate::export::export_diff`] and friends), which then
//! read only those objects. [`build`] makes a map from the contents (rbd's
//! `object-map rebuild`) and [`check`] verifies one against them.

use crate::block::{AlignedBuf, BlockSource, is_zero};
use alloc::vec;
use alloc::vec::Vec;

/// The object reads as zeros.
pub const OBJECT_NONEXISTENT: u8 = 0;
/// The object may hold data and was written since the previous snapshot.
pub const OBJECT_EXISTS: u8 = 1;
/// The object is being removed (counts as [`OBJECT_EXISTS`]).
pub const OBJECT_PENDING: u8 = 2;
/// The object may hold data and is unchanged since the previous snapshot.
pub const OBJECT_EXISTS_CLEAN: u8 = 3;

/// Whether a state claims the object may hold data.
pub fn exists(state: u8) -> bool {
    state != OBJECT_NONEXISTENT
}

/// Whether a state claims the object was written since the previous snapshot.
pub fn dirty(state: u8) -> bool {
    state == OBJECT_EXISTS || state == OBJECT_PENDING
}

/// Per-object states of an image of some size (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMap {
    order: u8,
    size: u64,
    bits: Vec<u8>,
}

/// Why an object map cannot be made or used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// The order is outside 12..=30 (4 KiB to 1 GiB objects).
    Order(u8),
    /// The image has more objects than a map in memory can hold.
    TooManyObjects(u64),
    /// The state bytes are not as long as the object count needs.
    Length {
        /// Bytes the object count needs.
        expected: u64,
        /// Bytes given.
        got: u64,
    },
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::Order(o) => write!(f, "object order {o} outside 12..=30"),
            MapError::TooManyObjects(n) => write!(f, "{n} objects: too many for an object map"),
            MapError::Length { expected, got } => {
                write!(f, "object map state bytes: {got}, expected {expected}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for MapError {}

/// The most objects a map holds (1 TiB of states' worth is far beyond it:
/// 2^32 objects are 1 GiB of map).
const MAX_OBJECTS: u64 = 1 << 32;

/// A length that fits (maps and objects are bounded far below `usize`).
fn us(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn byte_len(count: u64) -> u64 {
    count.div_ceil(4)
}

impl ObjectMap {
    /// A map of an image of `size` bytes with objects of `1 << order` bytes,
    /// every object [`OBJECT_NONEXISTENT`].
    pub fn new(size: u64, order: u8) -> Result<ObjectMap, MapError> {
        if !(12..=30).contains(&order) {
            return Err(MapError::Order(order));
        }
        let count = size.div_ceil(1 << order);
        if count > MAX_OBJECTS {
            return Err(MapError::TooManyObjects(count));
        }
        Ok(ObjectMap {
            order,
            size,
            bits: vec![0; us(byte_len(count))],
        })
    }

    /// A map from its state bytes ([`as_bytes`](Self::as_bytes)).
    pub fn from_bytes(size: u64, order: u8, bytes: &[u8]) -> Result<ObjectMap, MapError> {
        let mut m = Self::new(size, order)?;
        if m.bits.len() != bytes.len() {
            return Err(MapError::Length {
                expected: m.bits.len() as u64,
                got: bytes.len() as u64,
            });
        }
        m.bits.copy_from_slice(bytes);
        m.clear_tail();
        Ok(m)
    }

    /// The state bytes (four objects a byte, the first in the high bits).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// The image size the map is for.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The object order.
    pub fn order(&self) -> u8 {
        self.order
    }

    /// The object size.
    pub fn object_size(&self) -> u64 {
        1 << self.order
    }

    /// Number of objects.
    pub fn len(&self) -> u64 {
        self.size.div_ceil(self.object_size())
    }

    /// True for an image of size 0.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// State of object `k` ([`OBJECT_NONEXISTENT`] past the end).
    pub fn get(&self, k: u64) -> u8 {
        if k >= self.len() {
            return OBJECT_NONEXISTENT;
        }
        let byte = self.bits[(k / 4) as usize];
        (byte >> (6 - 2 * (k % 4))) & 3
    }

    /// Set the state of object `k` (ignored past the end).
    pub fn set(&mut self, k: u64, state: u8) {
        if k >= self.len() {
            return;
        }
        let shift = 6 - 2 * (k % 4);
        let b = &mut self.bits[(k / 4) as usize];
        *b = (*b & !(3 << shift)) | ((state & 3) << shift);
    }

    /// States past the last object are zero (so equal maps compare equal).
    fn clear_tail(&mut self) {
        let n = self.len();
        if !n.is_multiple_of(4)
            && let Some(last) = self.bits.last_mut()
        {
            *last &= !(0xffu8 >> (2 * (n % 4)));
        }
    }

    /// The objects `[first, last)` that `[offset, offset + len)` touches
    /// (clipped to the size).
    pub fn objects(&self, offset: u64, len: u64) -> (u64, u64) {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return (0, 0);
        }
        (offset >> self.order, end.div_ceil(self.object_size()))
    }

    /// Record a write of data to `[offset, offset + len)`.
    pub fn write(&mut self, offset: u64, len: u64) {
        let (a, b) = self.objects(offset, len);
        for k in a..b {
            self.set(k, OBJECT_EXISTS);
        }
    }

    /// Record that `[offset, offset + len)` now reads as zeros: objects it
    /// covers whole no longer exist, existing ones it covers in part are
    /// written.
    pub fn zero(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size);
        let (a, b) = self.objects(offset, len);
        for k in a..b {
            if !exists(self.get(k)) {
                continue;
            }
            let os = k << self.order;
            let oe = (os + self.object_size()).min(self.size);
            if offset <= os && end >= oe {
                self.set(k, OBJECT_NONEXISTENT);
            } else {
                self.set(k, OBJECT_EXISTS);
            }
        }
    }

    /// Record a resize: objects past the new end go, an existing object the
    /// new end cuts is written (its tail became zeros), new objects do not
    /// exist.
    pub fn resize(&mut self, size: u64) {
        let old = self.size;
        if size < old && !size.is_multiple_of(self.object_size()) {
            let k = size >> self.order;
            if exists(self.get(k)) {
                self.set(k, OBJECT_EXISTS);
            }
        }
        self.size = size;
        self.bits.resize(us(byte_len(self.len())), 0);
        self.clear_tail();
    }

    /// A copy for a new snapshot's successor: every existing object clean
    /// (what `rbd snap create` does to HEAD's map).
    pub fn cleaned(&self) -> ObjectMap {
        let mut m = self.clone();
        for k in 0..m.len() {
            if exists(m.get(k)) {
                m.set(k, OBJECT_EXISTS_CLEAN);
            }
        }
        m
    }

    /// Number of objects in each state `[nonexistent, exists, pending, clean]`.
    pub fn counts(&self) -> [u64; 4] {
        let mut c = [0u64; 4];
        for k in 0..self.len() {
            c[self.get(k) as usize] += 1;
        }
        c
    }
}

/// Whether object `k` changed in one step `prev -> cur` of an image's
/// history, as `cur`'s map claims: written since, or created or removed.
pub fn changed_in_step(prev: &ObjectMap, cur: &ObjectMap, k: u64) -> bool {
    let c = cur.get(k);
    dirty(c) || exists(c) != exists(prev.get(k))
}

/// The objects a diff from `from` (`None`: from an empty image) to the last
/// of `steps` has to look at. `steps` are the maps of every point after
/// `from` up to the target, oldest first (the target alone when `from` is
/// `None`); an object that changed in no step, or exists at neither end,
/// is the same at both ends.
pub fn may_differ(from: Option<&ObjectMap>, steps: &[&ObjectMap]) -> ObjectSet {
    let Some(to) = steps.last() else {
        return ObjectSet::new(0);
    };
    let n = to.len();
    let mut set = ObjectSet::new(n);
    for k in 0..n {
        let hit = match from {
            None => exists(to.get(k)),
            Some(f) => {
                let mut prev = f;
                let mut changed = false;
                for &m in steps {
                    changed |= changed_in_step(prev, m, k);
                    prev = m;
                }
                changed && (exists(f.get(k)) || exists(to.get(k)))
            }
        };
        if hit {
            set.insert(k);
        }
    }
    set
}

/// A set of object numbers below some count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectSet {
    count: u64,
    words: Vec<u64>,
}

impl ObjectSet {
    /// The empty set of objects below `count`.
    pub fn new(count: u64) -> ObjectSet {
        ObjectSet {
            count,
            words: vec![0; usize::try_from(count.div_ceil(64)).unwrap_or(usize::MAX)],
        }
    }

    /// Every object below `count`.
    pub fn full(count: u64) -> ObjectSet {
        let mut s = ObjectSet::new(count);
        for k in 0..count {
            s.insert(k);
        }
        s
    }

    /// Add object `k` (ignored at or past the count).
    pub fn insert(&mut self, k: u64) {
        if k < self.count {
            self.words[(k / 64) as usize] |= 1 << (k % 64);
        }
    }

    /// Whether object `k` is in the set.
    pub fn contains(&self, k: u64) -> bool {
        k < self.count && self.words[(k / 64) as usize] & (1 << (k % 64)) != 0
    }

    /// Number of objects in the set.
    pub fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// True when no object is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The first object in the set at or after `k`.
    pub fn next(&self, k: u64) -> Option<u64> {
        if k >= self.count {
            return None;
        }
        let mut i = (k / 64) as usize;
        let mut w = self.words[i] & (u64::MAX << (k % 64));
        loop {
            if w != 0 {
                let found = i as u64 * 64 + u64::from(w.trailing_zeros());
                return (found < self.count).then_some(found);
            }
            i += 1;
            w = *self.words.get(i)?;
        }
    }

    /// The first object at or after `k` that is not in the set (or the count).
    pub fn run_end(&self, k: u64) -> u64 {
        let mut j = k;
        while j < self.count && self.contains(j) {
            j += 1;
        }
        j
    }
}

/// A [`BlockSource`] whose objects outside a set read as holes: the export
/// engines skip what is a hole on both sides, so with the same set (from
/// [`may_differ`], or a backend's own diff, as librbd's
/// `diff_iterate` with fast-diff gives) on both sides of a diff they read
/// only those objects. Within the set the inner source's own holes
/// (`SEEK_DATA`) still count. Reads are the inner source's: the set is only
/// a claim about where the two sides may differ.
///
/// With a hint, the first read of an object first reads the whole object
/// backwards, in [`WARM_PIECE`] pieces: an operating system's sequential
/// readahead (8 MiB on some block devices) would otherwise read well past
/// each object it is asked for (15 MiB from disk per 4 MiB object there);
/// backward reads are not sequential, so they read what they ask for, and
/// the forward reads that follow find it cached.
#[derive(Debug)]
pub struct Hinted<S> {
    inner: S,
    set: Option<ObjectSet>,
    order: u8,
    warmed: Option<u64>,
    scratch: AlignedBuf,
}

/// Piece size of [`Hinted`]'s backward reads.
pub const WARM_PIECE: usize = 256 << 10;

impl<S: BlockSource> Hinted<S> {
    /// `inner` with objects (of `1 << order` bytes) outside `set` as holes;
    /// `None`: no hint, everything as `inner` says.
    pub fn new(inner: S, set: Option<ObjectSet>, order: u8) -> Self {
        Hinted {
            inner,
            set,
            order,
            warmed: None,
            scratch: AlignedBuf::default(),
        }
    }

    /// Read object `k` backwards (see the type's docs), once.
    fn warm(&mut self, offset: u64) -> Result<(), S::Error> {
        let k = offset >> self.order;
        if self.warmed == Some(k) || !self.set.as_ref().is_some_and(|s| s.contains(k)) {
            return Ok(());
        }
        self.warmed = Some(k);
        let start = k << self.order;
        let mut p = (start + (1 << self.order)).min(self.inner.size());
        if self.scratch.is_empty() {
            self.scratch = AlignedBuf::zeroed(WARM_PIECE);
        }
        while p > start {
            let s = p.saturating_sub(WARM_PIECE as u64).max(start);
            self.inner.read_at(s, &mut self.scratch[..us(p - s)])?;
            p = s;
        }
        Ok(())
    }

    /// The inner source.
    pub fn inner(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Replace the hint.
    pub fn set_hint(&mut self, set: Option<ObjectSet>) {
        self.set = set;
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&ObjectSet> {
        self.set.as_ref()
    }
}

impl<S: BlockSource> BlockSource for Hinted<S> {
    type Error = S::Error;
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), S::Error> {
        self.warm(offset)?;
        self.inner.read_at(offset, buf)
    }
    fn next_data(&mut self, offset: u64) -> Result<Option<(u64, u64)>, S::Error> {
        let Some(set) = &self.set else {
            return self.inner.next_data(offset);
        };
        let size = self.inner.size();
        let mut p = offset;
        while p < size {
            let Some(k) = set.next(p >> self.order) else {
                return Ok(None);
            };
            let run_start = (k << self.order).max(p);
            let run_end = (set.run_end(k) << self.order).min(size);
            match self.inner.next_data(run_start)? {
                None => return Ok(None),
                Some((s, e)) if s < run_end => return Ok(Some((s, e.min(run_end)))),
                Some((s, _)) => p = s,
            }
        }
        Ok(None)
    }
    fn view(&mut self, offset: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> Result<bool, S::Error> {
        self.inner.view(offset, len, f)
    }
}

/// Read object `k` of `src` into `buf` (its length), zeros past the
/// source's holes; returns whether any byte is non-zero.
fn read_object<S: BlockSource + ?Sized>(
    src: &mut S,
    start: u64,
    buf: &mut [u8],
) -> Result<bool, S::Error> {
    let end = start + buf.len() as u64;
    match src.next_data(start)? {
        Some((s, _)) if s < end => {
            src.read_at(start, buf)?;
            Ok(!is_zero(buf))
        }
        _ => {
            buf.fill(0);
            Ok(false)
        }
    }
}

/// Walk the objects of `cur`: `f(k, holds_data, differs)`, where `differs`
/// compares with `prev` (the previous snapshot; without one, with zeros).
/// Holes (per [`BlockSource::next_data`]) are not read.
fn scan<A, B>(
    cur: &mut A,
    prev: Option<&mut B>,
    order: u8,
    f: &mut dyn FnMut(u64, bool, bool),
) -> Result<Result<u64, MapError>, A::Error>
where
    A: BlockSource + ?Sized,
    B: BlockSource<Error = A::Error> + ?Sized,
{
    let count = match ObjectMap::new(cur.size(), order) {
        Ok(m) => m.len(),
        Err(e) => return Ok(Err(e)),
    };
    let mut prev = prev;
    let obj = 1u64 << order;
    let mut a = AlignedBuf::zeroed(us(obj));
    let mut b = AlignedBuf::zeroed(if prev.is_some() { us(obj) } else { 0 });
    let size = cur.size();
    for k in 0..count {
        let start = k << order;
        let n = us((size - start).min(obj));
        let nonzero = read_object(cur, start, &mut a[..n])?;
        let differs = match prev.as_deref_mut() {
            None => nonzero,
            Some(p) => {
                let pnz = read_object(p, start, &mut b[..n])?;
                (nonzero || pnz) && a[..n] != b[..n]
            }
        };
        f(k, nonzero, differs);
    }
    Ok(Ok(count))
}

/// The exact map of `cur` (rbd's `object-map rebuild`): objects holding a
/// non-zero byte exist; with `prev` (the previous snapshot) those that
/// differ from it are [`OBJECT_EXISTS`], the rest [`OBJECT_EXISTS_CLEAN`].
/// `progress(done, total)` per object.
pub fn build<A, B>(
    cur: &mut A,
    prev: Option<&mut B>,
    order: u8,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Result<ObjectMap, MapError>, A::Error>
where
    A: BlockSource + ?Sized,
    B: BlockSource<Error = A::Error> + ?Sized,
{
    let mut map = match ObjectMap::new(cur.size(), order) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e)),
    };
    let total = map.len();
    let mut set = |k: u64, nonzero: bool, differs: bool| {
        let state = match (nonzero, differs) {
            (false, _) => OBJECT_NONEXISTENT,
            (true, true) => OBJECT_EXISTS,
            (true, false) => OBJECT_EXISTS_CLEAN,
        };
        map.set(k, state);
        progress(k + 1, total);
    };
    Ok(scan(cur, prev, order, &mut set)?.map(|_| map))
}

/// Where a map under-reports ([`check`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Underreport {
    /// The object.
    pub object: u64,
    /// The map's state of it.
    pub state: u8,
    /// True: it holds data the map says does not exist; false: it differs
    /// from the previous snapshot and the map says it did not change.
    pub holds_data: bool,
}

/// Verify `map` against `cur` (and `prev` with its map, the previous
/// snapshot): the first object where the map claims less than the contents
/// show, `None` when it claims at least everything (it may claim more).
pub fn check<A, B>(
    cur: &mut A,
    map: &ObjectMap,
    prev: Option<(&mut B, &ObjectMap)>,
) -> Result<Result<Option<Underreport>, MapError>, A::Error>
where
    A: BlockSource + ?Sized,
    B: BlockSource<Error = A::Error> + ?Sized,
{
    let (pfile, pmap) = match prev {
        Some((f, m)) => (Some(f), Some(m)),
        None => (None, None),
    };
    let mut first = None;
    let mut look = |k: u64, nonzero: bool, differs: bool| {
        let s = map.get(k);
        let changed = match pmap {
            Some(p) => changed_in_step(p, map, k),
            None => exists(s),
        };
        let bad = if nonzero && !exists(s) {
            Some(true)
        } else if differs && !changed {
            Some(false)
        } else {
            None
        };
        if let (None, Some(holds_data)) = (first, bad) {
            first = Some(Underreport {
                object: k,
                state: s,
                holds_data,
            });
        }
    };
    Ok(scan(cur, pfile, map.order(), &mut look)?.map(|_| first))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test code, 64-bit hosts only
mod tests {
    use super::*;

    #[test]
    fn states_pack_like_bitvector() {
        let mut m = ObjectMap::new(5 << 12, 12).unwrap();
        m.set(0, OBJECT_EXISTS);
        m.set(3, OBJECT_EXISTS_CLEAN);
        m.set(4, OBJECT_PENDING);
        assert_eq!(m.as_bytes(), &[0b0100_0011, 0b1000_0000]);
        assert_eq!(ObjectMap::from_bytes(5 << 12, 12, m.as_bytes()).unwrap(), m);
        assert!(ObjectMap::from_bytes(5 << 12, 12, &[0]).is_err());
        assert_eq!(m.get(99), OBJECT_NONEXISTENT);
    }

    #[test]
    fn sets() {
        let mut s = ObjectSet::new(200);
        for k in [3, 64, 65, 199] {
            s.insert(k);
        }
        assert_eq!(s.next(0), Some(3));
        assert_eq!(s.next(4), Some(64));
        assert_eq!(s.run_end(64), 66);
        assert_eq!(s.next(66), Some(199));
        assert_eq!(s.next(200), None);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn hinted_source_skips_objects_outside_the_set() {
        let img = vec![1u8; 8 << 12];
        let mut set = ObjectSet::new(8);
        set.insert(2);
        set.insert(5);
        set.insert(6);
        let mut h = Hinted::new(img, Some(set), 12);
        assert_eq!(h.next_data(0).unwrap(), Some((2 << 12, 3 << 12)));
        assert_eq!(h.next_data(3 << 12).unwrap(), Some((5 << 12, 7 << 12)));
        assert_eq!(h.next_data(7 << 12).unwrap(), None);
        let mut none = Hinted::new(vec![1u8; 100], None, 12);
        assert_eq!(none.next_data(0).unwrap(), Some((0, 100)));
    }

    /// A random history of writes, zeroing, resizes and snapshots: the maps
    /// never claim less than the contents show, for every pair of points.
    #[test]
    fn maps_cover_every_change_of_a_random_history() {
        let order = 12u8;
        let obj = 1usize << order;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        let mut head = vec![0u8; 16 * obj];
        let mut map = ObjectMap::new(head.len() as u64, order).unwrap();
        let mut points: Vec<(Vec<u8>, ObjectMap)> = Vec::new();
        for step in 0..200 {
            match rnd(10) {
                0..=4 => {
                    let off = rnd(head.len());
                    let len = 1 + rnd((3 * obj).min(head.len() - off));
                    let v = 1 + rnd(255) as u8;
                    head[off..off + len].fill(v);
                    map.write(off as u64, len as u64);
                }
                5 | 6 => {
                    let off = rnd(head.len());
                    let len = 1 + rnd((3 * obj).min(head.len() - off));
                    head[off..off + len].fill(0);
                    map.zero(off as u64, len as u64);
                }
                7 => {
                    let size = (4 + rnd(20)) * obj - rnd(2) * 100;
                    head.resize(size, 0);
                    map.resize(size as u64);
                }
                _ => {
                    points.push((head.clone(), map.clone()));
                    map = map.cleaned();
                }
            }
            let mut all = points.clone();
            all.push((head.clone(), map.clone()));
            let to = all.len() - 1;
            for from in 0..to {
                let steps: Vec<&ObjectMap> = all[from + 1..].iter().map(|p| &p.1).collect();
                let set = may_differ(Some(&all[from].1), &steps);
                let (a, b) = (&all[from].0, &all[to].0);
                for k in 0..b.len().div_ceil(obj) {
                    let r = k * obj..((k + 1) * obj).min(b.len());
                    let av: Vec<u8> = r.clone().map(|i| a.get(i).copied().unwrap_or(0)).collect();
                    if av[..] != b[r] {
                        assert!(
                            set.contains(k as u64),
                            "step {step}: {from}->{to} object {k}"
                        );
                    }
                }
            }
            let set = may_differ(None, &[&map]);
            for (k, c) in head.chunks(obj).enumerate() {
                assert!(
                    is_zero(c) || set.contains(k as u64),
                    "step {step}: object {k}"
                );
            }
            let mut hv = head.clone();
            assert_eq!(
                check::<_, Vec<u8>>(&mut hv, &map, None).unwrap().unwrap(),
                None
            );
        }
    }
}
