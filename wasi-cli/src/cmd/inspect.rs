//! `inspect`: what a diff or export file holds, and whether it is valid.

use super::{input_len, open_input, read_chunks};
use crate::errors::{EBADMSG, EINVAL, Fail, io_errno};
use crate::progress::{Progress, ProgressFlags};
use rbdiff::feature_names;
use rbdiff::inspect::{InspectOptions, InspectSession, Summary};
use rbdiff::integrity::StreamVerifier;
use rbdiff::{Config, DecodeError};
use std::io::Write;

const EXAMPLES: &str = "\
Examples:
  rbdiff inspect mon.diff
  rbdiff inspect --format json --records 0 backup.v2 | jq .diffs[].to_snap
  rbdiff export-diff vm1@s1 - | rbdiff inspect -

Reads a 'rbd diff v1', 'rbd diff v2' or 'rbd image v2' stream and prints its
format, snapshots, size, protection, image options and metadata, per-kind
record counts and bytes, the extents, warnings (unsorted, overlapping, beyond
the size, ...), the first error with its stream offset, and the rbdiff
integrity data a diff carries (checked: payload hashes, record list,
checksum; 'rbdiff verify' also checks sidecars, bases and results).
Exit status 0 if the stream is valid, 74 if it is truncated, 22 otherwise.";

/// Describe a diff or export stream and validate it.
#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The stream ('-' for stdin).
    pub path: String,
    /// Output format.
    #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
    pub format: String,
    /// Pretty-print JSON.
    #[arg(long)]
    pub pretty_format: bool,
    /// Extents to list per diff (all are counted).
    #[arg(long, default_value_t = 1000)]
    pub records: usize,
    #[command(flatten)]
    pub progress: ProgressFlags,
}

/// Decode `path` fully and summarise it (with the integrity data it
/// carries, checked); also returns the decode error.
pub fn summarize(
    path: &str,
    config: Config,
    opts: InspectOptions,
    progress: ProgressFlags,
) -> Result<(Summary, Option<DecodeError>), Fail> {
    summarize_with(path, config, opts, progress, None)
}

/// [`summarize`], also feeding every event to `extra` (a verifier with a
/// sidecar's manifest).
pub fn summarize_with(
    path: &str,
    config: Config,
    opts: InspectOptions,
    progress: ProgressFlags,
    mut extra: Option<&mut StreamVerifier>,
) -> Result<(Summary, Option<DecodeError>), Fail> {
    let mut input = open_input(path)
        .map_err(|e| Fail::new(io_errno(&e), format!("rbd: error opening {path}")))?;
    let total = input_len(path);
    let mut prog = Progress::new("Inspecting", progress);
    // Integrity data is checked against every byte; a regular file that
    // carries none (nothing at its end) is not hashed.
    let check = extra.is_some() || crate::integ::may_carry(path);
    let mut session = InspectSession::new(config, opts).check_integrity(check);
    let mut on = |off: u64, ev: &rbdiff::Event<'_>, raw: &[u8]| {
        if let Some(v) = extra.as_deref_mut() {
            v.event(off, ev, raw);
        }
    };
    let mut buf = rbdiff::block::AlignedBuf::zeroed(1 << 20);
    let mut read = 0u64;
    let res = read_chunks(&mut *input, &mut buf, |chunk| {
        read += chunk.len() as u64;
        // After an error the rest is only counted.
        let _ = session.feed_with(chunk, false, &mut on);
        if let Some(t) = total {
            prog.update(read, t);
        }
        Ok(())
    });
    if let Err(e) = res {
        prog.finish(false);
        return Err(Fail::new(
            io_errno(&e),
            format!("rbd: error reading {path}: {e}"),
        ));
    }
    let err = session.end_with(&mut on).err();
    prog.finish(err.is_none());
    Ok((session.finish(read), err))
}

fn yn(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Plain-text rendering.
pub fn render_plain(s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    let fmt = s.format.map_or("unknown", |f| f.name());
    writeln!(out, "format: {fmt}")?;
    writeln!(out, "valid: {}", yn(s.valid))?;
    writeln!(out, "stream bytes: {}", s.stream_bytes)?;
    if let Some(img) = &s.image {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        writeln!(out, "image:")?;
        writeln!(out, "  order: {}", opt(img.order))?;
        match img.features {
            Some(f) => writeln!(out, "  features: {f} ({})", feature_names(f).join(", "))?,
            None => writeln!(out, "  features: -")?,
        }
        writeln!(out, "  stripe unit: {}", opt(img.stripe_unit))?;
        writeln!(out, "  stripe count: {}", opt(img.stripe_count))?;
        for m in &img.meta {
            writeln!(out, "  meta: {} = {}", m.key, m.value)?;
        }
    }
    if let Some(n) = s.diff_count {
        writeln!(out, "diffs declared: {n}")?;
    }
    for d in &s.diffs {
        writeln!(
            out,
            "diff #{} at stream offset {} ({} bytes):",
            d.index, d.stream_offset, d.stream_bytes
        )?;
        writeln!(out, "  header: {}", d.header_tags.join(" "))?;
        writeln!(
            out,
            "  from snap: {}",
            d.from_snap.as_deref().unwrap_or("-")
        )?;
        writeln!(out, "  to snap: {}", d.to_snap.as_deref().unwrap_or("-"))?;
        if let Some(p) = d.protected {
            writeln!(out, "  protected: {}", yn(p))?;
        }
        writeln!(
            out,
            "  size: {}",
            d.size.map_or("-".to_string(), |v| v.to_string())
        )?;
        writeln!(
            out,
            "  records: {} w ({} bytes, {} all-zero), {} z ({} bytes), {} unknown",
            d.n_w, d.w_bytes, d.w_all_zero_records, d.n_z, d.z_bytes, d.n_unknown
        )?;
        writeln!(
            out,
            "  sorted: {}, overlapping: {}, beyond size: {}, complete: {}",
            yn(d.records_sorted),
            yn(d.records_overlap),
            yn(d.records_beyond_size),
            yn(d.complete)
        )?;
        for r in &d.records {
            writeln!(
                out,
                "    {} {}+{} (stream offset {})",
                r.tag, r.offset, r.length, r.stream_offset
            )?;
        }
        if d.records_truncated {
            writeln!(out, "    ... (more records not listed)")?;
        }
        match &d.integrity {
            None => writeln!(out, "  integrity: none")?,
            Some(i) => writeln!(
                out,
                "  integrity: {} records hashed, base size {}, {}",
                i.entries,
                i.base_size.map_or("unknown".to_string(), |v| v.to_string()),
                match &i.fault {
                    None if i.ok => "stream OK".to_string(),
                    None => "NOT OK".to_string(),
                    Some(f) => format!("FAULT: {f}"),
                }
            )?,
        }
    }
    if s.trailing_bytes > 0 {
        writeln!(out, "trailing bytes: {}", s.trailing_bytes)?;
    }
    for w in &s.warnings {
        writeln!(
            out,
            "warning at stream offset {}: {} ({})",
            w.offset, w.message, w.kind
        )?;
    }
    if s.warnings_total > s.warnings.len() as u64 {
        writeln!(out, "({} warnings in all)", s.warnings_total)?;
    }
    if let Some(e) = &s.error {
        writeln!(
            out,
            "error at stream offset {}: {} ({})",
            e.offset, e.message, e.kind
        )?;
    }
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let opts = InspectOptions::new().with_max_records(a.records);
    let (s, err) = summarize(&a.path, Config::new(), opts, a.progress)?;
    let mut out = std::io::stdout().lock();
    if a.format == "json" {
        let text = if a.pretty_format {
            serde_json::to_string_pretty(&s)?
        } else {
            serde_json::to_string(&s)?
        };
        writeln!(out, "{text}")?;
    } else {
        render_plain(&s, &mut out)?;
    }
    out.flush()?;
    match err {
        None if s.valid => Ok(()),
        Some(e) if e.is_eof() => Err(Fail::bare(EBADMSG).into()),
        _ => Err(Fail::bare(EINVAL).into()),
    }
}
