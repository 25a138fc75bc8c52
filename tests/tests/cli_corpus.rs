//! The CLI on the real-rbd corpus, natively and under wasmtime.

mod cli_common;

use cli_common::{
    Cli, IMAGE_CASES, fixtures, image_of, manifest, recorded_sha, sha256, sha256_file,
};
use serde_json::Value;
use std::collections::BTreeSet;

/// Raw content of point `p` ("0" = empty) of `case` as a scratch file `rel`
/// (built once per point with `import-diff`, then copied).
fn materialize(c: &Cli, case: &str, p: &str, rel: &str) {
    let cache = format!("cache/{case}/{p}.raw");
    if !c.path(&cache).exists() {
        build_point(c, case, p, &cache);
    }
    std::fs::copy(c.path(&cache), c.path(rel)).expect("copy");
}

fn build_point(c: &Cli, case: &str, p: &str, rel: &str) {
    c.write(rel, b"");
    if p == "0" {
        return;
    }
    let stored = fixtures().join(case).join(format!("raw/{p}.raw"));
    if stored.exists() {
        std::fs::copy(&stored, c.path(rel)).expect("copy raw");
    } else {
        c.ok(&[
            "import-diff",
            "--no-progress",
            &c.fx(&format!("{case}/diff/0..{p}.diff")),
            &format!("./{rel}"),
        ]);
    }
}

/// Every `apply` relationship: base + diff through `import-diff` on a raw file.
fn apply_relationships(c: &Cli) {
    let mut n = 0;
    for case in IMAGE_CASES {
        let m = manifest(case);
        for r in m["relationships"].as_array().expect("relationships") {
            if r["kind"] != "apply" {
                continue;
            }
            let base = r["base"].as_str().expect("base");
            let p = if base == "zeros" {
                "0".to_string()
            } else {
                base.trim_start_matches("raw/")
                    .trim_end_matches(".raw")
                    .to_string()
            };
            let diff = r["diff"].as_str().expect("diff");
            if !fixtures().join(case).join(diff).exists() {
                continue; // large whole-object diffs are not stored
            }
            materialize(c, case, &p, "work.raw");
            c.ok(&[
                "import-diff",
                "--no-progress",
                &c.fx(&format!("{case}/{diff}")),
                "./work.raw",
            ]);
            assert_eq!(
                sha256_file(&c.path("work.raw")),
                r["result_sha256"].as_str().expect("sha"),
                "{case}: {base} + {diff}"
            );
            n += 1;
        }
    }
    assert!(n >= 50, "only {n} apply relationships");
}

fn points(snaps: &[String]) -> Vec<String> {
    let mut v = vec!["0".to_string()];
    v.extend(snaps.iter().cloned());
    v.push("head".into());
    v
}

fn spec_at(img: &str, p: &str) -> String {
    if p == "head" {
        img.to_string()
    } else {
        format!("{img}@{p}")
    }
}

fn records_of(m: &Value, rel: &str) -> Option<Vec<(String, u64, u64)>> {
    for k in ["files", "unstored_files"] {
        if let Some(r) = m[k][rel]["diff"]["records"].as_array() {
            return Some(
                r.iter()
                    .map(|x| {
                        (
                            x[0].as_str().expect("tag").to_string(),
                            x[1].as_u64().expect("off"),
                            x[2].as_u64().expect("len"),
                        )
                    })
                    .collect(),
            );
        }
    }
    None
}

/// Objects whose content differs between `from` and `to`, as whole-object records.
fn changed_objects(from: &[u8], to: &[u8], os: u64) -> Vec<(String, u64, u64)> {
    let os = usize::try_from(os).expect("object size");
    let mut v = Vec::new();
    let mut start = 0usize;
    while start < to.len() {
        let end = (start + os).min(to.len());
        let t = &to[start..end];
        let f: Vec<u8> = (start..end)
            .map(|i| from.get(i).copied().unwrap_or(0))
            .collect();
        if t != f.as_slice() {
            let tag = if t.iter().all(|&b| b == 0) { "z" } else { "w" };
            v.push((tag.to_string(), start as u64, (end - start) as u64));
        }
        start = end;
    }
    v
}

/// Import each case's chain into the store; every snapshot matches rbd's
/// raw export; export-diff of every pair re-applies to the target;
/// --whole-object equals rbd's bytes wherever rbd's objects are exactly the
/// changed ones.
fn store_chain_and_export_diff(c: &Cli) {
    let mut whole_same = 0;
    let mut pairs = 0;
    for case in IMAGE_CASES {
        let m = manifest(case);
        let (name, os, snaps) = image_of(&m);
        let img = format!("rbd/{name}");
        c.ok(&[
            "create",
            "--size",
            "0",
            "--object-size",
            &format!("{os}B"),
            &img,
        ]);
        let pts = points(&snaps);
        for w in pts.windows(2) {
            c.ok(&[
                "import-diff",
                "--no-progress",
                &c.fx(&format!("{case}/diff/{}..{}.diff", w[0], w[1])),
                &img,
            ]);
        }
        let ls = c.ok(&["snap", "ls", "--format", "json", &img]).text();
        let names: Vec<String> = serde_json::from_str::<Value>(&ls)
            .expect("json")
            .as_array()
            .expect("arr")
            .iter()
            .map(|s| s["name"].as_str().expect("name").to_string())
            .collect();
        assert_eq!(names, snaps, "{case}: snapshots");
        let mut content = std::collections::HashMap::new();
        for p in &pts[1..] {
            let data = c
                .ok(&["export", "--no-progress", &spec_at(&img, p), "-"])
                .stdout;
            assert_eq!(
                Some(sha256(&data)),
                recorded_sha(&m, &format!("raw/{p}.raw")),
                "{case}@{p}"
            );
            content.insert(p.clone(), data);
        }
        content.insert("0".to_string(), Vec::new());
        for (i, f) in pts.iter().enumerate() {
            for t in &pts[i + 1..] {
                pairs += 1;
                let out = format!("{f}..{t}.diff");
                let mut args = vec!["export-diff", "--no-progress"];
                if f != "0" {
                    args.extend(["--from-snap", f.as_str()]);
                }
                let st = spec_at(&img, t);
                args.push(&st);
                args.push(&out);
                c.ok(&args);
                materialize(c, case, f, "base.raw");
                c.ok(&["import-diff", "--no-progress", &out, "./base.raw"]);
                assert_eq!(
                    Some(sha256_file(&c.path("base.raw"))),
                    recorded_sha(&m, &format!("raw/{t}.raw")),
                    "{case}: export-diff {f}..{t} re-applied"
                );
                // whole-object
                let rel = format!("diff/{f}..{t}.whole.diff");
                let Some(rbd_recs) = records_of(&m, &rel) else {
                    continue;
                };
                let wout = format!("{f}..{t}.whole.diff");
                let mut wargs = vec!["export-diff", "--no-progress", "--whole-object"];
                if f != "0" {
                    wargs.extend(["--from-snap", f.as_str()]);
                }
                wargs.push(&st);
                wargs.push(&wout);
                c.ok(&wargs);
                let ours = c.read(&wout);
                let expect = changed_objects(&content[f], &content[t], os);
                if expect == rbd_recs {
                    assert_eq!(
                        Some(sha256(&ours)),
                        recorded_sha(&m, &rel),
                        "{case}: {rel} bytes"
                    );
                    whole_same += 1;
                }
                std::fs::remove_file(c.path(&out)).expect("rm");
                std::fs::remove_file(c.path(&wout)).expect("rm");
            }
        }
    }
    eprintln!(
        "{pairs} export-diff pairs re-applied, {whole_same} whole-object diffs byte-identical to rbd's"
    );
    assert!(pairs >= 35, "{pairs} pairs");
    assert!(
        whole_same >= 30,
        "only {whole_same} whole-object diffs byte-identical"
    );
}

/// `import --export-format 2` of rbd's exports: snapshots, protection,
/// layout and image-meta; then our own v2 export re-imports identically.
fn v2_import_export(c: &Cli) {
    for case in IMAGE_CASES {
        let m = manifest(case);
        let (name, _, snaps) = image_of(&m);
        let im = &m["images"][&name];
        let check = |img: &str| {
            for p in snaps.iter().chain(std::iter::once(&"head".to_string())) {
                assert_eq!(
                    Some(c.export_sha(&spec_at(img, p))),
                    recorded_sha(&m, &format!("raw/{p}.raw")),
                    "{case} {img}@{p}"
                );
            }
            let info: Value =
                serde_json::from_slice(&c.ok(&["info", "--format", "json", img]).stdout)
                    .expect("json");
            assert_eq!(info["order"], im["order"], "{case} order");
            assert_eq!(info["features_mask"], im["features"], "{case} features");
            assert_eq!(info["stripe_unit"], im["stripe_unit"], "{case} stripe unit");
            assert_eq!(
                info["stripe_count"], im["stripe_count"],
                "{case} stripe count"
            );
            let meta = im
                .get("image_meta")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({}));
            assert_eq!(info["metadata"], meta, "{case} image-meta");
            let got: Vec<(String, String)> = info["snapshots"]
                .as_array()
                .expect("snaps")
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().expect("n").to_string(),
                        s["protected"].as_str().expect("p").to_string(),
                    )
                })
                .collect();
            let want: Vec<(String, String)> = im["snapshots"]
                .as_array()
                .expect("snaps")
                .iter()
                .map(|s| {
                    (
                        s["name"].as_str().expect("n").to_string(),
                        s["protected"].as_bool().expect("p").to_string(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{case} snapshots");
        };
        let a = format!("{case}-a");
        c.ok(&[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            &c.fx(&format!("{case}/export/image.v2")),
            &a,
        ]);
        check(&a);
        let out = format!("{case}.v2");
        c.ok(&["export", "--no-progress", "--export-format", "2", &a, &out]);
        let ins = c.ok(&["inspect", "--format", "json", &out]).stdout;
        let s: Value = serde_json::from_slice(&ins).expect("json");
        assert_eq!(s["valid"], true, "{case}: our v2 export is valid");
        assert_eq!(s["diff_count"].as_u64(), Some(snaps.len() as u64 + 1));
        let b = format!("{case}-b");
        c.ok(&["import", "--no-progress", "--export-format", "2", &out, &b]);
        check(&b);
    }
}

/// rbd's merge outputs, byte for byte.
fn merge_outputs(c: &Cli) {
    let mut n = 0;
    for case in IMAGE_CASES {
        let m = manifest(case);
        for (rel, f) in m["files"]
            .as_object()
            .expect("files")
            .iter()
            .chain(m["unstored_files"].as_object().expect("u"))
        {
            let Some(cmd) = f["produced_by"].as_str() else {
                continue;
            };
            if !cmd.starts_with("rbd merge-diff") || cmd.contains('<') || cmd.contains('|') {
                continue;
            }
            let toks: Vec<&str> = cmd
                .split_whitespace()
                .filter(|t| !t.starts_with("--"))
                .collect();
            let (a, b) = (toks[2], toks[3]);
            let out = format!("m{n}.diff");
            c.ok(&[
                "merge-diff",
                "--no-progress",
                &c.fx(&format!("{case}/{a}")),
                &c.fx(&format!("{case}/{b}")),
                &out,
            ]);
            assert_eq!(
                sha256(&c.read(&out)),
                f["sha256"].as_str().expect("sha"),
                "{case}: {rel}"
            );
            n += 1;
        }
    }
    assert!(n >= 10, "{n} merges");
}

fn norm(case: &str, tok: &str) -> Option<String> {
    let mut parts: Vec<&str> = vec![case];
    for p in tok.split('/') {
        match p {
            ".." => {
                parts.pop()?;
            }
            "." | "" => {}
            x => parts.push(x),
        }
    }
    let rel = parts.join("/");
    fixtures().join(&rel).is_file().then_some(rel)
}

const VALUE_OPTS: &[&str] = &[
    "--size",
    "--object-size",
    "--sparse-size",
    "--from-snap",
    "--export-format",
    "--format",
    "--snap",
    "--order",
    "--image-feature",
    "--stripe-unit",
    "--stripe-count",
];

struct Step {
    args: Vec<String>,
    stdin: Option<std::path::PathBuf>,
    stdout_to: Option<String>,
    output: Option<String>,
}

/// Translate a recorded rbd command line to ours (None: not applicable).
fn translate(c: &Cli, case: &str, cmd: &str) -> Option<Step> {
    if cmd.contains('|') || cmd.contains("image-meta") {
        return None;
    }
    let mut toks: Vec<String> = cmd
        .split_whitespace()
        .map(|t| t.replace(&format!("$SCRATCH/{case}/"), ""))
        .collect();
    let mut stdin = None;
    let mut stdout_to = None;
    if let Some(i) = toks.iter().position(|t| t == "<") {
        stdin = Some(fixtures().join(norm(case, &toks[i + 1])?));
        toks.drain(i..i + 2);
    }
    if let Some(i) = toks.iter().position(|t| t == ">") {
        stdout_to = Some(toks[i + 1].clone());
        toks.drain(i..i + 2);
    }
    assert_eq!(toks[0], "rbd");
    let sub = toks[1].clone();
    let mut args = vec![sub.clone()];
    let mut rest = &toks[2..];
    if sub == "snap" {
        args.push(rest[0].clone());
        rest = &rest[1..];
    }
    if ["import-diff", "merge-diff", "export-diff"].contains(&sub.as_str()) {
        args.push("--rbd-compat".into());
    }
    let mut positional = Vec::new();
    let mut i = 0;
    while i < rest.len() {
        let t = &rest[i];
        if VALUE_OPTS.contains(&t.as_str()) {
            args.push(t.clone());
            args.push(rest[i + 1].clone());
            i += 2;
        } else if t.starts_with("--") {
            args.push(t.clone());
            i += 1;
        } else {
            positional.push(t.clone());
            i += 1;
        }
    }
    let has_output = ["merge-diff", "export-diff", "export"].contains(&sub.as_str());
    let n = positional.len();
    let mut output = None;
    for (k, p) in positional.iter().enumerate() {
        if has_output && k + 1 == n {
            if p != "-" {
                // create the output's directory only where rbd had it
                if let Some(dir) = std::path::Path::new(p).parent()
                    && fixtures().join(case).join(dir).is_dir()
                {
                    std::fs::create_dir_all(c.path(&dir.to_string_lossy())).ok();
                }
                output = Some(p.clone());
            }
            args.push(p.clone());
        } else if let Some(rel) = norm(case, p) {
            args.push(c.fx(&rel));
        } else {
            args.push(p.clone());
        }
    }
    Some(Step {
        args,
        stdin,
        stdout_to,
        output,
    })
}

fn expected_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| !l.starts_with("<timestamp>"))
        .map(str::to_string)
        .collect()
}

fn run_step(c: &Cli, s: &Step) -> cli_common::Out {
    let args: Vec<&str> = s.args.iter().map(String::as_str).collect();
    match &s.stdin {
        Some(p) => c.run_in(&args, p),
        None => c.run(&args),
    }
}

/// `shake256(label)[:len]`, the corpus generator's data.
fn shake(label: &str, len: u64) -> Vec<u8> {
    let o = std::process::Command::new("python3")
        .args(["-c", &format!("import hashlib,sys; sys.stdout.buffer.write(hashlib.shake_256({label:?}.encode()).digest({len}))")])
        .output()
        .expect("python3");
    assert!(o.status.success());
    o.stdout
}

/// Replay a data-path `write` operation: a diff without snapshots or size.
fn replay_write(c: &Cli, op: &Value) {
    let off = op["offset"].as_u64().expect("offset");
    let len = op["length"].as_u64().expect("length");
    let d = op["data"].as_str().expect("data");
    let label = d.split('\'').nth(1).expect("label");
    let data = shake(label, len);
    let mut enc = rbdiff::Encoder::diff(Vec::new(), rbdiff::Format::DiffV1).expect("enc");
    enc.header(&rbdiff::DiffHeader {
        from: None,
        to: None,
        protected: None,
        size: None,
    })
    .expect("hdr");
    enc.write(off, &data).expect("w");
    enc.end_diff().expect("e");
    c.write("op.diff", &enc.finish().expect("finish"));
    let img = format!("rbd/{}", op["image"].as_str().expect("image"));
    c.ok(&[
        "import-diff",
        "--no-progress",
        "--sparse-size",
        "0",
        "op.diff",
        &img,
    ]);
}

/// Where the generator's data writes happened: before the command that
/// matches the next `cli` operation on the same image, or (no such
/// operation) before the command named here.
const WRITE_BEFORE: &[(&str, &str)] = &[
    ("resize-target", "shrink-only.diff"),
    ("diverged", "s1..s2.diff"),
];

/// Replay the hand-crafted cases' rbd command lines: same exit codes, same
/// error messages, rbd's merge outputs and exports byte for byte.
fn replay_crafted_cases(c: &Cli) {
    let mut checked_stderr = 0;
    let mut compared = 0;
    let mut left_checked = 0;
    for case in ["import-diff", "merge-diff", "import-export-v2"] {
        let m = manifest(case);
        let errors = m["observations"]["errors"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let ops = m["operations"].as_array().cloned().unwrap_or_default();
        let mut applied = vec![false; ops.len()];
        for cmd in m["commands"].as_array().expect("commands") {
            let line = cmd["cmd"].as_str().expect("cmd");
            for (j, op) in ops.iter().enumerate() {
                if applied[j] || op["op"] != "write" {
                    continue;
                }
                let image = op["image"].as_str().expect("image");
                let next_cli = ops[j..].iter().find(|o| {
                    o["op"] == "cli"
                        && o["cmd"].as_str().is_some_and(|c| {
                            c.contains(&format!("rbd/{image}@"))
                                || c.ends_with(&format!("rbd/{image}"))
                        })
                });
                let due = match next_cli {
                    Some(o) => o["cmd"] == line,
                    None => WRITE_BEFORE.iter().any(|(i, marker)| {
                        *i == image
                            && line.contains(marker)
                            && line.contains(&format!("rbd/{image}"))
                    }),
                };
                if due {
                    replay_write(c, op);
                    applied[j] = true;
                }
            }
            let Some(step) = translate(c, case, line) else {
                continue;
            };
            let o = run_step(c, &step);
            assert_eq!(
                i64::from(o.code),
                cmd["rc"].as_i64().expect("rc"),
                "{case}: {line}\nstderr: {}",
                o.stderr
            );
            let want = cmd["stderr"].as_str().map(str::to_string).or_else(|| {
                errors
                    .values()
                    .find(|e| e["cmd"] == line && e["rc"] == cmd["rc"])
                    .and_then(|e| e["stderr"].as_str().map(str::to_string))
            });
            if let Some(w) = want {
                let got: Vec<String> = o.stderr.lines().map(str::to_string).collect();
                assert_eq!(got, expected_lines(&w), "{case}: {line}");
                checked_stderr += 1;
            }
            if let Some(e) = errors
                .values()
                .find(|e| e["cmd"] == line && e["rc"] == cmd["rc"])
                && let (Some(out), Some(exists)) =
                    (&step.output, e["output_exists_after"].as_bool())
            {
                assert_eq!(
                    c.path(out).exists(),
                    exists,
                    "{case}: {line}: output exists after"
                );
            }
            // rbd's cleanup after a failed import
            if let Some(left) = cmd.get("image_left_behind").or_else(|| {
                errors
                    .values()
                    .find(|e| e["cmd"] == line && e["rc"] == cmd["rc"])
                    .and_then(|e| e.get("image_left_behind"))
            }) {
                let spec = step.args.last().expect("image").clone();
                let info = c.run(&["info", "--format", "json", &spec]);
                if left.is_null() {
                    assert_eq!(info.code, 2, "{case}: {line}: image left behind");
                } else {
                    assert_eq!(info.code, 0, "{case}: {line}: image removed");
                    let v: Value = serde_json::from_slice(&info.stdout).expect("json");
                    let names: Vec<&str> = v["snapshots"]
                        .as_array()
                        .expect("s")
                        .iter()
                        .map(|s| s["name"].as_str().expect("n"))
                        .collect();
                    let want: Vec<&str> = left["snapshots"]
                        .as_array()
                        .expect("s")
                        .iter()
                        .map(|s| s.as_str().expect("n"))
                        .collect();
                    assert_eq!(names, want, "{case}: {line}: snapshots left behind");
                    assert_eq!(v["size"], left["size"], "{case}: {line}");
                }
                left_checked += 1;
            }
            // compare produced files with rbd's
            let produced = step.output.clone().or(step.stdout_to.clone());
            if let Some(rel) = produced
                && cmd["rc"] == 0
                && (line.contains("merge-diff") || line.contains("rbd export "))
                && let Some(sha) = recorded_sha(&m, &rel)
            {
                let data = if step.output.is_some() {
                    c.read(&rel)
                } else {
                    o.stdout.clone()
                };
                assert_eq!(sha256(&data), sha, "{case}: {line}");
                compared += 1;
            }
        }
        for (a, op) in applied.iter().zip(&ops) {
            assert!(
                *a || op["op"] != "write",
                "{case}: write operation not replayed: {op}"
            );
        }
    }
    assert!(left_checked >= 6, "{left_checked} cleanup checks");
    assert!(checked_stderr >= 50, "{checked_stderr} stderr checks");
    assert!(compared >= 15, "{compared} outputs compared");
}

/// The error observations of the image cases (export-diff/export/diff).
fn observed_errors_of_image_cases(c: &Cli) {
    let mut n = 0;
    for case in ["basic-64k", "empty"] {
        let m = manifest(case);
        let (name, _, _) = image_of(&m);
        c.ok(&[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            &c.fx(&format!("{case}/export/image.v2")),
            &format!("rbd/{name}"),
        ]);
        for (what, e) in m["observations"]["errors"].as_object().expect("errors") {
            let line = e["cmd"].as_str().expect("cmd");
            let Some(mut step) = translate(c, case, line) else {
                continue;
            };
            if let Some(out) = &step.output
                && e["rc"] == 17
                && fixtures().join(case).join(out).exists()
            {
                c.write(out, b"existing");
            }
            if what == "export_diff_has_no_export_format_option" {
                assert!(step.args.contains(&"--rbd-compat".to_string()));
            }
            if step.args[0] == "diff" {
                step.stdout_to = None;
            }
            let o = run_step(c, &step);
            assert_eq!(
                i64::from(o.code),
                e["rc"].as_i64().expect("rc"),
                "{case}: {line}: {}",
                o.stderr
            );
            let got: Vec<String> = o.stderr.lines().map(str::to_string).collect();
            assert_eq!(
                got,
                expected_lines(e["stderr"].as_str().unwrap_or("")),
                "{case}: {line}"
            );
            if let Some(so) = e["stdout"].as_str() {
                assert_eq!(o.text(), so, "{case}: {line}");
            }
            n += 1;
        }
    }
    assert!(n >= 8, "{n}");
}

/// `diff` of a diff file matches rbd's listing where rbd's data/zero agrees
/// with the records' w/z; all three formats and --pretty-format.
fn diff_listing_formats(c: &Cli) {
    let mut n = 0;
    for case in IMAGE_CASES {
        let m = manifest(case);
        for (rel, f) in m["files"].as_object().expect("files") {
            let Some(stem) = rel
                .strip_prefix("rbddiff/")
                .and_then(|r| r.strip_suffix(".json"))
            else {
                continue;
            };
            if stem.ends_with(".pretty") {
                continue;
            }
            let diff_rel = format!("diff/{stem}.diff");
            let Some(recs) = records_of(&m, &diff_rel) else {
                continue;
            };
            let listing: Value = serde_json::from_slice(
                &std::fs::read(fixtures().join(case).join(rel)).expect("read"),
            )
            .expect("json");
            let from_rbd: Vec<(String, u64, u64)> = listing
                .as_array()
                .expect("arr")
                .iter()
                .map(|e| {
                    (
                        if e["exists"] == "true" { "w" } else { "z" }.to_string(),
                        e["offset"].as_u64().expect("o"),
                        e["length"].as_u64().expect("l"),
                    )
                })
                .collect();
            if from_rbd != recs || !fixtures().join(case).join(&diff_rel).exists() {
                continue;
            }
            let _ = f;
            let d = c.fx(&format!("{case}/{diff_rel}"));
            for (fmt, ext, pretty) in [
                ("plain", "txt", false),
                ("json", "json", false),
                ("xml", "xml", false),
                ("json", "pretty.json", true),
                ("xml", "pretty.xml", true),
            ] {
                let want = fixtures().join(case).join(format!("rbddiff/{stem}.{ext}"));
                if !want.exists() {
                    continue;
                }
                let mut args = vec!["diff", "--format", fmt];
                if pretty {
                    args.push("--pretty-format");
                }
                args.push(&d);
                let o = c.ok(&args);
                assert_eq!(
                    o.text(),
                    std::fs::read_to_string(&want).expect("read"),
                    "{case}: {stem}.{ext}"
                );
                n += 1;
            }
        }
    }
    let _: BTreeSet<u8> = BTreeSet::new();
    assert!(n >= 15, "{n} listings compared");
}

both!(
    apply_relationships,
    store_chain_and_export_diff,
    v2_import_export,
    merge_outputs,
    replay_crafted_cases,
    observed_errors_of_image_cases,
    diff_listing_formats,
);
