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
    W.get_or_init(|| Workload {
        images: make_workload("rbd", &format!("w{}", std::process::id())),
    })
}

/// Run `tests/cluster/workload.py POOL[/NAMESPACE] PREFIX` on the cluster
/// of `CEPH_CONF`: (image, snapshots in order).
fn make_workload(pool: &str, prefix: &str) -> Vec<(String, Vec<String>)> {
    assert!(
        std::env::var_os("CEPH_CONF").is_some(),
        "CEPH_CONF is not set: {NEEDS}"
    );
    let out = Command::new("/usr/bin/python3")
        .arg(workspace().join("tests/cluster/workload.py"))
        .args([pool, prefix])
        .output()
        .expect("run workload.py");
    assert!(
        out.status.success(),
        "workload.py failed ({NEEDS}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace().map(String::from);
            (w.next().expect("image"), w.collect())
        })
        .collect()
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

/// `export-diff --no-progress [--whole-object] [--from-snap FROM]`.
fn export_diff_args(whole: bool, from: Option<&str>) -> Vec<&str> {
    let mut args = vec!["export-diff", "--no-progress"];
    if whole {
        args.push("--whole-object");
    }
    if let Some(f) = from {
        args.extend(["--from-snap", f]);
    }
    args
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn export_diff_equals_rbd() {
    let d = scratch("export");
    let mut n = 0;
    for (img, from, to) in steps() {
        for whole in [false, true] {
            let args = export_diff_args(whole, from.as_deref());
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

/// `rbd export IMAGE[@SNAP] -`: the image's bytes.
fn export(dir: &Path, spec: &str) -> Vec<u8> {
    rbd(dir, &["export", "--no-progress", spec, "-"]).stdout
}

/// A new image name of its own in `pool`.
fn fresh(pool: &str, what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "{what}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    rbd(
        Path::new("."),
        &["create", "--size", "1M", &format!("{pool}/{name}")],
    );
    name
}

/// The diffs of an image's whole chain (0 -> first snapshot -> ... ->
/// HEAD) made by `maker` ("rbd" or "rbdiff") into `dir`: (file, end snap).
fn chain(dir: &Path, img: &str, snaps: &[String], maker: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut prev: Option<&String> = None;
    for (i, s) in snaps.iter().map(Some).chain([None]).enumerate() {
        let file = format!("{maker}.{}.{i}", img.replace('/', "_"));
        let spec = at(img, s.map(String::as_str));
        let src = if maker == "rbd" {
            spec
        } else {
            format!("rbd:{spec}")
        };
        let mut args = vec!["export-diff", "--no-progress"];
        if let Some(p) = prev {
            args.extend(["--from-snap", p]);
        }
        args.extend([src.as_str(), file.as_str()]);
        if maker == "rbd" {
            rbd(dir, &args);
        } else {
            rbdiff(dir, &args);
        }
        out.push((file, s.cloned()));
        prev = s;
    }
    out
}

/// Import `diffs` into a fresh image (in pool rbd, namespace `ns` if
/// given) with `importer`, then compare every snapshot and HEAD with the
/// source image's.
fn import_chain(
    dir: &Path,
    img: &str,
    diffs: &[(String, Option<String>)],
    importer: &str,
    ns: Option<&str>,
) {
    let dst = match ns {
        Some(ns) => format!("{ns}/{}", fresh(&format!("rbd/{ns}"), "imp")),
        None => fresh("rbd", "imp"),
    };
    for (file, _) in diffs {
        if importer == "rbd" {
            rbd(
                dir,
                &["import-diff", "--no-progress", file, &format!("rbd/{dst}")],
            );
        } else {
            rbdiff(
                dir,
                &[
                    "import-diff",
                    "--no-progress",
                    file,
                    &format!("rbd:rbd/{dst}"),
                ],
            );
        }
    }
    for (_, s) in diffs {
        let want = export(dir, &at(img, s.as_deref()));
        let got = export(dir, &at(&dst, s.as_deref()));
        assert!(
            want == got,
            "{importer} import-diff of {img}'s chain: {} differs ({} vs {} bytes)",
            at(&dst, s.as_deref()),
            got.len(),
            want.len()
        );
    }
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn rbd_diffs_imported_by_rbdiff() {
    let d = scratch("rbd-to-rbdiff");
    for (img, snaps) in &workload().images {
        let diffs = chain(&d, img, snaps, "rbd");
        import_chain(&d, img, &diffs, "rbdiff", None);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn rbdiff_diffs_imported_by_rbd() {
    let d = scratch("rbdiff-to-rbd");
    for (img, snaps) in &workload().images {
        let diffs = chain(&d, img, snaps, "rbdiff");
        import_chain(&d, img, &diffs, "rbd", None);
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A v1 diff without snapshot names writing `data` at `offset` (rbd
/// import-diff applies it to any image: a way to change one).
fn crafted(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut v = b"rbd diff v1\n".to_vec();
    v.push(b'w');
    v.extend(offset.to_le_bytes());
    v.extend((data.len() as u64).to_le_bytes());
    v.extend(data);
    v.push(b'e');
    v
}

fn snaps_of(dir: &Path, img: &str) -> Vec<String> {
    let o = rbd(
        dir,
        &["snap", "ls", "--format", "json", &format!("rbd/{img}")],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("snap ls json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn sealed_diff_refused_on_drifted_base() {
    let d = scratch("drift");
    let (img, snaps) = &workload().images[0];
    let (s1, s2) = (&snaps[0], &snaps[1]);
    // Where the sealed diff writes: its first extent.
    let o = rbd(
        &d,
        &[
            "diff",
            "--format",
            "json",
            "--from-snap",
            s1,
            &at(img, Some(s2)),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let first = v[0]["offset"].as_u64().expect("an extent");
    sealed_lands_on_its_base_only(&d, img, s1, s2, first + 1, b"drift");
    let _ = std::fs::remove_dir_all(&d);
}

/// rbdiff's sealed diff of `img@s1 -> img@s2`, imported by rbdiff into a
/// copy of `img@s1` (made by rbd), gives `img@s2`'s bytes; into a second
/// copy whose HEAD drifted (`bytes` written at `drift`) it is refused before
/// any write: rc 22, the image unchanged, no end snapshot. The refusal's
/// stderr.
fn sealed_lands_on_its_base_only(
    d: &Path,
    img: &str,
    s1: &str,
    s2: &str,
    drift: u64,
    bytes: &[u8],
) -> String {
    rbdiff(
        d,
        &[
            "export-diff",
            "--no-progress",
            "--integrity",
            "--from-snap",
            s1,
            &format!("rbd:{}", at(img, Some(s2))),
            "sealed",
        ],
    );
    rbd(
        d,
        &["export-diff", "--no-progress", &at(img, Some(s1)), "base"],
    );
    let copy = |what: &str| {
        let name = fresh("rbd", what);
        rbd(
            d,
            &["import-diff", "--no-progress", "base", &at(&name, None)],
        );
        name
    };
    // The right base takes it.
    let good = copy("good");
    rbdiff(
        d,
        &[
            "import-diff",
            "--no-progress",
            "sealed",
            &format!("rbd:{}", at(&good, None)),
        ],
    );
    assert_eq!(
        export(d, &at(&good, Some(s2))),
        export(d, &at(img, Some(s2)))
    );
    // A drifted one is refused before any write.
    let bad = copy("drift");
    std::fs::write(d.join("drift"), crafted(drift, bytes)).unwrap();
    rbd(
        d,
        &["import-diff", "--no-progress", "drift", &at(&bad, None)],
    );
    let before = export(d, &at(&bad, None));
    let o = run(
        bin(),
        d,
        &[
            "import-diff",
            "--no-progress",
            "sealed",
            &format!("rbd:{}", at(&bad, None)),
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(22), "{err}");
    assert!(err.contains("is not the base"), "{err}");
    assert_eq!(export(d, &at(&bad, None)), before, "the image changed");
    assert_eq!(
        snaps_of(d, &bad),
        vec![s1.to_string()],
        "end snapshot created"
    );
    err
}

/// A v1 diff without snapshot names making `len` bytes at `offset` read
/// as zeros.
fn crafted_zero(offset: u64, len: u64) -> Vec<u8> {
    let mut v = b"rbd diff v1\nz".to_vec();
    v.extend(offset.to_le_bytes());
    v.extend(len.to_le_bytes());
    v.push(b'e');
    v
}

/// Records longer than a cluster import's read-ahead (8 MiB: the checks
/// read them 1 MiB at a time): an image of 32 MiB objects whose diff has a
/// 32 MiB `w` and a 32 MiB `z`. The sealed import's base and result checks
/// pass on the right base, and find one byte drifted in the middle of the
/// long `z` range.
#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn sealed_import_of_records_longer_than_the_read_ahead() {
    const M: u64 = 1 << 20;
    let d = scratch("long");
    let src = fresh_name("long");
    let spec = format!("rbd/{src}");
    rbd(
        &d,
        &["create", "--size", "96M", "--object-size", "32M", &spec],
    );
    let fill: Vec<u8> = (0..96 * M)
        .map(|i| (i % 251 + i / 4096).to_le_bytes()[0])
        .collect();
    std::fs::write(d.join("fill"), crafted(0, &fill)).unwrap();
    rbd(&d, &["import-diff", "--no-progress", "fill", &spec]);
    rbd(&d, &["snap", "create", &format!("{spec}@s1")]);
    let new: Vec<u8> = (0..32 * M)
        .map(|i| (i % 241).to_le_bytes()[0] ^ 0x5a)
        .collect();
    std::fs::write(d.join("w"), crafted(0, &new)).unwrap();
    std::fs::write(d.join("z"), crafted_zero(32 * M, 32 * M)).unwrap();
    rbd(&d, &["import-diff", "--no-progress", "w", &spec]);
    rbd(&d, &["import-diff", "--no-progress", "z", &spec]);
    rbd(&d, &["snap", "create", &format!("{spec}@s2")]);
    let o = rbd(
        &d,
        &[
            "diff",
            "--format",
            "json",
            "--from-snap",
            "s1",
            &format!("{spec}@s2"),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let long: Vec<(u64, &str)> = v
        .as_array()
        .expect("extents")
        .iter()
        .map(|e| (e["length"].as_u64().unwrap(), e["exists"].as_str().unwrap()))
        .filter(|&(l, _)| l > 8 * M)
        .collect();
    assert_eq!(long, vec![(32 * M, "true"), (32 * M, "false")], "{v}");
    let err = sealed_lands_on_its_base_only(&d, &src, "s1", "s2", 32 * M + 17 * M + 3, b"!");
    assert!(err.contains(&format!("offset {}", 32 * M)), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

/// An image v2 stream whose `conf_` image-meta value librbd refuses:
/// rbd's import fails with its two lines and rc 22, and so does rbdiff's,
/// into a cluster image (leaving none behind, where rbd's own removal
/// fails on its open handle) and into the store.
#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn import_refuses_bad_image_meta_as_rbd() {
    let d = scratch("badmeta");
    let src = fresh("rbd", "meta");
    rbd(
        &d,
        &[
            "image-meta",
            "set",
            &format!("rbd/{src}"),
            "conf_rbd_cache",
            "true",
        ],
    );
    rbd(
        &d,
        &[
            "export",
            "--no-progress",
            "--export-format",
            "2",
            &format!("rbd/{src}"),
            "good.v2",
        ],
    );
    let mut v2 = std::fs::read(d.join("good.v2")).unwrap();
    let at = v2.windows(4).position(|w| w == b"true").expect("the value");
    v2[at..at + 4].copy_from_slice(b"xyzw");
    std::fs::write(d.join("bad.v2"), &v2).unwrap();
    let lines = |o: &Output| -> Vec<String> {
        String::from_utf8_lossy(&o.stderr)
            .lines()
            .filter(|l| l.starts_with("rbd:"))
            .map(str::to_string)
            .collect()
    };
    let theirs = run(
        Path::new("rbd"),
        &d,
        &[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            "bad.v2",
            &format!("rbd/{}", fresh_name("rbdbad")),
        ],
    );
    let name = fresh_name("mebad");
    let mine = run(
        bin(),
        &d,
        &[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            "bad.v2",
            &format!("rbd:rbd/{name}"),
        ],
    );
    assert_eq!(theirs.status.code(), Some(22));
    assert_eq!(mine.status.code(), Some(22));
    assert_eq!(lines(&mine), lines(&theirs));
    assert_eq!(
        lines(&mine),
        [
            "rbd: failed to import image-meta",
            "rbd: import failed: (22) Invalid argument"
        ]
    );
    let o = run(Path::new("rbd"), &d, &["info", &format!("rbd/{name}")]);
    assert_eq!(o.status.code(), Some(2), "rbdiff left the image behind");
    let store = run(
        bin(),
        &d,
        &[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            "bad.v2",
            "inthestore",
        ],
    );
    assert_eq!(store.status.code(), Some(22));
    assert_eq!(lines(&store), lines(&theirs));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn interrupted_import_resumes() {
    let d = scratch("resume");
    let (img, snaps) = &workload().images[0];
    let (s1, s2) = (&snaps[0], &snaps[1]);
    rbd(
        &d,
        &["export-diff", "--no-progress", &at(img, Some(s1)), "base"],
    );
    rbdiff(
        &d,
        &[
            "export-diff",
            "--no-progress",
            "--integrity",
            "--from-snap",
            s1,
            &format!("rbd:{}", at(img, Some(s2))),
            "next",
        ],
    );
    let len = std::fs::metadata(d.join("next")).unwrap().len();
    let dst = fresh("rbd", "resume");
    rbd(
        &d,
        &[
            "import-diff",
            "--no-progress",
            "base",
            &format!("rbd/{dst}"),
        ],
    );
    let o = Command::new(bin())
        .current_dir(&d)
        .env("RBDIFF_RESUME_INTERVAL", "65536")
        .env("RBDIFF_TEST_CRASH_AFTER", (len / 2).to_string())
        .args([
            "import-diff",
            "--no-progress",
            "next",
            &format!("rbd:rbd/{dst}"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(99),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(d.join("next.rbdiff-resume").exists(), "no journal");
    assert_eq!(snaps_of(&d, &dst), vec![s1.clone()]);
    let o = rbdiff(
        &d,
        &[
            "import-diff",
            "--no-progress",
            "--resume",
            "next",
            &format!("rbd:rbd/{dst}"),
        ],
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("resuming"),
        "did not resume"
    );
    assert!(!d.join("next.rbdiff-resume").exists(), "journal left");
    assert_eq!(
        export(&d, &at(&dst, Some(s2))),
        export(&d, &at(img, Some(s2)))
    );
    assert_eq!(snaps_of(&d, &dst), vec![s1.clone(), s2.clone()]);
    let _ = std::fs::remove_dir_all(&d);
}

fn sh(dir: &Path, script: &str) -> Output {
    shell(dir, script, &[])
}

/// `bash -e -o pipefail -c script` with `env` set.
fn shell(dir: &Path, script: &str, env: &[(&str, &str)]) -> Output {
    let o = Command::new("bash")
        .current_dir(dir)
        .args(["-e", "-o", "pipefail", "-c", script])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&o, script);
    o
}

/// Create pool `pool` (size 1) for rbd, if it is not there yet.
fn rbd_pool(dir: &Path, pool: &str) {
    rbd_pool_on(dir, None, pool);
}

/// Create pool `pool` (size 1) for rbd on the cluster of `conf` (default:
/// $CEPH_CONF), if it is not there yet.
fn rbd_pool_on(dir: &Path, conf: Option<&str>, pool: &str) {
    let on: Vec<&str> = conf.map_or(vec![], |c| vec!["-c", c]);
    let ceph = |args: &[&str]| run(Path::new("ceph"), dir, &[&on[..], args].concat());
    let _ = ceph(&["osd", "pool", "create", pool, "8", "8"]);
    let _ = ceph(&[
        "osd",
        "pool",
        "set",
        pool,
        "size",
        "1",
        "--yes-i-really-mean-it",
    ]);
    let _ = run(
        Path::new("rbd"),
        dir,
        &[&on[..], &["pool", "init", pool]].concat(),
    );
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn dr_pipeline_between_pools() {
    let d = scratch("dr");
    let pool = "rbdiff-dr";
    rbd_pool(&d, pool);
    let (img, snaps) = &workload().images[1];
    let dst = fresh(pool, "dr");
    let b = bin().display().to_string();
    let mut prev: Option<&String> = None;
    for s in snaps {
        let from = prev.map_or(String::new(), |p| format!("--from-snap {p}"));
        sh(
            &d,
            &format!(
                "{b} export-diff --no-progress --integrity {from} rbd:{} - | {b} import-diff --no-progress - rbd:{pool}/{dst}",
                at(img, Some(s))
            ),
        );
        assert_eq!(
            export(&d, &format!("{pool}/{dst}@{s}")),
            export(&d, &at(img, Some(s))),
            "DR copy at {s}"
        );
        prev = Some(s);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn errors_as_rbd() {
    let d = scratch("errors");
    let (img, _) = &workload().images[0];
    let cases: [(&str, &[&str]); 5] = [
        ("nopool", &["export-diff", "nopool/x", "o"]),
        ("nonamespace", &["export-diff", "rbd/no-such-ns/x", "o"]),
        ("noimage", &["export-diff", "rbd/no-such-image", "o"]),
        (
            "nosnap",
            &["export-diff", &format!("rbd/{img}@no-such-snap"), "o"],
        ),
        (
            "nofrom",
            &[
                "export-diff",
                "--from-snap",
                "no-such-snap",
                &format!("rbd/{img}"),
                "o",
            ],
        ),
    ];
    for (what, args) in cases {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let want = run(
            Path::new("rbd"),
            &d,
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let i = a.len() - 2;
        a[i] = format!("rbd:{}", a[i]);
        a.insert(1, "--no-progress".into());
        let got = run(bin(), &d, &a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(got.status.code(), want.status.code(), "{what}");
        let last = |o: &Output| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(last(&got), last(&want), "{what}");
        assert!(!d.join("o").exists(), "{what}: output left");
    }
    // An unreachable cluster: a clear error within the timeout.
    std::fs::write(
        d.join("dead.conf"),
        "[global]\nmon host = v1:127.0.0.1:9\nauth client required = none\nms bind msgr2 = false\n",
    )
    .unwrap();
    let t = std::time::Instant::now();
    let o = run(
        bin(),
        &d,
        &[
            "export-diff",
            "--cluster-timeout",
            "3",
            "rbd:rbd/x:conf=dead.conf",
            "o",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(110),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("couldn't connect to the cluster"));
    assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
    let _ = std::fs::remove_dir_all(&d);
}

/// `export --export-format 2 SPEC OUT` by `tool` (rbdiff gets `rbd:SPEC`).
fn export_v2(d: &Path, tool: &str, spec: &str, out: &str) {
    if tool == "rbd" {
        rbd(
            d,
            &["export", "--no-progress", "--export-format", "2", spec, out],
        );
    } else {
        let cspec = format!("rbd:{spec}");
        rbdiff(
            d,
            &[
                "export",
                "--no-progress",
                "--export-format",
                "2",
                &cspec,
                out,
            ],
        );
    }
}

/// `import --export-format 2 FILE SPEC` by `tool`.
fn import_v2(d: &Path, tool: &str, file: &str, spec: &str) {
    if tool == "rbd" {
        rbd(
            d,
            &[
                "import",
                "--no-progress",
                "--export-format",
                "2",
                file,
                spec,
            ],
        );
    } else {
        let cspec = format!("rbd:{spec}");
        rbdiff(
            d,
            &[
                "import",
                "--no-progress",
                "--export-format",
                "2",
                file,
                &cspec,
            ],
        );
    }
}

fn same_files(d: &Path, a: &str, b: &str, what: &str) {
    let (x, y) = (
        std::fs::read(d.join(a)).unwrap(),
        std::fs::read(d.join(b)).unwrap(),
    );
    assert!(
        x == y,
        "{what}: {a} ({} bytes) and {b} ({} bytes) differ",
        x.len(),
        y.len()
    );
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn export_format_2_round_trips() {
    let d = scratch("v2");
    for (img, snaps) in &workload().images {
        let (a, b) = (format!("rbd.{img}.v2"), format!("rbdiff.{img}.v2"));
        export_v2(&d, "rbd", &format!("rbd/{img}"), &a);
        export_v2(&d, "rbdiff", &format!("rbd/{img}"), &b);
        same_files(&d, &a, &b, "export v2");
        // raw export, file and stdout
        let last = snaps.last().map(String::as_str);
        rbdiff(
            &d,
            &[
                "export",
                "--no-progress",
                &format!("rbd:{}", at(img, last)),
                "raw",
            ],
        );
        assert!(
            std::fs::read(d.join("raw")).unwrap() == export(&d, &at(img, last)),
            "{img}: raw export"
        );
        let o = rbdiff(
            &d,
            &["export", "--no-progress", &format!("rbd:rbd/{img}"), "-"],
        );
        assert!(
            o.stdout == export(&d, &format!("rbd/{img}")),
            "{img}: raw export to stdout"
        );
        std::fs::remove_file(d.join("raw")).unwrap();
        // rbdiff imports rbd's export, rbd imports rbdiff's: the same images
        // as rbd's own round trip, at every snapshot and HEAD.
        let (x, y, z) = (fresh_name("v2x"), fresh_name("v2y"), fresh_name("v2z"));
        import_v2(&d, "rbdiff", &a, &format!("rbd/{x}"));
        import_v2(&d, "rbd", &b, &format!("rbd/{y}"));
        import_v2(&d, "rbd", &a, &format!("rbd/{z}"));
        for s in snaps.iter().map(|s| Some(s.as_str())).chain([None]) {
            let want = export(&d, &at(img, s));
            assert!(
                export(&d, &at(&x, s)) == want,
                "rbdiff import of {img} at {s:?}"
            );
            assert!(
                export(&d, &at(&y, s)) == want,
                "rbd import of rbdiff's {img} at {s:?}"
            );
        }
        let (ex, ez) = (format!("{x}.v2"), format!("{z}.v2"));
        export_v2(&d, "rbd", &format!("rbd/{x}"), &ex);
        export_v2(&d, "rbd", &format!("rbd/{z}"), &ez);
        same_files(&d, &ex, &ez, "rbdiff's import vs rbd's");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// A fresh image name (not created).
fn fresh_name(what: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{what}{}y{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn diff_equals_rbd() {
    let d = scratch("diff");
    let mut nonempty = 0;
    for (img, from, to) in steps() {
        for fmt in [
            &["--format", "plain"][..],
            &["--format", "json"],
            &["--format", "xml", "--pretty-format"],
        ] {
            for whole in [false, true] {
                let mut args: Vec<&str> = vec!["diff"];
                args.extend(fmt);
                if whole {
                    args.push("--whole-object");
                }
                if let Some(f) = &from {
                    args.extend(["--from-snap", f]);
                }
                let spec = at(&img, to.as_deref());
                let cspec = format!("rbd:{spec}");
                let want = rbd(&d, &[&args[..], &[spec.as_str()]].concat()).stdout;
                let got = rbdiff(&d, &[&args[..], &[cspec.as_str()]].concat()).stdout;
                nonempty += usize::from(!want.is_empty());
                assert!(
                    want == got,
                    "{args:?} {spec}:\n{}\nvs rbd's\n{}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }
    assert!(nonempty >= 60, "only {nonempty} listings had extents");
    let _ = std::fs::remove_dir_all(&d);
}

/// What `snap ls --format json` lists: (id, name, size, protected); rbd
/// also prints a timestamp, rbdiff does not.
fn snap_rows(v: &serde_json::Value) -> Vec<(u64, String, u64, String)> {
    v.as_array()
        .expect("snap ls: an array")
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().expect(k).to_string();
            (
                s["id"].as_u64().expect("id"),
                text("name"),
                s["size"].as_u64().expect("size"),
                text("protected"),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn create_and_snapshots() {
    let d = scratch("snap");
    let img = fresh_name("mk");
    let c = format!("rbd:rbd/{img}");
    rbdiff(&d, &["create", "--size", "8", "--object-size", "1M", &c]);
    let o = rbd(&d, &["info", "--format", "json", &format!("rbd/{img}")]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["size"].as_u64(), v["order"].as_u64()),
        (Some(8 << 20), Some(20))
    );
    rbdiff(&d, &["snap", "create", &format!("{c}@one")]);
    rbd(
        &d,
        &[
            "resize",
            "--size",
            "4",
            "--allow-shrink",
            &format!("rbd/{img}"),
        ],
    );
    rbdiff(&d, &["snap", "create", &format!("{c}@two")]);
    let mine: serde_json::Value =
        serde_json::from_slice(&rbdiff(&d, &["snap", "ls", "--format", "json", &c]).stdout)
            .unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(
        &rbd(
            &d,
            &["snap", "ls", "--format", "json", &format!("rbd/{img}")],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(snap_rows(&mine), snap_rows(&theirs));
    assert_eq!(
        snap_rows(&mine).iter().map(|s| s.2).collect::<Vec<_>>(),
        vec![8 << 20, 4 << 20]
    );
    // `snap ls` prints rbd's bytes: its table (sizes as "8 MiB", the
    // protection, the timestamps) and its JSON (keys in rbd's order).
    rbd(&d, &["snap", "protect", &format!("rbd/{img}@one")]);
    for f in ["plain", "json"] {
        let mine = rbdiff(&d, &["snap", "ls", "--format", f, &c]).stdout;
        let theirs = rbd(&d, &["snap", "ls", "--format", f, &format!("rbd/{img}")]).stdout;
        assert_eq!(
            String::from_utf8_lossy(&mine),
            String::from_utf8_lossy(&theirs),
            "snap ls --format {f}"
        );
        assert!(String::from_utf8_lossy(&mine).contains("yes") || f == "json");
    }
    rbd(&d, &["snap", "unprotect", &format!("rbd/{img}@one")]);
    let o = run(bin(), &d, &["snap", "create", &format!("{c}@one")]);
    assert_eq!(
        o.status.code(),
        Some(17),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// The second cluster `scripts/test-cluster.sh` starts (cephx required):
/// its configuration (client.admin's keyring found through it), the
/// restricted user (caps `mon 'profile rbd' osd 'profile rbd pool=rbd'`)
/// and that user's keyring.
struct Auth {
    conf: String,
    user: String,
    keyring: String,
}

fn auth() -> Auth {
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| {
            panic!("{k} is not set: {NEEDS} (it starts a second cluster, with cephx)")
        })
    };
    Auth {
        conf: var("RBDIFF_AUTH_CONF"),
        user: var("RBDIFF_AUTH_USER"),
        keyring: var("RBDIFF_AUTH_KEYRING"),
    }
}

/// Random writes of 64 KiB over `spec` (`rbd bench`), `total` in all, on
/// the cluster of `conf` (default: $CEPH_CONF).
fn scribble(dir: &Path, conf: Option<&str>, spec: &str, total: &str) {
    let mut a: Vec<&str> = conf.map_or(vec![], |c| vec!["-c", c]);
    a.extend([
        "bench",
        "--io-type",
        "write",
        "--io-size",
        "65536",
        "--io-pattern",
        "rand",
        "--io-total",
        total,
        spec,
    ]);
    rbd(dir, &a);
}

/// `rbd -c CONF export SPEC -`.
fn export_on(dir: &Path, conf: &str, spec: &str) -> Vec<u8> {
    rbd(dir, &["-c", conf, "export", "--no-progress", spec, "-"]).stdout
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn auth_id_keyring_cluster_and_spec() {
    let d = scratch("auth");
    let a = auth();
    let c = a.conf.as_str();
    let spec = format!("rbd/{}", fresh_name("auth"));
    rbd(&d, &["-c", c, "create", "--size", "8M", &spec]);
    scribble(&d, Some(c), &spec, "2M");
    rbd(&d, &["-c", c, "snap", "create", &format!("{spec}@s1")]);
    scribble(&d, Some(c), &spec, "1M");
    rbd(&d, &["-c", c, "snap", "create", &format!("{spec}@s2")]);
    let s2 = format!("{spec}@s2");
    let who = ["-c", c, "--id", &a.user, "--keyring", &a.keyring];
    let inc = ["export-diff", "--no-progress", "--from-snap", "s1"];
    // rbd as the restricted user
    rbd(
        &d,
        &[
            &who[..],
            &[
                "export-diff",
                "--no-progress",
                &format!("{spec}@s1"),
                "full",
            ],
        ]
        .concat(),
    );
    rbd(&d, &[&who[..], &inc, &[s2.as_str(), "want"]].concat());
    // rbdiff: flags, the spec's conf= and id= (keyring found through the
    // configuration), and --cluster NAME (./NAME.conf) with --user.
    let cs2 = format!("rbd:{s2}");
    rbdiff(&d, &[&who[..], &inc, &[cs2.as_str(), "flags"]].concat());
    same_files(&d, "want", "flags", "--id --keyring");
    let in_spec = format!("rbd:{s2}:conf={c}:id={}", a.user);
    rbdiff(&d, &[&inc[..], &[in_spec.as_str(), "spec"]].concat());
    same_files(&d, "want", "spec", ":conf=:id=");
    std::os::unix::fs::symlink(c, d.join("site-b.conf")).unwrap();
    let o = Command::new(bin())
        .current_dir(&d)
        .env_remove("CEPH_CONF")
        .args(
            [
                &["--cluster", "site-b", "--user", &a.user][..],
                &inc,
                &[cs2.as_str(), "named"],
            ]
            .concat(),
        )
        .output()
        .unwrap();
    ok(&o, "rbdiff --cluster site-b --user");
    same_files(&d, "want", "named", "--cluster --user");
    // CEPH_ARGS, as rbd reads it: the early --name/--id, and options
    let with_args = |prog: &Path, args: &[&str], ceph_args: &str| {
        Command::new(prog)
            .current_dir(&d)
            .env("CEPH_ARGS", ceph_args)
            .args(args)
            .output()
            .unwrap()
    };
    let o = with_args(
        bin(),
        &[&["-c", c][..], &inc, &[cs2.as_str(), "envargs"]].concat(),
        &format!("--name client.{} --keyring {}", a.user, a.keyring),
    );
    ok(&o, "rbdiff with CEPH_ARGS");
    same_files(&d, "want", "envargs", "CEPH_ARGS");
    let nobody = |prog: &Path, spec: &str| {
        with_args(prog, &["-c", c, "export-diff", spec, "o"], "--id nobody")
    };
    let (want, got) = (nobody(Path::new("rbd"), &s2), nobody(bin(), &cs2));
    assert!(!want.status.success(), "rbd ignored CEPH_ARGS' --id");
    assert_eq!(
        got.status.code(),
        want.status.code(),
        "CEPH_ARGS=--id nobody"
    );
    assert_eq!(last_err(&got), last_err(&want), "CEPH_ARGS=--id nobody");
    // writes as the restricted user, both spellings
    let copy = format!("rbd/{}", fresh_name("authcopy"));
    rbd(&d, &["-c", c, "create", "--size", "1M", &copy]);
    let ccopy = format!("rbd:{copy}:conf={c}:id={}", a.user);
    rbdiff(&d, &["import-diff", "--no-progress", "full", &ccopy]);
    rbdiff(
        &d,
        &[
            &who[..],
            &[
                "import-diff",
                "--no-progress",
                "flags",
                &format!("rbd:{copy}"),
            ],
        ]
        .concat(),
    );
    for s in ["s1", "s2"] {
        assert!(
            export_on(&d, c, &format!("{copy}@{s}")) == export_on(&d, c, &format!("{spec}@{s}")),
            "import-diff as client.{} at {s}",
            a.user
        );
    }
    auth_errors(&d, &a, &s2);
    let _ = std::fs::remove_dir_all(&d);
}

/// A wrong key, an unknown id, an id missing from the keyring, a pool
/// outside the user's caps: rbd's message and exit code, quickly, and
/// nothing written.
fn auth_errors(d: &Path, a: &Auth, src: &str) {
    let c = a.conf.as_str();
    rbd_pool_on(d, Some(c), "rbdiff-nocaps");
    let other = format!("rbdiff-nocaps/{}", fresh_name("nocaps"));
    rbd(d, &["-c", c, "create", "--size", "1M", &other]);
    let cother = format!("rbd:{other}");
    std::fs::write(
        d.join("wrong.keyring"),
        format!(
            "[client.{}]\n\tkey = AQBKm1Rn8W1kKBAAc1vTfZ9c0Bq4q4vN7Jx0Zw==\n",
            a.user
        ),
    )
    .unwrap();
    let csrc = format!("rbd:{src}");
    let bad_spec = format!("{csrc}:conf={c}:id=nobody");
    let wrong = ["-c", c, "--id", &a.user, "--keyring", "wrong.keyring"];
    let nobody = ["-c", c, "--id", "nobody"];
    let nobody_k = ["-c", c, "--id", "nobody", "--keyring", &a.keyring];
    let who = ["-c", c, "--id", &a.user, "--keyring", &a.keyring];
    /// `export-diff SPEC o` after `flags`: rbd's and rbdiff's.
    fn both<'a>(flags: &[&'a str], spec: &'a str, cspec: &'a str) -> (Vec<&'a str>, Vec<&'a str>) {
        let ed = |s: &'a str| [flags, &["export-diff", s, "o"][..]].concat();
        (ed(spec), ed(cspec))
    }
    let cases = [
        ("a pool outside the caps", both(&who, &other, &cother)),
        ("wrong key", both(&wrong, src, &csrc)),
        ("unknown id", both(&nobody, src, &csrc)),
        ("id not in the keyring", both(&nobody_k, src, &csrc)),
        (
            "unknown id= in the spec",
            (
                both(&nobody, src, &csrc).0,
                both(&[], &bad_spec, &bad_spec).1,
            ),
        ),
        (
            "import-diff with a wrong key",
            (
                [&wrong[..], &["import-diff", "want", "rbd/x"]].concat(),
                [&wrong[..], &["import-diff", "want", "rbd:rbd/x"]].concat(),
            ),
        ),
    ];
    for (what, (rbd_args, args)) in cases {
        let want = run(Path::new("rbd"), d, &rbd_args);
        assert!(!want.status.success(), "{what}: rbd succeeded");
        let t = std::time::Instant::now();
        let got = run(bin(), d, &args);
        assert!(t.elapsed().as_secs() < 20, "{what}: took {:?}", t.elapsed());
        assert_eq!(
            got.status.code(),
            want.status.code(),
            "{what}: {}",
            String::from_utf8_lossy(&got.stderr)
        );
        assert_eq!(last_err(&got), last_err(&want), "{what}");
        assert!(!d.join("o").exists(), "{what}: output left");
    }
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn namespaces_as_rbd() {
    let d = scratch("ns");
    let ns = format!("ns{}", std::process::id());
    rbd(&d, &["namespace", "create", &format!("rbd/{ns}")]);
    let images = make_workload(&format!("rbd/{ns}"), "n");
    assert_eq!(images.len(), 3, "{images:?}");
    for (name, snaps) in &images {
        let img = format!("{ns}/{name}");
        let mut prev: Option<&String> = None;
        for s in snaps.iter().map(Some).chain([None]) {
            let spec = at(&img, s.map(String::as_str));
            let cspec = format!("rbd:{spec}");
            let from = prev.map_or(vec![], |p| vec!["--from-snap", p.as_str()]);
            for whole in [&[][..], &["--whole-object"]] {
                let ed = [&["export-diff", "--no-progress"][..], whole, &from].concat();
                rbd(&d, &[&ed[..], &[spec.as_str(), "a"]].concat());
                rbdiff(&d, &[&ed[..], &[cspec.as_str(), "b"]].concat());
                same_files(&d, "a", "b", &format!("{ed:?} {spec}"));
                for f in ["a", "b"] {
                    std::fs::remove_file(d.join(f)).unwrap();
                }
                let df = [&["diff", "--format", "json"][..], whole, &from].concat();
                let want = rbd(&d, &[&df[..], &[spec.as_str()]].concat()).stdout;
                let got = rbdiff(&d, &[&df[..], &[cspec.as_str()]].concat()).stdout;
                assert!(want == got, "{df:?} {spec}");
            }
            prev = s;
        }
        let diffs = chain(&d, &img, snaps, "rbd");
        import_chain(&d, &img, &diffs, "rbdiff", Some(&ns));
        let (v2, v2b) = (format!("{name}.v2.rbd"), format!("{name}.v2.rbdiff"));
        export_v2(&d, "rbd", &format!("rbd/{img}"), &v2);
        export_v2(&d, "rbdiff", &format!("rbd/{img}"), &v2b);
        same_files(&d, &v2, &v2b, &format!("export v2 of {img}"));
        let x = format!("{ns}/{}", fresh_name("nsv2"));
        import_v2(&d, "rbdiff", &v2, &format!("rbd/{x}"));
        for s in snaps.iter().map(|s| Some(s.as_str())).chain([None]) {
            assert!(
                export(&d, &at(&x, s)) == export(&d, &at(&img, s)),
                "rbdiff import of {img} into {x} at {s:?}"
            );
            let o = rbdiff(
                &d,
                &[
                    "export",
                    "--no-progress",
                    &format!("rbd:{}", at(&img, s)),
                    "-",
                ],
            );
            assert!(o.stdout == export(&d, &at(&img, s)), "export {img} {s:?}");
        }
        // format 1: HEAD's raw bytes into a new namespace image
        let raw = format!("{name}.raw");
        rbd(
            &d,
            &["export", "--no-progress", &format!("rbd/{img}"), &raw],
        );
        let y = format!("{ns}/{}", fresh_name("nsraw"));
        rbdiff(
            &d,
            &["import", "--no-progress", &raw, &format!("rbd:rbd/{y}")],
        );
        assert!(
            export(&d, &format!("rbd/{y}")) == export(&d, &format!("rbd/{img}")),
            "rbdiff import of {raw} into {y}"
        );
        let cx = format!("rbd:rbd/{x}");
        rbdiff(&d, &["snap", "create", &format!("{cx}@extra")]);
        let ls = |o: Output| serde_json::from_slice(&o.stdout).expect("snap ls json");
        let mine = snap_rows(&ls(rbdiff(&d, &["snap", "ls", "--format", "json", &cx])));
        let theirs = snap_rows(&ls(rbd(
            &d,
            &["snap", "ls", "--format", "json", &format!("rbd/{x}")],
        )));
        assert_eq!(mine, theirs, "snap ls {x}");
        let names: Vec<&str> = mine.iter().map(|s| s.1.as_str()).collect();
        let want: Vec<&str> = snaps.iter().map(String::as_str).chain(["extra"]).collect();
        assert_eq!(names, want, "snapshots of {x}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// The shell blocks of README.md's "With a Ceph cluster" section: the
/// build line, backup into the store, restore, DR between two clusters.
fn readme_blocks() -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join("README.md")).expect("README.md");
    let at = text
        .find("## With a Ceph cluster")
        .expect("the README's cluster section");
    let sec = &text[at..];
    let sec = &sec[..sec[3..].find("\n## ").map_or(sec.len(), |i| i + 3)];
    let blocks: Vec<String> = sec
        .split("```sh\n")
        .skip(1)
        .map(|b| b[..b.find("```").expect("closed block")].to_string())
        .collect();
    assert_eq!(blocks.len(), 4, "the README's cluster section: {blocks:#?}");
    blocks
}

/// `block` with `subs` applied and the word `vm` (the image) renamed, cut
/// at the line where the VM writes: (before, after).
fn recipe(block: &str, subs: &[(&str, &str)], image: &str) -> (String, String) {
    let mut s = block.to_string();
    for (a, b) in subs {
        s = s.replace(a, b);
    }
    let mut out = String::new();
    let mut rest = s.as_str();
    let edge = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric() && c != '_');
    while let Some(i) = rest.find("vm") {
        let whole = edge(rest[..i].chars().last()) && edge(rest[i + 2..].chars().next());
        out.push_str(&rest[..i]);
        out.push_str(if whole { image } else { "vm" });
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    match out.split_once("# ... the VM writes, then:\n") {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (out, String::new()),
    }
}

/// A directory holding `rbdiff` (the binary under test), for PATH.
fn bin_dir(d: &Path) -> String {
    let dir = d.join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(bin(), dir.join("rbdiff")).unwrap();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// The VM's writes between two backups: data, then a grow.
fn vm_writes(d: &Path, conf: Option<&str>, spec: &str) {
    scribble(d, conf, spec, "1M");
    let mut a: Vec<&str> = conf.map_or(vec![], |c| vec!["-c", c]);
    a.extend(["resize", "--no-progress", "--size", "12M", spec]);
    rbd(d, &a);
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn readme_backup_and_restore() {
    let d = scratch("readme");
    let blocks = readme_blocks();
    let name = fresh_name("vm");
    let src = format!("rbd/{name}");
    rbd(&d, &["create", "--size", "8M", &src]);
    scribble(&d, None, &src, "2M");
    let pool = "rbdiff-restore";
    rbd_pool(&d, pool);
    let store = d.join("store").display().to_string();
    let path = bin_dir(&d);
    let env = [("PATH", path.as_str()), ("RBDIFF_STORE", store.as_str())];
    let in_store = |snap: &str| shell(&d, &format!("rbdiff export {name}@{snap} -"), &env).stdout;
    let (full, inc) = recipe(&blocks[1], &[], &name);
    shell(&d, &full, &env);
    assert!(
        in_store("mon") == export(&d, &format!("{src}@mon")),
        "store at mon"
    );
    vm_writes(&d, None, &src);
    shell(&d, &inc, &env);
    assert!(
        in_store("tue") == export(&d, &format!("{src}@tue")),
        "store at tue"
    );
    let (restore, _) = recipe(&blocks[2], &[("restore/", &format!("{pool}/"))], &name);
    shell(&d, &restore, &env);
    assert!(
        export(&d, &format!("{pool}/{name}@tue")) == export(&d, &format!("{src}@tue")),
        "restored at tue"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn dr_between_two_clusters() {
    let d = scratch("dr2");
    let b = auth();
    let a_conf = std::env::var("CEPH_CONF").unwrap_or_else(|_| panic!("CEPH_CONF: {NEEDS}"));
    let name = fresh_name("dr2");
    let src = format!("rbd/{name}");
    rbd(&d, &["create", "--size", "8M", &src]);
    scribble(&d, None, &src, "2M");
    let path = bin_dir(&d);
    let env = [("PATH", path.as_str())];
    let subs = [
        ("/etc/ceph/site-a.conf", a_conf.as_str()),
        ("/etc/ceph/site-b.conf", b.conf.as_str()),
        ("ssh dr ", ""),
    ];
    let (full, inc) = recipe(&readme_blocks()[3], &subs, &name);
    assert!(full.contains(&format!(":id={}", b.user)), "{full}");
    let same = |dst: &str, snap: &str| {
        export_on(&d, &b.conf, &format!("rbd/{dst}@{snap}")) == export(&d, &format!("{src}@{snap}"))
    };
    shell(&d, &full, &env);
    assert!(same(&name, "mon"), "DR copy at mon");
    vm_writes(&d, None, &src);
    let o = shell(&d, &inc, &env);
    assert!(same(&name, "tue"), "DR copy at tue");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the base could not be checked before writing; stream verified"),
        "the import from the pipe does not say what it checked: {err}"
    );
    dr_refusals(&d, &b, &src, &env);
    // Mixed: rbd's diffs from cluster A imported by rbdiff into cluster B,
    // and rbdiff's sealed diffs imported by rbd (it stops at the 'e').
    let c = b.conf.as_str();
    let pipes = [
        (
            "rbd export-diff --no-progress",
            src.clone(),
            format!("rbdiff import-diff --no-progress - rbd:rbd/MIX:conf={c}"),
        ),
        (
            "rbdiff export-diff --no-progress --integrity",
            format!("rbd:{src}"),
            format!("rbd -c {c} import-diff --no-progress - rbd/MIX"),
        ),
    ];
    for (export, from_spec, import) in pipes {
        let mix = fresh_name("mix");
        rbd(
            &d,
            &["-c", c, "create", "--size", "1M", &format!("rbd/{mix}")],
        );
        for from in ["", "--from-snap mon "] {
            let snap = if from.is_empty() { "mon" } else { "tue" };
            let import = import.replace("MIX", &mix);
            shell(
                &d,
                &format!("{export} {from}{from_spec}@{snap} - | {import}"),
                &env,
            );
            assert!(same(&mix, snap), "{export} | {import}: at {snap}");
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// `rbd info` and `rbdiff info` of `spec` (rbdiff gets `rbd:SPEC`) in
/// plain, JSON and pretty JSON: the same bytes (both read the same image,
/// so ids and timestamps are equal too). rbd runs before and after rbdiff:
/// when another test's reads moved the image's access time in between,
/// the comparison is made again.
fn same_info(d: &Path, spec: &str) {
    for fmt in [
        &["--format", "plain"][..],
        &["--format", "json"],
        &["--format", "json", "--pretty-format"],
    ] {
        let cspec = format!("rbd:{spec}");
        let mut tries = 0;
        let (got, want) = loop {
            let before = rbd(d, &[&["info"], fmt, &[spec]].concat()).stdout;
            let got = rbdiff(d, &[&["info"], fmt, &[cspec.as_str()]].concat()).stdout;
            let after = rbd(d, &[&["info"], fmt, &[spec]].concat()).stdout;
            tries += 1;
            if before == after || tries == 3 {
                break (got, after);
            }
        };
        assert!(
            want == got,
            "info {fmt:?} {spec}:\n{}\nvs rbd's\n{}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
}

/// The last line rbd or rbdiff printed on stderr (not counting rbdiff's
/// own detail lines, blank lines, or librados' log lines: those start with
/// a timestamp, `2026-12-06T07:49:44.840+0000 7f82… -1 …`, and come from
/// other threads, before or after rbd's own message).
fn last_err(o: &Output) -> String {
    let log = |l: &str| {
        let b = l.as_bytes();
        b.len() > 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
    };
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .rfind(|l| !l.starts_with("rbdiff: ") && !l.trim().is_empty() && !log(l))
        .unwrap_or("")
        .to_string()
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn info_equals_rbd() {
    let d = scratch("info");
    let mut shown = 0;
    for (img, snaps) in &workload().images {
        same_info(&d, &format!("rbd/{img}"));
        for s in snaps {
            same_info(&d, &format!("rbd/{img}@{s}"));
        }
        shown += 1;
    }
    assert!(shown >= 2, "the workload has {shown} images");
    // What the workload lacks: a data pool, a namespace, a clone in it with
    // a snapshot limit and a group, journaling, mirroring (both modes), a
    // clone whose parent is in the trash, invalid object map flags.
    let pool = fresh_name("infodp");
    let ns = fresh_name("ns");
    sh(
        &d,
        &format!(
            "set -e
             ceph osd pool create {pool} 8 >/dev/null 2>&1
             rbd pool init {pool}
             rbd namespace create rbd/{ns}
             rbd create --size 5M --data-pool {pool} rbd/{ns}/d
             rbd snap create --no-progress rbd/{ns}/d@x
             rbd snap protect rbd/{ns}/d@x
             rbd clone rbd/{ns}/d@x rbd/{ns}/dc
             rbd snap limit set --limit 7 rbd/{ns}/dc
             rbd group create rbd/{ns}/g
             rbd group image add rbd/{ns}/g rbd/{ns}/dc
             rbd create --size 3M --stripe-unit 64K --stripe-count 4 \
                 --image-feature layering,striping,exclusive-lock,journaling {pool}/j
             rbd mirror pool enable {pool} image
             rbd create --size 1M {pool}/ms
             rbd mirror image enable {pool}/ms snapshot
             rbd create --size 1M --image-feature exclusive-lock,journaling {pool}/mj
             rbd mirror image enable {pool}/mj journal
             rbd create --size 2M rbd/{ns}/tp
             rbd snap create --no-progress rbd/{ns}/tp@s
             rbd clone --rbd-default-clone-format 2 rbd/{ns}/tp@s rbd/{ns}/tc
             rbd trash mv rbd/{ns}/tp
             rbd create --size 1M --image-feature layering,exclusive-lock {pool}/fl
             rbd feature enable {pool}/fl object-map fast-diff"
        ),
    );
    for spec in [
        format!("rbd/{ns}/d"),
        format!("rbd/{ns}/d@x"),
        format!("rbd/{ns}/dc"),
        format!("{pool}/j"),
        format!("{pool}/ms"),
        format!("{pool}/mj"),
        format!("rbd/{ns}/tc"),
        format!("{pool}/fl"),
    ] {
        same_info(&d, &spec);
    }
    let show = |spec: &str| {
        String::from_utf8(rbdiff(&d, &["info", &format!("rbd:{spec}")]).stdout).expect("utf8")
    };
    let tc = show(&format!("rbd/{ns}/tc"));
    assert!(
        tc.contains(" (trash ") && tc.contains("\top_features: clone-child\n"),
        "{tc}"
    );
    let fl = show(&format!("{pool}/fl"));
    assert!(
        fl.contains("\tflags: object map invalid, fast diff invalid\n"),
        "{fl}"
    );
    let plain = show(&format!("rbd/{ns}/dc"));
    for line in [
        format!("\tgroup: rbd/{ns}/g\n"),
        "\tsnapshot_limit: 7\n".to_string(),
        format!("\tparent: rbd/{ns}/d@x\n"),
    ] {
        assert!(plain.contains(&line), "{line:?} missing:\n{plain}");
    }
    let j = show(&format!("{pool}/ms"));
    assert!(j.contains("\tmirroring mode: snapshot\n"), "{j}");
    // Missing pool, image, snapshot: rbd's message and exit code.
    let (img, _) = &workload().images[0];
    for spec in [
        "nopool/x".to_string(),
        "rbd/no-such-image".to_string(),
        format!("rbd/{img}@no-such-snap"),
    ] {
        let want = run(Path::new("rbd"), &d, &["info", &spec]);
        let got = run(bin(), &d, &["info", &format!("rbd:{spec}")]);
        assert_eq!(got.status.code(), want.status.code(), "{spec}");
        assert_ne!(got.status.code(), Some(0), "{spec}");
        assert_eq!(last_err(&got), last_err(&want), "{spec}");
    }
    let _ = sh(
        &d,
        &format!(
            "rbd group image remove rbd/{ns}/g rbd/{ns}/dc; rbd group rm rbd/{ns}/g
             ceph osd pool rm {pool} {pool} --yes-i-really-really-mean-it >/dev/null 2>&1 || true"
        ),
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Run `args` with rbd and with rbdiff (`IMG` replaced by `rbd/IMG` and
/// `rbd:rbd/IMG`): the same stdout, exit status and last stderr line.
fn same_as_rbd(d: &Path, img: &str, args: &[&str]) {
    let with = |p: &str| -> Vec<String> {
        args.iter()
            .map(|a| {
                if *a == "IMG" {
                    format!("{p}rbd/{img}")
                } else {
                    a.to_string()
                }
            })
            .collect()
    };
    let (w, g) = (with(""), with("rbd:"));
    let want = run(
        Path::new("rbd"),
        d,
        &w.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let got = run(bin(), d, &g.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        got.status.code(),
        want.status.code(),
        "{args:?}: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(
        got.stdout == want.stdout,
        "{args:?}:\n{}\nvs rbd's\n{}",
        String::from_utf8_lossy(&got.stdout),
        String::from_utf8_lossy(&want.stdout)
    );
    if !want.status.success() {
        assert_eq!(last_err(&got), last_err(&want), "{args:?}");
    }
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn image_meta_equals_rbd() {
    let d = scratch("meta");
    let img = fresh("rbd", "meta");
    let lists = |d: &Path| {
        for f in ["plain", "json", "xml"] {
            same_as_rbd(d, &img, &["image-meta", "list", "--format", f, "IMG"]);
            same_as_rbd(
                d,
                &img,
                &[
                    "image-meta",
                    "list",
                    "--format",
                    f,
                    "--pretty-format",
                    "IMG",
                ],
            );
        }
    };
    lists(&d); // none
    rbd(
        &d,
        &["image-meta", "set", &format!("rbd/{img}"), "user.a", "1"],
    );
    lists(&d); // one
    // Set by rbdiff, read by rbd (and rbdiff).
    for (k, v) in [
        ("key with space", "quote\" <lt> & tab\tend"),
        ("conf_rbd_cache", "false"),
        ("uni", "h\u{e9}llo"),
    ] {
        rbdiff(&d, &["image-meta", "set", &format!("rbd:rbd/{img}"), k, v]);
        let o = rbd(&d, &["image-meta", "get", &format!("rbd/{img}"), k]);
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("{v}\n"));
        same_as_rbd(&d, &img, &["image-meta", "get", "IMG", k]);
    }
    lists(&d);
    // Removed by rbdiff: gone for rbd.
    rbdiff(
        &d,
        &["image-meta", "remove", &format!("rbd:rbd/{img}"), "uni"],
    );
    let o = run(
        Path::new("rbd"),
        &d,
        &["image-meta", "get", &format!("rbd/{img}"), "uni"],
    );
    assert_eq!(o.status.code(), Some(2));
    // Errors as rbd's: a missing key (get, remove), a refused pair, a
    // snapshot, missing arguments, a missing image.
    for args in [
        &["image-meta", "get", "IMG", "nokey"][..],
        &["image-meta", "remove", "IMG", "nokey"],
        &["image-meta", "set", "IMG", "conf_no_such_option", "1"],
        &["image-meta", "set", "IMG", "conf_rbd_cache", "notabool"],
        &["image-meta", "get", "IMG"],
        &["image-meta", "set", "IMG", "k"],
        &[
            "image-meta",
            "list",
            "--format",
            "plain",
            "--pretty-format",
            "IMG",
        ],
    ] {
        same_as_rbd(&d, &img, args);
    }
    let snap = format!("rbd/{img}@s");
    rbd(&d, &["snap", "create", "--no-progress", &snap]);
    let want = run(Path::new("rbd"), &d, &["image-meta", "list", &snap]);
    let got = run(bin(), &d, &["image-meta", "list", &format!("rbd:{snap}")]);
    assert_eq!(
        (got.status.code(), last_err(&got)),
        (want.status.code(), last_err(&want))
    );
    let want = run(
        Path::new("rbd"),
        &d,
        &["image-meta", "list", "rbd/no-such-image"],
    );
    let got = run(bin(), &d, &["image-meta", "list", "rbd:rbd/no-such-image"]);
    assert_eq!(
        (got.status.code(), last_err(&got)),
        (want.status.code(), last_err(&want))
    );
    assert_eq!(got.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&d);
}

/// A v1 diff to snapshot `to` of a 1 MiB image: a `w` of "abcd" at 0, then
/// `tail` (what makes it corrupt).
fn corrupt_diff(to: &str, tail: &[u8]) -> Vec<u8> {
    let mut v = b"rbd diff v1\n".to_vec();
    v.push(b't');
    v.extend(u32::try_from(to.len()).expect("short name").to_le_bytes());
    v.extend(to.as_bytes());
    v.push(b's');
    v.extend((1u64 << 20).to_le_bytes());
    v.extend(tail);
    v
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn import_diff_decode_error_at_offset() {
    let d = scratch("corrupt");
    let mut w = vec![b'w'];
    w.extend(0u64.to_le_bytes());
    w.extend(4u64.to_le_bytes());
    // A `w` record cut short: nothing may be written.
    let mut cut = w.clone();
    cut.extend(b"ab");
    std::fs::write(d.join("cut.diff"), corrupt_diff("end", &cut)).unwrap();
    std::fs::write(d.join("raw.img"), vec![0u8; 1 << 20]).unwrap();
    let img = fresh("rbd", "corrupt");
    let got = run(
        bin(),
        &d,
        &[
            "import-diff",
            "--no-progress",
            "cut.diff",
            &format!("rbd:rbd/{img}"),
        ],
    );
    let file = run(
        bin(),
        &d,
        &["import-diff", "--no-progress", "cut.diff", "./raw.img"],
    );
    let want = run(
        Path::new("rbd"),
        &d,
        &[
            "import-diff",
            "--no-progress",
            "cut.diff",
            &format!("rbd/{img}"),
        ],
    );
    let err = String::from_utf8_lossy(&got.stderr).to_string();
    assert_eq!(got.status.code(), Some(74), "{err}");
    assert_eq!(got.status.code(), want.status.code());
    // The same lines as the file import: rbd's, then where in the stream.
    assert_eq!(
        err,
        String::from_utf8_lossy(&file.stderr),
        "vs the file import"
    );
    assert!(
        err.ends_with("rbdiff: cut.diff: unexpected end of stream while reading write data (2 more bytes needed) at stream offset 48\n"),
        "{err}"
    );
    assert_eq!(last_err(&got), last_err(&want));
    assert!(snaps_of(&d, &img).is_empty(), "an end snapshot was created");
    assert_eq!(
        export(&d, &format!("rbd/{img}")),
        vec![0u8; 1 << 20],
        "data written"
    );
    // A bad tag after a whole record: rbd leaves the record written, and so
    // does rbdiff; no end snapshot either way.
    let mut bad = w;
    bad.extend(b"abcdX");
    std::fs::write(d.join("bad.diff"), corrupt_diff("end", &bad)).unwrap();
    let (mine, theirs) = (fresh("rbd", "corrupt"), fresh("rbd", "corrupt"));
    let got = run(
        bin(),
        &d,
        &[
            "import-diff",
            "--no-progress",
            "bad.diff",
            &format!("rbd:rbd/{mine}"),
        ],
    );
    let want = run(
        Path::new("rbd"),
        &d,
        &[
            "import-diff",
            "--no-progress",
            "bad.diff",
            &format!("rbd/{theirs}"),
        ],
    );
    let err = String::from_utf8_lossy(&got.stderr).to_string();
    assert_eq!(got.status.code(), want.status.code(), "{err}");
    assert_eq!(last_err(&got), last_err(&want));
    assert!(
        err.contains("rbdiff: bad.diff: ") && err.contains(" at stream offset 51\n"),
        "{err}"
    );
    assert!(snaps_of(&d, &mine).is_empty() && snaps_of(&d, &theirs).is_empty());
    assert_eq!(
        export(&d, &format!("rbd/{mine}")),
        export(&d, &format!("rbd/{theirs}"))
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// `bash -o pipefail -c script` with `env`, failing or not.
fn try_shell(dir: &Path, script: &str, env: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .current_dir(dir)
        .envs(env.iter().copied())
        .args(["-o", "pipefail", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The snapshot names of `spec` on the cluster of `conf`.
fn snap_names(d: &Path, conf: &str, spec: &str) -> Vec<String> {
    let o = rbd(d, &["-c", conf, "snap", "ls", "--format", "json", spec]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("snap ls json");
    snap_rows(&v).into_iter().map(|s| s.1).collect()
}

/// A DR copy on cluster B that drifted from `src@mon` where the mon..tue
/// diff writes: the sealed incremental from cluster A, shipped as a file,
/// is refused before any write (rc 22); through a pipe that flips one
/// byte, the import fails its checks and makes no `tue` snapshot.
fn dr_refusals(d: &Path, b: &Auth, src: &str, env: &[(&str, &str)]) {
    let o = rbd(
        d,
        &[
            "diff",
            "--format",
            "json",
            "--from-snap",
            "mon",
            &format!("{src}@tue"),
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let first = v[0]["offset"].as_u64().expect("an extent");
    let copy = format!("rbd/{}", fresh_name("drift"));
    let c = b.conf.as_str();
    rbd(d, &["-c", c, "create", "--size", "1M", &copy]);
    sh(
        d,
        &format!(
            "rbd export-diff --no-progress {src}@mon - | rbd -c {c} import-diff --no-progress - {copy}"
        ),
    );
    std::fs::write(d.join("drift"), crafted(first + 1, b"drift")).unwrap();
    rbd(
        d,
        &["-c", c, "import-diff", "--no-progress", "drift", &copy],
    );
    let before = export_on(d, c, &copy);
    let dst = format!("rbd:{copy}:conf={c}:id={}", b.user);
    let inc = format!("rbdiff export-diff --integrity --from-snap mon rbd:{src}@tue");
    let o = try_shell(
        d,
        &format!("{inc} inc.diff && rbdiff import-diff inc.diff {dst}"),
        env,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(22), "{err}");
    assert!(err.contains("is not the base"), "{err}");
    assert!(export_on(d, c, &copy) == before, "the drifted copy changed");
    assert_eq!(snap_names(d, c, &copy), ["mon"], "after the drifted import");
    let flip = "python3 -c 'import sys; b = bytearray(sys.stdin.buffer.read()); \
                b[len(b) // 2] ^= 1; sys.stdout.buffer.write(b)'";
    let o = try_shell(
        d,
        &format!("{inc} - | {flip} | rbdiff import-diff - {dst}"),
        env,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a corrupt stream was imported: {err}");
    assert_eq!(snap_names(d, c, &copy), ["mon"], "after the corrupt stream");
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stdout)))
}

#[test]
#[ignore = "needs a Ceph cluster: run scripts/test-cluster.sh"]
fn export_diff_dry_run_as_written() {
    let d = scratch("dry");
    let mut steps_seen = 0;
    for (img, from, to) in steps() {
        for whole in [false, true] {
            let args = export_diff_args(whole, from.as_deref());
            let spec = at(&img, to.as_deref());
            let _ = std::fs::remove_file(d.join("rbd.diff"));
            rbd(&d, &[&args[..], &[spec.as_str(), "rbd.diff"]].concat());
            let cspec = format!("rbd:{spec}");
            let dry = rbdiff(
                &d,
                &[
                    &args[..],
                    &["--dry-run", "--format", "json", &cspec, "dry.diff"],
                ]
                .concat(),
            );
            assert!(!d.join("dry.diff").exists(), "--dry-run wrote its output");
            let v = json_of(&dry);
            let len = std::fs::metadata(d.join("rbd.diff")).unwrap().len();
            assert_eq!(v["bytes"].as_u64(), Some(len), "{args:?} {spec}: {v}");
            let i = json_of(&rbdiff(&d, &["inspect", "--format", "json", "rbd.diff"]));
            let i = &i["diffs"][0];
            for (mine, theirs) in [
                ("writes", "n_w"),
                ("zeros", "n_z"),
                ("data_bytes", "w_bytes"),
                ("zero_bytes", "z_bytes"),
            ] {
                assert_eq!(v[mine], i[theirs], "{mine} {args:?} {spec}");
            }
            assert_eq!(v["integrity"], "none");
        }
        steps_seen += 1;
    }
    assert!(steps_seen >= 10, "only {steps_seen} steps");
    // With integrity data: the size of what the real export writes.
    let (img, snaps) = &workload().images[0];
    let spec = format!("rbd:{}", at(img, Some(&snaps[1])));
    for (extra, integrity) in [
        (&["--integrity"][..], "trailer"),
        (&["--integrity", "--export-format", "2"], "in-band"),
        (&["--integrity-sidecar", "s.sig"], "sidecar s.sig"),
    ] {
        let base = ["export-diff", "--no-progress", "--from-snap", &snaps[0]];
        let dry = rbdiff(
            &d,
            &[&base[..], extra, &["--dry-run", "--format", "json", &spec]].concat(),
        );
        assert!(!d.join("s.sig").exists(), "--dry-run wrote the sidecar");
        let v = json_of(&dry);
        let _ = std::fs::remove_file(d.join("real.diff"));
        rbdiff(&d, &[&base[..], extra, &[&spec, "real.diff"]].concat());
        let len = std::fs::metadata(d.join("real.diff")).unwrap().len();
        assert_eq!(v["bytes"].as_u64(), Some(len), "{extra:?}: {v}");
        assert_eq!(v["integrity"], integrity, "{extra:?}");
        if let Ok(m) = std::fs::metadata(d.join("s.sig")) {
            assert_eq!(v["sidecar_bytes"].as_u64(), Some(m.len()));
            std::fs::remove_file(d.join("s.sig")).unwrap();
        }
    }
    // Plain text, as for a store image.
    let o = rbdiff(&d, &["export-diff", "--dry-run", "--no-progress", &spec]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.starts_with("size: ") && text.contains("\nrecords: "),
        "{text}"
    );
    // --from-image is for raw files; a cluster image is no raw file's base.
    let o = run(
        bin(),
        &d,
        &["export-diff", "--from-image", "x.raw", &spec, "o"],
    );
    assert_eq!(o.status.code(), Some(22));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--from-image is for raw files only"));
    std::fs::write(d.join("r.raw"), vec![0u8; 4096]).unwrap();
    let o = run(
        bin(),
        &d,
        &["export-diff", "--from-image", &spec, "./r.raw", "o"],
    );
    assert_eq!(o.status.code(), Some(22));
    assert!(String::from_utf8_lossy(&o.stderr).contains("a cluster image cannot be the base"));
    assert!(!d.join("o").exists());
    let _ = std::fs::remove_dir_all(&d);
}
