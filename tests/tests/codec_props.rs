//! Property tests against the naive `Vec<u8>` image model ([`Model`]):
//! decode(encode(x)) == x for v1/v2/image streams, chunking invariance,
//! encoder misuse, apply(merge(a, b, ...)) == sequential apply,
//! apply(export(base, target), base) == target, and the crate's Applier == model.
#![allow(clippy::cast_possible_truncation)] // test code, 64-bit hosts only

use proptest::prelude::*;
use rbdiff::apply::Applier;
use rbdiff::export::{ExportOptions, export_diff};
use rbdiff::merge::{MergeOptions, merge_streams};
use rbdiff::{Config, Decoder, DiffHeader, Encoder, Event, Format, ImageHeader, Pump};
use rbdiff_tests::*;

/// A generated diff.
#[derive(Debug, Clone)]
struct Diff {
    format: Format,
    from: Option<Vec<u8>>,
    to: Option<Vec<u8>>,
    protected: Option<bool>,
    size: Option<u64>,
    records: Vec<Rec>,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..12)
}

/// Ascending, non-overlapping, nonzero records inside `size`.
fn records(size: u64) -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec(
        (
            0u64..3000,
            1u64..3000,
            any::<bool>(),
            any::<u8>(),
            any::<bool>(),
        ),
        0..8,
    )
    .prop_map(move |v| {
        let mut out = Vec::new();
        let mut pos = 0u64;
        for (gap, len, w, seed, zeros) in v {
            let off = pos + gap;
            if off >= size {
                break;
            }
            let len = len.min(size - off);
            if w {
                let data = if zeros {
                    vec![0; len as usize]
                } else {
                    (0..len)
                        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                        .collect()
                };
                out.push(Rec::W(off, data));
            } else {
                out.push(Rec::Z(off, len));
            }
            pos = off + len;
        }
        out
    })
}

fn diff(format: Format) -> impl Strategy<Value = Diff> {
    (
        proptest::option::of(name()),
        proptest::option::of(name()),
        any::<bool>(),
        proptest::option::of(0u64..20_000),
    )
        .prop_flat_map(move |(from, to, p, size)| {
            records(size.unwrap_or(20_000)).prop_map(move |records| Diff {
                format,
                from: from.clone(),
                to: to.clone(),
                // rbd writes `p` iff there is a `t` (v2 only).
                protected: (format == Format::DiffV2 && to.is_some()).then_some(p),
                size,
                records,
            })
        })
}

fn header(d: &Diff) -> DiffHeader<'_> {
    DiffHeader {
        from: d.from.as_deref(),
        to: d.to.as_deref(),
        protected: d.protected,
        size: d.size,
    }
}

fn put_diff<S: rbdiff::Sink>(enc: &mut Encoder<S>, d: &Diff)
where
    S::Error: std::fmt::Debug,
{
    enc.header(&header(d)).unwrap();
    for r in &d.records {
        match r {
            Rec::W(o, data) => enc.write(*o, data).unwrap(),
            Rec::Z(o, l) => enc.zero(*o, *l).unwrap(),
        }
    }
    enc.end_diff().unwrap();
}

/// The events a diff must decode to (after its banner / DiffBegin).
fn expected_events(d: &Diff) -> Vec<Ev> {
    let mut v = Vec::new();
    if let Some(f) = &d.from {
        v.push(Ev::FromSnap(f.clone()));
    }
    if let Some(t) = &d.to {
        v.push(Ev::ToSnap(t.clone()));
    }
    if let Some(p) = d.protected {
        v.push(Ev::Protection(u8::from(p)));
    }
    if let Some(s) = d.size {
        v.push(Ev::Size(s));
    }
    for r in &d.records {
        match r {
            Rec::W(o, data) => {
                v.push(Ev::Write {
                    offset: *o,
                    len: data.len() as u64,
                });
                v.push(Ev::Data {
                    offset: *o,
                    bytes: data.clone(),
                });
            }
            Rec::Z(o, l) => v.push(Ev::Zero {
                offset: *o,
                len: *l,
            }),
        }
    }
    v.push(Ev::DiffEnd);
    v
}

fn encode_one(d: &Diff) -> Vec<u8> {
    let mut enc = Encoder::diff(Vec::new(), d.format).unwrap();
    put_diff(&mut enc, d);
    enc.finish().unwrap()
}

fn chunk_check(data: &[u8], seed: u64, cfg: Config) -> Decoded {
    let whole = decode_whole(data, cfg);
    assert_same(
        &decode(data, &split_random(data.len(), seed), cfg),
        &whole,
        "random split",
    );
    assert_same(
        &decode(data, &split_bytes(data.len()), cfg),
        &whole,
        "bytes",
    );
    assert_same(&decode_raw(data, cfg), &whole, "raw");
    whole
}

/// Applies a stream with the model; `None` if it fails to decode or apply.
fn model_apply(base: Vec<u8>, stream: &[u8]) -> Option<Vec<u8>> {
    apply_stream(base, stream).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn v1_roundtrip(d in diff(Format::DiffV1), seed in any::<u64>()) {
        let bytes = encode_one(&d);
        let got = chunk_check(&bytes, seed, Config::strict()).ok("v1");
        let mut want = vec![Ev::Banner(Format::DiffV1)];
        want.extend(expected_events(&d));
        prop_assert_eq!(got.evs(), want);
        // ... and back to the same bytes.
        prop_assert_eq!(encode(&got.evs(), false).unwrap(), bytes);
    }

    #[test]
    fn v2_roundtrip(d in diff(Format::DiffV2), seed in any::<u64>()) {
        let bytes = encode_one(&d);
        let got = chunk_check(&bytes, seed, Config::strict()).ok("v2");
        let mut want = vec![Ev::Banner(Format::DiffV2)];
        want.extend(expected_events(&d));
        prop_assert_eq!(got.evs(), want);
        prop_assert_eq!(encode(&got.evs(), false).unwrap(), bytes);
    }

    #[test]
    fn image_roundtrip(
        diffs in proptest::collection::vec(diff(Format::DiffV2), 0..4),
        hdr in (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        meta in proptest::collection::btree_map(name(), name(), 0..4),
        seed in any::<u64>(),
    ) {
        let pairs: Vec<(&[u8], &[u8])> = meta.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
        // Given in reverse: the encoder sorts them by key like rbd.
        let rev: Vec<(&[u8], &[u8])> = pairs.iter().rev().cloned().collect();
        let h = ImageHeader { order: hdr.0, features: hdr.1, stripe_unit: hdr.2, stripe_count: hdr.3, meta: &rev };
        let mut enc = Encoder::image(Vec::new(), &h, diffs.len() as u64).unwrap();
        for d in &diffs {
            enc.begin_diff().unwrap();
            put_diff(&mut enc, d);
        }
        let bytes = enc.finish().unwrap();
        let got = chunk_check(&bytes, seed, Config::strict()).ok("image");
        let mut want = vec![Ev::Banner(Format::ImageV2), Ev::Order(hdr.0), Ev::Features(hdr.1), Ev::StripeUnit(hdr.2), Ev::StripeCount(hdr.3)];
        for (k, v) in &pairs {
            want.push(Ev::Meta { key: k.to_vec(), value: v.to_vec() });
        }
        want.push(Ev::ImageHeaderEnd);
        want.push(Ev::DiffCount(diffs.len() as u64));
        for (i, d) in diffs.iter().enumerate() {
            want.push(Ev::DiffBegin(i as u64));
            want.extend(expected_events(d));
        }
        prop_assert_eq!(got.evs(), want);
        prop_assert_eq!(encode(&got.evs(), false).unwrap(), bytes);
    }

    /// Arbitrary bytes (mostly a valid stream with a few bytes changed): every
    /// chunking gives the same events and the same error, and nothing panics.
    #[test]
    fn chunking_invariance_on_mutated_streams(
        d in diff(Format::DiffV2),
        muts in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
        seed in any::<u64>(),
        v1 in any::<bool>(),
    ) {
        let mut d = d;
        if v1 {
            d.format = Format::DiffV1;
            d.protected = None;
        }
        let mut bytes = encode_one(&d);
        for (i, b) in muts {
            let n = bytes.len();
            bytes[i % n] = b;
        }
        bytes.truncate(bytes.len() - cut % 3);
        for cfg in [Config::new(), Config::rbd_compatible(), Config::strict()] {
            chunk_check(&bytes, seed, cfg);
        }
    }

    /// The crate's Applier (any sparse size) gives the model's image.
    #[test]
    fn applier_matches_model(
        d in diff(Format::DiffV1),
        base in proptest::collection::vec(any::<u8>(), 0..6000),
        sparse in prop_oneof![Just(0u64), Just(512), Just(4096), 1u64..5000],
        seed in any::<u64>(),
    ) {
        let bytes = encode_one(&d);
        let want = model_apply(base.clone(), &bytes);
        let mut sink = base.clone();
        let mut ap = Applier::new(sparse);
        let mut pump = Pump::new(Decoder::new(Config::rbd_compatible()));
        let mut pos = 0;
        let mut res = Ok(());
        for n in split_random(bytes.len(), seed) {
            let r = pump.feed(&bytes[pos..pos + n], pos + n == bytes.len(), |_, ev: Event<'_>| ap.event(&mut sink, &ev).map_err(|e| format!("{e:?}")));
            pos += n;
            if let Err(e) = r { res = Err(format!("{e:?}")); break; }
        }
        if res.is_ok() {
            res = ap.finish(&mut sink).map(|_| ()).map_err(|e| format!("{e:?}"));
        }
        match want {
            Some(w) => { prop_assert!(res.is_ok(), "{:?}", res); prop_assert!(sink == w); }
            None => prop_assert!(res.is_err()),
        }
    }

    /// apply(merge(d1..dn), base) == apply(dn, ... apply(d1, base)).
    #[test]
    fn merge_equals_sequential_apply(
        chain in proptest::collection::vec((proptest::bool::ANY, 0u64..20_000).prop_flat_map(|(v2, size)| {
            records(size).prop_map(move |r| (v2, size, r))
        }), 1..4),
        base in proptest::collection::vec(any::<u8>(), 0..20_000),
        out_v2 in any::<bool>(),
    ) {
        let diffs: Vec<Diff> = chain.iter().enumerate().map(|(i, (v2, size, recs))| Diff {
            format: if *v2 { Format::DiffV2 } else { Format::DiffV1 },
            from: (i > 0).then(|| format!("s{i}").into_bytes()),
            to: Some(format!("s{}", i + 1).into_bytes()),
            protected: v2.then_some(false),
            size: Some(*size),
            records: recs.clone(),
        }).collect();
        let streams: Vec<Vec<u8>> = diffs.iter().map(encode_one).collect();
        let mut seq = base.clone();
        for s in &streams {
            seq = model_apply(seq, s).unwrap();
        }
        let mut inputs: Vec<&[u8]> = streams.iter().map(|s| s.as_slice()).collect();
        let mut out = Vec::new();
        let opts = MergeOptions::new().with_output(if out_v2 { Format::DiffV2 } else { Format::DiffV1 });
        merge_streams(&mut inputs, &mut out, &opts, &mut |_| {}).unwrap();
        // The merged stream is itself clean (sorted, in size, nonzero records).
        let d = decode_whole(&out, Config::strict()).ok("merged");
        let merged = model_apply(base, &out).unwrap();
        prop_assert!(merged == seq, "merged {} bytes vs sequential {}", merged.len(), seq.len());
        prop_assert_eq!(encode(&d.evs(), false).unwrap(), out);
    }

    /// apply(export(base, target), base) == target, with the shape export-diff has.
    #[test]
    fn export_then_apply_gives_target(
        base in proptest::collection::vec(prop_oneof![3 => Just(0u8), 1 => any::<u8>()], 0..20_000),
        edits in proptest::collection::vec((any::<usize>(), 1usize..2000, prop_oneof![Just(0u8), any::<u8>()]), 0..6),
        new_len in proptest::option::of(0usize..20_000),
        obj_shift in 9u32..15,
        whole_object in any::<bool>(),
        from_zero in any::<bool>(),
    ) {
        let mut target = base.clone();
        if let Some(n) = new_len { target.resize(n, 0); }
        for (at, len, b) in edits {
            if target.is_empty() { break; }
            let at = at % target.len();
            let end = (at + len).min(target.len());
            target[at..end].fill(b);
        }
        let object_size = 1u64 << obj_shift;
        let opts = ExportOptions::new().with_object_size(object_size).with_whole_object(whole_object);
        let mut enc = Encoder::diff(Vec::new(), Format::DiffV1).unwrap();
        let h = DiffHeader { from: (!from_zero).then_some(b"a".as_slice()), to: Some(b"b"), ..DiffHeader::default() };
        let mut a = base.clone();
        let mut t = target.clone();
        export_diff(if from_zero { None } else { Some(&mut a) }, &mut t, &h, &opts, &mut enc, &mut |_, _| {}).unwrap();
        let out = enc.finish().unwrap();
        let d = decode_whole(&out, Config::strict()).ok("export");
        let start = if from_zero { Vec::new() } else { base };
        prop_assert!(model_apply(start, &out).unwrap() == target);
        // Shape: `s` = target size; records never cross an object boundary; no all-zero `w`.
        prop_assert!(d.evs().contains(&Ev::Size(target.len() as u64)));
        for e in d.evs() {
            match e {
                Ev::Write { offset, len } | Ev::Zero { offset, len } => {
                    prop_assert_eq!(offset / object_size, (offset + len - 1) / object_size, "crosses an object: {} {}", offset, len);
                }
                Ev::Data { bytes, .. } => prop_assert!(bytes.iter().any(|&b| b != 0), "all-zero w record"),
                _ => {}
            }
        }
    }
}

/// A random encoder call.
#[derive(Debug, Clone)]
enum Op {
    From(Vec<u8>),
    To(Vec<u8>),
    Prot(bool),
    Size(u64),
    BeginWrite(u64, u64),
    Data(usize),
    Write(u64, usize),
    Zero(u64, u64),
    Ext(u8, usize),
    End,
    BeginDiff,
}

fn op() -> impl Strategy<Value = Op> {
    let off = prop_oneof![0u64..100, Just(u64::MAX - 3), any::<u64>()];
    prop_oneof![
        name().prop_map(Op::From),
        name().prop_map(Op::To),
        any::<bool>().prop_map(Op::Prot),
        any::<u64>().prop_map(Op::Size),
        (off.clone(), 0u64..20).prop_map(|(o, l)| Op::BeginWrite(o, l)),
        (0usize..20).prop_map(Op::Data),
        (off.clone(), 0usize..20).prop_map(|(o, l)| Op::Write(o, l)),
        (off, prop_oneof![0u64..20, Just(u64::MAX)]).prop_map(|(o, l)| Op::Zero(o, l)),
        (any::<u8>(), 0usize..10).prop_map(|(t, l)| Op::Ext(t, l)),
        Just(Op::End),
        Just(Op::BeginDiff),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Any call sequence: a refused call writes nothing, and whatever `finish`
    /// accepts decodes (strict for the strict encoder; rbd's reader policy for the
    /// lenient one).
    #[test]
    fn encoder_misuse_never_corrupts(kind in 0u8..3, lenient in any::<bool>(), ops in proptest::collection::vec(op(), 0..16), count in 0u64..3) {
        let mut enc = match kind {
            0 => Encoder::diff(Vec::new(), Format::DiffV1).unwrap(),
            1 => Encoder::diff(Vec::new(), Format::DiffV2).unwrap(),
            _ => Encoder::image(Vec::new(), &ImageHeader::default(), count).unwrap(),
        };
        if lenient { enc = enc.lenient(); }
        for o in &ops {
            let before = enc.sink().clone();
            let r = match o {
                Op::From(n) => enc.from_snap(n),
                Op::To(n) => enc.to_snap(n),
                Op::Prot(p) => enc.protection(*p),
                Op::Size(s) => enc.size(*s),
                Op::BeginWrite(off, l) => enc.begin_write(*off, *l),
                Op::Data(n) => enc.data(&vec![7; *n]),
                Op::Write(off, n) => enc.write(*off, &vec![9; *n]),
                Op::Zero(off, l) => enc.zero(*off, *l),
                Op::Ext(t, n) => enc.extension(*t, &vec![1; *n]),
                Op::End => enc.end_diff(),
                Op::BeginDiff => enc.begin_diff(),
            };
            if r.is_err() {
                prop_assert_eq!(enc.sink(), &before, "{:?} failed but wrote", o);
            }
            prop_assert_eq!(enc.position(), enc.sink().len() as u64);
        }
        if let Ok(bytes) = enc.finish() {
            let cfg = if lenient { Config::rbd_compatible() } else { Config::strict() };
            let mut cfg = cfg;
            // Extension records are the encoder's to write; sizes are not its business.
            cfg.unknown_v2 = rbdiff::Check::Ignore;
            cfg.beyond_size = rbdiff::Check::Ignore;
            let d = decode_whole(&bytes, cfg);
            prop_assert!(d.error.is_none() && d.done, "{:?} for {:?}", d.error, ops);
            assert_same(&decode(&bytes, &split_bytes(bytes.len()), cfg), &d, "bytes");
        }
    }
}

/// Found by `encoder_misuse_never_corrupts`: an extension record with a known tag
/// (here `s` with an empty payload) was written and then read back as a truncated `s`.
#[test]
fn extension_with_a_known_tag_is_refused() {
    for t in *b"ftpswze" {
        let mut enc = Encoder::diff(Vec::new(), Format::DiffV2).unwrap();
        let before = enc.sink().len();
        assert_eq!(
            enc.extension(t, b""),
            Err(rbdiff::EncodeError::Misuse(rbdiff::Misuse::ReservedTag(t)))
        );
        assert_eq!(enc.sink().len(), before);
    }
}
