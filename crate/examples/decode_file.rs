//! Decode and validate a stream file through [`Pump`] with a 1 MiB (64-byte aligned) read buffer,
//! printing what it held, the throughput and the peak RSS (bench/run uses it).
//!
//! `cargo run --release --example decode_file -- FILE`
//! `cargo run --release --example decode_file -- --generate FILE GIB` writes a
//! v1 diff of about GIB GiB (4 MiB `w` records of pseudo-random data, a few `z`).

use rbdiff::IoSink;
use rbdiff::{Config, Decoder, DiffHeader, Encoder, Event, Format, Pump, PumpError};
use std::io::{BufWriter, Read};
use std::time::Instant;

fn generate(path: &str, gib: u64) -> std::io::Result<()> {
    const REC: u64 = 4 << 20;
    let total = gib << 30;
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut enc = Encoder::diff(IoSink(out), Format::DiffV1).map_err(std::io::Error::other)?;
    let size = total * 2; // room for the z records between the writes
    enc.header(&DiffHeader {
        from: Some(b"base"),
        to: Some(b"bench"),
        protected: None,
        size: Some(size),
    })
    .map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 4 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let (mut off, mut written) = (0u64, 0u64);
    let mut i = 0u64;
    while written < total {
        if i % 8 == 7 {
            enc.zero(off, REC).map_err(std::io::Error::other)?;
        } else {
            for w in buf.chunks_exact_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.copy_from_slice(&x.to_le_bytes());
            }
            enc.write(off, &buf).map_err(std::io::Error::other)?;
            written += REC;
        }
        off += REC;
        i += 1;
    }
    enc.end_diff().map_err(std::io::Error::other)?;
    let IoSink(mut w) = enc.finish().map_err(std::io::Error::other)?;
    std::io::Write::flush(&mut w)
}

fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let l = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--generate") {
        let gib = args.get(2).map_or(Ok(1), |s| s.parse())?;
        return Ok(generate(&args[1], gib)?);
    }
    let path = args
        .first()
        .ok_or("usage: decode_file FILE | --generate FILE GIB")?;
    let mut file = std::fs::File::open(path)?;
    let mut pump = Pump::new(Decoder::new(Config::new()));
    // 64-byte aligned: the kernel's copy into glibc's page + 16 start of a
    // big Vec runs at half speed on AMD EPYC (see AlignedBuf).
    let mut buf = rbdiff::block::AlignedBuf::zeroed(1 << 20);
    let (mut records, mut data, mut warnings, mut total) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    loop {
        let n = file.read(&mut buf)?;
        total += n as u64;
        let r = pump.feed::<(), _>(&buf[..n], n == 0, |_, ev| {
            match ev {
                Event::Write { .. } | Event::Zero { .. } => records += 1,
                Event::Data { bytes, .. } => data += bytes.len() as u64,
                Event::Warning(_) => warnings += 1,
                _ => {}
            }
            Ok(())
        });
        match r {
            Ok(_) if n == 0 => break,
            Ok(_) => {}
            Err(PumpError::Decode(e)) => return Err(format!("{path}: {e}").into()),
            Err(PumpError::Handler(())) => unreachable!(),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bytes={total} records={records} data_bytes={data} warnings={warnings} secs={secs:.3} mb_per_s={:.1} peak_rss_kib={}",
        total as f64 / secs / 1e6,
        peak_rss_kib().unwrap_or(0)
    );
    Ok(())
}
