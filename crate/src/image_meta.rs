//! rbd's rules for image-meta keys: a key `conf_<option>` is an image-level
//! override of a librbd option and is accepted only for the options librbd
//! allows per image, with a value librbd can parse for that option
//! (librbd `Operations::metadata_set`, `api::Config::is_option_name`,
//! Ceph's option schema of 16.2.15). Any other key takes any value.

/// The prefix of configuration overrides.
pub const CONF_PREFIX: &str = "conf_";

/// Why librbd refuses a key/value pair (rbd: EINVAL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaError {
    /// `conf_<name>`: `name` is not an option an image may override.
    NotImageOption,
    /// The value does not parse as the option's type, or is out of range.
    BadValue,
}

impl core::fmt::Display for MetaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MetaError::NotImageOption => "not allowed image level override",
            MetaError::BadValue => "invalid value for the option",
        })
    }
}

/// An option's type and limits, as Ceph's schema has them.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// `true`/`false` (any case) or an integer.
    Bool,
    /// An unsigned integer with an optional SI suffix (K, M, ... = 10^3n), in `min..=max`.
    Uint(u64, u64),
    /// A size with an optional IEC suffix (K/Ki, M/Mi, ... = 2^10n), at least `min`.
    Size(u64),
    /// A floating-point number.
    Float,
    /// A string; one of these when the list is not empty.
    Str(&'static [&'static str]),
}

use Kind::{Bool, Float, Size, Str, Uint};

/// The options an image may override (`rbd config image list`, 16.2.15).
const OPTIONS: &[(&str, Kind)] = &[
    ("rbd_atime_update_interval", Uint(0, u64::MAX)),
    ("rbd_balance_parent_reads", Bool),
    ("rbd_balance_snap_reads", Bool),
    ("rbd_blkin_trace_all", Bool),
    ("rbd_blocklist_expire_seconds", Uint(0, u64::MAX)),
    ("rbd_blocklist_on_break_lock", Bool),
    ("rbd_cache", Bool),
    ("rbd_cache_block_writes_upfront", Bool),
    ("rbd_cache_max_dirty", Size(0)),
    ("rbd_cache_max_dirty_age", Float),
    ("rbd_cache_max_dirty_object", Uint(0, u64::MAX)),
    (
        "rbd_cache_policy",
        Str(&["writethrough", "writeback", "writearound"]),
    ),
    ("rbd_cache_size", Size(0)),
    ("rbd_cache_target_dirty", Size(0)),
    ("rbd_cache_writethrough_until_flush", Bool),
    ("rbd_clone_copy_on_read", Bool),
    (
        "rbd_compression_hint",
        Str(&["none", "compressible", "incompressible"]),
    ),
    ("rbd_concurrent_management_ops", Uint(1, u64::MAX)),
    ("rbd_default_map_options", Str(&[])),
    (
        "rbd_default_snapshot_quiesce_mode",
        Str(&["required", "ignore-error", "skip"]),
    ),
    ("rbd_disable_zero_copy_writes", Bool),
    ("rbd_discard_granularity_bytes", Uint(4096, 33554432)),
    ("rbd_enable_alloc_hint", Bool),
    ("rbd_invalidate_object_map_on_timeout", Bool),
    ("rbd_io_scheduler", Str(&["none", "simple"])),
    ("rbd_io_scheduler_simple_max_delay", Uint(0, u64::MAX)),
    ("rbd_journal_commit_age", Float),
    ("rbd_journal_max_concurrent_object_sets", Uint(0, u64::MAX)),
    ("rbd_journal_max_payload_bytes", Size(0)),
    ("rbd_journal_object_flush_age", Float),
    ("rbd_journal_object_flush_bytes", Size(0)),
    ("rbd_journal_object_flush_interval", Uint(0, u64::MAX)),
    (
        "rbd_journal_object_max_in_flight_appends",
        Uint(0, u64::MAX),
    ),
    ("rbd_journal_object_writethrough_until_flush", Bool),
    ("rbd_localize_parent_reads", Bool),
    ("rbd_localize_snap_reads", Bool),
    ("rbd_mirroring_delete_delay", Uint(0, u64::MAX)),
    ("rbd_mirroring_max_mirroring_snapshots", Uint(3, u64::MAX)),
    ("rbd_mirroring_replay_delay", Uint(0, u64::MAX)),
    ("rbd_mirroring_resync_after_disconnect", Bool),
    ("rbd_move_parent_to_trash_on_remove", Bool),
    ("rbd_move_to_trash_on_remove", Bool),
    (
        "rbd_move_to_trash_on_remove_expire_seconds",
        Uint(0, u64::MAX),
    ),
    ("rbd_mtime_update_interval", Uint(0, u64::MAX)),
    ("rbd_non_blocking_aio", Bool),
    ("rbd_parent_cache_enabled", Bool),
    (
        "rbd_persistent_cache_mode",
        Str(&["disabled", "rwl", "ssd"]),
    ),
    ("rbd_persistent_cache_path", Str(&[])),
    ("rbd_persistent_cache_size", Uint(1073741824, u64::MAX)),
    ("rbd_plugins", Str(&[])),
    ("rbd_qos_bps_burst", Uint(0, u64::MAX)),
    ("rbd_qos_bps_burst_seconds", Uint(1, u64::MAX)),
    ("rbd_qos_bps_limit", Uint(0, u64::MAX)),
    ("rbd_qos_iops_burst", Uint(0, u64::MAX)),
    ("rbd_qos_iops_burst_seconds", Uint(1, u64::MAX)),
    ("rbd_qos_iops_limit", Uint(0, u64::MAX)),
    ("rbd_qos_read_bps_burst", Uint(0, u64::MAX)),
    ("rbd_qos_read_bps_burst_seconds", Uint(1, u64::MAX)),
    ("rbd_qos_read_bps_limit", Uint(0, u64::MAX)),
    ("rbd_qos_read_iops_burst", Uint(0, u64::MAX)),
    ("rbd_qos_read_iops_burst_seconds", Uint(1, u64::MAX)),
    ("rbd_qos_read_iops_limit", Uint(0, u64::MAX)),
    ("rbd_qos_schedule_tick_min", Uint(1, u64::MAX)),
    ("rbd_qos_write_bps_burst", Uint(0, u64::MAX)),
    ("rbd_qos_write_bps_burst_seconds", Uint(1, u64::MAX)),
    ("rbd_qos_write_bps_limit", Uint(0, u64::MAX)),
    ("rbd_qos_write_iops_burst", Uint(0, u64::MAX)),
    ("rbd_qos_write_iops_burst_seconds", Uint(1, u64::MAX)),
    ("rbd_qos_write_iops_limit", Uint(0, u64::MAX)),
    ("rbd_quiesce_notification_attempts", Uint(1, u64::MAX)),
    (
        "rbd_read_from_replica_policy",
        Str(&["default", "balance", "localize"]),
    ),
    ("rbd_readahead_disable_after_bytes", Size(0)),
    ("rbd_readahead_max_bytes", Size(0)),
    ("rbd_readahead_trigger_requests", Uint(0, u64::MAX)),
    ("rbd_request_timed_out_seconds", Uint(0, u64::MAX)),
    ("rbd_skip_partial_discard", Bool),
    ("rbd_sparse_read_threshold_bytes", Size(0)),
];

/// Checks a key/value pair as librbd's `metadata_set` does.
pub fn check(key: &str, value: &str) -> Result<(), MetaError> {
    let Some(name) = key.strip_prefix(CONF_PREFIX).filter(|n| !n.is_empty()) else {
        return Ok(());
    };
    let kind = OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
        .ok_or(MetaError::NotImageOption)?;
    let ok = match kind {
        Kind::Bool => {
            value.eq_ignore_ascii_case("true")
                || value.eq_ignore_ascii_case("false")
                || value.parse::<i64>().is_ok()
        }
        Kind::Uint(min, max) => scaled(value, 1000, 1).is_some_and(|v| (min..=max).contains(&v)),
        Kind::Size(min) => scaled(value, 1024, 2).is_some_and(|v| v >= min),
        Kind::Float => value.parse::<f64>().is_ok(),
        Kind::Str(allowed) => allowed.is_empty() || allowed.contains(&value),
    };
    if ok { Ok(()) } else { Err(MetaError::BadValue) }
}

/// `<digits>[unit]` with units `B`, `K`, `M`, `G`, `T`, `P`, `E` (each a
/// factor `base` more; an `i` after the letter when `unit_len` is 2), as
/// Ceph's `strict_si_cast`/`strict_iec_cast` parse an unsigned value.
fn scaled(s: &str, base: u64, unit_len: usize) -> Option<u64> {
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(at);
    let n: u64 = n.parse().ok()?;
    let mut u = unit.chars();
    let exp = match u.next() {
        None | Some('B') => 0,
        Some(c) => 1 + "KMGTPE".find(c)?,
    };
    match (u.next(), u.next()) {
        (None, _) => {}
        (Some('i'), None) if unit_len == 2 && exp > 0 => {}
        _ => return None,
    }
    n.checked_mul(base.checked_pow(u32::try_from(exp).ok()?)?)
}

/// Rendering of `image-meta list` (Ceph's TextTable and formatters).
#[cfg(feature = "alloc")]
mod list {
    use crate::info::json_str;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// `rbd image-meta list`'s output of `pairs` (in key order) in
    /// `format` (`plain`, `json` or `xml`): a count line and a table, or
    /// JSON / XML objects keyed by the metadata keys (nothing at all when
    /// there are none).
    pub fn render_list(pairs: &[(String, String)], format: &str, pretty: bool) -> String {
        let n = pairs.len();
        match format {
            "json" | "xml" if n == 0 => String::new(),
            "json" => json(pairs, pretty),
            "xml" => xml(pairs, pretty),
            _ => {
                let mut s = format!(
                    "There {} {n} {} on this image{}\n",
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { "metadatum" } else { "metadata" },
                    if n == 0 { "." } else { ":" }
                );
                if n > 0 {
                    s.push('\n');
                    s.push_str(&table(pairs));
                }
                s
            }
        }
    }

    /// Ceph's TextTable of two left-aligned columns: each as wide as its
    /// longest cell (in bytes), two spaces between them.
    fn table(pairs: &[(String, String)]) -> String {
        let kw = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0).max(3);
        let vw = pairs.iter().map(|(_, v)| v.len()).max().unwrap_or(0).max(5);
        let mut s = String::new();
        for (k, v) in core::iter::once(("Key", "Value"))
            .chain(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            s.push_str(k);
            s.push_str(&" ".repeat(kw - k.len() + 2));
            s.push_str(v);
            s.push_str(&" ".repeat(vw - v.len()));
            s.push('\n');
        }
        s
    }

    fn json(pairs: &[(String, String)], pretty: bool) -> String {
        let items: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                let sep = if pretty { ": " } else { ":" };
                format!("{}{sep}{}", json_str(k), json_str(v))
            })
            .collect();
        if pretty {
            format!("{{\n    {}\n}}\n", items.join(",\n    "))
        } else {
            format!("{{{}}}\n", items.join(","))
        }
    }

    /// Ceph's XML text escaping (element names are written as they are, but
    /// for spaces, which become `_`).
    fn xml_text(s: &str) -> String {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '<' => o.push_str("&lt;"),
                '>' => o.push_str("&gt;"),
                '&' => o.push_str("&amp;"),
                '"' => o.push_str("&quot;"),
                '\'' => o.push_str("&apos;"),
                c if ((c as u32) < 0x20 && c != '\n' && c != '\t') || c == '\x7f' => {
                    o.push_str(&format!("&#x{:02x};", c as u32));
                }
                c => o.push(c),
            }
        }
        o
    }

    fn xml(pairs: &[(String, String)], pretty: bool) -> String {
        let (nl, ind) = if pretty { ("\n", " ") } else { ("", "") };
        let mut s = format!("<metadatas>{nl}");
        for (k, v) in pairs {
            let k = k.replace(' ', "_");
            s.push_str(&format!("{ind}<{k}>{}</{k}>{nl}", xml_text(v)));
        }
        s.push_str("</metadatas>\n");
        s.push_str(nl);
        s
    }
}
#[cfg(feature = "alloc")]
pub use list::render_list;

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "alloc")]
    #[test]
    fn list_as_rbd() {
        use alloc::string::ToString;
        assert_eq!(
            render_list(&[], "plain", false),
            "There are 0 metadata on this image.\n"
        );
        assert_eq!(render_list(&[], "json", false), "");
        let p = [("k 2".to_string(), "a<b".to_string())];
        assert_eq!(
            render_list(&p, "plain", false),
            "There is 1 metadatum on this image:\n\nKey  Value\nk 2  a<b  \n"
        );
        assert_eq!(render_list(&p, "json", false), "{\"k 2\":\"a<b\"}\n");
        assert_eq!(
            render_list(&p, "xml", false),
            "<metadatas><k_2>a&lt;b</k_2></metadatas>\n"
        );
    }

    /// What rbd 16.2.15 said to `rbd image-meta set IMG KEY VALUE`.
    #[test]
    fn as_librbd_decides() {
        for (k, v) in [
            ("user.a", "anything"),
            ("conf_", "x"),
            ("conf_rbd_cache", "1"),
            ("conf_rbd_cache", "TRUE"),
            ("conf_rbd_cache", "2"),
            ("conf_rbd_qos_iops_limit", "10K"),
            ("conf_rbd_cache_size", "1Mi"),
            ("conf_rbd_cache_size", "1M"),
            ("conf_rbd_cache_size", "1G"),
            ("conf_rbd_cache_policy", "writeback"),
            ("conf_rbd_cache_max_dirty_age", "2"),
        ] {
            assert_eq!(check(k, v), Ok(()), "{k}={v}");
        }
        assert_eq!(check("conf_bogus", "1"), Err(MetaError::NotImageOption));
        assert_eq!(
            check("conf_rbd_default_order", "22"),
            Err(MetaError::NotImageOption)
        );
        for (k, v) in [
            ("conf_rbd_cache", "yes"),
            ("conf_rbd_cache", "on"),
            ("conf_rbd_cache", "notabool"),
            ("conf_rbd_qos_iops_limit", "abc"),
            ("conf_rbd_qos_iops_limit", "1.5"),
            ("conf_rbd_cache_policy", "bogus"),
            ("conf_rbd_discard_granularity_bytes", "100"),
            ("conf_rbd_cache_max_dirty_age", "1.5x"),
            ("conf_rbd_concurrent_management_ops", "0"),
        ] {
            assert_eq!(check(k, v), Err(MetaError::BadValue), "{k}={v}");
        }
    }
}
