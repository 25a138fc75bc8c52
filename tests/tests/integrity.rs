//! The integrity extension at the codec level: sealed exports stay readable
//! by rbd-compatible decoding, wrong bases are refused before any write,
//! corrupt payloads are caught with their offset, undo and resume work.

// Test images are a few MiB: offsets always fit in usize.
#![allow(clippy::cast_possible_truncation)]

use rbdiff::apply::{Applier, UndoRecorder};
use rbdiff::block::BlockSink;
use rbdiff::export::{ExportOptions, export_diff, export_diff_sealed};
use rbdiff::integrity::{
    HashingSink, Manifest, StreamFault, StreamVerifier, VerifyError, read_tail, seal_stream,
};
use rbdiff::{Config, DiffHeader, Encoder, Event, EventReader, Format};
use sha2::Digest;
use std::io::Cursor;
use std::path::Path;

mod cli_common;
use cli_common::noise;

fn sha(b: &[u8]) -> String {
    format!("{:x}", sha2::Sha256::digest(b))
}

/// A 1 MiB base and a target with a few changes (data, zeroing, growth).
fn images() -> (Vec<u8>, Vec<u8>) {
    let mut base = vec![0u8; 1 << 20];
    for (i, b) in base.iter_mut().enumerate().take(300_000) {
        *b = (i % 251) as u8 + 1;
    }
    let mut target = base.clone();
    target[1000..5000].fill(7);
    target[70_000..140_000].fill(0);
    target.resize((1 << 20) + 100_000, 0);
    target[(1 << 20) + 10..(1 << 20) + 20].fill(9);
    (base, target)
}

fn opts() -> ExportOptions {
    ExportOptions::new().with_object_size(64 << 10)
}

/// Sealed export of `base -> target` in `format`: (stream bytes, manifest).
fn sealed(format: Format, base: &[u8], target: &[u8]) -> (Vec<u8>, Manifest) {
    sealed_with(format, base, target, &opts())
}

/// [`sealed`] with other export options.
fn sealed_with(
    format: Format,
    base: &[u8],
    target: &[u8],
    opts: &ExportOptions,
) -> (Vec<u8>, Manifest) {
    let mut enc = Encoder::diff(HashingSink::new(Vec::new()), format).unwrap();
    let header = DiffHeader {
        from: Some(b"a"),
        to: Some(b"b"),
        protected: Some(false),
        size: None,
    };
    let (mut b, mut t) = (base.to_vec(), target.to_vec());
    let (_, m) = export_diff_sealed(
        Some(&mut b),
        &mut t,
        &header,
        opts,
        &mut enc,
        &mut |_, _| {},
    )
    .unwrap();
    let mut bytes = enc.finish().unwrap().into_inner();
    if format == Format::DiffV1 {
        bytes.extend_from_slice(&m.to_trailer());
    }
    (bytes, m)
}

fn plain(format: Format, base: &[u8], target: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::diff(Vec::new(), format).unwrap();
    let header = DiffHeader {
        from: Some(b"a"),
        to: Some(b"b"),
        protected: Some(false),
        size: None,
    };
    let (mut b, mut t) = (base.to_vec(), target.to_vec());
    export_diff(
        Some(&mut b),
        &mut t,
        &header,
        &opts(),
        &mut enc,
        &mut |_, _| {},
    )
    .unwrap();
    enc.finish().unwrap()
}

/// The events an rbd-compatible reader sees, ignoring what rbd skips.
fn rbd_view(bytes: &[u8]) -> (Vec<String>, usize) {
    let mut r = EventReader::new(bytes, Config::rbd_compatible());
    let mut out = vec![];
    let mut unknown = 0;
    while let Some((_, ev)) = r.next_event().unwrap() {
        match ev {
            Event::Unknown { .. } => unknown += 1,
            Event::UnknownData(_) | Event::Warning(_) => {}
            Event::Data { bytes, .. } => out.push(format!("data {}", sha(bytes))),
            e => out.push(format!("{e:?}")),
        }
    }
    (out, unknown)
}

#[test]
fn sealed_streams_read_like_plain_ones_in_rbd_compatible_mode() {
    let (base, target) = images();
    for format in [Format::DiffV1, Format::DiffV2] {
        let (s, m) = sealed(format, &base, &target);
        let p = plain(format, &base, &target);
        let (sv, su) = rbd_view(&s);
        let (pv, _) = rbd_view(&p);
        assert_eq!(sv, pv, "{format}: same events as the plain diff");
        match format {
            // v2: exactly two extension records, skipped by their length.
            Format::DiffV2 => {
                assert_eq!(su, 2);
                assert!(s.len() > p.len());
                assert_eq!(s.last(), Some(&b'e'));
            }
            // v1: the plain diff is a prefix; nothing after its `e` is read.
            _ => {
                assert_eq!(su, 0);
                assert_eq!(&s[..p.len()], &p[..]);
            }
        }
        assert!(!m.entries.is_empty());
        // Applying the sealed stream with rbd semantics gives the target.
        let mut img = base.clone();
        rbdiff::apply::apply_stream(&s[..], &mut img, Config::rbd_compatible(), 4096).unwrap();
        assert_eq!(img, target);
    }
}

#[test]
fn integrity_data_is_found_at_the_end_of_a_file() {
    let (base, target) = images();
    for format in [Format::DiffV1, Format::DiffV2] {
        let (s, m) = sealed(format, &base, &target);
        let found = read_tail(&mut Cursor::new(&s))
            .unwrap()
            .expect("integrity data");
        assert_eq!(found.entries, m.entries);
        assert_eq!(found.base_size, Some(base.len() as u64));
        // A plain diff has none.
        assert!(
            read_tail(&mut Cursor::new(plain(format, &base, &target)))
                .unwrap()
                .is_none()
        );
    }
}

fn verify_stream(bytes: &[u8], pre: Option<Manifest>) -> Result<Option<Manifest>, StreamFault> {
    let mut v = StreamVerifier::new(pre);
    let mut r = EventReader::new(bytes, Config::new());
    while let Some((off, ev, raw)) = r.next_event_raw().unwrap() {
        v.event(off, &ev, raw);
    }
    // v1: the trailer follows the `e`
    let consumed = r.decoder().position() as usize;
    v.trailing(&bytes[consumed..]);
    v.finish()
}

/// A v1 trailer read from a pipe: what the reader buffered past the `e`
/// plus the rest of the input is exactly the trailer.
#[test]
fn a_v1_trailer_is_recovered_from_the_reader_buffer() {
    use std::io::Read;
    let (base, target) = images();
    let (s, m) = sealed(Format::DiffV1, &base, &target);
    for cap in [64usize, 4096, 1 << 20] {
        let mut r = EventReader::with_capacity(&s[..], Config::rbd_compatible(), cap);
        let mut v = StreamVerifier::new(None);
        while let Some((off, ev, raw)) = r.next_event_raw().unwrap() {
            v.event(off, &ev, raw);
        }
        let end = r.decoder().position() as usize;
        let mut rest = r.buffered().to_vec();
        assert_eq!(&rest[..], &s[end..end + rest.len()], "cap {cap}");
        r.into_inner().read_to_end(&mut rest).unwrap();
        assert_eq!(rest, m.to_trailer(), "cap {cap}");
        v.trailing(&rest);
        assert_eq!(v.finish().unwrap().unwrap().entries, m.entries);
    }
}

#[test]
fn clean_streams_verify_in_band_and_preloaded() {
    let (base, target) = images();
    for format in [Format::DiffV1, Format::DiffV2] {
        let (s, m) = sealed(format, &base, &target);
        assert_eq!(verify_stream(&s, None).unwrap().unwrap().entries, m.entries);
        assert!(verify_stream(&s, Some(m.clone())).unwrap().is_some());
    }
}

#[test]
fn a_flipped_payload_bit_is_caught_at_its_record() {
    let (base, target) = images();
    for format in [Format::DiffV1, Format::DiffV2] {
        let (mut s, m) = sealed(format, &base, &target);
        // Find the second `w` record's payload and flip one bit in it.
        let mut r = EventReader::new(&s[..], Config::new());
        let mut writes = vec![];
        while let Some((off, ev)) = r.next_event().unwrap() {
            if let Event::Write { len, .. } = ev {
                writes.push((off, len));
            }
        }
        let (rec_at, _) = writes[1];
        let header = if format == Format::DiffV2 { 25 } else { 17 };
        let flip = rec_at as usize + header + 3;
        s[flip] ^= 0x10;
        for pre in [None, Some(m.clone())] {
            match verify_stream(&s, pre) {
                Err(StreamFault::Payload {
                    stream_offset,
                    index,
                    ..
                }) => {
                    assert_eq!(stream_offset, rec_at, "{format}");
                    assert_eq!(
                        index,
                        m.entries
                            .iter()
                            .position(|e| e.offset == m.entries[index].offset)
                            .unwrap()
                    );
                }
                other => panic!("{format}: expected a payload fault, got {other:?}"),
            }
        }
    }
}

#[test]
fn a_wrong_base_is_refused_before_any_write() {
    let (base, target) = images();
    let (_, m) = sealed(Format::DiffV1, &base, &target);
    // Change one byte inside a block the diff overwrites.
    let first = m.entries[0];
    let mut wrong = base.clone();
    wrong[(first.offset + first.len / 2) as usize] ^= 1;
    let before = sha(&wrong);
    match m.check_base(&mut wrong) {
        Err(VerifyError::Block {
            index,
            offset,
            base: true,
            ..
        }) => {
            assert_eq!(index, 0);
            assert_eq!(offset, first.offset);
        }
        other => panic!("expected a base mismatch, got {other:?}"),
    }
    assert_eq!(sha(&wrong), before, "the check only reads");
    // The right base passes, a different size does not.
    m.check_base(&mut base.clone()).unwrap();
    let mut short = base[..1000].to_vec();
    assert!(matches!(
        m.check_base(&mut short),
        Err(VerifyError::Size { .. })
    ));
    // And the result check passes after applying.
    let mut img = base.clone();
    let (s, _) = sealed(Format::DiffV1, &base, &target);
    rbdiff::apply::apply_stream(&s[..], &mut img, Config::new(), 4096).unwrap();
    m.check_result(&mut img, Some(target.len() as u64)).unwrap();
}

#[test]
fn undo_restores_the_exact_previous_image() {
    let (base, target) = images();
    // Forward (grows) and backward (shrinks) diffs.
    for (from, to) in [(&base, &target), (&target, &base)] {
        let diff = plain(Format::DiffV1, from, to);
        let mut img = from.clone();
        let mut undo = UndoRecorder::new(Vec::new(), Format::DiffV1, img.len() as u64).unwrap();
        let mut ap = Applier::new(4096);
        let mut r = EventReader::new(&diff[..], Config::new());
        while let Some((_, ev)) = r.next_event().unwrap() {
            undo.before(&mut img, &ev).unwrap();
            ap.event(&mut img, &ev).unwrap();
        }
        ap.finish(&mut img).unwrap();
        assert_eq!(sha(&img), sha(to));
        let undo = undo.finish().unwrap();
        rbdiff::apply::apply_stream(&undo[..], &mut img, Config::new(), 4096).unwrap();
        assert_eq!(sha(&img), sha(from), "undo restores the previous sha256");
    }
}

#[test]
fn an_interrupted_apply_resumes_from_a_checkpoint() {
    let (base, target) = images();
    let (s, m) = sealed(Format::DiffV2, &base, &target);
    let total = m.entries.len();
    for stop_after in 0..total {
        // First run: apply `stop_after` records, keep the last checkpoint.
        let mut img = base.clone();
        let mut ap = Applier::new(4096);
        let mut r = EventReader::new(&s[..], Config::new());
        let mut done = 0;
        let mut cp = None;
        while let Some((_, ev)) = r.next_event().unwrap() {
            let is_rec = matches!(ev, Event::Write { .. } | Event::Zero { .. });
            if is_rec && done == stop_after {
                break;
            }
            ap.event(&mut img, &ev).unwrap();
            if let Some(c) = r.decoder().checkpoint() {
                cp = Some(c);
            }
            if is_rec {
                done += 1;
            }
        }
        ap.finish(&mut img).unwrap();
        let cp = rbdiff::Checkpoint::from_bytes(&cp.unwrap().to_bytes()).unwrap();
        // Second run: resume at the checkpoint without reading what was applied.
        let rest = &s[cp.position as usize..];
        let mut r = EventReader::resume(rest, Config::new(), &cp);
        let mut ap = Applier::new(4096);
        while let Some((_, ev)) = r.next_event().unwrap() {
            ap.event(&mut img, &ev).unwrap();
        }
        ap.finish(&mut img).unwrap();
        assert_eq!(img, target, "stopped after {stop_after} of {total}");
        m.check_result(&mut img, Some(target.len() as u64)).unwrap();
    }
}

#[test]
fn real_rbd_diffs_can_be_sealed_with_a_sidecar() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rbd-16.2.15/basic-64k");
    let d01 = std::fs::read(root.join("diff/0..s1.diff")).unwrap();
    let d12 = std::fs::read(root.join("diff/s1..s2.diff")).unwrap();
    let mut s1 = vec![];
    rbdiff::apply::apply_stream(&d01[..], &mut s1, Config::new(), 4096).unwrap();
    let m = seal_stream(&d12[..], Some(&mut s1)).unwrap();
    let sidecar = m.to_trailer();
    let m = Manifest::from_trailer(&sidecar).unwrap();
    m.check_base(&mut s1).unwrap();
    assert!(verify_stream(&d12, Some(m.clone())).unwrap().is_some());
    // The same sidecar refuses s1 with one byte changed in a block s1..s2 overwrites.
    let mut wrong = s1.clone();
    let e = m.entries[0];
    wrong[e.offset as usize] ^= 0xff;
    assert!(matches!(
        m.check_base(&mut wrong),
        Err(VerifyError::Block { index: 0, .. })
    ));
    // A sidecar of a diff from creation checks against zeros.
    let m0 = seal_stream(&d01[..], None::<&mut Vec<u8>>).unwrap();
    m0.check_base(&mut vec![0u8; 4 << 20]).unwrap();
    let mut applied = vec![0u8; 4 << 20];
    rbdiff::apply::apply_stream(&d01[..], &mut applied, Config::new(), 4096).unwrap();
    m0.check_result(&mut applied, Some(4 << 20)).unwrap();
    assert!(applied.size() > 0);
}

#[test]
fn the_inspector_reports_and_checks_carried_integrity_data() {
    use rbdiff::inspect::{InspectOptions, Inspector};
    let (base, target) = images();
    for format in [Format::DiffV1, Format::DiffV2] {
        let (s, m) = sealed(format, &base, &target);
        let inspect = |bytes: &[u8]| {
            let mut ins = Inspector::new(InspectOptions::default());
            let mut pump = rbdiff::Pump::new(rbdiff::Decoder::new(Config::new()));
            pump.feed_raw::<(), _>(bytes, true, |o, ev, raw| {
                ins.event_raw(o, &ev, raw);
                Ok(())
            })
            .unwrap();
            ins.done();
            ins.finish(bytes.len() as u64)
        };
        let sum = inspect(&s);
        let integ = sum.diffs[0].integrity.clone().expect("integrity found");
        assert!(integ.ok, "{format}: {:?}", integ.fault);
        assert_eq!(integ.entries, m.entries.len() as u64);
        assert_eq!(integ.base_size, Some(base.len() as u64));
        // A plain diff has none; a corrupted one is flagged.
        assert!(
            inspect(&plain(format, &base, &target)).diffs[0]
                .integrity
                .is_none()
        );
        let mut bad = s.clone();
        let at = s.len() / 3;
        bad[at] ^= 0x01;
        let sum = inspect(&bad);
        if sum.error.is_none() {
            let integ = sum.diffs[0].integrity.clone().expect("integrity found");
            assert!(!integ.ok, "{format}: corruption at {at} not flagged");
        }
    }
}

/// Golden sealed samples (used by the browser and component tests): the
/// basic-64k s1 -> s2 change exported with integrity data, v1 and v2.
/// Written when missing; must stay byte-identical otherwise.
#[test]
fn golden_sealed_samples_are_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("fixtures/rbd-16.2.15/basic-64k/diff");
    let mut s1 = vec![];
    let mut s2 = vec![];
    for (img, diffs) in [
        (&mut s1, &["0..s1.diff"][..]),
        (&mut s2, &["0..s1.diff", "s1..s2.diff"][..]),
    ] {
        for d in diffs {
            let f = std::fs::File::open(corpus.join(d)).unwrap();
            rbdiff::apply::apply_stream(f, img, Config::new(), 4096).unwrap();
        }
    }
    for (format, name) in [
        (Format::DiffV1, "sealed-s1..s2.v1.diff"),
        (Format::DiffV2, "sealed-s1..s2.v2.diff"),
    ] {
        let mut enc = Encoder::diff(HashingSink::new(Vec::new()), format).unwrap();
        let header = DiffHeader {
            from: Some(b"s1"),
            to: Some(b"s2"),
            protected: Some(false),
            size: None,
        };
        let opts = ExportOptions::new().with_object_size(64 << 10);
        let (mut a, mut b) = (s1.clone(), s2.clone());
        let (_, m) = export_diff_sealed(
            Some(&mut a),
            &mut b,
            &header,
            &opts,
            &mut enc,
            &mut |_, _| {},
        )
        .unwrap();
        let mut bytes = enc.finish().unwrap().into_inner();
        if format == Format::DiffV1 {
            bytes.extend_from_slice(&m.to_trailer());
        }
        let path = root.join("data").join(name);
        match std::fs::read(&path) {
            Ok(old) => assert!(
                old == bytes,
                "{name} is stale: delete it and re-run to regenerate"
            ),
            Err(_) => std::fs::write(&path, &bytes).unwrap(),
        }
        // It applies to s1 and gives s2, verified.
        let mut img = s1.clone();
        m.check_base(&mut img).unwrap();
        rbdiff::apply::apply_stream(&bytes[..], &mut img, Config::new(), 4096).unwrap();
        assert_eq!(img, s2);
    }
}

/// 8 MiB images in 1 MiB objects: whole changed objects (hashed while
/// read), partial ones, zeroed ones, and whole ones again after partial ones.
fn big_images() -> (Vec<u8>, Vec<u8>, ExportOptions) {
    let base = noise(8 << 20, 7);
    let mut target = base.clone();
    target[..3 << 20].copy_from_slice(&noise(3 << 20, 9));
    target[(4 << 20) + 100..(4 << 20) + 70_000].fill(3);
    target[5 << 20..6 << 20].fill(0);
    target[6 << 20..7 << 20].copy_from_slice(&noise(1 << 20, 10));
    target[(7 << 20) + 5..(7 << 20) + 900_000].copy_from_slice(&noise(899_995, 11));
    let opts = ExportOptions::new().with_object_size(1 << 20);
    (base, target, opts)
}

/// The export's hashes (made while reading or afterwards) equal an
/// independent computation: sealing
/// the plain diff afterwards from the base (entries and checksum).
#[test]
fn sealed_export_hashes_equal_sealing_afterwards() {
    let (base, target, opts) = big_images();
    let (stream, m) = sealed_with(Format::DiffV1, &base, &target, &opts);
    // the plain diff: the trailer is the manifest's own
    let bytes = &stream[..stream.len() - m.to_trailer().len()];
    let mut b2 = base.clone();
    let again = seal_stream(Cursor::new(&bytes), Some(&mut b2)).unwrap();
    assert!(m.entries.len() >= 5, "{} records", m.entries.len());
    assert_eq!(m, again);
    // and the diff applies to the target, verified against its manifest
    let mut img = base.clone();
    rbdiff::apply::apply_stream(Cursor::new(&bytes), &mut img, Config::new(), 4096).unwrap();
    assert_eq!(sha(&img), sha(&target));
    m.check_result(&mut img, Some(target.len() as u64)).unwrap();
}

/// Hashing on a second thread (the default with `std`) and on the
/// exporting thread give the same stream and manifest, for whole, partial
/// and zeroed objects, objects rewritten whole, exports from zeros, both
/// formats, and an object size past the threaded limit.
#[test]
fn hashes_made_on_a_second_thread_equal_inline_ones() {
    let (base, target, big) = big_images();
    let (sb, st) = images();
    let cases = [
        (base.as_slice(), target.as_slice(), big),
        (&sb, &st, opts()),
        (&base, &target, big.with_whole_object(true)),
        (&base, &target, big.with_object_size(64 << 20)),
    ];
    for (b, t, o) in cases {
        for format in [Format::DiffV1, Format::DiffV2] {
            let threaded = sealed_with(format, b, t, &o);
            let inline = o.with_hash_thread(false);
            assert!(
                threaded == sealed_with(format, b, t, &inline),
                "{format:?} {o:?}"
            );
            // and from zeros (no base)
            let zeros = [
                sealed_from_zeros(format, t, &o),
                sealed_from_zeros(format, t, &inline),
            ];
            assert!(zeros[0] == zeros[1], "{format:?} {o:?} from zeros");
        }
    }
}

/// A sink failing half-way stops a threaded sealed export with the error
/// (the hashing thread is wound down, nothing hangs).
#[test]
fn a_failing_sink_stops_a_threaded_sealed_export() {
    struct Short(usize);
    impl rbdiff::Sink for Short {
        type Error = &'static str;
        fn write_all(&mut self, b: &[u8]) -> Result<(), &'static str> {
            self.0 = self.0.checked_sub(b.len()).ok_or("disk full")?;
            Ok(())
        }
    }
    let (base, target, opts) = big_images();
    for room in [100, 3 << 20, 4 << 20] {
        let mut enc = Encoder::diff(HashingSink::new(Short(room)), Format::DiffV2).unwrap();
        let (mut b, mut t) = (base.clone(), target.clone());
        let r = export_diff_sealed(
            Some(&mut b),
            &mut t,
            &DiffHeader::default(),
            &opts,
            &mut enc,
            &mut |_, _| {},
        );
        assert!(
            matches!(r, Err(rbdiff::export::ExportError::Write(_))),
            "{room}: {r:?}"
        );
    }
}

/// A sealed export from an all-zero image: (stream bytes, manifest).
fn sealed_from_zeros(format: Format, target: &[u8], opts: &ExportOptions) -> (Vec<u8>, Manifest) {
    let mut enc = Encoder::diff(HashingSink::new(Vec::new()), format).unwrap();
    let mut t = target.to_vec();
    let (_, m) = export_diff_sealed::<Vec<u8>, _, _>(
        None,
        &mut t,
        &DiffHeader::default(),
        opts,
        &mut enc,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(m.entries.iter().map(|e| e.len).sum::<u64>() > 0);
    (enc.finish().unwrap().into_inner(), m)
}

/// Payload hashes given later, in order, make the same checksum as hashes
/// given up front, whatever is written in between.
#[test]
fn a_hashing_sink_takes_payload_hashes_later_in_order() {
    use rbdiff::Sink;
    let parts: [(&[u8], Option<&[u8]>); 4] = [
        (b"head", Some(b"payload one")),
        (b"rec2", Some(b"two")),
        (b"rec3", None),
        (b"rec4", Some(b"payload four, longer")),
    ];
    let mut now = HashingSink::new(Vec::new());
    for (head, pay) in parts {
        now.write_all(head).unwrap();
        if let Some(p) = pay {
            now.payload(p.len() as u64, rbdiff::integrity::hash(p));
            now.write_all(p).unwrap();
        }
    }
    now.write_all(b"end").unwrap();
    // later: the first two and the last payload's hashes come afterwards,
    // the third's in between is known at once
    let mut later = HashingSink::new(Vec::new());
    let mut owed = vec![];
    for (i, (head, pay)) in parts.into_iter().enumerate() {
        later.write_all(head).unwrap();
        if let Some(p) = pay {
            if i == 1 {
                later.payload(p.len() as u64, rbdiff::integrity::hash(p));
            } else {
                later.payload_later(p.len() as u64);
                owed.push(rbdiff::integrity::hash(p));
            }
            later.write_all(p).unwrap();
        }
    }
    later.write_all(b"end").unwrap();
    assert_eq!(later.unresolved(), 2);
    assert_ne!(later.hasher().digest(), now.hasher().digest());
    for h in owed {
        assert!(later.resolve(h));
    }
    assert!(!later.resolve(0));
    assert_eq!(later.unresolved(), 0);
    assert_eq!(later.hasher().bytes(), now.hasher().bytes());
    assert_eq!(later.hasher().digest(), now.hasher().digest());
    assert_eq!(later.into_inner(), now.into_inner());
}

/// Checking on several threads reports the first mismatching record, as
/// the one-thread check does; reading back with deferred payload checks
/// catches a corrupt payload the verifier did not hash.
#[test]
fn parallel_checks_and_deferred_payloads() {
    let (base, target, opts) = big_images();
    let (bytes, m) = sealed_with(Format::DiffV2, &base, &target, &opts);
    let n = m.entries.len();
    let mut wrong = base.clone();
    for &k in &[n - 1, 1] {
        let e = m.entries[k];
        wrong[e.offset as usize] ^= 0x40;
    }
    let one = m.check_base(&mut wrong.clone()).unwrap_err();
    let mut three = vec![wrong.clone(), wrong.clone(), wrong];
    let par = m.check_base_par(&mut three).unwrap_err();
    assert_eq!(one, par);
    assert!(
        matches!(par, VerifyError::Block { index: 1, .. }),
        "{par:?}"
    );
    assert_eq!(m.check_base_par(&mut [base.clone(), base.clone()]), Ok(()));

    // deferred: the verifier does not hash payloads; the read-back does
    let w = m.entries.iter().position(|e| e.len > 1000).unwrap();
    let mut bad = bytes.clone();
    let mut sv = StreamVerifier::new(Some(m.clone()));
    assert!(sv.defer_payloads());
    let mut r = EventReader::new(Cursor::new(&bytes), Config::new());
    let mut so = None;
    while let Some((off, ev, raw)) = r.next_event_raw().unwrap() {
        if matches!(ev, Event::Write { .. }) && so.is_none() && sv.records() == w as u64 {
            so = Some(off);
        }
        sv.event(off, &ev, raw);
    }
    assert!(sv.finish().is_ok());
    let so = so.unwrap() as usize;
    bad[so + 25 + 10] ^= 1; // in the payload (v2 header: tag, len, offset, length)
    let mut sv = StreamVerifier::new(Some(m.clone()));
    sv.defer_payloads();
    let mut img = base.clone();
    let mut ap = Applier::new(4096);
    let mut r = EventReader::new(Cursor::new(&bad), Config::new());
    while let Some((off, ev, raw)) = r.next_event_raw().unwrap() {
        sv.event(off, &ev, raw);
        ap.event(&mut img, &ev).unwrap();
    }
    ap.finish(&mut img).unwrap();
    assert!(
        sv.finish().is_ok(),
        "the deferred verifier leaves payloads to the read-back"
    );
    let e = m.check_entries(&mut img, 0..n, false).unwrap_err();
    assert!(
        matches!(e, VerifyError::Block { index, .. } if index == w),
        "{e:?}"
    );
}

/// A crafted `z` record of 2^62 bytes in a diff of a 4 KiB image (the final
/// fuzz campaign's `image_import` hang): the verifier hashes a `z` only when
/// integrity data names it and it lies within the image, so this returns at
/// once (it hashed 2^62 zero bytes before) and is refused when named.
#[test]
fn crafted_zero_length_costs_nothing_to_verify() {
    let huge = 1u64 << 62;
    let feed = |v: &mut StreamVerifier| {
        v.event(12, &Event::Size(4096), b"s");
        v.event(
            21,
            &Event::Zero {
                offset: 0,
                len: huge,
            },
            b"z",
        );
        v.event(38, &Event::DiffEnd, b"e");
    };
    // Nothing names it: no integrity data, nothing to hash.
    let mut v = StreamVerifier::new(None);
    feed(&mut v);
    assert_eq!(v.finish(), Ok(None));
    // A manifest that names it: refused as a record past the image.
    let mut m = Manifest::default();
    m.entries.push(rbdiff::integrity::Entry {
        offset: 0,
        len: huge,
        pre: 0,
        post: 0,
    });
    let mut v = StreamVerifier::new(Some(m));
    feed(&mut v);
    assert!(
        matches!(v.finish(), Err(StreamFault::Record { index: 0, .. })),
        "a z past the image is refused, not hashed"
    );
}
