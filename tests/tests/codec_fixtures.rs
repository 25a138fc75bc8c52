//! The codec against the real rbd 16.2.15 corpus (`tests/fixtures/rbd-16.2.15`):
//! every stream decodes to its manifest summary, re-encodes byte for byte, applies
//! to the recorded images, and every recorded rbd error is reproduced.

#![allow(clippy::cast_possible_truncation)] // test code, 64-bit hosts only

use rbdiff::{Config, DecodeError, ErrorKind, Expected, Format, FormatSet, Zone};
use rbdiff_tests::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// rbd import-diff's reader: v1 only, unknown tags skipped one byte at a time.
fn import_diff_cfg() -> Config {
    Config::rbd_compatible().with_formats(FormatSet::V1)
}

/// rbd import --export-format 2's reader.
fn import_v2_cfg() -> Config {
    Config::rbd_compatible().with_formats(FormatSet::IMAGE)
}

/// rbd merge-diff's reader: v1 only, every irregularity is an error (it
/// rejects unknown tags, zero-length and unsorted/overlapping records).
fn merge_cfg() -> Config {
    let mut c = Config::strict().with_formats(FormatSet::V1);
    // merge-diff does not look at record ends vs the size, nor at trailers.
    c.beyond_size = rbdiff::Check::Ignore;
    c.trailing = rbdiff::Check::Ignore;
    c
}

fn stream_files_of(kind: fn(&StreamKind) -> bool) -> Vec<StreamFile> {
    stream_files()
        .into_iter()
        .filter(|f| kind(&f.kind))
        .collect()
}

/// Compares a computed summary with a manifest summary: every manifest field must be
/// computed and equal, and nothing may be computed that the manifest does not have.
fn same_summary(id: &str, expected: &Value, got: &Value, extra_ok: &[&str]) {
    let e = expected.as_object().unwrap();
    let g = got.as_object().unwrap();
    for (k, v) in e {
        assert!(g.contains_key(k), "{id}: manifest field {k} not computed");
        assert_eq!(&g[k], v, "{id}: field {k}");
    }
    for k in g.keys() {
        assert!(
            e.contains_key(k) || extra_ok.contains(&k.as_str()),
            "{id}: computed {k} = {} not in manifest",
            g[k]
        );
    }
}

#[test]
fn corpus_files_are_all_listed() {
    // Every stream-looking file on disk is in a manifest (so the loops below see it all).
    let listed: BTreeSet<_> = stream_files()
        .iter()
        .map(|f| f.path.canonicalize().unwrap())
        .collect();
    let mut on_disk = Vec::new();
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    walk(&fixtures_root(), &mut on_disk);
    let mut n = 0;
    for p in on_disk {
        let s = p.to_string_lossy();
        if s.contains("extension-compat") {
            continue;
        }
        if s.ends_with(".diff") || s.ends_with(".v2") || s.ends_with(".v2diff") {
            n += 1;
            assert!(
                listed.contains(&p.canonicalize().unwrap()),
                "{s} is not described by any manifest"
            );
        }
    }
    assert!(n >= 150, "only {n} stream files found");
    let diffs = stream_files_of(|k| matches!(k, StreamKind::Diff(_))).len();
    let exports = stream_files_of(|k| matches!(k, StreamKind::ExportV2(_))).len();
    let errors = stream_files_of(|k| matches!(k, StreamKind::ParseError(_))).len();
    assert!(
        diffs >= 100 && exports >= 6 && errors >= 18,
        "{diffs} {exports} {errors}"
    );
}

#[test]
fn every_diff_decodes_to_its_manifest_summary() {
    let mut n = 0;
    for f in stream_files_of(|k| matches!(k, StreamKind::Diff(_))) {
        let StreamKind::Diff(expected) = &f.kind else {
            unreachable!()
        };
        let data = f.read();
        let d = decode_whole(&data, Config::rbd_compatible()).ok(&f.id());
        let want = match expected["format"].as_u64().unwrap() {
            1 => Format::DiffV1,
            2 => Format::DiffV2,
            x => panic!("format {x}"),
        };
        assert_eq!(d.events[0].1, Ev::Banner(want), "{}", f.id());
        let sums = summarise(&data, &d);
        assert_eq!(sums.len(), 1, "{}", f.id());
        same_summary(&f.id(), expected, &sums[0], &["stream_offset"]);
        // The raw decoder (fed exactly what it asks for) agrees with the pump.
        assert_same(&decode_raw(&data, Config::rbd_compatible()), &d, &f.id());
        n += 1;
    }
    assert!(n >= 100, "{n}");
}

/// `[["O", 8, 16], ..., ["M", 29, key, value], ["E"]]` from the decoded events.
fn header_records(data: &[u8], d: &Decoded) -> Vec<Value> {
    let declared = |off: u64| {
        let o = off as usize;
        u64::from_le_bytes(data[o + 1..o + 9].try_into().unwrap())
    };
    let mut out = Vec::new();
    for (off, e) in &d.events {
        match e {
            Ev::Order(v) => out.push(json!(["O", declared(*off), v])),
            Ev::Features(v) => out.push(json!(["T", declared(*off), v])),
            Ev::StripeUnit(v) => out.push(json!(["U", declared(*off), v])),
            Ev::StripeCount(v) => out.push(json!(["C", declared(*off), v])),
            Ev::Meta { key, value } => out.push(json!([
                "M",
                declared(*off),
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(value)
            ])),
            Ev::ImageHeaderEnd => {
                out.push(json!(["E"]));
                break;
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_export_decodes_to_its_manifest_summary() {
    let mut n = 0;
    for f in stream_files_of(|k| matches!(k, StreamKind::ExportV2(_))) {
        let StreamKind::ExportV2(x) = &f.kind else {
            unreachable!()
        };
        let data = f.read();
        let d = decode_whole(&data, Config::strict()).ok(&f.id());
        assert_eq!(d.events[0].1, Ev::Banner(Format::ImageV2));
        assert_eq!(
            Value::Array(header_records(&data, &d)),
            x["header_records"],
            "{}",
            f.id()
        );
        let count = d.evs().iter().find_map(|e| {
            if let Ev::DiffCount(c) = e {
                Some(*c)
            } else {
                None
            }
        });
        assert_eq!(count, x["diff_count"].as_u64(), "{}", f.id());
        let sums = summarise(&data, &d);
        let want = x["diffs"].as_array().unwrap();
        assert_eq!(sums.len(), want.len(), "{}", f.id());
        for (i, (w, g)) in want.iter().zip(&sums).enumerate() {
            same_summary(&format!("{} diff #{i}", f.id()), w, g, &[]);
        }
        // Nothing after the last diff.
        let last = &want[want.len() - 1];
        assert_eq!(
            last["stream_offset"].as_u64().unwrap() + last["stream_bytes"].as_u64().unwrap(),
            data.len() as u64
        );
        assert_same(&decode_raw(&data, Config::strict()), &d, &f.id());
        n += 1;
    }
    assert!(n >= 6, "{n}");
}

/// The checks a manifest summary implies, in stream order, as the decoder must
/// report them (zero length, then order, then size, per record).
fn implied_findings(summary: &Value) -> Vec<ErrorKind> {
    let size = summary.get("size").and_then(Value::as_u64);
    let mut prev_end: Option<u64> = None;
    let mut out = Vec::new();
    for r in summary["records"].as_array().unwrap() {
        let tag = r[0].as_str().unwrap().as_bytes()[0];
        let off = r[1].as_u64().unwrap();
        let len = r[2].as_u64().unwrap();
        let end = off + len;
        if len == 0 {
            out.push(ErrorKind::ZeroLength { tag });
        }
        if let Some(p) = prev_end
            && off < p
        {
            out.push(ErrorKind::OutOfOrder {
                prev_end: p,
                offset: off,
            });
        }
        if let Some(s) = size
            && end > s
        {
            out.push(ErrorKind::BeyondSize { end, size: s });
        }
        prev_end = Some(end);
    }
    if summary
        .get("trailing_bytes")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        > 0
    {
        out.push(ErrorKind::TrailingBytes);
    }
    out
}

#[test]
fn validation_findings_match_manifest_flags() {
    let mut flagged = 0;
    for f in stream_files_of(|k| matches!(k, StreamKind::Diff(_))) {
        let StreamKind::Diff(s) = &f.kind else {
            unreachable!()
        };
        let data = f.read();
        let want = implied_findings(s);
        // The summary's own flags agree with the findings (an independent cross-check).
        let has = |p: fn(&ErrorKind) -> bool| want.iter().any(p);
        assert_eq!(
            has(|k| matches!(k, ErrorKind::OutOfOrder { .. })),
            !s["records_sorted"].as_bool().unwrap() || s["records_overlap"].as_bool().unwrap(),
            "{}",
            f.id()
        );
        if let Some(b) = s.get("records_beyond_size") {
            assert_eq!(
                has(|k| matches!(k, ErrorKind::BeyondSize { .. })),
                b.as_bool().unwrap(),
                "{}",
                f.id()
            );
        }
        if f.made_by_rbd() {
            assert!(want.is_empty(), "{}: rbd wrote {want:?}", f.id());
        }
        // Default policy: each finding is a warning, in order.
        let d = decode_whole(&data, Config::new()).ok(&f.id());
        let got: Vec<ErrorKind> = d.warnings().into_iter().map(|(_, k)| k).collect();
        assert_eq!(got, want, "{}", f.id());
        // Strict policy: the first finding is the error, at the offending record.
        let st = decode_whole(&data, Config::strict());
        match want.first() {
            None => assert!(st.error.is_none() && st.done, "{}: {:?}", f.id(), st.error),
            Some(k) => {
                flagged += 1;
                let e = st
                    .error
                    .unwrap_or_else(|| panic!("{}: strict accepted", f.id()));
                assert_eq!(e.kind, *k, "{}", f.id());
                let (woff, _) = d.warnings()[0];
                assert_eq!(e.offset, woff, "{}", f.id());
                // The offset is that of the record (or of the first trailing byte).
                let item = d
                    .events
                    .iter()
                    .find(|(o, e)| *o == woff && !matches!(e, Ev::Warning(_)));
                assert!(
                    matches!(
                        item,
                        Some((_, Ev::Write { .. } | Ev::Zero { .. } | Ev::Trailing(_)))
                    ),
                    "{}: {item:?}",
                    f.id()
                );
            }
        }
    }
    assert!(flagged >= 4, "{flagged}");
}

/// Hand-crafted inputs that must NOT re-encode byte for byte, and why.
const NOT_CANONICAL: &[(&str, &str)] = &[];

#[test]
fn decode_encode_reproduces_every_file() {
    let mut rbd_made = 0;
    let mut crafted = 0;
    for f in stream_files_of(|k| matches!(k, StreamKind::Diff(_) | StreamKind::ExportV2(_))) {
        let data = f.read();
        let d = decode_whole(&data, Config::rbd_compatible()).ok(&f.id());
        let evs = d.evs();
        if f.made_by_rbd() {
            // rbd's writers: the strict encoder must produce the same bytes.
            let out = encode(&evs, false).unwrap_or_else(|e| panic!("{}: {e}", f.id()));
            assert!(out == data, "{}: re-encoded bytes differ", f.id());
            rbd_made += 1;
        } else if let Some((_, why)) = NOT_CANONICAL.iter().find(|(p, _)| f.id() == *p) {
            let out = encode(&evs, true);
            assert!(
                out.as_ref() != Ok(&data),
                "{}: listed as not canonical ({why}) but reproduces",
                f.id()
            );
        } else {
            let out = encode(&evs, true).unwrap_or_else(|e| panic!("{}: {e}", f.id()));
            assert!(out == data, "{}: re-encoded bytes differ", f.id());
            // The strict encoder refuses exactly the irregular ones.
            let strict = encode(&evs, false);
            let irregular = !implied_findings(match &f.kind {
                StreamKind::Diff(s) => s,
                _ => &Value::Null,
            })
            .iter()
            .all(|k| matches!(k, ErrorKind::BeyondSize { .. } | ErrorKind::TrailingBytes));
            assert_eq!(strict.is_err(), irregular, "{}: {strict:?}", f.id());
            crafted += 1;
        }
    }
    assert!(rbd_made >= 90 && crafted >= 20, "{rbd_made} {crafted}");
}

// ------------------------------------------------------------------ apply

/// The content of `rel` (a raw image) in `case`: the stored file, or, for raws not
/// stored, `diff/0..<point>.diff` applied to zeros (the README's rule), checked
/// against the recorded sha256.
fn raw_image(case: &Case, rel: &str) -> Vec<u8> {
    let entry = case
        .entry(rel)
        .unwrap_or_else(|| panic!("{}: no entry {rel}", case.name));
    let sha = entry["sha256"].as_str().unwrap();
    let img = if case.dir.join(rel).is_file() {
        case.read(rel)
    } else {
        let point = rel
            .strip_prefix("raw/")
            .unwrap()
            .strip_suffix(".raw")
            .unwrap();
        apply_stream(Vec::new(), &case.read(&format!("diff/0..{point}.diff"))).unwrap()
    };
    assert_eq!(sha256_hex(&img), sha, "{}: {rel}", case.name);
    img
}

fn base_image(case: &Case, base: &str) -> Vec<u8> {
    if base == "zeros" {
        Vec::new()
    } else {
        raw_image(case, base)
    }
}

#[test]
fn every_apply_relationship_reproduces_the_target() {
    let mut n = 0;
    for case in cases() {
        for r in case.manifest["relationships"]
            .as_array()
            .into_iter()
            .flatten()
        {
            match r["kind"].as_str().unwrap() {
                "apply" => {
                    let diff = r["diff"].as_str().unwrap();
                    if !case.dir.join(diff).is_file() {
                        // Large whole-object diffs were not kept; only their sha256 is known.
                        assert!(
                            case.manifest["unstored_files"].get(diff).is_some(),
                            "{diff}"
                        );
                        continue;
                    }
                    let base = base_image(&case, r["base"].as_str().unwrap());
                    let out = apply_stream(base, &case.read(r["diff"].as_str().unwrap())).unwrap();
                    assert_eq!(
                        sha256_hex(&out),
                        r["result_sha256"].as_str().unwrap(),
                        "{} {r}",
                        case.name
                    );
                    n += 1;
                }
                "merge" => {
                    // The rbd merge output applies to the result, and so do its inputs in sequence.
                    let base = base_image(&case, r["base"].as_str().unwrap());
                    let want = r["result_sha256"].as_str().unwrap();
                    let out = apply_stream(base.clone(), &case.read(r["output"].as_str().unwrap()))
                        .unwrap();
                    assert_eq!(sha256_hex(&out), want, "{} {r}", case.name);
                    let mut img = base;
                    for d in r["equivalent_to_applying"].as_array().unwrap() {
                        img = apply_stream(img, &case.read(d.as_str().unwrap())).unwrap();
                    }
                    assert_eq!(sha256_hex(&img), want, "{} {r}", case.name);
                    n += 1;
                }
                "v2_vs_v1" => {
                    let v2 = case.read(r["v2diff_file"].as_str().unwrap());
                    let range = r["v2diff_range"].as_array().unwrap();
                    let (a, b) = (
                        range[0].as_u64().unwrap() as usize,
                        range[1].as_u64().unwrap() as usize,
                    );
                    let v2 = decode_whole(&v2[a..b], Config::strict()).ok("v2 part");
                    let v1 =
                        decode_whole(&case.read(r["v1diff"].as_str().unwrap()), Config::strict())
                            .ok("v1");
                    let recs = |d: &Decoded| -> Vec<Ev> {
                        d.evs()
                            .into_iter()
                            .filter(|e| {
                                matches!(
                                    e,
                                    Ev::Write { .. }
                                        | Ev::Data { .. }
                                        | Ev::Zero { .. }
                                        | Ev::Size(_)
                                )
                            })
                            .collect()
                    };
                    assert_eq!(
                        recs(&v2) == recs(&v1),
                        r["same_records"].as_bool().unwrap(),
                        "{} {r}",
                        case.name
                    );
                    n += 1;
                }
                "import_v2_roundtrip" => {
                    // Importing the export = applying its diffs in order; each snapshot and
                    // the head equal the raw exports of the source image.
                    let data = case.read(r["stream"].as_str().unwrap());
                    let d = decode_whole(&data, Config::strict()).ok("export");
                    let mut m = Model::zeros(data.len() as u64);
                    let mut to: Option<Vec<u8>> = None;
                    let mut points = Vec::new();
                    for e in d.evs() {
                        match &e {
                            Ev::DiffBegin(_) => to = None,
                            Ev::ToSnap(t) => to = Some(t.clone()),
                            Ev::DiffEnd => {
                                let p = to.as_deref().map_or("head".to_string(), |t| {
                                    String::from_utf8_lossy(t).into()
                                });
                                let want = raw_image(&case, &format!("raw/{p}.raw"));
                                assert!(m.image == want, "{}: point {p}", case.name);
                                points.push(p);
                            }
                            _ => m.event(&e).unwrap(),
                        }
                    }
                    let snaps: Vec<String> = r["details"]["snapshots"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s[0].as_str().unwrap().to_string())
                        .chain(["head".to_string()])
                        .collect();
                    assert_eq!(points, snaps, "{}", case.name);
                    n += 1;
                }
                _ => {}
            }
        }
    }
    assert!(n >= 100, "{n}");
}

/// import-diff observations: the image state after each recorded run, from the
/// naive model (records applied in order until the first failure; a `w` is applied
/// only when complete, as rbd reads a whole record before writing it).
#[test]
fn import_diff_image_states_match_the_model() {
    let case = case("import-diff");
    let states = case.manifest["observations"]["image_states"]
        .as_object()
        .unwrap();
    let mib = 1 << 20;
    let zt = || shake256("ZT", mib);
    // (state, base image, diffs applied in order)
    let fresh = |input: &str| (Vec::new(), vec![input.to_string()]);
    let mut table: BTreeMap<String, (Vec<u8>, Vec<String>)> = BTreeMap::new();
    for s in ["default", "512B", "64K", "1M", "0"] {
        table.insert(
            format!("after sparse.diff with --sparse-size {s}"),
            fresh("inputs/sparse.diff"),
        );
    }
    table.insert(
        "after zero-over-data.diff".into(),
        (zt(), vec!["inputs/zero-over-data.diff".into()]),
    );
    table.insert(
        "after zero-writes-over-data.diff".into(),
        (zt(), vec!["inputs/zero-writes-over-data.diff".into()]),
    );
    let rs = shake256("RS", 2 * mib);
    let chain = [
        "inputs/shrink-only.diff",
        "inputs/grow-only.diff",
        "inputs/no-size.diff",
    ];
    table.insert(
        "after shrink-only.diff (image was 2 MiB of data)".into(),
        (
            rs.clone(),
            chain[..1].iter().map(|s| s.to_string()).collect(),
        ),
    );
    table.insert(
        "after grow-only.diff".into(),
        (
            rs.clone(),
            chain[..2].iter().map(|s| s.to_string()).collect(),
        ),
    );
    table.insert(
        "after no-size.diff".into(),
        (rs, chain.iter().map(|s| s.to_string()).collect()),
    );
    for k in states.keys() {
        if let Some(input) = k.strip_prefix("after import-diff of ") {
            table.insert(k.clone(), fresh(input));
        }
    }
    table.insert(
        "after stdin import of ../basic-64k/diff/0..s1.diff".into(),
        fresh("../basic-64k/diff/0..s1.diff"),
    );
    // Not a stream matter: the from-snap check failed before anything was written.
    let not_modelled = [
        "after failed import (from snap missing)",
        "after importing s1..s2 onto a diverged head",
    ];
    let mut n = 0;
    for (name, st) in states {
        if not_modelled.contains(&name.as_str()) {
            continue;
        }
        let (base, inputs) = table
            .get(name)
            .unwrap_or_else(|| panic!("state {name:?} not in the table"));
        let mut m = Model::from_bytes(if base.is_empty() {
            vec![0; mib]
        } else {
            base.clone()
        });
        for input in inputs {
            let data = case.read(input);
            let d = decode_whole(&data, import_diff_cfg());
            // Failure stops the run: records before it stay applied.
            let _ = m.apply(&d.evs());
        }
        assert_eq!(m.image.len() as u64, st["size"].as_u64().unwrap(), "{name}");
        assert_eq!(m.sha256(), st["head_sha256"].as_str().unwrap(), "{name}");
        n += 1;
    }
    assert!(n >= 25, "{n}");
    // The diverged head: 0..s1, then a 64 KiB write at 0, then s1..s2 on top.
    let st = &states["after importing s1..s2 onto a diverged head"];
    let mut m = Model::zeros(mib as u64);
    m.apply(
        &decode_whole(
            &case.read("../basic-64k/diff/0..s1.diff"),
            import_diff_cfg(),
        )
        .evs(),
    )
    .unwrap();
    m.write(0, &shake256("divergence", 65536)).unwrap();
    m.apply(
        &decode_whole(
            &case.read("../basic-64k/diff/s1..s2.diff"),
            import_diff_cfg(),
        )
        .evs(),
    )
    .unwrap();
    assert_eq!(m.sha256(), st["head_sha256"].as_str().unwrap());
    // The reference-model verdicts recorded by the corpus hold for our model too.
    for (k, v) in case.manifest["observations"]["reference_model_matches_rbd"]
        .as_object()
        .unwrap()
    {
        assert!(v.as_bool().unwrap(), "{k}");
    }
}

// ------------------------------------------------------------------ recorded rbd errors

/// What an rbd error message says about the stream, as a decode error kind test.
type KindTest = Box<dyn Fn(&ErrorKind) -> bool>;

fn rbd_message_expect(msg: &str) -> Option<KindTest> {
    let eof = |x: Expected| -> Option<KindTest> {
        Some(Box::new(
            move |k| matches!(k, ErrorKind::UnexpectedEof { expected, missing } if *expected == x && *missing > 0),
        ))
    };
    if msg.contains("failed to decode diff banner") {
        eof(Expected::Banner)
    } else if msg.contains("failed to decode end snap name") {
        eof(Expected::ToSnapName)
    } else if msg.contains("failed to decode IO length") {
        eof(Expected::IoLength)
    } else if msg.contains("failed to decode write data") {
        eof(Expected::WriteData)
    } else if msg.contains("failed to decode tag") {
        eof(Expected::Tag)
    } else if msg.contains("failed to decode image option") {
        eof(Expected::ImageOption)
    } else if msg.contains("invalid or unexpected diff banner") {
        Some(Box::new(|k| matches!(k, ErrorKind::BadBanner { .. })))
    } else {
        None
    }
}

/// The stream offset an error must name for a truncated copy (`cut` bytes) of a
/// good stream: the start of the item the cut falls in, or the cut itself inside
/// `w` payloads.
fn truncation_offset(full: &Decoded, cut: u64) -> u64 {
    let mut last_item = 0;
    for (off, e) in &full.events {
        if *off > cut {
            break;
        }
        match e {
            Ev::Data { .. } => return cut.max(*off),
            Ev::Warning(_) => {}
            _ => last_item = *off,
        }
        if *off == cut {
            return cut;
        }
    }
    last_item
}

#[test]
fn import_diff_errors_are_reproduced() {
    let case = case("import-diff");
    let errors = case.manifest["observations"]["errors"].as_object().unwrap();
    let not_stream = [
        "from_snap_missing_on_target", // snapshot name checks: the stream is valid
        "end_snap_already_exists",
        "nonexistent_file",
        "nonexistent_image",
        "from_snap_exists_but_head_diverged",
    ];
    let mut n = 0;
    for (name, e) in errors {
        if not_stream.contains(&name.as_str()) {
            continue;
        }
        let cmd = e["cmd"].as_str().unwrap();
        let input = cmd
            .split_whitespace()
            .find(|w| w.ends_with(".diff") || w.ends_with(".v2diff"))
            .unwrap_or_else(|| panic!("{name}: {cmd}"));
        let data = case.read(input);
        let rc = e["rc"].as_u64().unwrap();
        let stderr = e["stderr"].as_str().unwrap();
        let d = decode_whole(&data, import_diff_cfg());
        // Chunking does not change the outcome.
        assert_eq!(
            decode(&data, &split_bytes(data.len()), import_diff_cfg()),
            d,
            "{name}"
        );
        if rc == 0 {
            assert!(
                d.error.is_none() && d.done,
                "{name}: rbd accepted, we say {:?}",
                d.error
            );
            // One "unrecognized tag byte N" line per skipped byte, in order.
            let skipped: Vec<u8> = d
                .evs()
                .iter()
                .filter_map(|e| {
                    if let Ev::Unknown { tag, .. } = e {
                        Some(*tag)
                    } else {
                        None
                    }
                })
                .collect();
            let lines: Vec<u8> = stderr
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("unrecognized tag byte ")?
                        .strip_suffix(" in stream; skipping")
                })
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(skipped, lines, "{name}");
        } else if name == "write_beyond_size" {
            // rbd decodes it fine and fails writing it; the decoder warns, the model refuses.
            assert!(d.error.is_none(), "{name}");
            assert!(
                d.warnings()
                    .iter()
                    .any(|(_, k)| matches!(k, ErrorKind::BeyondSize { .. }))
            );
            assert!(Model::zeros(1 << 20).apply(&d.evs()).is_err());
        } else {
            let err = d
                .error
                .unwrap_or_else(|| panic!("{name}: rbd failed (rc {rc}), we accept"));
            let ok = rbd_message_expect(stderr)
                .unwrap_or_else(|| panic!("{name}: unmapped message {stderr}"));
            assert!(ok(&err.kind), "{name}: {err} for {stderr}");
            n += 1;
            // Truncated copies of basic-64k 0..s1: the error names the right offset.
            let produced = case.entry(input).unwrap()["produced_by"].as_str().unwrap();
            if produced.contains("../basic-64k/diff/0..s1.diff") && err.is_eof() && data.len() > 12
            {
                let full = decode_whole(
                    &case.read("../basic-64k/diff/0..s1.diff"),
                    import_diff_cfg(),
                )
                .ok("full");
                assert_eq!(
                    err.offset,
                    truncation_offset(&full, data.len() as u64),
                    "{name}: {err}"
                );
            }
            if let ErrorKind::BadBanner {
                found, found_len, ..
            } = err.kind
            {
                assert_eq!(
                    &found[..found_len as usize],
                    &data[..data.len().min(12)],
                    "{name}"
                );
                assert_eq!(err.offset, 0);
            }
        }
    }
    assert!(n >= 9, "{n}");
}

#[test]
fn import_diff_parse_errors_strict() {
    // The manifests' own parser rejects unknown tags: so does the strict decoder, at that offset.
    for f in stream_files_of(|k| matches!(k, StreamKind::ParseError(_))) {
        let StreamKind::ParseError(msg) = &f.kind else {
            unreachable!()
        };
        let data = f.read();
        let d = decode_whole(&data, Config::new());
        let e = d.error.unwrap_or_else(|| panic!("{}: accepted", f.id()));
        if let Some(rest) = msg.strip_prefix("unknown tag '") {
            let (t, at) = rest.split_once("' at ").unwrap();
            assert_eq!(
                e,
                DecodeError::new(
                    at.parse().unwrap(),
                    ErrorKind::UnknownTag {
                        tag: t.as_bytes()[0],
                        zone: Zone::DiffV1
                    }
                ),
                "{}",
                f.id()
            );
        } else if msg.starts_with("bad banner") && !data.is_empty() {
            assert!(
                matches!(e.kind, ErrorKind::BadBanner { .. }),
                "{}: {e}",
                f.id()
            );
        } else {
            assert!(e.is_eof(), "{}: {msg} vs {e}", f.id());
        }
    }
}

#[test]
fn import_export_v2_errors_are_reproduced() {
    let case = case("import-export-v2");
    let errors = case.manifest["observations"]["errors"].as_object().unwrap();
    let full = decode_whole(&case.read("../basic-64k/export/image.v2"), import_v2_cfg()).ok("full");
    let mut n = 0;
    for (name, e) in errors {
        let cmd = e["cmd"].as_str().unwrap();
        if cmd.contains("--export-format 1") {
            continue; // a raw import: nothing is decoded
        }
        let input = cmd.split_whitespace().rev().nth(1).unwrap();
        let data = case.read(input);
        let d = decode_whole(&data, import_v2_cfg());
        let stderr = e["stderr"].as_str().unwrap();
        let err = d.error.unwrap_or_else(|| panic!("{name}: accepted"));
        let ok = rbd_message_expect(stderr).unwrap_or_else(|| panic!("{name}: unmapped {stderr}"));
        assert!(ok(&err.kind), "{name}: {err} for {stderr}");
        if input.starts_with("inputs/trunc") {
            assert_eq!(
                err.offset,
                truncation_offset(&full, data.len() as u64),
                "{name}: {err}"
            );
        }
        n += 1;
    }
    assert_eq!(n, 6);
}

/// merge-diff's decode-level rejections: every recorded failure whose message is
/// about an input stream is reproduced on that input with merge-diff's policy.
#[test]
fn merge_diff_input_errors_are_reproduced() {
    let case = case("merge-diff");
    let errors = case.manifest["observations"]["errors"].as_object().unwrap();
    let mut n = 0;
    for (name, e) in errors {
        let cmd = e["cmd"].as_str().unwrap();
        let rc = e["rc"].as_u64().unwrap();
        let stderr = e["stderr"].as_str().unwrap();
        if rc == 2 || rc == 17 {
            continue; // files that cannot be opened or created
        }
        let args: Vec<&str> = cmd.split_whitespace().skip(3).collect();
        let (a, b) = (args[0], args[1]);
        let a = if a == "-" {
            cmd.rsplit("< ").next().unwrap()
        } else {
            a
        };
        let da = decode_whole(&case.read(a), merge_cfg());
        let db = decode_whole(&case.read(b), merge_cfg());
        let which = if stderr.contains("first") {
            Some(&da)
        } else if stderr.contains("second") {
            Some(&db)
        } else {
            [&da, &db].into_iter().find(|d| d.error.is_some())
        };
        if rc == 0 {
            assert!(
                da.error.is_none() && db.error.is_none(),
                "{name}: {:?} {:?}",
                da.error,
                db.error
            );
            continue;
        }
        n += 1;
        if stderr.starts_with("The first TO snapshot") {
            let da = da.ok(name);
            let db = db.ok(name);
            let to = da
                .evs()
                .into_iter()
                .find_map(|e| if let Ev::ToSnap(t) = e { Some(t) } else { None });
            let from = db.evs().into_iter().find_map(|e| {
                if let Ev::FromSnap(t) = e {
                    Some(t)
                } else {
                    None
                }
            });
            assert_ne!(to, from, "{name}");
            continue;
        }
        let d = which.unwrap_or_else(|| panic!("{name}: {stderr}"));
        if let Some(rest) = stderr.strip_prefix("invalid banner '") {
            let found = &rest.as_bytes()[..12];
            let err = d.error.unwrap();
            assert!(
                matches!(err.kind, ErrorKind::BadBanner { found: f, found_len: 12, .. } if &f[..12] == found),
                "{name}: {err}"
            );
        } else if let Some(rest) = stderr.split("out-of-order offset from ").nth(1) {
            let nums = rest.split_once('(').unwrap().1.split_once(')').unwrap().0;
            let (p, o) = nums.split_once(" > ").unwrap();
            let (p, o): (u64, u64) = (p.parse().unwrap(), o.parse().unwrap());
            let file = if stderr.contains("from first") { a } else { b };
            let has_size = case.entry(file).unwrap()["diff"].get("size").is_some();
            if has_size {
                let err = d.error.unwrap_or_else(|| panic!("{name}: accepted"));
                assert_eq!(
                    err.kind,
                    ErrorKind::OutOfOrder {
                        prev_end: p,
                        offset: o
                    },
                    "{name}"
                );
            } else {
                // rbd's bogus message for a missing `s` (its size 0): the stream itself is valid.
                assert!(d.error.is_none(), "{name}");
            }
        } else {
            let err = d.error.unwrap_or_else(|| panic!("{name}: accepted"));
            let ok = match (rc, stderr.lines().next().unwrap()) {
                (33, l) if l.contains("failed to merge diff chunk") => {
                    matches!(
                        err.kind,
                        ErrorKind::UnexpectedEof {
                            expected: Expected::WriteData,
                            ..
                        }
                    )
                }
                (33, l) if l.contains("data chunk header") => err.is_eof(),
                (33, l) if l.contains("parse") => err.is_eof(),
                (95, l) if l.contains("data chunk header") => {
                    matches!(
                        err.kind,
                        ErrorKind::UnknownTag { .. } | ErrorKind::ZeroLength { .. }
                    )
                }
                _ => false,
            };
            assert!(ok, "{name}: {err} for rc {rc} {stderr}");
        }
    }
    assert!(n >= 15, "{n}");
}

// ------------------------------------------------------------------ extension-compat

fn ext_input_bytes(name: &str) -> Vec<u8> {
    let r = ext_results();
    if r["inputs"][name]["stored"].as_bool().unwrap() {
        return ext_input(name);
    }
    // Rebuilt as run_tests.py does: the base stream + SHAKE-256("trailer") 1 MiB.
    let base = name
        .replace(".trailer-1MiB", "")
        .replace("3e2-trailer-1MiB", "")
        .trim_end_matches('.')
        .to_string();
    let mut d = ext_input(&base);
    d.extend_from_slice(&shake256("trailer", 1 << 20));
    assert_eq!(
        sha256_hex(&d),
        r["inputs"][name]["sha256"].as_str().unwrap(),
        "{name}"
    );
    d
}

/// Applies a decoded image stream: diffs in order, returning (head, [(snap, sha)]).
fn import_image(data: &[u8], d: &Decoded) -> (Vec<u8>, Vec<(String, u64, String)>) {
    let mut m = Model::zeros(data.len() as u64);
    let mut to = None;
    let mut snaps = Vec::new();
    for e in d.evs() {
        match &e {
            Ev::ToSnap(t) => to = Some(String::from_utf8_lossy(t).into_owned()),
            Ev::DiffEnd => {
                if let Some(t) = to.take() {
                    snaps.push((t, m.image.len() as u64, m.sha256()));
                }
            }
            _ => m.event(&e).unwrap(),
        }
    }
    (m.image, snaps)
}

#[test]
fn extension_compat_results_are_reproduced() {
    let r = ext_results();
    let mut n = 0;
    for t in r["results"].as_array().unwrap() {
        let test = t["test"].as_str().unwrap();
        let cmd = t["command"].as_str().unwrap();
        let lines: Vec<&str> = t["stderr_lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        assert_eq!(
            t["exit_code"], 0,
            "{test}: every recorded extension was accepted"
        );
        let inputs: Vec<&str> = cmd
            .split_whitespace()
            .filter(|w| w.starts_with("inputs/"))
            .collect();
        if cmd.contains("rbd import-diff") {
            let data = ext_input_bytes(inputs[0]);
            let d = decode_whole(&data, import_diff_cfg()).ok(test);
            let skipped: Vec<String> = d
                .evs()
                .iter()
                .filter_map(|e| {
                    if let Ev::Unknown { tag, len: None } = e {
                        Some(format!("unrecognized tag byte {tag} in stream; skipping"))
                    } else {
                        None
                    }
                })
                .collect();
            assert_eq!(skipped, lines, "{test}");
            let mut m = Model::zeros(4 << 20);
            m.apply(&d.evs()).unwrap();
            // 4f: rbd's own outcome varied (3/100 runs); stream order is the reference.
            let want = t["result_sha256"]
                .as_str()
                .or(t["expected_sha256"].as_str())
                .unwrap();
            assert_eq!(m.sha256(), want, "{test}");
            if let Some(snaps) = t["snapshots"].as_array() {
                assert_eq!(snaps.len(), 1);
                assert_eq!(snaps[0]["sha256"].as_str().unwrap(), want);
            }
            // Strict readers refuse what rbd skipped or ignored.
            let st = decode_whole(&data, Config::strict());
            if !skipped.is_empty() {
                let first = d
                    .events
                    .iter()
                    .find(|(_, e)| matches!(e, Ev::Unknown { .. }))
                    .unwrap()
                    .0;
                assert!(
                    matches!(st.error, Some(DecodeError { offset, kind: ErrorKind::UnknownTag { tag: 88, zone: Zone::DiffV1 } }) if offset == first),
                    "{test}: {:?}",
                    st.error
                );
                // ... and so does the default policy (v1 unknown tags are errors by default).
                assert_eq!(decode_whole(&data, Config::new()).error, st.error);
            } else if test != "1.ref" {
                let tr = d
                    .events
                    .iter()
                    .find(|(_, e)| matches!(e, Ev::Trailing(_)))
                    .expect("trailing");
                assert_eq!(
                    st.error,
                    Some(DecodeError::new(tr.0, ErrorKind::TrailingBytes)),
                    "{test}"
                );
                let Ev::Trailing(bytes) = &tr.1 else {
                    unreachable!()
                };
                assert_eq!(&data[tr.0 as usize..], &bytes[..]);
                assert!(
                    decode_whole(&data, Config::new())
                        .warnings()
                        .iter()
                        .any(|(_, k)| *k == ErrorKind::TrailingBytes)
                );
            }
            n += 1;
        } else if cmd.starts_with("rbd import --export-format 2") {
            let input = if inputs.is_empty() {
                cmd.rsplit("< ").next().unwrap()
            } else {
                inputs[0]
            };
            let data = ext_input_bytes(input);
            let d = decode_whole(&data, import_v2_cfg()).ok(test);
            let unknown: Vec<(u8, bool)> = d
                .events
                .iter()
                .filter_map(|(o, e)| {
                    if let Ev::Unknown { tag, len: Some(_) } = e {
                        Some((*tag, *o))
                    } else {
                        None
                    }
                })
                .map(|(tag, o)| {
                    // In the header zone iff before the image header end.
                    let hdr = d
                        .events
                        .iter()
                        .any(|(o2, e)| *e == Ev::ImageHeaderEnd && *o2 > o);
                    (tag, hdr)
                })
                .collect();
            let want: Vec<(u8, bool)> = lines
                .iter()
                .map(|l| {
                    if let Some(x) = l.strip_prefix("rbd: invalid tag in image properties zone: ") {
                        (x.as_bytes()[0], true)
                    } else {
                        let n = l
                            .strip_prefix("unrecognized tag byte ")
                            .unwrap()
                            .split(' ')
                            .next()
                            .unwrap();
                        (n.parse().unwrap(), false)
                    }
                })
                .collect();
            assert_eq!(unknown, want, "{test}");
            let st = &t["state"];
            let (head, snaps) = import_image(&data, &d);
            assert_eq!(
                sha256_hex(&head),
                st["head_sha256"].as_str().unwrap(),
                "{test}"
            );
            assert_eq!(
                head.len() as u64,
                st["head_size"].as_u64().unwrap(),
                "{test}"
            );
            let want_snaps: Vec<(String, u64, String)> = st["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap().into(),
                        s["size"].as_u64().unwrap(),
                        s["sha256"].as_str().unwrap().into(),
                    )
                })
                .collect();
            assert_eq!(snaps, want_snaps, "{test}");
            let evs = d.evs();
            assert!(
                evs.contains(&Ev::Order(st["order"].as_u64().unwrap())),
                "{test}"
            );
            for (k, v) in st["image_meta"].as_object().unwrap() {
                assert!(
                    evs.contains(&Ev::Meta {
                        key: k.as_bytes().to_vec(),
                        value: v.as_str().unwrap().as_bytes().to_vec()
                    }),
                    "{test}"
                );
            }
            // Strict: unknown records and trailers are errors.
            let strict = decode_whole(&data, Config::strict().with_formats(FormatSet::IMAGE));
            assert_eq!(
                strict.error.is_some(),
                !want.is_empty() || test.starts_with("3e"),
                "{test}: {:?}",
                strict.error
            );
            n += 1;
        } else if cmd.starts_with("rbd merge-diff") || cmd.contains("rbd merge-diff") {
            // Both inputs decode under rbd's policy; trailers come out as Trailing.
            let mut all: Vec<&str> = inputs.clone();
            if let Some(s) = cmd.split("< ").nth(1) {
                all.push(s);
            }
            for i in all {
                let data = ext_input_bytes(i);
                let d = decode_whole(&data, Config::rbd_compatible()).ok(test);
                let trailing = d.evs().iter().any(|e| matches!(e, Ev::Trailing(_)));
                assert_eq!(trailing, i.contains("trailer"), "{test} {i}");
            }
            n += 1;
        } else {
            panic!("{test}: unknown command {cmd}");
        }
    }
    assert!(n >= 25, "{n}");
}

// ------------------------------------------------------------------ merge engine

fn merge_bytes(inputs: &[Vec<u8>]) -> Result<Vec<u8>, String> {
    let mut rs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut out = Vec::new();
    rbdiff::merge::merge_streams(
        &mut rs,
        &mut out,
        &rbdiff::merge::MergeOptions::default(),
        &mut |_| {},
    )
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Every merge rbd ran successfully, found from the manifests (relationships and
/// recorded commands) and extension-compat: the engine writes the same bytes.
#[test]
fn every_rbd_merge_output_is_reproduced() {
    let mut n = 0;
    for case in cases() {
        let mut runs: Vec<(Vec<String>, String)> = Vec::new();
        for r in case.manifest["relationships"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if r["kind"] == "merge" {
                let ins = r["inputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                runs.push((ins, r["output"].as_str().unwrap().to_string()));
            }
        }
        for c in case.manifest["commands"].as_array().unwrap() {
            let cmd = c["cmd"].as_str().unwrap();
            if !cmd.starts_with("rbd merge-diff") || c["rc"] != 0 {
                continue;
            }
            let w: Vec<&str> = cmd.split_whitespace().skip(3).collect();
            let (a, b, out) = (w[0], w[1], w[2]);
            let a = if a == "-" {
                cmd.rsplit("< ").next().unwrap()
            } else {
                a
            };
            let out = if out == "-" {
                cmd.rsplit("> ").next().unwrap()
            } else {
                out
            };
            runs.push((vec![a.to_string(), b.to_string()], out.to_string()));
        }
        runs.sort();
        runs.dedup();
        for (ins, out) in runs {
            let entry = case
                .entry(&out)
                .unwrap_or_else(|| panic!("{}: {out} not in manifest", case.name));
            let inputs: Vec<Vec<u8>> = ins.iter().map(|i| case.read(i)).collect();
            let got =
                merge_bytes(&inputs).unwrap_or_else(|e| panic!("{}: {ins:?}: {e}", case.name));
            assert_eq!(
                sha256_hex(&got),
                entry["sha256"].as_str().unwrap(),
                "{}: {ins:?} -> {out}",
                case.name
            );
            n += 1;
        }
    }
    assert!(n >= 30, "{n}");
    // extension-compat: trailers after `e` change nothing (2.*).
    let r = ext_results();
    for t in r["results"].as_array().unwrap() {
        let cmd = t["command"].as_str().unwrap();
        if !cmd.starts_with("rbd merge-diff") {
            continue;
        }
        let w: Vec<&str> = cmd.split_whitespace().skip(3).collect();
        let a = if w[0] == "-" {
            cmd.rsplit("< ").next().unwrap()
        } else {
            w[0]
        };
        let got = merge_bytes(&[ext_input_bytes(a), ext_input_bytes(w[1])]).unwrap();
        assert_eq!(
            sha256_hex(&got),
            t["result_sha256"].as_str().unwrap(),
            "{}",
            t["test"]
        );
        if let Some(h) = t["import_of_merged_output_head_sha256"].as_str() {
            let img = apply_stream(vec![0; 4 << 20], &got).unwrap();
            assert_eq!(sha256_hex(&img), h, "{}", t["test"]);
        }
    }
}
