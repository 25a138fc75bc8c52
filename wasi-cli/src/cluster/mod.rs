//! Images in a Ceph cluster, named as qemu names them:
//! `rbd:pool[/namespace]/image[@snap][:conf=PATH][:id=NAME]`.
//!
//! The spelling is parsed on every build, so that a build without the
//! `librbd` feature (WASI, or a machine without librbd) says what it lacks;
//! the commands themselves ([`cmds`]) need the feature.

use crate::errors::{EINVAL, Fail};
use std::sync::OnceLock;

#[cfg(feature = "librbd")]
pub mod cmds;

/// How rbd finds the cluster: global flags, as rbd spells them.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClusterFlags {
    /// Ceph configuration file for cluster images (default: $CEPH_CONF,
    /// /etc/ceph/$cluster.conf).
    #[arg(short = 'c', long = "conf", global = true, value_name = "PATH")]
    pub conf: Option<String>,
    /// Client id for cluster images, without 'client.' (default: admin).
    #[arg(long = "id", visible_alias = "user", global = true, value_name = "ID")]
    pub id: Option<String>,
    /// Keyring file for cluster images.
    #[arg(long, global = true, value_name = "PATH")]
    pub keyring: Option<String>,
    /// Cluster name (default: ceph).
    #[arg(long = "cluster", global = true, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Seconds to wait for a cluster's monitors (connecting, and each
    /// monitor request) before failing (0: as long as librados waits).
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    pub cluster_timeout: u64,
    /// Seconds to wait for each OSD request before failing (0, rbd's
    /// default: as long as it takes).
    #[arg(long, global = true, default_value_t = 0, value_name = "SECS")]
    pub osd_timeout: u64,
    /// Cluster operations in flight at once (rbd's option of that name).
    #[arg(long, global = true, default_value_t = 10, value_name = "N")]
    pub rbd_concurrent_management_ops: usize,
}

static FLAGS: OnceLock<ClusterFlags> = OnceLock::new();

/// Remember the global flags for the commands that open cluster images.
pub fn set_flags(f: ClusterFlags) {
    let _ = FLAGS.set(f);
}

/// The global flags (defaults when not set).
#[cfg(feature = "librbd")]
pub fn flags() -> ClusterFlags {
    FLAGS.get().cloned().unwrap_or(ClusterFlags {
        cluster_timeout: 30,
        rbd_concurrent_management_ops: 10,
        ..ClusterFlags::default()
    })
}

/// What rbd takes from `CEPH_ARGS` before its command line (Ceph's early
/// arguments `--id`/`-i`, `--name`/`-n client.ID`, `--cluster`,
/// `--conf`/`-c`; librados reads only configuration options there, such
/// as `--keyring`). The command line and the spec win over them.
#[cfg(any(test, feature = "librbd"))]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EarlyArgs {
    pub id: Option<String>,
    pub cluster: Option<String>,
    pub conf: Option<String>,
}

#[cfg(any(test, feature = "librbd"))]
impl EarlyArgs {
    /// `$CEPH_ARGS`, parsed.
    #[cfg(feature = "librbd")]
    pub fn from_env() -> EarlyArgs {
        std::env::var("CEPH_ARGS").map_or_else(|_| EarlyArgs::default(), |s| Self::parse(&s))
    }

    /// Words separated by white space, as Ceph splits `CEPH_ARGS`; a later
    /// value replaces an earlier one.
    pub fn parse(s: &str) -> EarlyArgs {
        let mut out = EarlyArgs::default();
        let mut words = s.split_whitespace();
        while let Some(w) = words.next() {
            let (key, inline) = match w.split_once('=') {
                Some((k, v)) if k.starts_with("--") => (k, Some(v)),
                _ => (w, None),
            };
            if !matches!(
                key,
                "--id" | "-i" | "--name" | "-n" | "--cluster" | "--conf" | "-c"
            ) {
                continue;
            }
            let Some(v) = inline.or_else(|| words.next()) else {
                break;
            };
            match key {
                "--id" | "-i" => out.id = Some(v.into()),
                "--name" | "-n" => {
                    if let Some(id) = v.strip_prefix("client.") {
                        out.id = Some(id.into());
                    }
                }
                "--cluster" => out.cluster = Some(v.into()),
                _ => out.conf = Some(v.into()),
            }
        }
        out
    }
}

/// A parsed `rbd:` image spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spec {
    pub pool: String,
    pub namespace: Option<String>,
    pub image: String,
    pub snap: Option<String>,
    /// `:conf=PATH` (overrides `--conf`).
    pub conf: Option<String>,
    /// `:id=NAME` (overrides `--id`).
    pub id: Option<String>,
}

impl Spec {
    /// `pool[/namespace]/image`, as rbd prints an image.
    #[cfg(any(test, not(feature = "librbd")))]
    pub fn image_path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.pool, self.image),
            None => format!("{}/{}", self.pool, self.image),
        }
    }
}

/// Split on `sep` not preceded by a backslash; `\x` becomes `x`.
fn split_escaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(n), Some(l)) = (chars.next(), out.last_mut()) {
                    l.push(n);
                }
            }
            c if c == sep => out.push(String::new()),
            c => {
                if let Some(l) = out.last_mut() {
                    l.push(c);
                }
            }
        }
    }
    out
}

fn bad(arg: &str, why: &str) -> Fail {
    Fail::new(
        EINVAL,
        format!("rbd: invalid cluster image spec '{arg}': {why}"),
    )
}

/// `Some(spec)` when `arg` starts with `rbd:`; `None` for every other
/// spelling (raw files, store images).
pub fn parse(arg: &str) -> Result<Option<Spec>, Fail> {
    let Some(rest) = arg.strip_prefix("rbd:") else {
        return Ok(None);
    };
    let parts = split_escaped(rest, ':');
    let (name, opts) = parts.split_first().ok_or_else(|| bad(arg, "empty"))?;
    let mut spec = Spec::default();
    let (path, snap) = match name.split_once('@') {
        Some((p, s)) => (p, Some(s)),
        None => (name.as_str(), None),
    };
    let comps: Vec<&str> = path.split('/').collect();
    match comps.as_slice() {
        [img] => {
            spec.pool = "rbd".into();
            spec.image = (*img).into();
        }
        [pool, img] => {
            spec.pool = (*pool).into();
            spec.image = (*img).into();
        }
        [pool, ns, img] => {
            spec.pool = (*pool).into();
            spec.namespace = Some((*ns).into());
            spec.image = (*img).into();
        }
        _ => return Err(bad(arg, "expected pool[/namespace]/image[@snap]")),
    }
    if spec.pool.is_empty() || spec.image.is_empty() {
        return Err(bad(arg, "empty pool or image name"));
    }
    if let Some(s) = snap {
        if s.is_empty() {
            return Err(bad(arg, "empty snapshot name"));
        }
        spec.snap = Some(s.into());
    }
    for o in opts {
        match o.split_once('=') {
            Some(("conf", v)) => spec.conf = Some(v.into()),
            Some(("id", v)) => spec.id = Some(v.into()),
            _ => {
                return Err(bad(
                    arg,
                    &format!("unknown option '{o}' (conf=PATH or id=NAME)"),
                ));
            }
        }
    }
    Ok(Some(spec))
}

/// The error of a build without librbd asked for a cluster image.
#[cfg(not(feature = "librbd"))]
pub fn unsupported(arg: &str) -> Fail {
    Fail::new(
        crate::errors::EOPNOTSUPP,
        format!(
            "rbd: {arg}: cluster images need the native rbdiff built with the 'librbd' \
             feature (cargo build -p rbdiff-cli --features librbd, with librbd-dev installed)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceph_args() {
        let e = EarlyArgs::parse(
            "--keyring /k --id=a -n client.b --name osd.0 --cluster x -c /c.conf --conf=/d.conf",
        );
        assert_eq!(
            e,
            EarlyArgs {
                id: Some("b".into()),
                cluster: Some("x".into()),
                conf: Some("/d.conf".into()),
            }
        );
        assert_eq!(EarlyArgs::parse("-i c --id").id.as_deref(), Some("c"));
        assert_eq!(EarlyArgs::parse(""), EarlyArgs::default());
    }

    #[test]
    fn specs() {
        assert_eq!(parse("pool/img").unwrap(), None);
        assert_eq!(parse("./rbd:x").unwrap(), None);
        let s = parse("rbd:p/img@s1:conf=/etc/ceph/a\\:b.conf:id=bob")
            .unwrap()
            .unwrap();
        assert_eq!(
            s,
            Spec {
                pool: "p".into(),
                namespace: None,
                image: "img".into(),
                snap: Some("s1".into()),
                conf: Some("/etc/ceph/a:b.conf".into()),
                id: Some("bob".into()),
            }
        );
        let s = parse("rbd:p/ns/img").unwrap().unwrap();
        assert_eq!(s.namespace.as_deref(), Some("ns"));
        assert_eq!(s.image_path(), "p/ns/img");
        assert_eq!(parse("rbd:img").unwrap().unwrap().pool, "rbd");
        for b in ["rbd:", "rbd:a/b/c/d", "rbd:p/i@", "rbd:p/i:x=1", "rbd:/i"] {
            let e = parse(b).unwrap_err();
            assert_eq!(e.code, EINVAL, "{b}");
            assert!(e.lines[0].contains(b), "{b}: {:?}", e.lines);
        }
    }
}
