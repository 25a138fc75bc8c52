//! The import engine in the CLI (issue 13, issue 14 finding 1): a failed
//! import leaves the image as rbd leaves it (a stream cut inside a `w`
//! payload writes nothing of that record), integrity data that cannot belong
//! to the stream is refused at once, and exact messages; natively and under
//! wasmtime.
#![allow(clippy::cast_possible_truncation)] // offsets of small corpus files

mod cli_common;

use cli_common::{Cli, Runner, native_bin, noise, sha256, sha256_file, snaps};
use rbdiff::integrity::{Checksum, Entry, Manifest, TAG_CHECKSUM, TAG_HASHES};
use rbdiff::{Config, Encoder, Format};
use rbdiff_tests::{Ev, Model, decode_whole};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn head(c: &Cli, img: &str) -> std::path::PathBuf {
    c.path(&format!("store/rbd/{img}/head"))
}

fn corpus(rel: &str) -> Vec<u8> {
    let p = cli_common::fixtures().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Stream offsets inside `w` payloads to cut at: the first payload byte,
/// one past it and the middle, of the first, a middle and the last record.
fn cuts_inside_payloads(stream: &[u8]) -> Vec<usize> {
    let d = decode_whole(stream, Config::rbd_compatible());
    // (payload start, length): a `w` header's first data piece starts it.
    let mut w: Vec<(usize, usize)> = vec![];
    let mut open = None;
    for (off, e) in &d.events {
        match e {
            Ev::Write { len, .. } => open = Some(*len as usize),
            Ev::Data { .. } => {
                if let Some(len) = open.take().filter(|&l| l > 1) {
                    w.push((*off as usize, len));
                }
            }
            _ => open = None,
        }
    }
    assert!(!w.is_empty(), "the stream has payloads to cut");
    let mut picks = vec![0, w.len() / 2, w.len() - 1];
    picks.dedup();
    let mut cuts = vec![];
    for i in picks {
        let (start, len) = w[i];
        cuts.extend([start, start + 1, start + len / 2]);
    }
    cuts
}

/// The image rbd leaves: `base` plus every record complete before the cut.
fn expected_after_cut(base: Vec<u8>, cut: &[u8]) -> String {
    let d = decode_whole(cut, Config::rbd_compatible());
    assert!(d.error.is_some(), "a cut stream fails to decode");
    let mut m = Model::from_bytes(base);
    m.apply(&d.evs()).expect("records before the cut apply");
    m.sha256()
}

/// `import-diff` of real-rbd diffs cut inside `w` payloads: rc 74, no end
/// snapshot, the image is the base plus the complete records before the
/// cut (store image from a file and from a pipe, raw file).
fn cut_diff_leaves_complete_records(c: &Cli) {
    let first = c.fx("basic-64k/diff/0..s1.diff");
    let stream = corpus("basic-64k/diff/s1..s2.diff");
    let base =
        rbdiff_tests::apply_stream(Vec::new(), &corpus("basic-64k/diff/0..s1.diff")).expect("base");
    c.write("base.raw", &base);
    for (i, cut) in cuts_inside_payloads(&stream).into_iter().enumerate() {
        let want = expected_after_cut(base.clone(), &stream[..cut]);
        c.write("cut.diff", &stream[..cut]);
        // store image, from the file
        let img = format!("img{i}");
        c.ok(&["create", "--size", "0", &img]);
        c.ok(&["import-diff", "--no-progress", &first, &img]);
        let o = c.run(&["import-diff", "--no-progress", "cut.diff", &img]);
        assert_eq!(o.code, 74, "cut at {cut}: {}", o.stderr);
        assert!(
            o.stderr
                .starts_with("rbd: failed to decode write data\nrbd: import-diff failed: (74)"),
            "{}",
            o.stderr
        );
        assert_eq!(snaps(c, &img), vec!["s1".to_string()], "no end snapshot");
        assert_eq!(sha256_file(&head(c, &img)), want, "cut at {cut}");
        // from a pipe
        let img = format!("pipe{i}");
        c.ok(&["create", "--size", "0", &img]);
        c.ok(&["import-diff", "--no-progress", &first, &img]);
        let o = c.run_in(
            &["import-diff", "--no-progress", "-", &img],
            &c.path("cut.diff"),
        );
        assert_eq!(o.code, 74, "pipe, cut at {cut}: {}", o.stderr);
        assert_eq!(snaps(c, &img), vec!["s1".to_string()]);
        assert_eq!(sha256_file(&head(c, &img)), want, "pipe, cut at {cut}");
        // raw file
        std::fs::copy(c.path("base.raw"), c.path("t.raw")).expect("copy");
        let o = c.run(&["import-diff", "--no-progress", "cut.diff", "./t.raw"]);
        assert_eq!(o.code, 74, "raw, cut at {cut}: {}", o.stderr);
        assert_eq!(sha256_file(&c.path("t.raw")), want, "raw, cut at {cut}");
        assert!(!c.path("t.raw.rbdiff-resume").exists(), "no journal");
    }
}

/// `import --export-format 2` of rbd's export cut inside a payload of its
/// last diff: the snapshots completed stay (rbd cannot remove the image),
/// HEAD holds the complete records only.
fn cut_image_export_leaves_complete_records(c: &Cli) {
    let stream = corpus("basic-64k/export/image.v2");
    let cuts = cuts_inside_payloads(&stream);
    for (i, &cut) in cuts[cuts.len() - 3..].iter().enumerate() {
        let want = expected_after_cut(Vec::new(), &stream[..cut]);
        c.write("cut.v2", &stream[..cut]);
        let img = format!("v2cut{i}");
        let o = c.run(&[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            "cut.v2",
            &img,
        ]);
        assert_eq!(o.code, 33, "cut at {cut}: {}", o.stderr);
        assert!(
            o.stderr.contains("failed to decode write data"),
            "{}",
            o.stderr
        );
        assert_eq!(snaps(c, &img), vec!["s1".to_string(), "s2".to_string()]);
        assert_eq!(sha256_file(&head(c, &img)), want, "cut at {cut}");
    }
}

/// A v1 diff whose integrity trailer (or sidecar) declares one block of
/// 2^63 bytes (issue 14, finding 1: import-diff hashed the target for
/// hours). Refused before anything is read or written.
fn huge_block_in_integrity_data(c: &Cli) {
    let mut enc = Encoder::diff(Vec::new(), Format::DiffV1).expect("encoder");
    enc.size(4096).expect("s");
    enc.zero(0, 4096).expect("z");
    enc.end_diff().expect("e");
    let diff = enc.finish().expect("diff");
    let m = Manifest {
        base_size: None,
        entries: vec![Entry {
            offset: 0,
            len: 1 << 63,
            pre: 0,
            post: 0,
        }],
        checksum: Some(Checksum {
            records: 1,
            stream_bytes: diff.len() as u64,
            hash: 0,
            hashes_offset: 0,
        }),
    };
    let mut sealed = diff.clone();
    sealed.extend_from_slice(&m.to_trailer());
    c.write("huge.diff", &sealed);
    c.write("plain.diff", &diff);
    c.write("plain.diff.rbdiff-integrity", &m.to_trailer());
    // The same as in-band `H`/`K` records of a v2 diff.
    let mut enc = Encoder::diff(Vec::new(), Format::DiffV2).expect("encoder");
    enc.size(4096).expect("s");
    enc.zero(0, 4096).expect("z");
    let hashes_offset = enc.position();
    enc.extension(TAG_HASHES, &m.hashes_payload()).expect("H");
    let k = Checksum {
        records: 1,
        stream_bytes: hashes_offset,
        hash: 0,
        hashes_offset,
    };
    enc.extension(TAG_CHECKSUM, &k.to_bytes()).expect("K");
    enc.end_diff().expect("e");
    c.write("huge-v2.diff", &enc.finish().expect("v2 diff"));
    let base = vec![7u8; 4096];
    for file in ["huge.diff", "plain.diff", "huge-v2.diff"] {
        c.write("t.raw", &base);
        let mut child = c
            .command(&["import-diff", "--no-progress", file, "./t.raw"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Not a speed target: a bound that tells a refusal from a hang.
        let t = Instant::now();
        while child.try_wait().expect("wait").is_none() {
            if t.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                panic!("{file}: import-diff still running after 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = child.wait_with_output().expect("output");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(22), "{file}: {stderr}");
        assert!(
            stderr.contains("does not fit it: record #1 (0+9223372036854775808) reaches past the image size 4096"),
            "{file}: {stderr}"
        );
        assert!(stderr.contains("nothing was written"), "{stderr}");
        assert_eq!(sha256_file(&c.path("t.raw")), sha256(&base), "untouched");
        assert!(!c.path("t.raw.rbdiff-resume").exists(), "no journal");
    }
}

/// The message for a sidecar asked of a v2 diff, exactly.
fn v2_sidecar_message(c: &Cli) {
    c.write("a.raw", &[1u8; 8192]);
    let o = c.run(&[
        "export-diff",
        "--no-progress",
        "--export-format",
        "2",
        "--integrity-sidecar",
        "side.sig",
        "./a.raw",
        "out.diff",
    ]);
    assert_eq!(o.code, 22, "{}", o.stderr);
    assert_eq!(
        o.stderr,
        "rbdiff: --integrity-sidecar is for v1 diffs: a v2 diff carries its integrity data \
         in-band (--integrity); 'rbdiff seal' makes a sidecar for any existing diff\n"
    );
}

both!(
    cut_diff_leaves_complete_records,
    cut_image_export_leaves_complete_records,
    huge_block_in_integrity_data,
    v2_sidecar_message,
);

/// A write the filesystem refuses as too large (here RLIMIT_FSIZE, as ext4
/// past 16 TiB) fails with rbd's EFBIG, and no journal is kept: a re-run
/// would meet it again (issue 14, finding 6). Native: WASI has no rlimits.
#[test]
fn file_too_large_keeps_no_journal() {
    let c = Cli::new(Runner::Native);
    let size = 8u64 << 20;
    c.write("t.raw", &vec![0u8; size as usize]);
    let data = noise(size as usize, 3);
    let mut enc = Encoder::diff(Vec::new(), Format::DiffV1).expect("encoder");
    enc.size(size).expect("s");
    for (i, chunk) in data.chunks(64 << 10).enumerate() {
        enc.write((i as u64) << 16, chunk).expect("w");
    }
    enc.end_diff().expect("e");
    c.write("d.diff", &enc.finish().expect("diff"));
    // 4 MiB: bash counts `ulimit -f` in KiB; SIGXFSZ ignored, so the write
    // fails with EFBIG instead of killing the process.
    let o: cli_common::Out = std::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -f 4096; trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(native_bin())
        .args([
            "--store",
            "store",
            "import-diff",
            "--no-progress",
            "d.diff",
            "./t.raw",
        ])
        .current_dir(&c.dir)
        .env("RBDIFF_RESUME_INTERVAL", "65536")
        .stdin(Stdio::null())
        .output()
        .expect("spawn")
        .into();
    assert_eq!(o.code, 27, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("rbd: import-diff failed: (27) File too large"),
        "{}",
        o.stderr
    );
    assert!(!c.path("t.raw.rbdiff-resume").exists(), "no journal kept");
}
