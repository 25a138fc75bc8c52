//! `snap create|ls|rm|protect|unprotect|rollback`.

use crate::errors::{EINVAL, Fail};
use crate::store::{Spec, Store};
use clap::Subcommand;

const EXAMPLES: &str = "\
Examples:
  rbdiff snap create vm1@mon
  rbdiff snap ls vm1
  rbdiff snap protect vm1@mon
  rbdiff snap rollback vm1@mon
  rbdiff snap unprotect vm1@mon && rbdiff snap rm vm1@mon";

/// Snapshot management.
#[derive(Subcommand, Debug)]
#[command(after_help = EXAMPLES)]
pub enum SnapCmd {
    /// Create a snapshot of HEAD (a sparse copy, or a reflink where available).
    #[command(alias = "add", after_help = "Example:\n  rbdiff snap create vm1@mon")]
    Create {
        spec: String,
        #[command(flatten)]
        progress: crate::progress::ProgressFlags,
    },
    /// List snapshots in creation order.
    #[command(
        alias = "list",
        after_help = "Example:\n  rbdiff snap ls --format json vm1"
    )]
    Ls {
        image: String,
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        format: String,
    },
    /// Remove a snapshot (not while protected).
    #[command(alias = "remove", after_help = "Example:\n  rbdiff snap rm vm1@mon")]
    Rm {
        spec: String,
        #[command(flatten)]
        progress: crate::progress::ProgressFlags,
    },
    /// Protect a snapshot from removal.
    #[command(after_help = "Example:\n  rbdiff snap protect vm1@mon")]
    Protect {
        spec: String,
        #[command(flatten)]
        progress: crate::progress::ProgressFlags,
    },
    /// Remove a snapshot's protection.
    #[command(after_help = "Example:\n  rbdiff snap unprotect vm1@mon")]
    Unprotect {
        spec: String,
        #[command(flatten)]
        progress: crate::progress::ProgressFlags,
    },
    /// Make HEAD equal to a snapshot.
    #[command(
        alias = "revert",
        after_help = "Example:\n  rbdiff snap rollback vm1@mon"
    )]
    Rollback {
        spec: String,
        #[command(flatten)]
        progress: crate::progress::ProgressFlags,
    },
}

fn snap_spec(s: &str) -> Result<(Spec, String), Fail> {
    let spec = Spec::parse(s)?;
    match spec.snap.clone() {
        Some(n) => Ok((spec.head(), n)),
        None => Err(Fail::new(EINVAL, "rbd: snapshot name was not specified")),
    }
}

/// One listed snapshot: id, name, size, protected.
pub type SnapRow = (u64, String, u64, bool);

/// `snap ls` output: JSON, or a table (nothing when there are none).
pub fn print_ls(snaps: &[SnapRow], format: &str) -> anyhow::Result<()> {
    if format == "json" {
        let v: Vec<_> = snaps
            .iter()
            .map(|(id, name, size, p)| serde_json::json!({"id": id, "name": name, "size": size, "protected": p.to_string()}))
            .collect();
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    if snaps.is_empty() {
        return Ok(());
    }
    let rows: Vec<[String; 4]> = snaps
        .iter()
        .map(|(id, name, size, p)| {
            let p = if *p { "yes" } else { "" };
            [id.to_string(), name.clone(), size.to_string(), p.into()]
        })
        .collect();
    let head = ["SNAPID", "NAME", "SIZE", "PROTECTED"];
    let mut w = [0usize; 4];
    for (i, h) in head.iter().enumerate() {
        w[i] = rows
            .iter()
            .map(|r| r[i].len())
            .max()
            .unwrap_or(0)
            .max(h.len());
    }
    let line = |cells: [&str; 4]| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        s.join("  ").trim_end().to_string()
    };
    println!("{}", line(head));
    for r in &rows {
        println!("{}", line([&r[0], &r[1], &r[2], &r[3]]));
    }
    Ok(())
}

pub fn run(store: &Store, c: SnapCmd) -> anyhow::Result<()> {
    if let SnapCmd::Create { spec: image, .. } | SnapCmd::Ls { image, .. } = &c
        && let Some(spec) = crate::cluster::parse(image)?
    {
        let ls = match &c {
            SnapCmd::Ls { format, .. } => Some(format.as_str()),
            _ => None,
        };
        return cluster(&spec, ls);
    }
    match c {
        SnapCmd::Create { spec, .. } => {
            let (spec, name) = snap_spec(&spec)?;
            store.open_rw(&spec)?.snap_create(name.as_bytes(), false)?;
        }
        SnapCmd::Ls { image, format } => {
            let spec = Spec::parse(&image)?;
            let img = store.open(&spec.head())?;
            let rows: Vec<SnapRow> = img
                .meta
                .snapshots
                .iter()
                .map(|s| (s.id, s.display_name(), s.size, s.protected))
                .collect();
            print_ls(&rows, &format)?;
        }
        SnapCmd::Rm { spec, .. } => {
            let (spec, name) = snap_spec(&spec)?;
            store.open_rw(&spec)?.snap_remove(&name)?;
        }
        SnapCmd::Protect { spec, .. } => {
            let (spec, name) = snap_spec(&spec)?;
            store.open_rw(&spec)?.snap_set_protected(&name, true)?;
        }
        SnapCmd::Unprotect { spec, .. } => {
            let (spec, name) = snap_spec(&spec)?;
            store.open_rw(&spec)?.snap_set_protected(&name, false)?;
        }
        SnapCmd::Rollback { spec, .. } => {
            let (spec, name) = snap_spec(&spec)?;
            store.open_rw(&spec)?.snap_rollback(&name)?;
        }
    }
    Ok(())
}

/// `snap ls` (`ls`: its format) or else `snap create` of a cluster image.
#[cfg(feature = "librbd")]
fn cluster(spec: &crate::cluster::Spec, ls_format: Option<&str>) -> anyhow::Result<()> {
    use crate::cluster::cmds;
    let rados = cmds::connect(spec)?;
    let io = cmds::ioctx(&rados, spec)?;
    let ls = |img: &crate::ceph::Image<'_>| {
        img.snaps()
            .map_err(|e| cmds::fail("rbd: failed to list snapshots", &e))
    };
    match ls_format {
        None => {
            let Some(name) = spec.snap.as_deref() else {
                return Err(Fail::new(EINVAL, "rbd: snapshot name was not specified").into());
            };
            let img = cmds::open(&io, spec, None, false)?;
            img.snap_create(name)
                .map_err(|e| cmds::fail("rbd: failed to create snapshot", &e))?;
        }
        Some(format) => {
            let img = cmds::open(&io, spec, None, true)?;
            let err = |e: std::io::Error| cmds::fail("rbd: failed to list snapshots", &e);
            let mut rows = Vec::new();
            for s in ls(&img)? {
                let protected = img.snap_is_protected(&s.name).map_err(err)?;
                // rbd prints nothing for a snapshot without a timestamp.
                let timestamp = match img.snap_timestamp(s.id).map_err(err)? {
                    0 => String::new(),
                    t => crate::ceph::local_time(t).map_or_else(String::new, |tm| tm.ctime()),
                };
                rows.push(rbdiff::info::SnapListRow {
                    id: s.id,
                    name: s.name,
                    size: s.size,
                    protected,
                    timestamp,
                });
            }
            print!("{}", rbdiff::info::snap_list(&rows, format == "json"));
        }
    }
    Ok(())
}

#[cfg(not(feature = "librbd"))]
fn cluster(spec: &crate::cluster::Spec, _: Option<&str>) -> anyhow::Result<()> {
    Err(crate::cluster::unsupported(&spec.image_path()).into())
}
