//! Browser glue for the rbdiff viewer.
//!
//! The platform-independent part lives here and is tested natively:
//! [`Session`] (a push decoder plus an [`Inspector`] plus a compact record
//! store for the viewer's table and coverage map) and [`chain::plan`]
//! (ordering dropped diffs into a chain). The `wasm` module (wasm32 only)
//! wraps them with wasm-bindgen and adds the Worker-side I/O: reading a
//! `Blob` with `FileReaderSync` for the merge.
//!
//! Every format decision comes from the `rbdiff` crate; this crate converts
//! types and keeps tables, nothing else.

pub mod chain;
pub mod session;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use session::{Session, SessionOptions};

/// rbd image feature bits (librbd `RBD_FEATURE_*`).
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

/// Names of the feature bits set in `bits`; unknown bits as hex.
pub fn feature_names(bits: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bits;
    for &(bit, name) in FEATURES {
        if bits & bit != 0 {
            out.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        out.push(format!("{rest:#x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_features() {
        assert_eq!(
            super::feature_names(61),
            [
                "layering",
                "exclusive-lock",
                "object-map",
                "fast-diff",
                "deep-flatten"
            ]
        );
        assert_eq!(super::feature_names(1 << 20), ["0x100000"]);
    }
}
