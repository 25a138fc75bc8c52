//! Store object maps (issue 16): exact under every write path, never
//! under-reporting when an import is killed, a foreign write to `head`
//! detected (invalid -> fallback -> rebuild), and the outputs of export-diff,
//! diff and export identical with and without the maps, on the corpus and
//! on random workloads; natively and under wasmtime.
#![allow(clippy::cast_possible_truncation)] // test code, 64-bit hosts only

mod cli_common;

use cli_common::{Cli, Out, Runner, noise, snaps};
use rbdiff::{DiffHeader, Encoder, Format};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const NO_MAP: (&str, &str) = ("RBDIFF_NO_OBJECT_MAP", "1");
const FALLBACK: &str = "comparing contents instead";
/// The reason given for a map an interrupted rbdiff write left.
const INTERRUPTED: &str = "an rbdiff write to it was interrupted";
const EXPORT_A: &[&str] = &[
    "export-diff",
    "--no-progress",
    "--from-snap",
    "a",
    "img",
    "-",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `object-map check --format json`: must pass and be valid.
fn check(c: &Cli, spec: &str) -> Value {
    let o = c.run(&["object-map", "check", "--format", "json", spec]);
    assert_eq!(o.code, 0, "check {spec}: {} {}", o.stderr, o.text());
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["valid"], true, "{spec}: {v}");
    assert!(v["underreport"].is_null(), "{spec}: {v}");
    v
}

fn objects(v: &Value, key: &str) -> BTreeSet<u64> {
    v[key]
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("u64"))
        .collect()
}

/// `object-map check --format json` of a map a killed writer may have left
/// in flight: it must claim at least what the head holds; in flight (not
/// valid, the reason says so) or valid (the kill came before the first
/// write or after the last sync). Returns whether it is valid.
fn check_claims(c: &Cli, spec: &str) -> bool {
    let o = c.run(&["object-map", "check", "--format", "json", spec]);
    assert_eq!(o.code, 0, "check {spec}: {} {}", o.stderr, o.text());
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(v["underreport"].is_null(), "{spec}: {v}");
    let valid = v["valid"] == true;
    assert!(
        valid
            || v["reason"]
                .as_str()
                .is_some_and(|r| r.contains(INTERRUPTED)),
        "{spec}: {v}"
    );
    assert!(
        v["objects"].as_u64().is_some(),
        "{spec}: what it claims is listed: {v}"
    );
    valid
}

/// Write `data` at `at` of an image's head file directly (as a VM would).
fn foreign_write(c: &Cli, img: &str, at: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(c.path(&format!("store/rbd/{img}/head")))
        .expect("head");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(data).expect("write");
}

/// Run `args` with the maps and with content comparison: the same exit,
/// stdout and output file `out`; with the maps the fallback is said once
/// (the map is not valid, for the reason `why`). Returns the output file.
fn same_as_comparison_with_fallback(c: &Cli, args: &[&str], out: &str, why: &str) -> Vec<u8> {
    let get = |env: &[(&str, &str)]| -> (Out, Vec<u8>) {
        let _ = std::fs::remove_file(c.path(out));
        let o = c.run_env(args, env);
        assert_eq!(o.code, 0, "{args:?}: {}", o.stderr);
        (o, c.read(out))
    };
    let (a, fa) = get(&[]);
    let (b, fb) = get(&[NO_MAP]);
    assert_eq!(
        a.stderr.matches(FALLBACK).count(),
        1,
        "{args:?}: {}",
        a.stderr
    );
    assert!(a.stderr.contains(why), "{args:?}: {}", a.stderr);
    assert_eq!(a.stdout, b.stdout, "{args:?}: stdout differs");
    assert!(
        fa == fb,
        "{args:?}: output differs from the content comparison"
    );
    fa
}

/// Run `args` with and without the maps: same exit, same stdout, the same
/// output file when `out` is given (removed between the runs).
fn same_with_and_without_map(c: &Cli, args: &[&str], out: Option<&str>) -> Vec<u8> {
    let get = |env: &[(&str, &str)]| -> (Out, Vec<u8>) {
        if let Some(f) = out {
            let _ = std::fs::remove_file(c.path(f));
        }
        let o = c.run_env(args, env);
        let bytes = out.map(|f| c.read(f)).unwrap_or_default();
        (o, bytes)
    };
    let (a, fa) = get(&[]);
    let (b, fb) = get(&[NO_MAP]);
    assert_eq!(a.code, 0, "{args:?}: {}", a.stderr);
    assert_eq!(b.code, 0, "{args:?}: {}", b.stderr);
    assert!(!a.stderr.contains(FALLBACK), "{args:?}: {}", a.stderr);
    assert_eq!(a.stdout, b.stdout, "{args:?}: stdout differs");
    assert!(fa == fb, "{args:?}: output file differs with the map");
    if out.is_some() { fa } else { a.stdout }
}

fn obj_range(off: u64, len: u64, order: u32) -> std::ops::Range<u64> {
    (off >> order)..(off + len).div_ceil(1 << order)
}

/// A random v1 diff against an image of `size` bytes, applied to `model`;
/// returns the stream and the objects it touches.
fn random_diff(rng: &mut Rng, model: &mut [u8], order: u32) -> (Vec<u8>, BTreeSet<u64>) {
    let size = model.len() as u64;
    let mut enc = Encoder::diff(Vec::new(), Format::DiffV1).expect("enc");
    enc.header(&DiffHeader {
        from: None,
        to: None,
        protected: None,
        size: Some(size),
    })
    .expect("hdr");
    let mut touched = BTreeSet::new();
    let mut at = rng.below(size / 4) / 4096 * 4096;
    for _ in 0..1 + rng.below(6) {
        if at >= size {
            break;
        }
        let obj = 1u64 << order;
        if rng.below(4) == 0 {
            // a whole object or two, aligned
            at = at.div_ceil(obj) * obj;
            if at >= size {
                break;
            }
        }
        let len = match at % obj {
            0 => obj * (1 + rng.below(2)),
            _ => 1 + rng.below(3 * obj),
        }
        .min(size - at);
        let (s, e) = (at as usize, (at + len) as usize);
        if rng.below(3) == 0 {
            enc.zero(at, len).expect("z");
            model[s..e].fill(0);
        } else {
            let data = noise(e - s, rng.next());
            enc.write(at, &data).expect("w");
            model[s..e].copy_from_slice(&data);
        }
        touched.extend(obj_range(at, len, order));
        at += len + rng.below(size / 3) / 4096 * 4096;
    }
    enc.end_diff().expect("e");
    (enc.finish().expect("finish"), touched)
}

/// The point specs of `img`: every snapshot, then HEAD.
fn points(c: &Cli, img: &str) -> Vec<String> {
    let mut v: Vec<String> = snaps(c, img).iter().map(|s| format!("{img}@{s}")).collect();
    v.push(img.to_string());
    v
}

/// Diffs between random points of `img` (precise and whole-object), with
/// and without the maps.
fn compare_outputs(c: &Cli, rng: &mut Rng, img: &str, k: usize) {
    let pts = points(c, img);
    let ti = rng.below(pts.len() as u64) as usize;
    let to = &pts[ti];
    let from = (ti > 0 && rng.below(3) != 0).then(|| {
        let fi = rng.below(ti as u64) as usize;
        pts[fi].split_once('@').expect("snap").1.to_string()
    });
    let mut args = vec!["export-diff", "--no-progress"];
    if let Some(f) = &from {
        args.extend(["--from-snap", f]);
    }
    if rng.below(2) == 0 {
        args.push("--whole-object");
    }
    let out = format!("cmp{k}.diff");
    args.extend([to.as_str(), out.as_str()]);
    same_with_and_without_map(c, &args, Some(&out));
    let mut d = vec!["diff", "--format", "json"];
    if let Some(f) = &from {
        d.extend(["--from-snap", f]);
    }
    d.push(to);
    same_with_and_without_map(c, &d, None);
}

/// What each point's map may claim as written since the previous snapshot:
/// the objects touched in between (HEAD last).
struct Touched(Vec<BTreeSet<u64>>);

fn maps_follow_every_write_path(c: &Cli) {
    let order = 16;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    c.ok(&["create", "--size", "8M", "--order", "16", "img"]);
    let mut head = vec![0u8; 8 << 20];
    let mut snap_data: Vec<(String, Vec<u8>)> = Vec::new();
    let mut touched = Touched(vec![BTreeSet::new()]);
    let ops = if c.runner == Runner::Native { 40 } else { 14 };
    let mut next_snap = 0;
    for k in 0..ops {
        match rng.below(10) {
            0..=4 => {
                let (diff, t) = random_diff(&mut rng, &mut head, order);
                c.write("op.diff", &diff);
                c.ok(&["import-diff", "--no-progress", "op.diff", "img"]);
                touched.0.last_mut().expect("head").extend(t);
            }
            5 | 6 => {
                let name = format!("s{next_snap}");
                next_snap += 1;
                c.ok(&["snap", "create", &format!("img@{name}")]);
                snap_data.push((name, head.clone()));
                touched.0.push(BTreeSet::new());
            }
            7 if !snap_data.is_empty() => {
                let i = rng.below(snap_data.len() as u64) as usize;
                let (name, _) = snap_data.remove(i);
                c.ok(&["snap", "rm", &format!("img@{name}")]);
                let gone = touched.0.remove(i);
                touched.0[i].extend(gone);
            }
            8 if !snap_data.is_empty() => {
                let i = rng.below(snap_data.len() as u64) as usize;
                c.ok(&["snap", "rollback", &format!("img@{}", snap_data[i].0)]);
                head = snap_data[i].1.clone();
                let since: BTreeSet<u64> = touched.0[i + 1..].iter().flatten().copied().collect();
                *touched.0.last_mut().expect("head") = since;
            }
            _ => {
                let mib = 4 + rng.below(9);
                let size = format!("{mib}M");
                c.ok(&["resize", "--allow-shrink", "--size", &size, "img"]);
                // Objects a shrink drops changed (their data is gone).
                let old = (head.len() >> order) as u64;
                touched.0.last_mut().expect("head").extend(mib << 4..old);
                head.resize((mib << 20) as usize, 0);
            }
        }
        assert!(
            c.read("store/rbd/img/head") == head,
            "head content after op {k}"
        );
        // HEAD's map, and a random snapshot's: exact bounds.
        let pts = points(c, "img");
        let mut look = vec![pts.len() - 1];
        if pts.len() > 1 {
            look.push(rng.below(pts.len() as u64 - 1) as usize);
        }
        for i in look {
            let v = check(c, &pts[i]);
            let written = objects(&v, "written");
            assert!(
                written.is_subset(&touched.0[i]),
                "op {k}: {} claims written {written:?}, touched {:?}",
                pts[i],
                touched.0[i]
            );
        }
        compare_outputs(c, &mut rng, "img", k);
    }
    for p in points(c, "img") {
        check(c, &p);
    }
    let v2 = same_with_and_without_map(
        c,
        &[
            "export",
            "--no-progress",
            "--export-format",
            "2",
            "img",
            "all.v2",
        ],
        Some("all.v2"),
    );
    assert!(!v2.is_empty());
    let raw = same_with_and_without_map(
        c,
        &["export", "--no-progress", "img", "head.raw"],
        Some("head.raw"),
    );
    assert!(raw == head, "export of HEAD");
}

fn corpus_outputs_match(c: &Cli) {
    for case in ["basic-64k", "discard-zero", "grow", "shrink", "empty"] {
        let img = case.replace('-', "_");
        c.ok(&[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            &c.fx(&format!("{case}/export/image.v2")),
            &img,
        ]);
        let pts = points(c, &img);
        for p in &pts {
            check(c, p);
        }
        for (ti, to) in pts.iter().enumerate() {
            let froms = std::iter::once(None).chain(
                pts[..ti]
                    .iter()
                    .map(|p| Some(p.split_once('@').expect("snap").1)),
            );
            for (j, from) in froms.enumerate() {
                for whole in [false, true] {
                    let out = format!("{img}-{ti}-{j}-{whole}.diff");
                    let mut args = vec!["export-diff", "--no-progress"];
                    if let Some(f) = from {
                        args.extend(["--from-snap", f]);
                    }
                    if whole {
                        args.push("--whole-object");
                    }
                    args.extend([to.as_str(), out.as_str()]);
                    same_with_and_without_map(c, &args, Some(&out));
                }
            }
        }
        let out = format!("{img}.v2");
        same_with_and_without_map(
            c,
            &[
                "export",
                "--no-progress",
                "--export-format",
                "2",
                &img,
                &out,
            ],
            Some(&out),
        );
    }
}

fn foreign_write_is_detected(c: &Cli) {
    c.ok(&["create", "--size", "4M", "--order", "16", "img"]);
    let mut model = vec![0u8; 4 << 20];
    let mut rng = Rng(7);
    let (d, _) = random_diff(&mut rng, &mut model, 16);
    c.write("a.diff", &d);
    c.ok(&["import-diff", "--no-progress", "a.diff", "img"]);
    c.ok(&["snap", "create", "img@a"]);
    let flags = |c: &Cli| {
        let t = c.ok(&["info", "img"]).text();
        t.lines()
            .find(|l| l.trim_start().starts_with("flags:"))
            .expect("flags line")
            .trim()
            .to_string()
    };
    assert_eq!(flags(c), "flags:");
    // Another program writes the head directly (as a VM would).
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(c.path("store/rbd/img/head"))
            .expect("head");
        f.seek(SeekFrom::Start(3 << 20)).expect("seek");
        f.write_all(&noise(5000, 3)).expect("write");
    }
    assert_eq!(flags(c), "flags: object map invalid, fast diff invalid");
    let want = c.run_env(EXPORT_A, &[NO_MAP]).stdout;
    let o = c.ok(EXPORT_A);
    assert_eq!(o.stderr.matches(FALLBACK).count(), 1, "{}", o.stderr);
    assert!(
        o.stderr.contains("object-map rebuild rbd/img"),
        "{}",
        o.stderr
    );
    assert!(o.stdout == want, "fallback output");
    assert!(!want.is_empty());
    // An rbdiff write does not make the map valid again.
    c.ok(&["import-diff", "--no-progress", "a.diff", "img"]);
    assert_eq!(flags(c), "flags: object map invalid, fast diff invalid");
    let o = c.run(&["object-map", "check", "--format", "json", "img"]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["valid"], false, "{v}");
    c.ok(&["object-map", "rebuild", "img"]);
    assert_eq!(flags(c), "flags:");
    let v = check(c, "img");
    assert!(objects(&v, "written").contains(&((3 << 20) >> 16)), "{v}");
    let o = c.ok(EXPORT_A);
    assert!(!o.stderr.contains(FALLBACK), "{}", o.stderr);
    let want = c.run_env(EXPORT_A, &[NO_MAP]).stdout;
    assert!(o.stdout == want, "after rebuild");
    // A snapshot written outside rbdiff: its map and the next one's.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(c.path("store/rbd/img/snap-1"))
            .expect("snap");
        f.write_all(b"").expect("touch");
        f.set_modified(std::time::SystemTime::now()).expect("mtime");
    }
    let t = c.ok(&["info", "img@a"]).text();
    assert!(t.contains("flags: object map invalid"), "{t}");
    c.ok(&["object-map", "rebuild", "img@a"]);
    check(c, "img@a");
    check(c, "img");
}

/// Kill an import at random points: the map never claims less than the
/// head holds.
fn killed_import_never_underreports(c: &Cli) {
    let order = 20;
    let size: u64 = 96 << 20;
    let mut model = vec![0u8; size as usize];
    let mut enc = Encoder::diff(Vec::new(), Format::DiffV1).expect("enc");
    enc.header(&DiffHeader {
        from: None,
        to: None,
        protected: None,
        size: Some(size),
    })
    .expect("hdr");
    let mut at = 0u64;
    let mut k = 1u64;
    while at < size {
        let len = (1u64 << order) / 2 + (k * 7919) % (1 << order);
        let len = len.min(size - at);
        let data = noise(len as usize, k);
        enc.write(at, &data).expect("w");
        model[at as usize..(at + len) as usize].copy_from_slice(&data);
        at += len + (k * 104_729) % (3 << order);
        k += 1;
    }
    enc.end_diff().expect("e");
    c.write("big.diff", &enc.finish().expect("finish"));
    c.ok(&["create", "--size", "96M", "--order", "20", "probe"]);
    let t = Instant::now();
    c.ok(&["import-diff", "--no-progress", "big.diff", "probe"]);
    let full = t.elapsed();
    assert!(c.read("store/rbd/probe/head") == model);
    check(c, "probe");
    let mut rng = Rng(u64::from(std::process::id()) | 1);
    let kills = if c.runner == Runner::Native { 5 } else { 3 };
    for i in 0..kills {
        let img = format!("kill{i}");
        c.ok(&["create", "--size", "96M", "--order", "20", &img]);
        c.ok(&["snap", "create", &format!("{img}@empty")]);
        let frac = 0.05 + (rng.below(1000) as f64) / 1000.0 * 0.9;
        let mut child = c
            .command(&["import-diff", "--no-progress", "big.diff", &img])
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_secs_f64(full.as_secs_f64() * frac));
        let _ = child.kill();
        let _ = child.wait();
        let valid = check_claims(c, &img);
        // A diff from the snapshot sees everything the killed run wrote:
        // the map left in flight is not used (content comparison, said
        // once) until it is rebuilt.
        let out = format!("k{i}.diff");
        let args = [
            "export-diff",
            "--no-progress",
            "--from-snap",
            "empty",
            &img,
            &out,
        ];
        if !valid {
            same_as_comparison_with_fallback(c, &args, &out, INTERRUPTED);
            c.ok(&["object-map", "rebuild", &img]);
        }
        check(c, &img);
        same_with_and_without_map(c, &args, Some(&out));
    }
}

/// A writer killed with its map in flight, then another program writes
/// `head` where that map claims nothing: no later command trusts the map
/// (it would miss the write), the next rbdiff write included, until
/// `object-map rebuild`.
fn crash_then_foreign_write(c: &Cli) {
    let order = 20;
    c.ok(&["create", "--size", "128M", "--order", "20", "img"]);
    c.ok(&["snap", "create", "img@a"]);
    // An import-diff from a pipe that is never closed: it writes the first
    // extents (objects 0..4, the map marked in flight first) and waits.
    let mut stream = b"rbd diff v1\n".to_vec();
    for k in 0..4u64 {
        stream.push(b'w');
        stream.extend_from_slice(&(k << order).to_le_bytes());
        stream.extend_from_slice(&(1u64 << order).to_le_bytes());
        stream.extend_from_slice(&noise(1 << order, k + 1));
    }
    let mut child = c
        .command(&["import-diff", "--no-progress", "-", "img"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut pipe = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut pipe, &stream).expect("feed");
    let map = c.path("store/rbd/img/objmap-head");
    let flags = || {
        std::fs::read(&map)
            .ok()
            .map(|b| u32::from_le_bytes(b[12..16].try_into().expect("4")))
    };
    let t = Instant::now();
    while flags() != Some(2) {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the map never went in flight: {:?}",
            flags()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(pipe);
    let v = {
        let o = c.run(&["object-map", "check", "--format", "json", "img"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        serde_json::from_slice::<Value>(&o.stdout).expect("json")
    };
    assert_eq!(v["valid"], false, "{v}");
    let claimed = objects(&v, "written");
    assert!(claimed.contains(&0) && !claimed.contains(&100), "{v}");
    // A VM writes object 100, which the map left in flight does not claim.
    let vm = noise(5000, 99);
    foreign_write(c, "img", (100 << order) + 1234, &vm);
    let o = c.run(&["object-map", "check", "img"]);
    assert_ne!(o.code, 0, "check must see the under-report: {}", o.text());
    assert!(o.stderr.contains("object 100"), "{}", o.stderr);
    let t = c.ok(&["info", "img"]).text();
    assert!(
        t.contains("flags: object map invalid, fast diff invalid"),
        "{t}"
    );
    let args = [
        "export-diff",
        "--no-progress",
        "--from-snap",
        "a",
        "img",
        "o.diff",
    ];
    let d = same_as_comparison_with_fallback(c, &args, "o.diff", INTERRUPTED);
    assert!(
        d.windows(vm.len()).any(|w| w == vm),
        "the VM's write is in the diff"
    );
    let whole = [
        "export-diff",
        "--no-progress",
        "--whole-object",
        "img",
        "w.diff",
    ];
    same_as_comparison_with_fallback(c, &whole, "w.diff", INTERRUPTED);
    // The next rbdiff write (a resumed import would be one) does not make
    // it valid again: nothing tells the VM's write from the killed run's.
    let mut small = b"rbd diff v1\nw".to_vec();
    small.extend_from_slice(&(5u64 << order).to_le_bytes());
    small.extend_from_slice(&4096u64.to_le_bytes());
    small.extend_from_slice(&noise(4096, 5));
    small.push(b'e');
    c.write("small.diff", &small);
    c.ok(&["import-diff", "--no-progress", "small.diff", "img"]);
    same_as_comparison_with_fallback(c, &args, "o.diff", "marked invalid");
    c.ok(&["object-map", "rebuild", "img"]);
    let v = check(c, "img");
    assert!(objects(&v, "written").contains(&100), "{v}");
    let d = same_with_and_without_map(c, &args, Some("o.diff"));
    assert!(
        d.windows(vm.len()).any(|w| w == vm),
        "the VM's write is in the diff"
    );
}

/// `import` from a file and from stdin (the image grows as it is read): the
/// maps name exactly the objects holding data.
fn import_keeps_maps_exact(c: &Cli) {
    let obj = 1usize << 16;
    let mut raw = vec![0u8; 40 * obj + 1234];
    for k in [0usize, 3, 4, 17, 39, 40] {
        let at = k * obj + (k * 977) % 1000;
        let end = (at + 5000).min(raw.len());
        raw[at..end].copy_from_slice(&noise(end - at, k as u64 + 1));
    }
    let want: BTreeSet<u64> = [0, 3, 4, 17, 39, 40].into_iter().collect();
    c.write("d.raw", &raw);
    c.ok(&["import", "--no-progress", "--order", "16", "d.raw", "f"]);
    let o = c
        .command(&["import", "--no-progress", "--order", "16", "-", "p"])
        .stdin(std::fs::File::open(c.path("d.raw")).expect("raw"))
        .output()
        .expect("spawn");
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for img in ["f", "p"] {
        let v = check(c, img);
        assert_eq!(objects(&v, "exists"), want, "{img}: {v}");
        assert_eq!(objects(&v, "written"), want, "{img}: {v}");
    }
}

both!(
    import_keeps_maps_exact,
    maps_follow_every_write_path,
    corpus_outputs_match,
    foreign_write_is_detected,
    killed_import_never_underreports,
    crash_then_foreign_write,
);
