//! The npm package's low-level classes (`rbdiff` on npm, `web/npm/`):
//! a streaming [`Decoder`] (validate + summarise) and an N-way [`Merger`]
//! with bounded memory. Both are the crate's engines (`inspect::InspectSession`,
//! `merge::PushMerge`) with JS-shaped input and errors; the package's JS
//! drives them from files, Blobs and streams.

use rbdiff::inspect::{InspectOptions, InspectSession};
use rbdiff::merge::{MergeErrorKind, MergeStreamError, Phase, PushMerge};
use rbdiff::{Config, Format, FormatSet};
use wasm_bindgen::prelude::*;

/// Decoder options from JS: `{ policy?, accept?, maxRecords?, maxWarnings? }`.
#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct DecoderOptions {
    policy: Option<String>,
    accept: Option<String>,
    max_records: Option<usize>,
    max_warnings: Option<usize>,
}

fn formats(accept: &str) -> Option<FormatSet> {
    Some(match accept {
        "all" => FormatSet::ALL,
        "diffs" => FormatSet::DIFFS,
        "diff-v1" => FormatSet::V1,
        "image-v2" => FormatSet::IMAGE,
        _ => return None,
    })
}

fn bad(msg: String) -> JsValue {
    JsError::new(&msg).into()
}

/// A streaming decoder: push chunks of one stream (diff v1, diff v2 or
/// image v2), then `finish()` for its summary. Memory is bounded by the
/// chunk pushed plus the kept summary (`maxRecords`, `maxWarnings`).
#[wasm_bindgen]
pub struct Decoder(InspectSession);

#[wasm_bindgen]
impl Decoder {
    /// `opts`: `{ policy?: "default"|"strict"|"rbd", accept?: "all"|"diffs"|"diff-v1"|"image-v2",
    /// maxRecords?: number (default 100000), maxWarnings?: number (default 100) }`.
    #[wasm_bindgen(constructor)]
    pub fn new(opts: JsValue) -> Result<Decoder, JsValue> {
        let o: DecoderOptions = if opts.is_object() {
            serde_wasm_bindgen::from_value(opts).map_err(|e| bad(format!("bad options: {e}")))?
        } else {
            DecoderOptions::default()
        };
        let policy = o.policy.as_deref().unwrap_or("default");
        let mut config = match policy {
            "default" => Config::new(),
            "strict" => Config::strict(),
            "rbd" => Config::rbd_compatible(),
            p => {
                return Err(bad(format!(
                    "unknown policy {p:?} (default, strict or rbd)"
                )));
            }
        };
        if let Some(a) = o.accept.as_deref() {
            config = config
                .with_formats(formats(a).ok_or_else(|| bad(format!("unknown accept {a:?}")))?);
        }
        let d = InspectOptions::default();
        Ok(Decoder(InspectSession::new(
            config,
            InspectOptions::new()
                .with_max_records(o.max_records.unwrap_or(d.max_records))
                .with_max_warnings(o.max_warnings.unwrap_or(d.max_warnings)),
        )))
    }

    /// Decodes the next chunk (any size). Returns `true` once decoding
    /// stopped at an error (later chunks are ignored).
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        self.0.feed(chunk, false).is_err()
    }

    /// Ends the stream and returns the summary as JSON text (the crate's
    /// `inspect::Summary`; `error` is `{offset, kind, message}` if invalid).
    pub fn finish(&mut self) -> String {
        // A truncated or invalid stream ends in the summary's `error`.
        let _ = self.0.end();
        let s = self.0.summary(self.0.position());
        serde_json::to_string(&s).unwrap_or_default()
    }

    /// Stream offset of the next byte to decode.
    pub fn position(&self) -> f64 {
        self.0.position() as f64
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Header => "header",
        Phase::RecordHeader => "record-header",
        Phase::Data => "data",
        Phase::Output => "output",
    }
}

/// A merge failure as a JS `Error` with `input` (0-based, or null),
/// `phase`, `kind` and, when located in an input, `offset`.
fn merge_error(e: &MergeStreamError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    let kind = match (&e.kind, &e.located) {
        (MergeErrorKind::Chain { .. }, _) => "snapshot-chain",
        (MergeErrorKind::NoInputs, _) => "no-inputs",
        (MergeErrorKind::Usage(_), _) => "usage",
        (_, Some(d)) => d.kind.code().as_str(),
        _ => "invalid-input",
    };
    let set = |k: &str, v: JsValue| {
        let _ = js_sys::Reflect::set(&err, &k.into(), &v);
    };
    set("name", "MergeError".into());
    set("kind", kind.into());
    set("phase", phase_name(e.phase).into());
    set(
        "input",
        e.input.map_or(JsValue::NULL, |i| (i as f64).into()),
    );
    set(
        "offset",
        e.located
            .map_or(JsValue::NULL, |d| (d.offset as f64).into()),
    );
    err.into()
}

/// `rbd merge-diff` for N consecutive diffs (chain order), push/pull:
/// `pull(max)` returns the next merged bytes; when `needInput >= 0`, push
/// the next chunk of that input (an empty chunk ends it); stop at `done`.
/// Memory: the chunks pushed plus `max`, whatever the input sizes.
#[wasm_bindgen]
pub struct Merger {
    m: PushMerge,
    need: i32,
    done: bool,
}

#[wasm_bindgen]
impl Merger {
    /// A merge of `inputs` diffs into a `format` diff: `"v1"` (default, what
    /// rbd merge-diff writes) or `"v2"`.
    #[wasm_bindgen(constructor)]
    pub fn new(inputs: u32, format: Option<String>) -> Result<Merger, JsValue> {
        let format = match format.as_deref().unwrap_or("v1") {
            "v1" => Format::DiffV1,
            "v2" => Format::DiffV2,
            f => return Err(bad(format!("unknown merge format {f:?} (v1 or v2)"))),
        };
        Ok(Merger {
            m: PushMerge::new(inputs as usize, format),
            need: -1,
            done: false,
        })
    }

    /// The next chunk of input `input` (empty: that input ended).
    pub fn push(&mut self, input: u32, chunk: &[u8]) -> Result<(), JsValue> {
        self.m
            .push(input as usize, chunk)
            .map_err(|e| merge_error(&e))
    }

    /// Runs until `max` output bytes are ready, an input is needed or the
    /// merge is complete; returns the output (at most `max` bytes).
    pub fn pull(&mut self, max: u32) -> Result<Vec<u8>, JsValue> {
        let step = self.m.pull(max as usize).map_err(|e| merge_error(&e))?;
        self.need = step
            .need_input
            .map_or(-1, |i| i32::try_from(i).unwrap_or(i32::MAX));
        self.done = step.done;
        Ok(step.output)
    }

    /// The input to push next, or -1.
    #[wasm_bindgen(getter, js_name = needInput)]
    pub fn need_input(&self) -> i32 {
        self.need
    }

    /// The merged stream is complete and all of it was pulled.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> bool {
        self.done
    }

    /// Image size of the result, once every header was read.
    pub fn size(&self) -> Option<f64> {
        self.m.size().map(|s| s as f64)
    }

    /// Records written so far.
    pub fn records(&self) -> f64 {
        self.m.records() as f64
    }

    /// Output bytes produced so far.
    #[wasm_bindgen(js_name = bytesWritten)]
    pub fn bytes_written(&self) -> f64 {
        self.m.bytes_written() as f64
    }
}
