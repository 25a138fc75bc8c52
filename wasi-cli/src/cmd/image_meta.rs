//! `image-meta list|get|set|remove`: an image's key/value metadata, with
//! rbd's output, messages and exit codes. The pairs travel in `export
//! --export-format 2` (`M` records) and come back with `import`.

use crate::errors::{EINVAL, ENOENT, Fail, errstr, io_errno};
use crate::store::{Image, Spec, Store};
use clap::Subcommand;
use rbdiff::image_meta::render_list as render;
use std::io::Write;

const EXAMPLES: &str = "\
Examples:
  rbdiff image-meta set vm1 backup.owner alice
  rbdiff image-meta list vm1
  rbdiff image-meta list --format json vm1 | jq .
  rbdiff image-meta get vm1 backup.owner
  rbdiff image-meta remove vm1 backup.owner
  rbdiff image-meta set vm1 conf_rbd_cache false   # an image-level librbd option
  rbdiff image-meta list --format json rbd:rbd/vm1  # a cluster image, as 'rbd image-meta list'
  rbdiff image-meta set rbd:rbd/ns/vm1 backup.owner alice

Keys sort bytewise, as rbd lists them. A key 'conf_<option>' overrides a
librbd option for the image and is accepted only for the options librbd
allows per image, with a value of the option's type (rc 22 otherwise, as
rbd). The pairs are carried by 'export --export-format 2' and restored by
'import --export-format 2'. Exit status: 0, 2 for a missing image or key,
22 for a missing argument or a refused pair, 1 for usage errors.";

/// Image metadata (key/value pairs) of a store or cluster image.
#[derive(Subcommand, Debug)]
#[command(after_help = EXAMPLES)]
pub enum MetaCmd {
    /// Image metadata list keys with values.
    #[command(
        visible_alias = "ls",
        after_help = "Examples:\n  rbdiff image-meta list vm1\n  rbdiff image-meta ls --format xml --pretty-format rbd/vm1\n  rbdiff image-meta list rbd:rbd/vm1          # a cluster image"
    )]
    List {
        #[command(flatten)]
        args: MetaArgs,
        /// Output format.
        #[arg(long, default_value = "plain", value_parser = ["plain", "json", "xml"])]
        format: String,
        /// Pretty-print JSON or XML.
        #[arg(long)]
        pretty_format: bool,
    },
    /// Image metadata get the value associated with the key.
    #[command(after_help = "Example:\n  rbdiff image-meta get vm1 backup.owner")]
    Get {
        #[command(flatten)]
        args: MetaArgs,
    },
    /// Image metadata set key with value.
    #[command(after_help = "Example:\n  rbdiff image-meta set vm1 backup.owner alice")]
    Set {
        #[command(flatten)]
        args: MetaArgs,
    },
    /// Image metadata remove the key and value associated.
    #[command(
        visible_alias = "rm",
        after_help = "Example:\n  rbdiff image-meta remove vm1 backup.owner"
    )]
    Remove {
        #[command(flatten)]
        args: MetaArgs,
    },
}

/// `[pool/]image [key [value]]`, rbd's way.
#[derive(clap::Args, Debug)]
pub struct MetaArgs {
    /// [pool/]image in the store (or rbd:pool[/namespace]/image), then the
    /// key, then the value (set).
    #[arg(value_name = "IMAGE [KEY [VALUE]]", allow_hyphen_values = false)]
    positional: Vec<String>,
    /// Pool name (instead of the pool/ prefix).
    #[arg(short = 'p', long)]
    pool: Option<String>,
    /// Image name (instead of the first positional argument).
    #[arg(long = "image", value_name = "IMAGE")]
    image: Option<String>,
}

impl MetaArgs {
    /// The image and the `n` values after it (key, value), with rbd's
    /// messages for what is missing or too much, in rbd's order; `parse`
    /// reads the image (and says whether it names a snapshot).
    fn split_with<T>(
        &self,
        n: usize,
        parse: impl FnOnce(&str) -> Result<(T, bool), Fail>,
    ) -> Result<(T, Vec<String>), Fail> {
        let mut pos = self.positional.iter().cloned();
        let image = match &self.image {
            Some(i) => Some(i.clone()),
            None => pos.next(),
        };
        let rest: Vec<String> = pos.collect();
        if rest.len() > n {
            return Err(Fail::new(1, "rbd: too many arguments"));
        }
        let image = image
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Fail::new(EINVAL, "rbd: image name was not specified"))?;
        let image = match &self.pool {
            Some(p) if !image.contains('/') && !image.starts_with("rbd:") => format!("{p}/{image}"),
            _ => image,
        };
        let (spec, has_snap) = parse(&image)?;
        if has_snap {
            return Err(Fail::new(
                EINVAL,
                "rbd: snapshot name specified for a command that doesn't use it",
            ));
        }
        let what = ["metadata key", "metadata value"];
        let mut vals = Vec::with_capacity(n);
        for (i, w) in what.iter().enumerate().take(n) {
            match rest.get(i).filter(|v| !v.is_empty()) {
                Some(v) => vals.push(v.clone()),
                None => return Err(Fail::new(EINVAL, format!("rbd: {w} was not specified"))),
            }
        }
        Ok((spec, vals))
    }

    /// A store image and its values.
    fn split(&self, n: usize) -> Result<(Spec, Vec<String>), Fail> {
        self.split_with(n, |i| {
            let s = Spec::parse(i)?;
            let snap = s.snap.is_some();
            Ok((s, snap))
        })
    }

    /// Does the image argument name a cluster image (`rbd:...`)?
    fn is_cluster(&self) -> bool {
        let first = self.image.as_ref().or(self.positional.first());
        first.is_some_and(|i| i.starts_with("rbd:"))
    }
}

/// rbd's two lines for a failed operation: librbd's, then the command's.
pub(crate) fn failed(code: i32, first: String, verb: &str) -> Fail {
    Fail::new(code, first).then(format!("rbd: {verb} metadata failed: {}", errstr(code)))
}

pub fn run(store: &Store, c: MetaCmd) -> anyhow::Result<()> {
    let (MetaCmd::List { args, .. }
    | MetaCmd::Get { args }
    | MetaCmd::Set { args }
    | MetaCmd::Remove { args }) = &c;
    if let MetaCmd::List {
        format,
        pretty_format: true,
        ..
    } = &c
        && format == "plain"
    {
        return Err(Fail::new(
            EINVAL,
            "rbd: --pretty-format only works when --format is json or xml",
        )
        .into());
    }
    if args.is_cluster() {
        return cluster(c);
    }
    match c {
        MetaCmd::List {
            args,
            format,
            pretty_format,
        } => {
            let (spec, _) = args.split(0)?;
            let img = store.open(&spec)?;
            let text = render(&pairs(&img), &format, pretty_format);
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        MetaCmd::Get { args } => {
            let (spec, kv) = args.split(1)?;
            let img = store.open(&spec)?;
            let Some(v) = img.meta.meta.get(kv[0].as_bytes()) else {
                return Err(failed(
                    ENOENT,
                    format!(
                        "failed to get metadata {} of image : {}",
                        kv[0],
                        errstr(ENOENT)
                    ),
                    "getting",
                )
                .into());
            };
            let mut out = std::io::stdout().lock();
            out.write_all(v)?;
            out.write_all(b"\n")?;
            out.flush()?;
        }
        MetaCmd::Set { args } => {
            let (spec, kv) = args.split(2)?;
            let mut img = store.open_rw(&spec)?;
            let fail = |code: i32| {
                let first = format!(
                    "failed to set metadata {} of image : {}",
                    kv[0],
                    errstr(code)
                );
                failed(code, first, "setting")
            };
            rbdiff::image_meta::check(&kv[0], &kv[1]).map_err(|e| {
                fail(EINVAL).with_detail(format!("rbdiff: validation for {} failed: {e}", kv[0]))
            })?;
            img.meta
                .meta
                .insert(kv[0].as_bytes().to_vec(), kv[1].as_bytes().to_vec());
            img.save().map_err(|e| fail(io_errno(&e)))?;
        }
        MetaCmd::Remove { args } => {
            let (spec, kv) = args.split(1)?;
            let mut img = store.open_rw(&spec)?;
            if img.meta.meta.remove(kv[0].as_bytes()).is_none() {
                let first = format!(
                    "rbd: no existing metadata key {} of image : {}",
                    kv[0],
                    errstr(ENOENT)
                );
                return Err(failed(ENOENT, first, "removing").into());
            }
            img.save().map_err(|e| {
                let code = io_errno(&e);
                let first = format!(
                    "failed to remove metadata {} of image : {}",
                    kv[0],
                    errstr(code)
                );
                failed(code, first, "removing")
            })?;
        }
    }
    Ok(())
}

/// A store image's pairs, in key order.
fn pairs(img: &Image) -> Vec<(String, String)> {
    img.meta
        .meta
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// `image-meta` of a cluster image (`rbd:pool[/namespace]/image`).
#[cfg(feature = "librbd")]
fn cluster(c: MetaCmd) -> anyhow::Result<()> {
    use crate::cluster::cmds::image_meta::{Op, run};
    let parse = |i: &str| -> Result<(crate::cluster::Spec, bool), Fail> {
        let s = crate::cluster::parse(i)?
            .ok_or_else(|| Fail::new(EINVAL, format!("rbd: {i}: not a cluster image")))?;
        let snap = s.snap.is_some();
        Ok((s, snap))
    };
    let (spec, op) = match c {
        MetaCmd::List {
            args,
            format,
            pretty_format,
        } => (
            args.split_with(0, parse)?.0,
            Op::List {
                format,
                pretty: pretty_format,
            },
        ),
        MetaCmd::Get { args } => {
            let (s, mut kv) = args.split_with(1, parse)?;
            (s, Op::Get(kv.remove(0)))
        }
        MetaCmd::Set { args } => {
            let (s, mut kv) = args.split_with(2, parse)?;
            let k = kv.remove(0);
            (s, Op::Set(k, kv.remove(0)))
        }
        MetaCmd::Remove { args } => {
            let (s, mut kv) = args.split_with(1, parse)?;
            (s, Op::Remove(kv.remove(0)))
        }
    };
    run(&spec, op)
}

#[cfg(not(feature = "librbd"))]
fn cluster(c: MetaCmd) -> anyhow::Result<()> {
    let (MetaCmd::List { args, .. }
    | MetaCmd::Get { args }
    | MetaCmd::Set { args }
    | MetaCmd::Remove { args }) = &c;
    let first = args.image.as_ref().or(args.positional.first());
    let spec = crate::cluster::parse(first.map_or("", String::as_str))?;
    let name = spec.map(|s| s.image_path()).unwrap_or_default();
    Err(crate::cluster::unsupported(&name).into())
}
