//! Browser glue for the rbdiff viewer.
//!
//! The platform-independent part lives here and is tested natively:
//! [`Session`] (a push decoder plus an [`Inspector`] plus a compact record
//! store for the viewer's table and coverage map) and [`chain::plan`]
//! (ordering dropped diffs into a chain). The `wasm` module (wasm32 only)
//! wraps them with wasm-bindgen for the viewer; `package` (wasm32 only) adds
//! the npm package's `Decoder` and `Merger` (its JS side is `web/npm/`,
//! built into `web/pkg` by `scripts/build-web.sh` with wasm-pack).
//!
//! Every format decision comes from the `rbdiff` crate; this crate converts
//! types and keeps tables, nothing else.

pub mod chain;
#[cfg(target_arch = "wasm32")]
mod package;
pub mod session;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use session::{Session, SessionOptions};

pub use rbdiff::{FEATURES, feature_names};

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
