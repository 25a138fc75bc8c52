//! Browser glue (wasm-bindgen) for the rbdiff viewer.
