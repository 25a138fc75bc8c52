//! `image-meta list|get|set|remove` of a cluster image: librbd's
//! metadata calls, with rbd's output, messages and exit codes (the same as
//! the store's, [`crate::cmd::image_meta`]).

use super::{connect, errno, ioctx, open};
use crate::cluster::Spec;
use crate::cmd::image_meta::failed;
use crate::errors::{ENOENT, errstr};
use rbdiff::image_meta::render_list as render;
use std::io::Write;

/// What to do.
pub enum Op {
    List { format: String, pretty: bool },
    Get(String),
    Set(String, String),
    Remove(String),
}

pub fn run(spec: &Spec, op: Op) -> anyhow::Result<()> {
    let rados = connect(spec)?;
    let io = ioctx(&rados, spec)?;
    let read_only = matches!(op, Op::List { .. } | Op::Get(_));
    let img = open(&io, spec, None, read_only)?;
    let text = match op {
        Op::List { format, pretty } => {
            let pairs = img.metadata().map_err(|e| {
                let c = errno(&e);
                let first = format!("failed to list metadata of image : {}", errstr(c));
                failed(c, first, "listing")
            })?;
            render(&pairs, &format, pretty)
        }
        Op::Get(k) => {
            let v = img.metadata_get(&k).map_err(|e| {
                let c = errno(&e);
                let first = format!("failed to get metadata {k} of image : {}", errstr(c));
                failed(c, first, "getting")
            })?;
            format!("{v}\n")
        }
        Op::Set(k, v) => {
            img.metadata_set(&k, &v).map_err(|e| {
                let c = errno(&e);
                let first = format!("failed to set metadata {k} of image : {}", errstr(c));
                let f = failed(c, first, "setting");
                match rbdiff::image_meta::check(&k, &v) {
                    Err(why) => f.with_detail(format!("rbdiff: validation for {k} failed: {why}")),
                    Ok(()) => f,
                }
            })?;
            String::new()
        }
        Op::Remove(k) => {
            img.metadata_remove(&k).map_err(|e| {
                let c = errno(&e);
                let first = if c == ENOENT {
                    format!("rbd: no existing metadata key {k} of image : {}", errstr(c))
                } else {
                    format!("failed to remove metadata {k} of image : {}", errstr(c))
                };
                failed(c, first, "removing")
            })?;
            String::new()
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
