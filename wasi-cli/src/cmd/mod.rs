//! Subcommands, one file each, and the helpers they share.

pub mod create;
pub mod diff;
pub mod export;
pub mod export_diff;
pub mod image_meta;
pub mod import;
pub mod import_diff;
pub mod info;
pub mod inspect;
pub mod ls;
pub mod merge_diff;
pub mod object_map;
pub mod resize;
pub mod rm;
pub mod seal;
pub mod snap;
pub mod verify;

use crate::errors::{EINVAL, Fail};
use crate::store::{Spec, Store};
use clap::{Parser, Subcommand};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const TOP_EXAMPLES: &str = "\
Examples (a full backup, an incremental one, a merge and a restore):
  rbdiff import disk.raw vm1                     # a raw disk image into ./rbdiff-store
                                                 # (or: rbdiff create --size 1G vm1)
  rbdiff snap create vm1@mon
  rbdiff export-diff vm1@mon mon.diff            # full backup
  rbdiff snap create vm1@tue
  rbdiff export-diff --from-snap mon vm1@tue tue.diff   # incremental
  rbdiff merge-diff mon.diff tue.diff mon+tue.diff
  rbdiff create --size 1G restored && rbdiff import-diff mon+tue.diff restored
  rbdiff inspect tue.diff

Verified backups (rbdiff's integrity extension, readable by stock rbd):
  rbdiff export-diff --integrity --from-snap mon vm1@tue tue.diff
  rbdiff verify tue.diff --base restored         # right base? (reads only)
  rbdiff import-diff --undo tue.undo tue.diff restored   # refuses a wrong base
  rbdiff seal s1..s2.diff --base vm1@s1          # sidecar for a diff made by rbd

Images are either plain raw files (a path that exists, or starts with '/' or
'.'), [pool/]image[@snap] in the store (--store DIR, $RBDIFF_STORE, default
./rbdiff-store), or images in a Ceph cluster written as qemu does,
rbd:pool[/namespace]/image[@snap][:conf=PATH][:id=NAME] (the native build with
the 'librbd' feature; the cluster found as rbd finds it: $CEPH_CONF, -c/--conf,
--id, --keyring, --cluster). Exit status is the errno rbd would exit with (2, 17, 22, 33,
74, 95, ...); 1 for usage errors.";

/// rbdiff: incremental block-device backups with rbd's formats and commands,
/// without a Ceph cluster.
#[derive(Parser, Debug)]
#[command(name = "rbdiff", version, after_help = TOP_EXAMPLES, max_term_width = 100)]
pub struct Cli {
    /// Image store directory.
    #[arg(
        long,
        global = true,
        env = "RBDIFF_STORE",
        default_value = "./rbdiff-store",
        value_name = "DIR"
    )]
    pub store: PathBuf,
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterFlags,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    ExportDiff(export_diff::Args),
    ImportDiff(import_diff::Args),
    MergeDiff(merge_diff::Args),
    Export(export::Args),
    Import(import::Args),
    Diff(diff::Args),
    Inspect(inspect::Args),
    Verify(verify::Args),
    Seal(seal::Args),
    Create(create::Args),
    Info(info::Args),
    Resize(resize::Args),
    #[command(alias = "remove")]
    Rm(rm::Args),
    #[command(alias = "list")]
    Ls(ls::Args),
    #[command(subcommand)]
    Snap(snap::SnapCmd),
    #[command(subcommand)]
    ObjectMap(object_map::ObjectMapCmd),
    #[command(subcommand)]
    ImageMeta(image_meta::MetaCmd),
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    crate::cluster::set_flags(cli.cluster);
    let store = Store::new(cli.store);
    // rbd's messages only, without rbdiff's line giving the stream offset.
    let compat = match &cli.cmd {
        Cmd::ImportDiff(a) => a.rbd_compat,
        Cmd::MergeDiff(a) => a.rbd_compat,
        _ => false,
    };
    let res = match cli.cmd {
        Cmd::ExportDiff(a) => export_diff::run(&store, a),
        Cmd::ImportDiff(a) => import_diff::run(&store, a),
        Cmd::MergeDiff(a) => merge_diff::run(a),
        Cmd::Export(a) => export::run(&store, a),
        Cmd::Import(a) => import::run(&store, a),
        Cmd::Diff(a) => diff::run(&store, a),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Verify(a) => verify::run(&store, a),
        Cmd::Seal(a) => seal::run(&store, a),
        Cmd::Create(a) => create::run(&store, a),
        Cmd::Info(a) => info::run(&store, a),
        Cmd::Resize(a) => resize::run(&store, a),
        Cmd::Rm(a) => rm::run(&store, a),
        Cmd::Ls(a) => ls::run(&store, a),
        Cmd::Snap(c) => snap::run(&store, c),
        Cmd::ObjectMap(c) => object_map::run(&store, c),
        Cmd::ImageMeta(c) => image_meta::run(&store, c),
    };
    if compat {
        res.map_err(crate::errors::without_detail)
    } else {
        res
    }
}

/// An image argument: a raw file or a store image.
#[derive(Debug, Clone)]
pub enum Target {
    /// A plain raw image file.
    Raw(PathBuf),
    /// `[pool/]image[@snap]` in the store.
    Store(Spec),
}

impl Target {
    /// Decide what `arg` names: an existing non-directory path, or one that
    /// starts with `/` or `.`, is a raw file; anything else is a store spec.
    pub fn parse(arg: &str) -> Result<Target, Fail> {
        let p = Path::new(arg);
        let looks_like_path = arg.starts_with('/') || arg.starts_with('.');
        let is_file = fs::metadata(p).map(|m| !m.is_dir()).unwrap_or(false);
        if looks_like_path || is_file {
            if fs::metadata(p).map(|m| m.is_dir()).unwrap_or(false) {
                return Err(Fail::new(
                    crate::errors::EISDIR,
                    format!("rbd: {arg} is a directory"),
                ));
            }
            return Ok(Target::Raw(p.to_path_buf()));
        }
        Ok(Target::Store(Spec::parse(arg)?))
    }
}

/// Open an image argument read-only: a raw file, or a store image's HEAD
/// or `@snap`.
pub fn open_image_ro(store: &Store, arg: &str) -> Result<crate::dev::Dev, Fail> {
    let path = match Target::parse(arg)? {
        Target::Raw(p) => p,
        Target::Store(spec) => {
            return store.open(&spec.head())?.open_data(spec.snap.as_deref());
        }
    };
    crate::dev::Dev::open_ro(&path).map_err(|e| {
        Fail::new(
            crate::errors::io_errno(&e),
            format!(
                "rbd: error opening image {arg}: {}",
                crate::errors::errstr(crate::errors::io_errno(&e))
            ),
        )
    })
}

/// Open an input file, or stdin for `-`. `what` names it in the error.
pub fn open_input(path: &str) -> Result<Box<dyn Read>, io::Error> {
    if path == "-" {
        Ok(Box::new(io::stdin().lock()))
    } else {
        let f = File::open(path)?;
        if f.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        Ok(Box::new(f))
    }
}

/// Size of an input for progress (`None` for stdin or unknown).
pub fn input_len(path: &str) -> Option<u64> {
    if path == "-" {
        None
    } else {
        fs::metadata(path).ok().map(|m| m.len())
    }
}

/// An output file created exclusively (as rbd's `O_EXCL`) or stdout for
/// `-`; a file is removed again unless [`Output::commit`] is called.
pub struct Output {
    path: Option<PathBuf>,
    w: Option<Sink>,
    /// Kernel copies into it work ([`Output::kernel_copies`]).
    #[cfg(target_os = "linux")]
    direct: bool,
}

/// What an [`Output`] writes to, through a 1 MiB buffer.
enum Sink {
    File(BufWriter<File>),
    Stdout(BufWriter<io::StdoutLock<'static>>),
}

/// The file or stdout beneath an [`Output`]'s buffer ([`Output::raw`]), as
/// concrete types: `std::io::copy` from a `File` into them uses
/// `copy_file_range` when [`Output::kernel_copies`] says so.
#[cfg(target_os = "linux")]
pub enum RawOutput<'a> {
    /// The output file.
    File(&'a mut File),
    /// Standard output.
    Stdout(&'a mut io::StdoutLock<'static>),
}

impl Output {
    /// Create `path` (must not exist) or use stdout for `-`.
    pub fn create(path: &str) -> io::Result<Output> {
        Output::with_buffer(path, 1 << 20)
    }

    /// [`create`](Self::create) with a buffer of `capacity` bytes (writes
    /// of at least that size go out without a copy).
    pub fn with_buffer(path: &str, capacity: usize) -> io::Result<Output> {
        if path == "-" {
            let out = io::stdout().lock();
            return Ok(Output {
                path: None,
                #[cfg(target_os = "linux")]
                direct: kernel_copy_target(std::os::fd::AsFd::as_fd(&out)),
                w: Some(Sink::Stdout(BufWriter::with_capacity(capacity, out))),
            });
        }
        let f = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Output {
            path: Some(PathBuf::from(path)),
            w: Some(Sink::File(BufWriter::with_capacity(capacity, f))),
            #[cfg(target_os = "linux")]
            direct: true,
        })
    }

    /// Whether the kernel can copy into the output directly (Linux, and a
    /// regular file written at its offset: the file created, or stdout
    /// redirected to a file, not for appending). Into pipes and terminals
    /// std's `io::copy` would not use a kernel copy for a file's data.
    #[cfg(target_os = "linux")]
    pub fn kernel_copies(&self) -> bool {
        self.direct
    }

    /// Is this a real file (not stdout)?
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Flushes the buffer and gives the file or stdout beneath it, to write
    /// to directly (what is written there comes after everything written
    /// before through the buffer).
    #[cfg(target_os = "linux")]
    pub fn raw(&mut self) -> io::Result<RawOutput<'_>> {
        match &mut self.w {
            Some(Sink::File(w)) => {
                w.flush()?;
                Ok(RawOutput::File(w.get_mut()))
            }
            Some(Sink::Stdout(w)) => {
                w.flush()?;
                Ok(RawOutput::Stdout(w.get_mut()))
            }
            None => Err(closed()),
        }
    }

    /// Flush and keep the file.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(mut w) = self.w.take() {
            w.flush()?;
        }
        self.path = None;
        Ok(())
    }
}

/// Whether `copy_file_range` into `fd` works: a regular file not opened
/// for appending.
#[cfg(target_os = "linux")]
fn kernel_copy_target(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let regular = fd
        .try_clone_to_owned()
        .map(File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.is_file());
    // SAFETY: F_GETFL only reads the flags of a descriptor we hold open.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    regular && flags >= 0 && flags & libc::O_APPEND == 0
}

fn closed() -> io::Error {
    io::Error::other("output closed")
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(w) => w.write(buf),
            Sink::Stdout(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::File(w) => w.write_all(buf),
            Sink::Stdout(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(w) => w.flush(),
            Sink::Stdout(w) => w.flush(),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.w {
            Some(w) => w.write(buf),
            None => Err(closed()),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.w {
            Some(w) => w.write_all(buf),
            None => Err(closed()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.w {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        drop(self.w.take());
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// A name as the lossy text rbd would print.
pub fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Refuse a spec that names a snapshot where rbd wants an image.
pub fn no_snap(spec: &Spec, what: &str) -> Result<(), Fail> {
    if spec.snap.is_some() {
        return Err(Fail::new(
            EINVAL,
            format!("rbd: {what}: snapshot name was specified, but is not valid here"),
        ));
    }
    Ok(())
}

/// Read the whole of `r` in chunks, calling `f` for each; returns bytes read.
pub fn read_chunks(
    r: &mut dyn Read,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match r.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        f(&buf[..n])?;
    }
}

/// rbd's alternative spellings of the positional arguments: `-p/--pool`,
/// `--image`, `--path` (so rbd command lines work unchanged).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RbdNames {
    /// Pool name (instead of the pool/ prefix of the image spec).
    #[arg(short = 'p', long)]
    pub pool: Option<String>,
    /// Image name (instead of the image positional argument).
    #[arg(long = "image", value_name = "IMAGE")]
    pub image_name: Option<String>,
    /// File path (instead of the path positional argument).
    #[arg(long = "path", value_name = "PATH")]
    pub path_name: Option<String>,
}

/// What a positional argument is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Path,
    Image,
}

impl RbdNames {
    /// Assign the given positionals (in order) and options to `roles`;
    /// returns one value per role (`None` if not given).
    pub fn resolve(
        &self,
        positionals: &[&Option<String>],
        roles: &[Role],
    ) -> Result<Vec<Option<String>>, Fail> {
        let mut pos: std::collections::VecDeque<String> =
            positionals.iter().filter_map(|p| (*p).clone()).collect();
        let mut out = Vec::with_capacity(roles.len());
        for r in roles {
            let v = match r {
                Role::Path => self.path_name.clone().or_else(|| pos.pop_front()),
                Role::Image => match &self.image_name {
                    Some(i) => Some(i.clone()),
                    None => pos.pop_front(),
                },
            };
            let v = match (r, v) {
                (Role::Image, Some(i)) => match &self.pool {
                    Some(p) if !i.contains('/') && !i.starts_with('.') => Some(format!("{p}/{i}")),
                    _ => Some(i),
                },
                (_, v) => v,
            };
            out.push(v);
        }
        if let Some(extra) = pos.pop_front() {
            return Err(Fail::new(1, format!("rbd: too many arguments: '{extra}'")));
        }
        Ok(out)
    }
}

/// The value of a required role, or rbd's usage error.
pub fn required(v: Option<String>, what: &str) -> Result<String, Fail> {
    v.ok_or_else(|| Fail::new(EINVAL, format!("rbd: {what} was not specified")))
}
