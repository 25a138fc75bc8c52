//! `verify`: check that diffs are valid and form a chain.

use super::inspect::summarize_with;
use crate::errors::{EBADMSG, EINVAL, Fail};
use crate::integ;
use crate::progress::ProgressFlags;
use crate::store::{Spec, Store};
use rbdiff::Config;
use rbdiff::inspect::InspectOptions;
use rbdiff::integrity::StreamVerifier;

const EXAMPLES: &str = "\
Examples:
  rbdiff verify mon.diff tue.diff wed.diff
  rbdiff verify --image vm1 tue.diff wed.diff   # and that they apply to vm1
  rbdiff verify backup.v2                       # an export's embedded diffs
  rbdiff verify tue.diff                        # its integrity data: checksum, payload hashes
  rbdiff verify tue.diff --base restored        # does it apply to this image? (reads only)
  rbdiff verify tue.diff --result restored@tue  # did the import give the right bytes?
  rbdiff verify --format json --integrity tue.sig - < tue.diff

Every stream must decode completely (v1, v2 or image v2), and each diff's FROM
snapshot must be the previous diff's TO snapshot. With --image, the first
FROM snapshot must exist in that store image and the last TO snapshot must
not (what import-diff will require). Integrity data (docs/integrity.md) a
diff carries (v1 trailer, v2 'H'/'K' records) or has next to it
(DIFF.rbdiff-integrity, or --integrity SIDECAR) is checked against the
stream: payload hashes, record list and count, stream checksum. --base
IMAGE checks that the blocks the diff overwrites hold what it was made
from (what import-diff checks before writing); --result IMAGE that an image
holds what importing it leaves. IMAGE: [pool/]image[@snap] or a raw file;
nothing is written. Prints one line per diff and a verdict (JSON with
--format json); exit status 0 when everything checks, 74 for a truncated
stream, 22 otherwise.";

/// Check that a chain of diffs is valid and consecutive, and their integrity data.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Diffs in chain order ('-' for stdin, once).
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Store image the chain is meant to be imported into.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Integrity sidecar of the (single) diff.
    #[arg(long, value_name = "SIDECAR")]
    pub integrity: Option<String>,
    /// Check that the (single) diff applies to this image (reads only).
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// Check that this image is what importing the (single) diff leaves.
    #[arg(long, value_name = "IMAGE")]
    pub result: Option<String>,
    /// Output format.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub format: String,
    #[command(flatten)]
    pub progress: ProgressFlags,
}

struct Link {
    name: String,
    from: Option<String>,
    to: Option<String>,
    size: Option<u64>,
    integrity: String,
}

fn q(n: &Option<String>) -> String {
    n.as_ref()
        .map_or("(none)".to_string(), |s| format!("'{s}'"))
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    let single = a.integrity.is_some() || a.base.is_some() || a.result.is_some();
    if single && a.paths.len() != 1 {
        return Err(Fail::new(
            1,
            "rbdiff verify: --integrity, --base and --result take exactly one diff",
        )
        .into());
    }
    let json = a.format == "json";
    let mut r = Report::default();
    for p in &a.paths {
        r.read_diff(p, &a, json)?;
    }
    r.check_chain();
    if let Some(img) = &a.image {
        r.check_image(store, img)?;
    }
    // --base / --result: the manifest must be known before reading the stream.
    if (a.base.is_some() || a.result.is_some()) && r.problems.is_empty() {
        r.check_blocks(store, &a, json)?;
    }
    r.finish(json)
}

/// What `verify` found so far.
#[derive(Default)]
struct Report {
    links: Vec<Link>,
    problems: Vec<String>,
    checks: Vec<serde_json::Value>,
    /// The exit status of the last problem.
    code: i32,
}

impl Report {
    fn problem(&mut self, code: i32, what: String) {
        self.problems.push(what);
        self.code = code;
    }

    /// Reads one stream and its integrity data (in the stream or in a
    /// sidecar), one link per diff it holds.
    fn read_diff(&mut self, p: &String, a: &Args, json: bool) -> anyhow::Result<()> {
        let opts = InspectOptions::new()
            .with_max_records(0)
            .with_max_warnings(10);
        // A sidecar is checked along with whatever the stream carries.
        let side_path = match &a.integrity {
            Some(s) => Some(std::path::PathBuf::from(s)),
            None if p != "-" => Some(integ::sidecar_path(p)).filter(|s| s.is_file()),
            None => None,
        };
        let mut side = match &side_path {
            Some(sp) => Some(StreamVerifier::new(Some(integ::read_sidecar(
                sp,
                integ::sidecar_limit(p),
            )?))),
            None => None,
        };
        let (s, err) = summarize_with(p, Config::new(), opts, a.progress, side.as_mut())?;
        if let Some(e) = err {
            self.problem(
                if e.is_eof() { EBADMSG } else { EINVAL },
                format!("{p}: {e}"),
            );
            return Ok(());
        }
        if !s.valid {
            self.problem(EINVAL, format!("{p}: not a complete stream"));
            return Ok(());
        }
        let side_verdict = side.map(|v| v.finish());
        for (i, d) in s.diffs.iter().enumerate() {
            let name = if s.diffs.len() > 1 {
                format!("{p}[{i}]")
            } else {
                p.clone()
            };
            let mut integrity = match &d.integrity {
                None => "none".to_string(),
                Some(i) if i.ok => format!("ok ({} records hashed)", i.entries),
                Some(i) => {
                    let f = i.fault.clone().unwrap_or_default();
                    self.problem(EINVAL, format!("{name}: integrity: {f}"));
                    format!("FAILED: {f}")
                }
            };
            if let (Some(v), Some(sp)) = (&side_verdict, &side_path) {
                let sp = sp.display();
                integrity = match v {
                    Ok(Some(m)) => format!("ok ({} records hashed, sidecar {sp})", m.entries.len()),
                    Ok(None) => "none".to_string(),
                    Err(f) => {
                        self.problem(EINVAL, format!("{name}: integrity (sidecar {sp}): {f}"));
                        format!("FAILED (sidecar {sp}): {f}")
                    }
                };
            }
            if !json {
                println!(
                    "{name}: {} from {} to {} size {} integrity {integrity}",
                    s.format.map_or("?", |f| f.name()),
                    q(&d.from_snap),
                    q(&d.to_snap),
                    d.size.map_or("-".to_string(), |v| v.to_string())
                );
            }
            self.links.push(Link {
                name,
                from: d.from_snap.clone(),
                to: d.to_snap.clone(),
                size: d.size,
                integrity,
            });
        }
        Ok(())
    }

    /// Each diff starts where the previous one ends.
    fn check_chain(&mut self) {
        fn name(n: &Option<String>) -> Option<&[u8]> {
            n.as_deref().map(str::as_bytes)
        }
        let ends = self.links.iter().map(|l| (name(&l.from), name(&l.to)));
        let found: Vec<String> = rbdiff::chain::breaks(ends)
            .map(|i| {
                let (a, b) = (&self.links[i - 1], &self.links[i]);
                format!(
                    "{} starts at {} but {} ends at {}",
                    b.name,
                    q(&b.from),
                    a.name,
                    q(&a.to)
                )
            })
            .collect();
        for f in found {
            self.problem(EINVAL, f);
        }
    }

    /// --image: the chain starts at a snapshot of `img` and ends at a new one.
    fn check_image(&mut self, store: &Store, img: &str) -> anyhow::Result<()> {
        let (Some(first), Some(last)) = (self.links.first(), self.links.last()) else {
            return Ok(());
        };
        let (from, to) = (first.from.clone(), last.to.clone());
        let spec = Spec::parse(img)?;
        let image = store.open(&spec.head())?;
        if let Some(f) = &from
            && image.find(f).is_none()
        {
            self.problem(
                EINVAL,
                format!(
                    "start snapshot '{f}' does not exist in image {}",
                    spec.head()
                ),
            );
        }
        if let Some(t) = &to
            && image.find(t).is_some()
        {
            self.problem(
                EINVAL,
                format!("end snapshot '{t}' already exists in image {}", spec.head()),
            );
        }
        Ok(())
    }

    /// --base / --result: the blocks of an image against the diff's manifest.
    fn check_blocks(&mut self, store: &Store, a: &Args, json: bool) -> anyhow::Result<()> {
        let p = &a.paths[0];
        let Some(k) = integ::find(p, a.integrity.as_deref())? else {
            self.problem(
                EINVAL,
                format!("{p} has no integrity data to check an image with (seal it: rbdiff seal)"),
            );
            return Ok(());
        };
        for (what, img) in [("base", &a.base), ("result", &a.result)] {
            let Some(img) = img else { continue };
            let mut dev = super::open_image_ro(store, img)?;
            // One thread per core, each on its own handle, as import-diff.
            let mut readers = dev.readers(integ::check_threads());
            let size = self.links.last().and_then(|l| l.size);
            let all = 0..k.manifest.entries.len();
            let r = match (what, readers.is_empty()) {
                ("base", true) => k.manifest.check_base(&mut dev),
                ("base", false) => k.manifest.check_base_par(&mut readers),
                (_, true) => k.manifest.check_result(&mut dev, size),
                (_, false) => k.manifest.check_result_par(&mut readers, size, all),
            };
            let ok = r.is_ok();
            let detail = match r {
                Ok(()) => {
                    if !json {
                        println!(
                            "{what} {img}: matches {p} ({} blocks checked)",
                            k.manifest.entries.len()
                        );
                    }
                    None
                }
                Err(e) => {
                    self.problem(EINVAL, format!("{what} {img}: {e}"));
                    Some(e.to_string())
                }
            };
            self.checks.push(serde_json::json!({
                "check": what, "image": img, "ok": ok, "error": detail,
                "blocks": k.manifest.entries.len(), "integrity_source": k.source,
            }));
        }
        Ok(())
    }

    /// Prints the verdict; an error with every problem when there is one.
    fn finish(self, json: bool) -> anyhow::Result<()> {
        let Report {
            links,
            problems,
            checks,
            code,
        } = self;
        let ok = problems.is_empty();
        if json {
            let v = serde_json::json!({
                "ok": ok,
                "diffs": links.iter().map(|l| serde_json::json!({
                    "name": l.name, "from_snap": l.from, "to_snap": l.to, "size": l.size,
                    "integrity": l.integrity,
                })).collect::<Vec<_>>(),
                "checks": checks,
                "problems": problems,
            });
            println!("{v}");
            return if ok {
                Ok(())
            } else {
                Err(Fail::bare(code).into())
            };
        }
        if ok {
            let (first, last) = (links.first(), links.last());
            println!(
                "OK: {} diff(s) from {} to {}, final size {}",
                links.len(),
                q(&first.and_then(|l| l.from.clone())),
                q(&last.and_then(|l| l.to.clone())),
                last.and_then(|l| l.size)
                    .map_or("-".to_string(), |v| v.to_string())
            );
            Ok(())
        } else {
            let mut f = Fail::bare(code);
            for p in problems {
                f = f.then(format!("rbdiff verify: {p}"));
            }
            Err(f.into())
        }
    }
}
