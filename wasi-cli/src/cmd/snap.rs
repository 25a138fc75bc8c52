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

pub fn run(store: &Store, c: SnapCmd) -> anyhow::Result<()> {
    match c {
        SnapCmd::Create { spec, .. } => {
            let (spec, name) = snap_spec(&spec)?;
            store.open_rw(&spec)?.snap_create(name.as_bytes(), false)?;
        }
        SnapCmd::Ls { image, format } => {
            let spec = Spec::parse(&image)?;
            let img = store.open(&spec.head())?;
            if format == "json" {
                let v: Vec<_> = img
                    .meta
                    .snapshots
                    .iter()
                    .map(|s| serde_json::json!({"id": s.id, "name": s.display_name(), "size": s.size, "protected": s.protected.to_string()}))
                    .collect();
                println!("{}", serde_json::to_string(&v)?);
            } else if !img.meta.snapshots.is_empty() {
                let rows: Vec<[String; 4]> = img
                    .meta
                    .snapshots
                    .iter()
                    .map(|s| {
                        [
                            s.id.to_string(),
                            s.display_name(),
                            s.size.to_string(),
                            if s.protected {
                                "yes".into()
                            } else {
                                String::new()
                            },
                        ]
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
            }
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
