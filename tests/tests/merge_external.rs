//! Payloads moved outside the merge ([`PushMerge::set_external_payloads`],
//! [`merge_streams_with`], the CLI's kernel copies and seeks): the same bytes
//! and the same errors as the plain push path, for every merge in the real-rbd
//! corpus, any push/copy sizes, short copies, truncated inputs; and the
//! building blocks ([`Decoder::skip_payload`], [`Encoder::data_elsewhere`],
//! [`PushMerge::consumed_elsewhere`]) refuse misuse without panicking.
#![allow(clippy::cast_possible_truncation)] // test code, 64-bit hosts only

mod cli_common;

use proptest::prelude::*;
use rbdiff::merge::{
    BufCopier, CopyError, MergeErrorKind, MergeOptions, MergeStreamError, Need, Phase, PushMerge,
    merge_streams, merge_streams_with,
};
use rbdiff::{Config, DecodeError, Decoder, DiffHeader, Encoder, Event, Format, Step};
use rbdiff::{EncodeError, Misuse};
use rbdiff::{ErrorKind, Expected};
use rbdiff_tests::{Rec, Rng, encode_diff, fixtures_root};
use std::io::{self, Read};
use std::sync::OnceLock;

// ------------------------------------------------------------------ inputs

/// One `rbd merge-diff` run of the corpus: its two inputs, and rbd's output
/// when it succeeded.
struct Run {
    name: String,
    inputs: [Vec<u8>; 2],
    want: Option<Vec<u8>>,
}

/// Every `rbd merge-diff` command recorded in `merge-diff/manifest.json`
/// whose inputs exist (stdin inputs read from their redirect).
fn corpus() -> &'static [Run] {
    static RUNS: OnceLock<Vec<Run>> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir = fixtures_root().join("merge-diff");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let mut runs = Vec::new();
        for c in m["commands"].as_array().unwrap() {
            let cmd = c["cmd"].as_str().unwrap();
            if !cmd.starts_with("rbd merge-diff") {
                continue;
            }
            let (cmd, stdin) = match cmd.split_once(" < ") {
                Some((a, b)) => (a, Some(b)),
                None => (cmd, None),
            };
            let cmd = cmd.split(" > ").next().unwrap();
            let w: Vec<&str> = cmd.split_whitespace().skip(3).collect();
            let want = match c["rc"].as_i64() {
                Some(0) => true,
                // rbd opens a second '-' as a file; an existing output
                Some(2 | 17) => continue,
                _ => false,
            };
            let read = |p: &str| {
                let p = if p == "-" { stdin? } else { p };
                std::fs::read(dir.join(p)).ok()
            };
            let (Some(a), Some(b)) = (read(w[0]), read(w[1])) else {
                continue; // a missing input: an open error, not a merge
            };
            let out = if cmd.ends_with(" -") {
                c["cmd"].as_str().unwrap().rsplit(" > ").next().unwrap()
            } else {
                w[2]
            };
            let want = want.then(|| std::fs::read(dir.join(out)).unwrap());
            runs.push(Run {
                name: out.to_string(),
                inputs: [a, b],
                want,
            });
        }
        assert!(runs.len() >= 30, "{} merge-diff runs", runs.len());
        // the 15 rbd merges of files, plus one from stdin and one to stdout
        assert_eq!(runs.iter().filter(|r| r.want.is_some()).count(), 17);
        runs
    })
}

/// What a merge produced: its bytes, or its error as comparable parts.
type Outcome = Result<Vec<u8>, Failure>;

#[derive(Debug, PartialEq, Eq)]
struct Failure {
    input: Option<usize>,
    phase: Phase,
    located: Option<DecodeError>,
    message: String,
}

fn failure(e: MergeStreamError) -> Failure {
    Failure {
        input: e.input,
        phase: e.phase,
        located: e.located,
        message: e.to_string(),
    }
}

// ------------------------------------------------------------------ drivers

/// The plain path (what every merge did before external payloads): push
/// `push`-byte chunks, pull `pull`-byte pieces.
fn plain(inputs: &[&[u8]], push: usize, pull: usize) -> Outcome {
    let mut m = PushMerge::new(inputs.len(), Format::DiffV1);
    let mut pos = vec![0usize; inputs.len()];
    let mut out = Vec::new();
    loop {
        let s = m.pull(pull).map_err(failure)?;
        out.extend_from_slice(&s.output);
        if s.done {
            return Ok(out);
        }
        if let Some(i) = s.need_input {
            let end = (pos[i] + push).min(inputs[i].len());
            m.push(i, &inputs[i][pos[i]..end]).map_err(failure)?;
            pos[i] = end;
        }
    }
}

/// How the external driver behaves.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Bytes per push.
    push: usize,
    /// Output buffered before the driver takes it.
    out_max: usize,
    /// Most bytes a copy moves (fewer than asked when smaller).
    copy_max: u64,
    /// Every n-th copy moves nothing and pushes instead (0: never).
    push_instead: u32,
}

/// External payloads over in-memory sources, as a caller with its own
/// copier drives them.
fn external(inputs: &[&[u8]], plan: Plan) -> Outcome {
    let mut m = PushMerge::new(inputs.len(), Format::DiffV1);
    m.set_external_payloads(true);
    let mut pos = vec![0usize; inputs.len()];
    let mut out = Vec::new();
    let mut copies = 0u32;
    loop {
        let need = m.advance(plan.out_max).map_err(failure)?;
        if !matches!(need, Need::Input(_)) {
            out.append(m.output());
        }
        let i = match need {
            Need::Output => continue,
            Need::Done => return Ok(out),
            Need::Input(i) => i,
            Need::Copy {
                input: i,
                len,
                emit,
            } => {
                assert!(len > 0);
                copies += 1;
                let left = (inputs[i].len() - pos[i]) as u64;
                let mut k = len.min(plan.copy_max).min(left);
                if plan.push_instead > 0 && copies.is_multiple_of(plan.push_instead) {
                    k = 0;
                }
                if k > 0 {
                    let end = pos[i] + k as usize;
                    if emit {
                        out.extend_from_slice(&inputs[i][pos[i]..end]);
                    }
                    pos[i] = end;
                    m.consumed_elsewhere(i, k).map_err(failure)?;
                    continue;
                }
                i
            }
        };
        let end = (pos[i] + plan.push).min(inputs[i].len());
        m.push(i, &inputs[i][pos[i]..end]).map_err(failure)?;
        pos[i] = end;
    }
}

/// A reader that hands out at most `max` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    max: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// `merge_streams` (external payloads, its buffered copier) over readers of
/// at most `max` bytes per read.
fn streams(inputs: &[&[u8]], max: usize) -> Outcome {
    let mut rs: Vec<Trickle<'_>> = inputs.iter().map(|d| Trickle { data: d, max }).collect();
    let mut out = Vec::new();
    let mut last = 0;
    let st = merge_streams(&mut rs, &mut out, &MergeOptions::default(), &mut |n| {
        assert!(n >= last, "progress went back");
        last = n;
    })
    .map_err(failure)?;
    assert_eq!(st.bytes_written, out.len() as u64);
    Ok(out)
}

/// `merge_streams_with` over readers of at most `read_max` bytes per read
/// and a copier that moves at most `max` bytes a call (a `BufCopier` on a
/// reader limited to them).
fn streams_with(inputs: &[&[u8]], read_max: usize, max: u64) -> Outcome {
    let mut rs: Vec<Trickle<'_>> = inputs
        .iter()
        .map(|d| Trickle {
            data: d,
            max: read_max,
        })
        .collect();
    let mut out = Vec::new();
    let mut c = BufCopier::new();
    let mut progress = 0;
    let total: u64 = inputs.iter().map(|d| d.len() as u64).sum();
    let st = merge_streams_with(
        &mut rs,
        &mut out,
        &MergeOptions::default(),
        &mut |n| progress = n,
        &mut |r: &mut Trickle<'_>, w: &mut &mut Vec<u8>, len, emit| {
            c.copy(&mut Read::by_ref(r).take(max), w, len, emit)
        },
    );
    let st = st.map_err(failure)?;
    assert_eq!(st.bytes_written, out.len() as u64);
    assert!(progress <= total);
    Ok(out)
}

/// The external drivers in several shapes (`big`: none that moves a few
/// bytes at a time) all give `want`.
fn check_all(name: &str, inputs: &[&[u8]], want: &Outcome, big: bool) {
    let plans = [
        Plan {
            push: 1 << 20,
            out_max: 1 << 20,
            copy_max: u64::MAX,
            push_instead: 0,
        },
        Plan {
            push: 7,
            out_max: 1 << 16,
            copy_max: u64::MAX,
            push_instead: 0,
        },
        Plan {
            push: 4096,
            out_max: 100,
            copy_max: 5,
            push_instead: 0,
        },
        Plan {
            push: 1000,
            out_max: 1,
            copy_max: 65_536,
            push_instead: 3,
        },
        Plan {
            push: 3,
            out_max: 4096,
            copy_max: 1,
            push_instead: 2,
        },
    ];
    for p in plans {
        if big && p.copy_max < 1000 {
            continue;
        }
        assert_eq!(&external(inputs, p), want, "{name}: {p:?}");
    }
    for max in [1 << 20, 4096, 13] {
        assert_eq!(
            &streams(inputs, max),
            want,
            "{name}: merge_streams, reads of {max}"
        );
    }
    for (read, max) in [(1 << 20, u64::MAX), (4096, 3), (100, 65_536)] {
        if big && max < 1000 {
            continue;
        }
        assert_eq!(
            &streams_with(inputs, read, max),
            want,
            "{name}: merge_streams_with, reads of {read}, copies of {max}"
        );
    }
}

// ------------------------------------------------------------------ corpus

/// Every rbd merge of the corpus: external payloads give rbd's bytes (and
/// the plain path's), every failure the plain path's error, for any sizes.
#[test]
fn corpus_merges_are_the_same_with_external_payloads() {
    for r in corpus() {
        let inputs = [&r.inputs[0][..], &r.inputs[1][..]];
        let want = plain(&inputs, 1 << 20, 1 << 20);
        if let Some(w) = &r.want {
            assert!(
                want.as_ref().is_ok_and(|o| o == w),
                "{}: plain path",
                r.name
            );
        } else {
            // rbd's failures are the plain path's too, except v2 inputs
            // (rbdiff merges them; `--rbd-compat` refuses them)
            assert_eq!(want.is_err(), !r.name.contains("v2"), "{}", r.name);
        }
        assert_eq!(plain(&inputs, 1, 7), want, "{}: plain, tiny pushes", r.name);
        check_all(&r.name, &inputs, &want, false);
    }
}

/// Cut points for truncating `len` bytes: the start, spread offsets, the end.
fn cuts(len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..40.min(len)).collect();
    let step = (len / 60).max(1);
    v.extend((0..len).step_by(step));
    v.extend(len.saturating_sub(30)..len);
    v.sort_unstable();
    v.dedup();
    v
}

/// Every successful corpus merge with either input cut short anywhere: the
/// same error (input, phase, stream offset, message) as the plain path.
#[test]
fn truncated_inputs_fail_where_they_did() {
    for r in corpus().iter().filter(|r| r.want.is_some()) {
        for k in 0..2 {
            for cut in cuts(r.inputs[k].len()) {
                let mut inputs = [&r.inputs[0][..], &r.inputs[1][..]];
                inputs[k] = &inputs[k][..cut];
                let name = format!("{} input {k} cut at {cut}", r.name);
                let want = plain(&inputs, 1 << 20, 1 << 20);
                assert!(want.is_err(), "{name}: a truncated input merged");
                for p in [
                    Plan {
                        push: 64,
                        out_max: 1 << 20,
                        copy_max: u64::MAX,
                        push_instead: 0,
                    },
                    Plan {
                        push: 4096,
                        out_max: 512,
                        copy_max: 100,
                        push_instead: 3,
                    },
                ] {
                    assert_eq!(external(&inputs, p), want, "{name}: {p:?}");
                }
                assert_eq!(streams(&inputs, 777), want, "{name}: merge_streams");
                assert_eq!(
                    streams_with(&inputs, 4096, 1000),
                    want,
                    "{name}: merge_streams_with"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Any push size, output threshold, copy size and mix of copies and
    /// pushes, on any corpus merge, whole or cut: the plain path's outcome.
    #[test]
    fn any_chunking_gives_the_plain_outcome(
        run in 0usize..64,
        push in 1usize..5000,
        out_max in 1usize..70_000,
        copy_max in 1u64..100_000,
        push_instead in 0u32..5,
        cut in proptest::option::of((0usize..2, any::<prop::sample::Index>())),
    ) {
        let runs = corpus();
        let r = &runs[run % runs.len()];
        let mut inputs = [&r.inputs[0][..], &r.inputs[1][..]];
        if let Some((k, at)) = cut {
            inputs[k] = &inputs[k][..at.index(inputs[k].len() + 1)];
        }
        let want = plain(&inputs, 1 << 20, 1 << 20);
        let plan = Plan { push, out_max, copy_max, push_instead };
        prop_assert_eq!(external(&inputs, plan), want, "{} {:?}", r.name, plan);
    }
}

// ------------------------------------------------------------------ big records

/// Pseudo-random bytes.
fn noise(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Two consecutive v1 diffs with multi-MiB records that overlap in every
/// way (covered whole, cut at either end, cut in the middle), so payloads
/// are copied and skipped in pieces larger than any read buffer.
fn big_pair() -> [Vec<u8>; 2] {
    const M: u64 = 1 << 20;
    let mut rng = Rng::new(7);
    let mut w = |o: u64, l: u64| Rec::W(o, noise(&mut rng, l as usize));
    let a = vec![
        w(0, 3 * M),
        w(3 * M + 4096, 2 * M),
        Rec::Z(6 * M, M),
        w(8 * M, 5 * M + 123),
        w(14 * M, 2 * M),
    ];
    let b = vec![
        w(M / 2, M),
        w(3 * M, 3 * M),
        w(9 * M, M + 7),
        Rec::Z(11 * M, 1000),
        w(15 * M, 3 * M),
    ];
    let h = |from: Option<&'static [u8]>, to: &'static [u8], size| DiffHeader {
        from,
        to: Some(to),
        protected: None,
        size: Some(size),
    };
    [
        encode_diff(Format::DiffV1, &h(None, b"s1", 16 * M), &a),
        encode_diff(Format::DiffV1, &h(Some(b"s1"), b"s2", 20 * M), &b),
    ]
}

#[test]
fn big_records_are_the_same_with_external_payloads() {
    let [a, b] = big_pair();
    let inputs = [&a[..], &b[..]];
    let want = plain(&inputs, 1 << 20, 1 << 20);
    assert!(want.is_ok(), "{want:?}");
    assert_eq!(plain(&inputs, 4099, 1 << 16), want);
    check_all("big", &inputs, &want, true);
    // Cut inside payloads that are copied, skipped, and between records.
    for k in 0..2 {
        for cut in [13, 40, 41, 1 << 20, 5 << 20, 9 << 20, inputs[k].len() - 1] {
            let mut t = inputs;
            t[k] = &t[k][..cut.min(t[k].len() - 1)];
            let want = plain(&t, 1 << 20, 1 << 20);
            assert!(want.is_err());
            assert_eq!(streams(&t, 1 << 20), want, "input {k} cut at {cut}");
            assert_eq!(
                external(
                    &t,
                    Plan {
                        push: 1 << 20,
                        out_max: 1 << 20,
                        copy_max: u64::MAX,
                        push_instead: 0
                    }
                ),
                want,
                "input {k} cut at {cut}"
            );
        }
    }
}

/// Copier errors keep their side: a read failure is the input's (in its
/// payload), a write failure the output's.
#[test]
fn copier_errors_name_their_side() {
    let [a, b] = big_pair();
    for (read_fails, want_phase) in [(true, Phase::Data), (false, Phase::Output)] {
        let mut rs = [&a[..], &b[..]];
        let e = merge_streams_with(
            &mut rs,
            io::sink(),
            &MergeOptions::default(),
            &mut |_| {},
            &mut |_, _, _, emit| {
                let e = io::Error::other("boom");
                Err(match (read_fails, emit) {
                    (true, _) => CopyError::Read(e),
                    (false, true) => CopyError::Write(e),
                    (false, false) => return Ok(0),
                })
            },
        )
        .unwrap_err();
        assert_eq!(e.phase, want_phase);
        assert!(matches!(e.kind, MergeErrorKind::Io(_)), "{e}");
        assert_eq!(e.input.is_some(), read_fails);
    }
}

// ------------------------------------------------------------------ the CLI

/// Runs `rbdiff ARGS` with `env`, stdin from `stdin` (or none), stdout to
/// `stdout` (or captured).
fn run_with(
    c: &cli_common::Cli,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&std::path::Path>,
    stdout: Option<std::fs::File>,
) -> cli_common::Out {
    let mut cmd = c.command_env(args, env);
    cmd.stdin(match stdin {
        Some(p) => std::process::Stdio::from(std::fs::File::open(p).unwrap()),
        None => std::process::Stdio::null(),
    });
    if let Some(f) = stdout {
        cmd.stdout(f);
    }
    cmd.output().expect("spawn").into()
}

fn cli_big_merges(c: &cli_common::Cli) {
    let [a, b] = big_pair();
    let want = plain(&[&a[..], &b[..]], 1 << 20, 1 << 20).unwrap();
    c.write("a.diff", &a);
    c.write("b.diff", &b);
    // Plain reads and writes, and copy_file_range (native Linux).
    for env in [&[][..], &[("RBDIFF_COPY_FILE_RANGE", "1")][..]] {
        let run = |args: &[&str], stdin: Option<&str>| {
            run_with(c, args, env, stdin.map(|p| c.path(p)).as_deref(), None)
        };
        let ok = |args: &[&str]| {
            let o = run(args, None);
            assert_eq!(o.code, 0, "{args:?} {env:?}: {}", o.stderr);
            o
        };
        // Files in and out, stdout, stdin, --rbd-compat (the banner read ahead).
        let _ = std::fs::remove_file(c.path("o1.diff"));
        ok(&["merge-diff", "--no-progress", "a.diff", "b.diff", "o1.diff"]);
        assert!(c.read("o1.diff") == want, "{env:?}: file output differs");
        let o = ok(&["merge-diff", "--no-progress", "a.diff", "b.diff", "-"]);
        assert!(o.stdout == want, "{env:?}: stdout output differs");
        let o = ok(&[
            "merge-diff",
            "--no-progress",
            "--rbd-compat",
            "a.diff",
            "b.diff",
            "-",
        ]);
        assert!(o.stdout == want, "{env:?}: --rbd-compat output differs");
        let _ = std::fs::remove_file(c.path("o2.diff"));
        let o = run(
            &["merge-diff", "--no-progress", "a.diff", "-", "o2.diff"],
            Some("b.diff"),
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(c.read("o2.diff") == want, "{env:?}: stdin merge differs");
        // stdout redirected to a file (kernel copies when asked for), and to
        // one opened for appending (where copy_file_range refuses).
        for append in [false, true] {
            let p = c.path("redirected.diff");
            std::fs::write(&p, b"x").unwrap();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .append(append)
                .open(&p)
                .unwrap();
            let o = run_with(
                c,
                &["merge-diff", "--no-progress", "a.diff", "b.diff", "-"],
                env,
                None,
                Some(f),
            );
            assert_eq!(o.code, 0, "{env:?} append {append}: {}", o.stderr);
            let mut expect = if append { b"x".to_vec() } else { Vec::new() };
            expect.extend_from_slice(&want);
            assert!(
                std::fs::read(&p).unwrap() == expect,
                "{env:?}: stdout redirected (append: {append}) differs"
            );
        }
        // Truncated inside copied and skipped payloads: rbd's error, the same
        // from a file (seek, kernel copy) as from stdin (read), no output.
        for (k, cut) in [(0, 2 << 20), (0, 9 << 20), (1, 4 << 20), (1, 7 << 20)] {
            let (name, data) = if k == 0 { ("a", &a) } else { ("b", &b) };
            let t = format!("{name}.cut.diff");
            c.write(&t, &data[..cut]);
            let mut args = vec!["merge-diff", "--no-progress", "a.diff", "b.diff", "o.diff"];
            args[2 + k] = &t;
            let from_file = run(&args, None);
            assert_eq!(from_file.code, 33, "{t} {env:?}: {}", from_file.stderr);
            assert!(
                from_file.stderr.contains("rbd: failed to merge diff chunk"),
                "{t} {env:?}: {}",
                from_file.stderr
            );
            assert!(!c.path("o.diff").exists(), "{t}: output left behind");
            args[2 + k] = "-";
            let from_stdin = run(&args, Some(&t));
            // The same, but for the input's name in rbdiff's stream-offset line.
            assert_eq!(
                (from_stdin.code, &from_stdin.stderr),
                (
                    from_file.code,
                    &from_file
                        .stderr
                        .replace(&format!(" diff {t}: "), " diff -: ")
                ),
                "{t} {env:?}"
            );
            // rbd's lines, then rbdiff's with the stream offset (issue 14).
            let (rbd_lines, ours) = from_file
                .stderr
                .trim_end()
                .rsplit_once('\n')
                .expect("two or more lines");
            assert!(
                ours.starts_with(&format!("rbdiff: {} diff {t}: ", ["first", "second"][k]))
                    && ours.contains(" at stream offset "),
                "{t} {env:?}: {ours}"
            );
            let rbd_compat = run(
                &[
                    "merge-diff",
                    "--no-progress",
                    "--rbd-compat",
                    if k == 0 { &t } else { "a.diff" },
                    if k == 1 { &t } else { "b.diff" },
                    "o.diff",
                ],
                None,
            );
            assert_eq!(
                (rbd_compat.code, rbd_compat.stderr.trim_end()),
                (from_file.code, rbd_lines),
                "{t} {env:?} --rbd-compat"
            );
        }
    }
}

both!(cli_big_merges);

// ------------------------------------------------------------------ misuse

#[test]
fn skip_payload_accounts_only_payload() {
    let [a, _] = big_pair();
    let mut d = Decoder::new(Config::new());
    // Nothing to skip before or between records.
    assert_eq!(d.skip_payload(5), 0);
    assert_eq!(d.skip_payload(u64::MAX), 0);
    let mut pos = 0usize;
    let next = |d: &mut Decoder, pos: &mut usize| loop {
        match d.decode(&a[*pos..], true).unwrap() {
            Step::Event {
                consumed, event, ..
            } => {
                *pos += consumed;
                if !matches!(event, Event::Warning(_)) {
                    return format!("{event:?}");
                }
            }
            s => return format!("{s:?}"),
        }
    };
    assert!(next(&mut d, &mut pos).starts_with("Banner"));
    assert_eq!(d.skip_payload(1), 0, "inside the header");
    assert!(next(&mut d, &mut pos).starts_with("ToSnap"));
    assert!(next(&mut d, &mut pos).starts_with("Size"));
    assert!(next(&mut d, &mut pos).starts_with("Write"));
    assert!(d.in_data());
    let at = d.position();
    assert_eq!(d.skip_payload(0), 0);
    assert_eq!(d.skip_payload(1000), 1000);
    assert_eq!(d.position(), at + 1000);
    pos += 1000;
    // The decoder goes on with the right image offset…
    match d.decode(&a[pos..pos + 10], false).unwrap() {
        Step::Event {
            event: Event::Data { offset, bytes },
            ..
        } => assert_eq!((offset, bytes.len()), (1000, 10)),
        s => panic!("{s:?}"),
    }
    pos += 10;
    // … and accounts at most what is left, then reads the next record.
    let left = (3 << 20) - 1010;
    assert_eq!(d.skip_payload(u64::MAX), left);
    pos += left as usize;
    assert!(!d.in_data());
    assert_eq!(d.position(), pos as u64);
    assert_eq!(d.skip_payload(1), 0);
    assert!(next(&mut d, &mut pos).starts_with("Write { offset: 3149824"));
    // After an error: nothing.
    let mut d = Decoder::new(Config::new());
    let cut = &a[..60];
    let mut p = 0;
    let err = loop {
        match d.decode(&cut[p..], true) {
            Ok(Step::Event { consumed, .. }) => p += consumed,
            Ok(s) => panic!("{s:?}"),
            Err(e) => break e,
        }
    };
    assert!(matches!(
        err.kind,
        ErrorKind::UnexpectedEof {
            expected: Expected::WriteData,
            ..
        }
    ));
    assert_eq!(d.skip_payload(10), 0);
    assert_eq!(d.decode(&[], true), Err(err));
}

#[test]
fn data_elsewhere_checks_the_declared_length() {
    let mut e = Encoder::diff(Vec::new(), Format::DiffV1).unwrap();
    // Outside a `w`: refused, nothing counted.
    assert_eq!(
        e.data_elsewhere(1),
        Err(EncodeError::Misuse(Misuse::DataLength {
            expected: 0,
            got: 1
        }))
    );
    assert_eq!(e.data_elsewhere(0), Ok(()));
    e.size(100).unwrap();
    e.begin_write(10, 50).unwrap();
    let at = e.position();
    assert_eq!(
        e.data_elsewhere(u64::MAX),
        Err(EncodeError::Misuse(Misuse::DataLength {
            expected: 50,
            got: u64::MAX
        }))
    );
    assert_eq!(e.position(), at);
    e.data(&[1; 20]).unwrap();
    e.data_elsewhere(25).unwrap();
    assert_eq!(e.position(), at + 45);
    // Not finished: the record still wants 5 bytes.
    assert!(e.end_diff().is_err());
    assert!(e.data_elsewhere(6).is_err());
    e.data_elsewhere(5).unwrap();
    e.end_diff().unwrap();
    assert!(e.data_elsewhere(1).is_err());
    let out = e.finish().unwrap();
    // The sink holds everything but the 30 bytes written elsewhere.
    assert_eq!(out.len() as u64 + 30, at + 50 + 1);
}

#[test]
fn consumed_elsewhere_refuses_misuse() {
    let [a, b] = big_pair();
    let usage = |r: Result<(), MergeStreamError>| match r {
        Err(e) => assert!(matches!(e.kind, MergeErrorKind::Usage(_)), "{e}"),
        Ok(()) => panic!("misuse accepted"),
    };
    // Before anything, and on an input out of range.
    let mut m = PushMerge::new(2, Format::DiffV1);
    m.set_external_payloads(true);
    usage(m.consumed_elsewhere(0, 1));
    let mut m = PushMerge::new(2, Format::DiffV1);
    m.set_external_payloads(true);
    usage(m.consumed_elsewhere(9, 1));

    // Drive to the first Need::Copy.
    let start = || {
        let mut m = PushMerge::new(2, Format::DiffV1);
        m.set_external_payloads(true);
        let mut pos = [0usize; 2];
        let ins = [&a[..], &b[..]];
        loop {
            match m.advance(1 << 20).unwrap() {
                Need::Input(i) => {
                    let end = (pos[i] + 4096).min(ins[i].len());
                    m.push(i, &ins[i][pos[i]..end]).unwrap();
                    pos[i] = end;
                }
                Need::Output => m.output().clear(),
                Need::Copy { input, len, emit } => return (m, input, len, emit),
                Need::Done => panic!("no copy"),
            }
        }
    };
    let (mut m, i, len, emit) = start();
    assert!(emit, "the first copy writes");
    // Output not taken (the record header is buffered).
    usage(m.consumed_elsewhere(i, 1));
    // Sticky.
    assert!(m.advance(1 << 20).is_err());
    assert!(m.consumed_elsewhere(i, 0).is_err());

    let (mut m, i, len2, _) = start();
    assert_eq!(len, len2);
    m.output().clear();
    usage(m.consumed_elsewhere(i, len + 1));
    let (mut m, i, _, _) = start();
    m.output().clear();
    usage(m.consumed_elsewhere(1 - i, 1));
    let (mut m, i, _, _) = start();
    m.output().clear();
    m.push(i, &[0; 3]).unwrap();
    usage(m.consumed_elsewhere(i, 1));
    let (mut m, i, _, _) = start();
    m.output().clear();
    m.push(i, &[]).unwrap();
    usage(m.consumed_elsewhere(i, 1));
    // Zero bytes and exact use are fine; the merge asks again for the rest.
    let (mut m, i, len, _) = start();
    m.output().clear();
    m.consumed_elsewhere(i, 0).unwrap();
    m.consumed_elsewhere(i, 10).unwrap();
    assert_eq!(
        m.advance(1 << 20).unwrap(),
        Need::Copy {
            input: i,
            len: len - 10,
            emit: true
        }
    );
    // pull() maps a copy to "push this input".
    let (mut m, i, _, _) = start();
    let s = m.pull(1 << 20).unwrap();
    assert_eq!(s.need_input, Some(i));
    assert!(!s.done);
}
