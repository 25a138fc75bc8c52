//! `merge-diff`: merge consecutive diffs into one.

use super::{Output, input_len};
use crate::errors::{EDOM, EEXIST, EINVAL, EOPNOTSUPP, Fail, io_errno};
use crate::progress::{Progress, ProgressFlags};
use rbdiff::Format;
use rbdiff::merge::{
    BufCopier, CopyError, MergeErrorKind, MergeOptions, MergeStreamError, Phase, merge_streams_with,
};
use rbdiff::{ErrorKind, Expected};
use std::fs::File;
use std::io::{self, Read, Seek};

const EXAMPLES: &str = "\
Examples:
  rbdiff merge-diff mon.diff tue.diff mon+tue.diff
  rbdiff merge-diff full.diff d1.diff d2.diff d3.diff all.diff     # more than two
  rbdiff export-diff --from-snap a img@b - | rbdiff merge-diff a.diff - out.diff
  rbdiff merge-diff --rbd-compat a.diff b.diff -   # exactly rbd's rules

Like rbd merge-diff, the inputs must be consecutive (each FROM snapshot is the
previous TO snapshot), records sorted and non-overlapping; the output is a v1
diff created exclusively (removed on failure), or stdout for '-'. For two v1
inputs the output is byte-identical to rbd's.

Extensions over rbd (disable with --rbd-compat): any number of inputs (>= 2),
'rbd diff v2' inputs (the diffs embedded in 'export --export-format 2'), and
any one input may be '-' (stdin), not only the first.

Payloads go from input files to the output in one read and one write (or a
seek, for data the later diffs replace). RBDIFF_COPY_FILE_RANGE=1 copies them
with copy_file_range instead (Linux, into a regular file): worth it where the
filesystem copies server-side (NFS 4.2, SMB); on a local ext4 the plain reads
and writes measured faster.";

/// Merge two or more consecutive diffs into one.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Diffs in chain order, then the output path ('-' for stdin/stdout).
    #[arg(required = true, num_args = 3.., value_name = "PATH")]
    pub paths: Vec<String>,
    /// Behave exactly like rbd 16.2.15: two v1 inputs, only the first may be '-'.
    #[arg(long)]
    pub rbd_compat: bool,
    #[command(flatten)]
    pub progress: ProgressFlags,
}

/// "first", "second", ... as rbd names its inputs.
pub fn nth(i: usize) -> String {
    const W: [&str; 10] = [
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth",
    ];
    W.get(i)
        .map_or_else(|| format!("#{}", i + 1), |s| (*s).to_string())
}

/// rbd's message lines and errno for a merge failure.
pub fn rbd_lines(e: &MergeStreamError) -> Fail {
    let who = nth(e.input.unwrap_or(0));
    match (&e.kind, e.phase) {
        (MergeErrorKind::Chain { .. }, _) => {
            let i = e.input.unwrap_or(1);
            Fail::new(
                EINVAL,
                format!(
                    "The {} TO snapshot must be equal with the {} FROM snapshot, aborting",
                    nth(i.saturating_sub(1)),
                    nth(i)
                ),
            )
        }
        (MergeErrorKind::Decode(d), Phase::Header) => match d.kind {
            ErrorKind::BadBanner {
                found, found_len, ..
            } => {
                let n = usize::from(found_len).min(12);
                Fail::new(
                    EINVAL,
                    format!(
                        "invalid banner '{}', expected '{}'",
                        String::from_utf8_lossy(&found[..n]),
                        String::from_utf8_lossy(Format::DiffV1.banner())
                    ),
                )
                .then(format!("rbd: failed to parse {who} diff header"))
            }
            ErrorKind::UnexpectedEof { .. } => {
                Fail::new(EDOM, format!("rbd: failed to parse {who} diff header"))
            }
            _ => Fail::new(EINVAL, format!("rbd: failed to parse {who} diff header")),
        },
        (MergeErrorKind::Decode(d), Phase::Data) if d.is_eof() => {
            Fail::new(EDOM, "rbd: failed to merge diff chunk")
        }
        (MergeErrorKind::Decode(d), _) => {
            let code = if matches!(
                d.kind,
                ErrorKind::UnexpectedEof {
                    expected: Expected::Tag | Expected::IoLength | Expected::TagLength,
                    ..
                }
            ) {
                EDOM
            } else {
                EOPNOTSUPP
            };
            let code = if d.is_eof() { EDOM } else { code };
            Fail::new(
                code,
                format!("rbd: failed to read {who} diff data chunk header"),
            )
        }
        (MergeErrorKind::OutOfOrder { prev_end, offset }, _) => Fail::new(
            EOPNOTSUPP,
            format!("rbd: out-of-order offset from {who} diff ({prev_end} > {offset})"),
        ),
        (MergeErrorKind::ZeroLength, _) => Fail::new(
            EOPNOTSUPP,
            format!("rbd: failed to read {who} diff data chunk header"),
        ),
        (MergeErrorKind::Io(io), Phase::Output) => {
            Fail::new(io_errno(io), "rbd: failed to merge diff chunk")
        }
        (MergeErrorKind::Io(io), _) => Fail::new(
            io_errno(io),
            format!("rbd: failed to read {who} diff: {io}"),
        ),
        (MergeErrorKind::NoInputs, _) => Fail::new(EINVAL, "rbd: first diff was not specified"),
        // kinds added to the engine later (e.g. driver misuse)
        #[allow(unreachable_patterns)]
        _ => Fail::new(crate::errors::EIO, format!("rbd: merge-diff: {e}")),
    }
}

/// A merge-diff input.
enum DiffIn {
    /// A regular file: payloads to drop are seeked over, payloads to copy
    /// go to the output with a kernel copy (Linux).
    File(File),
    /// Any other path (a FIFO, a device): read.
    Stream(File),
    /// Standard input.
    Stdin(io::StdinLock<'static>),
    /// Bytes read ahead (the banner `--rbd-compat` checks), then the rest.
    Prefixed(io::Cursor<Vec<u8>>, Box<DiffIn>),
}

impl DiffIn {
    /// Opens `path`: stdin for `-` when `stdin_ok` (rbd opens a later `-`
    /// as a file of that name).
    fn open(path: &str, stdin_ok: bool) -> io::Result<DiffIn> {
        if path == "-" && stdin_ok {
            return Ok(DiffIn::Stdin(io::stdin().lock()));
        }
        let f = File::open(path)?;
        let meta = f.metadata()?;
        if path != "-" && meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            ));
        }
        Ok(if meta.is_file() {
            DiffIn::File(f)
        } else {
            DiffIn::Stream(f)
        })
    }
}

impl Read for DiffIn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DiffIn::File(f) | DiffIn::Stream(f) => f.read(buf),
            DiffIn::Stdin(s) => s.read(buf),
            DiffIn::Prefixed(head, rest) => {
                let n = head.read(buf)?;
                if n > 0 || buf.is_empty() {
                    Ok(n)
                } else {
                    rest.read(buf)
                }
            }
        }
    }
}

/// How payloads leave the inputs.
struct Mover {
    /// One read and one write per piece.
    buf: BufCopier,
    /// Copy file payloads with `copy_file_range` (`RBDIFF_COPY_FILE_RANGE=1`).
    #[cfg(target_os = "linux")]
    kernel: bool,
}

impl Mover {
    fn new() -> Self {
        Mover {
            buf: BufCopier::new(),
            #[cfg(target_os = "linux")]
            kernel: std::env::var_os("RBDIFF_COPY_FILE_RANGE").is_some_and(|v| v == "1"),
        }
    }
}

/// Moves up to `len` payload bytes of `r` to `out` (`emit`) or drops them,
/// without passing them through the merge: regular files are seeked over
/// (never past their end, so a truncated input fails where it ends), and
/// payloads to keep go through one buffer (read, then written past the
/// output's buffer: two copies, as rbd makes) or, when asked for on Linux,
/// are copied by the kernel into a regular output file (`std::io::copy`
/// from a `File` to a `File` or a redirected stdout uses `copy_file_range`).
fn move_payload(
    r: &mut DiffIn,
    out: &mut Output,
    len: u64,
    emit: bool,
    m: &mut Mover,
) -> Result<u64, CopyError> {
    match r {
        DiffIn::Prefixed(head, rest) if head.position() >= head.get_ref().len() as u64 => {
            move_payload(rest, out, len, emit, m)
        }
        DiffIn::File(f) if !emit => {
            let pos = f.stream_position().map_err(CopyError::Read)?;
            let end = f.metadata().map_err(CopyError::Read)?.len();
            let n = i64::try_from(len.min(end.saturating_sub(pos))).unwrap_or(i64::MAX);
            f.seek_relative(n).map_err(CopyError::Read)?;
            Ok(n.unsigned_abs())
        }
        #[cfg(target_os = "linux")]
        DiffIn::File(f) if m.kernel && out.kernel_copies() => {
            let raw = out.raw().map_err(CopyError::Write)?;
            let mut src = Read::by_ref(f).take(len);
            let r = match raw {
                super::RawOutput::File(o) => io::copy(&mut src, o),
                super::RawOutput::Stdout(o) => io::copy(&mut src, o),
            };
            // One call reads and writes: errors only the output can cause
            // are the output's, the rest the input's.
            r.map_err(|e| match e.kind() {
                io::ErrorKind::StorageFull
                | io::ErrorKind::QuotaExceeded
                | io::ErrorKind::FileTooLarge
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::WriteZero => CopyError::Write(e),
                _ => CopyError::Read(e),
            })
        }
        _ => m.buf.copy(r, out, len, emit),
    }
}

/// Checks the banner (rbd --rbd-compat: v1 only) and gives the bytes back.
fn v1_only(mut r: DiffIn, i: usize) -> Result<DiffIn, Fail> {
    let mut head = Vec::with_capacity(Format::DiffV1.banner().len());
    r.by_ref()
        .take(Format::DiffV1.banner().len() as u64)
        .read_to_end(&mut head)
        .map_err(|e| {
            Fail::new(
                io_errno(&e),
                format!("rbd: failed to parse {} diff header", nth(i)),
            )
        })?;
    if head.len() < Format::DiffV1.banner().len() {
        return Err(Fail::new(
            EDOM,
            format!("rbd: failed to parse {} diff header", nth(i)),
        ));
    }
    if head != Format::DiffV1.banner() {
        return Err(Fail::new(
            EINVAL,
            format!(
                "invalid banner '{}', expected '{}'",
                String::from_utf8_lossy(&head),
                String::from_utf8_lossy(Format::DiffV1.banner())
            ),
        )
        .then(format!("rbd: failed to parse {} diff header", nth(i))));
    }
    Ok(DiffIn::Prefixed(io::Cursor::new(head), Box::new(r)))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let r = merge(&a);
    r.map_err(|f| f.then("rbd: merge-diff error").into())
}

fn merge(a: &Args) -> Result<(), Fail> {
    let (out_path, ins) = a.paths.split_last().expect("clap requires 3 paths");
    if a.rbd_compat && ins.len() != 2 {
        return Err(Fail::new(
            EINVAL,
            "rbd: merge-diff takes exactly two diffs with --rbd-compat",
        ));
    }
    if ins.iter().filter(|p| p.as_str() == "-").count() > 1 {
        return Err(Fail::new(EINVAL, "rbd: only one input can be stdin ('-')"));
    }
    let mut readers: Vec<DiffIn> = Vec::with_capacity(ins.len());
    let mut total = 0u64;
    for (i, p) in ins.iter().enumerate() {
        let stdin_ok = !a.rbd_compat || i == 0;
        let r = DiffIn::open(p, stdin_ok)
            .map_err(|e| Fail::new(io_errno(&e), format!("rbd: error opening {p}")))?;
        total += input_len(p).unwrap_or(0);
        readers.push(r);
    }
    if a.rbd_compat {
        let mut checked = Vec::with_capacity(readers.len());
        for (i, r) in readers.into_iter().enumerate() {
            checked.push(v1_only(r, i)?);
        }
        readers = checked;
    }
    // The merge writes whole output chunks and payload pieces, most of
    // them larger than this buffer, which then go out without a copy; it
    // only gathers the small ones.
    let mut out = Output::with_buffer(out_path, 64 << 10).map_err(|e| {
        let code = io_errno(&e);
        if code == EEXIST {
            Fail::new(EEXIST, format!("rbd: error create {out_path}"))
        } else {
            Fail::new(code, format!("rbd: error create {out_path}"))
        }
    })?;
    let mut prog = Progress::new("Merging image diff", a.progress);
    let opts = MergeOptions::new();
    let mut mover = Mover::new();
    let res = merge_streams_with(
        &mut readers,
        &mut out,
        &opts,
        &mut |done| prog.update(done, total),
        &mut |r, w, len, emit| move_payload(r, w, len, emit, &mut mover),
    );
    match res {
        Ok(_) => {
            out.commit()
                .map_err(|e| Fail::new(io_errno(&e), "rbd: failed to merge diff chunk"))?;
            prog.finish(true);
            Ok(())
        }
        Err(e) => {
            prog.finish(false);
            drop(out);
            let f = rbd_lines(&e);
            Err(
                match (&e.located, e.input.and_then(|i| Some((i, ins.get(i)?)))) {
                    (Some(d), Some((i, p))) => f.at_stream(&format!("{} diff {p}", nth(i)), d),
                    _ => f,
                },
            )
        }
    }
}
