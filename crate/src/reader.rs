//! A pull-style driver over [`std::io::Read`]: `next_event()` reads as much
//! as the decoder needs and hands back one event at a time.

use crate::block::AlignedBuf;
use crate::decode::{Config, Decoder, Event, Step};
use crate::error::DecodeError;
use std::io::{self, Read};

/// Default read size: large enough for page-cache speed, small enough for wasm.
pub const DEFAULT_BUFFER: usize = 1 << 20;

/// Payload pieces that stop inside their record end at image offsets that
/// are multiples of this (see [`EventReader`]).
pub const PIECE_ALIGN: u64 = 4096;

/// An I/O or decode failure while reading a stream.
#[derive(Debug)]
pub enum ReadError {
    /// The stream is invalid.
    Decode(DecodeError),
    /// The reader failed.
    Io(io::Error),
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::Decode(e) => e.fmt(f),
            ReadError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<DecodeError> for ReadError {
    fn from(e: DecodeError) -> Self {
        ReadError::Decode(e)
    }
}

/// An event with its stream offset and the raw bytes consumed for it.
pub type RawEvent<'a> = (u64, Event<'a>, &'a [u8]);

/// A decoder reading from `R` through its own buffer.
#[derive(Debug)]
pub struct EventReader<R> {
    inner: R,
    dec: Decoder,
    /// 64-byte aligned, and `end` kept aligned where it can be: the
    /// kernel's copy into a buffer at a page + 16 (glibc's big `Vec`) runs
    /// at half speed on AMD EPYC (see [`AlignedBuf`]).
    buf: AlignedBuf,
    start: usize,
    end: usize,
    eof: bool,
    limit: usize,
    read_total: u64,
    hold: u64,
}

impl<R: Read> EventReader<R> {
    /// A reader with the default buffer size.
    pub fn new(inner: R, config: Config) -> Self {
        Self::with_capacity(inner, config, DEFAULT_BUFFER)
    }

    /// A reader with a buffer of `capacity` bytes (grown up to
    /// [`Config::max_item_len`] when an item needs it).
    pub fn with_capacity(inner: R, config: Config, capacity: usize) -> Self {
        EventReader {
            inner,
            dec: Decoder::new(config),
            buf: AlignedBuf::zeroed(capacity.max(64)),
            start: 0,
            end: 0,
            eof: false,
            limit: config.max_item_len().max(capacity),
            read_total: 0,
            hold: 0,
        }
    }

    /// Hand `w` payloads of up to `limit` bytes over whole, in one
    /// [`Event::Data`] (the buffer grows to hold them): what an importer
    /// that writes a record only once complete (`rbdiff::apply`) takes
    /// without copying. Larger payloads come in pieces as before. At the
    /// end of the input, what arrived of a payload comes as one piece
    /// before the error.
    pub fn hold_payloads(mut self, limit: usize) -> Self {
        self.hold = limit as u64;
        self
    }

    /// Continue a stream from a checkpoint; `inner` must be positioned at
    /// `cp.position`.
    pub fn resume(inner: R, config: Config, cp: &crate::decode::Checkpoint) -> Self {
        let mut r = Self::new(inner, config);
        r.dec = Decoder::resume(config, cp);
        r
    }

    /// The decoder (position, format, state).
    pub fn decoder(&self) -> &Decoder {
        &self.dec
    }

    /// Bytes read from the inner reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.read_total
    }

    /// Bytes read from the inner reader but not consumed by the decoder
    /// (after the end of a stream: the start of what follows it, such as a
    /// v1 integrity trailer).
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn fill(&mut self, need: usize) -> Result<(), ReadError> {
        let len = self.end - self.start;
        if self.start > 0 || need > self.buf.len() {
            // `need` is bounded by the decoder's configured item limits.
            // Grown a MiB at a time at least: held payloads of 64 KiB to
            // 4 MiB regrew the buffer at each larger one (5 times on
            // bench/run's diff: wasm's linear memory 19 -> 26 MiB).
            let grown = (self.buf.len() * 2)
                .min(self.limit)
                .max(need.next_multiple_of(DEFAULT_BUFFER));
            self.start = self.buf.keep_tail(self.start..self.end, need, grown);
            self.end = self.start + len;
        }
        while self.end - self.start < need {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    self.read_total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        Ok(())
    }

    /// The next event, or `None` once the stream is complete (bytes after
    /// the end are not read).
    pub fn next_event(&mut self) -> Result<Option<(u64, Event<'_>)>, ReadError> {
        Ok(self.next_inner(usize::MAX)?.map(|(o, e, _)| (o, e)))
    }

    /// Like [`next_event`](Self::next_event), also returning the raw bytes
    /// the decoder consumed for the event (for checksums).
    pub fn next_event_raw(&mut self) -> Result<Option<RawEvent<'_>>, ReadError> {
        self.next_inner(usize::MAX)
    }

    /// Like [`next_event`](Self::next_event), but a `w` payload piece is at
    /// most `max` bytes (so a caller can take part of a record).
    pub fn next_limited(&mut self, max: usize) -> Result<Option<(u64, Event<'_>)>, ReadError> {
        Ok(self.next_inner(max)?.map(|(o, e, _)| (o, e)))
    }

    fn next_inner(&mut self, max: usize) -> Result<Option<RawEvent<'_>>, ReadError> {
        if self.dec.is_done() {
            return Ok(None);
        }
        // The decoder does not change state when it asks for more input, so a
        // copy of it finds out how much to read first.
        loop {
            let avail = self.end - self.start;
            if let Some(need) = self.held_need(avail) {
                self.fill(need)?;
                continue;
            }
            let mut probe = self.dec.clone();
            let window = self.window(max, avail);
            if window == 0 && !self.eof {
                // Mid-payload with less than a page's worth to its next
                // aligned offset buffered: read more first.
                self.fill(avail + 1)?;
                continue;
            }
            match probe.decode(
                &self.buf[self.start..self.start + window],
                self.eof && window == avail,
            ) {
                Ok(Step::NeedMore(n)) => {
                    let n = if self.dec.in_data() { 1 } else { n };
                    let before = self.end - self.start;
                    self.fill(n.max(before + 1))?;
                }
                _ => break,
            }
        }
        let avail = self.end - self.start;
        let window = self.window(max, avail);
        let s = self.start;
        let eof = self.eof && window == avail;
        let buf = &self.buf[..];
        match self.dec.decode(&buf[s..s + window], eof)? {
            Step::Event {
                offset,
                consumed,
                event,
            } => {
                self.start = s + consumed;
                Ok(Some((offset, event, &buf[s..s + consumed])))
            }
            Step::Done => Ok(None),
            Step::NeedMore(_) => unreachable!("probe said the input suffices"),
        }
    }

    /// Bytes to buffer first for a payload handed over whole.
    fn held_need(&self, avail: usize) -> Option<usize> {
        let (_, left) = self.dec.payload_left()?;
        if self.eof || left > self.hold || left <= avail as u64 {
            return None;
        }
        usize::try_from(left).ok()
    }

    /// How much of the buffer to hand the decoder. A payload piece that
    /// stops inside its record ends at a [`PIECE_ALIGN`]-aligned image
    /// offset where it can, so a sink writes whole pages: a write that ends
    /// mid-page makes the kernel read that page first when it is not cached
    /// (measured: +13 % on a 1 GiB import into an image not in the page
    /// cache). 0: read more first.
    fn window(&self, max: usize, avail: usize) -> usize {
        let Some((offset, left)) = self.dec.payload_left() else {
            return avail;
        };
        let w = avail.min(max.max(1));
        if w as u64 >= left || self.eof {
            return w;
        }
        let cut = usize::try_from(offset.wrapping_add(w as u64) % PIECE_ALIGN).unwrap_or(0);
        if cut < w {
            w - cut
        } else if w == avail && avail.next_multiple_of(64) < self.buf.len() {
            // (`fill` keeps what is buffered ending 64-byte aligned.)
            0
        } else {
            w
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EventReader;
    use crate::decode::{Config, Event};
    use crate::encode::{DiffHeader, Encoder};
    use crate::format::Format;
    use alloc::vec::Vec;

    /// Gives the bytes as asked, noting how far each read's buffer starts
    /// before a 64-byte boundary when it is not aligned.
    struct Spy<'a> {
        data: &'a [u8],
        misaligned: Vec<usize>,
        reads: usize,
    }

    impl std::io::Read for Spy<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.data.len());
            if n > 0 {
                self.reads += 1;
                let at = buf.as_ptr().align_offset(64);
                if at != 0 {
                    self.misaligned.push(at);
                }
            }
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_land_64_byte_aligned_and_events_are_unchanged() {
        let mut enc = Encoder::diff(Vec::new(), Format::DiffV1).unwrap();
        enc.header(&DiffHeader {
            size: Some(1 << 30),
            ..DiffHeader::default()
        })
        .unwrap();
        let (mut off, mut written) = (0u64, Vec::new());
        for i in 0..300u16 {
            let len = 1 + usize::from(i) * 37 % 5000;
            let b: Vec<u8> = (0..=255u8).cycle().skip(i.into()).take(len).collect();
            enc.write(off, &b).unwrap();
            written.extend_from_slice(&b);
            enc.zero(off + len as u64, 4096).unwrap();
            off += len as u64 + 4096 + 512;
        }
        enc.end_diff().unwrap();
        let stream = enc.finish().unwrap();
        // hold: payloads handed over whole (import-diff), the buffer grows.
        for (cap, hold) in [(4096, 0), (10_000, 0), (100_000, 0), (4096, 8192)] {
            let spy = Spy {
                data: &stream,
                misaligned: Vec::new(),
                reads: 0,
            };
            let mut r = EventReader::with_capacity(spy, Config::new(), cap).hold_payloads(hold);
            let (mut raw_all, mut data) = (Vec::new(), Vec::new());
            while let Some((_, ev, raw)) = r.next_event_raw().unwrap() {
                raw_all.extend_from_slice(raw);
                if let Event::Data { bytes, .. } = ev {
                    data.extend_from_slice(bytes);
                }
            }
            assert!(raw_all == stream && data == written, "capacity {cap}");
            let spy = r.into_inner();
            assert!(spy.reads > 2, "capacity {cap}");
            // A payload to hold that fits the buffer only unaligned is
            // read unaligned rather than grow the buffer: rare.
            let allowed = if hold > 0 { spy.reads / 20 } else { 0 };
            assert!(
                spy.misaligned.len() <= allowed,
                "capacity {cap}, hold {hold}: {} of {} reads unaligned",
                spy.misaligned.len(),
                spy.reads
            );
        }
    }
}
