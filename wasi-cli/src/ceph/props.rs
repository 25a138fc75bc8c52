//! What `rbd info` and `rbd image-meta` read of an image and its pool,
//! beyond what the export and import paths need.

use super::{Image, IoCtx, check, cstr, ffi};
use rbdiff::info::Parent;
use std::ffi::{CStr, c_char, c_int};
use std::io;
use std::ptr;

/// A string librbd writes into a buffer: grown while it answers -ERANGE.
fn read_string(mut f: impl FnMut(*mut c_char, usize) -> c_int) -> io::Result<String> {
    let mut cap = 64usize;
    loop {
        let mut b = vec![0u8; cap];
        let r = f(b.as_mut_ptr().cast(), cap);
        if r == -libc::ERANGE && cap < 1 << 20 {
            cap *= 4;
            continue;
        }
        check(r)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        b.truncate(end);
        return Ok(String::from_utf8_lossy(&b).into_owned());
    }
}

/// An owned copy of a C string librbd allocated (empty for NULL).
fn owned(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: librbd's NUL-terminated strings, alive until the cleanup call
    // that follows every use.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// `rbd_stat`'s layout: object size, object count, order.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: u32,
}

/// An image's mirroring: mode (0 journal, 1 snapshot), state (0
/// disabling, 1 enabled, 2 disabled), global id, primary.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    pub mode: i32,
    pub state: i32,
    pub global_id: String,
    pub primary: bool,
}

/// `secs` since the epoch in the local time zone, as `ctime(3)` sees it.
pub fn local_time(secs: i64) -> Option<rbdiff::info::Tm> {
    let t: libc::time_t = secs;
    // SAFETY: `tm` is plain old data; zeroes are a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a time and to storage for the result.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    let u = |v: c_int| u32::try_from(v).unwrap_or(0);
    Some(rbdiff::info::Tm {
        year: i64::from(tm.tm_year) + 1900,
        month: usize::try_from(tm.tm_mon).unwrap_or(0),
        mday: u(tm.tm_mday),
        hour: u(tm.tm_hour),
        min: u(tm.tm_min),
        sec: u(tm.tm_sec),
        wday: usize::try_from(tm.tm_wday).unwrap_or(0),
    })
}

impl IoCtx<'_> {
    /// The pool's id.
    pub fn pool_id(&self) -> i64 {
        // SAFETY: a live ioctx.
        unsafe { ffi::rados_ioctx_get_id(self.h) }
    }

    /// The namespace (empty for the default one).
    pub fn namespace(&self) -> io::Result<String> {
        read_string(|b, n| {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            // SAFETY: a live ioctx and a buffer of `n` bytes.
            unsafe { ffi::rados_ioctx_get_namespace(self.h, b, n) }
        })
    }

    /// The name of pool `id` of the same cluster.
    pub fn pool_name(&self, id: i64) -> io::Result<String> {
        // SAFETY: a live ioctx; the cluster handle outlives it.
        let cluster = unsafe { ffi::rados_ioctx_get_cluster(self.h) };
        // SAFETY: a live cluster handle and a buffer of `n` bytes.
        read_string(|b, n| unsafe { ffi::rados_pool_reverse_lookup(cluster, id, b, n) })
    }
}

fn u64_of(f: impl FnOnce(*mut u64) -> c_int) -> io::Result<u64> {
    let mut v = 0u64;
    check(f(&mut v))?;
    Ok(v)
}

impl Image<'_> {
    /// Size, object size, object count and order (`rbd_stat`).
    pub fn layout(&self) -> io::Result<Layout> {
        // SAFETY: ImageInfo is plain old data; zeroes are a valid value.
        let mut info: ffi::ImageInfo = unsafe { std::mem::zeroed() };
        // SAFETY: a live image and an out-pointer of the size given.
        check(unsafe { ffi::rbd_stat(self.h, &mut info, std::mem::size_of::<ffi::ImageInfo>()) })?;
        Ok(Layout {
            size: info.size,
            obj_size: info.obj_size,
            num_objs: info.num_objs,
            order: u32::try_from(info.order).unwrap_or(0),
        })
    }

    /// A format 1 image?
    pub fn old_format(&self) -> io::Result<bool> {
        let mut v = 0u8;
        // SAFETY: a live image, a valid out-pointer.
        check(unsafe { ffi::rbd_get_old_format(self.h, &mut v) })?;
        Ok(v != 0)
    }

    /// The image id.
    pub fn id(&self) -> io::Result<String> {
        // SAFETY: a live image and a buffer of `n` bytes.
        read_string(|b, n| unsafe { ffi::rbd_get_id(self.h, b, n) })
    }

    /// The prefix of the image's data objects.
    pub fn block_name_prefix(&self) -> io::Result<String> {
        // SAFETY: a live image and a buffer of `n` bytes.
        read_string(|b, n| unsafe { ffi::rbd_get_block_name_prefix(self.h, b, n) })
    }

    /// The pool the data objects live in.
    pub fn data_pool_id(&self) -> i64 {
        // SAFETY: a live image.
        unsafe { ffi::rbd_get_data_pool_id(self.h) }
    }

    /// Operation features.
    pub fn op_features(&self) -> io::Result<u64> {
        // SAFETY: a live image, a valid out-pointer.
        u64_of(|p| unsafe { ffi::rbd_get_op_features(self.h, p) })
    }

    /// Image flags (object map / fast diff invalid).
    pub fn flags(&self) -> io::Result<u64> {
        // SAFETY: a live image, a valid out-pointer.
        u64_of(|p| unsafe { ffi::rbd_get_flags(self.h, p) })
    }

    /// Bytes of the parent a clone reads through.
    pub fn overlap(&self) -> io::Result<u64> {
        // SAFETY: a live image, a valid out-pointer.
        u64_of(|p| unsafe { ffi::rbd_get_overlap(self.h, p) })
    }

    /// The snapshot limit (`u64::MAX`: none).
    pub fn snap_limit(&self) -> io::Result<u64> {
        // SAFETY: a live image, a valid out-pointer.
        u64_of(|p| unsafe { ffi::rbd_snap_get_limit(self.h, p) })
    }

    /// When snapshot `id` was taken, in seconds (0: not recorded).
    pub fn snap_timestamp(&self, id: u64) -> io::Result<i64> {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a live image, a valid out-pointer.
        check(unsafe { ffi::rbd_snap_get_timestamp(self.h, id, &mut t) })?;
        Ok(t.tv_sec)
    }

    /// Create, access and modify times in seconds (0: not recorded).
    pub fn timestamps(&self) -> io::Result<[i64; 3]> {
        let mut out = [0i64; 3];
        let getters = [
            ffi::rbd_get_create_timestamp,
            ffi::rbd_get_access_timestamp,
            ffi::rbd_get_modify_timestamp,
        ];
        for (o, g) in out.iter_mut().zip(getters) {
            let mut t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: a live image, a valid out-pointer.
            check(unsafe { g(self.h, &mut t) })?;
            *o = t.tv_sec;
        }
        Ok(out)
    }

    /// The parent of a clone (`None`: not a clone), with its overlap.
    pub fn parent(&self) -> io::Result<Option<Parent>> {
        // SAFETY: plain old data (null pointers, zeroes).
        let mut img: ffi::LinkedImageSpec = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut snap: ffi::SnapSpec = unsafe { std::mem::zeroed() };
        // SAFETY: a live image and valid out-pointers.
        let r = unsafe { ffi::rbd_get_parent(self.h, &mut img, &mut snap) };
        if r == -libc::ENOENT {
            return Ok(None);
        }
        check(r)?;
        let p = Parent {
            pool: owned(img.pool_name),
            namespace: owned(img.pool_namespace),
            image: owned(img.image_name),
            id: owned(img.image_id),
            snapshot: owned(snap.name),
            trash: img.trash,
            overlap: 0,
        };
        // SAFETY: filled by librbd above, freed once.
        unsafe {
            ffi::rbd_linked_image_spec_cleanup(&mut img);
            ffi::rbd_snap_spec_cleanup(&mut snap);
        }
        if p.image.is_empty() {
            return Ok(None);
        }
        Ok(Some(Parent {
            overlap: self.overlap()?,
            ..p
        }))
    }

    /// The image's group: (name, pool id), or `None`.
    pub fn group(&self) -> io::Result<Option<(String, i64)>> {
        let mut g = ffi::GroupInfo {
            name: ptr::null_mut(),
            pool: -1,
        };
        let size = std::mem::size_of::<ffi::GroupInfo>();
        // SAFETY: a live image and an out-pointer of the size given.
        check(unsafe { ffi::rbd_get_group(self.h, &mut g, size) })?;
        let out = (g.pool != -1).then(|| (owned(g.name), g.pool));
        // SAFETY: filled by librbd above, freed once.
        unsafe { ffi::rbd_group_info_cleanup(&mut g, size) };
        Ok(out)
    }

    /// The image's mirroring state and mode.
    pub fn mirror(&self) -> io::Result<Mirror> {
        let mut m = ffi::MirrorImageInfo {
            global_id: ptr::null_mut(),
            state: 2,
            primary: false,
        };
        let size = std::mem::size_of::<ffi::MirrorImageInfo>();
        // SAFETY: a live image and an out-pointer of the size given.
        check(unsafe { ffi::rbd_mirror_image_get_info(self.h, &mut m, size) })?;
        let mut out = Mirror {
            mode: 0,
            state: m.state,
            global_id: owned(m.global_id),
            primary: m.primary,
        };
        // SAFETY: filled by librbd above, freed once.
        unsafe { ffi::rbd_mirror_image_get_info_cleanup(&mut m) };
        if out.state != 2 {
            let mut mode: c_int = 0;
            // SAFETY: a live image, a valid out-pointer.
            check(unsafe { ffi::rbd_mirror_image_get_mode(self.h, &mut mode) })?;
            out.mode = mode;
        }
        Ok(out)
    }

    /// The value of image-meta `key` (`ENOENT` when absent).
    pub fn metadata_get(&self, key: &str) -> io::Result<String> {
        let k = cstr(key)?;
        let mut cap = 4096usize;
        loop {
            let mut b = vec![0u8; cap];
            let mut len = cap;
            // SAFETY: a live image, a NUL-terminated key, a buffer of `len`
            // bytes; librbd reports the length it needs on -ERANGE.
            let r = unsafe {
                ffi::rbd_metadata_get(self.h, k.as_ptr(), b.as_mut_ptr().cast(), &mut len)
            };
            if r == -libc::ERANGE && len > cap {
                cap = len;
                continue;
            }
            check(r)?;
            b.truncate(len.min(cap));
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            b.truncate(end);
            return Ok(String::from_utf8_lossy(&b).into_owned());
        }
    }

    /// Remove image-meta `key` (`ENOENT` when absent).
    pub fn metadata_remove(&self, key: &str) -> io::Result<()> {
        let k = cstr(key)?;
        // SAFETY: a live image, a NUL-terminated key.
        check(unsafe { ffi::rbd_metadata_remove(self.h, k.as_ptr()) }).map(drop)
    }
}
