//! rbdiff against real rbd on a throw-away Ceph cluster.
//!
//! Run by `scripts/test-cluster.sh` (which `scripts/test.sh` runs): it
//! starts the cluster (`scripts/ceph-cluster.sh`), builds rbdiff with the
//! `librbd` feature and runs these with `--include-ignored`; they fail when
//! `CEPH_CONF` names no reachable cluster. Images come from
//! `tests/cluster/workload.py` (python3-rbd): odd-sized writes, discards,
//! write-zeroes, a shrink and a grow, several snapshots, a clone of a
//! protected snapshot, fancy striping.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const NEEDS: &str = "needs a Ceph cluster: run scripts/test-cluster.sh";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// The rbdiff built with `librbd`: $RBDIFF_CLUSTER_BIN, or built now.
fn bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("RBDIFF_CLUSTER_BIN") {
            return PathBuf::from(p);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"))
            .join("cluster-tests");
        let st = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(workspace())
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "-q", "-p", "rbdiff-cli", "--features", "librbd"])
            .status()
            .expect("run cargo");
        assert!(st.success(), "cargo build --features librbd failed");
        target.join("debug/rbdiff")
    })
}

/// The images of the workload: (image, snapshots in order).
struct Workload {
    images: Vec<(String, Vec<String>)>,
}

fn workload() -> &'static Workload {
    static W: OnceLock<Workload> = OnceLock::new();
    W.get_or_init(|| {
        assert!(
            std::env::var_os("CEPH_CONF").is_some(),
            "CEPH_CONF is not set: {NEEDS}"
        );
        let prefix = format!("w{}", std::process::id());
        let out = Command::new("/usr/bin/python3")
            .arg(workspace().join("tests/cluster/workload.py"))
            .args(["rbd", &prefix])
            .output()
            .expect("run workload.py");
        assert!(
            out.status.success(),
            "workload.py failed ({NEEDS}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let images = String::from_utf8(out.stdout)
            .expect("utf8")
            .lines()
            .map(|l| {
                let mut w = l.split_whitespace().map(String::from);
                (w.next().expect("image"), w.collect())
            })
            .collect();
        Workload { images }
    })
}

/// A scratch directory of its own.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "rbdiff-cluster-{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn run(prog: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(prog)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {prog:?}: {e}"))
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn rbd(dir: &Path, args: &[&str]) -> Output {
    let o = run(Path::new("rbd"), dir, args);
    ok(&o, &format!("rbd {args:?}"));
    o
}

fn rbdiff(dir: &Path, args: &[&str]) -> Output {
    let o = run(bin(), dir, args);
    ok(&o, &format!("rbdiff {args:?}"));
    o
}

/// Every (from, to) step of every image: `(image, from, to)`, `to` `None`
/// for HEAD.
fn steps() -> Vec<(String, Option<String>, Option<String>)> {
    let mut v = Vec::new();
    for (img, snaps) in &workload().images {
        let mut prev = None;
        for s in snaps.iter().map(Some).chain([None]) {
            v.push((img.clone(), prev.clone(), s.cloned()));
            prev = s.cloned();
        }
        // and a full diff of every snapshot's whole history
        v.push((img.clone(), None, snaps.last().cloned()));
    }
    v
}

fn at(img: &str, snap: Option<&str>) -> String {
    match snap {
        Some(s) => format!("rbd/{img}@{s}"),
        None => format!("rbd/{img}"),
    }
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn export_diff_equals_rbd() {
    let d = scratch("export");
    let mut n = 0;
    for (img, from, to) in steps() {
        for whole in [false, true] {
            let mut args = vec!["export-diff", "--no-progress"];
            if whole {
                args.push("--whole-object");
            }
            if let Some(f) = &from {
                args.extend(["--from-snap", f]);
            }
            let spec = at(&img, to.as_deref());
            let cspec = format!("rbd:{spec}");
            let (a, b) = (format!("rbd.{n}"), format!("rbdiff.{n}"));
            let mut ra = args.clone();
            ra.extend([spec.as_str(), &a]);
            rbd(&d, &ra);
            let mut rb = args.clone();
            rb.extend([cspec.as_str(), &b]);
            rbdiff(&d, &rb);
            let (x, y) = (
                std::fs::read(d.join(&a)).unwrap(),
                std::fs::read(d.join(&b)).unwrap(),
            );
            assert!(x.len() > 20, "{a}: rbd wrote only {} bytes", x.len());
            assert!(
                x == y,
                "export-diff {args:?} {spec}: rbdiff's {} bytes differ from rbd's {}",
                y.len(),
                x.len()
            );
            n += 1;
        }
    }
    assert!(n >= 20, "only {n} diffs compared");
    let _ = std::fs::remove_dir_all(&d);
}
