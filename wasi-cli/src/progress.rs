//! rbd's progress line on stderr: `\r<label>: N% complete...` then
//! `...done.` / `...failed.`. Shown when stderr is a terminal or `--progress`
//! is given, never with `--no-progress`.

use clap::Args;
use std::io::{IsTerminal, Write};

/// Progress flags shared by every long-running command.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct ProgressFlags {
    /// Disable progress output.
    #[arg(long)]
    pub no_progress: bool,
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long, conflicts_with = "no_progress")]
    pub progress: bool,
}

/// A progress reporter.
pub struct Progress {
    label: &'static str,
    on: bool,
    last: Option<u64>,
}

impl Progress {
    /// A reporter for `label`.
    pub fn new(label: &'static str, flags: ProgressFlags) -> Self {
        let on = !flags.no_progress && (flags.progress || std::io::stderr().is_terminal());
        Progress {
            label,
            on,
            last: None,
        }
    }

    /// `done` of `total` units are complete.
    pub fn update(&mut self, done: u64, total: u64) {
        if !self.on {
            return;
        }
        let pct = if total == 0 {
            0
        } else {
            done.min(total)
                .saturating_mul(100)
                .checked_div(total)
                .unwrap_or(0)
                .min(100)
        };
        if self.last != Some(pct) {
            self.last = Some(pct);
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r{}: {pct}% complete...", self.label);
            let _ = e.flush();
        }
    }

    /// The work finished (`ok`) or failed.
    pub fn finish(&mut self, ok: bool) {
        if !self.on {
            return;
        }
        let mut e = std::io::stderr().lock();
        if ok {
            let _ = writeln!(e, "\r{}: 100% complete...done.", self.label);
        } else {
            let pct = self.last.unwrap_or(0);
            let _ = writeln!(e, "\r{}: {pct}% complete...failed.", self.label);
        }
    }
}
