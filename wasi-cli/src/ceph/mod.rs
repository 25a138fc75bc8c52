//! A small safe wrapper over the system's librados/librbd (feature
//! `librbd`): connect to a cluster, open or create an image, read its
//! metadata and snapshots, list its changed extents (`rbd_diff_iterate2`),
//! and queue asynchronous reads and writes (`rbd_aio_*`) with several in
//! flight. Errors are `io::Error`s carrying librbd's errno.
//!
//! This module is the only place in rbdiff that calls C; every `unsafe`
//! block says why it holds. Handles are closed on drop, in order: an
//! [`Image`] borrows its [`IoCtx`], which borrows its [`Rados`].
#![allow(unsafe_code)]

mod ffi;
mod props;

pub use props::local_time;

use std::collections::VecDeque;
use std::ffi::{CStr, CString, c_int, c_void};
use std::io;
use std::marker::PhantomData;
use std::ptr;

/// The buffers of asynchronous reads and writes: 64-byte aligned (librbd
/// copies each read into it, at half speed into glibc's page + 16).
pub use rbdiff::block::AlignedBuf;

fn check(r: c_int) -> io::Result<c_int> {
    if r < 0 {
        Err(io::Error::from_raw_os_error(-r))
    } else {
        Ok(r)
    }
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// How to find and reach a cluster (rbd's `--cluster`, `--id`, `-c`,
/// `--keyring`), and how long to wait for it.
#[derive(Clone, Debug, Default)]
pub struct ConnectOpts {
    /// Cluster name (`--cluster`, default `ceph`).
    pub cluster: Option<String>,
    /// Client id without `client.` (`--id`/`--user`, default `admin`).
    pub id: Option<String>,
    /// Configuration file (`-c`/`--conf`; else `$CEPH_CONF` and Ceph's
    /// default search path).
    pub conf: Option<String>,
    /// Keyring file (`--keyring`).
    pub keyring: Option<String>,
    /// Seconds to wait for the monitors (sets `client_mount_timeout` and
    /// `rados_mon_op_timeout`); 0 waits as long as librados does.
    pub timeout: u64,
    /// Seconds to wait for each OSD operation (`rados_osd_op_timeout`); 0
    /// (rbd's default) waits as long as it takes.
    pub osd_timeout: u64,
}

/// A connected cluster handle (`rados_t`).
#[derive(Debug)]
pub struct Rados {
    h: ffi::RadosT,
}

// SAFETY: librados cluster handles may be used from any thread (librados
// documents its handles as thread-safe; rbd shares one across threads).
unsafe impl Send for Rados {}
// SAFETY: as above; every method takes `&self` and librados locks inside.
unsafe impl Sync for Rados {}

/// Allocations of at least this many bytes get their own mapping, given
/// back to the system when freed (see [`bound_malloc`]).
#[cfg(target_env = "gnu")]
const MMAP_THRESHOLD: c_int = 1 << 20;

/// Keep glibc's heap from growing with librados' message buffers. By
/// default glibc raises its mmap threshold to the size of the largest
/// block freed (up to 32 MiB): the messenger's buffers for whole 4 MiB
/// objects then come from the per-thread heaps and stay resident, in
/// fragments, after they are freed (an export-diff peaked anywhere from
/// 58 to 91 MiB, an import-diff at 111-123 MiB). A fixed threshold of
/// 1 MiB maps every such buffer and unmaps it when freed (a steady
/// 57-60 MiB and 70 MiB), at a page fault per 4 KiB: an export-diff of
/// 256 MiB took 41,000 faults, rbd's 9,000, and 0.07 s more system time.
/// Reads are therefore sent in pieces of [`READ_PIECE`] bytes, whose
/// reply buffers stay under the threshold and are reused from the heap
/// (10,000 faults, 58-60 MiB); what still maps buffers of its own is
/// librbd's copy-up of whole objects into a clone. Process-wide and called
/// once, before the first connection: only the native build with librbd
/// connects to clusters.
fn bound_malloc() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(target_env = "gnu")]
        // SAFETY: mallopt only sets glibc's allocator parameters (under
        // its own lock); no pointer is involved.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    });
}

impl Rados {
    /// Read the configuration and connect, waiting at most `opts.timeout`
    /// seconds for the monitors.
    pub fn connect(opts: &ConnectOpts) -> io::Result<Rados> {
        bound_malloc();
        let cluster = cstr(opts.cluster.as_deref().unwrap_or("ceph"))?;
        let name = cstr(&format!("client.{}", opts.id.as_deref().unwrap_or("admin")))?;
        let mut h = ptr::null_mut();
        // SAFETY: `h` is a valid out-pointer; the strings are NUL-terminated
        // and librados copies them.
        check(unsafe { ffi::rados_create2(&mut h, cluster.as_ptr(), name.as_ptr(), 0) })?;
        let r = Rados { h };
        let conf = opts.conf.as_deref().map(cstr).transpose()?;
        let conf_ptr = conf.as_ref().map_or(ptr::null(), |c| c.as_ptr());
        // SAFETY: a live handle; NULL asks for the default search path
        // ($CEPH_CONF, /etc/ceph/$cluster.conf, ...).
        let rc = unsafe { ffi::rados_conf_read_file(r.h, conf_ptr) };
        if rc < 0 && opts.conf.is_some() {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        // SAFETY: a live handle; NULL means CEPH_ARGS.
        check(unsafe { ffi::rados_conf_parse_env(r.h, ptr::null()) })?;
        if let Some(k) = &opts.keyring {
            r.set("keyring", k)?;
        }
        if opts.timeout > 0 {
            let t = opts.timeout.to_string();
            for key in ["client_mount_timeout", "rados_mon_op_timeout"] {
                r.set(key, &t)?;
            }
        }
        if opts.osd_timeout > 0 {
            r.set("rados_osd_op_timeout", &opts.osd_timeout.to_string())?;
        }
        // Quiet: rbdiff reports its own errors.
        r.set("log_to_stderr", "false")?;
        r.set("err_to_stderr", "false")?;
        // No librbd cache: rbdiff bounds its own reads and writes in
        // flight, and the cache would copy every write and hold up to
        // 32 MiB more (rbd's import-diff, writing back through it, peaks
        // at 4 times rbdiff's memory). Without it librbd writes from the
        // caller's buffer instead of a copy (zero-copy writes: the
        // completion waits until librados lets go of the buffer).
        r.set("rbd_cache", "false")?;
        r.set("rbd_disable_zero_copy_writes", "false")?;
        // SAFETY: a live, configured, not yet connected handle.
        check(unsafe { ffi::rados_connect(r.h) })?;
        Ok(r)
    }

    fn set(&self, key: &str, value: &str) -> io::Result<()> {
        let (k, v) = (cstr(key)?, cstr(value)?);
        // SAFETY: a live handle and NUL-terminated strings librados copies.
        check(unsafe { ffi::rados_conf_set(self.h, k.as_ptr(), v.as_ptr()) }).map(drop)
    }

    /// An I/O context on `pool` (and `namespace`, if given).
    pub fn ioctx(&self, pool: &str, namespace: Option<&str>) -> io::Result<IoCtx<'_>> {
        let p = cstr(pool)?;
        let mut h = ptr::null_mut();
        // SAFETY: a live handle, a NUL-terminated name, a valid out-pointer.
        check(unsafe { ffi::rados_ioctx_create(self.h, p.as_ptr(), &mut h) })?;
        let io = IoCtx { h, _r: PhantomData };
        if let Some(ns) = namespace {
            let n = cstr(ns)?;
            // SAFETY: a live ioctx; librados copies the name.
            unsafe { ffi::rados_ioctx_set_namespace(io.h, n.as_ptr()) };
        }
        Ok(io)
    }
}

impl Drop for Rados {
    fn drop(&mut self) {
        // SAFETY: the handle is live and every IoCtx/Image borrowing it is
        // gone (lifetimes).
        unsafe { ffi::rados_shutdown(self.h) }
    }
}

/// A pool (and namespace) I/O context.
#[derive(Debug)]
pub struct IoCtx<'r> {
    h: ffi::IoctxT,
    _r: PhantomData<&'r Rados>,
}

// SAFETY: librados I/O contexts may be shared between threads.
unsafe impl Send for IoCtx<'_> {}
// SAFETY: as above.
unsafe impl Sync for IoCtx<'_> {}

/// The layout of a new image (rbd's `--object-size` as `order`,
/// `--image-feature`, `--stripe-unit`, `--stripe-count`); `None` leaves
/// librbd's default.
#[derive(Clone, Copy, Debug, Default)]
pub struct CreateOpts {
    pub order: Option<u64>,
    pub features: Option<u64>,
    pub stripe_unit: Option<u64>,
    pub stripe_count: Option<u64>,
}

impl IoCtx<'_> {
    /// Open image `name` (at snapshot `snap`, read-only, if given).
    pub fn open(&self, name: &str, snap: Option<&str>, read_only: bool) -> io::Result<Image<'_>> {
        let n = cstr(name)?;
        let s = snap.map(cstr).transpose()?;
        let sp = s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut h = ptr::null_mut();
        // SAFETY: a live ioctx, NUL-terminated strings (or NULL for HEAD),
        // a valid out-pointer.
        let r = unsafe {
            if read_only || snap.is_some() {
                ffi::rbd_open_read_only(self.h, n.as_ptr(), &mut h, sp)
            } else {
                ffi::rbd_open(self.h, n.as_ptr(), &mut h, sp)
            }
        };
        check(r)?;
        Ok(Image {
            h,
            _io: PhantomData,
        })
    }

    /// Whether namespace `name` exists in this pool (librbd's check: a
    /// context may name one that does not).
    pub fn namespace_exists(&self, name: &str) -> io::Result<bool> {
        let n = cstr(name)?;
        let mut exists = false;
        // SAFETY: a live ioctx, a NUL-terminated name, a valid out-pointer
        // to a C `bool` (one byte, as Rust's).
        check(unsafe { ffi::rbd_namespace_exists(self.h, n.as_ptr(), &mut exists) })?;
        Ok(exists)
    }

    /// Remove image `name` (it must have no snapshots).
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: a live ioctx, a NUL-terminated name.
        check(unsafe { ffi::rbd_remove(self.h, n.as_ptr()) }).map(drop)
    }

    /// Create image `name` of `size` bytes (format 2).
    pub fn create(&self, name: &str, size: u64, o: &CreateOpts) -> io::Result<()> {
        let n = cstr(name)?;
        let mut opts = ptr::null_mut();
        // SAFETY: a valid out-pointer; destroyed below.
        unsafe { ffi::rbd_image_options_create(&mut opts) };
        let set = |k: c_int, v: Option<u64>| match v {
            // SAFETY: `opts` is live until destroyed below.
            Some(v) => check(unsafe { ffi::rbd_image_options_set_uint64(opts, k, v) }).map(drop),
            None => Ok(()),
        };
        let r = set(ffi::RBD_IMAGE_OPTION_FORMAT, Some(2))
            .and_then(|()| set(ffi::RBD_IMAGE_OPTION_ORDER, o.order))
            .and_then(|()| set(ffi::RBD_IMAGE_OPTION_FEATURES, o.features))
            .and_then(|()| set(ffi::RBD_IMAGE_OPTION_STRIPE_UNIT, o.stripe_unit))
            .and_then(|()| set(ffi::RBD_IMAGE_OPTION_STRIPE_COUNT, o.stripe_count))
            // SAFETY: a live ioctx and options, a NUL-terminated name.
            .and_then(|()| check(unsafe { ffi::rbd_create4(self.h, n.as_ptr(), size, opts) }));
        // SAFETY: created above, not used after.
        unsafe { ffi::rbd_image_options_destroy(opts) };
        r.map(drop)
    }
}

impl Drop for IoCtx<'_> {
    fn drop(&mut self) {
        // SAFETY: live, and no Image borrowing it remains.
        unsafe { ffi::rados_ioctx_destroy(self.h) }
    }
}

/// An open image (HEAD, or a snapshot read-only).
#[derive(Debug)]
pub struct Image<'io> {
    h: ffi::ImageT,
    _io: PhantomData<&'io IoCtx<'io>>,
}

// SAFETY: librbd image handles are internally locked and may be used from
// several threads at once (rbd issues aio reads from inside its
// diff_iterate callback on the same handle).
unsafe impl Send for Image<'_> {}
// SAFETY: as above.
unsafe impl Sync for Image<'_> {}

/// What `rbd_stat` and friends report.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub size: u64,
    pub order: u32,
    pub features: u64,
    pub stripe_unit: u64,
    pub stripe_count: u64,
}

/// One snapshot (`rbd_snap_list`).
#[derive(Clone, Debug)]
pub struct Snap {
    pub id: u64,
    pub size: u64,
    pub name: String,
}

/// One extent `rbd_diff_iterate2` reported: `exists` false means it reads
/// as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub len: u64,
    pub exists: bool,
}

impl Image<'_> {
    /// Size, layout and features.
    pub fn stat(&self) -> io::Result<Stat> {
        // SAFETY: ImageInfo is plain old data; zeroes are a valid value.
        let mut info: ffi::ImageInfo = unsafe { std::mem::zeroed() };
        let (mut features, mut su, mut sc) = (0u64, 0u64, 0u64);
        // SAFETY: a live image and valid out-pointers of the right types.
        unsafe {
            check(ffi::rbd_stat(
                self.h,
                &mut info,
                std::mem::size_of::<ffi::ImageInfo>(),
            ))?;
            check(ffi::rbd_get_features(self.h, &mut features))?;
            check(ffi::rbd_get_stripe_unit(self.h, &mut su))?;
            check(ffi::rbd_get_stripe_count(self.h, &mut sc))?;
        }
        Ok(Stat {
            size: info.size,
            order: u32::try_from(info.order).unwrap_or(22),
            features,
            stripe_unit: su,
            stripe_count: sc,
        })
    }

    /// Current size in bytes.
    pub fn size(&self) -> io::Result<u64> {
        let mut s = 0u64;
        // SAFETY: a live image, a valid out-pointer.
        check(unsafe { ffi::rbd_get_size(self.h, &mut s) })?;
        Ok(s)
    }

    /// Grow or shrink HEAD.
    pub fn resize(&self, size: u64) -> io::Result<()> {
        // SAFETY: a live image.
        check(unsafe { ffi::rbd_resize(self.h, size) }).map(drop)
    }

    /// Snapshots in id order.
    pub fn snaps(&self) -> io::Result<Vec<Snap>> {
        let mut max: c_int = 16;
        loop {
            let n = usize::try_from(max).unwrap_or(0) + 1;
            let mut buf: Vec<ffi::SnapInfo> = (0..n)
                .map(|_| ffi::SnapInfo {
                    id: 0,
                    size: 0,
                    name: ptr::null(),
                })
                .collect();
            // SAFETY: `buf` has room for `max` entries (plus the end marker
            // librbd writes); on -ERANGE it only updates `max`.
            let r = unsafe { ffi::rbd_snap_list(self.h, buf.as_mut_ptr(), &mut max) };
            if r == -libc::ERANGE {
                continue;
            }
            let count = usize::try_from(check(r)?).unwrap_or(0);
            let out = buf[..count]
                .iter()
                .map(|s| Snap {
                    id: s.id,
                    size: s.size,
                    // SAFETY: librbd filled `count` entries with
                    // NUL-terminated names it owns until list_end.
                    name: unsafe { CStr::from_ptr(s.name) }
                        .to_string_lossy()
                        .into_owned(),
                })
                .collect();
            // SAFETY: frees the names of the entries librbd filled.
            unsafe { ffi::rbd_snap_list_end(buf.as_mut_ptr()) };
            return Ok(out);
        }
    }

    /// Does snapshot `name` exist?
    pub fn snap_exists(&self, name: &str) -> io::Result<bool> {
        let n = cstr(name)?;
        let mut e = false;
        // SAFETY: a live image, a NUL-terminated name, a valid out-pointer.
        check(unsafe { ffi::rbd_snap_exists(self.h, n.as_ptr(), &mut e) })?;
        Ok(e)
    }

    /// Create snapshot `name` of HEAD.
    pub fn snap_create(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: a live image, a NUL-terminated name.
        check(unsafe { ffi::rbd_snap_create(self.h, n.as_ptr()) }).map(drop)
    }

    /// Protect snapshot `name`.
    pub fn snap_protect(&self, name: &str) -> io::Result<()> {
        let n = cstr(name)?;
        // SAFETY: a live image, a NUL-terminated name.
        check(unsafe { ffi::rbd_snap_protect(self.h, n.as_ptr()) }).map(drop)
    }

    /// Is snapshot `name` protected?
    pub fn snap_is_protected(&self, name: &str) -> io::Result<bool> {
        let n = cstr(name)?;
        let mut p: c_int = 0;
        // SAFETY: a live image, a NUL-terminated name, a valid out-pointer.
        check(unsafe { ffi::rbd_snap_is_protected(self.h, n.as_ptr(), &mut p) })?;
        Ok(p != 0)
    }

    /// Switch the handle to snapshot `name` (`None`: HEAD).
    pub fn snap_set(&self, name: Option<&str>) -> io::Result<()> {
        let n = name.map(cstr).transpose()?;
        let p = n.as_ref().map_or(ptr::null(), |n| n.as_ptr());
        // SAFETY: a live image; NULL selects HEAD.
        check(unsafe { ffi::rbd_snap_set(self.h, p) }).map(drop)
    }

    /// All image-meta pairs in key order.
    pub fn metadata(&self) -> io::Result<Vec<(String, String)>> {
        let mut out: Vec<(String, String)> = Vec::new();
        let (mut kcap, mut vcap) = (4096usize, 4096usize);
        loop {
            let start = cstr(out.last().map_or("", |(k, _)| k.as_str()))?;
            let (mut kb, mut vb) = (vec![0u8; kcap], vec![0u8; vcap]);
            let (mut kl, mut vl) = (kcap, vcap);
            // SAFETY: buffers of `kl`/`vl` bytes; librbd writes at most that
            // much and reports the lengths it needs on -ERANGE.
            let r = unsafe {
                ffi::rbd_metadata_list(
                    self.h,
                    start.as_ptr(),
                    64,
                    kb.as_mut_ptr().cast(),
                    &mut kl,
                    vb.as_mut_ptr().cast(),
                    &mut vl,
                )
            };
            if r == -libc::ERANGE {
                (kcap, vcap) = (kl.max(kcap * 2), vl.max(vcap * 2));
                continue;
            }
            check(r)?;
            let split = |b: &[u8]| -> Vec<String> {
                b.split(|&c| c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            let keys = split(&kb[..kl.min(kcap)]);
            let vals: Vec<&[u8]> = vb[..vl.min(vcap)].split(|&c| c == 0).collect();
            let n = keys.len();
            for (k, v) in keys.into_iter().zip(vals) {
                out.push((k, String::from_utf8_lossy(v).into_owned()));
            }
            if n < 64 {
                return Ok(out);
            }
        }
    }

    /// Set image-meta `key` to `value`.
    pub fn metadata_set(&self, key: &str, value: &str) -> io::Result<()> {
        let (k, v) = (cstr(key)?, cstr(value)?);
        // SAFETY: a live image, NUL-terminated strings.
        check(unsafe { ffi::rbd_metadata_set(self.h, k.as_ptr(), v.as_ptr()) }).map(drop)
    }

    /// Make everything written durable.
    pub fn flush(&self) -> io::Result<()> {
        // SAFETY: a live image.
        check(unsafe { ffi::rbd_flush(self.h) }).map(drop)
    }

    /// `rbd_diff_iterate2` over `[0, len)` from snapshot `from` (`None`:
    /// from the beginning, with the parent's data): `f` gets each extent in
    /// order. An error from `f` stops the walk and is returned.
    pub fn diff_iterate(
        &self,
        from: Option<&str>,
        len: u64,
        whole_object: bool,
        f: &mut (dyn FnMut(Extent) -> io::Result<()> + Send),
    ) -> io::Result<()> {
        struct Ctx<'a> {
            f: &'a mut (dyn FnMut(Extent) -> io::Result<()> + Send),
            err: Option<io::Error>,
            panic: Option<Box<dyn std::any::Any + Send>>,
        }
        unsafe extern "C" fn cb(off: u64, len: usize, exists: c_int, arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the `Ctx` below, alive for the whole call;
            // librbd makes the calls one at a time.
            let ctx = unsafe { &mut *arg.cast::<Ctx<'_>>() };
            let e = Extent {
                offset: off,
                len: len as u64,
                exists: exists != 0,
            };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ctx.f)(e))) {
                Ok(Ok(())) => 0,
                Ok(Err(e)) => {
                    ctx.err = Some(e);
                    -libc::ECANCELED
                }
                Err(p) => {
                    ctx.panic = Some(p);
                    -libc::ECANCELED
                }
            }
        }
        let from = from.map(cstr).transpose()?;
        let fp = from.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        let mut ctx = Ctx {
            f,
            err: None,
            panic: None,
        };
        // SAFETY: a live image; `cb` matches the C signature and gets `ctx`
        // back, which outlives the call.
        let r = unsafe {
            ffi::rbd_diff_iterate2(
                self.h,
                fp,
                0,
                len,
                1,
                u8::from(whole_object),
                cb,
                (&raw mut ctx).cast(),
            )
        };
        if let Some(p) = ctx.panic {
            std::panic::resume_unwind(p);
        }
        if let Some(e) = ctx.err {
            return Err(e);
        }
        check(r).map(drop)
    }
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        // SAFETY: live; any Aio on it has waited for its ops (it borrows
        // the image).
        unsafe { ffi::rbd_close(self.h) };
    }
}

/// What an asynchronous operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Zero,
}

/// One operation in flight: its completions (one per piece: a long read
/// goes out as several) and the buffer librbd reads into or writes from
/// (owned here so it outlives the operation).
#[derive(Debug)]
struct Pending {
    /// Each piece's completion, where it starts in `buf` and its length.
    pieces: Vec<(ffi::CompletionT, usize, usize)>,
    buf: AlignedBuf,
    /// Bytes of `buf` read or written.
    len: usize,
    op: Op,
}

impl Pending {
    /// Wait for every piece; the buffer and librbd's result: the first
    /// error, else for a read the bytes past each piece's end are zeroed
    /// (a read past the end of the image returns fewer).
    fn wait(mut self) -> (AlignedBuf, isize) {
        let mut out: isize = 0;
        for (c, at, n) in std::mem::take(&mut self.pieces) {
            // SAFETY: `c` is a live completion of a submitted operation;
            // released once (taken out of `pieces`, so Drop skips it).
            let r = unsafe {
                ffi::rbd_aio_wait_for_complete(c);
                let r = ffi::rbd_aio_get_return_value(c);
                ffi::rbd_aio_release(c);
                r
            };
            if r < 0 {
                if out >= 0 {
                    out = r;
                }
            } else if self.op == Op::Read {
                let got = usize::try_from(r).unwrap_or(0).min(n);
                self.buf[at + got..at + n].fill(0);
            }
        }
        if out >= 0 {
            out = isize::try_from(self.len).unwrap_or(isize::MAX);
        }
        (std::mem::take(&mut self.buf), out)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        for &(c, _, _) in &self.pieces {
            // The buffer may still be in use by librbd: wait before it is
            // freed.
            // SAFETY: as in `wait`.
            unsafe {
                ffi::rbd_aio_wait_for_complete(c);
                ffi::rbd_aio_release(c);
            }
        }
    }
}

/// Reads longer than this go out as several of this length, in flight
/// together: librados receives each reply into a buffer of its own, freed
/// once librbd has copied it into the caller's, and at this size those
/// come from the heap, reused from one read to the next, rather than a
/// fresh mapping faulted in page by page (see [`bound_malloc`]).
/// bench/cluster, 2 GiB image with 256 MiB changed: export-diff 0.47 s at
/// 4 MiB pieces, 0.37-0.39 s at 256 KiB-1 MiB (rbd 0.43 s); peak RSS
/// 58-60 MiB at 256 KiB, 61-64 at 512 KiB, 62-65 at 1 MiB.
pub const READ_PIECE: usize = 256 << 10;

/// A completed operation.
#[derive(Debug)]
pub struct Done {
    /// The buffer: for a read, the bytes in `buf[..len]` (zeros past the
    /// end of the image); for a write, the data written (to reuse).
    pub buf: AlignedBuf,
    /// Bytes read or written.
    pub len: usize,
    pub op: Op,
}

/// Asynchronous I/O on one image, up to `depth` operations in flight,
/// completed in the order they were queued.
#[derive(Debug)]
pub struct Aio<'i, 'io> {
    image: &'i Image<'io>,
    q: VecDeque<Pending>,
    depth: usize,
}

impl<'i, 'io> Aio<'i, 'io> {
    /// A queue on `image` with `depth` (at least 1) operations in flight.
    pub fn new(image: &'i Image<'io>, depth: usize) -> Self {
        Aio {
            image,
            q: VecDeque::new(),
            depth: depth.max(1),
        }
    }

    /// Operations in flight.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// The queue is full: [`next`](Self::next) before queueing more.
    pub fn full(&self) -> bool {
        self.q.len() >= self.depth
    }

    /// Submit an operation on `buf[..len]` as pieces of at most `piece`
    /// bytes, `go(completion, buffer, start, length)` each.
    fn submit(
        &mut self,
        buf: AlignedBuf,
        len: usize,
        op: Op,
        piece: usize,
        mut go: impl FnMut(ffi::CompletionT, *mut u8, usize, usize) -> c_int,
    ) -> io::Result<()> {
        let mut p = Pending {
            pieces: Vec::with_capacity(len.div_ceil(piece.max(1)).max(1)),
            buf,
            len,
            op,
        };
        let base = p.buf.as_mut_ptr();
        let mut at = 0;
        loop {
            let n = (len - at).min(piece.max(1));
            let mut c = ptr::null_mut();
            // SAFETY: a valid out-pointer; no callback.
            check(unsafe { ffi::rbd_aio_create_completion(ptr::null_mut(), None, &mut c) })?;
            let r = go(c, base, at, n);
            if r < 0 {
                // Not submitted: release without waiting (dropping `p`
                // waits for the pieces that were).
                // SAFETY: created above and never submitted.
                unsafe { ffi::rbd_aio_release(c) };
                return Err(io::Error::from_raw_os_error(-r));
            }
            p.pieces.push((c, at, n));
            at += n;
            if at >= len {
                break;
            }
        }
        self.q.push_back(p);
        Ok(())
    }

    /// Queue a read of `len` bytes at `offset` into `buf[..len]` (grown
    /// if shorter; what it holds is overwritten, never zeroed first), as
    /// reads of at most [`READ_PIECE`] bytes.
    pub fn read(&mut self, offset: u64, len: usize, mut buf: AlignedBuf) -> io::Result<()> {
        if buf.len() < len {
            buf = AlignedBuf::zeroed(len);
        }
        let h = self.image.h;
        self.submit(buf, len, Op::Read, READ_PIECE, |c, b, at, n| {
            // SAFETY: the buffer has at least `len` bytes (`at + n` of
            // them) and is owned by the Pending, which waits for every
            // piece before freeing it.
            unsafe {
                ffi::rbd_aio_read2(
                    h,
                    offset + at as u64,
                    n,
                    b.add(at).cast(),
                    c,
                    ffi::FADVISE_NOCACHE,
                )
            }
        })
    }

    /// Queue a write of `data[..len]` at `offset` (`len` at most
    /// `data.len()`).
    pub fn write(&mut self, offset: u64, len: usize, data: AlignedBuf) -> io::Result<()> {
        let len = len.min(data.len());
        let h = self.image.h;
        self.submit(data, len, Op::Write, usize::MAX, |c, b, _, _| {
            // SAFETY: as in `read`; librbd only reads the buffer (without a
            // copy: the completion waits until librados releases it).
            unsafe {
                ffi::rbd_aio_write2(
                    h,
                    offset,
                    len,
                    b.cast_const().cast(),
                    c,
                    ffi::FADVISE_NOCACHE,
                )
            }
        })
    }

    /// Queue making `len` bytes at `offset` read as zeros (as rbd's
    /// import-diff: `rbd_aio_write_zeroes`).
    pub fn write_zeroes(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let n = usize::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let h = self.image.h;
        self.submit(
            AlignedBuf::default(),
            0,
            Op::Zero,
            usize::MAX,
            |c, _, _, _| {
                // SAFETY: no buffer; a live image and completion.
                unsafe { ffi::rbd_aio_write_zeroes(h, offset, n, c, 0, ffi::FADVISE_NOCACHE) }
            },
        )
    }

    /// Wait for the oldest operation (`None` when none is in flight).
    pub fn next(&mut self) -> Option<io::Result<Done>> {
        let p = self.q.pop_front()?;
        let (op, len) = (p.op, p.len);
        let (buf, r) = p.wait();
        if r < 0 {
            let code = i32::try_from(-r).unwrap_or(libc::EIO);
            return Some(Err(io::Error::from_raw_os_error(code)));
        }
        Some(Ok(Done { buf, len, op }))
    }
}
