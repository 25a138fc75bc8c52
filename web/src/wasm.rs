//! wasm-bindgen surface of the viewer (`web/worker.js`): the table-keeping
//! inspection session and the chain planner. The npm package's own classes
//! are in `package.rs`; merges go through its `Merger`.
//!
//! Numbers cross as `f64` (exact below 2^53, far beyond any real image);
//! summaries cross as JSON text so that 64-bit values never fail to convert.

use crate::chain::{self, Entry};
use crate::session::{Policy, Session, SessionOptions};
use js_sys::{Float32Array, Float64Array};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("rbdiff-web panic: {info}")));
    }));
}

/// The crate version.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // JS numbers are clamped first
fn to_u64(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        x.min(u64::MAX as f64) as u64
    } else {
        0
    }
}

/// A streaming inspector: push chunks of a stream, read its summary, table
/// pages and coverage. Never sees more than one chunk at a time.
#[wasm_bindgen]
pub struct StreamInspector {
    s: Session,
}

#[wasm_bindgen]
impl StreamInspector {
    /// `opts`: `{ max_rows?, export_records?, policy?: "default"|"strict"|"rbd" }`.
    #[wasm_bindgen(constructor)]
    pub fn new(opts: JsValue) -> Result<StreamInspector, JsError> {
        let mut o = SessionOptions::default();
        if opts.is_object() {
            o = serde_wasm_bindgen::from_value(opts.clone())
                .map_err(|e| JsError::new(&format!("bad options: {e}")))?;
            if let Some(p) = js_sys::Reflect::get(&opts, &"policy".into())
                .ok()
                .and_then(|v| v.as_string())
            {
                o.policy = Policy::parse(&p)
                    .ok_or_else(|| JsError::new(&format!("unknown policy {p:?}")))?;
            }
        }
        Ok(StreamInspector { s: Session::new(o) })
    }

    /// Feed the next chunk. Returns `true` when decoding stopped at an error.
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        self.s.push(chunk, false)
    }

    /// End of input: returns the summary JSON (see `Session::summary_json`).
    pub fn finish(&mut self) -> String {
        self.s.finish();
        self.s.summary_json()
    }

    /// Live counters as JSON.
    pub fn progress(&self) -> String {
        serde_json::to_string(&self.s.progress()).unwrap_or_default()
    }

    /// Table rows `[from, from+count)`: 5 numbers a row
    /// (stream offset, kind 0=w 1=z, image offset, length, header length).
    #[wasm_bindgen(js_name = recordsPage)]
    pub fn records_page(&self, from: f64, count: u32) -> Float64Array {
        Float64Array::from(&self.s.page(to_u64(from), u64::from(count))[..])
    }

    /// Number of table rows.
    pub fn rows(&self) -> f64 {
        self.s.rows() as f64
    }

    /// One row in full, as JSON (`null` if out of range).
    pub fn detail(&self, row: f64) -> String {
        serde_json::to_string(&self.s.detail(to_u64(row))).unwrap_or_default()
    }

    /// Coverage of `[start, end)` by the diff at position `diff`: `bins`
    /// data fractions then `bins` zero fractions.
    pub fn coverage(&self, diff: u32, start: f64, end: f64, bins: u32) -> Float32Array {
        let d = usize::try_from(diff).unwrap_or(usize::MAX);
        Float32Array::from(
            &self
                .s
                .coverage(d, to_u64(start), to_u64(end), bins.min(1 << 16))[..],
        )
    }

    /// The row holding stream offset `at` (-1 if before the first record).
    #[wasm_bindgen(js_name = rowAtStream)]
    pub fn row_at_stream(&self, at: f64) -> f64 {
        self.s.row_at_stream(to_u64(at)).map_or(-1.0, |r| r as f64)
    }

    /// The first row of diff position `diff` reaching past image offset `offset` (-1: none).
    #[wasm_bindgen(js_name = rowAtImage)]
    pub fn row_at_image(&self, diff: u32, offset: f64) -> f64 {
        let d = usize::try_from(diff).unwrap_or(usize::MAX);
        self.s
            .row_at_image(d, to_u64(offset))
            .map_or(-1.0, |r| r as f64)
    }

    /// The summary with records, pretty JSON, for download.
    #[wasm_bindgen(js_name = exportJson)]
    pub fn export_json(&self, file_name: &str) -> String {
        self.s.export_json(file_name)
    }
}

/// Names of the rbd image feature bits set in `bits` (unknown bits as `0x…`).
#[wasm_bindgen(js_name = featureNames)]
pub fn feature_names(bits: f64) -> Vec<String> {
    crate::feature_names(to_u64(bits))
}

/// Orders diffs into a chain: `entries` is a JSON array of
/// `{id, name, format, diffs, from, to, size, valid}`; returns the plan as JSON.
#[wasm_bindgen(js_name = planChain)]
pub fn plan_chain(entries: &str) -> Result<String, JsError> {
    let entries: Vec<Entry> =
        serde_json::from_str(entries).map_err(|e| JsError::new(&format!("bad entries: {e}")))?;
    Ok(serde_json::to_string(&chain::plan(&entries)).unwrap_or_default())
}
