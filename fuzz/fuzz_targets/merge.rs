//! Two or three arbitrary streams merged: never a panic; when every input is a
//! clean diff and the merge succeeds, applying the merge equals applying the
//! inputs in sequence (naive model).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbdiff::merge::{MergeOptions, merge_streams};
use rbdiff::{Config, Format};
use rbdiff_tests::{Ev, apply_stream, decode_whole};

const MAX_SIZE: u64 = 1 << 24;

fuzz_target!(|input: &[u8]| {
    // [flags] [le16 len of input 0] [le16 len of input 1] [rest = last input]
    if input.len() < 5 {
        return;
    }
    let three = input[0] & 1 == 1;
    let out_v2 = input[0] & 2 == 2;
    let l0 = usize::from(u16::from_le_bytes([input[1], input[2]]));
    let l1 = usize::from(u16::from_le_bytes([input[3], input[4]]));
    let rest = &input[5..];
    let l0 = l0.min(rest.len());
    let (a, rest) = rest.split_at(l0);
    let streams: Vec<&[u8]> = if three {
        let l1 = l1.min(rest.len());
        let (b, c) = rest.split_at(l1);
        vec![a, b, c]
    } else {
        vec![a, rest]
    };
    let mut inputs = streams.clone();
    let mut out = Vec::new();
    let opts = MergeOptions::new().with_output(if out_v2 {
        Format::DiffV2
    } else {
        Format::DiffV1
    });
    let r = merge_streams(&mut inputs, &mut out, &opts, &mut |_| {});
    if r.is_err() {
        return;
    }
    // The merge output itself is always a clean stream.
    let merged = decode_whole(&out, Config::strict());
    assert!(
        merged.error.is_none(),
        "merge wrote an invalid stream: {:?}",
        merged.error
    );
    let clean = streams.iter().all(|s| {
        let d = decode_whole(s, Config::strict());
        d.error.is_none()
            && d.evs()
                .iter()
                .all(|e| !matches!(e, Ev::Size(n) if *n > MAX_SIZE))
            && d.evs().iter().any(|e| matches!(e, Ev::Size(_)))
    });
    if !clean {
        return;
    }
    let mut seq = Vec::new();
    for s in &streams {
        seq = apply_stream(seq, s).expect("clean input applies");
    }
    let m = apply_stream(Vec::new(), &out).expect("merge output applies");
    assert!(m == seq, "apply(merge) != sequential apply");
});
