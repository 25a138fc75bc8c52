//! The file-backed image store.
//!
//! ```text
//! <store>/<pool>/<image>/meta.json    size, order, features, stripe, image-meta, snapshots
//! <store>/<pool>/<image>/head         the image HEAD (raw, sparse)
//! <store>/<pool>/<image>/snap-<id>    one sparse copy (or reflink) per snapshot
//! ```
//! `meta.json` is replaced atomically (write temp, fsync, rename). The head's
//! and each snapshot's size is its file length, so a resize is one `set_len`.

use crate::dev::{self, Dev};
use crate::errors::{EBUSY, EEXIST, EINVAL, ENOENT, Fail, errstr};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Default pool, as rbd's.
pub const DEFAULT_POOL: &str = "rbd";
/// Default object order (4 MiB objects).
pub const DEFAULT_ORDER: u8 = 22;
/// rbd's default features: layering, exclusive-lock, object-map, fast-diff, deep-flatten.
pub const DEFAULT_FEATURES: u64 = 61;

/// Feature bits by name (librbd's).
pub const FEATURES: &[(&str, u64)] = &[
    ("layering", 1),
    ("striping", 2),
    ("exclusive-lock", 4),
    ("object-map", 8),
    ("fast-diff", 16),
    ("deep-flatten", 32),
    ("journaling", 64),
    ("data-pool", 128),
    ("operations", 256),
    ("migrating", 512),
    ("non-primary", 1024),
];

/// Feature names of a mask.
pub fn feature_names(mask: u64) -> Vec<String> {
    FEATURES
        .iter()
        .filter(|(_, b)| mask & b != 0)
        .map(|(n, _)| (*n).to_string())
        .collect()
}

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

/// Image-meta stored losslessly: UTF-8 as text, anything else as hex.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct MetaEntry {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    key_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value_hex: Option<String>,
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn split(b: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(hex(b))),
    }
}

fn join(text: &Option<String>, hexed: &Option<String>) -> Option<Vec<u8>> {
    match (text, hexed) {
        (Some(t), _) => Some(t.as_bytes().to_vec()),
        (None, Some(h)) => unhex(h),
        (None, None) => None,
    }
}

mod meta_map {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<Vec<u8>, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<MetaEntry> = m
            .iter()
            .map(|(k, v)| {
                let (key, key_hex) = split(k);
                let (value, value_hex) = split(v);
                MetaEntry {
                    key,
                    key_hex,
                    value,
                    value_hex,
                }
            })
            .collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, D::Error> {
        let v: Vec<MetaEntry> = Vec::deserialize(d)?;
        let mut m = BTreeMap::new();
        for e in v {
            let k = join(&e.key, &e.key_hex)
                .ok_or_else(|| serde::de::Error::custom("bad image-meta key"))?;
            let val = join(&e.value, &e.value_hex)
                .ok_or_else(|| serde::de::Error::custom("bad image-meta value"))?;
            m.insert(k, val);
        }
        Ok(m)
    }
}

/// One snapshot.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapMeta {
    /// Snapshot id (also names its data file).
    pub id: u64,
    /// Name.
    pub name: String,
    /// Size at snapshot time.
    pub size: u64,
    /// Protected from removal.
    pub protected: bool,
}

/// `meta.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageMeta {
    /// Layout version of this file.
    pub version: u32,
    /// HEAD size (informational; the head file's length is authoritative).
    pub size: u64,
    /// Object order (object size = 1 << order).
    pub order: u8,
    /// Feature mask.
    pub features: u64,
    /// Stripe unit in bytes.
    pub stripe_unit: u64,
    /// Stripe count.
    pub stripe_count: u64,
    /// image-meta key/value pairs (bytes, sorted bytewise like rbd).
    #[serde(with = "meta_map", default)]
    pub meta: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Snapshots in creation order.
    #[serde(default)]
    pub snapshots: Vec<SnapMeta>,
    /// Next snapshot id.
    pub next_snap_id: u64,
}

impl ImageMeta {
    /// Fresh metadata.
    pub fn new(size: u64, order: u8, features: u64, stripe_unit: u64, stripe_count: u64) -> Self {
        ImageMeta {
            version: 1,
            size,
            order,
            features,
            stripe_unit,
            stripe_count,
            meta: BTreeMap::new(),
            snapshots: Vec::new(),
            next_snap_id: 1,
        }
    }

    /// Object size in bytes.
    pub fn object_size(&self) -> u64 {
        1u64 << self.order
    }
}

/// The store root.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// An open image.
#[derive(Debug)]
pub struct Image {
    dir: PathBuf,
    /// Its metadata.
    pub meta: ImageMeta,
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

impl Store {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        Store { root }
    }

    fn dir(&self, spec: &Spec) -> PathBuf {
        self.root.join(&spec.pool).join(&spec.image)
    }

    /// Whether the image exists.
    pub fn exists(&self, spec: &Spec) -> bool {
        self.dir(spec).join("meta.json").is_file()
    }

    /// Open an existing image.
    pub fn open(&self, spec: &Spec) -> Result<Image, Fail> {
        let dir = self.dir(spec);
        let text = match fs::read(dir.join("meta.json")) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(not_found(spec)),
            Err(e) => {
                return Err(Fail::io(
                    &format!("rbd: error opening image {}", spec.image),
                    &e,
                ));
            }
        };
        let mut meta: ImageMeta = serde_json::from_slice(&text).map_err(|e| {
            Fail::new(
                EINVAL,
                format!("rbd: corrupt metadata of image {spec}: {e}"),
            )
        })?;
        let head = dir.join("head");
        match fs::metadata(&head) {
            Ok(m) => meta.size = m.len(),
            Err(e) => {
                return Err(Fail::io(
                    &format!("rbd: error opening image {}", spec.image),
                    &e,
                ));
            }
        }
        Ok(Image { dir, meta })
    }

    /// Create an image (fails with EEXIST if it exists).
    pub fn create(&self, spec: &Spec, meta: ImageMeta) -> Result<Image, Fail> {
        let dir = self.dir(spec);
        let ctx = |e: &io::Error| Fail::io("rbd: create error", e);
        fs::create_dir_all(dir.parent().unwrap_or(&self.root)).map_err(|e| ctx(&e))?;
        if let Err(e) = fs::create_dir(&dir) {
            if e.kind() == io::ErrorKind::AlreadyExists && !self.exists(spec) {
                // a leftover of an interrupted create: reuse it
            } else {
                return Err(ctx(&e));
            }
        }
        let head = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("head"))
            .map_err(|e| ctx(&e))?;
        head.set_len(meta.size).map_err(|e| ctx(&e))?;
        drop(head);
        crate::objmap::create(&dir, meta.size, meta.order).map_err(|e| ctx(&e))?;
        let img = Image { dir, meta };
        img.save().map_err(|e| ctx(&e))?;
        Ok(img)
    }

    /// Images of a pool, sorted.
    pub fn images(&self, pool: &str) -> io::Result<Vec<String>> {
        let dir = self.root.join(pool);
        Ok(list_dirs(&dir)?
            .into_iter()
            .filter(|n| dir.join(n).join("meta.json").is_file())
            .collect())
    }
}

fn list_dirs(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let ent = ent?;
        if ent.file_type()?.is_dir()
            && let Some(n) = ent.file_name().to_str()
            && check_name("image", n).is_ok()
        {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// Write `data` to `path` atomically: temp file, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

impl Image {
    /// The image's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the HEAD file.
    pub fn head_path(&self) -> PathBuf {
        self.dir.join("head")
    }

    /// Path of a snapshot's data file.
    pub fn snap_path(&self, snap: &SnapMeta) -> PathBuf {
        self.dir.join(format!("snap-{}", snap.id))
    }

    /// Persist the metadata atomically.
    pub fn save(&self) -> io::Result<()> {
        let mut text = serde_json::to_vec_pretty(&self.meta).map_err(io::Error::other)?;
        text.push(b'\n');
        write_atomic(&self.dir.join("meta.json"), &text)
    }

    /// A snapshot by name.
    pub fn snap(&self, name: &str) -> Option<&SnapMeta> {
        self.meta.snapshots.iter().find(|s| s.name == name)
    }

    /// Position of a snapshot in creation order.
    pub fn snap_index(&self, name: &str) -> Option<usize> {
        self.meta.snapshots.iter().position(|s| s.name == name)
    }

    /// Data file for `snap` (or HEAD), or rbd's error for a missing snapshot.
    pub fn data_path(&self, snap: Option<&str>) -> Result<PathBuf, Fail> {
        match snap {
            None => Ok(self.head_path()),
            Some(n) => match self.snap(n) {
                Some(s) => Ok(self.snap_path(s)),
                None => Err(Fail::new(
                    ENOENT,
                    format!("error setting snapshot context: {}", errstr(ENOENT)),
                )),
            },
        }
    }

    /// Open HEAD read-write.
    pub fn open_head(&self) -> io::Result<Dev> {
        let tracker = crate::objmap::Tracker::open(&self.dir)?;
        Ok(Dev::open_rw(&self.head_path())?.with_tracker(tracker))
    }

    /// Current HEAD size.
    pub fn head_size(&self) -> io::Result<u64> {
        Ok(fs::metadata(self.head_path())?.len())
    }

    /// Snapshot HEAD as `name` (space-efficient copy), protected if asked.
    pub fn snap_create(&mut self, name: &str, protected: bool) -> Result<(), Fail> {
        check_name("snapshot", name).map_err(|m| Fail::new(EINVAL, format!("rbd: {m}")))?;
        if self.snap(name).is_some() {
            return Err(Fail::new(
                EEXIST,
                format!("rbd: failed to create snapshot: {}", errstr(EEXIST)),
            ));
        }
        let ctx = |e: &io::Error| Fail::io("rbd: failed to create snapshot", e);
        let id = self.meta.next_snap_id;
        let snap = SnapMeta {
            id,
            name: name.to_string(),
            size: self.head_size().map_err(|e| ctx(&e))?,
            protected,
        };
        let path = self.snap_path(&snap);
        let tmp = path.with_extension("tmp");
        dev::sparse_copy(&self.head_path(), &tmp).map_err(|e| ctx(&e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| ctx(&e))?;
        fs::rename(&tmp, &path).map_err(|e| ctx(&e))?;
        let head_map = crate::objmap::snap_create(&self.dir, id).map_err(|e| ctx(&e))?;
        self.meta.next_snap_id = id + 1;
        self.meta.snapshots.push(snap);
        self.save().map_err(|e| ctx(&e))?;
        crate::objmap::finish_snap_create(&self.dir, head_map).map_err(|e| ctx(&e))
    }

    /// Remove a snapshot (refused while protected).
    pub fn snap_remove(&mut self, name: &str) -> Result<(), Fail> {
        let Some(i) = self.snap_index(name) else {
            return Err(Fail::new(
                ENOENT,
                format!("rbd: failed to remove snapshot: {}", errstr(ENOENT)),
            ));
        };
        if self.meta.snapshots[i].protected {
            return Err(Fail::new(
                EBUSY,
                format!("rbd: snapshot '{name}' is protected from removal."),
            )
            .then(format!("rbd: failed to remove snapshot: {}", errstr(EBUSY))));
        }
        let ctx = |e: &io::Error| Fail::io("rbd: failed to remove snapshot", e);
        crate::objmap::snap_remove(self, i).map_err(|e| ctx(&e))?;
        let s = self.meta.snapshots.remove(i);
        self.save().map_err(|e| ctx(&e))?;
        let _ = fs::remove_file(self.snap_path(&s));
        crate::objmap::remove(&self.dir, s.id);
        Ok(())
    }

    /// Set a snapshot's protection.
    pub fn snap_set_protected(&mut self, name: &str, protected: bool) -> Result<(), Fail> {
        let verb = if protected { "protect" } else { "unprotect" };
        let Some(i) = self.snap_index(name) else {
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
        let Some(s) = self.snap(name).cloned() else {
            return Err(Fail::new(
                ENOENT,
                format!("rbd: rollback failed: {}", errstr(ENOENT)),
            ));
        };
        let ctx = |e: &io::Error| Fail::io("rbd: rollback failed", e);
        let map = self
            .snap_index(name)
            .and_then(|i| crate::objmap::rollback_map(self, i));
        crate::objmap::before_rollback(&self.dir, map.as_ref()).map_err(|e| ctx(&e))?;
        let tmp = self.dir.join("head.rollback");
        dev::sparse_copy(&self.snap_path(&s), &tmp).map_err(|e| ctx(&e))?;
        fs::rename(&tmp, self.head_path()).map_err(|e| ctx(&e))?;
        self.meta.size = s.size;
        self.save().map_err(|e| ctx(&e))?;
        match map {
            Some(m) => crate::objmap::store_exact(&self.dir, crate::objmap::Point::Head, &m)
                .map_err(|e| ctx(&e)),
            None => Ok(()),
        }
    }

    /// Resize HEAD.
    pub fn resize(&mut self, size: u64) -> io::Result<()> {
        let mut head = self.open_head()?;
        head.set_size(size)?;
        head.sync()?;
        self.meta.size = size;
        self.save()
    }

    /// Delete the image and all its files.
    pub fn remove(self) -> io::Result<()> {
        fs::remove_dir_all(&self.dir)
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

    #[test]
    fn hex_roundtrip() {
        assert_eq!(unhex(&hex(b"\x00\xffab")), Some(b"\x00\xffab".to_vec()));
        assert_eq!(unhex("0"), None);
    }
}
