//! `info` of a cluster image (or snapshot): what librbd reports, printed
//! as `rbd info` prints it ([`rbdiff::info`]).

use super::{connect, fail, ioctx, open};
use crate::ceph::{Image, IoCtx, local_time};
use crate::cluster::Spec;
use rbdiff::info::{ImageInfo, Mirroring};
use std::io::{self, Write};

/// The pool name rbd shows for a pool id of this cluster.
fn pool_name(io: &IoCtx<'_>, id: i64, what: &str) -> String {
    io.pool_name(id)
        .unwrap_or_else(|_| format!("<missing {what} pool {id}>"))
}

fn when(secs: i64) -> Option<String> {
    (secs != 0).then(|| local_time(secs).map(|t| t.ctime()))?
}

/// `pool/[namespace/]group` of an image in a group.
fn group(io: &IoCtx<'_>, img: &Image<'_>) -> io::Result<Option<String>> {
    let Some((name, pool)) = img.group()? else {
        return Ok(None);
    };
    let ns = io.namespace()?;
    let ns = if ns.is_empty() { ns } else { format!("{ns}/") };
    Ok(Some(format!("{}/{ns}{name}", pool_name(io, pool, "group"))))
}

/// Everything `rbd info` reads, in its order.
fn gather(
    io: &IoCtx<'_>,
    img: &Image<'_>,
    name: &str,
    snap: Option<&str>,
) -> io::Result<ImageInfo> {
    let l = img.layout()?;
    let old_format = img.old_format()?;
    let st = img.stat()?;
    let data_pool = (!old_format && img.data_pool_id() != io.pool_id())
        .then(|| pool_name(io, img.data_pool_id(), "data"));
    let protected = snap.map(|s| img.snap_is_protected(s)).transpose()?;
    let limit = img.snap_limit()?;
    let [create, access, modify] = img.timestamps()?;
    let mirroring = if old_format {
        None
    } else {
        let m = img.mirror()?;
        let mode = if m.mode == 1 { "snapshot" } else { "journal" };
        let state = ["disabling", "enabled", "disabled"];
        Some(Mirroring {
            mode: mode.into(),
            state: usize::try_from(m.state)
                .ok()
                .and_then(|i| state.get(i))
                .unwrap_or(&"unknown")
                .to_string(),
            global_id: m.global_id,
            primary: m.primary,
        })
    };
    Ok(ImageInfo {
        name: name.to_string(),
        id: if old_format { None } else { Some(img.id()?) },
        size: l.size,
        objects: l.num_objs,
        order: l.order,
        object_size: l.obj_size,
        snapshot_count: img.snaps()?.len() as u64,
        data_pool,
        block_name_prefix: img.block_name_prefix()?,
        old_format,
        features: st.features,
        op_features: if old_format { 0 } else { img.op_features()? },
        flags: img.flags()?,
        group: group(io, img)?,
        create_timestamp: when(create),
        access_timestamp: when(access),
        modify_timestamp: when(modify),
        protected,
        snapshot_limit: (limit < u64::MAX).then_some(limit),
        parent: img.parent()?,
        stripe_unit: st.stripe_unit,
        stripe_count: st.stripe_count,
        mirroring,
    })
}

/// Print `rbd info` of `spec` (its `@snap` if any) in `format` (`plain` or
/// `json`).
pub fn run(spec: &Spec, format: &str, pretty: bool) -> anyhow::Result<()> {
    let rados = connect(spec)?;
    let io = ioctx(&rados, spec)?;
    let img = open(&io, spec, spec.snap.as_deref(), true)?;
    let info =
        gather(&io, &img, &spec.image, spec.snap.as_deref()).map_err(|e| fail("rbd: info", &e))?;
    let text = if format == "json" {
        info.json(pretty)
    } else {
        info.plain()
    };
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}
