//! Errors that end the program: the stderr lines rbd would print and the
//! exit status (rbd exits with the positive errno of the failure).

use std::fmt;
use std::io;

/// errno values rbd's CLI exits with.
pub const ENOENT: i32 = 2;
pub const EIO: i32 = 5;
pub const EACCES: i32 = 13;
pub const EBUSY: i32 = 16;
pub const EEXIST: i32 = 17;
pub const ENOTDIR: i32 = 20;
pub const EISDIR: i32 = 21;
pub const EINVAL: i32 = 22;
pub const EFBIG: i32 = 27;
pub const ENOSPC: i32 = 28;
pub const EDOM: i32 = 33;
pub const ENOTEMPTY: i32 = 39;
pub const ELOOP: i32 = 40;
pub const EBADMSG: i32 = 74;
pub const EOVERFLOW: i32 = 75;
pub const EOPNOTSUPP: i32 = 95;

/// The text `strerror` gives for `code` (glibc wording, as rbd prints it).
pub fn strerror(code: i32) -> &'static str {
    match code {
        1 => "Operation not permitted",
        ENOENT => "No such file or directory",
        EIO => "Input/output error",
        EACCES => "Permission denied",
        EBUSY => "Device or resource busy",
        EEXIST => "File exists",
        ENOTDIR => "Not a directory",
        EISDIR => "Is a directory",
        EINVAL => "Invalid argument",
        EFBIG => "File too large",
        ENOSPC => "No space left on device",
        EDOM => "Numerical argument out of domain",
        ENOTEMPTY => "Directory not empty",
        ELOOP => "Too many levels of symbolic links",
        EBADMSG => "Bad message",
        EOVERFLOW => "Value too large for defined data type",
        EOPNOTSUPP => "Operation not supported",
        30 => "Read-only file system",
        32 => "Broken pipe",
        34 => "Numerical result out of range",
        107 => "Transport endpoint is not connected",
        110 => "Connection timed out",
        111 => "Connection refused",
        125 => "Operation canceled",
        _ => "Unknown error",
    }
}

/// `(<code>) <strerror>`, as rbd's `cpp_strerror` prints it.
pub fn errstr(code: i32) -> String {
    format!("({code}) {}", strerror(code))
}

/// The errno an I/O error stands for. Mapped by kind, because WASI's raw
/// errno numbers differ from Linux's.
pub fn io_errno(e: &io::Error) -> i32 {
    if let Some(p) = crate::safefs::path_error(e) {
        return io_errno(&p.source);
    }
    if crate::safefs::is_loop(e) {
        return ELOOP;
    }
    match e.kind() {
        io::ErrorKind::NotFound => ENOENT,
        io::ErrorKind::AlreadyExists => EEXIST,
        io::ErrorKind::PermissionDenied => EACCES,
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => EINVAL,
        io::ErrorKind::IsADirectory => EISDIR,
        io::ErrorKind::NotADirectory => ENOTDIR,
        io::ErrorKind::FileTooLarge => EFBIG,
        io::ErrorKind::DirectoryNotEmpty => ENOTEMPTY,
        io::ErrorKind::StorageFull => ENOSPC,
        io::ErrorKind::Unsupported => EOPNOTSUPP,
        io::ErrorKind::UnexpectedEof => EDOM,
        io::ErrorKind::ResourceBusy => EBUSY,
        _ => EIO,
    }
}

/// A failure: lines for stderr (in order) and the exit status.
#[derive(Debug)]
pub struct Fail {
    /// Exit status.
    pub code: i32,
    /// Lines printed to stderr.
    pub lines: Vec<String>,
    /// rbdiff's own line printed after all of rbd's (where in the stream
    /// the failure is); left out under `--rbd-compat` ([`without_detail`]).
    pub detail: Option<String>,
}

impl Fail {
    /// One line, exit status `code`.
    pub fn new(code: i32, line: impl Into<String>) -> Self {
        Fail {
            code,
            lines: vec![line.into()],
            detail: None,
        }
    }

    /// No message of its own yet.
    pub fn bare(code: i32) -> Self {
        Fail {
            code,
            lines: Vec::new(),
            detail: None,
        }
    }

    /// Append a line (printed after the ones already there).
    pub fn then(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        self
    }

    /// Set the line printed after all others ([`Fail::detail`]).
    pub fn with_detail(mut self, line: impl Into<String>) -> Self {
        self.detail = Some(line.into());
        self
    }

    /// The detail line for a stream that failed to decode: `rbdiff: <what>:
    /// <error> at stream offset <n>`.
    pub fn at_stream(self, what: &str, e: &rbdiff::DecodeError) -> Self {
        self.with_detail(format!("rbdiff: {what}: {e}"))
    }

    /// The detail line saying where in stream `what` the failure happened:
    /// `rbdiff: <what>: <detail so far, or "failed"> at stream offset <n>`.
    pub fn at_offset(self, what: &str, offset: u64) -> Self {
        let d = self.detail.as_deref().unwrap_or("failed");
        let line = format!("rbdiff: {what}: {d} at stream offset {offset}");
        self.with_detail(line)
    }

    /// From an I/O error, prefixed by `what`: `<what>: (<errno>) <strerror>`,
    /// with the path it happened on when the error names one
    /// (`<what>: <path>: (<errno>) <strerror>`).
    pub fn io(what: &str, e: &io::Error) -> Self {
        let code = io_errno(e);
        match crate::safefs::path_error(e) {
            Some(p) => Fail::new(
                code,
                format!("{what}: {}: {}", p.path.display(), errstr(code)),
            ),
            None => Fail::new(code, format!("{what}: {}", errstr(code))),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))?;
        match &self.detail {
            Some(d) => write!(f, "\n{d}"),
            None => Ok(()),
        }
    }
}

/// `e` without rbdiff's detail line: what rbd itself prints (`--rbd-compat`).
pub fn without_detail(mut e: anyhow::Error) -> anyhow::Error {
    if let Some(f) = e.downcast_mut::<Fail>() {
        f.detail = None;
    }
    e
}

impl std::error::Error for Fail {}

/// The exit status for any error that reached `main`.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if let Some(f) = e.downcast_ref::<Fail>() {
        return f.code;
    }
    for cause in e.chain() {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return io_errno(io);
        }
    }
    EIO
}

/// Print an error that reached `main` the way rbd does.
pub fn report(e: &anyhow::Error) {
    if let Some(f) = e.downcast_ref::<Fail>() {
        for l in f.lines.iter().chain(&f.detail) {
            eprintln!("{l}");
        }
    } else {
        let code = exit_code(e);
        eprintln!("rbd: {e:#}: {}", errstr(code));
    }
}
