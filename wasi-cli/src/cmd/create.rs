//! `create`: a new empty image in the store.

use crate::errors::{EINVAL, Fail};
use crate::size;
use crate::store::{DEFAULT_FEATURES, DEFAULT_ORDER, ImageMeta, Spec, Store};

const EXAMPLES: &str = "\
Examples:
  rbdiff create --size 10G vm1                  # 10 GiB (a bare number is MiB)
  rbdiff create --size 4M --object-size 64K rbd/small
  rbdiff --store /backups create --size 1T --image-feature layering,exclusive-lock big

The image is a sparse file in the store; nothing is allocated until written.";

/// Image layout options shared by `create` and `import` (rbd's names).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ImageOpts {
    /// Object size in B/K/M [4K <= object size <= 32M].
    #[arg(long, value_parser = size::bytes, conflicts_with = "order")]
    pub object_size: Option<u64>,
    /// Object order [12 <= order <= 25] (deprecated in rbd, use --object-size).
    #[arg(long)]
    pub order: Option<u8>,
    /// Image features (names or a number; repeat or comma-separate).
    #[arg(long = "image-feature", value_delimiter = ',')]
    pub image_feature: Vec<String>,
    /// Stripe unit in B/K/M.
    #[arg(long, value_parser = size::bytes)]
    pub stripe_unit: Option<u64>,
    /// Stripe count.
    #[arg(long)]
    pub stripe_count: Option<u64>,
}

impl ImageOpts {
    /// Order given on the command line, if any (validated).
    pub fn order(&self) -> Result<Option<u8>, Fail> {
        if let Some(o) = self.order {
            if !(12..=25).contains(&o) {
                return Err(Fail::new(
                    EINVAL,
                    "rbd: order must be between 12 (4 KiB) and 25 (32 MiB)",
                ));
            }
            return Ok(Some(o));
        }
        if let Some(s) = self.object_size {
            if !s.is_power_of_two() || !((1 << 12)..=(1 << 25)).contains(&s) {
                return Err(Fail::new(
                    EINVAL,
                    "rbd: object size must be a power of two between 4K and 32M",
                ));
            }
            return Ok(u8::try_from(s.trailing_zeros()).ok());
        }
        Ok(None)
    }

    /// Feature mask given on the command line, if any.
    pub fn features(&self) -> Result<Option<u64>, Fail> {
        if self.image_feature.is_empty() {
            return Ok(None);
        }
        let mut mask = 0u64;
        for f in &self.image_feature {
            let f = f.trim();
            if let Ok(n) = f.parse::<u64>() {
                mask |= n;
            } else if let Some(b) = rbdiff::feature_bit(f) {
                mask |= b;
            } else {
                return Err(Fail::new(
                    EINVAL,
                    format!("rbd: unknown image feature '{f}'"),
                ));
            }
        }
        Ok(Some(mask))
    }

    /// Full metadata for a new image of `size`, falling back to `base`
    /// (values from an export stream) and then rbd's defaults.
    pub fn meta(&self, size: u64, base: Option<&ImageMeta>) -> Result<ImageMeta, Fail> {
        let order = match self.order()? {
            Some(o) => o,
            None => base.map_or(DEFAULT_ORDER, |b| b.order),
        };
        let features = match self.features()? {
            Some(f) => f,
            None => base.map_or(DEFAULT_FEATURES, |b| b.features),
        };
        let object_size = 1u64 << order;
        let stripe_unit = self
            .stripe_unit
            .or(base
                .map(|b| b.stripe_unit)
                .filter(|&u| u != 0 && self.order.is_none() && self.object_size.is_none()))
            .unwrap_or(object_size);
        let stripe_count = self
            .stripe_count
            .or(base.map(|b| b.stripe_count))
            .unwrap_or(1)
            .max(1);
        if stripe_unit == 0 || !object_size.is_multiple_of(stripe_unit) {
            return Err(Fail::new(
                EINVAL,
                "rbd: stripe unit is not a factor of the object size",
            ));
        }
        let mut m = ImageMeta::new(size, order, features, stripe_unit, stripe_count);
        if let Some(b) = base {
            m.meta = b.meta.clone();
        }
        Ok(m)
    }
}

/// Create an empty image in the store.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Image size (in M/G/T) [default unit: M].
    #[arg(long, short = 's', value_parser = size::megabytes)]
    pub size: u64,
    #[command(flatten)]
    pub opts: ImageOpts,
    /// [pool/]image
    pub image: String,
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    if let Some(spec) = crate::cluster::parse(&a.image)? {
        return cluster(&spec, &a);
    }
    let spec = Spec::parse(&a.image)?;
    super::no_snap(&spec, "create")?;
    let meta = a.opts.meta(a.size, None)?;
    store.create(&spec, meta)?;
    Ok(())
}

/// `create` of a cluster image (librbd's defaults where no flag is given).
#[cfg(feature = "librbd")]
fn cluster(spec: &crate::cluster::Spec, a: &Args) -> anyhow::Result<()> {
    use crate::cluster::cmds;
    if spec.snap.is_some() {
        return Err(Fail::new(
            EINVAL,
            "rbd: create: snapshot name was specified, but is not valid here",
        )
        .into());
    }
    let o = crate::ceph::CreateOpts {
        order: a.opts.order()?.map(u64::from),
        features: a.opts.features()?,
        stripe_unit: a.opts.stripe_unit,
        stripe_count: a.opts.stripe_count,
    };
    let rados = cmds::connect(spec)?;
    let io = cmds::ioctx(&rados, spec)?;
    io.create(&spec.image, a.size, &o)
        .map_err(|e| cmds::fail("rbd: create error", &e))?;
    Ok(())
}

#[cfg(not(feature = "librbd"))]
fn cluster(spec: &crate::cluster::Spec, _: &Args) -> anyhow::Result<()> {
    Err(crate::cluster::unsupported(&spec.image_path()).into())
}
