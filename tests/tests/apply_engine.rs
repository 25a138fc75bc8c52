//! The import engine (`rbdiff::apply`) on the real-rbd corpus and crafted
//! streams, driven the way a front end without threads or files drives it
//! (the WASM component): a push decoder fed in arbitrary chunks.
#![allow(clippy::cast_possible_truncation)] // offsets of small corpus files
use rbdiff::apply::{
    EndSnap, ImportEngine, ImportError, ImportOptions, IntegrityDataError, NoUndo, Sequential, Step,
};
use rbdiff::integrity::{Entry, Manifest, StreamFault, seal_stream};
use rbdiff::{Config, Decoder, FormatSet, Step as DecodeStep};
use rbdiff_tests::{Model, decode_whole, fixtures_root, split_random};

type Err = ImportError<core::convert::Infallible>;

fn corpus(rel: &str) -> Vec<u8> {
    let p = fixtures_root().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Drives `eng` over `stream` fed in `chunks`; the end snapshot on success.
fn drive(
    eng: &mut ImportEngine,
    dev: &mut Vec<u8>,
    stream: &[u8],
    chunks: &[usize],
    formats: FormatSet,
) -> Result<Vec<Step<'static>>, Err> {
    let mut dec = Decoder::new(Config::rbd_compatible().with_formats(formats));
    let mut buf: Vec<u8> = Vec::new();
    let mut steps = Vec::new();
    let (mut at, mut fed) = (0usize, 0usize);
    'outer: for (i, &n) in chunks.iter().enumerate() {
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        let eof = i + 1 == chunks.len();
        loop {
            let step = match dec.decode(&buf[at..], eof) {
                Ok(s) => s,
                // The stream is cut or invalid: the driver stops here.
                Err(_) => {
                    eng.abort(dev)?;
                    break 'outer;
                }
            };
            match step {
                DecodeStep::NeedMore(_) => break,
                DecodeStep::Done => break 'outer,
                DecodeStep::Event {
                    offset,
                    consumed,
                    event,
                } => {
                    let raw = &buf[at..at + consumed];
                    let s = eng.event(dev, &mut Sequential, offset, &event, raw)?;
                    steps.push(owned(s));
                    at += consumed;
                }
            }
        }
        buf.drain(..at);
        at = 0;
    }
    Ok(steps)
}

fn owned(s: Step<'_>) -> Step<'static> {
    match s {
        Step::FromSnap(_) => Step::FromSnap(b"f"),
        Step::ToSnap(_) => Step::ToSnap(b"t"),
        other => match other {
            Step::Continue => Step::Continue,
            Step::Banner(f) => Step::Banner(f),
            Step::Unknown(t) => Step::Unknown(t),
            Step::DiffApplied => Step::DiffApplied,
            Step::DiffVerified(e) => Step::DiffVerified(e),
            _ => Step::Continue,
        },
    }
}

fn whole(stream: &[u8]) -> Result<Vec<u8>, String> {
    rbdiff_tests::apply_stream(Vec::new(), stream)
}

fn import(
    base: &[u8],
    stream: &[u8],
    opts: ImportOptions,
    known: Option<Manifest>,
    seed: u64,
) -> (Vec<u8>, Result<EndSnap, Err>) {
    let mut dev = base.to_vec();
    let mut eng = ImportEngine::<NoUndo>::new(opts, known).expect("valid integrity data");
    let r = drive(
        &mut eng,
        &mut dev,
        stream,
        &split_random(stream.len(), seed),
        FormatSet::DIFFS,
    )
    .and_then(|_| match eng.end_stream() {
        Err(f) => Err(ImportError::Stream(f)),
        Ok(_) => Ok(()),
    })
    .and_then(|()| eng.check_result(&mut dev, &mut Sequential, 0))
    .map(|()| eng.finish().end_snap);
    (dev, r)
}

const DIFFS: [(&str, &str); 3] = [
    ("basic-64k/diff/0..s1.diff", ""),
    ("basic-64k/diff/s1..s2.diff", "basic-64k/diff/0..s1.diff"),
    ("basic-64k/diff/s2..head.diff", "basic-64k/diff/0..s2.diff"),
];

fn base_of(rel: &str) -> Vec<u8> {
    if rel.is_empty() {
        Vec::new()
    } else {
        whole(&corpus(rel)).expect("base")
    }
}

/// Corpus diffs, in random chunks, sealed (base check, stream and result
/// verification): the engine leaves what the reference model leaves.
#[test]
fn corpus_diffs_apply_and_verify() {
    for (diff, base) in DIFFS {
        let stream = corpus(diff);
        let base = base_of(base);
        let want = rbdiff_tests::apply_stream(base.clone(), &stream).expect("model");
        let m = seal_stream(&stream[..], Some(&mut base.clone())).expect("seal");
        for seed in 0..4 {
            let opts = ImportOptions::new().with_stream_len(Some(stream.len() as u64));
            let (img, r) = import(&base, &stream, opts, Some(m.clone()), seed);
            let end = r.unwrap_or_else(|e| panic!("{diff}: {e}"));
            assert!(img == want, "{diff} seed {seed}");
            assert_eq!(
                end.name.is_some(),
                !diff.ends_with("head.diff"),
                "{diff}: 't'"
            );
            let (img, r) = import(
                &base,
                &stream,
                ImportOptions::new().with_verify(false),
                None,
                seed,
            );
            r.expect("plain");
            assert!(img == want, "{diff} seed {seed} unverified");
        }
    }
}

/// Offsets of `w` payload bytes in a stream: (payload start, payload length).
fn payloads(stream: &[u8]) -> Vec<(usize, usize)> {
    let d = decode_whole(stream, Config::rbd_compatible());
    let mut out = vec![];
    for (off, e) in &d.events {
        if let rbdiff_tests::Ev::Write { len, .. } = e
            && *len > 0
        {
            out.push((*off as usize + 17, *len as usize));
        }
    }
    out
}

/// A stream cut inside a `w` payload leaves the base plus the records
/// complete before the cut: nothing of the cut record (as rbd, which reads a
/// record's whole payload before writing it).
#[test]
fn cut_inside_payload_writes_nothing_of_the_record() {
    let mut cuts = 0;
    for (diff, base) in DIFFS {
        let stream = corpus(diff);
        let base = base_of(base);
        for (k, &(start, len)) in payloads(&stream).iter().enumerate() {
            for cut in [start, start + 1, start + len / 2, start + len - 1] {
                let cut_stream = &stream[..cut];
                // The model applies a `w` only once complete.
                let mut m = Model::from_bytes(base.clone());
                let d = decode_whole(cut_stream, Config::rbd_compatible());
                assert!(d.error.is_some(), "cut at {cut} must fail to decode");
                m.apply(&d.evs()).expect("records before the cut apply");
                for seed in [k as u64, 99] {
                    let (img, r) = import(
                        &base,
                        cut_stream,
                        ImportOptions::new().with_verify(false),
                        None,
                        seed,
                    );
                    assert!(r.is_ok(), "no engine error, the decoder stops");
                    assert!(
                        img == m.image,
                        "{diff}: cut at {cut} (record #{k} at {start}): {} {} vs model {} {}",
                        img.len(),
                        rbdiff_tests::sha256_hex(&img),
                        m.image.len(),
                        m.sha256()
                    );
                }
                cuts += 1;
            }
        }
    }
    assert!(cuts > 20, "the corpus has payloads to cut ({cuts})");
}

/// Payloads longer than the hold limit are written piece by piece, so a cut
/// keeps what arrived (documented).
#[test]
fn payloads_over_the_hold_limit_stream() {
    let stream = corpus("basic-64k/diff/0..s1.diff");
    let &(start, len) = payloads(&stream)
        .iter()
        .max_by_key(|p| p.1)
        .expect("payload");
    assert!(len > 8192);
    let cut = &stream[..start + len - 1];
    let opts = ImportOptions::new()
        .with_verify(false)
        .with_hold_limit(4096);
    let (img, _) = import(&[], cut, opts, None, 1);
    let (held, _) = import(&[], cut, ImportOptions::new().with_verify(false), None, 1);
    assert!(
        img != held,
        "streamed record partly written, held one not at all"
    );
}

/// The base check runs before the first write: a wrong base is refused and
/// the image is untouched (size included, though the diff's `s` differs).
#[test]
fn wrong_base_is_refused_before_any_write() {
    let (diff, base) = DIFFS[1];
    let stream = corpus(diff);
    let good = base_of(base);
    let m = seal_stream(&stream[..], Some(&mut good.clone())).expect("seal");
    let mut bad = good.clone();
    let e = m.entries[1];
    bad[e.offset as usize] ^= 1;
    bad.truncate(bad.len() - 4096);
    // the size differs: refused at once
    let (img, r) = import(&bad, &stream, ImportOptions::new(), Some(m.clone()), 3);
    assert!(matches!(r, Err(ImportError::NotBase(_))), "{r:?}");
    assert!(img == bad, "nothing written");
    let mut bad = good.clone();
    bad[e.offset as usize] ^= 1;
    let (img, r) = import(&bad, &stream, ImportOptions::new(), Some(m.clone()), 3);
    match r {
        Err(ImportError::NotBase(rbdiff::integrity::VerifyError::Block { index, .. })) => {
            assert_eq!(index, 1)
        }
        other => panic!("{other:?}"),
    }
    assert!(img == bad, "nothing written");
    // --force: imported; the result check still runs and passes for the
    // bytes the diff overwrites.
    let opts = ImportOptions::new().with_base_check(false);
    let (_, r) = import(&bad, &stream, opts, Some(m), 3);
    r.expect("forced import");
}

/// Integrity data declaring a record of 2^63 bytes (issue 14, finding 1) is
/// refused before the base check reads anything.
#[test]
fn huge_record_in_integrity_data_is_refused_at_once() {
    let (diff, base) = DIFFS[1];
    let stream = corpus(diff);
    let good = base_of(base);
    let mut m = seal_stream(&stream[..], Some(&mut good.clone())).expect("seal");
    m.entries[0].len = 1 << 63;
    let t = std::time::Instant::now();
    let (img, r) = import(&good, &stream, ImportOptions::new(), Some(m), 0);
    match r {
        Err(ImportError::IntegrityData(IntegrityDataError::Extent { index: 0, len, .. })) => {
            assert_eq!(len, 1 << 63)
        }
        other => panic!("{other:?}"),
    }
    assert!(img == good);
    assert!(t.elapsed().as_secs() < 10, "refused without hashing");
    // More entries than the stream can hold, or a checksum over more bytes
    // than it has: refused when the engine is made.
    let m = Manifest {
        entries: vec![
            Entry {
                offset: 0,
                len: 1,
                pre: 0,
                post: 0,
            };
            10
        ],
        ..Manifest::default()
    };
    let opts = ImportOptions::new().with_stream_len(Some(100));
    assert!(matches!(
        ImportEngine::<NoUndo>::new(opts, Some(m)).err(),
        Some(IntegrityDataError::TooManyEntries {
            entries: 10,
            stream_len: 100
        })
    ));
}

/// A payload corrupted in the stream stops the import at that record with
/// its stream offset; the end snapshot is not given.
#[test]
fn corrupt_payload_is_a_stream_fault() {
    let (diff, base) = DIFFS[1];
    let mut stream = corpus(diff);
    let good = base_of(base);
    let m = seal_stream(&stream[..], Some(&mut good.clone())).expect("seal");
    let (start, _) = payloads(&stream)[0];
    stream[start] ^= 0x40;
    let (_, r) = import(&good, &stream, ImportOptions::new(), Some(m), 5);
    match r {
        Err(ImportError::Stream(StreamFault::Payload {
            stream_offset,
            index: 0,
            ..
        })) => {
            assert_eq!(stream_offset as usize, start - 17)
        }
        other => panic!("{other:?}"),
    }
}

/// Interrupted at a checkpoint and resumed from it (a new engine, a decoder
/// resumed at the checkpoint), the result is the uninterrupted one and is
/// verified.
#[test]
fn checkpoint_and_resume() {
    let (diff, base) = DIFFS[0];
    let stream = corpus(diff);
    let want = whole(&stream).expect("model");
    let m = seal_stream(&stream[..], None::<&mut Vec<u8>>).expect("seal");
    let config = Config::rbd_compatible().with_formats(FormatSet::DIFFS);
    let mut dev = base_of(base);
    let mut eng = ImportEngine::<NoUndo>::new(ImportOptions::new(), Some(m.clone())).expect("new");
    let mut dec = Decoder::new(config);
    let mut at = 0usize;
    let mut saved = None;
    // Stop at the third record boundary.
    while saved.is_none() {
        match dec.decode(&stream[at..], true).expect("decode") {
            DecodeStep::Event {
                offset,
                consumed,
                event,
            } => {
                eng.event(
                    &mut dev,
                    &mut Sequential,
                    offset,
                    &event,
                    &stream[at..at + consumed],
                )
                .expect("apply");
                at += consumed;
                if eng.stats().records == 3
                    && let Some(cp) = dec.checkpoint()
                {
                    saved = Some(eng.checkpoint(&mut dev, cp).expect("checkpoint"));
                }
            }
            other => panic!("{other:?}"),
        }
    }
    let r = saved.expect("saved");
    let mut eng =
        ImportEngine::<NoUndo>::resume(ImportOptions::new(), Some(m), r.state).expect("resume");
    let mut dec = Decoder::resume(config, &r.checkpoint);
    let mut at = r.checkpoint.position as usize;
    loop {
        match dec.decode(&stream[at..], true).expect("decode") {
            DecodeStep::Event {
                offset,
                consumed,
                event,
            } => {
                eng.event(
                    &mut dev,
                    &mut Sequential,
                    offset,
                    &event,
                    &stream[at..at + consumed],
                )
                .expect("apply");
                at += consumed;
            }
            DecodeStep::Done => break,
            DecodeStep::NeedMore(_) => panic!("whole stream given"),
        }
    }
    assert!(
        eng.end_stream()
            .expect("no stream check after resume")
            .is_some()
    );
    eng.check_result(&mut dev, &mut Sequential, 0)
        .expect("result");
    assert_eq!(eng.finish().end_snap.name.as_deref(), Some(&b"s1"[..]));
    assert!(dev == want);
}

/// The undo diff the engine records restores the image.
#[test]
fn undo_restores_the_base() {
    let (diff, base) = DIFFS[1];
    let stream = corpus(diff);
    let base = base_of(base);
    let mut dev = base.clone();
    let mut eng =
        ImportEngine::<Vec<u8>>::new(ImportOptions::new().with_verify(false), None).expect("new");
    eng.set_undo(Vec::new());
    let mut dec = Decoder::new(Config::rbd_compatible());
    let mut at = 0;
    while let DecodeStep::Event {
        offset,
        consumed,
        event,
    } = dec.decode(&stream[at..], true).expect("decode")
    {
        eng.event(
            &mut dev,
            &mut Sequential,
            offset,
            &event,
            &stream[at..at + consumed],
        )
        .expect("apply");
        at += consumed;
    }
    let undo = eng.take_undo().expect("recorded").expect("undo diff");
    assert!(dev != base);
    let restored = rbdiff_tests::apply_stream(dev, &undo).expect("undo applies");
    assert!(restored == base);
}

/// An image v2 export: each diff is verified at its `e` and its end snapshot
/// given then; the image is the one rbd exported.
#[test]
fn image_export_diffs_verified_one_by_one() {
    let stream = corpus("basic-64k/export/image.v2");
    let want = rbdiff_tests::apply_stream(Vec::new(), &stream).expect("model");
    let mut dev = Vec::new();
    let mut eng = ImportEngine::<NoUndo>::new(ImportOptions::new(), None).expect("new");
    let steps = drive(
        &mut eng,
        &mut dev,
        &stream,
        &split_random(stream.len(), 7),
        FormatSet::IMAGE,
    )
    .expect("import");
    let snaps: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Step::DiffVerified(e) => Some(e.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(snaps.len(), 3, "two snapshots and head: {snaps:?}");
    assert_eq!(snaps[0].as_deref(), Some(&b"s1"[..]));
    assert!(dev == want);
}
