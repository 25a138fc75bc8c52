//! `info`: an image's size, layout, features, metadata and snapshots.

use crate::store::{Spec, Store};
use rbdiff::feature_names;
use serde_json::json;

const EXAMPLES: &str = "\
Examples:
  rbdiff info vm1
  rbdiff info --format json rbd/vm1@s1
  rbdiff info rbd:rbd/vm1@s1                    # a cluster image, as 'rbd info'
  rbdiff info --format json --pretty-format rbd:pool/ns/vm1

A cluster image (rbd:pool[/namespace]/image[@snap], native build with the
'librbd' feature) is shown exactly as rbd 16.2.15's 'rbd info' shows it:
id, block name prefix, features, op features, flags, timestamps, parent,
striping, journal and mirroring as librbd reports them.";

/// Show an image's properties.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// [pool/]image[@snap], or rbd:pool[/namespace]/image[@snap]
    pub image: String,
    /// Output format.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub format: String,
    /// Pretty-print JSON.
    #[arg(long)]
    pub pretty_format: bool,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    if let Some(spec) = crate::cluster::parse(&a.image)? {
        return cluster(&spec, &a);
    }
    let spec = Spec::parse(&a.image)?;
    let img = store.open(&spec.head())?;
    let m = &img.meta;
    let size = match &spec.snap {
        Some(s) => img.check_snap(Some(s))?.map_or(0, |s| s.size),
        None => img.head_size()?,
    };
    let objs = size.div_ceil(m.object_size());
    let meta: serde_json::Map<String, serde_json::Value> = m
        .meta
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                json!(String::from_utf8_lossy(v)),
            )
        })
        .collect();
    let snaps: Vec<_> = m
        .snapshots
        .iter()
        .map(|s| json!({"id": s.id, "name": s.display_name(), "size": s.size, "protected": s.protected.to_string()}))
        .collect();
    let idx = spec.snap.as_deref().and_then(|s| img.lookup(s));
    let flags = crate::objmap::info_flags(img.dir(), crate::objmap::point(&img, idx), m.features);
    if a.format == "json" {
        let mut v = json!({
            "name": spec.image,
            "pool": spec.pool,
            "size": size,
            "objects": objs,
            "order": m.order,
            "object_size": m.object_size(),
            "features": feature_names(m.features),
            "features_mask": m.features,
            "flags": flags,
            "stripe_unit": m.stripe_unit,
            "stripe_count": m.stripe_count,
            "metadata": meta,
            "snapshot_count": m.snapshots.len(),
            "snapshots": snaps,
        });
        if let Some(s) = &spec.snap {
            v["snapshot"] = json!(s);
            v["protected"] = json!(img.find(s).is_some_and(|x| x.protected).to_string());
        }
        let text = if a.pretty_format {
            serde_json::to_string_pretty(&v)?
        } else {
            serde_json::to_string(&v)?
        };
        println!("{text}");
        return Ok(());
    }
    println!("rbd image '{}':", spec.image);
    println!("\tsize {size} B in {objs} objects");
    println!("\torder {} ({} B objects)", m.order, m.object_size());
    println!("\tsnapshot_count: {}", m.snapshots.len());
    println!("\tformat: 2");
    println!("\tfeatures: {}", feature_names(m.features).join(", "));
    println!("\tflags: {}", flags.join(", "));
    println!("\tstripe unit: {}", m.stripe_unit);
    println!("\tstripe count: {}", m.stripe_count);
    if let Some(s) = &spec.snap {
        println!("\tprotected: {}", img.find(s).is_some_and(|x| x.protected));
    }
    for (k, v) in &m.meta {
        println!(
            "\tmeta {}: {}",
            String::from_utf8_lossy(k),
            String::from_utf8_lossy(v)
        );
    }
    Ok(())
}

/// `info` of a cluster image (`rbd:pool/image[@snap]`).
#[cfg(feature = "librbd")]
fn cluster(spec: &crate::cluster::Spec, a: &Args) -> anyhow::Result<()> {
    crate::cluster::cmds::info::run(spec, &a.format, a.pretty_format)
}

#[cfg(not(feature = "librbd"))]
fn cluster(spec: &crate::cluster::Spec, _: &Args) -> anyhow::Result<()> {
    Err(crate::cluster::unsupported(&spec.image_path()).into())
}
