//! Host block devices (the imported `block-device` interface) as the
//! crate's [`BlockSource`] / [`BlockSink`], so the crate's engines run on
//! them unchanged.

pub use crate::bindings::rbdiff::codec::block_device::Device;
use core::fmt;
use rbdiff::block::{BlockSink, BlockSource};

/// Largest read asked of the host in one call (the WIT promises 4 MiB).
pub const MAX_READ: usize = 4 << 20;

/// A failed device call: which call, where, and the host's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceError {
    /// `read`, `write`, `write-zeroes` or `resize`.
    pub op: &'static str,
    /// Image offset of the call (the new size for `resize`).
    pub offset: u64,
    /// The host's error.
    pub message: String,
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.op == "resize" { "to" } else { "at" };
        write!(
            f,
            "device {} {what} {} failed: {}",
            self.op, self.offset, self.message
        )
    }
}

/// A host device seen through the crate's block traits. The size is asked
/// once and kept up to date by `set_size`.
pub struct HostDevice<'a> {
    dev: &'a Device,
    size: u64,
}

impl<'a> HostDevice<'a> {
    /// Wrap a borrowed host device.
    pub fn new(dev: &'a Device) -> Self {
        HostDevice {
            size: dev.size(),
            dev,
        }
    }

    fn fail(op: &'static str, offset: u64, message: String) -> DeviceError {
        DeviceError {
            op,
            offset,
            message,
        }
    }
}

impl BlockSource for HostDevice<'_> {
    type Error = DeviceError;

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        // Bytes past the size read as zeros (the trait's contract); the host
        // is only asked for bytes it has, at most MAX_READ at a time.
        let within = usize::try_from(self.size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        buf[within..].fill(0);
        let mut at = 0;
        while at < within {
            let n = (within - at).min(MAX_READ);
            let o = offset + at as u64;
            let len = u32::try_from(n).unwrap_or(u32::MAX);
            let got = self
                .dev
                .read(o, len)
                .map_err(|m| Self::fail("read", o, m))?;
            if got.len() != n {
                return Err(Self::fail(
                    "read",
                    o,
                    format!("the host returned {} bytes for {n}", got.len()),
                ));
            }
            buf[at..at + n].copy_from_slice(&got);
            at += n;
        }
        Ok(())
    }
}

impl BlockSink for HostDevice<'_> {
    type Error = DeviceError;

    fn size(&self) -> u64 {
        self.size
    }

    fn set_size(&mut self, size: u64) -> Result<(), DeviceError> {
        self.dev
            .resize(size)
            .map_err(|m| Self::fail("resize", size, m))?;
        self.size = self.dev.size();
        if self.size != size {
            return Err(Self::fail(
                "resize",
                size,
                format!("the device reports size {} after it", self.size),
            ));
        }
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.dev
            .write(offset, data)
            .map_err(|m| Self::fail("write", offset, m))
    }

    fn write_zeroes(&mut self, offset: u64, len: u64) -> Result<(), DeviceError> {
        self.dev
            .write_zeroes(offset, len)
            .map_err(|m| Self::fail("write-zeroes", offset, m))
    }
}
