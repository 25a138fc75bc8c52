//! Arbitrary bytes as a v1 integrity trailer / sidecar, and as the end of a
//! diff file: the whole-buffer parser, the push parser fed in arbitrary
//! pieces and the streaming reader (with limits) agree; a parsed trailer
//! re-encodes to one that parses the same; the verifier's bounded window
//! over bytes after an `e` and `read_tail` never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbdiff::integrity::{
    Manifest, StreamVerifier, TrailerError, TrailerParser, TrailerReadError, read_tail,
    read_trailer,
};
use rbdiff_tests::split_at_points;
use std::io::Cursor;

fuzz_target!(|input: &[u8]| {
    // [n] [n x le16 split point] [le16 limit slack] [bytes...]
    let Some((&n, rest)) = input.split_first() else {
        return;
    };
    let n = usize::from(n % 8);
    if rest.len() < 2 * n + 2 {
        return;
    }
    let (pts, rest) = rest.split_at(2 * n);
    let (slack, data) = rest.split_at(2);
    let slack = u64::from(u16::from_le_bytes([slack[0], slack[1]]));
    let points: Vec<usize> = pts
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])))
        .collect();

    let whole = Manifest::from_trailer(data);
    // Pushed in pieces.
    let mut p = TrailerParser::new(u64::MAX);
    let mut at = 0;
    let mut pushed = Ok(());
    for len in split_at_points(data.len(), &points) {
        pushed = p.push(&data[at..at + len]);
        at += len;
        if pushed.is_err() {
            break;
        }
    }
    let pieces = pushed.and_then(|()| p.finish());
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("whole {whole:?} vs pieces {pieces:?}"),
    }
    // Streamed with a limit: refused as too long only past the limit.
    let limit = (data.len() as u64).saturating_sub(slack);
    match (read_trailer(data, limit), &whole) {
        (Ok(m), Ok(w)) => assert_eq!(&m, w),
        (Err(TrailerReadError::Trailer(TrailerError::TooLong { len, limit: l })), _) => {
            assert!(len > l && l == limit);
        }
        (Err(TrailerReadError::Io(e)), _) => panic!("reading a slice failed: {e}"),
        (Err(_), Err(_)) => {}
        (r, w) => panic!("read_trailer {r:?} vs whole {w:?}"),
    }
    if let Ok(m) = &whole {
        let again = Manifest::from_trailer(&m.to_trailer()).expect("re-encoded trailer parses");
        assert_eq!(again.entries, m.entries);
        assert_eq!(again.base_size, m.base_size);
    }
    // As the end of a diff file (v1 trailer or v2 H/K records).
    let _ = read_tail(&mut Cursor::new(data));
    // As bytes after the `e` of a diff with no records, in pieces.
    let mut v = StreamVerifier::new(None);
    let mut at = 0;
    for len in split_at_points(data.len(), &points) {
        v.trailing(&data[at..at + len]);
        at += len;
    }
    let _ = v.finish();
});
