//! `images.apply`: a thin driver of the crate's import engine
//! ([`rbdiff::apply::ImportEngine`], the engine of the CLI's `import-diff`)
//! over a diff held in memory and a host device.

use crate::device::{Device, DeviceError, HostDevice};
use crate::exports::rbdiff::codec::images as wit;
use crate::images::{device_error, image_error};
use rbdiff::apply::{ImportEngine, ImportError, ImportOptions, Sequential, Step as ApplyStep};
use rbdiff::integrity::{Manifest, StreamFault, VerifyError, read_tail};
use rbdiff::{Config, Decoder, FormatSet, Step};
use wit::ImageErrorKind as K;

type Failure = ImportError<DeviceError>;

/// The defaults of `apply`.
pub fn default_options() -> wit::ApplyOptions {
    let d = ImportOptions::new();
    wit::ApplyOptions {
        sparse_size: d.sparse_size,
        verify: d.verify,
        check_base: d.check_base,
        snapshots: None,
        sidecar: None,
    }
}

/// `apply`: import `diff` into `image`.
pub fn apply(
    image: &Device,
    diff: &[u8],
    o: &wit::ApplyOptions,
) -> Result<wit::ApplyResult, wit::ImageError> {
    let known = if o.verify { known(diff, o)? } else { None };
    let opts = ImportOptions::new()
        .with_sparse_size(o.sparse_size)
        .with_verify(o.verify)
        .with_base_check(o.check_base)
        .with_stream_len(Some(diff.len() as u64));
    let mut eng: ImportEngine = ImportEngine::new(opts, known).map_err(|e| {
        image_error(
            K::InvalidIntegrityData,
            format!("the diff's integrity data cannot belong to it: {e}"),
        )
    })?;
    let mut dev = HostDevice::new(image);
    if let Err(e) = run(&mut eng, &mut dev, diff, o) {
        // As rbd leaves it: the base plus every complete record before the
        // failure (pending zeroing written, a held record dropped).
        let _ = eng.abort(&mut dev);
        return Err(e);
    }
    let verified = match eng.end_stream().map_err(|f| stream_fault(&f))? {
        None => wit::Verified::None,
        Some((_, late)) if late || !o.check_base => wit::Verified::NoBase,
        Some(_) => wit::Verified::Full,
    };
    eng.check_result(&mut dev, &mut Sequential, 0)
        .map_err(|e| failure(&e, None))?;
    let done = eng.finish();
    Ok(wit::ApplyResult {
        size: rbdiff::block::BlockSink::size(&dev),
        records: done.stats.records,
        data_bytes: done.stats.data_bytes,
        zero_bytes: done.stats.zero_bytes,
        end_snap: done
            .end_snap
            .name
            .map(|n| String::from_utf8_lossy(&n).into_owned()),
        protected: done.end_snap.protect,
        verified,
    })
}

/// The integrity data known before the stream: the sidecar, else the end
/// of the diff (a v1 trailer or v2 `H`/`K` records), as the CLI finds it.
fn known(diff: &[u8], o: &wit::ApplyOptions) -> Result<Option<Manifest>, wit::ImageError> {
    let bad = |what: &str, e: &dyn core::fmt::Display| {
        image_error(
            K::InvalidIntegrityData,
            format!("the integrity data {what} is malformed: {e}"),
        )
    };
    if let Some(s) = &o.sidecar {
        return Manifest::from_trailer(s)
            .map(Some)
            .map_err(|e| bad("of the sidecar", &e));
    }
    read_tail(&mut std::io::Cursor::new(diff)).map_err(|e| bad("at the end of the diff", &e))
}

/// Decode `diff` and feed the engine; the snapshot rules on the way.
fn run(
    eng: &mut ImportEngine,
    dev: &mut HostDevice<'_>,
    diff: &[u8],
    o: &wit::ApplyOptions,
) -> Result<(), wit::ImageError> {
    // What rbd import-diff reads (and v2 diffs, as rbdiff import-diff does).
    let mut dec = Decoder::new(Config::rbd_compatible().with_formats(FormatSet::DIFFS));
    let mut pos = 0usize;
    loop {
        let step = dec.decode(&diff[pos..], true).map_err(|e| {
            let mut err = image_error(K::InvalidStream, format!("invalid diff: {e}"));
            err.stream_offset = Some(e.offset);
            err.decode = Some(crate::convert::decode_error(&e));
            err
        })?;
        let (offset, consumed, event) = match step {
            Step::Event {
                offset,
                consumed,
                event,
            } => (offset, consumed, event),
            Step::Done => return Ok(()),
            // The whole stream was given (eof): the decoder reports a cut
            // stream as an error, so this is not expected; refuse it anyway.
            Step::NeedMore(_) => {
                let mut err = image_error(K::InvalidStream, "the diff ends early".into());
                err.stream_offset = Some(diff.len() as u64);
                return Err(err);
            }
        };
        let raw = &diff[pos..pos + consumed];
        let s = eng
            .event(dev, &mut Sequential, offset, &event, raw)
            .map_err(|e| failure(&e, Some(offset)))?;
        snapshot_rules(&s, o, offset)?;
        pos += consumed;
    }
}

fn snapshot_rules(
    s: &ApplyStep<'_>,
    o: &wit::ApplyOptions,
    offset: u64,
) -> Result<(), wit::ImageError> {
    let Some(snaps) = &o.snapshots else {
        return Ok(());
    };
    let has = |n: &[u8]| snaps.iter().any(|s| s.as_bytes() == n);
    let (kind, message) = match *s {
        ApplyStep::FromSnap(n) if !has(n) => (
            K::SnapshotMissing,
            format!(
                "start snapshot '{}' does not exist in the image, aborting",
                String::from_utf8_lossy(n)
            ),
        ),
        ApplyStep::ToSnap(n) if has(n) => (
            K::SnapshotExists,
            format!(
                "end snapshot '{}' already exists, aborting",
                String::from_utf8_lossy(n)
            ),
        ),
        _ => return Ok(()),
    };
    let mut e = image_error(kind, message);
    e.stream_offset = Some(offset);
    Err(e)
}

fn stream_fault(f: &StreamFault) -> wit::ImageError {
    let mut e = image_error(
        K::CorruptPayload,
        format!("integrity check of the diff failed: {f}"),
    );
    match *f {
        StreamFault::Payload {
            stream_offset,
            offset,
            ..
        } => {
            e.stream_offset = Some(stream_offset);
            e.image_offset = Some(offset);
        }
        StreamFault::Record { stream_offset, .. } => e.stream_offset = Some(stream_offset),
        _ => {}
    }
    e
}

fn verify_error(kind: K, what: &str, e: &VerifyError<DeviceError>) -> wit::ImageError {
    match e {
        VerifyError::Read(d) => device_error(d),
        VerifyError::Block { offset, .. } => wit::ImageError {
            image_offset: Some(*offset),
            ..image_error(kind, format!("{what}: {e}"))
        },
        _ => image_error(kind, format!("{what}: {e}")),
    }
}

/// An engine error as an `image-error`; `at` is the stream offset of the
/// event being applied.
fn failure(e: &Failure, at: Option<u64>) -> wit::ImageError {
    let mut err = match e {
        ImportError::Device(d) | ImportError::UndoRead(d) => device_error(d),
        ImportError::BeyondSize { offset, .. } => wit::ImageError {
            image_offset: Some(*offset),
            ..image_error(K::BeyondSize, e.to_string())
        },
        ImportError::IntegrityData(_) => image_error(K::InvalidIntegrityData, e.to_string()),
        ImportError::NotBase(v) => verify_error(
            K::WrongBase,
            "the image is not the diff's base (nothing was written)",
            v,
        ),
        ImportError::Stream(f) => return stream_fault(f),
        ImportError::Result(v) => verify_error(
            K::WrongResult,
            "the imported image does not match the diff's integrity data",
            v,
        ),
        // Undo is not recorded here; the engine's kinds may grow.
        _ => image_error(K::InvalidStream, e.to_string()),
    };
    if err.stream_offset.is_none() {
        err.stream_offset = at;
    }
    err
}
