//! `rbdiff`: rbd's backup commands (`export-diff`, `import-diff`,
//! `merge-diff`, `export`, `import`, `diff`) on plain raw image files and a
//! file-backed image store, plus `inspect` and `verify`. Runs natively and
//! under WASI (wasm32-wasip1/p2) from the same source.

mod apply;
#[cfg(feature = "librbd")]
mod ceph;
mod cluster;
mod cmd;
mod dev;
mod errors;
mod integ;
mod objmap;
mod progress;
mod safefs;
mod size;
mod store;

use clap::Parser;

fn main() {
    let cli = match cmd::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // rbd exits 1 on usage errors; help and version exit 0.
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    match cmd::run(cli) {
        Ok(()) => {}
        Err(e) => {
            errors::report(&e);
            std::process::exit(errors::exit_code(&e));
        }
    }
}
