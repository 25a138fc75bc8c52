//! A streaming inspection session: decoder, summary and a compact record table.

use rbdiff::inspect::{InspectOptions, InspectSession, RecordSummary, Summary};
use rbdiff::{Config, DecodeError, Event};
use serde::{Deserialize, Serialize};

/// Kind code of a `w` record in [`Session::rows`].
pub const KIND_WRITE: u8 = 0;
/// Kind code of a `z` record in [`Session::rows`].
pub const KIND_ZERO: u8 = 1;

/// Viewer options (all optional from JS).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct SessionOptions {
    /// Records kept in the table (counts are always complete). About 33 bytes each.
    pub max_rows: u64,
    /// Records per diff written by [`Session::export_json`].
    pub export_records: u64,
    /// Validation policy: `default` (structural errors fail, questionable
    /// content warns), `strict` (everything fails) or `rbd` (accept what rbd
    /// 16.2.15 accepts).
    #[serde(skip)]
    pub policy: Policy,
}

/// Decoder policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// [`Config::new`].
    #[default]
    Default,
    /// [`Config::strict`].
    Strict,
    /// [`Config::rbd_compatible`].
    Rbd,
}

impl Policy {
    /// Parses `default`, `strict` or `rbd`.
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "default" => Some(Policy::Default),
            "strict" => Some(Policy::Strict),
            "rbd" => Some(Policy::Rbd),
            _ => None,
        }
    }

    fn config(self) -> Config {
        match self {
            Policy::Default => Config::new(),
            Policy::Strict => Config::strict(),
            Policy::Rbd => Config::rbd_compatible(),
        }
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            max_rows: 8_000_000,
            export_records: InspectOptions::default().max_records as u64,
            policy: Policy::Default,
        }
    }
}

/// Record columns, one entry per kept record (struct of arrays: ~33 bytes a row).
#[derive(Clone, Debug, Default)]
struct Rows {
    at: Vec<u64>,
    offset: Vec<u64>,
    len: Vec<u64>,
    kind: Vec<u8>,
    /// Bytes of the record before its payload (the whole record for `z`).
    head: Vec<u8>,
}

impl Rows {
    fn len(&self) -> usize {
        self.at.len()
    }
}

/// Where one diff's rows are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiffRows {
    /// Diff index in the stream.
    pub index: u64,
    /// First row of the diff.
    pub first_row: u64,
    /// Rows of the diff kept in the table.
    pub rows: u64,
    /// The diff's `s` size, once read.
    pub size: Option<u64>,
}

/// Live numbers while a stream is being decoded.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Progress {
    /// Bytes pushed.
    pub bytes: u64,
    /// Format name, once the banner was read.
    pub format: Option<&'static str>,
    /// Records in the table.
    pub rows: u64,
    /// Diffs begun.
    pub diffs: u64,
    /// `w` records in all diffs so far.
    pub n_w: u64,
    /// `z` records in all diffs so far.
    pub n_z: u64,
    /// `w` payload bytes so far.
    pub w_bytes: u64,
    /// Bytes covered by `z` records so far.
    pub z_bytes: u64,
    /// Decoding stopped (end of stream or error).
    pub stopped: bool,
}

/// The summary the page shows: the crate's [`Summary`] plus table positions.
#[derive(Serialize)]
struct View<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    /// The decode error as the CLI prints it (`… at stream offset N`).
    error_text: Option<String>,
    /// The table row where decoding stopped (one past the last record).
    error_row: Option<u64>,
    /// Table rows.
    rows: u64,
    /// Records exist that the table does not hold.
    rows_truncated: bool,
    /// Where each diff's rows are.
    diff_rows: &'a [DiffRows],
}

/// A record of the table, for the detail / hex view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RowDetail {
    /// Row number.
    pub row: u64,
    /// Stream offset of the tag.
    pub at: u64,
    /// `w` or `z`.
    pub kind: &'static str,
    /// Image offset.
    pub offset: u64,
    /// Length.
    pub length: u64,
    /// Bytes of the record before the payload (all of it for `z`).
    pub header_len: u64,
    /// Stream offset of the payload (`w`).
    pub payload_at: Option<u64>,
    /// Index of the diff holding the record.
    pub diff: u64,
}

/// Decoder + inspector + record table for one stream, fed in chunks.
#[derive(Debug)]
pub struct Session {
    opts: SessionOptions,
    /// The crate's session (decoder, inspector, sticky error) until
    /// [`finish`](Self::finish) takes it.
    insp: Option<InspectSession>,
    rows: Rows,
    diffs: Vec<DiffRows>,
    /// Row whose header length is known once the next event arrives.
    pending: Option<usize>,
    rows_dropped: bool,
    fed: u64,
    error: Option<DecodeError>,
    summary: Option<Summary>,
    live: Progress,
}

impl Session {
    /// A session at the start of a stream.
    pub fn new(opts: SessionOptions) -> Self {
        Session {
            opts,
            insp: Some(InspectSession::new(
                opts.policy.config(),
                InspectOptions::new().with_max_records(0),
            )),
            rows: Rows::default(),
            diffs: Vec::new(),
            pending: None,
            rows_dropped: false,
            fed: 0,
            error: None,
            summary: None,
            live: Progress::default(),
        }
    }

    /// True once the stream ended, failed or was finished.
    pub fn stopped(&self) -> bool {
        self.summary.is_some()
            || self.error.is_some()
            || self.insp.as_ref().is_some_and(InspectSession::is_done)
    }

    /// Feed the next chunk (`eof`: nothing follows). Returns `true` when
    /// decoding stopped for good (an error, or the session was finished);
    /// bytes after the end of the stream are still wanted (they are counted
    /// as trailing bytes).
    pub fn push(&mut self, chunk: &[u8], eof: bool) -> bool {
        if self.error.is_some() || self.summary.is_some() {
            return true;
        }
        self.fed += chunk.len() as u64;
        let Some(insp) = self.insp.as_mut() else {
            return true;
        };
        let rows = &mut self.rows;
        let diffs = &mut self.diffs;
        let pending = &mut self.pending;
        let dropped = &mut self.rows_dropped;
        let live = &mut self.live;
        let max_rows = self.opts.max_rows;
        let r = insp.feed_with(chunk, eof, |at, ev, _| {
            if let Some(row) = pending.take() {
                rows.head[row] = u8::try_from(at - rows.at[row]).unwrap_or(u8::MAX);
            }
            let rec = match *ev {
                Event::Banner(f) => {
                    live.format = Some(f.name());
                    if f != rbdiff::Format::ImageV2 {
                        diffs.push(DiffRows {
                            index: 0,
                            first_row: rows.len() as u64,
                            ..DiffRows::default()
                        });
                        live.diffs += 1;
                    }
                    None
                }
                Event::DiffBegin { index } => {
                    diffs.push(DiffRows {
                        index,
                        first_row: rows.len() as u64,
                        ..DiffRows::default()
                    });
                    live.diffs += 1;
                    None
                }
                Event::Size(s) => {
                    if let Some(d) = diffs.last_mut() {
                        d.size = Some(s);
                    }
                    None
                }
                Event::Write { offset, len } => {
                    live.n_w += 1;
                    live.w_bytes = live.w_bytes.saturating_add(len);
                    Some((KIND_WRITE, offset, len))
                }
                Event::Zero { offset, len } => {
                    live.n_z += 1;
                    live.z_bytes = live.z_bytes.saturating_add(len);
                    Some((KIND_ZERO, offset, len))
                }
                _ => None,
            };
            if let Some((kind, offset, len)) = rec {
                if (rows.len() as u64) < max_rows {
                    *pending = Some(rows.len());
                    rows.at.push(at);
                    rows.offset.push(offset);
                    rows.len.push(len);
                    rows.kind.push(kind);
                    rows.head.push(0);
                    if let Some(d) = diffs.last_mut() {
                        d.rows += 1;
                    }
                } else {
                    *dropped = true;
                }
            }
        });
        match r {
            Ok(_) => false,
            Err(e) => {
                if let Some(row) = self.pending.take() {
                    let head = e.offset.saturating_sub(self.rows.at[row]);
                    self.rows.head[row] = u8::try_from(head).unwrap_or(u8::MAX);
                }
                self.error = Some(e);
                true
            }
        }
    }

    /// Ends the stream: reports truncation if the end was not reached, and
    /// freezes the summary.
    pub fn finish(&mut self) {
        if self.summary.is_some() {
            return;
        }
        if !self.stopped() {
            self.push(&[], true);
        }
        let Some(insp) = self.insp.take() else {
            return;
        };
        let mut s = insp.finish(self.fed);
        for d in &mut s.diffs {
            d.records_truncated = false;
        }
        self.summary = Some(s);
        self.live.stopped = true;
    }

    /// Live numbers.
    pub fn progress(&self) -> Progress {
        Progress {
            bytes: self.fed,
            rows: self.rows.len() as u64,
            stopped: self.stopped(),
            ..self.live.clone()
        }
    }

    /// The decode error, if any.
    pub fn error(&self) -> Option<&DecodeError> {
        self.error.as_ref()
    }

    /// The frozen summary (after [`finish`](Self::finish)).
    pub fn summary(&self) -> Option<&Summary> {
        self.summary.as_ref()
    }

    /// Rows in the table.
    pub fn rows(&self) -> u64 {
        self.rows.len() as u64
    }

    /// Where each diff's rows are.
    pub fn diff_rows(&self) -> &[DiffRows] {
        &self.diffs
    }

    /// The summary for the page, as JSON (records are in the table, not here).
    pub fn summary_json(&self) -> String {
        let empty = Summary::default();
        let summary = self.summary.as_ref().unwrap_or(&empty);
        let view = View {
            summary,
            error_text: self.error.as_ref().map(|e| e.to_string()),
            error_row: self.error.as_ref().map(|_| self.rows.len() as u64),
            rows: self.rows.len() as u64,
            rows_truncated: self.rows_dropped,
            diff_rows: &self.diffs,
        };
        serde_json::to_string(&view).unwrap_or_else(|e| format!("{{\"error_text\":\"{e}\"}}"))
    }

    /// The summary with up to `export_records` records per diff, as pretty
    /// JSON, for download.
    pub fn export_json(&self, file_name: &str) -> String {
        #[derive(Serialize)]
        struct Export<'a> {
            file: &'a str,
            #[serde(flatten)]
            summary: Summary,
            error_text: Option<String>,
        }
        let mut summary = self.summary.clone().unwrap_or_default();
        let cap = self.opts.export_records;
        for (d, rows) in summary.diffs.iter_mut().zip(&self.diffs) {
            let first = usize::try_from(rows.first_row).unwrap_or(usize::MAX);
            let n = rows.rows.min(cap);
            let end = first.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            d.records = (first..end.min(self.rows.len()))
                .map(|i| RecordSummary {
                    stream_offset: self.rows.at[i],
                    tag: if self.rows.kind[i] == KIND_WRITE {
                        'w'
                    } else {
                        'z'
                    },
                    offset: self.rows.offset[i],
                    length: self.rows.len[i],
                })
                .collect();
            d.records_truncated = (d.records.len() as u64) < d.n_w + d.n_z;
        }
        let e = Export {
            file: file_name,
            summary,
            error_text: self.error.as_ref().map(|e| e.to_string()),
        };
        serde_json::to_string_pretty(&e).unwrap_or_default()
    }

    /// Rows `from..from+count` as `[at, kind, offset, len, header_len]` each
    /// (as f64: exact below 2^53).
    pub fn page(&self, from: u64, count: u64) -> Vec<f64> {
        let n = self.rows.len();
        let from = usize::try_from(from).unwrap_or(n).min(n);
        let to = from
            .saturating_add(usize::try_from(count).unwrap_or(usize::MAX))
            .min(n);
        let mut out = Vec::with_capacity((to - from) * 5);
        for i in from..to {
            out.push(self.rows.at[i] as f64);
            out.push(f64::from(self.rows.kind[i]));
            out.push(self.rows.offset[i] as f64);
            out.push(self.rows.len[i] as f64);
            out.push(f64::from(self.rows.head[i]));
        }
        out
    }

    /// One row in full.
    pub fn detail(&self, row: u64) -> Option<RowDetail> {
        let i = usize::try_from(row).ok().filter(|&i| i < self.rows.len())?;
        let write = self.rows.kind[i] == KIND_WRITE;
        let head = u64::from(self.rows.head[i]);
        let diff = self
            .diffs
            .iter()
            .rev()
            .find(|d| d.first_row <= row)
            .map_or(0, |d| d.index);
        Some(RowDetail {
            row,
            at: self.rows.at[i],
            kind: if write { "w" } else { "z" },
            offset: self.rows.offset[i],
            length: self.rows.len[i],
            header_len: head,
            payload_at: write.then(|| self.rows.at[i] + head),
            diff,
        })
    }

    /// The last row starting at or before stream offset `at` (rows are in
    /// stream order).
    pub fn row_at_stream(&self, at: u64) -> Option<u64> {
        let k = self.rows.at.partition_point(|&a| a <= at);
        k.checked_sub(1).map(|k| k as u64)
    }

    /// The first row of diff `diff` (position in [`diff_rows`](Self::diff_rows))
    /// that reaches past image offset `offset`.
    pub fn row_at_image(&self, diff: usize, offset: u64) -> Option<u64> {
        let d = self.diffs.get(diff)?;
        let first = usize::try_from(d.first_row).ok()?;
        let end = first + usize::try_from(d.rows).ok()?;
        (first..end)
            .find(|&i| self.rows.offset[i].saturating_add(self.rows.len[i]) > offset)
            .map(|i| i as u64)
    }

    /// Coverage of image range `[start, end)` by diff `diff` in `bins` equal
    /// bins: `bins` fractions of data (`w`) followed by `bins` fractions of
    /// zeros (`z`). Overlapping records may push a fraction above 1.
    #[allow(clippy::cast_possible_truncation)] // f64 -> f32 fractions: precision loss is fine
    pub fn coverage(&self, diff: usize, start: u64, end: u64, bins: u32) -> Vec<f32> {
        let nb = bins as usize;
        let mut out = vec![0f32; 2 * nb];
        let Some(d) = self.diffs.get(diff) else {
            return out;
        };
        if end <= start || nb == 0 {
            return out;
        }
        let span = (end - start) as f64;
        let width = span / nb as f64;
        let first = usize::try_from(d.first_row).unwrap_or(usize::MAX);
        let last = first.saturating_add(usize::try_from(d.rows).unwrap_or(0));
        for i in first..last.min(self.rows.len()) {
            let a = self.rows.offset[i].max(start);
            let b = self.rows.offset[i]
                .saturating_add(self.rows.len[i])
                .min(end);
            if a >= b {
                continue;
            }
            let lane = if self.rows.kind[i] == KIND_WRITE {
                0
            } else {
                nb
            };
            let (fa, fb) = ((a - start) as f64, (b - start) as f64);
            let bin_lo = bin_of(fa / width, nb);
            let bin_hi = bin_of((fb / width).ceil() - 1.0, nb);
            for bin in bin_lo..=bin_hi {
                let lo = (bin as f64 * width).max(fa);
                let hi = ((bin + 1) as f64 * width).min(fb);
                if hi > lo {
                    out[lane + bin] += ((hi - lo) / width) as f32;
                }
            }
        }
        out
    }
}

#[allow(clippy::cast_possible_truncation)] // clamped to [0, nb) first
fn bin_of(x: f64, nb: usize) -> usize {
    x.floor().clamp(0.0, (nb - 1) as f64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = "../tests/fixtures/rbd-16.2.15";

    /// A corpus file; a missing corpus fails the test.
    fn corpus(path: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(CORPUS)
            .join(path);
        std::fs::read(&p).unwrap_or_else(|e| panic!("corpus file {}: {e}", p.display()))
    }

    fn run(bytes: &[u8], chunk: usize) -> Session {
        let mut s = Session::new(SessionOptions::default());
        for c in bytes.chunks(chunk.max(1)) {
            if s.push(c, false) {
                break;
            }
        }
        s.finish();
        s
    }

    #[test]
    fn corpus_diff_counts_and_chunking_invariance() {
        let bytes = corpus("basic-64k/diff/s1..s2.diff");
        let whole = run(&bytes, bytes.len());
        let s = whole.summary().unwrap();
        assert!(s.valid);
        assert_eq!(s.diffs.len(), 1);
        let d = &s.diffs[0];
        assert_eq!((d.n_w, d.n_z, d.w_bytes, d.z_bytes), (1, 5, 20, 75036));
        assert_eq!(whole.rows(), 6);
        for chunk in [1, 3, 7, 64] {
            let s2 = run(&bytes, chunk);
            assert_eq!(s2.summary_json(), whole.summary_json(), "chunk {chunk}");
            assert_eq!(s2.page(0, 100), whole.page(0, 100), "chunk {chunk}");
        }
        // v1: a w record has 17 header bytes, then the payload.
        let w = (0..6)
            .find_map(|r| whole.detail(r).filter(|d| d.kind == "w"))
            .unwrap();
        assert_eq!(w.header_len, 17);
        assert_eq!(w.payload_at, Some(w.at + 17));
        let z = (0..6)
            .find_map(|r| whole.detail(r).filter(|d| d.kind == "z"))
            .unwrap();
        assert_eq!(z.header_len, 17);
    }

    #[test]
    fn truncated_stream_reports_offset_and_row() {
        let bytes = corpus("import-diff/inputs/truncated-in-data.diff");
        let s = run(&bytes, 10);
        let e = s.error().expect("truncated");
        assert_eq!(e.offset, bytes.len() as u64);
        assert!(s.summary_json().contains("at stream offset 95"));
        assert_eq!(s.row_at_stream(e.offset), Some(0));
        assert!(!s.summary().unwrap().valid);
    }

    #[test]
    fn coverage_bins() {
        let bytes = corpus("basic-64k/diff/s1..s2.diff");
        let s = run(&bytes, 4096);
        let size = s.diff_rows()[0].size.unwrap();
        let cov = s.coverage(0, 0, size, 64);
        let w: f64 = cov[..64].iter().map(|&x| f64::from(x)).sum::<f64>() * (size as f64 / 64.0);
        let z: f64 = cov[64..].iter().map(|&x| f64::from(x)).sum::<f64>() * (size as f64 / 64.0);
        assert!((w - 20.0).abs() < 0.5, "{w}");
        assert!((z - 75036.0).abs() < 1.0, "{z}");
    }
}
