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

pub use rbdiff::format::{FEATURES, feature_names};

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
