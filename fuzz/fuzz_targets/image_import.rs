//! Arbitrary `rbd image v2` streams imported as `import --export-format 2`
//! does (decoder + ImportEngine) into an in-memory image of at most 8 MiB:
//! no panic, no write outside the image, no image over the bound; when the
//! stream is complete and valid and its checks are off, the image is what
//! the naive model of rbd's rules gives (and the import succeeds).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rbdiff::apply::{ImportEngine, ImportOptions, NoUndo, Sequential};
use rbdiff::block::{BlockSink, BlockSource};
use rbdiff::{Config, EventReader, FormatSet, ReadError};
use rbdiff_tests::{Ev, Model, decode_whole};

/// Largest image the target keeps in memory.
const LIMIT: u64 = 8 << 20;

/// A bounded in-memory image: growing it past [`LIMIT`] fails; a write
/// outside its size panics (the engine must never ask for one).
struct Mem(Vec<u8>);

#[derive(Debug)]
struct TooBig;

impl BlockSource for Mem {
    type Error = TooBig;
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), TooBig> {
        self.0.read_at(offset, buf).map_err(|e| match e {})
    }
}

impl BlockSink for Mem {
    type Error = TooBig;
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn set_size(&mut self, size: u64) -> Result<(), TooBig> {
        if size > LIMIT {
            return Err(TooBig);
        }
        self.0.set_size(size).map_err(|e| match e {})
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), TooBig> {
        self.0.write_at(offset, data).map_err(|e| match e {})
    }
    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), TooBig> {
        self.0.write_zeroes(offset, len).map_err(|e| match e {})
    }
}

fuzz_target!(|input: &[u8]| {
    // [flags: sparse size (2 bits), verify (1 bit), read buffer (5 bits)] [stream]
    let Some((&flags, data)) = input.split_first() else {
        return;
    };
    let sparse = [0u64, 512, 4096, 65536][usize::from(flags & 3)];
    let verify = flags & 4 != 0;
    let config = Config::rbd_compatible().with_formats(FormatSet::IMAGE);
    let opts = ImportOptions::new()
        .with_sparse_size(sparse)
        .with_verify(verify)
        .with_stream_len(Some(data.len() as u64));
    let mut eng = ImportEngine::<NoUndo>::new(opts, None).expect("no known manifest");
    let mut dev = Mem(Vec::new());
    let cap = 64usize << (flags >> 3).min(14);
    let mut reader = EventReader::with_capacity(data, config, cap);
    let mut ok = true;
    loop {
        match reader.next_event_raw() {
            Ok(Some((at, ev, raw))) => {
                if eng.event(&mut dev, &mut Sequential, at, &ev, raw).is_err() {
                    ok = false;
                    break;
                }
            }
            Ok(None) => break,
            Err(ReadError::Decode(_)) => {
                let _ = eng.abort(&mut dev);
                ok = false;
                break;
            }
            Err(ReadError::Io(e)) => panic!("reading a slice failed: {e}"),
        }
    }
    assert!(dev.0.len() as u64 <= LIMIT);
    if verify {
        return;
    }
    // The oracle: a complete, valid stream within the bound.
    let d = decode_whole(data, config);
    if d.error.is_some()
        || d.evs()
            .iter()
            .any(|e| matches!(e, Ev::Size(n) if *n > LIMIT))
    {
        return;
    }
    let mut m = Model::from_bytes(Vec::new());
    let model_ok = m.apply(&d.evs()).is_ok();
    assert_eq!(ok, model_ok, "engine and model disagree on success");
    if ok {
        assert!(m.image == dev.0, "imported image differs from the model");
    }
});
