//! The store's object maps (rbd's object-map / fast-diff): one file per
//! point of an image's history, next to its data file.
//!
//! ```text
//! <image>/objmap-head       HEAD's map
//! <image>/objmap-snap-<id>  the map of snapshot <id>, as HEAD's was when it was taken
//! ```
//! A file is a 64-byte header (magic, version, flags, image size, order,
//! the validity stamp) and the states ([`rbdiff::objmap`], two bits an
//! object). Files are replaced atomically (temp, fsync, rename, directory
//! fsync), like `meta.json`.
//!
//! **Validity stamp.** When a map is known exact, rbdiff sets its data
//! file's mtime to the current fine-grained time and records size, mtime
//! (and the inode where the platform gives it): any later write through
//! another program (a VM writing `head`) changes the mtime (to the kernel's
//! coarse clock, which never equals the value rbdiff set), so the map no
//! longer matches and is not used until `rbdiff object-map rebuild`.
//!
//! **Writes.** rbdiff's writes to HEAD go through [`Tracker`] (inside
//! [`crate::dev::Dev`]): before a write reaches an object the map does not
//! already mark as written, the map is persisted with that object (and up to
//! [`MARK_AHEAD`] objects after it) marked written and the *in flight* flag,
//! so a crash leaves a map that claims at least everything changed. At each
//! `sync` of HEAD the exact map is written and stamped.
//!
//! **Interrupted writes.** A map still in flight when its writer is gone (a
//! crash, `kill -9`) is not used by anything that comes after, the resumed
//! import included: it claimed what that writer was about to do, but not
//! what anything wrote after it died (a VM writing `head`), and nothing can
//! tell those writes apart (they change the mtime as the writer's own
//! did). Commands compare contents and say so until `object-map rebuild`;
//! `object-map check` still verifies what such a map claims. Only the
//! [`Tracker`] that set the flag, in its own process, trusts it.

use crate::errors::{EINVAL, Fail};
use crate::safefs::Dir;
use crate::store::Image;
use rbdiff::objmap::{self as om, ObjectMap, ObjectSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const MAGIC: &[u8; 8] = b"RBDIFFOM";
const VERSION: u32 = 1;
const HEADER: usize = 64;
/// The map is not to be used (until rebuilt).
const F_INVALID: u32 = 1;
/// A write is (or was, when it crashed) under way: the map over-reports
/// what that write did and has no stamp. Not valid for any reader (see the
/// module docs).
const F_IN_FLIGHT: u32 = 2;

/// Objects marked written ahead of a sequential writer at once (fewer
/// fsyncs of the map; a crash over-reports at most these).
pub const MARK_AHEAD: u64 = 64;

/// Environment variable that turns the maps off for reading (commands
/// compare contents, as without a map): for tests and comparisons.
pub const ENV_OFF: &str = "RBDIFF_NO_OBJECT_MAP";

/// A point of an image's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    /// The image HEAD.
    Head,
    /// The snapshot with this id.
    Snap(u64),
}

/// What a data file looked like when its map was last known exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    secs: i64,
    nanos: u32,
    ino: Option<u64>,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        let (secs, nanos) = match m.modified().map(|t| t.duration_since(UNIX_EPOCH)) {
            Ok(Ok(d)) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            _ => (-1, 0),
        };
        Stamp {
            len: m.len(),
            secs,
            nanos,
            ino: ino(m),
        }
    }

    fn matches(&self, o: &Stamp) -> bool {
        let ino_ok = match (self.ino, o.ino) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.len == o.len && self.secs == o.secs && self.nanos == o.nanos && ino_ok
    }
}

#[cfg(unix)]
fn ino(m: &fs::Metadata) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    Some(m.ino())
}

#[cfg(not(unix))]
fn ino(_: &fs::Metadata) -> Option<u64> {
    None
}

/// Set the mtime of `dir`'s file `name` (not a link) to now (fine-grained)
/// and return its stamp.
fn stamp_now(dir: &Path, name: &str) -> io::Result<Stamp> {
    let f = Dir::open(dir)?.open_rw(name)?;
    stamp_file(&f)
}

fn stamp_file(f: &File) -> io::Result<Stamp> {
    f.set_modified(SystemTime::now())?;
    Ok(Stamp::of(&f.metadata()?))
}

/// One map file.
#[derive(Clone, Debug)]
struct MapFile {
    map: ObjectMap,
    flags: u32,
    stamp: Stamp,
}

fn encode(m: &MapFile) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER + m.map.as_bytes().len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&VERSION.to_le_bytes());
    v.extend_from_slice(&m.flags.to_le_bytes());
    v.extend_from_slice(&m.map.size().to_le_bytes());
    v.push(m.map.order());
    v.push(u8::from(m.stamp.ino.is_some()));
    v.extend_from_slice(&[0; 2]);
    v.extend_from_slice(&m.stamp.nanos.to_le_bytes());
    v.extend_from_slice(&m.stamp.len.to_le_bytes());
    v.extend_from_slice(&m.stamp.secs.to_le_bytes());
    v.extend_from_slice(&m.stamp.ino.unwrap_or(0).to_le_bytes());
    v.resize(HEADER, 0);
    v.extend_from_slice(m.map.as_bytes());
    v
}

fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

fn decode(b: &[u8]) -> Result<MapFile, String> {
    if b.len() < HEADER || &b[..8] != MAGIC {
        return Err("not an object map file".into());
    }
    let version = u32::from_le_bytes(le(b, 8));
    if version != VERSION {
        return Err(format!(
            "object map version {version} (this rbdiff reads {VERSION})"
        ));
    }
    let flags = u32::from_le_bytes(le(b, 12));
    let size = u64::from_le_bytes(le(b, 16));
    let order = b[24];
    let stamp = Stamp {
        nanos: u32::from_le_bytes(le(b, 28)),
        len: u64::from_le_bytes(le(b, 32)),
        secs: i64::from_le_bytes(le(b, 40)),
        ino: (b[25] != 0).then(|| u64::from_le_bytes(le(b, 48))),
    };
    let map = ObjectMap::from_bytes(size, order, &b[HEADER..]).map_err(|e| e.to_string())?;
    Ok(MapFile { map, flags, stamp })
}

/// File names of a point's map and data in the image directory.
fn map_name(p: Point) -> String {
    match p {
        Point::Head => "objmap-head".into(),
        Point::Snap(id) => format!("objmap-snap-{id}"),
    }
}

fn data_name(p: Point) -> String {
    match p {
        Point::Head => "head".into(),
        Point::Snap(id) => format!("snap-{id}"),
    }
}

/// Write a map: `NAME.tmp` created exclusively, fsync, rename (links in
/// the image directory refused, as for every store file: `crate::safefs`).
fn save(dir: &Path, p: Point, m: &MapFile) -> io::Result<()> {
    let d = Dir::open(dir)?;
    let name = map_name(p);
    crate::store::write_atomic(&d, &format!("{name}.tmp"), &name, &encode(m))?;
    // The rename must be durable before the data it covers is written.
    if let Ok(h) = d.handle() {
        let _ = h.sync_all();
    }
    Ok(())
}

/// A point's map as read: usable, or why not.
#[derive(Clone, Debug)]
pub enum Loaded {
    /// Usable: exact for the data file as it is.
    Valid(ObjectMap),
    /// Not usable: the reason.
    Invalid(String),
}

fn read(dir: &Path, p: Point) -> Result<MapFile, String> {
    let bytes = Dir::open(dir)
        .and_then(|d| d.open_ro(map_name(p)))
        .and_then(|mut f| {
            let mut b: Vec<u8> = Vec::new();
            f.read_to_end(&mut b).map(|_| b)
        });
    match bytes {
        Ok(b) => decode(&b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err("it has no object map".into()),
        Err(e) => Err(format!("its object map cannot be read: {e}")),
    }
}

/// Why a map left in flight is not used.
const INTERRUPTED: &str = "an rbdiff write to it was interrupted: \
                           what was written after that is not known";

/// Load a point's map and check it against its data file.
pub fn load(dir: &Path, p: Point) -> Loaded {
    match load_claims(dir, p) {
        Ok((m, None)) => Loaded::Valid(m),
        Ok((_, Some(why))) | Err(why) => Loaded::Invalid(why),
    }
}

/// A point's map with what it claims even when it is not valid because an
/// rbdiff write to it was interrupted (`Some(why)`): for `object-map check`,
/// which verifies that a crash left a map that claims at least what was
/// written. `Err`: no map to check.
fn load_claims(dir: &Path, p: Point) -> Result<(ObjectMap, Option<String>), String> {
    let m = read(dir, p)?;
    if m.flags & F_INVALID != 0 {
        return Err("its object map is marked invalid".into());
    }
    let meta = Dir::open(dir)
        .and_then(|d| d.open_ro(data_name(p)))
        .and_then(|f| f.metadata())
        .map_err(|e| format!("its data cannot be read: {e}"))?;
    if m.flags & F_IN_FLIGHT != 0 {
        return Ok((reconcile(m.map, meta.len()), Some(INTERRUPTED.into())));
    }
    if !m.stamp.matches(&Stamp::of(&meta)) || m.map.size() != meta.len() {
        return Err("it was written outside rbdiff".into());
    }
    Ok((m.map, None))
}

/// An in-flight map against the data file's actual size (a crash between a
/// map update and a resize): objects it does not know are written.
fn reconcile(mut map: ObjectMap, len: u64) -> ObjectMap {
    let old = map.len();
    map.resize(len);
    for k in old..map.len() {
        map.set(k, om::OBJECT_EXISTS);
    }
    map
}

/// Write `map` as the exact map of `p`, stamping its data file.
pub fn store_exact(dir: &Path, p: Point, map: &ObjectMap) -> io::Result<()> {
    let stamp = stamp_now(dir, &data_name(p))?;
    save(
        dir,
        p,
        &MapFile {
            map: map.clone(),
            flags: 0,
            stamp,
        },
    )
}

/// Mark `p`'s map invalid (if it has one).
pub fn mark_invalid(dir: &Path, p: Point) -> io::Result<()> {
    match read(dir, p) {
        Ok(mut m) if m.flags & F_INVALID == 0 => {
            m.flags |= F_INVALID;
            save(dir, p, &m)
        }
        _ => Ok(()),
    }
}

/// Write `p`'s map as in flight (claims at least what is being done).
fn store_in_flight(dir: &Path, p: Point, map: &ObjectMap) -> io::Result<()> {
    save(
        dir,
        p,
        &MapFile {
            map: map.clone(),
            flags: F_IN_FLIGHT,
            stamp: Stamp::default(),
        },
    )
}

/// The map of a new, all-zero HEAD.
pub fn create(dir: &Path, size: u64, order: u8) -> io::Result<()> {
    match ObjectMap::new(size, order) {
        Ok(m) => store_exact(dir, Point::Head, &m),
        // No map for an image a map cannot describe: it is compared.
        Err(_) => Ok(()),
    }
}

/// Remove a snapshot's map.
pub fn remove(dir: &Path, id: u64) {
    let _ = Dir::open(dir).and_then(|d| d.remove(map_name(Point::Snap(id))));
}

/// Keeps HEAD's map exact through rbdiff's writes (see the module docs).
#[derive(Debug)]
pub struct Tracker {
    dir: PathBuf,
    /// What HEAD holds after the writes so far.
    exact: ObjectMap,
    /// What the map file claims.
    persisted: ObjectMap,
    in_flight: bool,
    /// The map turned out invalid: nothing is tracked.
    off: bool,
}

impl Tracker {
    /// A tracker for the HEAD of the image in `dir`, or `None` if its map is
    /// not valid (it is then marked invalid: rbdiff's writes do not make a
    /// map valid again, `object-map rebuild` does).
    pub fn open(dir: &Path) -> io::Result<Option<Tracker>> {
        match load(dir, Point::Head) {
            Loaded::Valid(map) => Ok(Some(Tracker {
                dir: dir.to_path_buf(),
                in_flight: false,
                off: false,
                persisted: map.clone(),
                exact: map,
            })),
            Loaded::Invalid(_) => {
                mark_invalid(dir, Point::Head)?;
                Ok(None)
            }
        }
    }

    fn persist(&mut self) -> io::Result<()> {
        store_in_flight(&self.dir, Point::Head, &self.persisted)?;
        self.in_flight = true;
        Ok(())
    }

    /// Before the first write after a commit: the map on disk may have
    /// changed since (a snapshot was taken in between): start from it, and
    /// mark it in flight. `false`: not tracking.
    fn start(&mut self) -> io::Result<bool> {
        if self.off {
            return Ok(false);
        }
        if self.in_flight {
            return Ok(true);
        }
        match load(&self.dir, Point::Head) {
            Loaded::Valid(m) => {
                self.exact = m.clone();
                self.persisted = m;
                self.persist()?;
                Ok(true)
            }
            Loaded::Invalid(_) => {
                self.off = true;
                mark_invalid(&self.dir, Point::Head)?;
                Ok(false)
            }
        }
    }

    /// Before data is written to `[offset, offset + len)`.
    pub fn before_write(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if !self.start()? {
            return Ok(());
        }
        let (a, b) = self.persisted.objects(offset, len);
        if (a..b).all(|k| self.persisted.get(k) == om::OBJECT_EXISTS) {
            return Ok(());
        }
        let end = b.saturating_add(MARK_AHEAD).min(self.persisted.len());
        for k in a..end {
            self.persisted.set(k, om::OBJECT_EXISTS);
        }
        self.persist()
    }

    /// After data was written.
    pub fn wrote(&mut self, offset: u64, len: u64) {
        self.exact.write(offset, len);
    }

    /// Before `[offset, offset + len)` is made to read as zeros.
    pub fn before_zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if !self.start()? {
            return Ok(());
        }
        let (a, b) = self.persisted.objects(offset, len);
        let mut need = false;
        for k in a..b {
            let e = om::exists(self.exact.get(k)) || om::exists(self.persisted.get(k));
            if e && self.persisted.get(k) != om::OBJECT_EXISTS {
                self.persisted.set(k, om::OBJECT_EXISTS);
                need = true;
            }
        }
        if need { self.persist() } else { Ok(()) }
    }

    /// After the range was zeroed.
    pub fn zeroed(&mut self, offset: u64, len: u64) {
        self.exact.zero(offset, len);
    }

    /// Before HEAD's size changes.
    pub fn before_resize(&mut self, size: u64) -> io::Result<()> {
        if !self.start()? || size >= self.persisted.size() {
            // Growing needs no update first: objects past the size an in
            // flight map was written for count as written when it is loaded.
            return Ok(());
        }
        self.persisted.resize(size);
        self.persist()
    }

    /// After it changed.
    pub fn resized(&mut self, size: u64) {
        self.exact.resize(size);
    }

    /// HEAD (`file`) is synced: write the exact map, stamped.
    pub fn commit(&mut self, file: &File) -> io::Result<()> {
        if !self.in_flight || self.off {
            return Ok(());
        }
        let stamp = stamp_file(file)?;
        save(
            &self.dir,
            Point::Head,
            &MapFile {
                map: self.exact.clone(),
                flags: 0,
                stamp,
            },
        )?;
        self.persisted = self.exact.clone();
        self.in_flight = false;
        Ok(())
    }
}

static SAID: AtomicBool = AtomicBool::new(false);

/// An image's data with the objects a diff or export needs to read.
pub type MapDev = rbdiff::objmap::Hinted<crate::dev::Dev>;

/// `dev` without a hint (everything as the file says).
pub fn plain(dev: crate::dev::Dev) -> MapDev {
    MapDev::new(dev, None, 12)
}

/// `dev` with `hint` for objects of `1 << order` bytes.
pub fn hinted(dev: crate::dev::Dev, hint: Option<ObjectSet>, order: u8) -> MapDev {
    MapDev::new(dev, hint, order)
}

/// Say once per command that the maps cannot be used.
fn say_fallback(what: &str, why: &str) {
    if !SAID.swap(true, Ordering::Relaxed) {
        eprintln!(
            "rbdiff: object map of {what} is invalid ({why}): comparing contents instead; \
             'rbdiff object-map rebuild {what}' makes it valid again"
        );
    }
}

/// The point of snapshot index `i` (`None`: HEAD).
pub fn point(img: &Image, i: Option<usize>) -> Point {
    match i {
        Some(i) => Point::Snap(img.meta.snapshots[i].id),
        None => Point::Head,
    }
}

/// `name@snap` of point index `i` for messages.
fn point_name(img_name: &str, img: &Image, i: Option<usize>) -> String {
    match i {
        Some(i) => format!("{img_name}@{}", img.meta.snapshots[i].display_name()),
        None => img_name.to_string(),
    }
}

/// The objects a diff of the image from snapshot index `from` (`None`: from
/// creation) to `to` (snapshot index, `None`: HEAD) has to read, from the
/// maps; `None` (said once on stderr) when a map it needs is not valid, or
/// when [`ENV_OFF`] is set: then the contents are compared.
pub fn diff_hint(
    img: &Image,
    img_name: &str,
    from: Option<usize>,
    to: Option<usize>,
) -> Option<ObjectSet> {
    if std::env::var_os(ENV_OFF).is_some() {
        return None;
    }
    let last = to.unwrap_or(img.meta.snapshots.len());
    let first = from.map_or(last, |f| f + 1);
    let load_at = |i: usize| {
        let idx = (i < img.meta.snapshots.len()).then_some(i);
        match load(img.dir(), point(img, idx)) {
            Loaded::Valid(m) => Some(m),
            Loaded::Invalid(why) => {
                say_fallback(&point_name(img_name, img, idx), &why);
                None
            }
        }
    };
    let base = match from {
        Some(f) => Some(load_at(f)?),
        None => None,
    };
    let mut steps = Vec::new();
    for i in first..=last {
        steps.push(load_at(i)?);
    }
    let refs: Vec<&ObjectMap> = steps.iter().collect();
    Some(om::may_differ(base.as_ref(), &refs))
}

/// Maps for a new snapshot `id` of HEAD (its data file already copied):
/// the snapshot gets HEAD's map, HEAD a clean one. Before `meta.json`
/// names the snapshot ([`finish_snap_create`] after).
pub fn snap_create(dir: &Path, id: u64) -> io::Result<Option<ObjectMap>> {
    match load(dir, Point::Head) {
        Loaded::Valid(m) => {
            store_exact(dir, Point::Snap(id), &m)?;
            Ok(Some(m))
        }
        Loaded::Invalid(_) => {
            remove(dir, id);
            mark_invalid(dir, Point::Head)?;
            Ok(None)
        }
    }
}

/// After `meta.json` names the new snapshot: HEAD's map is clean.
pub fn finish_snap_create(dir: &Path, head: Option<ObjectMap>) -> io::Result<()> {
    match head {
        Some(m) => store_exact(dir, Point::Head, &m.cleaned()),
        None => Ok(()),
    }
}

/// Before snapshot `i` of `img` is removed: the next point's map takes
/// over its changes (it becomes relative to the snapshot before).
pub fn snap_remove(img: &Image, i: usize) -> io::Result<()> {
    let dir = img.dir();
    let cur = point(img, Some(i));
    let next_idx = (i + 1 < img.meta.snapshots.len()).then_some(i + 1);
    let next = point(img, next_idx);
    let (Loaded::Valid(cm), Ok(mut nf)) = (load(dir, cur), read(dir, next)) else {
        return mark_invalid(dir, next);
    };
    if nf.flags & F_INVALID != 0 {
        return Ok(());
    }
    let prev = match i.checked_sub(1) {
        Some(p) => match load(dir, point(img, Some(p))) {
            Loaded::Valid(m) => m,
            Loaded::Invalid(_) => return mark_invalid(dir, next),
        },
        None => ObjectMap::new(0, cm.order()).map_err(io::Error::other)?,
    };
    let nm = &mut nf.map;
    for k in 0..nm.len() {
        let s = nm.get(k);
        if om::exists(s) && (om::changed_in_step(&prev, &cm, k) || om::changed_in_step(&cm, nm, k))
        {
            nm.set(k, om::OBJECT_EXISTS);
        }
    }
    save(dir, next, &nf)
}

/// HEAD's map after a rollback to snapshot `i`: the snapshot's existence,
/// written where it differs from the latest snapshot. `None` if a map it
/// needs is not valid.
pub fn rollback_map(img: &Image, i: usize) -> Option<ObjectMap> {
    let n = img.meta.snapshots.len();
    let mut maps = Vec::new();
    for j in i..n {
        match load(img.dir(), point(img, Some(j))) {
            Loaded::Valid(m) => maps.push(m),
            Loaded::Invalid(_) => return None,
        }
    }
    let target = maps[0].clone();
    let refs: Vec<&ObjectMap> = maps[1..].iter().collect();
    let mut m = target.cleaned();
    if !refs.is_empty() {
        let changed = om::may_differ(Some(&target), &refs);
        for k in 0..m.len() {
            if changed.contains(k) && om::exists(m.get(k)) {
                m.set(k, om::OBJECT_EXISTS);
            }
        }
    }
    Some(m)
}

/// Before HEAD is replaced by a rollback: a map claiming both the old and
/// the new contents, in flight.
pub fn before_rollback(dir: &Path, new: Option<&ObjectMap>) -> io::Result<()> {
    let (Some(new), Loaded::Valid(old)) = (new, load(dir, Point::Head)) else {
        return mark_invalid(dir, Point::Head);
    };
    let mut m = new.clone();
    for k in 0..m.len() {
        if om::exists(m.get(k)) || om::exists(old.get(k)) {
            m.set(k, om::OBJECT_EXISTS);
        }
    }
    store_in_flight(dir, Point::Head, &m)
}

/// Flags as `rbd info` prints them, for a point.
pub fn info_flags(dir: &Path, p: Point, features: u64) -> Vec<&'static str> {
    let mut v = Vec::new();
    if matches!(load(dir, p), Loaded::Invalid(_)) {
        if features & 8 != 0 {
            v.push("object map invalid");
        }
        if features & 16 != 0 {
            v.push("fast diff invalid");
        }
    }
    v
}

/// Rebuild the map of point index `i` (`None`: HEAD) from the contents
/// (against the previous snapshot), stamped; the next point's too when
/// this one's data was written outside rbdiff (its changes are relative to
/// this one). Returns the points rebuilt.
pub fn rebuild(img: &Image, i: Option<usize>) -> Result<Vec<Option<usize>>, Fail> {
    let n = img.meta.snapshots.len();
    let idx = i.unwrap_or(n);
    let was_valid = matches!(load(img.dir(), point(img, i)), Loaded::Valid(_));
    let mut done = Vec::new();
    for j in [Some(idx), (!was_valid && idx < n).then_some(idx + 1)]
        .into_iter()
        .flatten()
    {
        let at = (j < n).then_some(j);
        let m = build_at(img, at)?;
        store_exact(img.dir(), point(img, at), &m).map_err(|e| rebuild_err(&e))?;
        done.push(at);
    }
    Ok(done)
}

fn rebuild_err(e: &io::Error) -> Fail {
    Fail::io("rbd: rebuilding object map failed", e)
}

fn open_point(img: &Image, i: Option<usize>) -> Result<crate::dev::Dev, Fail> {
    let p = data_name(point(img, i));
    img.handle()
        .open_ro(p)
        .and_then(crate::dev::Dev::from_file)
        .map_err(|e| rebuild_err(&e))
}

/// The exact map of point index `i` from its contents.
pub fn build_at(img: &Image, i: Option<usize>) -> Result<ObjectMap, Fail> {
    let prev_idx = match i {
        Some(0) => None,
        Some(j) => Some(j - 1),
        None => img.meta.snapshots.len().checked_sub(1),
    };
    let mut cur = open_point(img, i)?;
    let mut prev = match prev_idx {
        Some(p) => Some(open_point(img, Some(p))?),
        None => None,
    };
    om::build(&mut cur, prev.as_mut(), img.meta.order, &mut |_, _| {})
        .map_err(|e| rebuild_err(&e))?
        .map_err(|e| Fail::new(EINVAL, format!("rbd: object map: {e}")))
}

/// What `object-map check` found for a point.
#[derive(Debug)]
pub struct Checked {
    /// The map's states (also of a map an interrupted write left).
    pub map: Option<ObjectMap>,
    /// Why it is not valid, if it is not.
    pub invalid: Option<String>,
    /// The first object it under-reports against the contents, if any
    /// (checked for a valid map and for one an interrupted write left).
    pub underreport: Option<om::Underreport>,
}

/// Check the map of point index `i` against the contents.
pub fn check_at(img: &Image, i: Option<usize>) -> Result<Checked, Fail> {
    let (map, invalid) = match load_claims(img.dir(), point(img, i)) {
        Ok(x) => x,
        Err(why) => {
            return Ok(Checked {
                map: None,
                invalid: Some(why),
                underreport: None,
            });
        }
    };
    let prev_idx = match i {
        Some(0) => None,
        Some(j) => Some(j - 1),
        None => img.meta.snapshots.len().checked_sub(1),
    };
    let mut cur = open_point(img, i)?;
    let res = match prev_idx {
        Some(p) => {
            let pm = match load(img.dir(), point(img, Some(p))) {
                Loaded::Valid(m) => m,
                Loaded::Invalid(why) => {
                    return Ok(Checked {
                        map: Some(map),
                        invalid: Some(format!("previous snapshot: {why}")),
                        underreport: None,
                    });
                }
            };
            let mut pf = open_point(img, Some(p))?;
            om::check(&mut cur, &map, Some((&mut pf, &pm)))
        }
        None => om::check::<_, crate::dev::Dev>(&mut cur, &map, None),
    };
    let underreport = res
        .map_err(|e| rebuild_err(&e))?
        .map_err(|e| Fail::new(EINVAL, format!("rbd: object map: {e}")))?;
    Ok(Checked {
        map: Some(map),
        invalid,
        underreport,
    })
}
