//! CLI workflows: pipelines, interruption, >4 GiB sparse images, extensions,
//! store commands, help; natively and under wasmtime.

mod cli_common;

use cli_common::{Cli, Runner, manifest, noise, recorded_sha, sha256, sha256_file, snaps};
use serde_json::Value;
use std::time::{Duration, Instant};

fn basic_src(c: &Cli) -> String {
    c.import_v2("basic-64k/export/image.v2", "src");
    "src".into()
}

/// `export-diff ... - | import-diff - ...`, `export - | import -` (formats 1 and 2).
fn pipelines(c: &Cli) {
    let m = manifest("basic-64k");
    basic_src(c);
    c.ok(&["create", "--size", "0", "--object-size", "64K", "dst"]);
    let (a, b) = c.pipe(
        &["export-diff", "--no-progress", "src@s1", "-"],
        &["import-diff", "--no-progress", "-", "dst"],
    );
    a.ok();
    b.ok();
    let (a, b) = c.pipe(
        &[
            "export-diff",
            "--no-progress",
            "--from-snap",
            "s1",
            "src@s2",
            "-",
        ],
        &["import-diff", "--no-progress", "-", "dst"],
    );
    a.ok();
    b.ok();
    assert_eq!(Some(c.export_sha("dst@s1")), recorded_sha(&m, "raw/s1.raw"));
    assert_eq!(Some(c.export_sha("dst@s2")), recorded_sha(&m, "raw/s2.raw"));
    let (a, b) = c.pipe(
        &["export", "--no-progress", "src@s2", "-"],
        &["import", "--no-progress", "-", "copy1"],
    );
    a.ok();
    b.ok();
    assert_eq!(Some(c.export_sha("copy1")), recorded_sha(&m, "raw/s2.raw"));
    let (a, b) = c.pipe(
        &[
            "export",
            "--no-progress",
            "--export-format",
            "2",
            "src",
            "-",
        ],
        &[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            "-",
            "copy2",
        ],
    );
    a.ok();
    b.ok();
    for p in ["copy2@s1", "copy2@s2", "copy2"] {
        let raw = match p {
            "copy2@s1" => "raw/s1.raw",
            "copy2@s2" => "raw/s2.raw",
            _ => "raw/head.raw",
        };
        assert_eq!(Some(c.export_sha(p)), recorded_sha(&m, raw), "{p}");
    }
}

/// Kill import-diff at several points; re-running converges, and the end
/// snapshot exists only once a run completed.
fn interrupted_import(c: &Cli) {
    let mb = if c.runner == Runner::Wasm { 48 } else { 96 };
    c.write("big.raw", &noise(mb << 20, 7));
    let want = sha256_file(&c.path("big.raw"));
    c.ok(&[
        "export-diff",
        "--no-progress",
        "--snap",
        "s1",
        "--object-size",
        "1M",
        "./big.raw",
        "big.diff",
    ]);
    // how long an import takes
    c.ok(&["create", "--size", "0", "probe"]);
    let t = Instant::now();
    c.ok(&["import-diff", "--no-progress", "big.diff", "probe"]);
    let full = t.elapsed();
    let mut interrupted = 0;
    for (i, frac) in [0.15f64, 0.4, 0.65, 0.9].iter().enumerate() {
        let img = format!("dst{i}");
        c.ok(&["create", "--size", "0", &img]);
        let mut child = c
            .command(&["import-diff", "--no-progress", "big.diff", &img])
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_secs_f64(full.as_secs_f64() * frac));
        let _ = child.kill();
        let _ = child.wait().expect("wait");
        // The end snapshot may exist only if every record was applied (a kill
        // can land after the snapshot, during process exit); otherwise a
        // re-run must converge.
        if snaps(c, &img).is_empty() {
            interrupted += 1;
            c.ok(&["import-diff", "--no-progress", "big.diff", &img]);
        }
        assert_eq!(snaps(c, &img), vec!["s1".to_string()]);
        assert_eq!(
            sha256(
                &c.ok(&["export", "--no-progress", &format!("{img}@s1"), "-"])
                    .stdout
            ),
            want
        );
        // a second run is refused, as rbd does
        let again = c.run(&["import-diff", "--no-progress", "big.diff", &img]);
        assert_eq!(again.code, 17, "{}", again.stderr);
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} runs were actually interrupted"
    );
}

/// A 5 GiB image with a few MiB written: round trips, stays sparse on disk.
fn sparse_5g(c: &Cli) {
    use std::os::unix::fs::MetadataExt;
    let t = Instant::now();
    let size = 5u64 << 30;
    let off2 = (4u64 << 30) + (512 << 20) + 123; // beyond 4 GiB, unaligned
    let a = noise(1 << 20, 1);
    let b = noise(2 << 20, 2);
    let mut enc = rbdiff::Encoder::diff(Vec::new(), rbdiff::Format::DiffV1).expect("enc");
    enc.header(&rbdiff::DiffHeader {
        from: None,
        to: Some(b"s1"),
        protected: None,
        size: Some(size),
    })
    .expect("hdr");
    enc.write(4096, &a).expect("w");
    enc.write(off2, &b).expect("w");
    enc.end_diff().expect("e");
    c.write("in.diff", &enc.finish().expect("finish"));
    c.ok(&["create", "--size", "5G", "big"]);
    c.ok(&["import-diff", "--no-progress", "in.diff", "big"]);
    let head = c.path("store/rbd/big/head");
    assert_eq!(std::fs::metadata(&head).expect("head").len(), size);
    let blocks = |p: &std::path::Path| std::fs::metadata(p).expect("md").blocks() * 512;
    assert!(
        blocks(&head) < 64 << 20,
        "head uses {} bytes",
        blocks(&head)
    );
    // export-diff from the store gives back exactly the data
    c.ok(&["export-diff", "--no-progress", "big@s1", "out.diff"]);
    let s: Value =
        serde_json::from_slice(&c.ok(&["inspect", "--format", "json", "out.diff"]).stdout)
            .expect("json");
    assert_eq!(s["diffs"][0]["size"], size);
    assert_eq!(s["diffs"][0]["w_bytes"].as_u64(), Some(3 << 20));
    // raw export is sparse and has the bytes at the right places
    c.ok(&["export", "--no-progress", "big@s1", "big.raw"]);
    let raw = c.path("big.raw");
    assert_eq!(std::fs::metadata(&raw).expect("raw").len(), size);
    assert!(
        blocks(&raw) < 64 << 20,
        "raw export uses {} bytes",
        blocks(&raw)
    );
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&raw).expect("open");
        let mut got = vec![0u8; b.len()];
        f.seek(SeekFrom::Start(off2)).expect("seek");
        f.read_exact(&mut got).expect("read");
        assert!(got == b, "data beyond 4 GiB");
    }
    // and re-imports into another image identically
    c.ok(&["create", "--size", "0", "again"]);
    c.ok(&["import-diff", "--no-progress", "out.diff", "again"]);
    c.ok(&["export-diff", "--no-progress", "again@s1", "again.diff"]);
    assert_eq!(c.read("again.diff"), c.read("out.diff"));
    assert!(blocks(&c.path("store/rbd/again/head")) < 64 << 20);
    let limit = if c.runner == Runner::Wasm { 240 } else { 60 };
    assert!(
        t.elapsed() < Duration::from_secs(limit),
        "took {:?}",
        t.elapsed()
    );
}

/// Our extensions: v2 diffs in import-diff and merge-diff, N-way merges,
/// stdin as a later merge input, v2 diff output.
fn extensions(c: &Cli) {
    let m = manifest("basic-64k");
    c.write("e.raw", b"");
    c.ok(&[
        "import-diff",
        "--no-progress",
        &c.fx("import-diff/inputs/basic-64k.image.v2.part0.v2diff"),
        "./e.raw",
    ]);
    assert_eq!(
        Some(sha256_file(&c.path("e.raw"))),
        recorded_sha(&m, "raw/s1.raw")
    );
    let strict = c.run(&[
        "import-diff",
        "--rbd-compat",
        "--no-progress",
        &c.fx("import-diff/inputs/basic-64k.image.v2.part0.v2diff"),
        "./e.raw",
    ]);
    assert_eq!(strict.code, 22);
    // three-way merge = head
    c.ok(&[
        "merge-diff",
        "--no-progress",
        &c.fx("basic-64k/diff/0..s1.diff"),
        &c.fx("basic-64k/diff/s1..s2.diff"),
        &c.fx("basic-64k/diff/s2..head.diff"),
        "m3.diff",
    ]);
    c.write("h.raw", b"");
    c.ok(&["import-diff", "--no-progress", "m3.diff", "./h.raw"]);
    assert_eq!(
        Some(sha256_file(&c.path("h.raw"))),
        recorded_sha(&m, "raw/head.raw")
    );
    // v2 inputs merged
    c.ok(&[
        "merge-diff",
        "--no-progress",
        &c.fx("merge-diff/inputs/basic-64k.image.v2.part0.v2diff"),
        &c.fx("merge-diff/inputs/basic-64k.image.v2.part1.v2diff"),
        "m2.diff",
    ]);
    c.write("s2.raw", b"");
    c.ok(&["import-diff", "--no-progress", "m2.diff", "./s2.raw"]);
    assert_eq!(
        Some(sha256_file(&c.path("s2.raw"))),
        recorded_sha(&m, "raw/s2.raw")
    );
    // stdin as the second input gives the same bytes as rbd's file merge
    let o = c.run_in(
        &[
            "merge-diff",
            "--no-progress",
            &c.fx("basic-64k/diff/0..s1.diff"),
            "-",
            "-",
        ],
        &cli_common::fixtures().join("basic-64k/diff/s1..s2.diff"),
    );
    o.ok();
    assert_eq!(
        o.stdout,
        std::fs::read(cli_common::fixtures().join("basic-64k/merge/0..s1+s1..s2.diff"))
            .expect("read")
    );
    // a v2 diff from export-diff, inspected
    basic_src(c);
    c.ok(&["snap", "protect", "src@s1"]);
    c.ok(&[
        "export-diff",
        "--no-progress",
        "--export-format",
        "2",
        "src@s1",
        "v2.diff",
    ]);
    let s: Value =
        serde_json::from_slice(&c.ok(&["inspect", "--format", "json", "v2.diff"]).stdout)
            .expect("json");
    assert_eq!(s["format"], "diff-v2");
    assert_eq!(s["diffs"][0]["protected"], true);
    c.ok(&["create", "--size", "0", "p"]);
    c.ok(&["import-diff", "--no-progress", "v2.diff", "p"]);
    let info: Value =
        serde_json::from_slice(&c.ok(&["info", "--format", "json", "p@s1"]).stdout).expect("json");
    assert_eq!(info["protected"], "true");
}

/// Store commands and name validation.
fn store_commands(c: &Cli) {
    c.ok(&["create", "--size", "8M", "--object-size", "1M", "pool1/img"]);
    assert_eq!(c.run(&["create", "--size", "8M", "pool1/img"]).code, 17);
    for bad in [
        "../escape",
        "pool1/../../x",
        "a/b/c",
        "img@",
        ".hidden",
        "p/i@../s",
    ] {
        let o = c.run(&["create", "--size", "1M", bad]);
        assert_eq!(o.code, 22, "{bad}: {}", o.stderr);
    }
    assert!(!c.path("escape").exists() && !c.path("x").exists());
    let info: Value =
        serde_json::from_slice(&c.ok(&["info", "--format", "json", "pool1/img"]).stdout)
            .expect("json");
    assert_eq!(info["size"], 8 << 20);
    assert_eq!(info["order"], 20);
    c.ok(&["snap", "create", "pool1/img@a"]);
    assert_eq!(c.run(&["snap", "create", "pool1/img@a"]).code, 17);
    c.ok(&["resize", "--size", "16M", "pool1/img"]);
    assert_eq!(c.run(&["resize", "--size", "4M", "pool1/img"]).code, 22);
    c.ok(&["resize", "--size", "4M", "--allow-shrink", "pool1/img"]);
    c.ok(&["snap", "protect", "pool1/img@a"]);
    let rm = c.run(&["snap", "rm", "pool1/img@a"]);
    assert_eq!(rm.code, 16, "{}", rm.stderr);
    assert_eq!(c.run(&["rm", "pool1/img"]).code, 39);
    c.ok(&["snap", "rollback", "pool1/img@a"]);
    let info: Value =
        serde_json::from_slice(&c.ok(&["info", "--format", "json", "pool1/img"]).stdout)
            .expect("json");
    assert_eq!(info["size"], 8 << 20, "rollback restores the size");
    c.ok(&["snap", "unprotect", "pool1/img@a"]);
    c.ok(&["snap", "rm", "pool1/img@a"]);
    assert_eq!(c.ok(&["ls", "pool1"]).text(), "img\n");
    c.ok(&["rm", "pool1/img"]);
    assert_eq!(c.ok(&["ls", "pool1"]).text(), "");
    assert_eq!(c.run(&["info", "pool1/img"]).code, 2);
}

/// inspect and verify on good, truncated and non-consecutive inputs.
fn inspect_and_verify(c: &Cli) {
    let s: Value = serde_json::from_slice(
        &c.ok(&[
            "inspect",
            "--format",
            "json",
            &c.fx("basic-64k/diff/s1..s2.diff"),
        ])
        .stdout,
    )
    .expect("json");
    assert_eq!(s["valid"], true);
    assert_eq!(s["diffs"][0]["from_snap"], "s1");
    let o = c.run(&[
        "inspect",
        "--format",
        "json",
        &c.fx("import-diff/inputs/truncated-in-data.diff"),
    ]);
    assert_eq!(o.code, 74);
    let s: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(s["valid"], false);
    assert_eq!(s["error"]["kind"], "unexpected-eof");
    let plain = c.run(&["inspect", &c.fx("merge-diff/inputs/first.unknown-tag.diff")]);
    assert_eq!(plain.code, 22);
    assert!(
        plain.text().contains("error at stream offset"),
        "{}",
        plain.text()
    );
    let ok = c.ok(&[
        "verify",
        &c.fx("basic-64k/diff/0..s1.diff"),
        &c.fx("basic-64k/diff/s1..s2.diff"),
        &c.fx("basic-64k/diff/s2..head.diff"),
    ]);
    assert!(ok.text().contains("OK: 3 diff(s)"), "{}", ok.text());
    let bad = c.run(&[
        "verify",
        &c.fx("basic-64k/diff/0..s1.diff"),
        &c.fx("basic-64k/diff/s2..head.diff"),
    ]);
    assert_eq!(bad.code, 22);
    assert!(bad.stderr.contains("starts at 's2'"), "{}", bad.stderr);
    c.ok(&["verify", &c.fx("basic-64k/export/image.v2")]);
}

/// Every subcommand's --help has worked examples; usage errors exit 1.
fn help_and_usage(c: &Cli) {
    let cmds: &[&[&str]] = &[
        &["export-diff"],
        &["import-diff"],
        &["merge-diff"],
        &["export"],
        &["import"],
        &["diff"],
        &["inspect"],
        &["verify"],
        &["create"],
        &["info"],
        &["resize"],
        &["rm"],
        &["ls"],
        &["snap"],
        &["snap", "create"],
        &["snap", "ls"],
        &["snap", "rm"],
        &["snap", "protect"],
        &["snap", "unprotect"],
        &["snap", "rollback"],
    ];
    for cmd in cmds {
        let mut a = cmd.to_vec();
        a.push("--help");
        let o = c.ok(&a);
        let t = o.text();
        assert!(
            t.contains("Example") && t.contains("rbdiff "),
            "{cmd:?} --help has no examples:\n{t}"
        );
    }
    assert!(c.ok(&["--help"]).text().contains("Examples"));
    assert_eq!(c.run(&["export-diff", "--bogus"]).code, 1);
    // a missing image is rbd's EINVAL, not a usage error
    let o = c.run(&["export-diff"]);
    assert_eq!(
        (o.code, o.stderr.as_str()),
        (22, "rbd: image name was not specified\n")
    );
    assert_eq!(c.run(&["no-such-command"]).code, 1);
    assert_eq!(c.run(&["import", "--export-format", "3", "x", "y"]).code, 1);
}

/// The WASI build can only reach the directories it was given.
fn sandboxed(c: &Cli) {
    let o = c.run(&["inspect", "/etc/hostname"]);
    if c.runner == Runner::Wasm {
        assert_eq!(o.code, 2, "the guest reached /etc: {}", o.stderr);
    } else {
        assert_ne!(o.code, 0);
    }
}

both!(
    pipelines,
    interrupted_import,
    sparse_5g,
    extensions,
    store_commands,
    inspect_and_verify,
    help_and_usage,
    sandboxed
);

/// rbd's option spellings: -p/--pool, --image, --snap, --path.
fn rbd_option_spellings(c: &Cli) {
    c.ok(&["create", "--size", "0", "pp/img"]);
    c.ok(&[
        "import-diff",
        "--no-progress",
        "--path",
        &c.fx("basic-64k/diff/0..s1.diff"),
        "--pool",
        "pp",
        "--image",
        "img",
    ]);
    c.ok(&[
        "export-diff",
        "--no-progress",
        "-p",
        "pp",
        "--image",
        "img",
        "--snap",
        "s1",
        "--path",
        "o.diff",
    ]);
    c.ok(&["export-diff", "--no-progress", "pp/img@s1", "o2.diff"]);
    assert!(
        c.read("o.diff") == c.read("o2.diff"),
        "--pool/--image/--snap/--path name the same export"
    );
    let j = c
        .ok(&[
            "diff", "-p", "pp", "--image", "img", "--snap", "s1", "--format", "json",
        ])
        .text();
    assert!(j.starts_with("[{\"offset\":"), "{j}");
    assert_eq!(
        c.run(&["export-diff", "pp/img@s1", "x.diff", "extra"]).code,
        1
    );
    assert_eq!(
        c.run(&["export-diff", "--image", "img", "-p", "pp", "--snap", "s1"])
            .code,
        22,
        "missing path"
    );
}

both!(rbd_option_spellings);
