//! Byte-level constants of the rbd stream formats: banners and record tags.
//!
//! Everything here comes from Ceph's `src/tools/rbd/Utils.h`; see
//! `docs/spec/ceph-rbd-semantics.md` §1 for the layouts.

/// `rbd export-diff` banner (diff v1).
pub(crate) const DIFF_BANNER_V1: &[u8; 12] = b"rbd diff v1\n";
/// Banner of a diff v2 (only embedded in `rbd export --export-format 2`).
pub(crate) const DIFF_BANNER_V2: &[u8; 12] = b"rbd diff v2\n";
/// `rbd export --export-format 2` banner.
pub(crate) const IMAGE_BANNER_V2: &[u8; 13] = b"rbd image v2\n";
/// Banner that opens the diffs section of an image v2 stream.
pub(crate) const IMAGE_DIFFS_BANNER_V2: &[u8; 19] = b"rbd image diffs v2\n";

/// Diff record tags.
pub(crate) mod tag {
    /// `f`: from-snapshot name.
    pub const FROM_SNAP: u8 = b'f';
    /// `t`: to-snapshot name.
    pub const TO_SNAP: u8 = b't';
    /// `p`: snapshot protection status (v2 only).
    pub const PROTECTION: u8 = b'p';
    /// `s`: image size at the end point.
    pub const SIZE: u8 = b's';
    /// `w`: data write.
    pub const WRITE: u8 = b'w';
    /// `z`: zeroed extent.
    pub const ZERO: u8 = b'z';
    /// `e`: end of diff (no length field, also in v2).
    pub const END: u8 = b'e';
    /// `O`: image order (image v2 header).
    pub const ORDER: u8 = b'O';
    /// `T`: image features.
    pub const FEATURES: u8 = b'T';
    /// `U`: stripe unit.
    pub const STRIPE_UNIT: u8 = b'U';
    /// `C`: stripe count.
    pub const STRIPE_COUNT: u8 = b'C';
    /// `M`: image-meta key/value pair.
    pub const META: u8 = b'M';
    /// `E`: end of the image header (no length field).
    pub const IMAGE_END: u8 = b'E';
}

/// Length rbd 16.2.15 declares for the `p` record (it then writes only one byte).
pub(crate) const PROTECTION_DECLARED_LEN: u64 = 8;

/// The kind of a stream, told by its banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Format {
    /// `rbd diff v1` (`rbd export-diff`, `rbd merge-diff`).
    DiffV1,
    /// `rbd diff v2` (the diffs embedded in an image v2 export).
    DiffV2,
    /// `rbd image v2` (`rbd export --export-format 2`).
    ImageV2,
}

impl Format {
    /// The banner that opens a stream of this kind.
    pub fn banner(self) -> &'static [u8] {
        match self {
            Format::DiffV1 => DIFF_BANNER_V1,
            Format::DiffV2 => DIFF_BANNER_V2,
            Format::ImageV2 => IMAGE_BANNER_V2,
        }
    }

    /// A short human name: `rbd diff v1`, `rbd diff v2`, `rbd image v2`.
    pub fn name(self) -> &'static str {
        match self {
            Format::DiffV1 => "rbd diff v1",
            Format::DiffV2 => "rbd diff v2",
            Format::ImageV2 => "rbd image v2",
        }
    }

    /// Whether records carry a le64 length after the tag (v2 streams).
    pub fn has_lengths(self) -> bool {
        !matches!(self, Format::DiffV1)
    }
}

impl core::fmt::Display for Format {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Writes a tag byte as a readable token: `'w'` for printable ASCII, `0x51` otherwise.
pub(crate) struct TagDisplay(pub u8);

impl core::fmt::Display for TagDisplay {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}' (0x{:02x})", self.0 as char, self.0)
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// Little-endian u64 from the first 8 bytes of `b`.
#[inline]
pub(crate) fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Little-endian u32 from the first 4 bytes of `b`.
#[inline]
pub(crate) fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

/// rbd image feature bits and their names (librbd `RBD_FEATURE_*`).
pub const FEATURES: &[(u64, &str)] = &[
    (1, "layering"),
    (2, "striping"),
    (4, "exclusive-lock"),
    (8, "object-map"),
    (16, "fast-diff"),
    (32, "deep-flatten"),
    (64, "journaling"),
    (128, "data-pool"),
    (256, "operations"),
    (512, "migrating"),
    (1024, "non-primary"),
];

/// The bit of a feature name, as rbd spells it (`layering`, `exclusive-lock`, …).
pub fn feature_bit(name: &str) -> Option<u64> {
    FEATURES.iter().find(|&&(_, n)| n == name).map(|&(b, _)| b)
}

/// Names of the feature bits set in `bits`; unknown bits as one hex value.
#[cfg(feature = "alloc")]
pub fn feature_names(bits: u64) -> alloc::vec::Vec<alloc::string::String> {
    use alloc::string::ToString;
    let mut out = alloc::vec::Vec::new();
    let mut rest = bits;
    for &(bit, name) in FEATURES {
        if bits & bit != 0 {
            out.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        out.push(alloc::format!("{rest:#x}"));
    }
    out
}
