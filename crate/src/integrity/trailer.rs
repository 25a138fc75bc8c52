//! v1 trailers and sidecar files, parsed as they arrive: the length a
//! trailer has is known from its first 32 bytes (the entry count), so a
//! reader never holds or reads more than that, and refuses a trailer longer
//! than the diff it belongs to could need before reading it.

use super::*;

/// Length of the v1 trailer (or sidecar) of a diff with `records` `w`/`z`
/// records: hashes header, one entry per record, checksum, footer
/// (saturating: `u64::MAX` means "larger than anything").
pub const fn trailer_len(records: u64) -> u64 {
    records
        .saturating_mul(ENTRY_LEN as u64)
        .saturating_add((HASHES_HEADER_LEN + CHECKSUM_LEN + FOOTER_LEN) as u64)
}

/// Fewest bytes one `w` or `z` record takes in a diff stream (tag, offset,
/// length): a stream of `n` bytes has at most `n / MIN_RECORD_LEN` records.
pub const MIN_RECORD_LEN: u64 = 17;

/// Longest trailer or sidecar a diff stream of `stream_len` bytes can have
/// (see [`trailer_len`]), never more than [`MAX_MANIFEST_BYTES`] plus the
/// footer.
pub const fn max_trailer_len(stream_len: u64) -> u64 {
    let n = trailer_len(stream_len / MIN_RECORD_LEN);
    let cap = MAX_MANIFEST_BYTES + FOOTER_LEN as u64;
    if n < cap { n } else { cap }
}

/// Why a trailer or sidecar was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailerError {
    /// Its bytes are not a well-formed trailer.
    Malformed(IntegrityError),
    /// Its header declares more entries than allowed: `len` bytes in all
    /// (`u64::MAX`: more than can be counted), over the `limit`.
    TooLong {
        /// Length the header declares.
        len: u64,
        /// Most bytes allowed.
        limit: u64,
    },
}

impl From<IntegrityError> for TrailerError {
    fn from(e: IntegrityError) -> Self {
        TrailerError::Malformed(e)
    }
}

impl core::fmt::Display for TrailerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TrailerError::Malformed(e) => e.fmt(f),
            TrailerError::TooLong {
                len: u64::MAX,
                limit,
            } => write!(
                f,
                "its header declares more records than can be counted (at most {limit} bytes allowed)"
            ),
            TrailerError::TooLong { len, limit } => write!(
                f,
                "its header declares {} records ({len} bytes), more than the diff can have (at most {limit} bytes)",
                (len - trailer_len(0)) / ENTRY_LEN as u64
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TrailerError {}

/// A push parser of a v1 trailer or sidecar: feed it the bytes as they come,
/// in pieces of any size. It keeps the entries parsed so far and at most 73
/// bytes more; a header declaring more than `limit` bytes in all is refused
/// at once, and so is any byte past the length the header declares.
#[derive(Clone, Debug)]
pub struct TrailerParser {
    limit: u64,
    hashes: HashesParser,
    manifest: Manifest,
    /// Length of the hashes payload and of the whole trailer, once known.
    lens: Option<(u64, u64)>,
    got: u64,
    tail: [u8; CHECKSUM_LEN + FOOTER_LEN],
}

impl TrailerParser {
    /// A parser accepting trailers of at most `limit` bytes.
    pub fn new(limit: u64) -> Self {
        TrailerParser {
            limit,
            hashes: HashesParser::new(),
            manifest: Manifest::default(),
            lens: None,
            got: 0,
            tail: [0; CHECKSUM_LEN + FOOTER_LEN],
        }
    }

    /// Bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.got
    }

    /// Feed the next bytes.
    pub fn push(&mut self, mut b: &[u8]) -> Result<(), TrailerError> {
        while !b.is_empty() {
            let n = match self.lens {
                None => {
                    let n = take(HASHES_HEADER_LEN as u64 - self.got, b.len());
                    let (m, limit) = (&mut self.manifest, self.limit);
                    let mut lens = None;
                    self.hashes.push(&b[..n], |it| {
                        if let Parsed::Header(h) = it {
                            m.base_size = h.base_size;
                            lens = Some(h.payload_len());
                        }
                    })?;
                    if let Some(payload) = lens {
                        let total =
                            payload.and_then(|p| p.checked_add((CHECKSUM_LEN + FOOTER_LEN) as u64));
                        match (payload, total) {
                            (Some(p), Some(t)) if t <= limit => self.lens = Some((p, t)),
                            (_, t) => {
                                return Err(TrailerError::TooLong {
                                    len: t.unwrap_or(u64::MAX),
                                    limit,
                                });
                            }
                        }
                    }
                    n
                }
                Some((payload, _)) if self.got < payload => {
                    let n = take(payload - self.got, b.len());
                    let m = &mut self.manifest;
                    self.hashes.push(&b[..n], |it| {
                        if let Parsed::Entry(e) = it {
                            m.entries.push(e);
                        }
                    })?;
                    n
                }
                Some((payload, total)) => {
                    if self.got >= total {
                        return Err(IntegrityError::Length {
                            declared: self.got + b.len() as u64 - FOOTER_LEN as u64,
                            expected: total - FOOTER_LEN as u64,
                        }
                        .into());
                    }
                    // Below `total`, so within the 73-byte tail.
                    let at = take(self.got - payload, self.tail.len());
                    let n = (self.tail.len() - at).min(b.len());
                    self.tail[at..at + n].copy_from_slice(&b[..n]);
                    n
                }
            };
            self.got += n as u64;
            b = &b[n..];
        }
        Ok(())
    }

    /// The manifest, once every byte was fed.
    pub fn finish(mut self) -> Result<Manifest, TrailerError> {
        let Some((_, total)) = self.lens.filter(|&(_, t)| self.got == t) else {
            return Err(IntegrityError::Truncated.into());
        };
        self.hashes.finish()?;
        let (check, foot) = self.tail.split_at(CHECKSUM_LEN);
        let declared = parse_footer(foot).ok_or(IntegrityError::BadMagic)?;
        let expected = total - FOOTER_LEN as u64;
        if declared != expected {
            return Err(IntegrityError::Length { declared, expected }.into());
        }
        self.manifest.checksum = Some(Checksum::from_bytes(check)?);
        Ok(self.manifest)
    }
}

/// `min(left, avail)` as a usize, without truncating casts.
fn take(left: u64, avail: usize) -> usize {
    usize::try_from(left).map_or(avail, |l| l.min(avail))
}

/// Why [`read_trailer`] failed.
#[cfg(feature = "std")]
#[derive(Debug)]
pub enum TrailerReadError {
    /// Reading failed.
    Io(std::io::Error),
    /// The bytes are not an acceptable trailer.
    Trailer(TrailerError),
}

#[cfg(feature = "std")]
impl core::fmt::Display for TrailerReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TrailerReadError::Io(e) => write!(f, "read failed: {e}"),
            TrailerReadError::Trailer(e) => e.fmt(f),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TrailerReadError {}

/// Reads a sidecar (or trailer) from `r` to its end, streaming: holds only
/// the entries, reads no further than the length its header declares (plus
/// one read), and refuses a header declaring more than `limit` bytes (see
/// [`max_trailer_len`]) before reading its entries.
#[cfg(feature = "std")]
pub fn read_trailer<R: std::io::Read>(mut r: R, limit: u64) -> Result<Manifest, TrailerReadError> {
    let mut p = TrailerParser::new(limit);
    let mut buf = alloc::vec![0u8; 64 << 10];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TrailerReadError::Io(e)),
        };
        p.push(&buf[..n]).map_err(TrailerReadError::Trailer)?;
    }
    p.finish().map_err(TrailerReadError::Trailer)
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn sample(n: u64) -> Manifest {
        Manifest {
            base_size: Some(1 << 20),
            entries: (0..n)
                .map(|i| Entry {
                    offset: i * 4096,
                    len: 4096,
                    pre: u128::from(i),
                    post: u128::from(i) << 64,
                })
                .collect(),
            checksum: Some(Checksum {
                records: n,
                stream_bytes: 1234,
                hash: 99,
                hashes_offset: 0,
            }),
        }
    }

    #[test]
    fn any_chunking_parses_the_same() {
        let m = sample(5);
        let t = m.to_trailer();
        assert_eq!(t.len() as u64, trailer_len(5));
        for step in [1, 7, 48, 73, 1000] {
            let mut p = TrailerParser::new(t.len() as u64);
            for c in t.chunks(step) {
                p.push(c).unwrap();
            }
            assert_eq!(p.finish().unwrap(), m, "step {step}");
        }
        assert_eq!(read_trailer(&t[..], t.len() as u64).unwrap(), m);
    }

    #[test]
    fn refuses_long_declarations_before_the_entries() {
        let t = sample(5).to_trailer();
        let mut p = TrailerParser::new(t.len() as u64 - 1);
        assert_eq!(
            p.push(&t[..HASHES_HEADER_LEN]),
            Err(TrailerError::TooLong {
                len: t.len() as u64,
                limit: t.len() as u64 - 1
            })
        );
        let mut h = HashesHeader {
            base_size: None,
            count: u64::MAX,
        }
        .to_bytes()
        .to_vec();
        h.extend_from_slice(&[0; 100]);
        assert!(matches!(
            read_trailer(&h[..], u64::MAX),
            Err(TrailerReadError::Trailer(TrailerError::TooLong {
                len: u64::MAX,
                ..
            }))
        ));
        assert_eq!(Manifest::from_trailer(&h), Err(IntegrityError::Truncated));
    }

    #[test]
    fn extra_short_and_mislabelled_bytes_are_refused() {
        let t = sample(2).to_trailer();
        let mut long = t.clone();
        long.push(0);
        assert!(matches!(
            Manifest::from_trailer(&long),
            Err(IntegrityError::Length { .. })
        ));
        assert_eq!(
            Manifest::from_trailer(&t[..t.len() - 1]),
            Err(IntegrityError::Truncated)
        );
        let mut foot = t.clone();
        let n = foot.len();
        foot[n - FOOTER_LEN] ^= 1;
        assert!(matches!(
            Manifest::from_trailer(&foot),
            Err(IntegrityError::Length { .. })
        ));
        let mut magic = t.clone();
        magic[n - 1] ^= 1;
        assert_eq!(
            Manifest::from_trailer(&magic),
            Err(IntegrityError::BadMagic)
        );
        // An endless source of zeros is refused at its first bytes.
        let zeros = std::io::Read::take(std::io::repeat(0), u64::MAX);
        assert!(matches!(
            read_trailer(zeros, u64::MAX),
            Err(TrailerReadError::Trailer(TrailerError::Malformed(
                IntegrityError::BadMagic
            )))
        ));
        let none: Vec<u8> = Vec::new();
        assert_eq!(
            Manifest::from_trailer(&none),
            Err(IntegrityError::Truncated)
        );
    }

    #[test]
    fn limits_follow_the_stream_size() {
        assert_eq!(max_trailer_len(0), trailer_len(0));
        assert_eq!(max_trailer_len(170), trailer_len(10));
        assert_eq!(
            max_trailer_len(u64::MAX),
            MAX_MANIFEST_BYTES + FOOTER_LEN as u64
        );
    }
}
