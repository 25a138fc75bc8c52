//! # rbdiff — Ceph RBD diff streams, without Ceph
//!
//! A streaming codec for the formats of `rbd export-diff` (`rbd diff v1`),
//! the diffs embedded in `rbd export --export-format 2` (`rbd diff v2`) and
//! the image export itself (`rbd image v2`), byte-compatible with rbd 16.2.15.
//!
//! * [`Decoder`]: a push (sans-IO) decoder. Feed it bytes, get [`Event`]s;
//!   `w` payloads come out as borrowed slices, so any record size decodes in
//!   constant memory. Validation is precise ([`DecodeError`] names the stream
//!   offset) and configurable ([`Config`]).
//! * [`Encoder`]: writes the same bytes rbd writes, and refuses misuse.
//! * [`merge`]: an I/O-free N-way merge of consecutive diffs, identical to
//!   `rbd merge-diff` for two v1 inputs.
//! * [`block`]: the [`block::BlockSource`] / [`block::BlockSink`] traits a
//!   block device implements; [`export`] computes a diff between two.
//! * [`apply`]: the import engine ([`apply::ImportEngine`]) every importer
//!   drives (CLI `import-diff` and `import --export-format 2`, the
//!   component, the cluster backend): base check before the first write,
//!   rbd's rules, `w` records written only once complete, stream and result
//!   verification, undo and checkpoints.
//! * [`inspect`], [`integrity`], [`chain`]: what a stream holds, rbdiff's
//!   integrity data, the snapshot-chain rule.
//!
//! The layers and where a new backend plugs in: `docs/architecture.md`.
//!
//! `#![no_std]`; the `alloc` feature adds [`Pump`], merge, apply/export and
//! inspection, `std` adds `std::io` adapters.
//!
//! ## A push loop
//!
//! ```
//! use rbdiff::{Config, Decoder, Event, Step};
//!
//! // "rbd diff v1", t "s1", s 8192, w 0+4 "abcd", e
//! let mut stream = Vec::new();
//! stream.extend_from_slice(b"rbd diff v1\n");
//! stream.extend_from_slice(b"t\x02\x00\x00\x00s1");
//! stream.extend_from_slice(b"s"); stream.extend_from_slice(&8192u64.to_le_bytes());
//! stream.extend_from_slice(b"w"); stream.extend_from_slice(&0u64.to_le_bytes());
//! stream.extend_from_slice(&4u64.to_le_bytes()); stream.extend_from_slice(b"abcd");
//! stream.extend_from_slice(b"e");
//!
//! let mut dec = Decoder::new(Config::new());
//! let mut buf: Vec<u8> = Vec::new();           // bytes not consumed yet
//! let mut written = 0u64;
//! let chunks: Vec<&[u8]> = stream.chunks(5).collect(); // any chunking works
//! for (i, chunk) in chunks.iter().enumerate() {
//!     buf.extend_from_slice(chunk);
//!     let eof = i + 1 == chunks.len();
//!     loop {
//!         match dec.decode(&buf, eof).expect("valid stream") {
//!             Step::NeedMore(_) | Step::Done => break,
//!             Step::Event { consumed, event, .. } => {
//!                 if let Event::Data { bytes, .. } = event {
//!                     written += bytes.len() as u64;   // a slice of `buf`, not a copy
//!                 }
//!                 buf.drain(..consumed);
//!             }
//!         }
//!     }
//! }
//! assert!(dec.is_done());
//! assert_eq!(written, 4);
//! ```
#![no_std]
#![deny(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

#[cfg(feature = "alloc")]
pub mod apply;
#[cfg(feature = "alloc")]
pub mod block;
pub mod chain;
mod decode;
mod encode;
mod error;
#[cfg(feature = "alloc")]
pub mod export;
mod format;
pub mod image_meta;
#[cfg(feature = "alloc")]
pub mod info;
#[cfg(feature = "alloc")]
pub mod inspect;
pub mod integrity;
#[cfg(feature = "alloc")]
pub mod merge;
#[cfg(feature = "alloc")]
pub mod objmap;
#[cfg(feature = "alloc")]
mod pump;
#[cfg(feature = "std")]
mod reader;

pub use decode::{Check, Checkpoint, Config, Decoder, Event, FormatSet, Step, UnknownV1};
#[cfg(feature = "std")]
pub use encode::IoSink;
pub use encode::{DiffHeader, EncodeError, Encoder, ImageHeader, Misuse, Sink};
pub use error::{DecodeError, ErrorCode, ErrorKind, Expected, Zone};
#[cfg(feature = "alloc")]
pub use format::feature_names;
pub use format::{FEATURES, Format, feature_bit};
#[cfg(feature = "alloc")]
pub use pump::{Pump, PumpError};
#[cfg(feature = "std")]
pub use reader::{EventReader, PIECE_ALIGN, ReadError};
