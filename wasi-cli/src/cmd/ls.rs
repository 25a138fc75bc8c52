//! `ls`: images of a pool.

use crate::errors::Fail;
use crate::store::{DEFAULT_POOL, Store, check_name};

const EXAMPLES: &str = "\
Examples:
  rbdiff ls
  rbdiff ls --long backups
  rbdiff ls --format json";

/// List images of a pool.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Pool name.
    #[arg(default_value = DEFAULT_POOL)]
    pub pool: String,
    /// Show size and snapshots too.
    #[arg(long, short = 'l')]
    pub long: bool,
    /// Output format.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub format: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    check_name("pool", &a.pool)
        .map_err(|m| Fail::new(crate::errors::EINVAL, format!("rbd: {m}")))?;
    let names = store.images(&a.pool)?;
    if a.format == "json" {
        if a.long {
            let mut v = Vec::new();
            for n in &names {
                let img = store.open(&crate::store::Spec::parse(&format!("{}/{n}", a.pool))?)?;
                v.push(serde_json::json!({"image": n, "size": img.meta.size, "snapshots": img.meta.snapshots.iter().map(|s| s.display_name()).collect::<Vec<_>>()}));
            }
            println!("{}", serde_json::to_string(&v)?);
        } else {
            println!("{}", serde_json::to_string(&names)?);
        }
        return Ok(());
    }
    for n in &names {
        if a.long {
            let img = store.open(&crate::store::Spec::parse(&format!("{}/{n}", a.pool))?)?;
            println!("{n}\t{}", img.meta.size);
            for s in &img.meta.snapshots {
                println!(
                    "{n}@{}\t{}{}",
                    s.display_name(),
                    s.size,
                    if s.protected { "\tyes" } else { "" }
                );
            }
        } else {
            println!("{n}");
        }
    }
    Ok(())
}
