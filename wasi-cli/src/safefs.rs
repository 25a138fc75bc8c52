//! Files inside a directory, opened without following symbolic links.
//!
//! The store (`<root>/<pool>/<image>/…`) and the files rbdiff keeps next to
//! a raw target (`RAW.rbdiff-resume[.tmp]`) are reached through a [`Dir`]:
//! the directory the user named is opened as given (it may be a link the
//! user chose), everything below it by one name at a time, refusing links
//! (`ELOOP`, rc 40), and temporaries are created exclusively (`O_EXCL`), so
//! whoever can write the directory cannot redirect rbdiff to a file elsewhere.
//!
//! Linux: `openat`/`mkdirat`/`renameat2`/`unlinkat`/`fstatat` relative to the
//! directory's descriptor with `O_NOFOLLOW` (through `rustix`, no `unsafe`).
//! Elsewhere (WASI): paths, each name checked with `symlink_metadata` before
//! use; the WASI runtime itself confines every path to the preopened
//! directories (an escaping link fails there), the check keeps links inside
//! them from being followed too (it is not atomic with the open).
//!
//! Locks: [`try_lock`] is `flock(LOCK_EX|LOCK_NB)`, released by the kernel
//! when the process ends however it ends. WASI has no file locking (neither
//! preview 1 nor preview 2 expose `flock`): there it always succeeds.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// An I/O error with the path it happened on (its kind and errno are the
/// source's; [`crate::errors`] prints the path).
#[derive(Debug)]
pub struct PathError {
    /// The path.
    pub path: PathBuf,
    /// What failed.
    pub source: io::Error,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for PathError {}

/// `e` with `path` attached (kept as is if it names a path already).
pub fn named(path: &Path, e: io::Error) -> io::Error {
    if path_error(&e).is_some() {
        return e;
    }
    io::Error::new(
        e.kind(),
        PathError {
            path: path.to_path_buf(),
            source: e,
        },
    )
}

/// The path an error names, if any.
pub fn path_error(e: &io::Error) -> Option<&PathError> {
    e.get_ref().and_then(|r| r.downcast_ref::<PathError>())
}

/// What a directory entry is (the entry itself, links not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link or anything else.
    Other,
}

/// Linux's `ELOOP`, what a refused link gives (WASI's is 32).
#[cfg(not(target_os = "wasi"))]
const ELOOP_RAW: i32 = 40;
#[cfg(target_os = "wasi")]
const ELOOP_RAW: i32 = 32;

/// A refused symbolic link at `path`.
#[cfg(not(target_os = "linux"))]
fn link_refused(path: &Path) -> io::Error {
    named(path, io::Error::from_raw_os_error(ELOOP_RAW))
}

/// Whether `e` is a refused symbolic link (`ELOOP`).
pub fn is_loop(e: &io::Error) -> bool {
    let e = path_error(e).map_or(e, |p| &p.source);
    e.raw_os_error() == Some(ELOOP_RAW)
}

/// A directory opened once, the files below it reached by name.
#[derive(Debug)]
pub struct Dir {
    path: PathBuf,
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{Dir, Kind, named};
    use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RenameFlags};
    use std::ffi::OsStr;
    use std::fs::File;
    use std::io;
    use std::path::Path;

    const DIR: OFlags = OFlags::RDONLY
        .union(OFlags::DIRECTORY)
        .union(OFlags::CLOEXEC);

    pub fn open_dir(path: &Path) -> io::Result<Dir> {
        let fd =
            rustix::fs::openat(CWD, path, DIR, Mode::empty()).map_err(|e| named(path, e.into()))?;
        Ok(Dir {
            path: path.to_path_buf(),
            fd,
        })
    }

    impl Dir {
        pub(super) fn sub_imp(&self, name: &OsStr) -> io::Result<Dir> {
            let fd = match rustix::fs::openat(&self.fd, name, DIR | OFlags::NOFOLLOW, Mode::empty())
            {
                Ok(fd) => fd,
                // O_DIRECTORY finds a link before O_NOFOLLOW does: ELOOP too.
                Err(rustix::io::Errno::NOTDIR)
                    if rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(
                        |st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink,
                    ) =>
                {
                    return Err(named(&self.join(name), rustix::io::Errno::LOOP.into()));
                }
                Err(e) => return Err(named(&self.join(name), e.into())),
            };
            Ok(Dir {
                path: self.join(name),
                fd,
            })
        }

        pub(super) fn open_imp(&self, name: &OsStr, write: bool, create: bool) -> io::Result<File> {
            let mut fl = OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
            fl |= if write { OFlags::RDWR } else { OFlags::RDONLY };
            if create {
                fl |= OFlags::CREATE | OFlags::EXCL;
            }
            let fd = rustix::fs::openat(&self.fd, name, fl, Mode::from_raw_mode(0o666))
                .map_err(|e| named(&self.join(name), e.into()))?;
            Ok(File::from(fd))
        }

        pub(super) fn mkdir_imp(&self, name: &OsStr) -> io::Result<()> {
            rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777))
                .map_err(|e| named(&self.join(name), e.into()))
        }

        pub(super) fn rename_imp(&self, from: &OsStr, to: &OsStr, replace: bool) -> io::Result<()> {
            let flags = if replace {
                RenameFlags::empty()
            } else {
                RenameFlags::NOREPLACE
            };
            rustix::fs::renameat_with(&self.fd, from, &self.fd, to, flags)
                .map_err(|e| named(&self.join(to), e.into()))
        }

        pub(super) fn remove_imp(&self, name: &OsStr, dir: bool) -> io::Result<()> {
            let flags = if dir {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            rustix::fs::unlinkat(&self.fd, name, flags)
                .map_err(|e| named(&self.join(name), e.into()))
        }

        pub(super) fn kind_imp(&self, name: &OsStr) -> io::Result<Option<Kind>> {
            match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Ok(Some(match FileType::from_raw_mode(st.st_mode) {
                    FileType::RegularFile => Kind::File,
                    FileType::Directory => Kind::Dir,
                    _ => Kind::Other,
                })),
                Err(rustix::io::Errno::NOENT) => Ok(None),
                Err(e) => Err(named(&self.join(name), e.into())),
            }
        }

        pub(super) fn handle_imp(&self) -> io::Result<File> {
            Ok(File::from(self.fd.try_clone()?))
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{Dir, Kind, link_refused, named};
    use std::ffi::OsStr;
    use std::fs::{self, File, OpenOptions};
    use std::io;
    use std::path::Path;

    pub fn open_dir(path: &Path) -> io::Result<Dir> {
        if !fs::metadata(path).map_err(|e| named(path, e))?.is_dir() {
            return Err(named(path, io::Error::from(io::ErrorKind::NotADirectory)));
        }
        Ok(Dir {
            path: path.to_path_buf(),
        })
    }

    impl Dir {
        /// Refuse `name` if it is a link (checked before each use).
        fn no_link(&self, name: &OsStr) -> io::Result<()> {
            match self.kind_imp(name)? {
                Some(Kind::Other)
                    if fs::symlink_metadata(self.join(name)).is_ok_and(|m| m.is_symlink()) =>
                {
                    Err(link_refused(&self.join(name)))
                }
                _ => Ok(()),
            }
        }

        pub(super) fn sub_imp(&self, name: &OsStr) -> io::Result<Dir> {
            self.no_link(name)?;
            open_dir(&self.join(name))
        }

        pub(super) fn open_imp(&self, name: &OsStr, write: bool, create: bool) -> io::Result<File> {
            let p = self.join(name);
            if !create {
                self.no_link(name)?;
            }
            OpenOptions::new()
                .read(true)
                .write(write)
                .create_new(create)
                .open(&p)
                .map_err(|e| named(&p, e))
        }

        pub(super) fn mkdir_imp(&self, name: &OsStr) -> io::Result<()> {
            fs::create_dir(self.join(name)).map_err(|e| named(&self.join(name), e))
        }

        pub(super) fn rename_imp(&self, from: &OsStr, to: &OsStr, replace: bool) -> io::Result<()> {
            if !replace && self.kind_imp(to)?.is_some() {
                return Err(named(
                    &self.join(to),
                    io::Error::from(io::ErrorKind::AlreadyExists),
                ));
            }
            fs::rename(self.join(from), self.join(to)).map_err(|e| named(&self.join(to), e))
        }

        pub(super) fn remove_imp(&self, name: &OsStr, dir: bool) -> io::Result<()> {
            let p = self.join(name);
            if dir {
                fs::remove_dir(&p)
            } else {
                fs::remove_file(&p)
            }
            .map_err(|e| named(&p, e))
        }

        pub(super) fn kind_imp(&self, name: &OsStr) -> io::Result<Option<Kind>> {
            match fs::symlink_metadata(self.join(name)) {
                Ok(m) if m.is_file() => Ok(Some(Kind::File)),
                Ok(m) if m.is_dir() => Ok(Some(Kind::Dir)),
                Ok(_) => Ok(Some(Kind::Other)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(named(&self.join(name), e)),
            }
        }

        pub(super) fn handle_imp(&self) -> io::Result<File> {
            File::open(&self.path).map_err(|e| named(&self.path, e))
        }
    }
}

impl Dir {
    /// Open the directory at `path` as given (a link there is followed: it
    /// is the user's choice).
    pub fn open(path: &Path) -> io::Result<Dir> {
        imp::open_dir(path)
    }

    /// The directory holding `file` (`.` for a bare name), and `file`'s name.
    pub fn parent_of(file: &Path) -> io::Result<(Dir, OsString)> {
        let name = file
            .file_name()
            .ok_or_else(|| named(file, io::Error::from(io::ErrorKind::InvalidInput)))?;
        let parent = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Ok((Dir::open(parent)?, name.to_owned()))
    }

    /// A second handle on the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            path: self.path.clone(),
            #[cfg(target_os = "linux")]
            fd: self.fd.try_clone()?,
        })
    }

    /// Its path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in it (for messages).
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// A subdirectory (not a link).
    pub fn sub(&self, name: impl AsRef<OsStr>) -> io::Result<Dir> {
        self.sub_imp(name.as_ref())
    }

    /// Create a subdirectory.
    pub fn mkdir(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        self.mkdir_imp(name.as_ref())
    }

    /// Open an existing file (not a link) read-only.
    pub fn open_ro(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_imp(name.as_ref(), false, false)
    }

    /// Open an existing file (not a link) read-write.
    pub fn open_rw(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_imp(name.as_ref(), true, false)
    }

    /// Create a new file read-write; fails if anything (a link too) is there.
    pub fn create_new(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_imp(name.as_ref(), true, true)
    }

    /// A temporary `name`: whatever a failed run left there is removed (the
    /// entry itself, never what a link points to), then created exclusively.
    pub fn create_temp(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let name = name.as_ref();
        if self.kind(name)?.is_some() {
            self.remove(name)?;
        }
        self.create_new(name)
    }

    /// Rename `from` to `to`, replacing `to` (the entry, never a link's target).
    pub fn rename(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> io::Result<()> {
        self.rename_imp(from.as_ref(), to.as_ref(), true)
    }

    /// Rename `from` to `to`, failing (`EEXIST`) if `to` exists.
    pub fn rename_new(&self, from: impl AsRef<OsStr>, to: impl AsRef<OsStr>) -> io::Result<()> {
        self.rename_imp(from.as_ref(), to.as_ref(), false)
    }

    /// Remove a file (or link: the entry itself).
    pub fn remove(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        self.remove_imp(name.as_ref(), false)
    }

    /// Remove `name` if it is there.
    pub fn remove_if_exists(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        match self.remove(name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }

    /// Remove an empty subdirectory.
    pub fn remove_dir(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        self.remove_imp(name.as_ref(), true)
    }

    /// What `name` is, without following a link; `None` if absent.
    pub fn kind(&self, name: impl AsRef<OsStr>) -> io::Result<Option<Kind>> {
        self.kind_imp(name.as_ref())
    }

    /// Names of its entries (unsorted).
    pub fn names(&self) -> io::Result<Vec<OsString>> {
        let mut out = Vec::new();
        for ent in std::fs::read_dir(&self.path).map_err(|e| named(&self.path, e))? {
            out.push(ent.map_err(|e| named(&self.path, e))?.file_name());
        }
        Ok(out)
    }

    /// Remove the subdirectory `name` with the files in it (not recursive:
    /// an image directory holds only files). Links are removed, not followed.
    pub fn remove_tree(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let sub = self.sub(name.as_ref())?;
        for n in sub.names()? {
            sub.remove(&n)?;
        }
        self.remove_dir(name)
    }

    /// A handle on the directory itself (to lock it).
    pub fn handle(&self) -> io::Result<File> {
        self.handle_imp()
    }
}

/// Why a lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it: who, if known.
    Busy(Option<String>),
    /// Locking failed.
    Io(io::Error),
}

/// Take an exclusive lock on `f` without waiting (`flock`, released when
/// every handle on it is closed, at the latest when the process ends).
pub fn try_lock(f: &File) -> Result<(), LockError> {
    match f.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(LockError::Busy(holder(f))),
        Err(std::fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => Ok(()),
        Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(e)),
    }
}

/// Who holds the `flock` on `f`: `pid N (command line)` from `/proc/locks`.
#[cfg(target_os = "linux")]
fn holder(f: &File) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = f.metadata().ok()?;
    let dev = m.dev();
    let want = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        m.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        // "1: FLOCK ADVISORY WRITE <pid> <maj:min:ino> 0 EOF" (waiters have "->").
        (w.len() >= 6 && w[1] == "FLOCK" && w[3] == "WRITE" && w[5] == want)
            .then(|| w[4].to_string())
    })?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let parts: Vec<String> = c
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            parts.join(" ")
        })
        .unwrap_or_default();
    Some(if cmd.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid} ({cmd})")
    })
}

#[cfg(not(target_os = "linux"))]
fn holder(_f: &File) -> Option<String> {
    None
}
