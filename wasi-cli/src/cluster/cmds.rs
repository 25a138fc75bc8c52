//! The commands on cluster images (feature `librbd`): connecting as rbd
//! does, rbd's messages and exit codes, and the cluster side of the
//! crate's engines.

use super::{Spec, flags};
use crate::ceph::{Aio, AlignedBuf, ConnectOpts, Extent, Image, IoCtx, Rados};
use crate::errors::{EINVAL, ENOENT, Fail, errstr, io_errno};
use std::io;

/// The errno of a librbd error (raw on Linux, else by kind).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or_else(|| io_errno(e))
}

/// `<what>: (<errno>) <strerror>`.
pub fn fail(what: &str, e: &io::Error) -> Fail {
    let code = errno(e);
    Fail::new(code, format!("{what}: {}", errstr(code)))
}

/// Connect to the cluster of `spec` (its `conf=`/`id=`, else the global
/// flags, else `CEPH_ARGS`, else Ceph's defaults), waiting at most
/// `--cluster-timeout`.
pub fn connect(spec: &Spec) -> Result<Rados, Fail> {
    let f = flags();
    let env = super::EarlyArgs::from_env();
    let opts = ConnectOpts {
        cluster: f.cluster.clone().or(env.cluster),
        id: spec.id.clone().or(f.id.clone()).or(env.id),
        conf: spec.conf.clone().or(f.conf.clone()).or(env.conf),
        keyring: f.keyring.clone(),
        timeout: f.cluster_timeout,
        osd_timeout: f.osd_timeout,
    };
    Rados::connect(&opts).map_err(|e| {
        let code = errno(&e);
        let mut fl = Fail::new(code, "rbd: couldn't connect to the cluster!");
        if code == 110 {
            fl = fl.then(format!(
                "rbdiff: no monitor answered within {} s (--cluster-timeout; configuration: {})",
                f.cluster_timeout,
                opts.conf
                    .as_deref()
                    .or(std::env::var("CEPH_CONF").ok().as_deref())
                    .unwrap_or("Ceph's default search path")
            ));
        } else {
            fl = fl.then(format!(
                "rbdiff: {} (as client.{}; keyring: {})",
                errstr(code),
                opts.id.as_deref().unwrap_or("admin"),
                opts.keyring
                    .as_deref()
                    .unwrap_or("the configuration's, or Ceph's default search path")
            ));
        }
        fl
    })
}

/// The pool (and namespace) of `spec`, with rbd's messages when missing.
pub fn ioctx<'r>(r: &'r Rados, spec: &Spec) -> Result<IoCtx<'r>, Fail> {
    let io = r
        .ioctx(&spec.pool, spec.namespace.as_deref())
        .map_err(|e| fail(&format!("rbd: error opening pool '{}'", spec.pool), &e))?;
    if let Some(ns) = &spec.namespace {
        let exists = io
            .namespace_exists(ns)
            .map_err(|e| fail("rbd: error asserting namespace", &e))?;
        if !exists {
            return Err(Fail::new(
                ENOENT,
                format!("rbd: namespace '{ns}' does not exist."),
            ));
        }
    }
    Ok(io)
}

/// Open `spec`'s image, at `snap` (read-only) if given, with rbd's
/// messages: a missing image, then a missing snapshot.
pub fn open<'io>(
    io: &'io IoCtx<'_>,
    spec: &Spec,
    snap: Option<&str>,
    read_only: bool,
) -> Result<Image<'io>, Fail> {
    let img = io
        .open(&spec.image, None, read_only || snap.is_some())
        .map_err(|e| fail(&format!("rbd: error opening image {}", spec.image), &e))?;
    if snap.is_some() {
        img.snap_set(snap)
            .map_err(|e| fail("error setting snapshot context", &e))?;
    }
    Ok(img)
}

/// The snapshot a command reads: the spec's `@snap` or `--snap`, not both.
pub fn snap_of<'a>(spec: &'a Spec, flag: Option<&'a str>) -> Result<Option<&'a str>, Fail> {
    match (spec.snap.as_deref(), flag) {
        (Some(_), Some(_)) => Err(Fail::new(EINVAL, "rbd: snapshot given twice")),
        (a, b) => Ok(a.or(b)),
    }
}

/// Pipelined reads of the extents a diff-iterate thread sends, in order,
/// with up to the queue depth in flight and their buffers within
/// [`pool::BUDGET`] ([`pool::SEALED_BUDGET`] with the base's): the crate's
/// [`ExtentSource`](rbdiff::export::ExtentSource).
pub struct Extents<'a, 'io> {
    rx: std::sync::mpsc::Receiver<Extent>,
    to: Aio<'a, 'io>,
    base: Option<Aio<'a, 'io>>,
    queue: std::collections::VecDeque<Extent>,
    /// An extent received but not read yet (no room in the budget).
    next: Option<Extent>,
    depth: usize,
    done: bool,
    pool: pool::Pool,
    /// The buffers of the extent handed out last (new image, base).
    cur: AlignedBuf,
    cur_base: AlignedBuf,
}

impl<'a, 'io> Extents<'a, 'io> {
    /// Reads of `to` (and of `base`, for pre-image hashes) for the extents
    /// coming from `rx`.
    pub fn new(
        rx: std::sync::mpsc::Receiver<Extent>,
        to: &'a Image<'io>,
        base: Option<&'a Image<'io>>,
    ) -> Self {
        let depth = flags().rbd_concurrent_management_ops.max(1);
        Extents {
            rx,
            to: Aio::new(to, depth),
            base: base.map(|b| Aio::new(b, depth)),
            queue: std::collections::VecDeque::new(),
            next: None,
            depth,
            done: false,
            pool: pool::Pool::new(match base {
                Some(_) => pool::SEALED_BUDGET,
                None => pool::BUDGET,
            }),
            cur: AlignedBuf::default(),
            cur_base: AlignedBuf::default(),
        }
    }

    /// Queue reads while the depth and the budget allow.
    fn fill(&mut self) -> io::Result<()> {
        while !self.done && self.queue.len() < self.depth {
            let e = match self.next.take() {
                Some(e) => e,
                None => match self.rx.recv() {
                    Ok(e) => e,
                    Err(_) => {
                        self.done = true;
                        break;
                    }
                },
            };
            let reads = u64::from(e.exists) + u64::from(self.base.is_some());
            if !self.pool.room(e.len.saturating_mul(reads)) {
                self.next = Some(e);
                break;
            }
            let len = usize::try_from(e.len).map_err(|_| io::Error::from_raw_os_error(EINVAL))?;
            if e.exists {
                let b = self.pool.take(len);
                self.to.read(e.offset, len, b)?;
            }
            if let Some(a) = self.base.as_mut() {
                let b = self.pool.take(len);
                a.read(e.offset, len, b)?;
            }
            self.queue.push_back(e);
        }
        Ok(())
    }
}

fn done_buf(a: &mut Aio<'_, '_>) -> io::Result<AlignedBuf> {
    match a.next() {
        Some(r) => r.map(|d| d.buf),
        None => Err(io::Error::other("no read in flight")),
    }
}

impl rbdiff::export::ExtentSource for Extents<'_, '_> {
    type Error = io::Error;
    fn next_extent(&mut self) -> io::Result<Option<rbdiff::export::ReadExtent<'_>>> {
        // The previous extent's buffers are done with.
        let (cur, cur_base) = (
            std::mem::take(&mut self.cur),
            std::mem::take(&mut self.cur_base),
        );
        self.pool.give(cur);
        self.pool.give(cur_base);
        self.fill()?;
        let Some(e) = self.queue.pop_front() else {
            return Ok(None);
        };
        let n = usize::try_from(e.len).map_err(|_| io::Error::from_raw_os_error(EINVAL))?;
        if e.exists {
            self.cur = done_buf(&mut self.to)?;
        }
        if let Some(a) = self.base.as_mut() {
            self.cur_base = done_buf(a)?;
        }
        Ok(Some(rbdiff::export::ReadExtent {
            offset: e.offset,
            len: e.len,
            data: e.exists.then(|| &self.cur[..n]),
            base: self.base.is_some().then(|| &self.cur_base[..n]),
        }))
    }
}

/// Run `f` over the extents of `img` from `from` (rbd's `diff_iterate2`
/// with the parent included), listed on a second thread while `f` reads
/// and writes them; the first error of either side.
pub fn with_extents<'a, 'io, T>(
    img: &'a Image<'io>,
    from: Option<&str>,
    size: u64,
    whole_object: bool,
    f: impl FnOnce(std::sync::mpsc::Receiver<Extent>) -> T,
) -> (T, io::Result<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Extent>(4096);
    std::thread::scope(|s| {
        let lister = s.spawn(move || {
            img.diff_iterate(from, size, whole_object, &mut |e| {
                tx.send(e).map_err(|_| io::Error::from_raw_os_error(125))
            })
        });
        let out = f(rx);
        let listed = lister
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (out, listed)
    })
}

pub mod dev;
pub mod export;
pub mod export_diff;
pub mod image_meta;
pub mod import;
pub mod import_diff;
pub mod info;
pub mod pool;
