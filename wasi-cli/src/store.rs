//! The file-backed image store.
//!
//! ```text
//! <store>/<pool>/<image>/meta.json    size, order, features, stripe, image-meta, snapshots
//! <store>/<pool>/<image>/head         the image HEAD (raw, sparse)
//! <store>/<pool>/<image>/snap-<id>    one sparse copy (or reflink) per snapshot
//! <store>/<pool>/<image>/objmap-head, objmap-snap-<id>   object maps (crate::objmap)
//! ```
//! `meta.json` is replaced atomically (write temp, fsync, rename). The head's
//! and each snapshot's size is its file length, so a resize is one `set_len`.
//!
//! Every file is reached through the image directory's handle without
//! following links (see [`crate::safefs`]); temporaries (`meta.tmp`,
//! `snap-N.tmp`, `head.rollback`) are created exclusively and removed when
//! the command fails. Writers ([`Store::open_rw`], [`Store::create`]) hold
//! an exclusive lock on the image directory; readers take none.

use crate::dev::{self, Dev};
use crate::errors::{EBUSY, EEXIST, EINVAL, ENOENT, EOVERFLOW, Fail, errstr};
use crate::safefs::{self, Dir, Kind, LockError};
pub use rbdiff_cli::meta::{ImageMeta, MetaError, SnapMeta, check_snap_name, hex, unhex};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Default pool, as rbd's.
pub const DEFAULT_POOL: &str = "rbd";
/// Default object order (4 MiB objects).
pub const DEFAULT_ORDER: u8 = 22;
/// rbd's default features: layering, exclusive-lock, object-map, fast-diff, deep-flatten.
pub const DEFAULT_FEATURES: u64 = 61;

/// `[pool/]image[@snap]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Pool name.
    pub pool: String,
    /// Image name.
    pub image: String,
    /// Snapshot name, if any.
    pub snap: Option<String>,
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pool, self.image)?;
        if let Some(s) = &self.snap {
            write!(f, "@{s}")?;
        }
        Ok(())
    }
}

/// Why a name is refused, or `None` if it is fine. Names become directory
/// names, so anything that could escape or alias a path is refused.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("empty {kind} name"));
    }
    if name.len() > 255 {
        return Err(format!("{kind} name longer than 255 bytes"));
    }
    if name == "." || name == ".." {
        return Err(format!("invalid {kind} name '{name}'"));
    }
    if name.starts_with('.') {
        return Err(format!("{kind} name '{name}' must not start with '.'"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == '\\' || c == '@' || c == ':' || c.is_control())
    {
        return Err(format!("invalid character {c:?} in {kind} name '{name}'"));
    }
    Ok(())
}

impl Spec {
    /// Parse `[pool/]image[@snap]`.
    pub fn parse(s: &str) -> Result<Spec, Fail> {
        let bad = |m: String| Fail::new(EINVAL, format!("rbd: {m}"));
        let (path, snap) = match s.split_once('@') {
            Some((p, sn)) => (p, Some(sn)),
            None => (s, None),
        };
        let (pool, image) = match path.split_once('/') {
            Some((p, i)) => (p, i),
            None => (DEFAULT_POOL, path),
        };
        check_name("pool", pool).map_err(bad)?;
        check_name("image", image).map_err(bad)?;
        if let Some(sn) = snap {
            check_name("snapshot", sn).map_err(bad)?;
        }
        Ok(Spec {
            pool: pool.to_string(),
            image: image.to_string(),
            snap: snap.map(str::to_string),
        })
    }

    /// The spec without its snapshot.
    pub fn head(&self) -> Spec {
        Spec {
            snap: None,
            ..self.clone()
        }
    }
}

/// The store root.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// An open image. Opened for writing ([`Store::open_rw`], [`Store::create`])
/// it holds the image's lock until dropped.
#[derive(Debug)]
pub struct Image {
    pool: Dir,
    dir: Dir,
    name: String,
    /// Its metadata.
    pub meta: ImageMeta,
    /// The locked handle on the image directory (writers only).
    _lock: Option<fs::File>,
}

fn not_found(spec: &Spec) -> Fail {
    Fail::new(
        ENOENT,
        format!(
            "rbd: error opening image {}: {}",
            spec.image,
            errstr(ENOENT)
        ),
    )
}

fn open_fail(spec: &Spec, e: &io::Error) -> Fail {
    if e.kind() == io::ErrorKind::NotFound && !safefs::is_loop(e) {
        return not_found(spec);
    }
    Fail::io(&format!("rbd: error opening image {}", spec.image), e)
}

/// A corrupt `meta.json`: rc 22 naming the file and the field.
fn corrupt(spec: &Spec, path: &Path, e: &MetaError) -> Fail {
    Fail::new(
        EINVAL,
        format!(
            "rbd: corrupt metadata of image {spec} ({}): {e}",
            path.display()
        ),
    )
}

/// Take the writer's lock on an image directory: refused at once (EBUSY)
/// while another process holds it.
fn lock_dir(dir: &Dir, spec: &Spec) -> Result<fs::File, Fail> {
    let h = dir.handle().map_err(|e| open_fail(spec, &e))?;
    match safefs::try_lock(&h) {
        Ok(()) => Ok(h),
        Err(LockError::Busy(who)) => Err(busy(&spec.to_string(), who)),
        Err(LockError::Io(e)) => Err(open_fail(spec, &e)),
    }
}

/// rc 16 for an image another process is writing.
pub fn busy(what: &str, holder: Option<String>) -> Fail {
    let who = holder.map_or_else(|| "another process".to_string(), |h| format!("held by {h}"));
    Fail::new(
        EBUSY,
        format!("rbd: image {what} is busy: another writer has it locked ({who})"),
    )
    .then(format!(
        "rbd: error opening image {what}: {}",
        errstr(EBUSY)
    ))
}

/// A name for a temporary directory of `create` (hidden: a leading '.'),
/// unique to this process (WASI has no process id: the clock's nanoseconds).
fn create_tmp_name(image: &str) -> String {
    #[cfg(not(target_os = "wasi"))]
    let unique = u128::from(std::process::id());
    #[cfg(target_os = "wasi")]
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(".create-{image}-{unique}")
}

impl Store {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        Store { root }
    }

    /// The pool directory (the root is followed if it is a link: the
    /// user's choice; nothing below it is).
    fn pool(&self, pool: &str) -> io::Result<Dir> {
        Dir::open(&self.root)?.sub(pool)
    }

    /// Whether the image exists.
    pub fn exists(&self, spec: &Spec) -> bool {
        self.pool(&spec.pool)
            .and_then(|p| p.sub(&spec.image))
            .and_then(|d| d.kind(META))
            .is_ok_and(|k| k.is_some())
    }

    fn load(&self, spec: &Spec, lock: bool) -> Result<Image, Fail> {
        let pool = self.pool(&spec.pool).map_err(|e| open_fail(spec, &e))?;
        let dir = pool.sub(&spec.image).map_err(|e| open_fail(spec, &e))?;
        let lock = if lock {
            Some(lock_dir(&dir, spec)?)
        } else {
            None
        };
        let text = read_small(&dir, META).map_err(|e| open_fail(spec, &e))?;
        let mut meta = ImageMeta::parse(&text).map_err(|e| corrupt(spec, &dir.join(META), &e))?;
        let head = dir.open_ro(HEAD).map_err(|e| open_fail(spec, &e))?;
        meta.size = head
            .metadata()
            .map_err(|e| open_fail(spec, &safefs::named(&dir.join(HEAD), e)))?
            .len();
        Ok(Image {
            pool,
            dir,
            name: spec.to_string(),
            meta,
            _lock: lock,
        })
    }

    /// Open an existing image for reading (not locked: readers of
    /// snapshots are never blocked).
    pub fn open(&self, spec: &Spec) -> Result<Image, Fail> {
        self.load(spec, false)
    }

    /// Open an existing image for writing: locked first (rc 16 if another
    /// writer holds it), then loaded.
    pub fn open_rw(&self, spec: &Spec) -> Result<Image, Fail> {
        self.load(spec, true)
    }

    /// Create an image (EEXIST if it exists), locked for writing. Atomic:
    /// built in a hidden directory and renamed into place, so a failure
    /// (a full disk, a size the filesystem cannot hold) leaves nothing.
    pub fn create(&self, spec: &Spec, meta: ImageMeta) -> Result<Image, Fail> {
        let ctx = |e: &io::Error| Fail::io("rbd: create error", e);
        meta.validate()
            .map_err(|e| Fail::new(EINVAL, format!("rbd: create error: {e}")))?;
        fs::create_dir_all(&self.root).map_err(|e| ctx(&safefs::named(&self.root, e)))?;
        let root = Dir::open(&self.root).map_err(|e| ctx(&e))?;
        match root.mkdir(&spec.pool) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(ctx(&e)),
            _ => {}
        }
        let pool = root.sub(&spec.pool).map_err(|e| ctx(&e))?;
        if pool.kind(&spec.image).map_err(|e| ctx(&e))?.is_some() {
            return Err(Fail::new(
                EEXIST,
                format!("rbd: create error: {}", errstr(EEXIST)),
            ));
        }
        let tmp = create_tmp_name(&spec.image);
        if pool.kind(&tmp).map_err(|e| ctx(&e))?.is_some() {
            pool.remove_tree(&tmp).map_err(|e| ctx(&e))?;
        }
        pool.mkdir(&tmp).map_err(|e| ctx(&e))?;
        let built = (|| -> io::Result<fs::File> {
            let dir = pool.sub(&tmp)?;
            let head = dir.create_new(HEAD)?;
            head.set_len(meta.size)
                .map_err(|e| safefs::named(&dir.join(HEAD), e))?;
            crate::objmap::create(dir.path(), meta.size, meta.order)?;
            write_meta(&dir, &meta)?;
            let lock = dir.handle()?;
            match safefs::try_lock(&lock) {
                Ok(()) => {}
                Err(LockError::Busy(_)) => {
                    return Err(io::Error::from(io::ErrorKind::ResourceBusy));
                }
                Err(LockError::Io(e)) => return Err(e),
            }
            pool.rename_new(&tmp, &spec.image)?;
            Ok(lock)
        })();
        let lock = match built {
            Ok(l) => l,
            Err(e) => {
                let _ = pool.remove_tree(&tmp);
                return Err(ctx(&e));
            }
        };
        let dir = pool.sub(&spec.image).map_err(|e| ctx(&e))?;
        Ok(Image {
            pool,
            dir,
            name: spec.to_string(),
            meta,
            _lock: Some(lock),
        })
    }

    /// Images of a pool, sorted.
    pub fn images(&self, pool: &str) -> io::Result<Vec<String>> {
        let dir = match self.pool(pool) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for n in dir.names()? {
            if let Some(n) = n.to_str()
                && check_name("image", n).is_ok()
                && dir.kind(n)? == Some(Kind::Dir)
                && dir.sub(n).and_then(|d| d.kind(META))? == Some(Kind::File)
            {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The ends of a diff ([`Image::endpoints`]).
pub struct Endpoints {
    pub from: Option<Dev>,
    pub to: Dev,
    pub from_name: Option<Vec<u8>>,
    pub to_name: Option<Vec<u8>>,
    pub to_protected: Option<bool>,
    /// Positions of the snapshots in creation order (`None`: none / HEAD).
    pub from_idx: Option<usize>,
    pub to_idx: Option<usize>,
}

/// `meta.json`, `head`, and the temporaries of an image directory.
const META: &str = "meta.json";
const META_TMP: &str = "meta.tmp";
const HEAD: &str = "head";
const HEAD_ROLLBACK: &str = "head.rollback";

/// Most bytes of a `meta.json` read (65,536 snapshots with long names fit).
const MAX_META_BYTES: u64 = 64 << 20;

/// Read a small file of `dir` (refused past [`MAX_META_BYTES`]).
fn read_small(dir: &Dir, name: &str) -> io::Result<Vec<u8>> {
    let f = dir.open_ro(name)?;
    let mut b = Vec::new();
    f.take(MAX_META_BYTES + 1)
        .read_to_end(&mut b)
        .map_err(|e| safefs::named(&dir.join(name), e))?;
    if b.len() as u64 > MAX_META_BYTES {
        return Err(safefs::named(
            &dir.join(name),
            io::Error::new(io::ErrorKind::InvalidData, "larger than 64 MiB"),
        ));
    }
    Ok(b)
}

/// Write `data` as `dir/name` atomically: `tmp` created exclusively,
/// fsync, rename; the temporary is removed if anything fails.
pub fn write_atomic(dir: &Dir, tmp: &str, name: &str, data: &[u8]) -> io::Result<()> {
    let r = (|| {
        let mut f = dir.create_temp(tmp)?;
        f.write_all(data)
            .and_then(|()| f.sync_all())
            .map_err(|e| safefs::named(&dir.join(tmp), e))?;
        dir.rename(tmp, name)
    })();
    if r.is_err() {
        let _ = dir.remove_if_exists(tmp);
    }
    r
}

fn write_meta(dir: &Dir, meta: &ImageMeta) -> io::Result<()> {
    write_atomic(dir, META_TMP, META, &meta.to_json())
}

/// Data file name of snapshot `id`.
fn snap_file(id: u64) -> String {
    format!("snap-{id}")
}

impl Image {
    /// The image's directory (path-based users: the object maps).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The image's directory, for opening files in it without following links.
    pub fn handle(&self) -> &Dir {
        &self.dir
    }

    /// Persist the metadata atomically.
    pub fn save(&self) -> io::Result<()> {
        write_meta(&self.dir, &self.meta)
    }

    /// A snapshot by name (its exact bytes).
    pub fn snap(&self, name: &[u8]) -> Option<&SnapMeta> {
        self.meta.snapshots.iter().find(|s| s.name == name)
    }

    /// Position of a snapshot in creation order.
    pub fn snap_index(&self, name: &[u8]) -> Option<usize> {
        self.meta.snapshots.iter().position(|s| s.name == name)
    }

    /// A snapshot named on the command line: its exact bytes, or else the
    /// one snapshot whose name, not UTF-8, is shown that way (with U+FFFD
    /// for the bytes that are not), as `snap ls` prints it.
    pub fn lookup(&self, name: &str) -> Option<usize> {
        self.snap_index(name.as_bytes()).or_else(|| {
            let mut shown = self
                .meta
                .snapshots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.display_name() == name)
                .map(|(i, _)| i);
            match (shown.next(), shown.next()) {
                (Some(i), None) => Some(i),
                _ => None,
            }
        })
    }

    /// The snapshot named `name` on the command line (see [`Image::lookup`]).
    pub fn find(&self, name: &str) -> Option<&SnapMeta> {
        self.lookup(name).map(|i| &self.meta.snapshots[i])
    }

    /// The snapshot `snap` names (`None`: HEAD), or rbd's error if missing.
    pub fn check_snap(&self, snap: Option<&str>) -> Result<Option<&SnapMeta>, Fail> {
        match snap {
            None => Ok(None),
            Some(n) => self.find(n).map(Some).ok_or_else(|| {
                Fail::new(
                    ENOENT,
                    format!("error setting snapshot context: {}", errstr(ENOENT)),
                )
            }),
        }
    }

    /// Open `snap` (or HEAD) read-only, or rbd's error for a missing snapshot.
    pub fn open_data(&self, snap: Option<&str>) -> Result<Dev, Fail> {
        let r = match self.check_snap(snap)? {
            Some(s) => self.open_snap(s),
            None => self.open_head_ro(),
        };
        r.map_err(|e| Fail::io(&format!("rbd: error opening image {}", self.name), &e))
    }

    /// The two ends of a diff of this image, as rbd checks them: `from` a
    /// snapshot (must exist, not newer than `to`) to `to` (a snapshot or
    /// HEAD), opened read-only, with the snapshots' exact names. A missing
    /// `to` gives rbd's message; the other failures carry only their errno
    /// (the caller's message).
    pub fn endpoints(&self, from: Option<&str>, to: Option<&str>) -> Result<Endpoints, Fail> {
        let to_snap = self.check_snap(to)?;
        let to_idx = to.and_then(|t| self.lookup(t));
        let from_snap = match from {
            None => None,
            Some(f) => {
                let fi = self.lookup(f).ok_or_else(|| Fail::bare(ENOENT))?;
                if to_idx.is_some_and(|ti| fi > ti) {
                    return Err(Fail::bare(EINVAL));
                }
                Some(&self.meta.snapshots[fi])
            }
        };
        let bare = |e: io::Error| Fail::bare(crate::errors::io_errno(&e));
        Ok(Endpoints {
            to: match to_snap {
                Some(s) => self.open_snap(s).map_err(bare)?,
                None => self.open_head_ro().map_err(bare)?,
            },
            from: from_snap
                .map(|s| self.open_snap(s))
                .transpose()
                .map_err(bare)?,
            to_name: to_snap.map(|s| s.name.clone()),
            from_name: from_snap.map(|s| s.name.clone()),
            to_protected: to_snap.map(|s| s.protected),
            from_idx: from.and_then(|f| self.lookup(f)),
            to_idx,
        })
    }

    /// Open a snapshot's data read-only.
    pub fn open_snap(&self, snap: &SnapMeta) -> io::Result<Dev> {
        Dev::from_file(self.dir.open_ro(snap_file(snap.id))?)
    }

    /// Open HEAD read-only.
    pub fn open_head_ro(&self) -> io::Result<Dev> {
        Dev::from_file(self.dir.open_ro(HEAD)?)
    }

    /// Open HEAD read-write.
    pub fn open_head(&self) -> io::Result<Dev> {
        let tracker = crate::objmap::Tracker::open(self.dir.path())?;
        Ok(Dev::from_file(self.dir.open_rw(HEAD)?)?.with_tracker(tracker))
    }

    /// Current HEAD size.
    pub fn head_size(&self) -> io::Result<u64> {
        let f = self.dir.open_ro(HEAD)?;
        Ok(f.metadata()
            .map_err(|e| safefs::named(&self.dir.join(HEAD), e))?
            .len())
    }

    /// rc 22 for a snapshot name a stream or the command line gives that
    /// cannot be stored, rc 75 when the image has no snapshot id left:
    /// checked before an import writes anything.
    pub fn check_new_snap(&self, name: &[u8]) -> Result<(), Fail> {
        check_snap_name(name).map_err(|m| Fail::new(EINVAL, format!("rbd: {m}")))?;
        if self.meta.next_id().is_none() {
            return Err(Fail::new(
                EOVERFLOW,
                format!(
                    "rbd: image {} has no snapshot id left (next_snap_id {})",
                    self.name, self.meta.next_snap_id
                ),
            ));
        }
        Ok(())
    }

    /// Snapshot HEAD as `name` (space-efficient copy), protected if asked.
    /// A failure leaves no temporary behind.
    pub fn snap_create(&mut self, name: &[u8], protected: bool) -> Result<(), Fail> {
        let ctx = |e: &io::Error| Fail::io("rbd: failed to create snapshot", e);
        self.check_new_snap(name).map_err(|f| {
            f.then(format!(
                "rbd: failed to create snapshot: {}",
                errstr(EINVAL)
            ))
        })?;
        if self.snap(name).is_some() {
            return Err(Fail::new(
                EEXIST,
                format!("rbd: failed to create snapshot: {}", errstr(EEXIST)),
            ));
        }
        let id = self.meta.next_snap_id;
        let next = id
            .checked_add(1)
            .ok_or_else(|| Fail::new(EOVERFLOW, "rbd: no snapshot id left"))?;
        let file = snap_file(id);
        let tmp = format!("{file}.tmp");
        let copied = (|| -> io::Result<u64> {
            let mut head = self.open_head_ro()?;
            let size = head.size();
            let out = self.dir.create_temp(&tmp)?;
            dev::sparse_copy(&mut head, out).map_err(|e| safefs::named(&self.dir.join(&tmp), e))?;
            // meta.json has never named id `next_snap_id`: a `snap-N` already
            // there is what a writer killed between this rename and its save
            // left (we hold the image's writer lock), never a snapshot.
            self.dir.remove_if_exists(&file)?;
            self.dir.rename_new(&tmp, &file)?;
            Ok(size)
        })();
        let size = match copied {
            Ok(s) => s,
            Err(e) => {
                let _ = self.dir.remove_if_exists(&tmp);
                return Err(ctx(&e));
            }
        };
        let head_map = match crate::objmap::snap_create(self.dir.path(), id) {
            Ok(m) => m,
            Err(e) => {
                let _ = self.dir.remove(&file);
                return Err(ctx(&e));
            }
        };
        self.meta.next_snap_id = next;
        self.meta.snapshots.push(SnapMeta {
            id,
            name: name.to_vec(),
            size,
            protected,
        });
        if let Err(e) = self.save() {
            self.meta.snapshots.pop();
            self.meta.next_snap_id = id;
            let _ = self.dir.remove(&file);
            crate::objmap::remove(self.dir.path(), id);
            return Err(ctx(&e));
        }
        crate::objmap::finish_snap_create(self.dir.path(), head_map).map_err(|e| ctx(&e))
    }

    /// Remove a snapshot (refused while protected).
    pub fn snap_remove(&mut self, name: &str) -> Result<(), Fail> {
        let Some(i) = self.lookup(name) else {
            return Err(Fail::new(
                ENOENT,
                format!("rbd: failed to remove snapshot: {}", errstr(ENOENT)),
            ));
        };
        if self.meta.snapshots[i].protected {
            return Err(Fail::new(
                EBUSY,
                format!(
                    "rbd: snapshot '{}' is protected from removal.",
                    self.meta.snapshots[i].display_name()
                ),
            )
            .then(format!("rbd: failed to remove snapshot: {}", errstr(EBUSY))));
        }
        let ctx = |e: &io::Error| Fail::io("rbd: failed to remove snapshot", e);
        crate::objmap::snap_remove(self, i).map_err(|e| ctx(&e))?;
        let s = self.meta.snapshots.remove(i);
        self.save().map_err(|e| ctx(&e))?;
        let _ = self.dir.remove(snap_file(s.id));
        crate::objmap::remove(self.dir.path(), s.id);
        Ok(())
    }

    /// Set a snapshot's protection.
    pub fn snap_set_protected(&mut self, name: &str, protected: bool) -> Result<(), Fail> {
        let verb = if protected { "protect" } else { "unprotect" };
        let Some(i) = self.lookup(name) else {
            return Err(Fail::new(
                ENOENT,
                format!("rbd: {verb}ing snap failed: {}", errstr(ENOENT)),
            ));
        };
        if self.meta.snapshots[i].protected == protected {
            let state = if protected {
                "already protected"
            } else {
                "already unprotected"
            };
            return Err(Fail::new(EBUSY, format!("rbd: snap is {state}"))
                .then(format!("rbd: {verb}ing snap failed: {}", errstr(EBUSY))));
        }
        self.meta.snapshots[i].protected = protected;
        self.save()
            .map_err(|e| Fail::io(&format!("rbd: {verb}ing snap failed"), &e))
    }

    /// Make HEAD a copy of snapshot `name`.
    pub fn snap_rollback(&mut self, name: &str) -> Result<(), Fail> {
        let Some(s) = self.find(name).cloned() else {
            return Err(Fail::new(
                ENOENT,
                format!("rbd: rollback failed: {}", errstr(ENOENT)),
            ));
        };
        let ctx = |e: &io::Error| Fail::io("rbd: rollback failed", e);
        let map = self
            .lookup(name)
            .and_then(|i| crate::objmap::rollback_map(self, i));
        crate::objmap::before_rollback(self.dir.path(), map.as_ref()).map_err(|e| ctx(&e))?;
        let copied = (|| -> io::Result<()> {
            let mut from = self.open_snap(&s)?;
            let out = self.dir.create_temp(HEAD_ROLLBACK)?;
            dev::sparse_copy(&mut from, out)
                .map_err(|e| safefs::named(&self.dir.join(HEAD_ROLLBACK), e))?;
            self.dir.rename(HEAD_ROLLBACK, HEAD)
        })();
        if let Err(e) = copied {
            let _ = self.dir.remove_if_exists(HEAD_ROLLBACK);
            return Err(ctx(&e));
        }
        self.meta.size = s.size;
        self.save().map_err(|e| ctx(&e))?;
        match map {
            Some(m) => crate::objmap::store_exact(self.dir.path(), crate::objmap::Point::Head, &m)
                .map_err(|e| ctx(&e)),
            None => Ok(()),
        }
    }

    /// Resize HEAD.
    pub fn resize(&mut self, size: u64) -> io::Result<()> {
        let mut head = self.open_head()?;
        head.set_size(size)
            .map_err(|e| safefs::named(&self.dir.join(HEAD), e))?;
        head.sync()?;
        self.meta.size = size;
        self.save()
    }

    /// Delete the image and all its files (links in it are removed, not
    /// followed).
    pub fn remove(self) -> io::Result<()> {
        let name = self
            .dir
            .path()
            .file_name()
            .map(ToOwned::to_owned)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.pool.remove_tree(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let s = Spec::parse("img").unwrap();
        assert_eq!(
            (s.pool.as_str(), s.image.as_str(), s.snap),
            ("rbd", "img", None)
        );
        let s = Spec::parse("p/img@s1").unwrap();
        assert_eq!(
            (s.pool.as_str(), s.image.as_str(), s.snap.as_deref()),
            ("p", "img", Some("s1"))
        );
        for bad in [
            "../x", "p/..", "a/b/c", "x@", "@s", "p/i@a@b", "", ".hidden", "a\\b", "p/i@../x",
        ] {
            assert!(Spec::parse(bad).is_err(), "{bad}");
        }
    }
}
