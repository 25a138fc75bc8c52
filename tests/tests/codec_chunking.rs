//! Chunking invariance on the whole corpus, and small hand-made good and bad
//! streams with the exact errors the decoder must report.
#![allow(clippy::cast_possible_truncation)] // test code, 64-bit hosts only

use rbdiff::{
    Check, Config, DecodeError, Decoder, DiffHeader, ErrorKind, Event, Expected, Format, FormatSet,
    Step, Zone,
};
use rbdiff_tests::*;

fn all_inputs() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = stream_files()
        .into_iter()
        .map(|f| (f.id(), f.read()))
        .collect();
    let r = ext_results();
    for (name, meta) in r["inputs"].as_object().unwrap() {
        if meta["stored"].as_bool().unwrap() {
            v.push((format!("extension-compat/{name}"), ext_input(name)));
        }
    }
    v
}

#[test]
fn every_fixture_is_chunking_invariant() {
    let configs = [Config::rbd_compatible(), Config::new(), Config::strict()];
    let mut n = 0;
    for (id, data) in all_inputs() {
        for (ci, cfg) in configs.iter().enumerate() {
            let whole = decode_whole(&data, *cfg);
            assert_same(
                &decode_raw(&data, *cfg),
                &whole,
                &format!("{id} cfg {ci}: raw decoder"),
            );
            // Byte by byte for every config on small files, for the first on large ones.
            if ci == 0 || data.len() < 100_000 {
                assert_eq!(
                    decode(&data, &split_bytes(data.len()), *cfg),
                    whole,
                    "{id} cfg {ci}: bytes"
                );
            }
            let seeds = if ci == 0 { 20 } else { 3 };
            for seed in 0..seeds {
                let chunks = split_random(data.len(), seed * 7919 + ci as u64);
                assert_eq!(
                    decode(&data, &chunks, *cfg),
                    whole,
                    "{id} cfg {ci}: seed {seed}"
                );
            }
        }
        n += 1;
    }
    assert!(n >= 170, "{n}");
}

// ------------------------------------------------------------------ hand-made streams

fn v1(records: &[Rec]) -> Vec<u8> {
    encode_diff(
        Format::DiffV1,
        &DiffHeader {
            from: Some(b"a"),
            to: Some(b"bb"),
            protected: None,
            size: Some(1 << 20),
        },
        records,
    )
}

/// Decodes whole, byte by byte and in random splits: all must agree; returns the whole result.
fn dec(data: &[u8], cfg: Config) -> Decoded {
    let whole = decode_whole(data, cfg);
    assert_eq!(decode(data, &split_bytes(data.len()), cfg), whole, "bytes");
    assert_eq!(decode_raw(data, cfg), whole, "raw");
    for seed in 0..5 {
        assert_eq!(
            decode(data, &split_random(data.len(), seed), cfg),
            whole,
            "seed {seed}"
        );
    }
    whole
}

fn err(data: &[u8], cfg: Config) -> DecodeError {
    dec(data, cfg).error.expect("must fail")
}

fn le(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

#[test]
fn bad_banners() {
    let mut s = v1(&[]);
    s[10] = b'9';
    let e = err(&s, Config::new());
    let mut found = [0u8; 13];
    found[..12].copy_from_slice(b"rbd diff v9\n");
    assert_eq!(
        e,
        DecodeError::new(
            0,
            ErrorKind::BadBanner {
                expected: None,
                found,
                found_len: 12
            }
        )
    );
    // A v2 diff where only v1 is accepted names the expected format.
    let v2 = encode_diff(Format::DiffV2, &DiffHeader::default(), &[]);
    let e = err(&v2, Config::new().with_formats(FormatSet::V1));
    assert!(
        matches!(
            e.kind,
            ErrorKind::BadBanner {
                expected: Some(Format::DiffV1),
                ..
            }
        ),
        "{e}"
    );
    // A v1 diff where only images are accepted.
    let e = err(&s, Config::new().with_formats(FormatSet::IMAGE));
    assert!(
        matches!(
            e.kind,
            ErrorKind::BadBanner {
                expected: Some(Format::ImageV2),
                ..
            }
        ),
        "{e}"
    );
    // Short garbage is a bad banner, a short true prefix is truncation.
    assert!(matches!(
        err(b"xyz", Config::new()).kind,
        ErrorKind::BadBanner { found_len: 3, .. }
    ));
    assert_eq!(
        err(b"rbd d", Config::new()).kind,
        ErrorKind::UnexpectedEof {
            expected: Expected::Banner,
            missing: 7
        }
    );
    assert_eq!(
        err(b"", Config::new()).kind,
        ErrorKind::UnexpectedEof {
            expected: Expected::Banner,
            missing: 12
        }
    );
    // "rbd image v2" without its newline.
    assert!(matches!(
        err(b"rbd image v2X", Config::new()).kind,
        ErrorKind::BadBanner { .. }
    ));
    // Garbage is rejected as soon as it is seen, without waiting for 12 bytes? No:
    // the decoder may wait for the banner; but it must never accept it.
    let mut d = Decoder::new(Config::new());
    assert!(d.decode(b"rbd diff v3\n", false).is_err());
}

#[test]
fn unknown_tags_v1_strict_vs_rbd_compatible() {
    let good = v1(&[Rec::W(0, b"abcd".to_vec())]);
    // Insert "XY" before the w record (after banner 12 + f 6 + t 7 + s 9 = 34).
    let at = 12 + 6 + 7 + 9;
    let mut s = good.clone();
    s.splice(at..at, *b"XY");
    for cfg in [Config::new(), Config::strict()] {
        assert_eq!(
            err(&s, cfg),
            DecodeError::new(
                at as u64,
                ErrorKind::UnknownTag {
                    tag: b'X',
                    zone: Zone::DiffV1
                }
            )
        );
    }
    let d = dec(&s, Config::rbd_compatible()).ok("rbd-compatible");
    let evs = d.evs();
    let unknown: Vec<_> = d
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Ev::Unknown { .. }))
        .cloned()
        .collect();
    assert_eq!(
        unknown,
        vec![
            (
                at as u64,
                Ev::Unknown {
                    tag: b'X',
                    len: None
                }
            ),
            (
                at as u64 + 1,
                Ev::Unknown {
                    tag: b'Y',
                    len: None
                }
            )
        ]
    );
    // Same records as without the bytes.
    let plain = dec(&good, Config::rbd_compatible()).ok("good").evs();
    let strip = |v: Vec<Ev>| -> Vec<Ev> {
        v.into_iter()
            .filter(|e| !matches!(e, Ev::Unknown { .. }))
            .collect()
    };
    assert_eq!(strip(evs), plain);
}

#[test]
fn unknown_tags_v2_skipped_by_length() {
    let mut enc = rbdiff::Encoder::diff(Vec::new(), Format::DiffV2).unwrap();
    enc.size(4096).unwrap();
    enc.extension(b'X', b"payload!").unwrap();
    enc.write(0, b"ab").unwrap();
    enc.extension(b'Y', b"").unwrap();
    enc.end_diff().unwrap();
    let s = enc.finish().unwrap();
    let x_at = 12 + 17;
    for cfg in [Config::new(), Config::rbd_compatible()] {
        let d = dec(&s, cfg).ok("v2");
        let evs = d.evs();
        assert!(evs.contains(&Ev::Unknown {
            tag: b'X',
            len: Some(8)
        }));
        assert!(evs.contains(&Ev::UnknownData(b"payload!".to_vec())));
        assert!(evs.contains(&Ev::Unknown {
            tag: b'Y',
            len: Some(0)
        }));
        assert!(evs.contains(&Ev::Data {
            offset: 0,
            bytes: b"ab".to_vec()
        }));
    }
    assert_eq!(
        err(&s, Config::strict()),
        DecodeError::new(
            x_at,
            ErrorKind::UnknownTag {
                tag: b'X',
                zone: Zone::DiffV2
            }
        )
    );
    // Unknown record in an image header.
    let mut img = image_stream(&[]);
    let e_at = img.iter().position(|&b| b == b'E').unwrap();
    let mut ext = vec![b'Q'];
    ext.extend_from_slice(&le(3));
    ext.extend_from_slice(b"xyz");
    img.splice(e_at..e_at, ext);
    let d = dec(&img, Config::new()).ok("image");
    assert!(d.evs().contains(&Ev::Unknown {
        tag: b'Q',
        len: Some(3)
    }));
    assert_eq!(
        err(&img, Config::strict()),
        DecodeError::new(
            e_at as u64,
            ErrorKind::UnknownTag {
                tag: b'Q',
                zone: Zone::ImageHeader
            }
        )
    );
}

fn image_stream(diffs: &[&[Rec]]) -> Vec<u8> {
    let meta: &[(&[u8], &[u8])] = &[(b"k2", b"v"), (b"k1", b"\0x")];
    let h = rbdiff::ImageHeader {
        order: 22,
        features: 61,
        stripe_unit: 4 << 20,
        stripe_count: 1,
        meta,
    };
    let mut enc = rbdiff::Encoder::image(Vec::new(), &h, diffs.len() as u64).unwrap();
    for (i, recs) in diffs.iter().enumerate() {
        enc.begin_diff().unwrap();
        let from = format!("s{i}");
        let to = format!("s{}", i + 1);
        enc.header(&DiffHeader {
            from: (i > 0).then_some(from.as_bytes()),
            to: Some(to.as_bytes()),
            protected: Some(i % 2 == 1),
            size: Some(8192),
        })
        .unwrap();
        for r in *recs {
            match r {
                Rec::W(o, d) => enc.write(*o, d).unwrap(),
                Rec::Z(o, l) => enc.zero(*o, *l).unwrap(),
            }
        }
        enc.end_diff().unwrap();
    }
    enc.finish().unwrap()
}

/// A stream with its items: `(start, thresholds)`, where thresholds are the
/// cumulative byte counts (from the item start) the decoder needs in turn and what
/// it calls them; `payload` items (w data, unknown payloads) fail at the cut itself.
struct Layout {
    items: Vec<(u64, Vec<(u64, Expected)>)>,
    payloads: Vec<(u64, u64, Expected)>,
}

/// The error a copy of the stream cut at `cut` must give.
fn truncation_error(l: &Layout, cut: u64) -> DecodeError {
    for &(start, end, exp) in &l.payloads {
        if cut >= start && cut < end {
            return DecodeError::new(
                cut,
                ErrorKind::UnexpectedEof {
                    expected: exp,
                    missing: end - cut,
                },
            );
        }
    }
    let (start, th) = l.items.iter().rev().find(|(s, _)| *s <= cut).unwrap();
    let avail = cut - start;
    let &(need, exp) = th
        .iter()
        .find(|(n, _)| *n > avail)
        .expect("cut inside the item");
    DecodeError::new(
        *start,
        ErrorKind::UnexpectedEof {
            expected: exp,
            missing: need - avail,
        },
    )
}

/// Derives the layout of a decoded stream from its events and the rbd formats
/// (§1 of the spec): this is the oracle for truncation errors.
fn layout(d: &Decoded) -> Layout {
    let mut items = Vec::new();
    let mut payloads = Vec::new();
    let mut v2 = false;
    let evs = &d.events;
    for (off, e) in evs.iter() {
        let h = if v2 { 9 } else { 1 };
        let tagged = |rest: Vec<(u64, Expected)>| {
            let mut t = vec![(1, Expected::Tag)];
            if v2 {
                t.push((9, Expected::TagLength));
            }
            t.extend(rest);
            t
        };
        match e {
            Ev::Banner(f) => {
                v2 = *f != Format::DiffV1;
                let mut t = vec![(12, Expected::Banner)];
                if *f == Format::ImageV2 {
                    t.push((13, Expected::Banner));
                }
                items.push((*off, t));
            }
            Ev::Order(_) | Ev::Features(_) | Ev::StripeUnit(_) | Ev::StripeCount(_) => {
                items.push((
                    *off,
                    vec![
                        (1, Expected::Tag),
                        (9, Expected::TagLength),
                        (17, Expected::ImageOption),
                    ],
                ))
            }
            Ev::Meta { key, value } => items.push((
                *off,
                vec![
                    (1, Expected::Tag),
                    (9, Expected::TagLength),
                    (13, Expected::ImageMeta),
                    (17 + key.len() as u64, Expected::ImageMeta),
                    (17 + (key.len() + value.len()) as u64, Expected::ImageMeta),
                ],
            )),
            Ev::ImageHeaderEnd | Ev::DiffEnd => items.push((*off, vec![(1, Expected::Tag)])),
            Ev::DiffCount(_) => items.push((
                *off,
                vec![(19, Expected::DiffsBanner), (27, Expected::DiffCount)],
            )),
            Ev::DiffBegin(_) => items.push((*off, vec![(12, Expected::DiffBanner)])),
            Ev::FromSnap(n) | Ev::ToSnap(n) => {
                let exp = if matches!(e, Ev::FromSnap(_)) {
                    Expected::FromSnapName
                } else {
                    Expected::ToSnapName
                };
                items.push((
                    *off,
                    tagged(vec![(h + 4, exp), (h + 4 + n.len() as u64, exp)]),
                ));
            }
            Ev::Protection(_) => items.push((*off, tagged(vec![(h + 1, Expected::Protection)]))),
            Ev::Size(_) => items.push((*off, tagged(vec![(h + 8, Expected::ImageSize)]))),
            Ev::Zero { .. } => items.push((*off, tagged(vec![(h + 16, Expected::IoLength)]))),
            Ev::Write { len, .. } => {
                items.push((*off, tagged(vec![(h + 16, Expected::IoLength)])));
                let ps = *off + h + 16;
                payloads.push((ps, ps + len, Expected::WriteData));
            }
            Ev::Unknown { len: Some(len), .. } => {
                items.push((*off, vec![(1, Expected::Tag), (9, Expected::TagLength)]));
                payloads.push((*off + 9, *off + 9 + len, Expected::UnknownPayload));
            }
            Ev::Unknown { len: None, .. } => items.push((*off, vec![(1, Expected::Tag)])),
            Ev::Data { .. } | Ev::UnknownData(_) | Ev::Warning(_) | Ev::Trailing(_) => {}
        }
    }
    Layout { items, payloads }
}

fn check_every_truncation(data: &[u8], cfg: Config) {
    let full = dec(data, cfg).ok("full");
    let l = layout(&full);
    for cut in 0..data.len() {
        let s = &data[..cut];
        let want = truncation_error(&l, cut as u64);
        let got = decode_whole(s, cfg);
        assert_eq!(got.error, Some(want), "cut at {cut} of {}", data.len());
        assert_eq!(
            decode(s, &split_bytes(s.len()), cfg).error,
            Some(want),
            "cut at {cut}, bytes"
        );
        assert_eq!(decode_raw(s, cfg).error, Some(want), "cut at {cut}, raw");
        // Events before the error are a prefix of the full stream's events
        // (data fragments end at the cut).
        let n = got.events.len();
        if n > 1 {
            assert_eq!(got.events[..n - 1], full.events[..n - 1], "cut at {cut}");
        }
    }
}

#[test]
fn truncation_at_every_byte_v1() {
    let s = v1(&[
        Rec::W(10, b"hello".to_vec()),
        Rec::Z(100, 50),
        Rec::W(200, vec![0; 3]),
    ]);
    check_every_truncation(&s, Config::new());
    check_every_truncation(&s, Config::strict());
}

#[test]
fn truncation_at_every_byte_v2() {
    let mut enc = rbdiff::Encoder::diff(Vec::new(), Format::DiffV2).unwrap();
    enc.header(&DiffHeader {
        from: Some(b"from"),
        to: Some(b"to"),
        protected: Some(true),
        size: Some(4096),
    })
    .unwrap();
    enc.write(1, b"xyz").unwrap();
    enc.extension(b'X', b"12345").unwrap();
    enc.zero(8, 8).unwrap();
    enc.end_diff().unwrap();
    let s = enc.finish().unwrap();
    check_every_truncation(&s, Config::new());
}

#[test]
fn truncation_at_every_byte_image() {
    let s = image_stream(&[
        &[Rec::W(0, b"abc".to_vec())],
        &[Rec::Z(0, 1), Rec::W(4000, b"z".to_vec())],
    ]);
    check_every_truncation(&s, Config::strict());
    check_every_truncation(&image_stream(&[]), Config::strict());
}

#[test]
fn truncation_of_fixture_prefixes() {
    // A small real rbd stream of each kind, cut everywhere.
    let c = case("basic-64k");
    check_every_truncation(&c.read("diff/s1..s2.diff"), Config::new());
    let img = c.read("export/image.v2");
    // The export is large; cut it everywhere in its header and second/third diff.
    let full = dec(&img, Config::strict()).ok("full");
    let l = layout(&full);
    let cuts = (0..200).chain(424_300..img.len());
    for cut in cuts {
        let want = truncation_error(&l, cut as u64);
        assert_eq!(
            decode_whole(&img[..cut], Config::strict()).error,
            Some(want),
            "cut at {cut}"
        );
    }
}

#[test]
fn metadata_after_data() {
    // Hand-made: w then s.
    let mut s = Vec::new();
    s.extend_from_slice(b"rbd diff v1\n");
    s.push(b'w');
    s.extend_from_slice(&le(0));
    s.extend_from_slice(&le(2));
    s.extend_from_slice(b"hi");
    let s_at = s.len() as u64;
    s.push(b's');
    s.extend_from_slice(&le(100));
    s.push(b'e');
    let want = DecodeError::new(s_at, ErrorKind::MetadataAfterData { tag: b's' });
    assert_eq!(err(&s, Config::new()), want);
    assert_eq!(err(&s, Config::strict()), want);
    let d = dec(&s, Config::rbd_compatible()).ok("compat");
    assert!(d.events.contains(&(s_at, Ev::Warning(want.kind))));
    assert!(d.events.contains(&(s_at, Ev::Size(100))));
    // Re-encodes only leniently.
    assert!(encode(&d.evs(), false).is_err());
    assert_eq!(encode(&d.evs(), true).unwrap(), s);
}

#[test]
fn record_checks() {
    let at = (12 + 6 + 7 + 9) as u64; // first record
    let zl = |tag: u8| {
        let mut s = v1(&[]);
        let e = s.pop().unwrap();
        s.push(tag);
        s.extend_from_slice(&le(5));
        s.extend_from_slice(&le(0));
        s.push(e);
        s
    };
    for tag in [b'w', b'z'] {
        let s = zl(tag);
        let want = DecodeError::new(at, ErrorKind::ZeroLength { tag });
        assert_eq!(err(&s, Config::strict()), want);
        let d = dec(&s, Config::new()).ok("zero-length");
        assert_eq!(d.warnings(), vec![(at, want.kind)]);
    }
    // Overflow is always an error.
    let mut s = v1(&[]);
    s.pop();
    s.push(b'z');
    s.extend_from_slice(&le(u64::MAX - 1));
    s.extend_from_slice(&le(5));
    s.push(b'e');
    for cfg in [Config::new(), Config::rbd_compatible(), Config::strict()] {
        assert_eq!(
            err(&s, cfg),
            DecodeError::new(
                at,
                ErrorKind::OffsetOverflow {
                    offset: u64::MAX - 1,
                    len: 5
                }
            )
        );
    }
    // Beyond the size (1 MiB) and out of order, in hand-made streams (the encoder
    // allows beyond-size, and out-of-order only leniently).
    let mut enc = rbdiff::Encoder::diff(Vec::new(), Format::DiffV1)
        .unwrap()
        .lenient();
    enc.size(1000).unwrap();
    enc.write(990, &[1; 20]).unwrap(); // beyond
    let second = 12 + 9 + 17 + 20;
    enc.zero(500, 10).unwrap(); // out of order
    enc.zero(505, 1).unwrap(); // overlapping (starts before 510)
    enc.end_diff().unwrap();
    let s = enc.finish().unwrap();
    let d = dec(&s, Config::new()).ok("warnings");
    assert_eq!(
        d.warnings(),
        vec![
            (
                21,
                ErrorKind::BeyondSize {
                    end: 1010,
                    size: 1000
                }
            ),
            (
                second,
                ErrorKind::OutOfOrder {
                    prev_end: 1010,
                    offset: 500
                }
            ),
            (
                second + 17,
                ErrorKind::OutOfOrder {
                    prev_end: 510,
                    offset: 505
                }
            ),
        ]
    );
    assert_eq!(
        err(&s, Config::strict()),
        DecodeError::new(
            21,
            ErrorKind::BeyondSize {
                end: 1010,
                size: 1000
            }
        )
    );
    let mut c = Config::strict();
    c.beyond_size = Check::Ignore;
    assert_eq!(
        err(&s, c),
        DecodeError::new(
            second,
            ErrorKind::OutOfOrder {
                prev_end: 1010,
                offset: 500
            }
        )
    );
    c.order = Check::Ignore;
    dec(&s, c).ok("ignored");
    assert!(dec(&s, c).warnings().is_empty());
}

#[test]
fn names_over_the_limit() {
    let mut cfg = Config::new();
    cfg.max_name_len = 4;
    let ok = encode_diff(
        Format::DiffV1,
        &DiffHeader {
            from: Some(b"abcd"),
            ..Default::default()
        },
        &[],
    );
    dec(&ok, cfg).ok("4 bytes");
    let long = encode_diff(
        Format::DiffV1,
        &DiffHeader {
            to: Some(b"abcde"),
            ..Default::default()
        },
        &[],
    );
    assert_eq!(
        err(&long, cfg),
        DecodeError::new(12, ErrorKind::NameTooLong { len: 5, max: 4 })
    );
    // A huge declared length fails at once, without waiting for (or buffering) the name.
    let mut s = b"rbd diff v1\nf".to_vec();
    s.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut d = Decoder::new(Config::new());
    assert!(matches!(
        d.decode(&s, false),
        Ok(Step::Event {
            event: Event::Banner(_),
            consumed: 12,
            ..
        })
    ));
    assert_eq!(
        d.decode(&s[12..], false),
        Err(DecodeError::new(
            12,
            ErrorKind::NameTooLong {
                len: u32::MAX,
                max: 4096
            }
        ))
    );
    // Image-meta strings too.
    let mut cfg = Config::new();
    cfg.max_meta_len = 1;
    let img = image_stream(&[]);
    let e = err(&img, cfg);
    assert_eq!(e.kind, ErrorKind::MetaTooLong { len: 2, max: 1 });
    // The pump's buffer never needs more than max_item_len.
    assert!(Config::new().max_item_len() >= 13 + 4096);
}

#[test]
fn protection_record_declared_length_quirk() {
    let base = || {
        let mut s = b"rbd diff v2\n".to_vec();
        s.push(b't');
        s.extend_from_slice(&le(6));
        s.extend_from_slice(&2u32.to_le_bytes());
        s.extend_from_slice(b"s1");
        s
    };
    let p_at = 12 + 15;
    let tail = |s: &mut Vec<u8>| {
        s.push(b's');
        s.extend_from_slice(&le(8));
        s.extend_from_slice(&le(4096));
        s.push(b'e');
    };
    // What rbd 16.2.15 writes: declared 8, one byte.
    let mut rbd = base();
    rbd.push(b'p');
    rbd.extend_from_slice(&le(8));
    rbd.push(1);
    tail(&mut rbd);
    let d = dec(&rbd, Config::strict()).ok("rbd's p");
    assert!(d.events.contains(&(p_at, Ev::Protection(1))));
    assert_eq!(
        encode(&d.evs(), false).unwrap(),
        rbd,
        "the encoder writes the quirk"
    );
    // What the code comment / spec table says (declared 1): accepted too.
    let mut one = base();
    one.push(b'p');
    one.extend_from_slice(&le(1));
    one.push(0);
    tail(&mut one);
    assert!(
        dec(&one, Config::strict())
            .ok("p len 1")
            .warnings()
            .is_empty()
    );
    // Any other declared length: a length mismatch (rbd still reads one byte).
    let mut three = base();
    three.push(b'p');
    three.extend_from_slice(&le(3));
    three.push(1);
    tail(&mut three);
    let k = ErrorKind::LengthMismatch {
        tag: b'p',
        declared: 3,
        actual: 1,
    };
    assert_eq!(err(&three, Config::strict()), DecodeError::new(p_at, k));
    let d = dec(&three, Config::new()).ok("p len 3 warns");
    assert_eq!(d.warnings(), vec![(p_at, k)]);
    // A doc-faithful 8-byte payload desyncs (as it does in rbd): the next byte is read as a tag.
    let mut doc = base();
    doc.push(b'p');
    doc.extend_from_slice(&le(8));
    doc.extend_from_slice(&le(1));
    tail(&mut doc);
    assert_eq!(
        err(&doc, Config::strict()),
        DecodeError::new(
            p_at + 10,
            ErrorKind::UnknownTag {
                tag: 0,
                zone: Zone::DiffV2
            }
        )
    );
}

#[test]
fn trailing_bytes() {
    let mut s = v1(&[Rec::W(0, b"x".to_vec())]);
    let end = s.len() as u64;
    s.extend_from_slice(b"we");
    let d = dec(&s, Config::new()).ok("default");
    assert_eq!(
        &d.events[d.events.len() - 2..],
        &[
            (end, Ev::Warning(ErrorKind::TrailingBytes)),
            (end, Ev::Trailing(b"we".to_vec()))
        ]
    );
    assert_eq!(
        err(&s, Config::strict()),
        DecodeError::new(end, ErrorKind::TrailingBytes)
    );
    let mut c = Config::new();
    c.trailing = Check::Ignore;
    let d = dec(&s, c).ok("ignored");
    assert!(d.warnings().is_empty());
    assert_eq!(
        d.events.last().unwrap(),
        &(end, Ev::Trailing(b"we".to_vec()))
    );
    // Image streams too, including one that declares zero diffs.
    let mut img = image_stream(&[]);
    let end = img.len() as u64;
    img.push(0);
    assert_eq!(
        err(&img, Config::strict()),
        DecodeError::new(end, ErrorKind::TrailingBytes)
    );
}

#[test]
fn v2_length_mismatch_and_section_banners() {
    let mut s = b"rbd diff v2\n".to_vec();
    s.push(b's');
    s.extend_from_slice(&le(9));
    s.extend_from_slice(&le(4096));
    s.push(b'e');
    let k = ErrorKind::LengthMismatch {
        tag: b's',
        declared: 9,
        actual: 8,
    };
    assert_eq!(err(&s, Config::strict()), DecodeError::new(12, k));
    assert_eq!(dec(&s, Config::new()).ok("warn").warnings(), vec![(12, k)]);
    // Image: bad diffs banner, bad embedded diff banner.
    let img = image_stream(&[&[]]);
    let hdr_end = img
        .windows(19)
        .position(|w| w == b"rbd image diffs v2\n")
        .unwrap();
    let mut bad = img.clone();
    bad[hdr_end + 3] = b'X';
    assert_eq!(
        err(&bad, Config::new()),
        DecodeError::new(
            hdr_end as u64,
            ErrorKind::BadSectionBanner {
                expected: Expected::DiffsBanner
            }
        )
    );
    let mut bad = img.clone();
    bad[hdr_end + 27 + 10] = b'1';
    assert_eq!(
        err(&bad, Config::new()),
        DecodeError::new(
            (hdr_end + 27) as u64,
            ErrorKind::BadSectionBanner {
                expected: Expected::DiffBanner
            }
        )
    );
}

#[test]
fn errors_are_sticky() {
    let mut d = Decoder::new(Config::new());
    let e = d.decode(b"nope nope nope", true).unwrap_err();
    assert_eq!(d.decode(b"rbd diff v1\n", false), Err(e));
    assert!(!d.is_done());
}

/// Reads at most `n` bytes per call, as a pipe may.
struct Trickle<'a>(&'a [u8], usize);
impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn reader_pieces_end_on_page_boundaries_inside_a_record() {
    use rbdiff::{Encoder, EventReader, PIECE_ALIGN};
    // Records at unaligned offsets with unaligned lengths, behind a header
    // that puts their payloads at odd stream positions.
    let records: [(u64, usize); 3] = [
        (12345, (3 << 20) + 777),
        (8 << 20, 2 << 20),
        (11 << 20, 5000),
    ];
    let mut enc = Encoder::diff(Vec::new(), Format::DiffV1).unwrap();
    enc.header(&DiffHeader {
        from: Some(b"mon"),
        to: Some(b"tue"),
        protected: None,
        size: Some(16 << 20),
    })
    .unwrap();
    let mut want = Vec::new();
    for (i, &(off, len)) in records.iter().enumerate() {
        let data: Vec<u8> = (0..len).map(|k| (k * 7 + i) as u8).collect();
        enc.write(off, &data).unwrap();
        want.push((off, data));
    }
    enc.zero(13 << 20, 4096).unwrap();
    enc.end_diff().unwrap();
    let bytes = enc.finish().unwrap();
    let mut first_others: Option<Vec<String>> = None;
    for (name, cap, trickle) in [
        ("1 MiB buffer", 1 << 20, usize::MAX),
        ("64 KiB buffer", 64 << 10, usize::MAX),
        ("pipe, 1000 bytes a read", 1 << 20, 1000),
        ("buffer below a page", 1000, usize::MAX),
    ] {
        let mut r = EventReader::with_capacity(Trickle(&bytes, trickle), Config::new(), cap);
        let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut others = Vec::new();
        let mut pieces = 0;
        while let Some((_, ev)) = r.next_event().unwrap() {
            let Event::Data { offset, bytes } = ev else {
                others.push(format!("{ev:?}"));
                continue;
            };
            pieces += 1;
            match got.last_mut() {
                Some((o, d)) if *o + d.len() as u64 == offset => {
                    // The piece before this one stopped inside its record
                    // (on a page boundary, if the buffer can hold a page).
                    if cap as u64 >= PIECE_ALIGN {
                        assert_eq!(offset % PIECE_ALIGN, 0, "{name}: a piece ends at {offset}");
                    }
                    d.extend_from_slice(bytes);
                }
                _ => got.push((offset, bytes.to_vec())),
            }
        }
        assert!(got == want, "{name}: payloads");
        assert!(
            pieces > 2 * records.len(),
            "{name}: records came in pieces ({pieces})"
        );
        // Everything but the data pieces comes out the same.
        assert_eq!(others.len(), 9, "{name}: {others:?}");
        assert_eq!(
            first_others.get_or_insert_with(|| others.clone()),
            &others,
            "{name}"
        );
        // Cut inside a payload, at and off a page boundary: an error, not a
        // wait for bytes that never come.
        for cut in [bytes.len() / 2, 4096 * 300, 4096 * 300 + 1] {
            let mut r =
                EventReader::with_capacity(Trickle(&bytes[..cut], trickle), Config::new(), cap);
            let err = loop {
                match r.next_event() {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("{name}: cut at {cut} decoded whole"),
                    Err(e) => break e,
                }
            };
            assert!(
                err.to_string().contains("end of"),
                "{name}: cut at {cut}: {err}"
            );
        }
    }
}
