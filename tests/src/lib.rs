//! Shared helpers for the cross-cutting tests of rbdiff.
//!
//! * fixture access: the real rbd 16.2.15 corpus in `tests/fixtures/rbd-16.2.15`
//!   ([`fixtures_root`], [`cases`], [`stream_files`], [`ext_results`]);
//! * a naive reference model of an rbd image ([`Model`]): a `Vec<u8>` and the
//!   import-diff rules (resize on `s`, `w` writes, `z` zeroes, clipped at the size,
//!   entirely beyond the size is an error);
//! * chunk splitters ([`split_whole`], [`split_bytes`], [`split_random`]) and a
//!   seeded RNG ([`Rng`]);
//! * [`decode`]: decode a stream in given chunks through [`Pump`] and return
//!   normalised owned events ([`Ev`]) and the error; [`decode_raw`] drives the
//!   bare [`Decoder`] feeding exactly what it asks for;
//! * [`summarise`]: the manifest-style summary of decoded diffs;
//! * [`encode`]: re-encode normalised events with [`Encoder`].

#![allow(clippy::cast_possible_truncation)] // test code, 64-bit hosts only

use rbdiff::{
    Config, DecodeError, Decoder, DiffHeader, EncodeError, Encoder, ErrorKind, Event, Format,
    ImageHeader, Pump, PumpError, Step,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- fixtures

/// `tests/fixtures/rbd-16.2.15`, the copy of the real-rbd corpus kept in this repository.
pub fn fixtures_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rbd-16.2.15");
    assert!(p.is_dir(), "fixture corpus not found at {}", p.display());
    p
}

/// One case directory with its parsed `manifest.json`.
#[derive(Debug, Clone)]
pub struct Case {
    /// Directory name (`basic-64k`, ...).
    pub name: String,
    /// Absolute directory.
    pub dir: PathBuf,
    /// Parsed manifest.
    pub manifest: Value,
}

impl Case {
    /// `files[rel]` or `unstored_files[rel]`.
    pub fn entry(&self, rel: &str) -> Option<&Value> {
        self.manifest["files"]
            .get(rel)
            .or_else(|| self.manifest.get("unstored_files").and_then(|u| u.get(rel)))
    }

    /// Reads a file of this case (relative path, may use `../<case>/`).
    pub fn read(&self, rel: &str) -> Vec<u8> {
        let p = self.dir.join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

/// Every case directory that has a `manifest.json`, sorted by name.
pub fn cases() -> Vec<Case> {
    let root = fixtures_root();
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root).unwrap() {
        let dir = e.unwrap().path();
        let mf = dir.join("manifest.json");
        if mf.is_file() {
            let manifest: Value = serde_json::from_slice(&std::fs::read(&mf).unwrap()).unwrap();
            out.push(Case {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                dir,
                manifest,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 8,
        "expected the 8 manifest cases, found {}",
        out.len()
    );
    out
}

/// The case called `name`.
pub fn case(name: &str) -> Case {
    cases().into_iter().find(|c| c.name == name).expect("case")
}

/// What a manifest says a stream file is.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamKind {
    /// A diff (v1 or v2) with a parsed summary (`files[..]["diff"]`).
    Diff(Value),
    /// An image v2 export (`files[..]["export_v2"]`).
    ExportV2(Value),
    /// An input the manifest's parser rejected (`files[..]["parse_error"]`).
    ParseError(String),
    /// A stream file with no parsed summary (`import-export-v2/inputs`).
    Unparsed,
}

/// A stream file listed in a manifest.
#[derive(Debug, Clone)]
pub struct StreamFile {
    /// Case name.
    pub case: String,
    /// Path relative to the case directory.
    pub rel: String,
    /// Absolute path.
    pub path: PathBuf,
    /// The whole manifest entry.
    pub entry: Value,
    /// Its kind.
    pub kind: StreamKind,
}

impl StreamFile {
    /// `case/rel`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.case, self.rel)
    }
    /// File contents; checks size and sha256 against the manifest.
    pub fn read(&self) -> Vec<u8> {
        let data =
            std::fs::read(&self.path).unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        assert_eq!(
            data.len() as u64,
            self.entry["size"].as_u64().unwrap(),
            "{} size",
            self.id()
        );
        assert_eq!(
            sha256_hex(&data),
            self.entry["sha256"].as_str().unwrap(),
            "{} sha256",
            self.id()
        );
        data
    }
    /// True if rbd itself wrote the file (or it is a byte range cut out of such a file).
    pub fn made_by_rbd(&self) -> bool {
        let p = self.entry["produced_by"].as_str().unwrap_or("");
        p.starts_with("rbd ") || (p.starts_with("bytes [") && p.contains("written by rbd export"))
    }
}

/// Every stored file with a `diff`, `export_v2` or `parse_error` entry, in all manifests.
pub fn stream_files() -> Vec<StreamFile> {
    let mut out = Vec::new();
    for c in cases() {
        let files = c.manifest["files"].as_object().unwrap();
        for (rel, entry) in files {
            let kind = if let Some(d) = entry.get("diff") {
                StreamKind::Diff(d.clone())
            } else if let Some(x) = entry.get("export_v2") {
                StreamKind::ExportV2(x.clone())
            } else if let Some(p) = entry.get("parse_error") {
                StreamKind::ParseError(p.as_str().unwrap().to_string())
            } else if rel.ends_with(".diff") || rel.ends_with(".v2") || rel.ends_with(".v2diff") {
                StreamKind::Unparsed
            } else {
                continue;
            };
            out.push(StreamFile {
                case: c.name.clone(),
                rel: rel.clone(),
                path: c.dir.join(rel),
                entry: entry.clone(),
                kind,
            });
        }
    }
    out.sort_by_key(|f| f.id());
    out
}

/// `extension-compat/results.json`.
pub fn ext_results() -> Value {
    let p = fixtures_root().join("extension-compat/results.json");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// An `extension-compat/inputs/<name>` file, checked against `results.json`.
pub fn ext_input(name: &str) -> Vec<u8> {
    let p = fixtures_root().join("extension-compat").join(name);
    let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let r = ext_results();
    let meta = &r["inputs"][name];
    assert_eq!(data.len() as u64, meta["size"].as_u64().unwrap(), "{name}");
    assert_eq!(
        sha256_hex(&data),
        meta["sha256"].as_str().unwrap(),
        "{name}"
    );
    data
}

/// Lower-case hex sha256.
pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------- RNG & splitting

/// splitmix64: small, seeded, reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// Next u64.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Chunk lengths: the whole stream in one chunk.
pub fn split_whole(len: usize) -> Vec<usize> {
    vec![len]
}

/// Chunk lengths: one byte each.
pub fn split_bytes(len: usize) -> Vec<usize> {
    vec![1; len]
}

/// Chunk lengths from a seeded RNG: a mix of tiny (0..=3, empty chunks included),
/// small and large chunks, so that items get split at every kind of place.
pub fn split_random(len: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut left = len;
    // Scale so that big files do not take millions of chunks.
    let big = (len / 64).max(64) as u64;
    while left > 0 {
        let n = match rng.below(8) {
            0 => rng.below(4) as usize,
            1..=3 => 1 + rng.below(40) as usize,
            4..=5 => 1 + rng.below(4096) as usize,
            _ => 1 + rng.below(big) as usize,
        };
        let n = n.min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// Chunk lengths cutting `len` at the given (unsorted, possibly repeated or out of
/// range) positions.
pub fn split_at_points(len: usize, points: &[usize]) -> Vec<usize> {
    let mut p: Vec<usize> = points.iter().map(|&x| x.min(len)).collect();
    p.push(len);
    p.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for x in p {
        out.push(x - prev);
        prev = x;
    }
    out
}

// ---------------------------------------------------------------- normalised events

/// An owned, normalised [`Event`]: consecutive `Data` fragments of one write,
/// consecutive `UnknownData` pieces and consecutive `Trailing` pieces are coalesced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Ev {
    Banner(Format),
    Order(u64),
    Features(u64),
    StripeUnit(u64),
    StripeCount(u64),
    Meta { key: Vec<u8>, value: Vec<u8> },
    ImageHeaderEnd,
    DiffCount(u64),
    DiffBegin(u64),
    FromSnap(Vec<u8>),
    ToSnap(Vec<u8>),
    Protection(u8),
    Size(u64),
    Write { offset: u64, len: u64 },
    Data { offset: u64, bytes: Vec<u8> },
    Zero { offset: u64, len: u64 },
    Unknown { tag: u8, len: Option<u64> },
    UnknownData(Vec<u8>),
    Warning(ErrorKind),
    DiffEnd,
    Trailing(Vec<u8>),
}

impl Ev {
    /// The owned form of `e`.
    pub fn from_event(e: &Event<'_>) -> Ev {
        match *e {
            Event::Banner(f) => Ev::Banner(f),
            Event::Order(v) => Ev::Order(v),
            Event::Features(v) => Ev::Features(v),
            Event::StripeUnit(v) => Ev::StripeUnit(v),
            Event::StripeCount(v) => Ev::StripeCount(v),
            Event::Meta { key, value } => Ev::Meta {
                key: key.to_vec(),
                value: value.to_vec(),
            },
            Event::ImageHeaderEnd => Ev::ImageHeaderEnd,
            Event::DiffCount(n) => Ev::DiffCount(n),
            Event::DiffBegin { index } => Ev::DiffBegin(index),
            Event::FromSnap(n) => Ev::FromSnap(n.to_vec()),
            Event::ToSnap(n) => Ev::ToSnap(n.to_vec()),
            Event::Protection(p) => Ev::Protection(p),
            Event::Size(s) => Ev::Size(s),
            Event::Write { offset, len } => Ev::Write { offset, len },
            Event::Data { offset, bytes } => Ev::Data {
                offset,
                bytes: bytes.to_vec(),
            },
            Event::Zero { offset, len } => Ev::Zero { offset, len },
            Event::Unknown { tag, len } => Ev::Unknown { tag, len },
            Event::UnknownData(b) => Ev::UnknownData(b.to_vec()),
            Event::Warning(k) => Ev::Warning(k),
            Event::DiffEnd => Ev::DiffEnd,
            Event::Trailing(b) => Ev::Trailing(b.to_vec()),
        }
    }
}

/// Accumulates events with their stream offsets, coalescing fragments.
/// Also checks the invariants every event sequence must have (offsets advance
/// exactly by what was consumed, data fragments are contiguous, no empty fragment).
#[derive(Debug, Default)]
pub struct Collector {
    /// `(stream offset, event)`.
    pub events: Vec<(u64, Ev)>,
    /// Stream offset expected for the next consuming event.
    pub next: u64,
    frag_end: Option<u64>,
}

impl Collector {
    /// Records one event as reported by the decoder (`consumed` bytes at `offset`).
    /// With `consumed == None` (events from [`Pump`]) only fragments are known to
    /// advance by their length; other events must just not go backwards.
    pub fn push(&mut self, offset: u64, consumed: Option<usize>, e: &Event<'_>) {
        let len = match e {
            Event::Data { bytes, .. } | Event::UnknownData(bytes) | Event::Trailing(bytes) => {
                assert!(!bytes.is_empty(), "empty fragment {e:?} at {offset}");
                Some(bytes.len())
            }
            _ => None,
        };
        match consumed {
            Some(c) => {
                assert_eq!(
                    offset, self.next,
                    "event {e:?} at {offset}, expected stream offset {}",
                    self.next
                );
                if let Some(l) = len {
                    assert_eq!(c, l, "fragment length vs consumed");
                }
                self.next += c as u64;
            }
            None => {
                assert!(
                    offset >= self.next,
                    "event {e:?} at {offset} goes back before {}",
                    self.next
                );
                // A fragment continuing the previous one starts where it ended.
                if len.is_some() && self.frag_end.is_some() {
                    assert_eq!(
                        Some(offset),
                        self.frag_end,
                        "fragments not contiguous: {e:?}"
                    );
                }
                self.next = offset + len.unwrap_or(0) as u64;
            }
        }
        self.frag_end = len.map(|l| offset + l as u64);
        if let Some((_, last)) = self.events.last_mut() {
            match (last, e) {
                (
                    Ev::Data {
                        offset: o,
                        bytes: b,
                    },
                    Event::Data {
                        offset: o2,
                        bytes: b2,
                    },
                ) => {
                    assert_eq!(*o + b.len() as u64, *o2, "data fragments not contiguous");
                    b.extend_from_slice(b2);
                    return;
                }
                (Ev::UnknownData(b), Event::UnknownData(b2))
                | (Ev::Trailing(b), Event::Trailing(b2)) => {
                    b.extend_from_slice(b2);
                    return;
                }
                _ => {}
            }
        }
        self.events.push((offset, Ev::from_event(e)));
    }
}

/// The outcome of decoding one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Normalised events with stream offsets.
    pub events: Vec<(u64, Ev)>,
    /// The error, if decoding failed.
    pub error: Option<DecodeError>,
    /// Whether the decoder reported the stream complete.
    pub done: bool,
}

impl Decoded {
    /// The events without offsets.
    pub fn evs(&self) -> Vec<Ev> {
        self.events.iter().map(|(_, e)| e.clone()).collect()
    }
    /// The warnings, in order.
    pub fn warnings(&self) -> Vec<(u64, ErrorKind)> {
        self.events
            .iter()
            .filter_map(|(o, e)| {
                if let Ev::Warning(k) = e {
                    Some((*o, *k))
                } else {
                    None
                }
            })
            .collect()
    }
    /// Panics unless the stream decoded completely.
    pub fn ok(self, what: &str) -> Self {
        assert!(self.error.is_none(), "{what}: {:?}", self.error);
        assert!(self.done, "{what}: not done");
        self
    }
}

/// Panics with a short message (the first difference) unless `a == b`.
pub fn assert_same(a: &Decoded, b: &Decoded, what: &str) {
    if a == b {
        return;
    }
    let short = |e: &(u64, Ev)| {
        let s = format!("{e:?}");
        if s.len() > 200 {
            format!("{}...", &s[..200])
        } else {
            s
        }
    };
    let i = a
        .events
        .iter()
        .zip(&b.events)
        .position(|(x, y)| x != y)
        .unwrap_or(a.events.len().min(b.events.len()));
    panic!(
        "{what}: decodes differ at event {i}: {:?} vs {:?}; {} vs {} events; errors {:?} vs {:?}; done {} vs {}",
        a.events.get(i).map(short),
        b.events.get(i).map(short),
        a.events.len(),
        b.events.len(),
        a.error,
        b.error,
        a.done,
        b.done
    );
}

/// Decodes `data` through [`Pump`], feeding the chunk lengths in `chunks`
/// (their sum must be `data.len()`), the last chunk with `eof`.
pub fn decode(data: &[u8], chunks: &[usize], config: Config) -> Decoded {
    assert_eq!(
        chunks.iter().sum::<usize>(),
        data.len(),
        "chunks must cover the input"
    );
    let mut pump = Pump::new(Decoder::new(config));
    let mut col = Collector::default();
    let mut pos = 0;
    let mut done = false;
    let n = chunks.len();
    let mut error = None;
    // An empty input is fed as one empty last chunk.
    let list: Vec<usize> = if n == 0 { vec![0] } else { chunks.to_vec() };
    for (i, &len) in list.iter().enumerate() {
        let eof = i + 1 == list.len();
        let chunk = &data[pos..pos + len];
        pos += len;
        let r = pump.feed::<(), _>(chunk, eof, |off, ev| {
            col.push(off, None, &ev);
            Ok(())
        });
        match r {
            Ok(d) => {
                if d {
                    done = true;
                    // The stream is complete: the rest (if any) is still fed so that
                    // trailing bytes are reported.
                }
                assert_eq!(d, pump.is_done());
            }
            Err(PumpError::Decode(e)) => {
                error = Some(e);
                break;
            }
            Err(PumpError::Handler(())) => unreachable!(),
        }
    }
    if error.is_none() {
        assert!(done, "eof fed without error, but the pump is not done");
    }
    // Whether the end of the stream was reached (also when trailing bytes then failed).
    let done = pump.decoder().is_done();
    Decoded {
        events: col.events,
        error,
        done,
    }
}

/// Decodes `data` whole through [`Pump`].
pub fn decode_whole(data: &[u8], config: Config) -> Decoded {
    decode(data, &split_whole(data.len()), config)
}

/// Decodes `data` with the bare [`Decoder`], growing the visible input only as
/// far as [`Step::NeedMore`] asks (and by one byte at a time inside data), so
/// every item is seen with the least input that can decode it. Also checks
/// that `NeedMore(n)` always asks for more than was given.
pub fn decode_raw(data: &[u8], config: Config) -> Decoded {
    let mut dec = Decoder::new(config);
    let mut col = Collector::default();
    let mut start = 0usize; // first unconsumed byte
    let mut end = (start + 1).min(data.len()); // visible input = data[start..end]
    let mut guard = 0u64;
    loop {
        guard += 1;
        assert!(guard < 50_000_000, "decoder does not progress");
        let eof = end == data.len();
        match dec.decode(&data[start..end], eof) {
            Ok(Step::NeedMore(n)) => {
                assert!(!eof, "NeedMore at eof");
                assert!(
                    n > end - start,
                    "NeedMore({n}) with {} bytes given",
                    end - start
                );
                end = (start + n).min(data.len());
            }
            Ok(Step::Event {
                offset,
                consumed,
                event,
            }) => {
                assert_eq!(offset, start as u64);
                assert!(consumed <= end - start);
                col.push(offset, Some(consumed), &event);
                start += consumed;
                if end < start + 1 {
                    end = (start + 1).min(data.len());
                }
            }
            Ok(Step::Done) => {
                assert_eq!(start, end);
                assert_eq!(
                    col.next,
                    data.len() as u64,
                    "not every byte was accounted for"
                );
                assert!(dec.is_done());
                return Decoded {
                    events: col.events,
                    error: None,
                    done: true,
                };
            }
            Err(e) => {
                // The error sticks.
                assert_eq!(dec.decode(&data[start..end], eof), Err(e));
                return Decoded {
                    events: col.events,
                    error: Some(e),
                    done: dec.is_done(),
                };
            }
        }
    }
}

// ---------------------------------------------------------------- reference model

/// Why the naive model refused a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// A `w`/`z` of nonzero length starting at or past the image size (librbd: EINVAL).
    BeyondSize {
        /// Record offset.
        offset: u64,
        /// Image size.
        size: u64,
    },
}

/// The naive image model: `Vec<u8>` plus rbd's import-diff rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Image bytes (its length is the image size).
    pub image: Vec<u8>,
    pending: Option<(u64, u64, Vec<u8>)>,
}

impl Model {
    /// An image of `size` zero bytes.
    pub fn zeros(size: u64) -> Self {
        Model {
            image: vec![0; usize::try_from(size).unwrap()],
            pending: None,
        }
    }
    /// An image holding `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Model {
            image: bytes,
            pending: None,
        }
    }
    /// `s`: truncate, or extend with zeros.
    pub fn resize(&mut self, size: u64) {
        self.image.resize(usize::try_from(size).unwrap(), 0);
    }
    fn clip(&self, offset: u64, len: u64) -> Result<Option<(usize, usize)>, ModelError> {
        let size = self.image.len() as u64;
        if len == 0 {
            return Ok(None);
        }
        if offset >= size {
            return Err(ModelError::BeyondSize { offset, size });
        }
        let end = offset.saturating_add(len).min(size);
        Ok(Some((offset as usize, end as usize)))
    }
    /// `w`: writes `data` at `offset`, clipped at the size.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), ModelError> {
        if let Some((a, b)) = self.clip(offset, data.len() as u64)? {
            self.image[a..b].copy_from_slice(&data[..b - a]);
        }
        Ok(())
    }
    /// `z`: zeroes `len` bytes at `offset`, clipped at the size.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<(), ModelError> {
        if let Some((a, b)) = self.clip(offset, len)? {
            self.image[a..b].fill(0);
        }
        Ok(())
    }
    /// Applies one normalised event. A `w` is applied once all its data arrived
    /// (as rbd reads a whole record before writing it).
    pub fn event(&mut self, e: &Ev) -> Result<(), ModelError> {
        match e {
            Ev::Size(s) => self.resize(*s),
            Ev::Write { offset, len } => {
                self.pending = Some((*offset, *len, Vec::new()));
                if *len == 0 {
                    self.pending = None;
                    self.write(*offset, &[])?;
                }
            }
            Ev::Data { bytes, .. } => {
                let (off, len, mut buf) = self.pending.take().expect("data outside a write");
                buf.extend_from_slice(bytes);
                if buf.len() as u64 == len {
                    self.write(off, &buf)?;
                } else {
                    self.pending = Some((off, len, buf));
                }
            }
            Ev::Zero { offset, len } => self.zero(*offset, *len)?,
            _ => {}
        }
        Ok(())
    }
    /// Applies every event in order; stops at the first refused record.
    pub fn apply(&mut self, events: &[Ev]) -> Result<(), ModelError> {
        for e in events {
            self.event(e)?;
        }
        Ok(())
    }
    /// sha256 of the image.
    pub fn sha256(&self) -> String {
        sha256_hex(&self.image)
    }
}

/// Decodes a complete stream (rbd-compatible policy) and applies it to `base`.
pub fn apply_stream(base: Vec<u8>, stream: &[u8]) -> Result<Vec<u8>, String> {
    let d = decode_whole(stream, Config::rbd_compatible());
    if let Some(e) = d.error {
        return Err(format!("decode: {e}"));
    }
    let mut m = Model::from_bytes(base);
    m.apply(&d.evs()).map_err(|e| format!("apply: {e:?}"))?;
    Ok(m.image)
}

// ---------------------------------------------------------------- summaries

/// Manifest-style summaries of the diffs in a decoded stream: one per diff
/// (one for a diff stream, one per embedded diff of an image stream), with the
/// same field names as the fixture manifests. `data` is the stream (for the
/// declared length of `p` records); `end` is the stream offset where the
/// stream proper ends (the offset of the first trailing byte, or the length).
pub fn summarise(data: &[u8], d: &Decoded) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cur: Option<Summary> = None;
    let mut format;
    for (off, e) in &d.events {
        match e {
            Ev::Banner(f) => {
                format = match f {
                    Format::DiffV1 => 1,
                    _ => 2,
                };
                if *f != Format::ImageV2 {
                    cur = Some(Summary::new(format, *off));
                }
            }
            Ev::DiffBegin(_) => cur = Some(Summary::new(2, *off)),
            Ev::DiffEnd => {
                let s = cur.take().expect("diff end outside a diff");
                out.push(s.finish(off + 1));
            }
            _ => {
                if let Some(s) = cur.as_mut() {
                    s.event(data, *off, e);
                }
            }
        }
    }
    let trailing: usize = d
        .events
        .iter()
        .map(|(_, e)| if let Ev::Trailing(b) = e { b.len() } else { 0 })
        .sum();
    let standalone = !matches!(d.events.first(), Some((_, Ev::Banner(Format::ImageV2))));
    if standalone && let Some(s) = out.last_mut() {
        s["trailing_bytes"] = json!(trailing);
    }
    out
}

struct Summary {
    v: serde_json::Map<String, Value>,
    tags: Vec<Value>,
    records: Vec<Value>,
    spans: Vec<(u64, u64)>,
    start: u64,
    write: Option<(u64, u64, Sha256, bool)>,
    n_w: u64,
    n_z: u64,
    w_bytes: u64,
    z_bytes: u64,
    w_all_zero: u64,
}

impl Summary {
    fn new(format: u64, start: u64) -> Self {
        let mut v = serde_json::Map::new();
        v.insert("format".into(), json!(format));
        Summary {
            v,
            tags: Vec::new(),
            records: Vec::new(),
            spans: Vec::new(),
            start,
            write: None,
            n_w: 0,
            n_z: 0,
            w_bytes: 0,
            z_bytes: 0,
            w_all_zero: 0,
        }
    }

    fn flush_write(&mut self) {
        if let Some((o, l, h, z)) = self.write.take() {
            let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            self.records.push(json!(["w", o, l, hex, z]));
            self.n_w += 1;
            self.w_bytes += l;
            if z {
                self.w_all_zero += 1;
            }
        }
    }

    fn event(&mut self, data: &[u8], off: u64, e: &Ev) {
        if !matches!(e, Ev::Data { .. }) {
            self.flush_write();
        }
        match e {
            Ev::FromSnap(n) => {
                self.tags.push(json!("f"));
                self.v
                    .insert("from_snap".into(), json!(String::from_utf8_lossy(n)));
            }
            Ev::ToSnap(n) => {
                self.tags.push(json!("t"));
                self.v
                    .insert("to_snap".into(), json!(String::from_utf8_lossy(n)));
            }
            Ev::Protection(p) => {
                self.tags.push(json!("p"));
                self.v.insert("protected".into(), json!(p));
                let o = off as usize;
                let declared = u64::from_le_bytes(data[o + 1..o + 9].try_into().unwrap());
                self.v
                    .insert("p_record_declared_length".into(), json!(declared));
            }
            Ev::Size(s) => {
                self.tags.push(json!("s"));
                self.v.insert("size".into(), json!(s));
            }
            Ev::Write { offset, len } => {
                self.write = Some((*offset, *len, Sha256::new(), true));
                self.spans.push((*offset, *len));
            }
            Ev::Data { bytes, .. } => {
                let w = self.write.as_mut().expect("data outside write");
                w.2.update(bytes);
                w.3 &= bytes.iter().all(|&b| b == 0);
            }
            Ev::Zero { offset, len } => {
                self.records.push(json!(["z", offset, len]));
                self.spans.push((*offset, *len));
                self.n_z += 1;
                self.z_bytes += len;
            }
            _ => {}
        }
    }

    fn finish(mut self, end: u64) -> Value {
        self.flush_write();
        let sorted = self.spans.windows(2).all(|w| w[0].0 <= w[1].0);
        let mut s = self.spans.clone();
        s.sort_unstable();
        let overlap = s.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0);
        let v = &mut self.v;
        v.insert("header_tags".into(), Value::Array(self.tags));
        v.insert("records".into(), Value::Array(self.records));
        v.insert("stream_bytes".into(), json!(end - self.start));
        v.insert("stream_offset".into(), json!(self.start));
        v.insert("records_sorted".into(), json!(sorted));
        v.insert("records_overlap".into(), json!(overlap));
        v.insert("n_w".into(), json!(self.n_w));
        v.insert("n_z".into(), json!(self.n_z));
        v.insert("w_bytes".into(), json!(self.w_bytes));
        v.insert("z_bytes".into(), json!(self.z_bytes));
        v.insert("w_all_zero_records".into(), json!(self.w_all_zero));
        if let Some(size) = v.get("size").and_then(Value::as_u64) {
            let beyond = self.spans.iter().any(|&(o, l)| o + l > size);
            v.insert("records_beyond_size".into(), json!(beyond));
        }
        Value::Object(self.v)
    }
}

// ---------------------------------------------------------------- encoding

/// Re-encodes normalised events with [`Encoder`] (lenient if asked). `Trailing`
/// bytes are appended after the encoder finished. Unknown v2 records become
/// [`Encoder::extension`]; things the encoder cannot express (v1 unknown bytes,
/// unknown records in the image header, `Warning`s are ignored) give `Err`.
pub fn encode(events: &[Ev], lenient: bool) -> Result<Vec<u8>, String> {
    type E = EncodeError<core::convert::Infallible>;
    let f = |e: E| format!("{e:?}");
    let mut i = 0;
    let next_data = |i: &mut usize| -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(Ev::Data { bytes, .. } | Ev::UnknownData(bytes)) = events.get(*i) {
            out.extend_from_slice(bytes);
            *i += 1;
        }
        out
    };
    let first = loop {
        match events.get(i) {
            Some(Ev::Warning(_)) => i += 1,
            Some(Ev::Banner(fm)) => break *fm,
            other => return Err(format!("no banner: {other:?}")),
        }
    };
    i += 1;
    let mut enc = match first {
        Format::ImageV2 => {
            let (mut o, mut t, mut u, mut c) = (None, None, None, None);
            let mut meta: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut order = Vec::new();
            let count = loop {
                match events.get(i) {
                    Some(Ev::Order(v)) => {
                        o = Some(*v);
                        order.push('O');
                    }
                    Some(Ev::Features(v)) => {
                        t = Some(*v);
                        order.push('T');
                    }
                    Some(Ev::StripeUnit(v)) => {
                        u = Some(*v);
                        order.push('U');
                    }
                    Some(Ev::StripeCount(v)) => {
                        c = Some(*v);
                        order.push('C');
                    }
                    Some(Ev::Meta { key, value }) => meta.push((key.clone(), value.clone())),
                    Some(Ev::ImageHeaderEnd | Ev::Warning(_)) => {}
                    Some(Ev::DiffCount(n)) => break *n,
                    other => return Err(format!("not encodable in an image header: {other:?}")),
                }
                i += 1;
            };
            i += 1;
            if order != ['O', 'T', 'U', 'C'] {
                return Err(format!("image header order {order:?}"));
            }
            let pairs: Vec<(&[u8], &[u8])> = meta
                .iter()
                .map(|(k, v)| (k.as_slice(), v.as_slice()))
                .collect();
            let h = ImageHeader {
                order: o.unwrap(),
                features: t.unwrap(),
                stripe_unit: u.unwrap(),
                stripe_count: c.unwrap(),
                meta: &pairs,
            };
            Encoder::image(Vec::new(), &h, count).map_err(f)?
        }
        fm => Encoder::diff(Vec::new(), fm).map_err(f)?,
    };
    if lenient {
        enc = enc.lenient();
    }
    let mut trailing = Vec::new();
    while i < events.len() {
        let e = &events[i];
        i += 1;
        match e {
            Ev::Warning(_) => {}
            Ev::DiffBegin(_) => enc.begin_diff().map_err(f)?,
            Ev::FromSnap(n) => enc.from_snap(n).map_err(f)?,
            Ev::ToSnap(n) => enc.to_snap(n).map_err(f)?,
            Ev::Protection(p) => {
                if *p > 1 {
                    return Err(format!("protection byte {p} not encodable"));
                }
                enc.protection(*p == 1).map_err(f)?
            }
            Ev::Size(s) => enc.size(*s).map_err(f)?,
            Ev::Write { offset, len } => {
                enc.begin_write(*offset, *len).map_err(f)?;
                let d = next_data(&mut i);
                enc.data(&d).map_err(f)?;
            }
            Ev::Zero { offset, len } => enc.zero(*offset, *len).map_err(f)?,
            Ev::Unknown { tag, len: Some(_) } => {
                let d = next_data(&mut i);
                enc.extension(*tag, &d).map_err(f)?
            }
            Ev::DiffEnd => enc.end_diff().map_err(f)?,
            Ev::Trailing(b) => trailing.extend_from_slice(b),
            other => return Err(format!("not encodable: {other:?}")),
        }
    }
    let mut out = enc.finish().map_err(f)?;
    out.extend_from_slice(&trailing);
    Ok(out)
}

/// Encodes one diff from a header and records (the usual way a test builds a stream).
pub fn encode_diff(format: Format, header: &DiffHeader<'_>, records: &[Rec]) -> Vec<u8> {
    let mut enc = Encoder::diff(Vec::new(), format).unwrap();
    enc.header(header).unwrap();
    for r in records {
        match r {
            Rec::W(o, d) => enc.write(*o, d).unwrap(),
            Rec::Z(o, l) => enc.zero(*o, *l).unwrap(),
        }
    }
    enc.end_diff().unwrap();
    enc.finish().unwrap()
}

/// A data record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec {
    /// `w offset data`.
    W(u64, Vec<u8>),
    /// `z offset len`.
    Z(u64, u64),
}

/// The fixture generator's data: `hashlib.shake_256(label.encode()).digest(len)`.
pub fn shake256(label: &str, len: usize) -> Vec<u8> {
    use sha3::digest::{ExtendableOutput, Update, XofReader};
    let mut h = sha3::Shake256::default();
    h.update(label.as_bytes());
    let mut r = h.finalize_xof();
    let mut out = vec![0; len];
    r.read(&mut out);
    out
}
