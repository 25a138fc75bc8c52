//! Arbitrary bytes plus split points: decoding in those chunks gives exactly the
//! events and the error of decoding whole (and byte by byte).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbdiff::Config;
use rbdiff_tests::{assert_same, decode, decode_whole, split_at_points, split_bytes};

fuzz_target!(|input: &[u8]| {
    // [n] [n x le16 split point] [stream...]
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let n = usize::from(n % 16);
    if rest.len() < 2 * n {
        return;
    }
    let (pts, data) = rest.split_at(2 * n);
    let points: Vec<usize> = pts
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();
    let chunks = split_at_points(data.len(), &points);
    for cfg in [Config::new(), Config::rbd_compatible(), Config::strict()] {
        let whole = decode_whole(data, cfg);
        assert_same(&decode(data, &chunks, cfg), &whole, "chunked vs whole");
        if data.len() < 4096 {
            assert_same(
                &decode(data, &split_bytes(data.len()), cfg),
                &whole,
                "bytes vs whole",
            );
        }
    }
});
