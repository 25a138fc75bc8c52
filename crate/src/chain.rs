//! The consecutive-snapshot chain rule.
//!
//! Diffs form a chain when each one starts where the previous one ended:
//! its from-snapshot (`f`) is the previous diff's to-snapshot (`t`). rbd
//! compares the names as byte strings, a missing name being equal to an
//! empty one (`rbd merge-diff` accepts two diffs without names). A diff
//! without `f` starts at image creation, one without `t` ends at the image
//! head. `merge-diff`, `verify` and the viewer's chain planner all check
//! chains with these two functions.

/// Whether a diff starting at `from` continues one that ended at `prev_to`.
pub fn follows(prev_to: Option<&[u8]>, from: Option<&[u8]>) -> bool {
    prev_to.unwrap_or_default() == from.unwrap_or_default()
}

/// The breaks in a chain of diffs, given in order as `(from, to)` snapshot
/// names: the index of every diff that does not [`follow`](follows) the one
/// before it (the first diff never breaks the chain).
pub fn breaks<'a, I>(diffs: I) -> impl Iterator<Item = usize>
where
    I: IntoIterator<Item = (Option<&'a [u8]>, Option<&'a [u8]>)>,
{
    let mut prev_to: Option<Option<&'a [u8]>> = None;
    diffs
        .into_iter()
        .enumerate()
        .filter_map(move |(i, (from, to))| {
            let broken = prev_to.is_some_and(|p| !follows(p, from));
            prev_to = Some(to);
            broken.then_some(i)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_names_equal_empty_ones() {
        assert!(follows(None, None));
        assert!(follows(None, Some(b"")));
        assert!(follows(Some(b"s1"), Some(b"s1")));
        assert!(!follows(Some(b"s1"), Some(b"s2")));
        assert!(!follows(None, Some(b"s1")));
        assert!(!follows(Some(b"s1"), None));
    }

    #[test]
    fn every_break_is_named() {
        let s = |n: &'static str| Some(n.as_bytes());
        let chain = [
            (None, s("a")),
            (s("a"), s("b")),
            (s("c"), s("d")),
            (s("x"), None),
        ];
        let mut b = breaks(chain);
        assert_eq!((b.next(), b.next(), b.next()), (Some(2), Some(3), None));
        assert_eq!(breaks(chain[..2].iter().copied()).next(), None);
        assert_eq!(breaks(core::iter::empty()).next(), None);
    }
}
