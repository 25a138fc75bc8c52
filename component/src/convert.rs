//! Conversions between the rbdiff crate's types and the WIT types.

use crate::exports::rbdiff::codec::codec as wit;
use crate::merge::{MergeFailure, MergeFailureKind};
use rbdiff::inspect::{self, Finding, InspectOptions};
use rbdiff::merge::Phase;
use rbdiff::{Config, DecodeError, ErrorCode, Event, Format, FormatSet};

/// The WIT error kind of a codec error code: the enum case of the same
/// name (checked by the unit tests).
pub fn error_kind(code: ErrorCode) -> wit::ErrorKind {
    use ErrorCode as C;
    use wit::ErrorKind as K;
    match code {
        C::BadBanner => K::BadBanner,
        C::BadSectionBanner => K::BadSectionBanner,
        C::UnexpectedEof => K::UnexpectedEof,
        C::UnknownTag => K::UnknownTag,
        C::NameTooLong => K::NameTooLong,
        C::MetaTooLong => K::MetaTooLong,
        C::ZeroLength => K::ZeroLength,
        C::OffsetOverflow => K::OffsetOverflow,
        C::BeyondSize => K::BeyondSize,
        C::OutOfOrder => K::OutOfOrder,
        C::MetadataAfterData => K::MetadataAfterData,
        C::LengthMismatch => K::LengthMismatch,
        C::TrailingBytes => K::TrailingBytes,
    }
}

/// A codec error as the WIT record.
pub fn decode_error(e: &DecodeError) -> wit::DecodeError {
    wit::DecodeError {
        offset: e.offset,
        kind: error_kind(e.kind.code()),
        message: e.kind.to_string(),
    }
}

fn finding(f: &Finding) -> wit::DecodeError {
    wit::DecodeError {
        offset: f.offset,
        kind: error_kind(f.kind),
        message: f.message.clone(),
    }
}

/// The default options (the codec's `Config::new()` and `InspectOptions::default()`).
pub fn default_options() -> wit::Options {
    let d = InspectOptions::default();
    wit::Options {
        mode: wit::Mode::Default,
        accept: wit::Accept::All,
        max_records: u32::try_from(d.max_records).unwrap_or(u32::MAX),
        max_warnings: u32::try_from(d.max_warnings).unwrap_or(u32::MAX),
    }
}

/// The decoder configuration of `options`.
pub fn options_config(options: &wit::Options) -> Config {
    let config = match options.mode {
        wit::Mode::Default => Config::new(),
        wit::Mode::RbdCompatible => Config::rbd_compatible(),
        wit::Mode::Strict => Config::strict(),
    };
    config.with_formats(match options.accept {
        wit::Accept::All => FormatSet::ALL,
        wit::Accept::Diffs => FormatSet::DIFFS,
        wit::Accept::DiffV1 => FormatSet::V1,
        wit::Accept::ImageV2 => FormatSet::IMAGE,
    })
}

fn format(f: Format) -> wit::StreamFormat {
    match f {
        Format::DiffV1 => wit::StreamFormat::DiffV1,
        Format::DiffV2 => wit::StreamFormat::DiffV2,
        Format::ImageV2 => wit::StreamFormat::ImageV2,
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Event summaries collected during one call (or nothing, for callers that
/// only want the summary).
pub struct EventList {
    events: Vec<wit::EventSummary>,
    keep: bool,
}

impl EventList {
    /// A list that keeps events.
    pub fn new() -> Self {
        EventList {
            events: Vec::new(),
            keep: true,
        }
    }

    /// A list that drops events.
    pub fn discard() -> Self {
        EventList {
            events: Vec::new(),
            keep: false,
        }
    }

    /// The events.
    pub fn into_vec(self) -> Vec<wit::EventSummary> {
        self.events
    }

    /// Adds an event; consecutive payload pieces of one record are coalesced.
    pub fn push(&mut self, offset: u64, ev: &Event<'_>) {
        if !self.keep {
            return;
        }
        use wit::EventKind as K;
        let mut e = wit::EventSummary {
            kind: K::Banner,
            stream_offset: offset,
            image_offset: None,
            length: None,
            value: None,
            name: None,
            text: None,
            format: None,
            warning: None,
        };
        match *ev {
            Event::Banner(f) => e.format = Some(format(f)),
            Event::Order(v) => (e.kind, e.value) = (K::Order, Some(v)),
            Event::Features(v) => (e.kind, e.value) = (K::Features, Some(v)),
            Event::StripeUnit(v) => (e.kind, e.value) = (K::StripeUnit, Some(v)),
            Event::StripeCount(v) => (e.kind, e.value) = (K::StripeCount, Some(v)),
            Event::Meta { key, value } => {
                (e.kind, e.name, e.text) = (K::Meta, Some(lossy(key)), Some(lossy(value)));
            }
            Event::ImageHeaderEnd => e.kind = K::ImageHeaderEnd,
            Event::DiffCount(n) => (e.kind, e.value) = (K::DiffCount, Some(n)),
            Event::DiffBegin { index } => (e.kind, e.value) = (K::DiffBegin, Some(index)),
            Event::FromSnap(n) => (e.kind, e.name) = (K::FromSnap, Some(lossy(n))),
            Event::ToSnap(n) => (e.kind, e.name) = (K::ToSnap, Some(lossy(n))),
            Event::Protection(p) => (e.kind, e.value) = (K::Protection, Some(u64::from(p))),
            Event::Size(s) => (e.kind, e.value) = (K::Size, Some(s)),
            Event::Write { offset: o, len } => {
                (e.kind, e.image_offset, e.length) = (K::Write, Some(o), Some(len));
            }
            Event::Data { offset: o, bytes } => {
                let n = bytes.len() as u64;
                if let Some(last) = self.events.last_mut()
                    && last.kind == K::Data
                    && last.image_offset.zip(last.length).map(|(a, b)| a + b) == Some(o)
                {
                    last.length = last.length.map(|l| l + n);
                    return;
                }
                (e.kind, e.image_offset, e.length) = (K::Data, Some(o), Some(n));
            }
            Event::Zero { offset: o, len } => {
                (e.kind, e.image_offset, e.length) = (K::Zero, Some(o), Some(len));
            }
            Event::Unknown { tag, len } => {
                (e.kind, e.value, e.length) = (K::Unknown, Some(u64::from(tag)), len);
            }
            Event::UnknownData(b) => {
                let n = b.len() as u64;
                if let Some(last) = self.events.last_mut()
                    && last.kind == K::UnknownData
                    && last.stream_offset + last.length.unwrap_or(0) == offset
                {
                    last.length = last.length.map(|l| l + n);
                    return;
                }
                (e.kind, e.length) = (K::UnknownData, Some(n));
            }
            Event::Warning(k) => {
                e.kind = K::Warning;
                e.warning = Some(decode_error(&DecodeError::new(offset, k)));
            }
            Event::DiffEnd => e.kind = K::DiffEnd,
            Event::Trailing(b) => (e.kind, e.length) = (K::Trailing, Some(b.len() as u64)),
        }
        self.events.push(e);
    }
}

/// The summary as the WIT record.
pub fn summary(s: &inspect::Summary) -> wit::Summary {
    wit::Summary {
        format: s.format.map(format),
        image: s.image.as_ref().map(|i| wit::ImageInfo {
            order: i.order,
            features: i.features,
            stripe_unit: i.stripe_unit,
            stripe_count: i.stripe_count,
            meta: i
                .meta
                .iter()
                .map(|m| wit::MetaPair {
                    key: m.key.clone(),
                    value: m.value.clone(),
                })
                .collect(),
        }),
        diff_count: s.diff_count,
        diffs: s.diffs.iter().map(diff_summary).collect(),
        stream_bytes: s.stream_bytes,
        trailing_bytes: s.trailing_bytes,
        unknown_records: s.unknown_records,
        warnings: s.warnings.iter().map(finding).collect(),
        warnings_total: s.warnings_total,
        error: s.error.as_ref().map(finding),
        valid: s.valid,
    }
}

fn diff_summary(d: &inspect::DiffSummary) -> wit::DiffSummary {
    wit::DiffSummary {
        index: d.index,
        stream_offset: d.stream_offset,
        stream_bytes: d.stream_bytes,
        header_tags: d
            .header_tags
            .iter()
            .filter_map(|t| t.chars().next())
            .collect(),
        from_snap: d.from_snap.clone(),
        to_snap: d.to_snap.clone(),
        protected: d.protected,
        size: d.size,
        n_w: d.n_w,
        n_z: d.n_z,
        w_bytes: d.w_bytes,
        z_bytes: d.z_bytes,
        w_all_zero_records: d.w_all_zero_records,
        n_unknown: d.n_unknown,
        records_sorted: d.records_sorted,
        records_overlap: d.records_overlap,
        records_beyond_size: d.records_beyond_size,
        complete: d.complete,
        records: d
            .records
            .iter()
            .map(|r| wit::RecordSummary {
                stream_offset: r.stream_offset,
                tag: r.tag,
                offset: r.offset,
                length: r.length,
            })
            .collect(),
        records_truncated: d.records_truncated,
        integrity: d.integrity.as_ref().map(|i| wit::IntegritySummary {
            entries: i.entries,
            base_size: i.base_size,
            ok: i.ok,
            fault: i.fault.clone(),
        }),
    }
}

/// A merge failure as the WIT record.
pub fn merge_error(e: &MergeFailure) -> wit::MergeError {
    wit::MergeError {
        kind: match e.kind {
            MergeFailureKind::InvalidInput => wit::MergeErrorKind::InvalidInput,
            MergeFailureKind::SnapshotChain => wit::MergeErrorKind::SnapshotChain,
            MergeFailureKind::NoInputs => wit::MergeErrorKind::NoInputs,
            MergeFailureKind::Usage => wit::MergeErrorKind::Usage,
        },
        input: e.input.map(|i| u32::try_from(i).unwrap_or(u32::MAX)),
        phase: match e.phase {
            None => wit::MergePhase::Call,
            Some(Phase::Header) => wit::MergePhase::Header,
            Some(Phase::RecordHeader) => wit::MergePhase::RecordHeader,
            Some(Phase::Data) => wit::MergePhase::Data,
            // The component's output is an in-memory buffer; an encoder
            // refusal would be a bug in the merge engine.
            Some(Phase::Output) => wit::MergePhase::Call,
        },
        decode: e.decode.as_ref().map(decode_error),
        message: e.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbdiff::{ErrorKind, Expected, Zone};

    /// Every codec error kind maps to the WIT case of the same name.
    #[test]
    fn kind_names() {
        let kinds = [
            ErrorKind::BadBanner {
                expected: None,
                found: [0; 13],
                found_len: 0,
            },
            ErrorKind::BadSectionBanner {
                expected: Expected::DiffsBanner,
            },
            ErrorKind::UnexpectedEof {
                expected: Expected::Tag,
                missing: 1,
            },
            ErrorKind::UnknownTag {
                tag: b'X',
                zone: Zone::DiffV1,
            },
            ErrorKind::NameTooLong { len: 1, max: 0 },
            ErrorKind::MetaTooLong { len: 1, max: 0 },
            ErrorKind::ZeroLength { tag: b'w' },
            ErrorKind::OffsetOverflow { offset: 1, len: 1 },
            ErrorKind::BeyondSize { end: 1, size: 0 },
            ErrorKind::OutOfOrder {
                prev_end: 1,
                offset: 0,
            },
            ErrorKind::MetadataAfterData { tag: b's' },
            ErrorKind::LengthMismatch {
                tag: b'p',
                declared: 8,
                actual: 1,
            },
            ErrorKind::TrailingBytes,
        ];
        // The cases of `enum error-kind` in the WIT file, in order (the
        // generated Rust enum has the same order as its discriminants).
        let wit = include_str!("../wit/codec.wit");
        let body = wit
            .split("enum error-kind {")
            .nth(1)
            .and_then(|r| r.split('}').next())
            .expect("enum error-kind in codec.wit");
        let cases: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| l.trim_end_matches(','))
            .collect();
        assert_eq!(cases.len(), kinds.len(), "{cases:?}");
        assert_eq!(ErrorCode::ALL.len(), kinds.len());
        for k in &kinds {
            let i = error_kind(k.code()) as usize;
            assert_eq!(cases[i], k.code().as_str(), "{k:?}");
        }
        for c in ErrorCode::ALL {
            assert_eq!(cases[error_kind(c) as usize], c.as_str());
        }
    }
}
