//! The integrity extension in the CLI (format: `docs/integrity.md`; all of
//! its logic lives in `rbdiff::integrity`): finding a diff's integrity data
//! before reading it, the messages, and the resume journal of `import-diff`.

use crate::errors::{EINVAL, Fail, io_errno};
use crate::safefs::{self, Dir};
use crate::store::{hex, unhex};
use rbdiff::Checkpoint;
use rbdiff::integrity::{Manifest, TrailerReadError, max_trailer_len, read_tail, read_trailer};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Default sidecar of `diff`: `DIFF.rbdiff-integrity`.
pub fn sidecar_path(diff: &str) -> PathBuf {
    PathBuf::from(format!("{diff}.rbdiff-integrity"))
}

/// Is `path` a regular file (seekable: its end can be read first)?
pub fn is_regular(path: &str) -> bool {
    path != "-" && fs::metadata(path).map(|m| m.is_file()).unwrap_or(false)
}

/// The largest sidecar diff `path` can have: what its size allows (its
/// records are at least 17 bytes each), or rbdiff's cap for a diff of
/// unknown size (a pipe).
pub fn sidecar_limit(path: &str) -> u64 {
    let len = (path != "-")
        .then(|| fs::metadata(path).ok().filter(|m| m.is_file()))
        .flatten()
        .map_or(u64::MAX, |m| m.len());
    max_trailer_len(len)
}

/// Parse a sidecar file of a diff whose sidecar can be at most `limit`
/// bytes ([`sidecar_limit`]): a larger one is refused before it is read,
/// and one that is not a regular file (a pipe, a device) is read no
/// further than its header declares.
pub fn read_sidecar(p: &Path, limit: u64) -> Result<Manifest, Fail> {
    let cannot = |e: &io::Error| {
        Fail::new(
            io_errno(e),
            format!("rbdiff: cannot read integrity sidecar {}: {e}", p.display()),
        )
    };
    let f = File::open(p).map_err(|e| cannot(&e))?;
    let meta = f.metadata().map_err(|e| cannot(&e))?;
    if meta.is_dir() {
        return Err(cannot(&io::Error::from(io::ErrorKind::IsADirectory)));
    }
    if meta.is_file() && meta.len() > limit {
        return Err(Fail::new(
            EINVAL,
            format!(
                "rbdiff: integrity sidecar {} is {} bytes, more than the diff can need (at most {limit})",
                p.display(),
                meta.len()
            ),
        ));
    }
    read_trailer(io::BufReader::new(f), limit).map_err(|e| match e {
        TrailerReadError::Io(e) => cannot(&e),
        TrailerReadError::Trailer(e) => Fail::new(
            EINVAL,
            format!("rbdiff: {} is not an integrity sidecar: {e}", p.display()),
        ),
    })
}

/// Integrity data of a diff known before its data is read, and where it came from.
pub struct Known {
    pub manifest: Manifest,
    pub source: String,
}

/// The integrity data of diff `path` that can be read before the stream:
/// the explicit `sidecar`, else the end of a regular file (v1 trailer or v2
/// `H`/`K` records), else `DIFF.rbdiff-integrity` if it exists.
pub fn find(path: &str, sidecar: Option<&str>) -> Result<Option<Known>, Fail> {
    if let Some(s) = sidecar {
        return Ok(Some(Known {
            manifest: read_sidecar(Path::new(s), sidecar_limit(path))?,
            source: format!("sidecar {s}"),
        }));
    }
    if !is_regular(path) {
        return Ok(None);
    }
    let mut f = File::open(path)
        .map_err(|e| Fail::new(io_errno(&e), format!("rbd: error opening {path}")))?;
    match read_tail(&mut f) {
        Ok(Some(m)) => {
            let source = if m.checksum.is_some_and(|c| c.hashes_offset > 0) {
                "its in-band records"
            } else {
                "its trailer"
            };
            return Ok(Some(Known {
                manifest: m,
                source: source.to_string(),
            }));
        }
        Ok(None) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            return Err(Fail::new(
                EINVAL,
                format!("rbdiff: the integrity data at the end of {path} is malformed: {e}"),
            ));
        }
        Err(e) => {
            return Err(Fail::new(
                io_errno(&e),
                format!("rbd: error reading {path}: {e}"),
            ));
        }
    }
    let side = sidecar_path(path);
    if side.is_file() {
        return Ok(Some(Known {
            manifest: read_sidecar(&side, sidecar_limit(path))?,
            source: format!("sidecar {}", side.display()),
        }));
    }
    Ok(None)
}

/// What identifies a diff file for the resume journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub path: String,
    pub size: u64,
    /// XXH3-128 of its first MiB, hex.
    pub head: String,
}

impl Identity {
    /// Identify the diff file at `path`.
    pub fn of(path: &str) -> io::Result<Identity> {
        let mut f = File::open(path)?;
        let size = f.metadata()?.len();
        let mut buf = Vec::with_capacity(1 << 20);
        (&mut f).take(1 << 20).read_to_end(&mut buf)?;
        let abs = fs::canonicalize(path)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| path.to_string());
        Ok(Identity {
            path: abs,
            size,
            head: hex(&rbdiff::integrity::hash(&buf).to_le_bytes()),
        })
    }
}

/// The resume journal of an import: enough to continue it at a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub diff_path: String,
    pub diff_size: u64,
    pub diff_head_xxh3: String,
    /// `Checkpoint::to_bytes`, hex.
    pub checkpoint: String,
    /// Stream offset of the checkpoint (also inside it; for people).
    pub stream_offset: u64,
    /// What the import had applied at the checkpoint.
    pub records: u64,
    pub data_bytes: u64,
    pub zero_bytes: u64,
    /// Importer state from the diff's header (the name's exact bytes).
    #[serde(with = "rbdiff_cli::meta::opt_bytes_repr", default)]
    pub to_snap: Option<Vec<u8>>,
    pub protect: bool,
    pub end_size: Option<u64>,
}

impl Journal {
    /// The decoder checkpoint.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        Checkpoint::from_bytes(&unhex(&self.checkpoint)?)
    }

    /// Does it belong to this diff?
    pub fn matches(&self, id: &Identity) -> bool {
        self.version == 1
            && self.diff_path == id.path
            && self.diff_size == id.size
            && self.diff_head_xxh3 == id.head
            && self.checkpoint().is_some_and(|c| c.position <= id.size)
    }
}

/// Where a resume journal lives: a name in a directory (the store image's,
/// or a raw target's), reached without following links, written through an
/// exclusively created `NAME.tmp` that a failure removes again.
pub struct JournalFile {
    dir: Dir,
    name: OsString,
    tmp: OsString,
    path: PathBuf,
}

/// Most bytes of a journal read (it is a few hundred).
const MAX_JOURNAL_BYTES: u64 = 1 << 20;

impl JournalFile {
    fn new(dir: Dir, name: OsString) -> JournalFile {
        let mut tmp = name.clone();
        tmp.push(".tmp");
        let path = dir.join(&name);
        JournalFile {
            dir,
            name,
            tmp,
            path,
        }
    }

    /// The journal of a raw target: `TARGET.rbdiff-resume` beside it.
    pub fn raw(target: &Path) -> io::Result<JournalFile> {
        let (dir, mut name) = Dir::parent_of(target)?;
        name.push(".rbdiff-resume");
        Ok(JournalFile::new(dir, name))
    }

    /// A journal at exactly `path` (`import-diff --journal` into a cluster image).
    #[cfg(feature = "librbd")]
    pub fn at(path: &Path) -> io::Result<JournalFile> {
        let (dir, name) = Dir::parent_of(path)?;
        Ok(JournalFile::new(dir, name))
    }

    /// The journal of a store image, in its directory.
    pub fn store(image_dir: &Dir) -> io::Result<JournalFile> {
        Ok(JournalFile::new(
            image_dir.try_clone()?,
            STORE_JOURNAL.into(),
        ))
    }

    /// Its path, for messages.
    pub fn display(&self) -> std::path::Display<'_> {
        self.path.display()
    }

    /// Read the journal: `None` if there is none, `Err` if unreadable.
    pub fn load(&self) -> Option<Result<Journal, String>> {
        let f = match self.dir.open_ro(&self.name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !safefs::is_loop(&e) => return None,
            Err(e) => return Some(Err(e.to_string())),
        };
        let mut b = Vec::new();
        if let Err(e) = f.take(MAX_JOURNAL_BYTES).read_to_end(&mut b) {
            return Some(Err(e.to_string()));
        }
        Some(serde_json::from_slice(&b).map_err(|e| e.to_string()))
    }

    /// Write atomically: temp file, fsync, rename over the old one.
    pub fn save(&self, j: &Journal) -> io::Result<()> {
        let mut text = serde_json::to_vec_pretty(j).map_err(io::Error::other)?;
        text.push(b'\n');
        let r = (|| {
            let mut f = self.dir.create_temp(&self.tmp)?;
            f.write_all(&text)
                .and_then(|()| f.sync_all())
                .map_err(|e| safefs::named(&self.dir.join(&self.tmp), e))?;
            self.dir.rename(&self.tmp, &self.name)
        })();
        if r.is_err() {
            let _ = self.dir.remove_if_exists(&self.tmp);
        }
        r
    }

    /// Remove the journal (and a temporary left beside it).
    pub fn remove(&self) {
        let _ = self.dir.remove_if_exists(&self.name);
        let _ = self.dir.remove_if_exists(&self.tmp);
    }
}

/// Journal file name inside a store image's directory.
pub const STORE_JOURNAL: &str = "import-diff.rbdiff-resume";

/// Whether the stream at `path` may carry integrity data: a pipe may (it
/// arrives after the data), a regular file only if it ends with some (an
/// unreadable or malformed end counts as "may", so it gets checked).
pub fn may_carry(path: &str) -> bool {
    if !is_regular(path) {
        return true;
    }
    match File::open(path) {
        Ok(mut f) => !matches!(read_tail(&mut f), Ok(None)),
        Err(_) => true,
    }
}

/// Threads for checking an image's blocks (the machine's cores, at most 4).
pub fn check_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Checks the result of an import while it is applied: a thread reads back
/// the records already written (and no longer pending in the applier) and
/// checks each one's post-image hash, so the payloads are checked as
/// written without being hashed on the applying thread. For manifests with
/// ascending, non-overlapping records (a later record never rewrites an
/// earlier one's range).
pub struct ReadBack<'scope> {
    tx: std::sync::mpsc::Sender<std::ops::Range<usize>>,
    worker: std::thread::ScopedJoinHandle<
        'scope,
        Result<(), rbdiff::integrity::VerifyError<io::Error>>,
    >,
    m: &'scope Manifest,
    /// Entries sent to the worker.
    sent: usize,
    /// Entries complete but not sent yet (batched by size), and their bytes.
    ready: usize,
    ready_bytes: u64,
    /// Send once this many bytes are ready (else only when flushed).
    batch: Option<u64>,
}

/// Entries are sent to the read-back thread in batches of at least this
/// (unless the caller flushes instead, see [`ReadBack::start`]).
pub const READ_BACK_BATCH: u64 = 8 << 20;

impl<'scope> ReadBack<'scope> {
    /// Start the thread on `dev` (a handle of its own on the image). It is
    /// sent the applied entries every `batch` bytes, or, with `None`, only
    /// when the caller flushes: an import that syncs the image at intervals
    /// flushes right before each sync, so the reading back happens while
    /// the import waits for the disk instead of competing with its writes.
    pub fn start<'env>(
        s: &'scope std::thread::Scope<'scope, 'env>,
        m: &'scope Manifest,
        dev: crate::dev::Dev,
        batch: Option<u64>,
    ) -> io::Result<ReadBack<'scope>> {
        let (tx, rx) = std::sync::mpsc::channel::<std::ops::Range<usize>>();
        let worker = std::thread::Builder::new().spawn_scoped(s, move || {
            for r in rx {
                // A fresh handle per batch: its size is the image's now (an
                // 's' record may have resized it since the start).
                let mut d = dev
                    .try_clone()
                    .map_err(rbdiff::integrity::VerifyError::Read)?;
                m.check_entries(&mut d, r, false)?;
            }
            Ok(())
        })?;
        Ok(ReadBack {
            tx,
            worker,
            m,
            sent: 0,
            ready: 0,
            ready_bytes: 0,
            batch,
        })
    }

    /// The first `complete` records are applied, except for any byte at or
    /// past `pending` (zeroing the applier has not written yet).
    pub fn advance(&mut self, complete: usize, pending: Option<u64>, flush: bool) {
        let complete = complete.min(self.m.entries.len());
        while self.ready < complete {
            let e = &self.m.entries[self.ready];
            if pending.is_some_and(|p| e.offset.saturating_add(e.len) > p) {
                break;
            }
            self.ready_bytes = self.ready_bytes.saturating_add(e.len);
            self.ready += 1;
        }
        if self.ready > self.sent && (flush || self.batch.is_some_and(|b| self.ready_bytes >= b)) {
            // A send fails only if the worker stopped on a mismatch.
            let _ = self.tx.send(self.sent..self.ready);
            self.sent = self.ready;
            self.ready_bytes = 0;
        }
    }

    /// True once the thread found a mismatch (stop applying): it stops
    /// only on one (or on a read error) while records may still come.
    pub fn failed(&self) -> bool {
        self.worker.is_finished()
    }

    /// Wait for the thread; the entries it checked (all that were sent).
    pub fn finish(self) -> Result<usize, rbdiff::integrity::VerifyError<io::Error>> {
        drop(self.tx);
        match self.worker.join() {
            Ok(r) => r.map(|()| self.sent),
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}
