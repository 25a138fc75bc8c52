//! `resize`: change an image's size.

use crate::errors::{EINVAL, Fail};
use crate::size;
use crate::store::{Spec, Store};

const EXAMPLES: &str = "\
Examples:
  rbdiff resize --size 20G vm1
  rbdiff resize --size 512M --allow-shrink vm1";

/// Resize an image (HEAD).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// New size (in M/G/T) [default unit: M].
    #[arg(long, short = 's', value_parser = size::megabytes)]
    pub size: u64,
    /// Permit shrinking.
    #[arg(long)]
    pub allow_shrink: bool,
    #[command(flatten)]
    pub progress: crate::progress::ProgressFlags,
    /// [pool/]image
    pub image: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    let spec = Spec::parse(&a.image)?;
    super::no_snap(&spec, "resize")?;
    let mut img = store.open_rw(&spec)?;
    let cur = img.meta.size;
    if a.size < cur && !a.allow_shrink {
        return Err(Fail::new(
            EINVAL,
            "rbd: shrinking an image is only allowed with the --allow-shrink flag",
        )
        .into());
    }
    img.resize(a.size)
        .map_err(|e| Fail::io("rbd: resize error", &e))?;
    Ok(())
}
