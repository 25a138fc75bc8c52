//! Block devices: the two traits every engine reads and writes through.
//!
//! [`BlockSource`] (read side) and [`BlockSink`] (write side): the apply
//! engines ([`crate::apply`]) and the export engine ([`crate::export`]) are
//! written once against them. `Vec<u8>` is the naive in-memory model;
//! [`FileImage`] (feature `std`) is a raw image file, on Linux, macOS and
//! WASI alike. A new backend (a librbd cluster image, a browser `Blob`, a
//! component host's device) implements these two traits and gets every
//! engine.

use alloc::vec::Vec;

/// A readable image.
pub trait BlockSource {
    /// The source's error.
    type Error;
    /// Image size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; bytes past the size read as zeros.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// The first allocated region `(start, end)` at or after `offset`, if the
    /// source knows its holes; the default says everything is data.
    fn next_data(&mut self, offset: u64) -> Result<Option<(u64, u64)>, Self::Error> {
        Ok((offset < self.size()).then(|| (offset, self.size())))
    }
    /// Hand the bytes `[offset, offset + len)` (within the size) to `f` in
    /// order, as one or more slices, without copying them where the source
    /// can: a slice hands itself, a [`FileImage`] maps the file on Linux.
    /// `Ok(false)`: the source has no such path and nothing was handed (the
    /// caller reads with [`read_at`](Self::read_at)); the default.
    fn view(
        &mut self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, Self::Error> {
        let _ = (offset, len, f);
        Ok(false)
    }
}

/// Hand `[offset, end)` of `src` to `f`, read into `buf` (not empty) a
/// `buf.len()` bytes at a time: what [`BlockSource::view`] falls back to.
pub(crate) fn read_through<S: BlockSource + ?Sized>(
    src: &mut S,
    mut offset: u64,
    end: u64,
    buf: &mut [u8],
    f: &mut dyn FnMut(&[u8]),
) -> Result<(), S::Error> {
    while offset < end {
        let n = usize_of(end - offset).min(buf.len());
        src.read_at(offset, &mut buf[..n])?;
        f(&buf[..n]);
        offset += n as u64;
    }
    Ok(())
}

/// A writable image.
pub trait BlockSink {
    /// The sink's error.
    type Error;
    /// Image size in bytes.
    fn size(&self) -> u64;
    /// Grow (with zeros) or shrink the image.
    fn set_size(&mut self, size: u64) -> Result<(), Self::Error>;
    /// Write `data` at `offset` (within the size).
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;
    /// Make `len` bytes at `offset` read as zeros (within the size).
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), Self::Error>;
    /// Make everything written durable.
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A zeroed byte buffer that starts on a 64-byte (cache-line) boundary, for
/// what is read into with [`BlockSource::read_at`] (`pread` natively).
///
/// A large `Vec<u8>` from glibc's `malloc` starts 16 bytes past a page
/// boundary, and the kernel's copy into such a buffer (`rep movsb`) runs at
/// a half to a third of the speed on AMD EPYC (1 GiB read in 256 KiB
/// pieces into a buffer at a page + 16: 187–256 ms; at + 0 or + 64:
/// 66–101 ms). Safe: a `Vec` 63 bytes longer, used from its first aligned
/// byte.
#[derive(Clone, Debug, Default)]
pub struct AlignedBuf {
    /// 63 bytes more than the buffer (none when empty).
    bytes: alloc::boxed::Box<[u8]>,
    /// Where the buffer starts in `bytes` (< 64).
    off: u8,
}

impl AlignedBuf {
    /// `len` zero bytes, 64-byte aligned.
    #[must_use]
    pub fn zeroed(len: usize) -> Self {
        let bytes = alloc::vec![0u8; len.saturating_add(63)].into_boxed_slice();
        // `align_offset` may give up (`usize::MAX`): then unaligned, still correct.
        let off = u8::try_from(bytes.as_ptr().align_offset(64)).unwrap_or(0);
        AlignedBuf { bytes, off }
    }

    /// Keeps `self[tail]` (bytes read and not used yet) for the next read
    /// into the buffer: moved so that it ends on a 64-byte boundary, so
    /// the read after it lands aligned (a tail of a few bytes costs a
    /// copy of a few bytes). When `need` bytes from the tail's start fit
    /// only unaligned, the tail goes to the start (no growth); when they
    /// do not fit at all, the buffer grows to `grow_to` or to `need` and
    /// 63 bytes (so that the next such tail fits aligned). Returns where
    /// the tail now starts.
    #[must_use]
    pub fn keep_tail(
        &mut self,
        tail: core::ops::Range<usize>,
        need: usize,
        grow_to: usize,
    ) -> usize {
        let n = tail.len();
        let need = need.max(n);
        let mut at = (64 - n % 64) % 64;
        if at + need > self.len() && need <= self.len() {
            at = 0;
        }
        if at + need > self.len() {
            // Grown in place where the allocator can (`realloc`: no second
            // copy of what is buffered alive at once, as `Vec::resize`).
            let len = grow_to.max(need.saturating_add(63));
            let from = usize::from(self.off) + tail.start..usize::from(self.off) + tail.end;
            let mut v = core::mem::take(&mut self.bytes).into_vec();
            v.reserve_exact((len + 63).saturating_sub(v.len()));
            v.resize(len + 63, 0);
            let mut bytes = v.into_boxed_slice();
            let off = u8::try_from(bytes.as_ptr().align_offset(64)).unwrap_or(0);
            bytes.copy_within(from, usize::from(off) + at);
            *self = AlignedBuf { bytes, off };
        } else if tail.start != at {
            self.copy_within(tail, at);
        }
        at
    }

    fn range(&self) -> core::ops::Range<usize> {
        let len = self.bytes.len().saturating_sub(63);
        usize::from(self.off)..usize::from(self.off) + len
    }
}

impl core::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.range()]
    }
}

impl core::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        let r = self.range();
        &mut self.bytes[r]
    }
}

pub(crate) fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl BlockSource for [u8] {
    type Error = core::convert::Infallible;
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        read_slice(self, offset, buf);
        Ok(())
    }
    fn view(
        &mut self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, Self::Error> {
        let start = usize_of(offset).min(self.len());
        let end = usize_of(offset.saturating_add(len)).min(self.len());
        f(&self[start..end]);
        Ok(true)
    }
}

impl BlockSource for Vec<u8> {
    type Error = core::convert::Infallible;
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.as_mut_slice().read_at(offset, buf)
    }
    fn view(
        &mut self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> Result<bool, Self::Error> {
        self.as_mut_slice().view(offset, len, f)
    }
}

fn read_slice(src: &[u8], offset: u64, buf: &mut [u8]) {
    buf.fill(0);
    if offset < src.len() as u64 {
        let o = usize_of(offset);
        let n = (src.len() - o).min(buf.len());
        buf[..n].copy_from_slice(&src[o..o + n]);
    }
}

impl BlockSink for Vec<u8> {
    type Error = core::convert::Infallible;
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn set_size(&mut self, size: u64) -> Result<(), Self::Error> {
        self.resize(usize_of(size), 0);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error> {
        let o = usize_of(offset);
        self[o..o + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), Self::Error> {
        let o = usize_of(offset);
        self[o..o + usize_of(len)].fill(0);
        Ok(())
    }
}

/// True if every byte is zero.
///
/// Checks 256-byte blocks (OR of 32 words, which LLVM turns into SIMD ORs)
/// with an early exit per block; on wasm32 with `simd128` it uses `v128`
/// loads directly, which Cranelift compiles to SSE/NEON.
#[inline]
pub fn is_zero(buf: &[u8]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        is_zero_simd128(buf)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        let mut blocks = buf.chunks_exact(256);
        for b in &mut blocks {
            let mut acc = 0u64;
            for w in b.chunks_exact(8) {
                let mut a = [0u8; 8];
                a.copy_from_slice(w);
                acc |= u64::from_ne_bytes(a);
            }
            if acc != 0 {
                return false;
            }
        }
        blocks.remainder().iter().fold(0, |a, &b| a | b) == 0
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn is_zero_simd128(buf: &[u8]) -> bool {
    use core::arch::wasm32::{v128, v128_any_true, v128_load, v128_or};
    let mut blocks = buf.chunks_exact(64);
    for b in &mut blocks {
        let p = b.as_ptr().cast::<v128>();
        // SAFETY: `b` is 64 readable bytes; `v128_load` accepts unaligned
        // pointers.
        let (x0, x1, x2, x3) = unsafe {
            (
                v128_load(p),
                v128_load(p.add(1)),
                v128_load(p.add(2)),
                v128_load(p.add(3)),
            )
        };
        if v128_any_true(v128_or(v128_or(x0, x1), v128_or(x2, x3))) {
            return false;
        }
    }
    blocks.remainder().iter().fold(0, |a, &b| a | b) == 0
}

/// `a == b`. On wasm32 `memcmp` is a byte loop: there, 64-byte blocks are
/// compared as `v128` (with `simd128`) or `u64` words instead.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    #[cfg(target_arch = "wasm32")]
    {
        if a.len() != b.len() {
            return false;
        }
        let mut xa = a.chunks_exact(64);
        let mut xb = b.chunks_exact(64);
        for (x, y) in (&mut xa).zip(&mut xb) {
            if !same_64(x, y) {
                return false;
            }
        }
        xa.remainder() == xb.remainder()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        a == b
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn same_64(x: &[u8], y: &[u8]) -> bool {
    use core::arch::wasm32::{v128, v128_any_true, v128_load, v128_or, v128_xor};
    debug_assert!(x.len() == 64 && y.len() == 64);
    let (p, q) = (x.as_ptr().cast::<v128>(), y.as_ptr().cast::<v128>());
    // SAFETY: both slices are 64 readable bytes; `v128_load` accepts
    // unaligned pointers.
    let d = unsafe {
        v128_or(
            v128_or(
                v128_xor(v128_load(p), v128_load(q)),
                v128_xor(v128_load(p.add(1)), v128_load(q.add(1))),
            ),
            v128_or(
                v128_xor(v128_load(p.add(2)), v128_load(q.add(2))),
                v128_xor(v128_load(p.add(3)), v128_load(q.add(3))),
            ),
        )
    };
    !v128_any_true(d)
}

#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
#[inline]
fn same_64(x: &[u8], y: &[u8]) -> bool {
    let mut acc = 0u64;
    for (p, q) in x.chunks_exact(8).zip(y.chunks_exact(8)) {
        let (mut a, mut b) = ([0u8; 8], [0u8; 8]);
        a.copy_from_slice(p);
        b.copy_from_slice(q);
        acc |= u64::from_ne_bytes(a) ^ u64::from_ne_bytes(b);
    }
    acc == 0
}

#[cfg(feature = "std")]
mod file;
#[cfg(feature = "std")]
pub use file::FileImage;

#[cfg(test)]
mod tests {
    use super::AlignedBuf;

    #[test]
    fn aligned_buf_is_aligned_zeroed_and_exact() {
        for len in [0usize, 1, 63, 64, 4095, 256 << 10, 4 << 20] {
            let mut b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            if len > 0 {
                assert_eq!(b.as_ptr().align_offset(64), 0, "len {len}");
            }
            b.fill(7);
            assert!(b.iter().all(|&x| x == 7));
        }
        assert!(AlignedBuf::default().is_empty());
    }

    #[test]
    fn keep_tail_ends_aligned_and_keeps_the_bytes() {
        // (buffer length, tail, need, grow_to)
        for (len, tail, need, grow) in [
            (1024, 1000..1010, 100, 2048),
            (1024, 0..1024, 1025, 2048),
            (1024, 64..128, 64, 0),
            (1024, 5..5, 1, 0),
            (256, 100..250, 4000, 0),
            (4096, 3000..4096, 4097, 8192),
        ] {
            let mut b = AlignedBuf::zeroed(len);
            for (x, v) in b.iter_mut().zip((0..=250u8).cycle()) {
                *x = v;
            }
            let want = alloc::vec::Vec::from(&b[tail.clone()]);
            let at = b.keep_tail(tail.clone(), need, grow);
            let n = want.len();
            assert_eq!(&b[at..at + n], &want[..], "{tail:?}");
            assert_eq!((b.as_ptr() as usize + at + n) % 64, 0, "{tail:?}");
            assert!(b.len() >= at + need.max(n), "{tail:?}");
            assert!(at < 64);
        }
        // Fits only unaligned: kept at the start, no growth.
        let mut b = AlignedBuf::zeroed(4096);
        b[10] = 9;
        assert_eq!(b.keep_tail(10..11, 4096, 8192), 0);
        assert_eq!((b.len(), b[0]), (4096, 9));
        // Grown to the need and 63: the next tail fits aligned whatever it is.
        assert_eq!(b.keep_tail(0..1, 5000, 0), 63);
        assert_eq!((b.len(), b[63]), (5063, 9));
        assert_eq!(b.keep_tail(63..65, 5000, 0), 62);
    }
}
