//! Verifiable backups in the CLI (issue 6, docs/integrity.md): wrong bases
//! refused before any write, corrupt payloads caught at their offset,
//! resumable imports, undo, sealing real rbd diffs, --dry-run sizes, and
//! rbd-compatible reading of sealed files; natively and under wasmtime.

mod cli_common;

use cli_common::{Cli, Runner, manifest, noise, recorded_sha, sha256_file, snaps};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The basic-64k image (snapshots s1, s2) in the store as `src`.
fn basic_src(c: &Cli) {
    c.import_v2("basic-64k/export/image.v2", "src");
}

fn head(c: &Cli, img: &str) -> std::path::PathBuf {
    c.path(&format!("store/rbd/{img}/head"))
}

/// (tag, image offset, length, stream offset) of every record of `file`.
fn records(c: &Cli, file: &str) -> Vec<(String, u64, u64, u64)> {
    let s: Value = serde_json::from_slice(
        &c.ok(&["inspect", "--format", "json", "--records", "100000", file])
            .stdout,
    )
    .expect("json");
    s["diffs"][0]["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["tag"].as_str().expect("tag").to_string(),
                r["offset"].as_u64().expect("offset"),
                r["length"].as_u64().expect("length"),
                r["stream_offset"].as_u64().expect("so"),
            )
        })
        .collect()
}

fn flip(path: &std::path::Path, at: u64, mask: u8) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut b).expect("read");
    b[0] ^= mask;
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&b).expect("write");
}

/// Sealed s1 and s1->s2 diffs (v1 trailer, v2 in-band) and an image `dst`
/// holding s1.
fn sealed_chain(c: &Cli) {
    basic_src(c);
    c.ok(&[
        "export-diff",
        "--no-progress",
        "--integrity",
        "src@s1",
        "s1.diff",
    ]);
    c.ok(&[
        "export-diff",
        "--no-progress",
        "--integrity",
        "--from-snap",
        "s1",
        "src@s2",
        "s12.v1",
    ]);
    c.ok(&[
        "export-diff",
        "--no-progress",
        "--integrity",
        "--export-format",
        "2",
        "--from-snap",
        "s1",
        "src@s2",
        "s12.v2",
    ]);
    c.ok(&["create", "--size", "0", "--object-size", "64K", "dst"]);
    c.ok(&["import-diff", "--no-progress", "s1.diff", "dst"]);
}

/// One byte changed in a block the diff overwrites: refused before any
/// write (store image and raw file, v1 and v2), image byte-identical, no
/// end snapshot; --force imports anyway; the right base imports verified.
fn wrong_base_is_refused(c: &Cli) {
    let m = manifest("basic-64k");
    sealed_chain(c);
    let recs = records(c, "s12.v1");
    let (_, off, len, _) = recs[0].clone();
    c.ok(&["export", "--no-progress", "dst@s1", "w.raw"]);
    flip(&head(c, "dst"), off + len / 2, 0x01);
    flip(&c.path("w.raw"), off + len / 2, 0x01);
    for diff in ["s12.v1", "s12.v2"] {
        let before = sha256_file(&head(c, "dst"));
        let o = c.run(&["import-diff", "--no-progress", diff, "dst"]);
        assert_eq!(o.code, 22, "{diff}: {}", o.stderr);
        assert!(
            o.stderr.contains(&format!(
                "first mismatching block: offset {off}, length {len}"
            )) && o.stderr.contains("(record #1)")
                && o.stderr.contains("nothing was written"),
            "{diff}: {}",
            o.stderr
        );
        assert_eq!(
            sha256_file(&head(c, "dst")),
            before,
            "{diff}: image changed"
        );
        assert_eq!(snaps(c, "dst"), vec!["s1".to_string()], "{diff}");
        let raw_before = sha256_file(&c.path("w.raw"));
        let o = c.run(&["import-diff", "--no-progress", diff, "./w.raw"]);
        assert_eq!(o.code, 22, "{diff}: {}", o.stderr);
        assert_eq!(sha256_file(&c.path("w.raw")), raw_before);
        // verify --base says the same without writing
        let v = c.run(&["verify", diff, "--base", "dst"]);
        assert_eq!(v.code, 22, "{}", v.stderr);
        assert!(
            v.stderr.contains(&format!("block {off}+{len}")),
            "{}",
            v.stderr
        );
        c.ok(&["verify", diff, "--base", "src@s1"]);
    }
    // --force skips only the base check: the block is overwritten, so the
    // result still verifies.
    c.ok(&["import-diff", "--no-progress", "--force", "s12.v1", "dst"]);
    assert_eq!(snaps(c, "dst"), vec!["s1".to_string(), "s2".to_string()]);
    c.ok(&["verify", "s12.v1", "--result", "dst@s2"]);
    // the right base imports with every check on
    c.ok(&["create", "--size", "0", "--object-size", "64K", "ok"]);
    c.ok(&["import-diff", "--no-progress", "s1.diff", "ok"]);
    let o = c.ok(&["import-diff", "--no-progress", "s12.v2", "ok"]);
    assert_eq!(o.stderr, "", "verified imports are quiet");
    assert_eq!(Some(c.export_sha("ok@s2")), recorded_sha(&m, "raw/s2.raw"));
    let j: Value = serde_json::from_slice(
        &c.ok(&["verify", "--format", "json", "s12.v2", "--result", "ok@s2"])
            .stdout,
    )
    .expect("json");
    assert_eq!(j["ok"], true);
    assert_eq!(j["checks"][0]["ok"], true);
    let j = c.run(&["verify", "--format", "json", "s12.v2", "--base", "ok@s2"]);
    assert_eq!(j.code, 22);
    let j: Value = serde_json::from_slice(&j.stdout).expect("json");
    assert_eq!(j["ok"], false);
    assert_eq!(j["checks"][0]["ok"], false);
}

/// A flipped bit in a payload is caught with its record's stream offset,
/// from a file and from a pipe; no end snapshot.
fn flipped_payload_bit_is_caught(c: &Cli) {
    basic_src(c);
    for (fmt, hdr) in [("1", 17u64), ("2", 25)] {
        let name = format!("s1.v{fmt}");
        c.ok(&[
            "export-diff",
            "--no-progress",
            "--integrity",
            "--export-format",
            fmt,
            "src@s1",
            &name,
        ]);
        let w: Vec<_> = records(c, &name)
            .into_iter()
            .filter(|r| r.0 == "w" && r.2 > 8)
            .collect();
        let so = w[w.len() / 2].3;
        flip(&c.path(&name), so + hdr + 3, 0x10);
        for stdin in [false, true] {
            let img = format!("f{fmt}{}", u8::from(stdin));
            c.ok(&["create", "--size", "0", "--object-size", "64K", &img]);
            let o = if stdin {
                c.run_in(&["import-diff", "--no-progress", "-", &img], &c.path(&name))
            } else {
                c.run(&["import-diff", "--no-progress", &name, &img])
            };
            assert_eq!(o.code, 74, "v{fmt} stdin {stdin}: {}", o.stderr);
            assert!(
                o.stderr
                    .contains(&format!("at stream offset {so} is corrupt")),
                "v{fmt} stdin {stdin}: {}",
                o.stderr
            );
            assert!(snaps(c, &img).is_empty(), "no end snapshot");
        }
        let v = c.run(&["verify", &name]);
        assert_eq!(v.code, 22);
        assert!(
            v.stderr.contains(&format!("stream offset {so}")),
            "{}",
            v.stderr
        );
        let i = c.run(&["inspect", &name]);
        assert!(i.text().contains("integrity: ") && i.text().contains("FAULT"));
    }
}

/// An interrupted import resumes from its journal without re-reading what
/// was applied, and verifies. Crashes are injected at given stream offsets
/// (both runners) and, natively, the process is also killed at random points.
fn interrupted_import_resumes(c: &Cli) {
    let mb = if c.runner == Runner::Wasm { 24 } else { 64 };
    c.write("big.raw", &noise(mb << 20, 11));
    let want = sha256_file(&c.path("big.raw"));
    c.ok(&[
        "export-diff",
        "--no-progress",
        "--integrity",
        "--export-format",
        "2",
        "--snap",
        "s1",
        "--object-size",
        "1M",
        "./big.raw",
        "big.diff",
    ]);
    let size = std::fs::metadata(c.path("big.diff")).expect("md").len();
    let env = [("RBDIFF_RESUME_INTERVAL", "4194304")];
    let journal = |img: &str| c.path(&format!("store/rbd/{img}/import-diff.rbdiff-resume"));
    // 1.0: after the last byte, before the result check and the snapshot
    for (i, permille) in [300u64, 700, 1000].iter().enumerate() {
        let img = format!("crash{i}");
        c.ok(&["create", "--size", "0", &img]);
        let at = (size * permille / 1000).to_string();
        let o = c.run_hooked(
            &["import-diff", "--no-progress", "big.diff", &img],
            &[env[0], ("RBDIFF_TEST_CRASH_AFTER", &at)],
        );
        assert_eq!(o.code, 99, "{}", o.stderr);
        assert!(snaps(c, &img).is_empty());
        assert!(journal(&img).exists(), "journal kept");
        let o = c.run_env(&["import-diff", "--no-progress", "big.diff", &img], &env);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let resumed: u64 = o
            .stderr
            .split("at stream offset ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no resume message: {}", o.stderr));
        assert!(
            resumed > size / 10 && resumed <= at.parse::<u64>().expect("n"),
            "resumed at {resumed} of {size} (crash after {at})"
        );
        assert!(!journal(&img).exists(), "journal removed");
        assert_eq!(snaps(c, &img), vec!["s1".to_string()]);
        assert_eq!(sha256_file(&head(c, &img)), want);
        c.ok(&["verify", "big.diff", "--result", &format!("{img}@s1")]);
    }
    // The hook is in test builds only: the product ignores the variable.
    c.ok(&["create", "--size", "0", "nohook"]);
    let o = c.run_env(
        &["import-diff", "--no-progress", "big.diff", "nohook"],
        &[env[0], ("RBDIFF_TEST_CRASH_AFTER", "0")],
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(sha256_file(&head(c, "nohook")), want);
    // A journal of another diff is ignored with a warning.
    c.ok(&["create", "--size", "0", "other"]);
    c.write(
        "store/rbd/other/import-diff.rbdiff-resume",
        br#"{"version":1,"diff_path":"/nowhere.diff","diff_size":1,"diff_head_xxh3":"00","checkpoint":"00","stream_offset":0,"records":0,"data_bytes":0,"zero_bytes":0,"to_snap":null,"protect":false,"end_size":null}"#,
    );
    let o = c.ok(&["import-diff", "--no-progress", "big.diff", "other"]);
    assert!(o.stderr.contains("ignoring resume journal"), "{}", o.stderr);
    assert_eq!(sha256_file(&head(c, "other")), want);
    // --resume without a journal is an error
    c.write("r.raw", b"");
    let o = c.run(&[
        "import-diff",
        "--resume",
        "--no-progress",
        "big.diff",
        "./r.raw",
    ]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    // raw target: the journal sits next to it
    let o = c.run_hooked(
        &["import-diff", "--no-progress", "big.diff", "./r.raw"],
        &[env[0], ("RBDIFF_TEST_CRASH_AFTER", &(size / 2).to_string())],
    );
    assert_eq!(o.code, 99, "{}", o.stderr);
    assert!(c.path("r.raw.rbdiff-resume").exists());
    let o = c.ok(&[
        "import-diff",
        "--resume",
        "--no-progress",
        "big.diff",
        "./r.raw",
    ]);
    assert!(o.stderr.contains("resuming"), "{}", o.stderr);
    assert_eq!(sha256_file(&c.path("r.raw")), want);
    assert!(!c.path("r.raw.rbdiff-resume").exists());
    if c.runner == Runner::Native {
        // Kill at random points; every re-run converges and verifies.
        c.ok(&["create", "--size", "0", "probe"]);
        let t = Instant::now();
        c.ok(&["import-diff", "--no-progress", "big.diff", "probe"]);
        let full = t.elapsed();
        let mut seed = std::process::id() as u64;
        let mut resumed_runs = 0;
        for i in 0..4 {
            let img = format!("kill{i}");
            c.ok(&["create", "--size", "0", &img]);
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let frac = 0.1 + (seed >> 40) as f64 / (1u64 << 24) as f64 * 0.8;
            let mut child = c
                .command_env(&["import-diff", "--no-progress", "big.diff", &img], &env)
                .spawn()
                .expect("spawn");
            std::thread::sleep(Duration::from_secs_f64(full.as_secs_f64() * frac));
            let _ = child.kill();
            let _ = child.wait();
            if snaps(c, &img).is_empty() {
                let o = c.run_env(&["import-diff", "--no-progress", "big.diff", &img], &env);
                assert_eq!(o.code, 0, "{}", o.stderr);
                if o.stderr.contains("resuming") {
                    resumed_runs += 1;
                }
            }
            assert_eq!(snaps(c, &img), vec!["s1".to_string()]);
            assert_eq!(sha256_file(&head(c, &img)), want, "kill at {frac:.2}");
        }
        assert!(resumed_runs >= 1, "no killed run was resumed");
    }
}

/// --undo writes a diff that restores the exact previous sha256; it is
/// refused for diffs whose records are out of order (the image restored).
fn undo_restores_previous_state(c: &Cli) {
    sealed_chain(c);
    let before = sha256_file(&head(c, "dst"));
    c.ok(&[
        "import-diff",
        "--no-progress",
        "--undo",
        "u.diff",
        "s12.v2",
        "dst",
    ]);
    assert_ne!(sha256_file(&head(c, "dst")), before);
    // exclusive: an existing undo file is not overwritten
    c.ok(&["create", "--size", "0", "--object-size", "64K", "d2"]);
    c.ok(&["import-diff", "--no-progress", "s1.diff", "d2"]);
    let o = c.run(&[
        "import-diff",
        "--no-progress",
        "--undo",
        "u.diff",
        "s12.v1",
        "d2",
    ]);
    assert_eq!(o.code, 17, "{}", o.stderr);
    assert_eq!(snaps(c, "d2"), vec!["s1".to_string()]);
    c.ok(&["import-diff", "--no-progress", "u.diff", "dst"]);
    assert_eq!(
        sha256_file(&head(c, "dst")),
        before,
        "undo restores the sha256"
    );
    // raw file, growing and shrinking
    c.write("g.raw", &noise(300_000, 3));
    let g_before = sha256_file(&c.path("g.raw"));
    c.write("h.raw", &noise(700_000, 4));
    c.ok(&[
        "export-diff",
        "--no-progress",
        "--from-image",
        "./g.raw",
        "--object-size",
        "64K",
        "./h.raw",
        "gh.diff",
    ]);
    c.ok(&[
        "import-diff",
        "--no-progress",
        "--undo",
        "gh.undo",
        "gh.diff",
        "./g.raw",
    ]);
    assert_eq!(sha256_file(&c.path("g.raw")), sha256_file(&c.path("h.raw")));
    c.ok(&["import-diff", "--no-progress", "gh.undo", "./g.raw"]);
    assert_eq!(sha256_file(&c.path("g.raw")), g_before);
    // unsorted records: refused, the image put back, no undo file left
    let mut enc = rbdiff::Encoder::diff(Vec::new(), rbdiff::Format::DiffV1)
        .expect("enc")
        .lenient();
    enc.header(&rbdiff::DiffHeader {
        from: None,
        to: None,
        protected: None,
        size: Some(300_000),
    })
    .expect("hdr");
    enc.write(100_000, &[7u8; 5000]).expect("w");
    enc.write(1000, &[9u8; 5000]).expect("w");
    enc.end_diff().expect("e");
    c.write("unsorted.diff", &enc.finish().expect("finish"));
    let o = c.run(&[
        "import-diff",
        "--no-progress",
        "--undo",
        "x.undo",
        "unsorted.diff",
        "./g.raw",
    ]);
    assert_eq!(o.code, 22, "{}", o.stderr);
    assert!(o.stderr.contains("out of order"), "{}", o.stderr);
    assert!(o.stderr.contains("restored"), "{}", o.stderr);
    assert_eq!(sha256_file(&c.path("g.raw")), g_before);
    assert!(!c.path("x.undo").exists());
    // without --undo it imports, as rbd does
    c.ok(&["import-diff", "--no-progress", "unsorted.diff", "./g.raw"]);
}

/// A real rbd diff sealed with `seal` imports verified; a wrong base is
/// refused; the sidecar also works for a pipe (base checked first).
fn real_rbd_diff_sealed(c: &Cli) {
    let m = manifest("basic-64k");
    std::fs::copy(
        cli_common::fixtures().join("basic-64k/diff/s1..s2.diff"),
        c.path("s12.diff"),
    )
    .expect("copy");
    let plain = sha256_file(&c.path("s12.diff"));
    for img in ["b", "w", "p"] {
        c.ok(&["create", "--size", "0", "--object-size", "64K", img]);
        c.ok(&[
            "import-diff",
            "--no-progress",
            &c.fx("basic-64k/diff/0..s1.diff"),
            img,
        ]);
    }
    let o = c.ok(&["seal", "s12.diff", "--base", "b@s1"]);
    assert!(
        o.text().contains("s12.diff.rbdiff-integrity"),
        "{}",
        o.text()
    );
    assert_eq!(
        sha256_file(&c.path("s12.diff")),
        plain,
        "the diff is untouched"
    );
    assert_eq!(c.run(&["seal", "s12.diff", "--base", "b@s1"]).code, 17);
    c.ok(&["verify", "s12.diff"]);
    let (_, off, len, _) = records(c, "s12.diff")[1].clone();
    flip(&head(c, "w"), off, 0xff);
    let before = sha256_file(&head(c, "w"));
    let o = c.run(&["import-diff", "--no-progress", "s12.diff", "w"]);
    assert_eq!(o.code, 22, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("offset {off}, length {len}")) && o.stderr.contains("record #2"),
        "{}",
        o.stderr
    );
    assert_eq!(sha256_file(&head(c, "w")), before);
    assert_eq!(snaps(c, "w"), vec!["s1".to_string()]);
    c.ok(&["import-diff", "--no-progress", "s12.diff", "b"]);
    assert_eq!(Some(c.export_sha("b@s2")), recorded_sha(&m, "raw/s2.raw"));
    // stdin + sidecar: the base is checked before anything is read
    let o = c.run_in(
        &[
            "import-diff",
            "--no-progress",
            "--integrity",
            "s12.diff.rbdiff-integrity",
            "-",
            "w",
        ],
        &c.path("s12.diff"),
    );
    assert_eq!(o.code, 22, "{}", o.stderr);
    assert_eq!(sha256_file(&head(c, "w")), before);
    let o = c.run_in(
        &[
            "import-diff",
            "--no-progress",
            "--integrity",
            "s12.diff.rbdiff-integrity",
            "-",
            "p",
        ],
        &c.path("s12.diff"),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(Some(c.export_sha("p@s2")), recorded_sha(&m, "raw/s2.raw"));
    // from creation, appended as a v1 trailer
    std::fs::copy(
        cli_common::fixtures().join("basic-64k/diff/0..s1.diff"),
        c.path("01.diff"),
    )
    .expect("copy");
    c.ok(&["seal", "--append", "01.diff", "--from-creation"]);
    c.ok(&["verify", "01.diff"]);
    c.ok(&["create", "--size", "0", "--object-size", "64K", "z"]);
    c.ok(&["import-diff", "--no-progress", "01.diff", "z"]);
    assert_eq!(Some(c.export_sha("z@s1")), recorded_sha(&m, "raw/s1.raw"));
}

/// --dry-run prints the exact size export-diff writes.
fn dry_run_size_is_exact(c: &Cli) {
    basic_src(c);
    c.write("a.raw", &noise(2 << 20, 5));
    let mut b = noise(2 << 20, 5);
    b[100_000..300_000].fill(0);
    b[1_000_000..1_000_100].fill(3);
    c.write("b.raw", &b);
    let cases: Vec<Vec<&str>> = vec![
        vec!["src@s1"],
        vec!["--from-snap", "s1", "src@s2"],
        vec!["--integrity", "src@s1"],
        vec![
            "--integrity",
            "--export-format",
            "2",
            "--from-snap",
            "s1",
            "src@s2",
        ],
        vec!["--whole-object", "--export-format", "2", "src"],
        vec!["--integrity", "--from-image", "./a.raw", "./b.raw"],
        vec![
            "--integrity-sidecar",
            "side.sig",
            "--from-image",
            "./a.raw",
            "./b.raw",
        ],
    ];
    for (i, args) in cases.iter().enumerate() {
        let out = format!("d{i}.diff");
        let mut dry = vec![
            "export-diff",
            "--no-progress",
            "--dry-run",
            "--format",
            "json",
        ];
        dry.extend(args);
        let j: Value = serde_json::from_slice(&c.ok(&dry).stdout).expect("json");
        let mut real = vec!["export-diff", "--no-progress"];
        real.extend(args);
        real.push(&out);
        c.ok(&real);
        let len = std::fs::metadata(c.path(&out)).expect("md").len();
        assert_eq!(j["bytes"].as_u64(), Some(len), "{args:?}: {j}");
        assert!(!c.path("-").exists());
        // plain output, and stdout gives the same bytes
        let mut plain = vec!["export-diff", "--no-progress", "--dry-run"];
        plain.extend(args);
        plain.push("never.diff");
        let t = c.ok(&plain).text();
        assert!(t.starts_with(&format!("size: {len} bytes")), "{t}");
        assert!(!c.path("never.diff").exists(), "dry-run wrote its output");
        if args.contains(&"--integrity-sidecar") {
            let side = std::fs::metadata(c.path("side.sig"))
                .expect("sidecar")
                .len();
            assert_eq!(j["sidecar_bytes"].as_u64(), Some(side));
            std::fs::remove_file(c.path("side.sig")).expect("rm");
        } else {
            let mut to_stdout = vec!["export-diff", "--no-progress"];
            to_stdout.extend(args);
            to_stdout.push("-");
            assert_eq!(c.ok(&to_stdout).stdout.len() as u64, len, "{args:?} stdout");
        }
    }
}

/// Files written with the extension are accepted in rbd-compatible mode:
/// a v1 trailer is never read (--rbd-compat), v2 records are skipped by
/// their length with rbd's warning line each (--no-verify).
fn rbd_compatible_reading(c: &Cli) {
    let m = manifest("basic-64k");
    sealed_chain(c);
    for (img, diff, flags, stderr) in [
        ("c1", "s12.v1", "--rbd-compat", ""),
        (
            "c2",
            "s12.v2",
            "--no-verify",
            "unrecognized tag byte 72 in stream; skipping\nunrecognized tag byte 75 in stream; skipping\n",
        ),
    ] {
        c.ok(&["create", "--size", "0", "--object-size", "64K", img]);
        c.ok(&["import-diff", "--no-progress", "s1.diff", img]);
        let o = c.ok(&["import-diff", "--no-progress", flags, diff, img]);
        assert_eq!(o.stderr, stderr, "{diff}");
        assert_eq!(
            Some(c.export_sha(&format!("{img}@s2"))),
            recorded_sha(&m, "raw/s2.raw")
        );
    }
    // the plain stream is a prefix of the sealed v1 file
    c.ok(&[
        "export-diff",
        "--no-progress",
        "--from-snap",
        "s1",
        "src@s2",
        "plain.v1",
    ]);
    let (p, s) = (c.read("plain.v1"), c.read("s12.v1"));
    assert!(s.len() > p.len() && s[..p.len()] == p[..]);
    // a sealed image v2 export imports and keeps every snapshot
    c.ok(&[
        "export",
        "--no-progress",
        "--export-format",
        "2",
        "--integrity",
        "src",
        "all.v2",
    ]);
    let i: Value = serde_json::from_slice(&c.ok(&["inspect", "--format", "json", "all.v2"]).stdout)
        .expect("json");
    for d in i["diffs"].as_array().expect("diffs") {
        assert_eq!(d["integrity"]["ok"], true, "{d}");
    }
    c.ok(&["verify", "all.v2"]);
    c.ok(&[
        "import",
        "--no-progress",
        "--export-format",
        "2",
        "all.v2",
        "copy",
    ]);
    assert_eq!(
        Some(c.export_sha("copy@s2")),
        recorded_sha(&m, "raw/s2.raw")
    );
}

/// Pipes: integrity data arriving after the data is still checked (and
/// said so); a sidecar written next to a stdout export verifies the stream.
fn pipes(c: &Cli) {
    let m = manifest("basic-64k");
    basic_src(c);
    for fmt in ["1", "2"] {
        let img = format!("p{fmt}");
        c.ok(&["create", "--size", "0", "--object-size", "64K", &img]);
        for (from, snap) in [(None, "src@s1"), (Some("s1"), "src@s2")] {
            let mut a = vec![
                "export-diff",
                "--no-progress",
                "--integrity",
                "--export-format",
                fmt,
            ];
            if let Some(f) = from {
                a.extend(["--from-snap", f]);
            }
            a.extend([snap, "-"]);
            let (x, y) = c.pipe(&a, &["import-diff", "--no-progress", "-", &img]);
            x.ok();
            y.ok();
            assert!(
                y.stderr.contains("could not be checked before writing"),
                "{}",
                y.stderr
            );
        }
        assert_eq!(
            Some(c.export_sha(&format!("{img}@s2"))),
            recorded_sha(&m, "raw/s2.raw")
        );
    }
    let o = c.ok(&[
        "export-diff",
        "--no-progress",
        "--integrity-sidecar",
        "s1.sig",
        "src@s1",
        "-",
    ]);
    c.write("s1.diff", &o.stdout);
    let plain = c
        .ok(&["export-diff", "--no-progress", "src@s1", "-"])
        .stdout;
    assert!(o.stdout == plain, "a sidecar leaves the diff plain");
    c.ok(&["verify", "--integrity", "s1.sig", "s1.diff"]);
    let w = records(c, "s1.diff")
        .into_iter()
        .find(|r| r.0 == "w")
        .expect("a w record");
    let mut bad = o.stdout.clone();
    bad[usize::try_from(w.3 + 17).expect("small")] ^= 1;
    c.write("bad.diff", &bad);
    assert_eq!(
        c.run(&["verify", "--integrity", "s1.sig", "bad.diff"]).code,
        22
    );
}

/// `import --export-format 2` of a sealed image export checks each
/// embedded diff (no warning for its integrity records); a flipped payload
/// bit in the second diff stops the import there: rc 74, the diff and the
/// stream offset named, the first snapshot kept, the second not created.
fn sealed_image_export_is_verified_on_import(c: &Cli) {
    basic_src(c);
    let m = manifest("basic-64k");
    c.ok(&[
        "export",
        "--no-progress",
        "--export-format",
        "2",
        "--integrity",
        "src",
        "img.v2",
    ]);
    let o = c.ok(&[
        "import",
        "--no-progress",
        "--export-format",
        "2",
        "img.v2",
        "copy",
    ]);
    assert!(!o.stderr.contains("unrecognized tag"), "{}", o.stderr);
    assert_eq!(snaps(c, "copy"), ["s1", "s2"]);
    assert_eq!(
        Some(c.export_sha("copy@s2")),
        recorded_sha(&m, "raw/s2.raw")
    );
    assert_eq!(sha256_file(&head(c, "copy")), sha256_file(&head(c, "src")));

    let s: Value = serde_json::from_slice(
        &c.ok(&[
            "inspect",
            "--format",
            "json",
            "--records",
            "100000",
            "img.v2",
        ])
        .stdout,
    )
    .expect("json");
    let so = s["diffs"][1]["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["tag"] == "w" && r["length"].as_u64() > Some(8))
        .map(|r| r["stream_offset"].as_u64().expect("so"))
        .next()
        .expect("a w record in the second diff");
    flip(&c.path("img.v2"), so + 25 + 3, 0x10);
    for stdin in [false, true] {
        let img = format!("bad{}", u8::from(stdin));
        let args = ["import", "--no-progress", "--export-format", "2"];
        let o = if stdin {
            c.run_in(&[&args[..], &["-", &img]].concat(), &c.path("img.v2"))
        } else {
            c.run(&[&args[..], &["img.v2", &img]].concat())
        };
        assert_eq!(o.code, 74, "stdin {stdin}: {}", o.stderr);
        assert!(
            o.stderr.contains("integrity check of diff #2")
                && o.stderr
                    .contains(&format!("at stream offset {so} is corrupt")),
            "stdin {stdin}: {}",
            o.stderr
        );
        assert_eq!(snaps(c, &img), ["s1"], "stdin {stdin}");
    }
}

both!(
    wrong_base_is_refused,
    flipped_payload_bit_is_caught,
    interrupted_import_resumes,
    undo_restores_previous_state,
    real_rbd_diff_sealed,
    dry_run_size_is_exact,
    rbd_compatible_reading,
    pipes,
    sealed_image_export_is_verified_on_import
);
