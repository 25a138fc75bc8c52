//! The component's push/pull merge driver against the crate's std driver
//! (`rbdiff::merge::merge_streams`) and rbd merge-diff's outputs, with
//! chunkings a Python host test cannot afford (1-byte pushes and pulls).

use rbdiff::merge::{MergeOptions, merge_streams};
use rbdiff_component::merge::PushMerge;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    let p = std::env::var_os("RBDIFF_FIXTURES").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rbd-16.2.15"),
        PathBuf::from,
    );
    assert!(p.is_dir(), "fixtures not found at {}", p.display());
    p
}

fn read(rel: &str) -> Vec<u8> {
    let p = fixtures().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs the host loop; returns the output (or the error message) and the
/// most bytes the driver held at once.
fn push_merge(ins: &[Vec<u8>], chunk: usize, pull: usize) -> (Result<Vec<u8>, String>, usize) {
    let mut m = PushMerge::new(ins.len(), rbdiff::Format::DiffV1);
    let mut pos = vec![0; ins.len()];
    let mut out = Vec::new();
    let mut held = 0;
    loop {
        let step = match m.pull(pull) {
            Ok(s) => s,
            Err(e) => return (Err(e.message), held),
        };
        assert!(step.output.len() <= pull);
        out.extend_from_slice(&step.output);
        if step.done {
            return (Ok(out), held);
        }
        if let Some(i) = step.need_input {
            let end = (pos[i] + chunk).min(ins[i].len());
            if let Err(e) = m.push(i, &ins[i][pos[i]..end]) {
                return (Err(e.message), held);
            }
            pos[i] = end;
        }
        held = held.max(m.held_bytes());
    }
}

fn std_merge(ins: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut readers: Vec<&[u8]> = ins.iter().map(|v| v.as_slice()).collect();
    let mut out = Vec::new();
    merge_streams(
        &mut readers,
        &mut out,
        &MergeOptions::default(),
        &mut |_| {},
    )
    .map(|_| out)
    .map_err(|e| e.to_string())
}

const OK: &[(&str, &str, &str)] = &[
    (
        "basic-64k/diff/0..s1.diff",
        "basic-64k/diff/s1..s2.diff",
        "merge-diff/out/basic.0..s1+s1..s2.diff",
    ),
    (
        "basic-64k/diff/0..s1.whole.diff",
        "basic-64k/diff/s1..s2.whole.diff",
        "merge-diff/out/basic.whole.0..s1+s1..s2.diff",
    ),
    (
        "shrink/diff/s1..s2.diff",
        "shrink/diff/s2..s3.diff",
        "merge-diff/out/shrink.s1..s2+s2..s3.diff",
    ),
    (
        "grow/diff/0..s1.diff",
        "grow/diff/s1..s2.diff",
        "merge-diff/out/grow.0..s1+s1..s2.diff",
    ),
    (
        "merge-diff/inputs/a.diff",
        "merge-diff/inputs/b-shrink.diff",
        "merge-diff/out/crafted.a+b-shrink.diff",
    ),
];

#[test]
fn same_bytes_as_rbd_for_any_chunking() {
    for &(a, b, want) in OK {
        let ins = [read(a), read(b)];
        let want = read(want);
        assert_eq!(std_merge(&ins).as_deref(), Ok(&want[..]), "{a} + {b}");
        for (chunk, pull) in [
            (1, 1),
            (1, 4096),
            (3, 7),
            (4096, 1),
            (65536, 65536),
            (1 << 30, 1 << 30),
        ] {
            if want.len() > 100_000 && (chunk < 3 || pull < 7) {
                continue; // 1-byte steps over large files are only run on the small ones
            }
            let (got, held) = push_merge(&ins, chunk, pull);
            assert_eq!(
                got.as_deref(),
                Ok(&want[..]),
                "{a} + {b} chunk {chunk} pull {pull}"
            );
            if chunk < 1 << 30 {
                // Bounded: two pushed chunks per input (a header item split
                // across them), the pull size, one record header.
                let bound = ins.len() * 2 * chunk.max(64) + pull + 64;
                assert!(held <= bound, "{a} + {b}: held {held} > {bound}");
            }
        }
    }
}

#[test]
fn small_inputs_one_byte_at_a_time() {
    // The basic pair with 1-byte pushes and pulls (354 KB of output).
    let ins = [
        read("basic-64k/diff/0..s1.diff"),
        read("basic-64k/diff/s1..s2.diff"),
    ];
    let (got, held) = push_merge(&ins, 1, 1);
    assert_eq!(got.unwrap(), read("merge-diff/out/basic.0..s1+s1..s2.diff"));
    assert!(held <= 64, "held {held}");
}

const FAIL: &[(&str, &str)] = &[
    (
        "merge-diff/inputs/first.truncated-in-data.diff",
        "basic-64k/diff/s1..s2.diff",
    ),
    (
        "merge-diff/inputs/first.no-end.diff",
        "basic-64k/diff/s1..s2.diff",
    ),
    (
        "merge-diff/inputs/first.bad-banner.diff",
        "basic-64k/diff/s1..s2.diff",
    ),
    (
        "merge-diff/inputs/first.unknown-tag.diff",
        "basic-64k/diff/s1..s2.diff",
    ),
    (
        "basic-64k/diff/0..s1.diff",
        "merge-diff/inputs/second.truncated-in-data.diff",
    ),
    (
        "basic-64k/diff/0..s1.diff",
        "merge-diff/inputs/second.no-end.diff",
    ),
    (
        "basic-64k/diff/0..s1.diff",
        "merge-diff/inputs/second.unknown-tag.diff",
    ),
    ("basic-64k/diff/0..s1.diff", "basic-64k/diff/s2..head.diff"),
    ("merge-diff/inputs/empty.diff", "basic-64k/diff/s1..s2.diff"),
    (
        "merge-diff/inputs/a.diff",
        "merge-diff/inputs/b-nosize.diff",
    ),
    (
        "merge-diff/inputs/a-nosize.diff",
        "merge-diff/inputs/b.diff",
    ),
    (
        "merge-diff/inputs/a-unsorted.diff",
        "merge-diff/inputs/b.diff",
    ),
    (
        "merge-diff/inputs/a.diff",
        "merge-diff/inputs/b-unsorted.diff",
    ),
    (
        "merge-diff/inputs/a-zero-length.diff",
        "merge-diff/inputs/b.diff",
    ),
    (
        "merge-diff/inputs/a-overlapping.diff",
        "merge-diff/inputs/b.diff",
    ),
];

#[test]
fn same_errors_as_the_std_driver() {
    for &(a, b) in FAIL {
        let ins = [read(a), read(b)];
        let want = std_merge(&ins).expect_err(&format!("{a} + {b} must fail"));
        for (chunk, pull) in [(5, 3), (4096, 4096), (1 << 30, 1 << 30)] {
            let (got, _) = push_merge(&ins, chunk, pull);
            assert_eq!(
                got.err().as_deref(),
                Some(&want[..]),
                "{a} + {b} chunk {chunk}"
            );
        }
    }
}
