//! The exported `images` interface: `export-diff` between two host devices
//! and `apply` of a diff onto one, on the crate's engines (the ones the CLI's
//! `export-diff` and `import-diff` run).

use crate::device::Device;
use crate::device::{DeviceError, HostDevice};
use crate::exports::rbdiff::codec::codec as codec_wit;
pub use crate::exports::rbdiff::codec::images as wit;
use rbdiff::export::{ExportError, ExportOptions, ExportStats, export_diff, export_diff_sealed};
use rbdiff::integrity::HashingSink;
use rbdiff::{DiffHeader, EncodeError, Encoder, Format};

/// An `image-error` with only a kind and a message.
pub fn image_error(kind: wit::ImageErrorKind, message: String) -> wit::ImageError {
    wit::ImageError {
        kind,
        stream_offset: None,
        image_offset: None,
        decode: None,
        message,
    }
}

/// A failed device call as an `image-error`.
pub fn device_error(e: &DeviceError) -> wit::ImageError {
    wit::ImageError {
        image_offset: Some(e.offset),
        ..image_error(wit::ImageErrorKind::Device, e.to_string())
    }
}

/// The defaults of `export-diff`.
pub fn default_export_options() -> wit::ExportOptions {
    let d = ExportOptions::default();
    wit::ExportOptions {
        from_snap: None,
        to_snap: None,
        protected: None,
        object_size: d.object_size,
        whole_object: d.whole_object,
        format: codec_wit::MergeFormat::DiffV1,
        integrity: false,
    }
}

type ExportFailure = ExportError<DeviceError, core::convert::Infallible>;

/// `export-diff`: the CLI's `write_diff` on host devices, into memory.
pub fn export(
    from: Option<&Device>,
    to: &Device,
    o: &wit::ExportOptions,
) -> Result<wit::ExportResult, wit::ImageError> {
    let format = match o.format {
        codec_wit::MergeFormat::DiffV1 => Format::DiffV1,
        codec_wit::MergeFormat::DiffV2 => Format::DiffV2,
    };
    if format == Format::DiffV1 && o.protected.is_some() {
        return Err(image_error(
            wit::ImageErrorKind::InvalidOptions,
            "protected is a diff-v2 record ('p'); diff-v1 has none".into(),
        ));
    }
    let header = DiffHeader {
        from: o.from_snap.as_deref().map(str::as_bytes),
        to: o.to_snap.as_deref().map(str::as_bytes),
        protected: o.protected,
        size: None,
    };
    // The component runs on one thread.
    let opts = ExportOptions::new()
        .with_object_size(o.object_size)
        .with_whole_object(o.whole_object)
        .with_hash_thread(false);
    let mut from = from.map(HostDevice::new);
    let mut to = HostDevice::new(to);
    let (diff, stats) = write_diff(format, o.integrity, from.as_mut(), &mut to, &header, &opts)
        .map_err(|e| export_failure(&e))?;
    Ok(wit::ExportResult {
        diff,
        writes: stats.writes,
        zeros: stats.zeros,
        data_bytes: stats.data_bytes,
        zero_bytes: stats.zero_bytes,
    })
}

fn write_diff(
    format: Format,
    seal: bool,
    from: Option<&mut HostDevice<'_>>,
    to: &mut HostDevice<'_>,
    header: &DiffHeader<'_>,
    opts: &ExportOptions,
) -> Result<(Vec<u8>, ExportStats), ExportFailure> {
    let mut progress = |_: u64, _: u64| {};
    if !seal {
        let mut enc = Encoder::diff(Vec::new(), format).map_err(ExportError::Write)?;
        let st = export_diff(from, to, header, opts, &mut enc, &mut progress)?;
        return Ok((enc.finish().map_err(ExportError::Write)?, st));
    }
    let mut enc =
        Encoder::diff(HashingSink::new(Vec::new()), format).map_err(ExportError::Write)?;
    let (st, m) = export_diff_sealed(from, to, header, opts, &mut enc, &mut progress)?;
    let mut out = enc.finish().map_err(ExportError::Write)?.into_inner();
    if format == Format::DiffV1 {
        // v2 carries its integrity data in-band; v1 gets the trailer.
        out.extend_from_slice(&m.to_trailer());
    }
    Ok((out, st))
}

fn export_failure(e: &ExportFailure) -> wit::ImageError {
    match e {
        ExportError::Read(d) => device_error(d),
        ExportError::ObjectSize(s) => image_error(
            wit::ImageErrorKind::InvalidOptions,
            format!("unusable object size {s} (1 B to 1 GiB)"),
        ),
        ExportError::Write(EncodeError::Sink(never)) => match *never {},
        ExportError::Write(e) => image_error(wit::ImageErrorKind::InvalidOptions, e.to_string()),
        // `ExportError` is non-exhaustive: a new kind is a refusal, named.
        other => image_error(wit::ImageErrorKind::InvalidOptions, other.to_string()),
    }
}
