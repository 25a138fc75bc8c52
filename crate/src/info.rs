//! `rbd info`'s output (rbd 16.2.15, `tools/rbd/action/Info.cc`): the
//! fields a cluster image's properties give, in rbd's order, as plain text
//! or through Ceph's JSON formatter (compact or `--pretty-format`).
//!
//! The front end fills an [`ImageInfo`] from librbd; which lines appear
//! (striping only with the `striping` feature, the journal and mirroring
//! only with `journaling` or an enabled mirror, ...) is decided here.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// librbd's image feature names, by bit (`FEATURE_MAPPING`).
pub const FEATURES: &[(u64, &str)] = &[
    (1, "layering"),
    (1 << 1, "striping"),
    (1 << 2, "exclusive-lock"),
    (1 << 3, "object-map"),
    (1 << 4, "fast-diff"),
    (1 << 5, "deep-flatten"),
    (1 << 6, "journaling"),
    (1 << 7, "data-pool"),
    (1 << 8, "operations"),
    (1 << 9, "migrating"),
    (1 << 10, "non-primary"),
    (1 << 11, "dirty-cache"),
];

/// librbd's operation feature names, by bit.
pub const OP_FEATURES: &[(u64, &str)] = &[
    (1, "clone-parent"),
    (1 << 1, "clone-child"),
    (1 << 2, "group"),
    (1 << 3, "snap-trash"),
];

/// The image flags rbd names.
pub const FLAGS: &[(u64, &str)] = &[(1, "object map invalid"), (1 << 1, "fast diff invalid")];

const STRIPINGV2: u64 = 1 << 1;
const JOURNALING: u64 = 1 << 6;

/// The names of the bits of `mask` that `table` names, in bit order.
pub fn names(table: &[(u64, &'static str)], mask: u64) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// Ceph's `byte_u_t`: `512 B`, `4 MiB`, `1.5 KiB` (an exact multiple of
/// the unit without decimals, else the most decimals (2, 1, 0) that keep
/// the number, a space and the unit within 7 characters: 10.5 MiB prints
/// as `10 MiB`).
pub fn bytes_u(v: u64) -> String {
    const U: [&str; 7] = [" B", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB"];
    let (mut n, mut i) = (v, 0usize);
    while n >= 1024 && i < 6 {
        n /= 1024;
        i += 1;
    }
    let mult = 1u64 << (10 * i);
    if i == 0 || v.is_multiple_of(mult) {
        return format!("{n}{}", U[i]);
    }
    #[allow(clippy::cast_precision_loss)]
    let x = v as f64 / mult as f64;
    let mut s = String::new();
    for p in (0..=2).rev() {
        s = format!("{x:.p$}{}", U[i]);
        if s.len() <= 7 {
            break;
        }
    }
    s
}

/// The parent of a clone (`rbd_get_parent`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parent {
    /// Pool name.
    pub pool: String,
    /// Namespace (empty: none).
    pub namespace: String,
    /// Image name.
    pub image: String,
    /// Image id.
    pub id: String,
    /// Snapshot name.
    pub snapshot: String,
    /// The parent is in the trash.
    pub trash: bool,
    /// Bytes of the parent the clone still reads through.
    pub overlap: u64,
}

/// An image's mirroring (`rbd_mirror_image_get_info` / `_get_mode`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirroring {
    /// `journal` or `snapshot`.
    pub mode: String,
    /// `disabling`, `enabled` or `disabled`.
    pub state: String,
    /// The mirror's global id (enabled images).
    pub global_id: String,
    /// This side is the primary.
    pub primary: bool,
}

/// What `rbd info` shows of an image (or of one of its snapshots).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ImageInfo {
    pub name: String,
    /// The image id (format 2).
    pub id: Option<String>,
    pub size: u64,
    pub objects: u64,
    pub order: u32,
    pub object_size: u64,
    pub snapshot_count: u64,
    /// The data pool's name, when it is not the image's pool.
    pub data_pool: Option<String>,
    pub block_name_prefix: String,
    /// A format 1 image (no features, flags or id).
    pub old_format: bool,
    pub features: u64,
    pub op_features: u64,
    pub flags: u64,
    /// `pool/[namespace/]group`, when the image is in a group.
    pub group: Option<String>,
    /// `ctime(3)` of the timestamps librbd keeps (none when zero).
    pub create_timestamp: Option<String>,
    pub access_timestamp: Option<String>,
    pub modify_timestamp: Option<String>,
    /// The snapshot shown is protected (`Some` only for a snapshot).
    pub protected: Option<bool>,
    /// The snapshot limit, when one is set.
    pub snapshot_limit: Option<u64>,
    pub parent: Option<Parent>,
    pub stripe_unit: u64,
    pub stripe_count: u64,
    pub mirroring: Option<Mirroring>,
}

/// A broken-down time (`struct tm`, in the zone the caller chose).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tm {
    /// The year (e.g. 2026).
    pub year: i64,
    /// 0 (January) ..= 11.
    pub month: usize,
    /// Day of the month, 1 ..= 31.
    pub mday: u32,
    /// 0 ..= 23.
    pub hour: u32,
    /// 0 ..= 59.
    pub min: u32,
    /// 0 ..= 60.
    pub sec: u32,
    /// 0 (Sunday) ..= 6.
    pub wday: usize,
}

impl Tm {
    /// `ctime(3)`'s text without its newline: `Sun Dec  6 07:13:24 2026`,
    /// as rbd prints the image timestamps.
    pub fn ctime(&self) -> String {
        const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        format!(
            "{} {}{:3} {:02}:{:02}:{:02} {}",
            DAYS.get(self.wday).unwrap_or(&"???"),
            MONTHS.get(self.month).unwrap_or(&"???"),
            self.mday,
            self.hour,
            self.min,
            self.sec,
            self.year
        )
    }
}

/// A value of Ceph's formatter tree.
enum V {
    S(String),
    U(u64),
    B(bool),
    /// An array of strings, each an element of this name in XML.
    A(Vec<&'static str>),
    O(Vec<(&'static str, V)>),
}

fn s(x: &str) -> V {
    V::S(x.to_string())
}

impl ImageInfo {
    /// The lines after the flags that appear only when known.
    fn optional(&self) -> [(&'static str, &Option<String>); 4] {
        [
            ("group", &self.group),
            ("create_timestamp", &self.create_timestamp),
            ("access_timestamp", &self.access_timestamp),
            ("modify_timestamp", &self.modify_timestamp),
        ]
    }

    fn mirror_shown(&self) -> Option<&Mirroring> {
        self.mirroring
            .as_ref()
            .filter(|m| self.features & JOURNALING != 0 || m.state != "disabled")
    }

    /// rbd's plain text.
    pub fn plain(&self) -> String {
        let mut o = format!(
            "rbd image '{}':\n\tsize {} in {} objects\n\torder {} ({} objects)\n\tsnapshot_count: {}\n",
            self.name,
            bytes_u(self.size),
            self.objects,
            self.order,
            bytes_u(self.object_size),
            self.snapshot_count
        );
        let mut line = |k: &str, v: &str| o.push_str(&format!("\t{k}: {v}\n"));
        if let Some(id) = &self.id {
            line("id", id);
        }
        if let Some(p) = &self.data_pool {
            line("data_pool", p);
        }
        line("block_name_prefix", &self.block_name_prefix);
        line("format", if self.old_format { "1" } else { "2" });
        if !self.old_format {
            line("features", &names(FEATURES, self.features).join(", "));
            line(
                "op_features",
                &names(OP_FEATURES, self.op_features).join(", "),
            );
            line("flags", &names(FLAGS, self.flags).join(", "));
        }
        for (k, v) in self.optional() {
            if let Some(v) = v {
                line(k, v);
            }
        }
        if let Some(p) = self.protected {
            line("protected", if p { "True" } else { "False" });
        }
        if let Some(l) = self.snapshot_limit {
            line("snapshot_limit", &l.to_string());
        }
        if let Some(p) = &self.parent {
            let ns = if p.namespace.is_empty() {
                String::new()
            } else {
                format!("{}/", p.namespace)
            };
            let trash = if p.trash {
                format!(" (trash {})", p.id)
            } else {
                String::new()
            };
            let spec = format!("{}/{ns}{}@{}{trash}", p.pool, p.image, p.snapshot);
            line("parent", &spec);
            line("overlap", &bytes_u(p.overlap));
        }
        if self.features & STRIPINGV2 != 0 {
            line("stripe unit", &bytes_u(self.stripe_unit));
            line("stripe count", &self.stripe_count.to_string());
        }
        if self.features & JOURNALING != 0 {
            line("journal", self.id.as_deref().unwrap_or(""));
        }
        if let Some(m) = self.mirror_shown() {
            line("mirroring state", &m.state);
            if m.state != "disabled" {
                line("mirroring mode", &m.mode);
                line("mirroring global id", &m.global_id);
                line(
                    "mirroring primary",
                    if m.primary { "true" } else { "false" },
                );
            }
        }
        o
    }

    fn tree(&self) -> Vec<(&'static str, V)> {
        let mut t = vec![("name", s(&self.name))];
        if let Some(id) = &self.id {
            t.push(("id", s(id)));
        }
        t.extend([
            ("size", V::U(self.size)),
            ("objects", V::U(self.objects)),
            ("order", V::U(u64::from(self.order))),
            ("object_size", V::U(self.object_size)),
            ("snapshot_count", V::U(self.snapshot_count)),
        ]);
        if let Some(p) = &self.data_pool {
            t.push(("data_pool", s(p)));
        }
        t.push(("block_name_prefix", s(&self.block_name_prefix)));
        t.push(("format", V::U(if self.old_format { 1 } else { 2 })));
        if !self.old_format {
            t.push(("features", V::A(names(FEATURES, self.features))));
            t.push(("op_features", V::A(names(OP_FEATURES, self.op_features))));
            t.push(("flags", V::A(names(FLAGS, self.flags))));
        }
        for (k, v) in self.optional() {
            if let Some(v) = v {
                t.push((k, s(v)));
            }
        }
        if let Some(p) = self.protected {
            t.push(("protected", s(if p { "true" } else { "false" })));
        }
        if let Some(l) = self.snapshot_limit {
            t.push(("snapshot_limit", V::U(l)));
        }
        if let Some(p) = &self.parent {
            t.push((
                "parent",
                V::O(vec![
                    ("pool", s(&p.pool)),
                    ("pool_namespace", s(&p.namespace)),
                    ("image", s(&p.image)),
                    ("id", s(&p.id)),
                    ("snapshot", s(&p.snapshot)),
                    ("trash", V::B(p.trash)),
                    ("overlap", V::U(p.overlap)),
                ]),
            ));
        }
        if self.features & STRIPINGV2 != 0 {
            t.push(("stripe_unit", V::U(self.stripe_unit)));
            t.push(("stripe_count", V::U(self.stripe_count)));
        }
        if self.features & JOURNALING != 0 {
            t.push(("journal", s(self.id.as_deref().unwrap_or(""))));
        }
        if let Some(m) = self.mirror_shown() {
            let mut o = vec![("mode", s(&m.mode)), ("state", s(&m.state))];
            if m.state != "disabled" {
                o.push(("global_id", s(&m.global_id)));
                o.push(("primary", V::B(m.primary)));
            }
            t.push(("mirroring", V::O(o)));
        }
        t
    }

    /// Ceph's JSON formatter output (`--format json [--pretty-format]`),
    /// with its final newline.
    pub fn json(&self, pretty: bool) -> String {
        let mut o = String::new();
        json_value(&mut o, &V::O(self.tree()), pretty, 0);
        o.push('\n');
        o
    }
}

/// One snapshot as `rbd snap ls` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapListRow {
    /// Snapshot id.
    pub id: u64,
    /// Snapshot name.
    pub name: String,
    /// The image's size at the snapshot, in bytes.
    pub size: u64,
    /// Protected from removal (clones may depend on it).
    pub protected: bool,
    /// `ctime(3)`'s text, or empty when the snapshot has no timestamp.
    pub timestamp: String,
}

/// `rbd snap ls` of user snapshots: `json` as rbd's compact formatter
/// prints it (keys in rbd's order, a newline after), else rbd's table:
/// columns two spaces apart, each padded to its width, ids and sizes
/// right-aligned under left-aligned headings; nothing without snapshots.
pub fn snap_list(rows: &[SnapListRow], json: bool) -> String {
    if json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"id\":{},\"name\":{},\"size\":{},\"protected\":\"{}\",\"timestamp\":{}}}",
                    r.id,
                    json_str(&r.name),
                    r.size,
                    r.protected,
                    json_str(&r.timestamp)
                )
            })
            .collect();
        return format!("[{}]\n", items.join(","));
    }
    if rows.is_empty() {
        return String::new();
    }
    let head = ["SNAPID", "NAME", "SIZE", "PROTECTED", "TIMESTAMP"];
    let right = [true, false, true, false, false];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                r.name.clone(),
                bytes_u(r.size),
                if r.protected { "yes" } else { "" }.to_string(),
                r.timestamp.clone(),
            ]
        })
        .collect();
    let mut w = head.map(str::len);
    for c in &cells {
        for (wi, x) in w.iter_mut().zip(c) {
            *wi = (*wi).max(x.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, c: [&str; 5], align: [bool; 5]| {
        let parts: Vec<String> = (0..5)
            .map(|i| match align[i] {
                true => format!("{:>1$}", c[i], w[i]),
                false => format!("{:<1$}", c[i], w[i]),
            })
            .collect();
        out.push_str(&parts.join("  "));
        out.push('\n');
    };
    line(&mut out, head, [false; 5]);
    for c in &cells {
        line(&mut out, [&c[0], &c[1], &c[2], &c[3], &c[4]], right);
    }
    out
}

/// Ceph's JSON string escaping: `"`, `\`, newline and tab by letter, other
/// control characters (and DEL) as `\u00XX`; everything else as is.
pub fn json_str(x: &str) -> String {
    let mut o = String::with_capacity(x.len() + 2);
    o.push('"');
    for c in x.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn json_value(o: &mut String, v: &V, pretty: bool, depth: usize) {
    let pad = |o: &mut String, d: usize| {
        if pretty {
            o.push('\n');
            o.push_str(&"    ".repeat(d));
        }
    };
    match v {
        V::S(x) => o.push_str(&json_str(x)),
        V::U(n) => o.push_str(&n.to_string()),
        V::B(b) => o.push_str(if *b { "true" } else { "false" }),
        V::A(items) => {
            o.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                pad(o, depth + 1);
                o.push_str(&json_str(x));
            }
            if !items.is_empty() {
                pad(o, depth);
            }
            o.push(']');
        }
        V::O(fields) => {
            o.push('{');
            for (i, (k, x)) in fields.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                pad(o, depth + 1);
                o.push_str(&json_str(k));
                o.push_str(if pretty { ": " } else { ":" });
                json_value(o, x, pretty, depth + 1);
            }
            if !fields.is_empty() {
                pad(o, depth);
            }
            o.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn snap_list_as_rbd() {
        // `rbd snap ls` of a real 16.2.15 cluster (cat -A: a padded last column).
        let rows = vec![
            SnapListRow {
                id: 4,
                name: "a".into(),
                size: 8 << 20,
                protected: true,
                timestamp: "Sun Dec  6 10:58:23 2026".into(),
            },
            SnapListRow {
                id: 5,
                name: "a-much-longer-name".into(),
                size: 1_153_433_600,
                protected: false,
                timestamp: "Sun Dec  6 10:58:23 2026".into(),
            },
        ];
        assert_eq!(
            snap_list(&rows, false),
            "SNAPID  NAME                SIZE     PROTECTED  TIMESTAMP               \n\
             \x20    4  a                     8 MiB  yes        Sun Dec  6 10:58:23 2026\n\
             \x20    5  a-much-longer-name  1.1 GiB             Sun Dec  6 10:58:23 2026\n"
        );
        assert_eq!(
            snap_list(&rows[..1], true),
            "[{\"id\":4,\"name\":\"a\",\"size\":8388608,\"protected\":\"true\",\"timestamp\":\"Sun Dec  6 10:58:23 2026\"}]\n"
        );
        assert_eq!(snap_list(&[], true), "[]\n");
        assert_eq!(snap_list(&[], false), "");
    }

    use super::*;

    #[test]
    fn ctime_as_glibc() {
        let t = Tm {
            year: 2026,
            month: 11,
            mday: 6,
            hour: 7,
            min: 13,
            sec: 4,
            wday: 0,
        };
        assert_eq!(t.ctime(), "Sun Dec  6 07:13:04 2026");
        let t = Tm { mday: 16, ..t };
        assert_eq!(t.ctime(), "Sun Dec 16 07:13:04 2026");
    }

    #[test]
    fn byte_units_as_ceph() {
        for (v, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (10 << 20, "10 MiB"),
            (1536, "1.5 KiB"),
            (10239, "10 KiB"),
            (1_048_575, "1024 KiB"),
            (10752 << 10, "10 MiB"),
            (1025 << 10, "1.0 MiB"),
            (u64::MAX, "16 EiB"),
        ] {
            assert_eq!(bytes_u(v), want, "{v}");
        }
    }

    fn clone_info() -> ImageInfo {
        ImageInfo {
            name: "c".into(),
            id: Some("101dc108b47e".into()),
            size: 10 << 20,
            objects: 3,
            order: 22,
            object_size: 4 << 20,
            block_name_prefix: "rbd_data.101dc108b47e".into(),
            features: 61,
            create_timestamp: Some("Sun Dec  6 07:13:25 2026".into()),
            access_timestamp: Some("Sun Dec  6 07:13:25 2026".into()),
            modify_timestamp: Some("Sun Dec  6 07:13:25 2026".into()),
            parent: Some(Parent {
                pool: "rbd".into(),
                image: "a".into(),
                id: "101789a39b40".into(),
                snapshot: "s1".into(),
                overlap: 10 << 20,
                ..Parent::default()
            }),
            stripe_unit: 4 << 20,
            stripe_count: 1,
            mirroring: Some(Mirroring {
                mode: "journal".into(),
                state: "disabled".into(),
                ..Mirroring::default()
            }),
            ..ImageInfo::default()
        }
    }

    /// The outputs of rbd 16.2.15 for a clone (from a real cluster).
    #[test]
    fn clone_as_rbd_prints_it() {
        let i = clone_info();
        assert_eq!(
            i.plain(),
            "rbd image 'c':\n\tsize 10 MiB in 3 objects\n\torder 22 (4 MiB objects)\n\tsnapshot_count: 0\n\tid: 101dc108b47e\n\tblock_name_prefix: rbd_data.101dc108b47e\n\tformat: 2\n\tfeatures: layering, exclusive-lock, object-map, fast-diff, deep-flatten\n\top_features: \n\tflags: \n\tcreate_timestamp: Sun Dec  6 07:13:25 2026\n\taccess_timestamp: Sun Dec  6 07:13:25 2026\n\tmodify_timestamp: Sun Dec  6 07:13:25 2026\n\tparent: rbd/a@s1\n\toverlap: 10 MiB\n"
        );
        assert_eq!(
            i.json(false),
            "{\"name\":\"c\",\"id\":\"101dc108b47e\",\"size\":10485760,\"objects\":3,\"order\":22,\"object_size\":4194304,\"snapshot_count\":0,\"block_name_prefix\":\"rbd_data.101dc108b47e\",\"format\":2,\"features\":[\"layering\",\"exclusive-lock\",\"object-map\",\"fast-diff\",\"deep-flatten\"],\"op_features\":[],\"flags\":[],\"create_timestamp\":\"Sun Dec  6 07:13:25 2026\",\"access_timestamp\":\"Sun Dec  6 07:13:25 2026\",\"modify_timestamp\":\"Sun Dec  6 07:13:25 2026\",\"parent\":{\"pool\":\"rbd\",\"pool_namespace\":\"\",\"image\":\"a\",\"id\":\"101789a39b40\",\"snapshot\":\"s1\",\"trash\":false,\"overlap\":10485760}}\n"
        );
        let p = i.json(true);
        assert!(p.starts_with("{\n    \"name\": \"c\",\n"), "{p}");
        assert!(
            p.contains("    \"features\": [\n        \"layering\",\n"),
            "{p}"
        );
        assert!(p.contains("    \"op_features\": [],\n"), "{p}");
        assert!(
            p.ends_with("        \"overlap\": 10485760\n    }\n}\n"),
            "{p}"
        );
    }

    #[test]
    fn journaling_shows_striping_journal_and_mirroring() {
        let i = ImageInfo {
            features: 1 | 2 | 4 | 64,
            stripe_unit: 64 << 10,
            stripe_count: 4,
            parent: None,
            ..clone_info()
        };
        let p = i.plain();
        assert!(
            p.ends_with("\tstripe unit: 64 KiB\n\tstripe count: 4\n\tjournal: 101dc108b47e\n\tmirroring state: disabled\n"),
            "{p}"
        );
        assert!(
            i.json(false).ends_with(
                "\"stripe_unit\":65536,\"stripe_count\":4,\"journal\":\"101dc108b47e\",\"mirroring\":{\"mode\":\"journal\",\"state\":\"disabled\"}}\n"
            )
        );
        // Without journaling, a disabled mirror is not shown at all.
        assert!(!clone_info().plain().contains("mirroring"));
    }
}
