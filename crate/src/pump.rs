//! A ready driver for [`Decoder`]: feed it chunks of any size, get events.
//!
//! It keeps only the bytes of an item split across chunks (at most
//! [`Config::max_item_len`](crate::Config::max_item_len)); `w` payloads are
//! passed through as slices of the chunk.

use crate::decode::{Decoder, Event, Step};
use crate::error::DecodeError;
use alloc::vec::Vec;

/// Why [`Pump::feed`] stopped.
#[derive(Debug)]
pub enum PumpError<E> {
    /// The stream is invalid.
    Decode(DecodeError),
    /// The event handler failed.
    Handler(E),
}

impl<E: core::fmt::Display> core::fmt::Display for PumpError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PumpError::Decode(e) => e.fmt(f),
            PumpError::Handler(e) => e.fmt(f),
        }
    }
}

#[cfg(feature = "std")]
impl<E: core::fmt::Debug + core::fmt::Display> std::error::Error for PumpError<E> {}

/// A [`Decoder`] plus the small buffer a push loop needs.
#[derive(Clone, Debug, Default)]
pub struct Pump {
    decoder: Decoder,
    buf: Vec<u8>,
    done: bool,
}

impl Pump {
    /// A pump around `decoder`.
    pub fn new(decoder: Decoder) -> Self {
        Pump {
            decoder,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Stream offset of the next byte the pump will read (bytes buffered inside
    /// the pump are not counted as read).
    pub fn position(&self) -> u64 {
        self.decoder.position() + self.buf.len() as u64
    }

    /// True once the stream ended and every byte fed was handled.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feed the next chunk; `eof` says it is the last one. Calls `on(offset,
    /// event)` for every event. Returns `true` once the stream is complete.
    pub fn feed<E, F>(&mut self, chunk: &[u8], eof: bool, mut on: F) -> Result<bool, PumpError<E>>
    where
        F: FnMut(u64, Event<'_>) -> Result<(), E>,
    {
        self.feed_raw(chunk, eof, |offset, event, _| on(offset, event))
    }

    /// Like [`feed`](Self::feed), also handing `on` the raw bytes the decoder
    /// consumed for each event (for checksums and header lengths).
    pub fn feed_raw<E, F>(
        &mut self,
        mut chunk: &[u8],
        eof: bool,
        mut on: F,
    ) -> Result<bool, PumpError<E>>
    where
        F: FnMut(u64, Event<'_>, &[u8]) -> Result<(), E>,
    {
        loop {
            if !self.buf.is_empty() {
                let last = eof && chunk.is_empty();
                match self
                    .decoder
                    .decode(&self.buf, last)
                    .map_err(PumpError::Decode)?
                {
                    Step::NeedMore(n) => {
                        if chunk.is_empty() {
                            return Ok(false);
                        }
                        let want = n.saturating_sub(self.buf.len()).max(1);
                        let take = want.min(chunk.len());
                        self.buf.extend_from_slice(&chunk[..take]);
                        chunk = &chunk[take..];
                    }
                    Step::Event {
                        offset,
                        consumed,
                        event,
                    } => {
                        on(offset, event, &self.buf[..consumed]).map_err(PumpError::Handler)?;
                        self.buf.drain(..consumed);
                    }
                    Step::Done => unreachable!("decoder reports Done only on empty input"),
                }
            } else {
                match self.decoder.decode(chunk, eof).map_err(PumpError::Decode)? {
                    Step::NeedMore(_) => {
                        self.buf.extend_from_slice(chunk);
                        return Ok(false);
                    }
                    Step::Event {
                        offset,
                        consumed,
                        event,
                    } => {
                        on(offset, event, &chunk[..consumed]).map_err(PumpError::Handler)?;
                        chunk = &chunk[consumed..];
                    }
                    Step::Done => {
                        self.done = true;
                        return Ok(true);
                    }
                }
            }
        }
    }
}
