//! FileImage on real (sparse) files: SEEK_DATA/SEEK_HOLE skipping and hole
//! punching give the same diffs and images as the in-memory model.

use rbdiff::encode::IoSink;
use rbdiff::image::{BlockSink, BlockSource, ExportOptions, FileImage, export_diff};
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
    let opts = ExportOptions {
        object_size: 1 << 20,
        whole_object: whole,
        ..ExportOptions::default()
    };
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
