//! `object-map rebuild|check`: the store's object maps (rbd's names).

use crate::errors::{EINVAL, ENOENT, Fail, errstr};
use crate::objmap;
use crate::store::{Spec, Store};
use clap::Subcommand;
use rbdiff::objmap::{OBJECT_EXISTS, OBJECT_PENDING, ObjectMap, exists};
use serde_json::json;

const EXAMPLES: &str = "\
Examples:
  rbdiff object-map rebuild vm1          # after something else wrote vm1's head
  rbdiff object-map rebuild vm1@mon
  rbdiff object-map check --format json vm1@mon

Every store image keeps, per snapshot and for HEAD, which objects exist and
which were written since the previous snapshot (rbd's object-map and
fast-diff), so export-diff, diff and export read only what changed. A HEAD
written by another program (a VM using the file directly) is detected and its
map is then not used (commands compare contents and say so; 'info' shows
'flags: object map invalid, fast diff invalid') until it is rebuilt here.";

/// Object map maintenance.
#[derive(Subcommand, Debug)]
#[command(after_help = EXAMPLES)]
pub enum ObjectMapCmd {
    /// Rebuild an image's (or snapshot's) object map from its contents.
    Rebuild {
        /// [pool/]image[@snap]
        spec: String,
        #[command(flatten)]
        progress: crate::progress::ProgressFlags,
    },
    /// Verify an object map against the contents (fails if it claims less).
    Check {
        /// [pool/]image[@snap]
        spec: String,
        /// Output format (json lists the objects).
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        format: String,
    },
}

/// Open the image of `s` (locked when `write`: a rebuild writes its maps).
fn open(
    store: &Store,
    s: &str,
    write: bool,
) -> Result<(Spec, crate::store::Image, Option<usize>), Fail> {
    let spec = Spec::parse(s)?;
    let img = if write {
        store.open_rw(&spec.head())?
    } else {
        store.open(&spec.head())?
    };
    let idx = match &spec.snap {
        None => None,
        Some(n) => Some(img.lookup(n).ok_or_else(|| {
            Fail::new(
                ENOENT,
                format!("rbd: error setting snapshot context: {}", errstr(ENOENT)),
            )
        })?),
    };
    Ok((spec, img, idx))
}

pub fn run(store: &Store, c: ObjectMapCmd) -> anyhow::Result<()> {
    match c {
        ObjectMapCmd::Rebuild { spec, .. } => {
            let (_, img, idx) = open(store, &spec, true)?;
            objmap::rebuild(&img, idx)?;
            Ok(())
        }
        ObjectMapCmd::Check { spec, format } => check(store, &spec, &format),
    }
}

fn check(store: &Store, s: &str, format: &str) -> anyhow::Result<()> {
    let (spec, img, idx) = open(store, s, false)?;
    let objmap::Checked {
        map,
        invalid: reason,
        underreport: under,
    } = objmap::check_at(&img, idx)?;
    let valid = reason.is_none();
    let list = |f: &dyn Fn(u8) -> bool| -> Vec<u64> {
        map.as_ref()
            .map(|m| (0..m.len()).filter(|&k| f(m.get(k))).collect())
            .unwrap_or_default()
    };
    let existing = list(&|st| exists(st));
    let written = list(&|st| st == OBJECT_EXISTS || st == OBJECT_PENDING);
    if format == "json" {
        let v = json!({
            "image": spec.to_string(),
            "valid": valid,
            "reason": reason,
            "objects": map.as_ref().map(ObjectMap::len),
            "exists": existing,
            "written": written,
            "underreport": under.map(|u| json!({"object": u.object, "state": u.state, "holds_data": u.holds_data})),
        });
        println!("{v}");
    } else {
        let counts = map.as_ref().map(|m| {
            format!(
                "{} objects, {} exist, {} written since the previous snapshot",
                m.len(),
                existing.len(),
                written.len()
            )
        });
        match (&reason, counts) {
            (None, c) => println!("object map of {spec}: {}", c.unwrap_or_default()),
            (Some(r), None) => println!("object map of {spec}: invalid ({r})"),
            (Some(r), Some(c)) => println!("object map of {spec}: invalid ({r}); it claims {c}"),
        }
    }
    if let Some(u) = under {
        let what = if u.holds_data {
            "holds data the map says does not exist"
        } else {
            "changed since the previous snapshot and the map says it did not"
        };
        return Err(Fail::new(
            EINVAL,
            format!(
                "rbd: object map of {spec} is wrong: object {} {what}",
                u.object
            ),
        )
        .into());
    }
    Ok(())
}
