//! Ordering dropped diffs into a chain and checking it before a merge.
//!
//! Diffs link when one's to-snapshot is the next one's from-snapshot
//! ([`rbdiff::chain::follows`]: names compared as rbd does).
//! A diff without `f` starts at image creation, a diff without `t` ends at
//! the image head.

use serde::{Deserialize, Serialize};

/// One dropped file, as the page knows it from its summary.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Entry {
    /// Caller's id.
    pub id: u32,
    /// File name (for messages).
    pub name: String,
    /// Format name (`rbd diff v1`, `rbd diff v2`, `rbd image v2`).
    pub format: Option<String>,
    /// Number of diffs in the stream.
    pub diffs: u64,
    /// `f`.
    pub from: Option<String>,
    /// `t`.
    pub to: Option<String>,
    /// `s`.
    pub size: Option<u64>,
    /// Decoded to the end without error.
    pub valid: bool,
}

/// A link between two consecutive diffs of the plan.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Link {
    /// Earlier diff.
    pub a: u32,
    /// Later diff.
    pub b: u32,
    /// `a.to == b.from`.
    pub names_match: bool,
    /// Size change across the link: `a.size -> b.size`.
    pub size_change: Option<(u64, u64)>,
}

/// The ordered chain and what is wrong with it.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Plan {
    /// Ids in chain order (only mergeable diffs).
    pub order: Vec<u32>,
    /// Links between consecutive entries of `order`.
    pub links: Vec<Link>,
    /// Ids left out (not a diff stream, or not valid).
    pub excluded: Vec<u32>,
    /// Problems that prevent the merge.
    pub problems: Vec<String>,
    /// Notes that do not prevent it (resizes along the chain).
    pub notes: Vec<String>,
    /// The chain is consistent and can be merged.
    pub ok: bool,
    /// From-snapshot of the result.
    pub from: Option<String>,
    /// To-snapshot of the result.
    pub to: Option<String>,
    /// Size of the result.
    pub size: Option<u64>,
}

fn name(n: &Option<String>) -> Option<&[u8]> {
    n.as_deref().map(str::as_bytes)
}

fn show(n: &Option<String>, none: &str) -> String {
    match n {
        Some(n) => format!("'{n}'"),
        None => none.into(),
    }
}

/// Orders `entries` into a chain and checks it.
pub fn plan(entries: &[Entry]) -> Plan {
    let mut p = Plan::default();
    let mut pool: Vec<&Entry> = Vec::new();
    for e in entries {
        let is_diff = matches!(e.format.as_deref(), Some("rbd diff v1" | "rbd diff v2"));
        if !is_diff {
            p.excluded.push(e.id);
            p.notes.push(format!(
                "{}: {} is not a diff stream, left out",
                e.name,
                e.format.as_deref().unwrap_or("unknown format")
            ));
        } else if !e.valid {
            p.excluded.push(e.id);
            p.problems
                .push(format!("{}: the stream is not valid", e.name));
        } else {
            pool.push(e);
        }
    }
    if pool.len() < 2 {
        p.problems
            .push("drop at least two valid diffs to form a chain".into());
        return p;
    }
    // Start: a diff whose from-snapshot no other diff ends at (from creation first).
    let is_target = |name: &str| pool.iter().any(|o| o.to.as_deref() == Some(name));
    let mut starts: Vec<usize> = (0..pool.len())
        .filter(|&i| match &pool[i].from {
            None => true,
            Some(f) => !is_target(f),
        })
        .collect();
    starts.sort_by_key(|&i| (pool[i].from.is_some(), i));
    if starts.len() > 1 {
        let names: Vec<String> = starts.iter().map(|&i| pool[i].name.clone()).collect();
        p.problems.push(format!(
            "more than one diff could start the chain: {}",
            names.join(", ")
        ));
    }
    let mut used = vec![false; pool.len()];
    let mut cur = starts.first().copied().unwrap_or(0);
    used[cur] = true;
    p.order.push(pool[cur].id);
    while let Some(to) = pool[cur].to.as_deref() {
        let next: Vec<usize> = (0..pool.len())
            .filter(|&i| !used[i] && pool[i].from.as_deref() == Some(to))
            .collect();
        if next.len() > 1 {
            p.problems.push(format!(
                "{} diffs start at snapshot '{to}': the chain forks",
                next.len()
            ));
        }
        let Some(&n) = next.first() else { break };
        used[n] = true;
        cur = n;
        p.order.push(pool[n].id);
    }
    // Whatever is left goes at the end, in drop order, so the user sees the gap.
    for i in 0..pool.len() {
        if !used[i] {
            p.order.push(pool[i].id);
        }
    }
    let by_id = |id: u32| pool.iter().find(|e| e.id == id).copied();
    let ordered: Vec<&Entry> = p.order.iter().filter_map(|&id| by_id(id)).collect();
    for e in &ordered {
        if e.size.is_none() {
            p.problems.push(format!(
                "{}: no image size ('s' record); rbd would take it as 0",
                e.name
            ));
        }
        if e.diffs != 1 {
            p.problems
                .push(format!("{}: holds {} diffs, expected 1", e.name, e.diffs));
        }
    }
    for w in ordered.windows(2) {
        let (a, b) = (w[0], w[1]);
        let names_match = rbdiff::chain::follows(name(&a.to), name(&b.from));
        if !names_match {
            p.problems.push(format!(
                "{} ends at {} but {} starts at {}",
                a.name,
                show(&a.to, "the image head"),
                b.name,
                show(&b.from, "image creation")
            ));
        }
        let size_change = match (a.size, b.size) {
            (Some(x), Some(y)) if x != y => {
                p.notes.push(format!(
                    "image {} from {x} to {y} bytes between {} and {}",
                    if y > x { "grows" } else { "shrinks" },
                    a.name,
                    b.name
                ));
                Some((x, y))
            }
            _ => None,
        };
        p.links.push(Link {
            a: a.id,
            b: b.id,
            names_match,
            size_change,
        });
    }
    if let (Some(first), Some(last)) = (ordered.first(), ordered.last()) {
        p.from = first.from.clone();
        p.to = last.to.clone();
        p.size = last.size;
    }
    p.ok = p.problems.is_empty();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: u32, from: Option<&str>, to: Option<&str>, size: u64) -> Entry {
        Entry {
            id,
            name: format!("d{id}"),
            format: Some("rbd diff v1".into()),
            diffs: 1,
            from: from.map(Into::into),
            to: to.map(Into::into),
            size: Some(size),
            valid: true,
        }
    }

    #[test]
    fn orders_by_names() {
        let p = plan(&[
            e(1, Some("s2"), None, 10),
            e(2, None, Some("s1"), 10),
            e(3, Some("s1"), Some("s2"), 10),
        ]);
        assert!(p.ok, "{:?}", p.problems);
        assert_eq!(p.order, vec![2, 3, 1]);
        assert_eq!((p.from, p.to, p.size), (None, None, Some(10)));
    }

    #[test]
    fn gap_is_a_problem() {
        let p = plan(&[e(1, None, Some("s1"), 10), e(2, Some("s2"), Some("s3"), 10)]);
        assert!(!p.ok);
        assert_eq!(p.order.len(), 2);
        assert!(
            p.problems.iter().any(|m| m.contains("starts at 's2'")),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn resize_is_a_note_and_image_is_excluded() {
        let mut img = e(9, None, None, 0);
        img.format = Some("rbd image v2".into());
        let p = plan(&[
            e(1, None, Some("s1"), 10),
            e(2, Some("s1"), Some("s2"), 20),
            img,
        ]);
        assert!(p.ok);
        assert_eq!(p.excluded, vec![9]);
        assert_eq!(p.links[0].size_change, Some((10, 20)));
    }

    #[test]
    fn missing_size_and_fork() {
        let mut a = e(1, None, Some("s1"), 0);
        a.size = None;
        let p = plan(&[
            a,
            e(2, Some("s1"), Some("s2"), 1),
            e(3, Some("s1"), Some("s3"), 1),
        ]);
        assert!(!p.ok);
        assert!(p.problems.iter().any(|m| m.contains("forks")));
        assert!(p.problems.iter().any(|m| m.contains("no image size")));
    }
}
