//! `rm`: delete an image.

use crate::errors::{ENOTEMPTY, Fail};
use crate::store::{Spec, Store};

const EXAMPLES: &str = "\
Examples:
  rbdiff rm vm1
  rbdiff snap rm vm1@s1 && rbdiff rm vm1     # snapshots must go first";

/// Delete an image (it must have no snapshots).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    #[command(flatten)]
    pub progress: crate::progress::ProgressFlags,
    /// [pool/]image
    pub image: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    let spec = Spec::parse(&a.image)?;
    super::no_snap(&spec, "remove")?;
    let img = store.open_rw(&spec)?;
    if !img.meta.snapshots.is_empty() {
        return Err(Fail::new(
            ENOTEMPTY,
            "rbd: image has snapshots - these must be deleted with 'rbd snap purge' before the image can be removed.",
        )
        .then("Removing image: 0% complete...failed.")
        .then(format!("rbd: delete error: {}", crate::errors::errstr(ENOTEMPTY)))
        .into());
    }
    img.remove()
        .map_err(|e| Fail::io("rbd: delete error", &e))?;
    Ok(())
}
