//! wasm-bindgen surface used by `web/worker.js`.
//!
//! Numbers cross as `f64` (exact below 2^53, far beyond any real image);
//! summaries cross as JSON text so that 64-bit values never fail to convert.

use crate::chain::{self, Entry};
use crate::session::{Policy, Session, SessionOptions};
use js_sys::{Array, Float32Array, Float64Array, Function, Uint8Array};
use rbdiff::merge::{MergeOptions, merge_streams};
use std::io::{self, Read, Write};
use wasm_bindgen::prelude::*;
use web_sys::{Blob, FileReaderSync};

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

fn js_io(e: JsValue) -> io::Error {
    io::Error::other(
        e.as_string()
            .or_else(|| {
                e.dyn_ref::<js_sys::Error>()
                    .map(|e| String::from(e.message()))
            })
            .unwrap_or_else(|| "blob read failed".into()),
    )
}

/// `Read` over a `Blob`, with synchronous slice reads (Worker only).
struct BlobReader {
    blob: Blob,
    reader: FileReaderSync,
    pos: f64,
    size: f64,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.size {
            return Ok(0);
        }
        let want = (buf.len() as f64).min(self.size - self.pos);
        let slice = self
            .blob
            .slice_with_f64_and_f64(self.pos, self.pos + want)
            .map_err(js_io)?;
        let ab = self.reader.read_as_array_buffer(&slice).map_err(js_io)?;
        let arr = Uint8Array::new(&ab);
        let n = usize::try_from(arr.length()).unwrap_or(0).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        arr.subarray(0, u32::try_from(n).unwrap_or(u32::MAX))
            .copy_to(&mut buf[..n]);
        self.pos += n as f64;
        Ok(n)
    }
}

/// `Write` that hands every buffer to a JS callback as a fresh `Uint8Array`.
struct JsChunks<'a> {
    on_chunk: &'a Function,
}

impl Write for JsChunks<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.on_chunk
                .call1(&JsValue::NULL, &Uint8Array::from(buf))
                .map_err(js_io)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Merges the diffs in `blobs` (chain order) into one v1 diff, as `rbd
/// merge-diff` would. Output goes to `on_chunk(Uint8Array)` in pieces;
/// `on_progress(bytes_read)` is called now and then. Returns stats as JSON
/// `{records, bytes_written, size}`. Worker only (synchronous reads).
#[wasm_bindgen(js_name = mergeBlobs)]
pub fn merge_blobs(
    blobs: Array,
    on_chunk: &Function,
    on_progress: &Function,
) -> Result<String, JsError> {
    let reader =
        FileReaderSync::new().map_err(|_| JsError::new("FileReaderSync needs a Worker"))?;
    let mut inputs = Vec::new();
    for b in blobs.iter() {
        let blob: Blob = b
            .dyn_into()
            .map_err(|_| JsError::new("mergeBlobs: expected Blob/File objects"))?;
        let size = blob.size();
        inputs.push(BlobReader {
            blob,
            reader: reader.clone(),
            pos: 0.0,
            size,
        });
    }
    let mut last = 0u64;
    let mut progress = |n: u64| {
        if n >= last + (8 << 20) {
            last = n;
            let _ = on_progress.call1(&JsValue::NULL, &JsValue::from_f64(n as f64));
        }
    };
    let stats = merge_streams(
        &mut inputs,
        JsChunks { on_chunk },
        &MergeOptions::default(),
        &mut progress,
    )
    .map_err(|e| JsError::new(&e.to_string()))?;
    Ok(format!(
        "{{\"records\":{},\"bytes_written\":{},\"size\":{}}}",
        stats.records, stats.bytes_written, stats.size
    ))
}
