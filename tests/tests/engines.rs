//! Merge, apply and export engines against the real-rbd corpus.
use rbdiff::Config;
use std::path::Path;

#[test]
fn merge_matches_rbd_bytes_and_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rbd-16.2.15");
    let cases = [
        (
            "basic-64k",
            "diff/0..s1.diff",
            "diff/s1..s2.diff",
            "merge-diff/out/basic.0..s1+s1..s2.diff",
        ),
        (
            "basic-64k",
            "diff/s1..s2.diff",
            "diff/s2..head.diff",
            "merge-diff/out/basic.s1..s2+s2..head.diff",
        ),
        (
            "basic-64k",
            "diff/0..s1.whole.diff",
            "diff/s1..s2.whole.diff",
            "merge-diff/out/basic.whole.0..s1+s1..s2.diff",
        ),
        (
            "basic-64k",
            "diff/0..s1.diff",
            "diff/s1..s2.whole.diff",
            "merge-diff/out/basic.0..s1+s1..s2.whole.diff",
        ),
        (
            "shrink",
            "diff/s1..s2.diff",
            "diff/s2..s3.diff",
            "merge-diff/out/shrink.s1..s2+s2..s3.diff",
        ),
        (
            "shrink",
            "diff/0..s1.diff",
            "diff/s1..s2.diff",
            "merge-diff/out/shrink.0..s1+s1..s2.diff",
        ),
        (
            "shrink",
            "diff/s2..s3.diff",
            "diff/s3..head.diff",
            "merge-diff/out/shrink.s2..s3+s3..head.diff",
        ),
        (
            "grow",
            "diff/0..s1.diff",
            "diff/s1..s2.diff",
            "merge-diff/out/grow.0..s1+s1..s2.diff",
        ),
        (
            "grow",
            "diff/s1..s2.diff",
            "diff/s2..head.diff",
            "merge-diff/out/grow.s1..s2+s2..head.diff",
        ),
        (
            "empty",
            "diff/0..s1.diff",
            "diff/s1..s2.diff",
            "merge-diff/out/empty.0..s1+s1..s2.diff",
        ),
        (
            "empty",
            "diff/s1..s2.diff",
            "diff/s2..head.diff",
            "merge-diff/out/empty.s1..s2+s2..head.diff",
        ),
        (
            "merge-diff",
            "inputs/a.diff",
            "inputs/b.diff",
            "merge-diff/out/crafted.a+b.diff",
        ),
        (
            "merge-diff",
            "inputs/a.diff",
            "inputs/b-shrink.diff",
            "merge-diff/out/crafted.a+b-shrink.diff",
        ),
        (
            "merge-diff",
            "inputs/a.diff",
            "inputs/b-grow.diff",
            "merge-diff/out/crafted.a+b-grow.diff",
        ),
        (
            "merge-diff",
            "inputs/c-nosnaps.diff",
            "inputs/c-nosnaps.diff",
            "merge-diff/out/crafted.nosnaps+nosnaps.diff",
        ),
    ];
    for (case, a, b, out) in cases {
        let a = std::fs::read(root.join(case).join(a)).unwrap();
        let b = std::fs::read(root.join(case).join(b)).unwrap();
        let want = std::fs::read(root.join(out)).unwrap();
        let mut got = Vec::new();
        let r = rbdiff::merge::merge_streams(
            &mut [&a[..], &b[..]],
            &mut got,
            &Default::default(),
            &mut |_| {},
        );
        let stats = r.unwrap_or_else(|e| panic!("{out}: {e}"));
        assert!(got == want, "{out}: merge output differs from rbd's");
        assert_eq!(stats.bytes_written, want.len() as u64);
    }
    use rbdiff::merge::Phase::*;
    // rbd's messages: "out-of-order offset from first diff (20 > 0)", "failed to read first diff
    // data chunk header" (RecordHeader), "failed to merge diff chunk" (Data).
    for (a, b, input, phase, msg) in [
        (
            "inputs/a-nosize.diff",
            "inputs/b.diff",
            0,
            RecordHeader,
            "out-of-order offset (20 > 0)",
        ),
        (
            "inputs/a.diff",
            "inputs/b-nosize.diff",
            1,
            RecordHeader,
            "out-of-order offset (20 > 0)",
        ),
        (
            "inputs/a-unsorted.diff",
            "inputs/b.diff",
            0,
            RecordHeader,
            "out-of-order offset (5010 > 0)",
        ),
        (
            "inputs/a.diff",
            "inputs/b-unsorted.diff",
            1,
            RecordHeader,
            "out-of-order offset (5010 > 0)",
        ),
        (
            "inputs/a-zero-length.diff",
            "inputs/b.diff",
            0,
            RecordHeader,
            "zero-length record",
        ),
        (
            "inputs/a-overlapping.diff",
            "inputs/b.diff",
            0,
            RecordHeader,
            "out-of-order offset (1000 > 500)",
        ),
        (
            "inputs/first.unknown-tag.diff",
            "../basic-64k/diff/s1..s2.diff",
            0,
            RecordHeader,
            "unknown record tag",
        ),
        (
            "../basic-64k/diff/0..s1.diff",
            "inputs/second.unknown-tag.diff",
            1,
            RecordHeader,
            "unknown record tag",
        ),
        (
            "inputs/first.truncated-in-data.diff",
            "../basic-64k/diff/s1..s2.diff",
            0,
            Data,
            "write data",
        ),
        (
            "inputs/first.no-end.diff",
            "../basic-64k/diff/s1..s2.diff",
            0,
            RecordHeader,
            "a record tag",
        ),
        (
            "inputs/first.bad-banner.diff",
            "../basic-64k/diff/s1..s2.diff",
            0,
            Header,
            "bad banner",
        ),
        (
            "inputs/empty.diff",
            "../basic-64k/diff/s1..s2.diff",
            0,
            Header,
            "stream banner",
        ),
        (
            "../basic-64k/diff/0..s1.diff",
            "../basic-64k/diff/s2..head.diff",
            1,
            Header,
            "does not match",
        ),
    ] {
        let da = std::fs::read(root.join("merge-diff").join(a)).unwrap();
        let db = std::fs::read(root.join("merge-diff").join(b)).unwrap();
        let mut got = Vec::new();
        let r = rbdiff::merge::merge_streams(
            &mut [&da[..], &db[..]],
            &mut got,
            &Default::default(),
            &mut |_| {},
        );
        let e = r.expect_err(a);
        assert_eq!((e.input, e.phase), (Some(input), phase), "{a} + {b}: {e}");
        assert!(e.to_string().contains(msg), "{a} + {b}: {e}");
    }
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(b))
}

#[test]
fn apply_and_export_reproduce_every_manifest_result() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rbd-16.2.15");
    let mut n = 0;
    for case in ["basic-64k", "discard-zero", "empty", "grow", "shrink"] {
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(case).join("manifest.json")).unwrap())
                .unwrap();
        let order = m["images"].as_object().unwrap().values().next().unwrap()["order"]
            .as_u64()
            .unwrap();
        for rel in m["relationships"].as_array().unwrap() {
            if rel["kind"] != "apply" {
                continue;
            }
            let base_name = rel["base"].as_str().unwrap();
            let mut img: Vec<u8> = if base_name == "zeros" {
                vec![]
            } else {
                // base may be unstored: rebuild from diff/0..<p>.diff
                let p = root.join(case).join(base_name);
                if p.exists() {
                    std::fs::read(p).unwrap()
                } else {
                    let pt = base_name
                        .trim_start_matches("raw/")
                        .trim_end_matches(".raw");
                    let mut v = vec![];
                    rbdiff::apply::apply_stream(
                        std::fs::File::open(root.join(case).join(format!("diff/0..{pt}.diff")))
                            .unwrap(),
                        &mut v,
                        Config::new(),
                        4096,
                    )
                    .unwrap();
                    v
                }
            };
            let base = img.clone();
            let Ok(diff) = std::fs::read(root.join(case).join(rel["diff"].as_str().unwrap()))
            else {
                continue;
            };
            rbdiff::apply::apply_stream(&diff[..], &mut img, Config::new(), 4096).unwrap();
            assert_eq!(
                sha(&img),
                rel["result_sha256"].as_str().unwrap(),
                "{case} {}",
                rel["diff"]
            );
            // export between base and result, re-apply
            for whole in [false, true] {
                let mut enc = rbdiff::Encoder::diff(Vec::new(), rbdiff::Format::DiffV1).unwrap();
                let mut b2 = base.clone();
                let mut t2 = img.clone();
                rbdiff::export::export_diff(
                    Some(&mut b2),
                    &mut t2,
                    &Default::default(),
                    &rbdiff::export::ExportOptions::new()
                        .with_object_size(1 << order)
                        .with_whole_object(whole),
                    &mut enc,
                    &mut |_, _| {},
                )
                .unwrap();
                let out = enc.finish().unwrap();
                let mut again = base.clone();
                rbdiff::apply::apply_stream(&out[..], &mut again, rbdiff::Config::strict(), 4096)
                    .unwrap();
                assert_eq!(sha(&again), rel["result_sha256"].as_str().unwrap());
            }
            n += 1;
        }
    }
    println!("applied {n}");
}
