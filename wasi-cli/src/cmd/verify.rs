//! `verify`: check that diffs are valid and form a chain.

use super::inspect::summarize;
use crate::errors::{EBADMSG, EINVAL, Fail};
use crate::progress::ProgressFlags;
use crate::store::{Spec, Store};
use rbdiff::Config;
use rbdiff::inspect::InspectOptions;

const EXAMPLES: &str = "\
Examples:
  rbdiff verify mon.diff tue.diff wed.diff
  rbdiff verify --image vm1 tue.diff wed.diff   # and that they apply to vm1
  rbdiff verify backup.v2                       # an export's embedded diffs

Every stream must decode completely (v1, v2 or image v2), and each diff's FROM
snapshot must be the previous diff's TO snapshot. With --image, the first
FROM snapshot must exist in that store image and the last TO snapshot must
not (what import-diff will require). Prints one line per diff and a verdict;
exit status 0 when the chain fits, 74 for a truncated stream, 22 otherwise.";

/// Check that a chain of diffs is valid and consecutive.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Diffs in chain order ('-' for stdin, once).
    #[arg(required = true)]
    pub paths: Vec<String>,
    /// Store image the chain is meant to be imported into.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    #[command(flatten)]
    pub progress: ProgressFlags,
}

struct Link {
    name: String,
    from: Option<String>,
    to: Option<String>,
    size: Option<u64>,
}

fn q(n: &Option<String>) -> String {
    n.as_ref()
        .map_or("(none)".to_string(), |s| format!("'{s}'"))
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    let opts = InspectOptions {
        max_records: 0,
        max_warnings: 10,
    };
    let mut links: Vec<Link> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut code = 0;
    for p in &a.paths {
        let (s, err) = summarize(p, Config::new(), opts, a.progress)?;
        if let Some(e) = err {
            problems.push(format!("{p}: {e}"));
            code = if e.is_eof() { EBADMSG } else { EINVAL };
            continue;
        }
        if !s.valid {
            problems.push(format!("{p}: not a complete stream"));
            code = EINVAL;
            continue;
        }
        for (i, d) in s.diffs.iter().enumerate() {
            let name = if s.diffs.len() > 1 {
                format!("{p}[{i}]")
            } else {
                p.clone()
            };
            println!(
                "{name}: {} from {} to {} size {}",
                s.format.map_or("?", |f| f.name()),
                q(&d.from_snap),
                q(&d.to_snap),
                d.size.map_or("-".to_string(), |v| v.to_string())
            );
            links.push(Link {
                name,
                from: d.from_snap.clone(),
                to: d.to_snap.clone(),
                size: d.size,
            });
        }
    }
    for w in links.windows(2) {
        if w[0].to.as_deref().unwrap_or("") != w[1].from.as_deref().unwrap_or("") {
            problems.push(format!(
                "{} starts at {} but {} ends at {}",
                w[1].name,
                q(&w[1].from),
                w[0].name,
                q(&w[0].to)
            ));
            code = EINVAL;
        }
    }
    if let Some(img) = &a.image
        && let (Some(first), Some(last)) = (links.first(), links.last())
    {
        let spec = Spec::parse(img)?;
        let image = store.open(&spec.head())?;
        if let Some(f) = &first.from
            && image.snap(f).is_none()
        {
            problems.push(format!(
                "start snapshot '{f}' does not exist in image {}",
                spec.head()
            ));
            code = EINVAL;
        }
        if let Some(t) = &last.to
            && image.snap(t).is_some()
        {
            problems.push(format!(
                "end snapshot '{t}' already exists in image {}",
                spec.head()
            ));
            code = EINVAL;
        }
    }
    if problems.is_empty() {
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
