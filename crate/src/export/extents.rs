//! Export from a list of changed extents, the way `rbd export-diff` writes
//! what librbd's `diff_iterate` reports: one record per extent, in the
//! order given, never split or joined; an extent that does not exist, or
//! whose bytes are all zero, is a `z` record, any other a `w` record with
//! its bytes (zeros inside it included).

use super::{ExportError, ExportHooks, ExportStats, Exported, hashing, is_zero, seal_end};
use crate::block::AlignedBuf;
use crate::encode::{DiffHeader, Encoder, Sink};
use crate::integrity::{HashingSink, Manifest};
use alloc::vec::Vec;

/// One extent and its bytes, as an [`ExtentSource`] hands it out.
#[derive(Clone, Copy, Debug)]
pub struct ReadExtent<'a> {
    /// Image offset.
    pub offset: u64,
    /// Length in bytes (not 0).
    pub len: u64,
    /// The new image's bytes (`len` of them); `None`: the extent reads as
    /// zeros (librbd's `exists == false`).
    pub data: Option<&'a [u8]>,
    /// The base image's bytes in the same range, for the pre-image hashes
    /// of a sealed export (`None`: the base is all zeros there, or the
    /// export is not sealed).
    pub base: Option<&'a [u8]>,
}

/// Where [`export_extents`] gets its extents: in ascending order, not
/// overlapping, each with its bytes read.
pub trait ExtentSource {
    /// The source's error.
    type Error;
    /// The next extent, `None` after the last.
    fn next_extent(&mut self) -> Result<Option<ReadExtent<'_>>, Self::Error>;
}

/// Writes the diff of `src`'s extents, header to `e`, into `enc`: `f`/`t`/
/// `p`/`s` from `header` (`s` must be given: the end version's size).
/// `progress(done, size)` is called after each extent.
pub fn export_extents<X, S>(
    src: &mut X,
    header: &DiffHeader<'_>,
    enc: &mut Encoder<S>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportStats, ExportError<X::Error, S::Error>>
where
    X: ExtentSource + ?Sized,
    S: Sink,
{
    let mut none = |_: &Exported<'_>, _: &mut Encoder<S>| {};
    let stats = extent_records(src, header, enc, progress, &mut none)?;
    enc.end_diff().map_err(ExportError::Write)?;
    Ok(stats)
}

/// [`export_extents`] plus the integrity extension, as
/// [`export_diff_sealed`](super::export_diff_sealed): the pre-image hashes
/// come from each extent's `base` bytes. `base_size` is the base image's
/// size (`None` when diffing from creation).
pub fn export_extents_sealed<X, S>(
    src: &mut X,
    header: &DiffHeader<'_>,
    base_size: Option<u64>,
    enc: &mut Encoder<HashingSink<S>>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(ExportStats, Manifest), ExportError<X::Error, S::Error>>
where
    X: ExtentSource + ?Sized,
    S: Sink,
{
    let mut m = Manifest {
        base_size,
        ..Manifest::default()
    };
    let stats = extent_records(src, header, enc, progress, &mut hashing::Hooks::new(&mut m))?;
    seal_end(stats, m, enc)
}

fn extent_records<X, S>(
    src: &mut X,
    header: &DiffHeader<'_>,
    enc: &mut Encoder<S>,
    progress: &mut dyn FnMut(u64, u64),
    hooks: &mut dyn ExportHooks<S>,
) -> Result<ExportStats, ExportError<X::Error, S::Error>>
where
    X: ExtentSource + ?Sized,
    S: Sink,
{
    let size = header.size.unwrap_or(0);
    enc.header(header).map_err(ExportError::Write)?;
    let mut stats = ExportStats::default();
    // Zeros to hand the hooks for `z` records.
    let mut zeros: Vec<u8> = Vec::new();
    while let Some(x) = src.next_extent().map_err(ExportError::Read)? {
        let data = x.data.filter(|d| !is_zero(d));
        if let Some(d) = data {
            enc.begin_write(x.offset, x.len)
                .map_err(ExportError::Write)?;
            hooks.read(0, d, x.base);
            let rec = Exported {
                offset: x.offset,
                data: d,
                base: x.base,
                zero: false,
                at: 0,
            };
            hooks.record(&rec, enc);
            enc.data(d).map_err(ExportError::Write)?;
            stats.writes += 1;
            stats.data_bytes += x.len;
        } else {
            enc.zero(x.offset, x.len).map_err(ExportError::Write)?;
            let n = usize::try_from(x.len).unwrap_or(usize::MAX);
            if zeros.len() < n {
                zeros.resize(n, 0);
            }
            let rec = Exported {
                offset: x.offset,
                data: &zeros[..n],
                base: x.base,
                zero: true,
                at: 0,
            };
            hooks.record(&rec, enc);
            stats.zeros += 1;
            stats.zero_bytes += x.len;
        }
        let (mut a, mut b) = (AlignedBuf::default(), AlignedBuf::default());
        hooks.object_done(&mut a, &mut b, enc);
        progress(x.offset.saturating_add(x.len).min(size), size);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Format;
    use alloc::vec;

    /// Extents over an in-memory "new" image and base, as librbd would
    /// report them.
    struct Mem<'a> {
        to: &'a [u8],
        base: Option<&'a [u8]>,
        list: Vec<(u64, u64, bool)>,
        i: usize,
    }

    impl ExtentSource for Mem<'_> {
        type Error = core::convert::Infallible;
        fn next_extent(&mut self) -> Result<Option<ReadExtent<'_>>, Self::Error> {
            let Some(&(o, l, exists)) = self.list.get(self.i) else {
                return Ok(None);
            };
            self.i += 1;
            let r = usize::try_from(o).unwrap()..usize::try_from(o + l).unwrap();
            Ok(Some(ReadExtent {
                offset: o,
                len: l,
                data: exists.then(|| &self.to[r.clone()]),
                base: self.base.map(|b| &b[r]),
            }))
        }
    }

    fn header(size: u64) -> DiffHeader<'static> {
        DiffHeader {
            from: Some(b"a"),
            to: Some(b"b"),
            protected: None,
            size: Some(size),
        }
    }

    #[cfg(feature = "std")]
    #[test]
    fn one_record_per_extent_zero_data_as_z() {
        let mut to = vec![0u8; 16384];
        to[100..200].fill(7);
        let base = vec![1u8; 16384];
        let mut src = Mem {
            to: &to,
            base: None,
            // data with zeros inside, all-zero data, a hole
            list: vec![(0, 4096, true), (4096, 4096, true), (8192, 8192, false)],
            i: 0,
        };
        let mut enc = Encoder::diff(Vec::new(), Format::DiffV1).unwrap();
        let st = export_extents(&mut src, &header(16384), &mut enc, &mut |_, _| {}).unwrap();
        assert_eq!((st.writes, st.zeros, st.data_bytes), (1, 2, 4096));
        let out = enc.finish().unwrap();
        // Applying it to the base gives the new image.
        let mut img = base.clone();
        crate::apply::apply_stream(&out[..], &mut img, crate::Config::default(), 0).unwrap();
        assert_eq!(img, to);
    }

    #[test]
    fn sealed_hashes_match_the_base() {
        let mut to = vec![0u8; 8192];
        to[..4096].fill(9);
        let base = vec![3u8; 8192];
        let mut src = Mem {
            to: &to,
            base: Some(&base),
            list: vec![(0, 4096, true), (4096, 4096, false)],
            i: 0,
        };
        let mut enc = Encoder::diff(HashingSink::new(Vec::new()), Format::DiffV1).unwrap();
        let (_, m) = export_extents_sealed(
            &mut src,
            &header(8192),
            Some(8192),
            &mut enc,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(m.entries.len(), 2);
        let h = crate::integrity::hash;
        assert_eq!(m.entries[0].pre, h(&base[..4096]));
        assert_eq!(m.entries[0].post, h(&to[..4096]));
        assert_eq!(m.entries[1].pre, h(&base[4096..]));
        assert_eq!(m.entries[1].post, h(&[0u8; 4096]));
        assert!(m.checksum.is_some());
    }
}
