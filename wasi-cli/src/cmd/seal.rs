//! `seal`: the integrity data of an existing diff (one made by real rbd, or
//! exported without `--integrity`), from the diff and its base image.

use super::open_image_ro;
use crate::errors::{EEXIST, EINVAL, Fail, io_errno};
use crate::integ;
use crate::store::Store;
use rbdiff::integrity::{SealError, read_tail, seal_stream};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};

const EXAMPLES: &str = "\
Examples:
  rbdiff seal s1..s2.diff --base vm1@s1          # writes s1..s2.diff.rbdiff-integrity
  rbdiff seal 0..s1.diff --from-creation --sidecar 0..s1.sig
  rbdiff seal --append mon-tue.diff --base ./mon.raw   # v1: trailer appended to the diff
  rbdiff import-diff s1..s2.diff vm2             # finds the sidecar, checks vm2 first

Reads DIFF (v1 or v2, e.g. made by 'rbd export-diff') and the image it
applies to (--base: [pool/]image[@snap] or a raw file; --from-creation: a
diff from image creation, applied to zeros) and writes the diff's integrity
data (docs/integrity.md): the hash of every block the diff overwrites before
and after, and the diff's checksum. By default into a sidecar file
DIFF.rbdiff-integrity (created exclusively), which import-diff and verify
pick up; --append adds it as a trailer to a v1 diff (rbd reads nothing after
the diff's 'e'; strict third-party parsers may reject trailing bytes).";

/// Write the integrity data of an existing diff (sidecar or v1 trailer).
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
#[command(group(clap::ArgGroup::new("basis").required(true).args(["base", "from_creation"])))]
pub struct Args {
    /// The diff file.
    pub diff: String,
    /// The image the diff applies to ([pool/]image[@snap] or a raw file).
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// The diff starts at image creation (its base is all zeros).
    #[arg(long)]
    pub from_creation: bool,
    /// Sidecar file to write [default: DIFF.rbdiff-integrity].
    #[arg(long, value_name = "PATH", conflicts_with = "append")]
    pub sidecar: Option<String>,
    /// Append the trailer to the diff itself (v1 only).
    #[arg(long)]
    pub append: bool,
}

fn fail(msg: String) -> Fail {
    Fail::new(EINVAL, format!("rbdiff seal: {msg}"))
}

pub fn run(store: &Store, a: Args) -> anyhow::Result<()> {
    let p = &a.diff;
    if !integ::is_regular(p) {
        return Err(fail(format!("{p}: not a regular file")).into());
    }
    let io = |e: std::io::Error| Fail::new(io_errno(&e), format!("rbdiff seal: {p}: {e}"));
    let mut f = File::open(p).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    match read_tail(&mut f) {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => {
            return Err(fail(format!("{p} already carries integrity data")).into());
        }
    }
    let mut banner = [0u8; 12];
    let f = File::open(p).map_err(io)?;
    (&f).take(12).read_exact(&mut banner).map_err(io)?;
    if a.append && &banner != b"rbd diff v1\n" {
        return Err(fail(format!(
            "--append is for v1 diffs ({p} is not one): use a sidecar"
        ))
        .into());
    }
    let mut base = match &a.base {
        Some(b) => Some(open_image_ro(store, b)?),
        None => None,
    };
    let f = File::open(p).map_err(io)?;
    let m =
        seal_stream(BufReader::with_capacity(1 << 20, f), base.as_mut()).map_err(|e| match e {
            SealError::Read(e) => fail(format!("{p}: {e}")),
            SealError::Base(e) => {
                Fail::new(io_errno(&e), format!("rbdiff seal: reading the base: {e}"))
            }
            SealError::NotADiff => fail(format!("{p}: {}", SealError::<std::io::Error>::NotADiff)),
        })?;
    let covered = m.checksum.map_or(0, |c| c.stream_bytes);
    let trailer = m.to_trailer();
    if a.append {
        if covered != len {
            return Err(fail(format!(
                "{p} has {} bytes after its end: cannot append a trailer",
                len - covered
            ))
            .into());
        }
        let mut out = OpenOptions::new().append(true).open(p).map_err(io)?;
        out.write_all(&trailer).map_err(io)?;
        out.sync_all().map_err(io)?;
        println!(
            "{p}: integrity trailer appended ({} records, {} bytes)",
            m.entries.len(),
            trailer.len()
        );
        return Ok(());
    }
    let side = a
        .sidecar
        .clone()
        .unwrap_or_else(|| integ::sidecar_path(p).to_string_lossy().into_owned());
    let mut out = super::Output::create(&side).map_err(|e| {
        let code = io_errno(&e);
        let msg = if code == EEXIST {
            format!("rbdiff seal: {side} already exists")
        } else {
            format!("rbdiff seal: {side}: {e}")
        };
        Fail::new(code, msg)
    })?;
    out.write_all(&trailer)
        .and_then(|()| out.commit())
        .map_err(|e| Fail::new(io_errno(&e), format!("rbdiff seal: {side}: {e}")))?;
    println!(
        "{p}: integrity sidecar {side} written ({} records, {} bytes)",
        m.entries.len(),
        trailer.len()
    );
    Ok(())
}
