//! The few librados / librbd C functions rbdiff calls (declared by hand from
//! `/usr/include/rados/librados.h` and `/usr/include/rbd/librbd.h`, Ceph
//! 16.2). Only [`super`] uses them, behind safe types.

use std::ffi::{c_char, c_int, c_void};

pub type RadosT = *mut c_void;
pub type IoctxT = *mut c_void;
pub type ImageT = *mut c_void;
pub type CompletionT = *mut c_void;
pub type OptionsT = *mut c_void;
pub type DiffCb = unsafe extern "C" fn(u64, usize, c_int, *mut c_void) -> c_int;

/// `rbd_image_info_t`.
#[repr(C)]
pub struct ImageInfo {
    pub size: u64,
    pub obj_size: u64,
    pub num_objs: u64,
    pub order: c_int,
    pub block_name_prefix: [c_char; 24],
    pub parent_pool: i64,
    pub parent_name: [c_char; 96],
}

/// `rbd_snap_info_t`.
#[repr(C)]
pub struct SnapInfo {
    pub id: u64,
    pub size: u64,
    pub name: *const c_char,
}

pub const RBD_IMAGE_OPTION_FORMAT: c_int = 0;
pub const RBD_IMAGE_OPTION_FEATURES: c_int = 1;
pub const RBD_IMAGE_OPTION_ORDER: c_int = 2;
pub const RBD_IMAGE_OPTION_STRIPE_UNIT: c_int = 3;
pub const RBD_IMAGE_OPTION_STRIPE_COUNT: c_int = 4;
/// `LIBRADOS_OP_FLAG_FADVISE_NOCACHE`, as rbd's export/import use.
pub const FADVISE_NOCACHE: c_int = 0x40;

#[link(name = "rados")]
unsafe extern "C" {
    pub fn rados_create2(
        cluster: *mut RadosT,
        clustername: *const c_char,
        name: *const c_char,
        flags: u64,
    ) -> c_int;
    pub fn rados_conf_read_file(cluster: RadosT, path: *const c_char) -> c_int;
    pub fn rados_conf_parse_env(cluster: RadosT, var: *const c_char) -> c_int;
    pub fn rados_conf_set(cluster: RadosT, option: *const c_char, value: *const c_char) -> c_int;
    pub fn rados_connect(cluster: RadosT) -> c_int;
    pub fn rados_shutdown(cluster: RadosT);
    pub fn rados_ioctx_create(cluster: RadosT, pool: *const c_char, io: *mut IoctxT) -> c_int;
    pub fn rados_ioctx_destroy(io: IoctxT);
    pub fn rados_ioctx_set_namespace(io: IoctxT, nspace: *const c_char);
}

#[link(name = "rbd")]
unsafe extern "C" {
    pub fn rbd_image_options_create(opts: *mut OptionsT);
    pub fn rbd_image_options_destroy(opts: OptionsT);
    pub fn rbd_image_options_set_uint64(opts: OptionsT, optname: c_int, v: u64) -> c_int;
    pub fn rbd_remove(io: IoctxT, name: *const c_char) -> c_int;
    pub fn rbd_namespace_exists(io: IoctxT, name: *const c_char, exists: *mut bool) -> c_int;
    pub fn rbd_create4(io: IoctxT, name: *const c_char, size: u64, opts: OptionsT) -> c_int;
    pub fn rbd_open(
        io: IoctxT,
        name: *const c_char,
        image: *mut ImageT,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_open_read_only(
        io: IoctxT,
        name: *const c_char,
        image: *mut ImageT,
        snap: *const c_char,
    ) -> c_int;
    pub fn rbd_close(image: ImageT) -> c_int;
    pub fn rbd_stat(image: ImageT, info: *mut ImageInfo, infosize: usize) -> c_int;
    pub fn rbd_get_size(image: ImageT, size: *mut u64) -> c_int;
    pub fn rbd_get_features(image: ImageT, features: *mut u64) -> c_int;
    pub fn rbd_get_stripe_unit(image: ImageT, v: *mut u64) -> c_int;
    pub fn rbd_get_stripe_count(image: ImageT, v: *mut u64) -> c_int;
    pub fn rbd_resize(image: ImageT, size: u64) -> c_int;
    pub fn rbd_snap_list(image: ImageT, snaps: *mut SnapInfo, max: *mut c_int) -> c_int;
    pub fn rbd_snap_list_end(snaps: *mut SnapInfo);
    pub fn rbd_snap_exists(image: ImageT, name: *const c_char, exists: *mut bool) -> c_int;
    pub fn rbd_snap_create(image: ImageT, name: *const c_char) -> c_int;
    pub fn rbd_snap_protect(image: ImageT, name: *const c_char) -> c_int;
    pub fn rbd_snap_is_protected(image: ImageT, name: *const c_char, p: *mut c_int) -> c_int;
    pub fn rbd_snap_set(image: ImageT, name: *const c_char) -> c_int;
    pub fn rbd_metadata_list(
        image: ImageT,
        start: *const c_char,
        max: u64,
        keys: *mut c_char,
        key_len: *mut usize,
        values: *mut c_char,
        vals_len: *mut usize,
    ) -> c_int;
    pub fn rbd_metadata_set(image: ImageT, key: *const c_char, value: *const c_char) -> c_int;
    pub fn rbd_diff_iterate2(
        image: ImageT,
        fromsnapname: *const c_char,
        ofs: u64,
        len: u64,
        include_parent: u8,
        whole_object: u8,
        cb: DiffCb,
        arg: *mut c_void,
    ) -> c_int;
    pub fn rbd_flush(image: ImageT) -> c_int;
    pub fn rbd_aio_create_completion(
        arg: *mut c_void,
        cb: Option<unsafe extern "C" fn(CompletionT, *mut c_void)>,
        c: *mut CompletionT,
    ) -> c_int;
    pub fn rbd_aio_wait_for_complete(c: CompletionT) -> c_int;
    pub fn rbd_aio_get_return_value(c: CompletionT) -> isize;
    pub fn rbd_aio_release(c: CompletionT);
    pub fn rbd_aio_read2(
        image: ImageT,
        off: u64,
        len: usize,
        buf: *mut c_char,
        c: CompletionT,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_write2(
        image: ImageT,
        off: u64,
        len: usize,
        buf: *const c_char,
        c: CompletionT,
        op_flags: c_int,
    ) -> c_int;
    pub fn rbd_aio_write_zeroes(
        image: ImageT,
        off: u64,
        len: usize,
        c: CompletionT,
        zero_flags: c_int,
        op_flags: c_int,
    ) -> c_int;
}

/// `rbd_linked_image_spec_t`.
#[repr(C)]
pub struct LinkedImageSpec {
    pub pool_id: i64,
    pub pool_name: *mut c_char,
    pub pool_namespace: *mut c_char,
    pub image_id: *mut c_char,
    pub image_name: *mut c_char,
    pub trash: bool,
}

/// `rbd_snap_spec_t`.
#[repr(C)]
pub struct SnapSpec {
    pub id: u64,
    pub namespace_type: c_int,
    pub name: *mut c_char,
}

/// `rbd_group_info_t`.
#[repr(C)]
pub struct GroupInfo {
    pub name: *mut c_char,
    pub pool: i64,
}

/// `rbd_mirror_image_info_t`.
#[repr(C)]
pub struct MirrorImageInfo {
    pub global_id: *mut c_char,
    pub state: c_int,
    pub primary: bool,
}

// What `rbd info` and `rbd image-meta` read (see `super::props`).
#[link(name = "rados")]
unsafe extern "C" {
    pub fn rados_ioctx_get_id(io: IoctxT) -> i64;
    pub fn rados_ioctx_get_cluster(io: IoctxT) -> RadosT;
    pub fn rados_ioctx_get_namespace(io: IoctxT, buf: *mut c_char, maxlen: u32) -> c_int;
    pub fn rados_pool_reverse_lookup(
        cluster: RadosT,
        id: i64,
        buf: *mut c_char,
        maxlen: usize,
    ) -> c_int;
}

#[link(name = "rbd")]
unsafe extern "C" {
    pub fn rbd_get_old_format(image: ImageT, old: *mut u8) -> c_int;
    pub fn rbd_get_id(image: ImageT, id: *mut c_char, len: usize) -> c_int;
    pub fn rbd_get_block_name_prefix(image: ImageT, prefix: *mut c_char, len: usize) -> c_int;
    pub fn rbd_get_data_pool_id(image: ImageT) -> i64;
    pub fn rbd_get_op_features(image: ImageT, v: *mut u64) -> c_int;
    pub fn rbd_get_flags(image: ImageT, v: *mut u64) -> c_int;
    pub fn rbd_get_overlap(image: ImageT, v: *mut u64) -> c_int;
    pub fn rbd_snap_get_limit(image: ImageT, v: *mut u64) -> c_int;
    pub fn rbd_snap_get_timestamp(image: ImageT, snap_id: u64, t: *mut libc::timespec) -> c_int;
    pub fn rbd_get_create_timestamp(image: ImageT, t: *mut libc::timespec) -> c_int;
    pub fn rbd_get_access_timestamp(image: ImageT, t: *mut libc::timespec) -> c_int;
    pub fn rbd_get_modify_timestamp(image: ImageT, t: *mut libc::timespec) -> c_int;
    pub fn rbd_get_parent(
        image: ImageT,
        parent: *mut LinkedImageSpec,
        snap: *mut SnapSpec,
    ) -> c_int;
    pub fn rbd_linked_image_spec_cleanup(spec: *mut LinkedImageSpec);
    pub fn rbd_snap_spec_cleanup(spec: *mut SnapSpec);
    pub fn rbd_get_group(image: ImageT, info: *mut GroupInfo, size: usize) -> c_int;
    pub fn rbd_group_info_cleanup(info: *mut GroupInfo, size: usize) -> c_int;
    pub fn rbd_mirror_image_get_info(
        image: ImageT,
        info: *mut MirrorImageInfo,
        size: usize,
    ) -> c_int;
    pub fn rbd_mirror_image_get_info_cleanup(info: *mut MirrorImageInfo);
    pub fn rbd_mirror_image_get_mode(image: ImageT, mode: *mut c_int) -> c_int;
    pub fn rbd_metadata_get(
        image: ImageT,
        key: *const c_char,
        value: *mut c_char,
        len: *mut usize,
    ) -> c_int;
    pub fn rbd_metadata_remove(image: ImageT, key: *const c_char) -> c_int;
}
