//! FileImage on real (sparse) files: SEEK_DATA/SEEK_HOLE skipping and hole
//! punching give the same diffs and images as the in-memory model.

use rbdiff::IoSink;
use rbdiff::block::{BlockSink, BlockSource, FileImage};
use rbdiff::export::{ExportOptions, export_diff};
use rbdiff::integrity::hash_range;
use rbdiff::{DiffHeader, Encoder, Format};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(name: &str) -> Tmp {
    let d = std::env::temp_dir().join(format!("rbdiff-file-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Tmp(d)
}

fn open(p: &Path) -> FileImage {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .unwrap();
    FileImage::new(f).unwrap()
}

fn export<A, B>(from: Option<&mut A>, to: &mut B, whole: bool) -> Vec<u8>
where
    A: BlockSource + ?Sized,
    B: BlockSource<Error = A::Error> + ?Sized,
    A::Error: std::fmt::Debug,
{
    let mut enc = Encoder::diff(IoSink(Vec::new()), Format::DiffV1).unwrap();
    let opts = ExportOptions::new()
        .with_object_size(1 << 20)
        .with_whole_object(whole);
    export_diff(
        from,
        to,
        &DiffHeader::default(),
        &opts,
        &mut enc,
        &mut |_, _| {},
    )
    .unwrap();
    enc.finish().unwrap().0
}

/// An image: sparse file of `size` with `(offset, byte, len)` extents written.
fn build(p: &Path, size: u64, extents: &[(u64, u8, usize)]) -> (FileImage, Vec<u8>) {
    let mut img = open(p);
    img.set_size(size).unwrap();
    let mut model = vec![0u8; usize::try_from(size).unwrap()];
    for &(o, b, n) in extents {
        img.write_at(o, &vec![b; n]).unwrap();
        let o = usize::try_from(o).unwrap();
        model[o..o + n].fill(b);
    }
    (img, model)
}

#[test]
fn sparse_export_matches_the_model() {
    let t = tmp("export");
    let size = 64 << 20;
    let base_ext = [(0, 1, 4096), (5 << 20, 2, 100_000), (33 << 20, 3, 1 << 20)];
    let (mut a, ma) = build(&t.0.join("a"), size, &base_ext);
    let (mut b, mb) = build(
        &t.0.join("b"),
        size,
        &[
            (0, 1, 4096),
            (5 << 20, 2, 100_000),
            (33 << 20, 3, 1 << 20),
            // changes: new data in a hole, overwrite, data that is zeros
            (12 << 20, 9, 3000),
            ((5 << 20) + 50_000, 7, 10),
            ((33 << 20) + 4096, 0, 8192),
            ((63 << 20) + 12345, 5, 1),
        ],
    );
    for whole in [false, true] {
        let mut va = ma.clone();
        let mut vb = mb.clone();
        assert_eq!(
            export(Some(&mut a), &mut b, whole),
            export(Some(&mut va), &mut vb, whole),
            "from base, whole_object={whole}"
        );
        assert_eq!(
            export::<FileImage, _>(None, &mut b, whole),
            export::<Vec<u8>, _>(None, &mut vb, whole),
            "from zeros, whole_object={whole}"
        );
        // from a bigger / smaller image
        assert_eq!(
            export(Some(&mut b), &mut a, whole),
            export(Some(&mut vb), &mut va, whole)
        );
        let (mut c, mut vc) = build(
            &t.0.join(format!("c{whole}")),
            8 << 20,
            &[(0, 4, 4096), ((5 << 20) + 4096, 2, 10)],
        );
        assert_eq!(
            export(Some(&mut c), &mut a, whole),
            export(Some(&mut vc), &mut va, whole),
            "from a smaller image"
        );
    }
    #[cfg(target_os = "linux")]
    {
        // SEEK_DATA sees the holes (when the filesystem has them).
        let r = b.next_data(20 << 20).unwrap();
        assert!(r.is_none_or(|(s, e)| s >= 20 << 20 && e > s));
        assert_eq!(b.next_data(size).unwrap(), None);
    }
}

#[test]
fn write_zeroes_reads_back_as_zeros() {
    let t = tmp("zeroes");
    let (mut img, mut model) = build(&t.0.join("z"), 8 << 20, &[(0, 0xaa, 8 << 20)]);
    for (o, n) in [
        (100u64, 10u64),
        (4096, 4096),
        (1 << 20, 3 << 20),
        ((8 << 20) - 7, 7),
    ] {
        img.write_zeroes(o, n).unwrap();
        let o = usize::try_from(o).unwrap();
        model[o..o + usize::try_from(n).unwrap()].fill(0);
    }
    let mut got = vec![0u8; 8 << 20];
    img.read_at(0, &mut got).unwrap();
    assert_eq!(BlockSource::size(&img), 8 << 20);
    assert!(got == model);
}

/// Everything `view` hands out, concatenated.
fn viewed<S: BlockSource + ?Sized>(s: &mut S, offset: u64, len: u64) -> Vec<u8>
where
    S::Error: std::fmt::Debug,
{
    let mut out = Vec::new();
    assert!(
        s.view(offset, len, &mut |b| out.extend_from_slice(b))
            .unwrap()
    );
    out
}

#[test]
fn view_hands_out_the_bytes_read_at_gives() {
    let t = tmp("view");
    let p = t.0.join("img");
    // 70 MiB: ranges spanning several 32 MiB mapping windows, at offsets
    // that are not page-aligned, some below the 1 MiB mapping threshold.
    let n: usize = 70 << 20;
    let size = n as u64;
    let mut data = vec![0u8; n];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    std::fs::write(&p, &data).unwrap();
    let mut img = open(&p);
    for (o, l) in [
        (0usize, n),
        (1, n - 1),
        (4095, (33 << 20) + 17),
        ((5 << 20) + 3, 1 << 20),
        (12345, 1000),
        (n - 5000, 5000),
        (n, 0),
    ] {
        let (off, len) = (o as u64, l as u64);
        assert!(viewed(&mut img, off, len) == data[o..o + l], "{off}+{len}");
        assert!(viewed(&mut data.clone(), off, len) == data[o..o + l]);
    }
    // Asked past the size: only what lies within it.
    assert_eq!(viewed(&mut img, size - 10, 100).len(), 10);
    // Hashes made through views equal those made through read_at, zeros
    // past the size included.
    let mut plain = ReadOnly(data.clone());
    for (off, len) in [(0, size), (4095, 40 << 20), (size - (2 << 20), 4 << 20)] {
        let mut buf = Vec::new();
        assert_eq!(
            hash_range(&mut img, off, len, &mut buf).unwrap(),
            hash_range(&mut plain, off, len, &mut buf).unwrap(),
            "{off}+{len}"
        );
    }
}

/// A source without views (the trait's default).
struct ReadOnly(Vec<u8>);
impl BlockSource for ReadOnly {
    type Error = std::convert::Infallible;
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        self.0.read_at(offset, buf)
    }
}

#[test]
fn view_of_a_file_shortened_since_it_was_opened_reads_zeros() {
    let t = tmp("view-short");
    let p = t.0.join("img");
    std::fs::write(&p, vec![7u8; 8 << 20]).unwrap();
    let mut img = open(&p);
    // Another process truncates it: nothing past the new end is mapped
    // (which would raise SIGBUS); those bytes read as zeros, as read_at does.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    let v = viewed(&mut img, 1 << 20, 6 << 20);
    assert_eq!(v.len(), 6 << 20);
    assert!(v[..2 << 20].iter().all(|&b| b == 7));
    assert!(v[2 << 20..].iter().all(|&b| b == 0));
}
