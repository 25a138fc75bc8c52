//! `meta.json`, the metadata of a store image: its layout, image-meta and
//! snapshots, and the validation every load goes through (rbd's limits), so
//! a damaged or hostile file is refused naming the field instead of making
//! a command panic or compute nonsense. Pure (no I/O): the fuzz target
//! `meta_json` calls [`ImageMeta::parse`] directly.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Object orders rbd allows (4 KiB ..= 32 MiB objects).
pub const ORDERS: std::ops::RangeInclusive<u8> = 12..=25;
/// Largest image or snapshot size: what a file can hold (`off_t`).
pub const MAX_SIZE: u64 = i64::MAX as u64;
/// Every feature bit rbd 16.2 knows (layering ..= non-primary).
pub const FEATURES_ALL: u64 = (1 << 11) - 1;
/// Longest snapshot name, in bytes.
pub const MAX_NAME: usize = 255;
/// Most snapshots an image may list (rbd's `rbd_max_snap`-sized bound,
/// generous; keeps a hostile file from costing unbounded work per lookup).
pub const MAX_SNAPS: usize = 1 << 16;
/// Layout version written and understood.
pub const VERSION: u32 = 1;

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes of a hex string (`None` if it is not one).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Bytes kept exactly in JSON: a string when they are UTF-8, else
/// `{"hex": "…"}` (snapshot names come from streams, which carry bytes).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum BytesRepr {
    Text(String),
    Hex { hex: String },
}

/// Serde for `Vec<u8>` as [`BytesRepr`].
pub mod bytes_repr {
    use super::*;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(t) => BytesRepr::Text(t.to_string()),
            Err(_) => BytesRepr::Hex { hex: hex(b) },
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match BytesRepr::deserialize(d)? {
            BytesRepr::Text(t) => Ok(t.into_bytes()),
            BytesRepr::Hex { hex } => {
                unhex(&hex).ok_or_else(|| serde::de::Error::custom("invalid hex in name"))
            }
        }
    }
}

/// Serde for `Option<Vec<u8>>` as an optional [`BytesRepr`].
pub mod opt_bytes_repr {
    use super::*;

    pub fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct W<'a>(#[serde(with = "bytes_repr")] &'a [u8]);
        b.as_deref().map(W).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "bytes_repr")] Vec<u8>);
        Ok(Option::<W>::deserialize(d)?.map(|W(b)| b))
    }
}

/// Image-meta stored losslessly: UTF-8 as text, anything else as hex.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct MetaEntry {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    key_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    value_hex: Option<String>,
}

fn split(b: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(b) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(hex(b))),
    }
}

fn join(text: &Option<String>, hexed: &Option<String>) -> Option<Vec<u8>> {
    match (text, hexed) {
        (Some(t), _) => Some(t.as_bytes().to_vec()),
        (None, Some(h)) => unhex(h),
        (None, None) => None,
    }
}

mod meta_map {
    use super::*;

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<Vec<u8>, Vec<u8>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let v: Vec<MetaEntry> = m
            .iter()
            .map(|(k, v)| {
                let (key, key_hex) = split(k);
                let (value, value_hex) = split(v);
                MetaEntry {
                    key,
                    key_hex,
                    value,
                    value_hex,
                }
            })
            .collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, D::Error> {
        let v: Vec<MetaEntry> = Vec::deserialize(d)?;
        let mut m = BTreeMap::new();
        for e in v {
            let k = join(&e.key, &e.key_hex)
                .ok_or_else(|| serde::de::Error::custom("bad image-meta key"))?;
            let val = join(&e.value, &e.value_hex)
                .ok_or_else(|| serde::de::Error::custom("bad image-meta value"))?;
            m.insert(k, val);
        }
        Ok(m)
    }
}

/// One snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapMeta {
    /// Snapshot id (also names its data file).
    pub id: u64,
    /// Name: the exact bytes it was created with (from a stream, any bytes).
    #[serde(with = "bytes_repr")]
    pub name: Vec<u8>,
    /// Size at snapshot time.
    pub size: u64,
    /// Protected from removal.
    pub protected: bool,
}

impl SnapMeta {
    /// The name as text (lossy), for messages and listings.
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// Layout version of this file.
    pub version: u32,
    /// HEAD size (informational; the head file's length is authoritative).
    pub size: u64,
    /// Object order (object size = 1 << order).
    pub order: u8,
    /// Feature mask.
    pub features: u64,
    /// Stripe unit in bytes.
    pub stripe_unit: u64,
    /// Stripe count.
    pub stripe_count: u64,
    /// image-meta key/value pairs (bytes, sorted bytewise like rbd).
    #[serde(with = "meta_map", default)]
    pub meta: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Snapshots in creation order.
    #[serde(default)]
    pub snapshots: Vec<SnapMeta>,
    /// Next snapshot id.
    pub next_snap_id: u64,
}

/// Why a `meta.json` is refused: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaError {
    /// The field (`order`, `snapshots[2].id`, … or `json` for syntax).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field '{}': {}", self.field, self.reason)
    }
}

impl std::error::Error for MetaError {}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> MetaError {
    MetaError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Why a snapshot name is refused, or `Ok`: non-empty, at most
/// [`MAX_NAME`] bytes, no `/`, `@`, `:`, `\` or control characters, not
/// starting with `.` (the same rule as for names given on the command line;
/// other bytes, not UTF-8 too, are kept as they are).
pub fn check_snap_name(name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty snapshot name".into());
    }
    if name.len() > MAX_NAME {
        return Err(format!("snapshot name longer than {MAX_NAME} bytes"));
    }
    let shown = String::from_utf8_lossy(name);
    if name[0] == b'.' {
        return Err(format!("snapshot name '{shown}' must not start with '.'"));
    }
    if let Some(c) = name
        .iter()
        .find(|&&c| matches!(c, b'/' | b'\\' | b'@' | b':') || c < 0x20 || c == 0x7f)
    {
        return Err(format!(
            "invalid character {:?} in snapshot name '{shown}'",
            char::from(*c)
        ));
    }
    Ok(())
}

impl ImageMeta {
    /// Fresh metadata.
    pub fn new(size: u64, order: u8, features: u64, stripe_unit: u64, stripe_count: u64) -> Self {
        ImageMeta {
            version: VERSION,
            size,
            order,
            features,
            stripe_unit,
            stripe_count,
            meta: BTreeMap::new(),
            snapshots: Vec::new(),
            next_snap_id: 1,
        }
    }

    /// Object size in bytes (the order is validated on load: 12..=25).
    pub fn object_size(&self) -> u64 {
        1u64 << self.order.min(63)
    }

    /// Parse and validate the bytes of a `meta.json`.
    pub fn parse(bytes: &[u8]) -> Result<ImageMeta, MetaError> {
        let m: ImageMeta = serde_json::from_slice(bytes).map_err(|e| bad("json", e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// The JSON text of this metadata.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// The id the next snapshot gets, if one is left (ids are never reused;
    /// the one after it must exist too).
    pub fn next_id(&self) -> Option<u64> {
        self.next_snap_id.checked_add(1).map(|_| self.next_snap_id)
    }

    /// Check every field against rbd's limits.
    pub fn validate(&self) -> Result<(), MetaError> {
        if self.version != VERSION {
            return Err(bad(
                "version",
                format!("{} (only {VERSION} is known)", self.version),
            ));
        }
        if !ORDERS.contains(&self.order) {
            return Err(bad("order", format!("{} (rbd allows 12..=25)", self.order)));
        }
        if self.size > MAX_SIZE {
            return Err(bad("size", format!("{} (at most {MAX_SIZE})", self.size)));
        }
        if self.features & !FEATURES_ALL != 0 {
            return Err(bad(
                "features",
                format!(
                    "{:#x} has bits rbd does not know (known: {FEATURES_ALL:#x})",
                    self.features
                ),
            ));
        }
        let obj = self.object_size();
        if self.stripe_unit == 0 || self.stripe_unit > obj || !obj.is_multiple_of(self.stripe_unit)
        {
            return Err(bad(
                "stripe_unit",
                format!(
                    "{} is not a factor of the object size {obj}",
                    self.stripe_unit
                ),
            ));
        }
        if self.stripe_count == 0 {
            return Err(bad("stripe_count", "0 (at least 1)"));
        }
        if self.next_snap_id == 0 {
            return Err(bad("next_snap_id", "0 (ids start at 1)"));
        }
        self.validate_snapshots()
    }

    fn validate_snapshots(&self) -> Result<(), MetaError> {
        if self.snapshots.len() > MAX_SNAPS {
            return Err(bad(
                "snapshots",
                format!("{} snapshots (at most {MAX_SNAPS})", self.snapshots.len()),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut prev = 0u64;
        for (i, s) in self.snapshots.iter().enumerate() {
            let f = |name: &str| format!("snapshots[{i}].{name}");
            if s.id <= prev || s.id >= self.next_snap_id {
                return Err(bad(
                    f("id"),
                    format!(
                        "{} (ids must increase in creation order, from 1, below next_snap_id {})",
                        s.id, self.next_snap_id
                    ),
                ));
            }
            prev = s.id;
            check_snap_name(&s.name).map_err(|r| bad(f("name"), r))?;
            if !names.insert(s.name.as_slice()) {
                return Err(bad(
                    f("name"),
                    format!("'{}' appears twice", s.display_name()),
                ));
            }
            if s.size > MAX_SIZE {
                return Err(bad(f("size"), format!("{} (at most {MAX_SIZE})", s.size)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> ImageMeta {
        let mut m = ImageMeta::new(1 << 20, 22, 61, 1 << 22, 1);
        m.snapshots.push(SnapMeta {
            id: 1,
            name: b"a\xff".to_vec(),
            size: 4096,
            protected: false,
        });
        m.next_snap_id = 2;
        m
    }

    #[test]
    fn round_trip_keeps_name_bytes() {
        let m = good();
        let text = m.to_json();
        assert!(String::from_utf8_lossy(&text).contains("\"hex\": \"61ff\""));
        assert_eq!(ImageMeta::parse(&text).unwrap(), m);
    }

    #[test]
    fn refusals_name_the_field() {
        type Edit = Box<dyn Fn(&mut ImageMeta)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("order", Box::new(|m| m.order = 64)),
            ("order", Box::new(|m| m.order = 11)),
            ("size", Box::new(|m| m.size = u64::MAX)),
            ("features", Box::new(|m| m.features = 1 << 40)),
            ("stripe_unit", Box::new(|m| m.stripe_unit = 0)),
            ("stripe_unit", Box::new(|m| m.stripe_unit = 3)),
            ("stripe_count", Box::new(|m| m.stripe_count = 0)),
            ("next_snap_id", Box::new(|m| m.next_snap_id = 0)),
            ("snapshots[0].id", Box::new(|m| m.next_snap_id = 1)),
            (
                "snapshots[0].name",
                Box::new(|m| m.snapshots[0].name = b"x/y".to_vec()),
            ),
            (
                "snapshots[0].size",
                Box::new(|m| m.snapshots[0].size = u64::MAX),
            ),
            ("version", Box::new(|m| m.version = 2)),
        ];
        for (field, f) in cases {
            let mut m = good();
            f(&mut m);
            let e = ImageMeta::parse(&m.to_json()).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
        assert_eq!(ImageMeta::parse(b"{").unwrap_err().field, "json");
    }

    #[test]
    fn last_id() {
        let mut m = good();
        m.next_snap_id = u64::MAX;
        assert!(ImageMeta::parse(&m.to_json()).is_ok());
        assert_eq!(m.next_id(), None);
        m.next_snap_id = u64::MAX - 1;
        assert_eq!(m.next_id(), Some(u64::MAX - 1));
    }

    #[test]
    fn hex_roundtrip() {
        assert_eq!(unhex(&hex(b"\x00\xffab")), Some(b"\x00\xffab".to_vec()));
        assert_eq!(unhex("0"), None);
    }
}
