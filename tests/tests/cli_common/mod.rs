//! Harness for the CLI end-to-end tests: runs the native `rbdiff` binary or
//! the wasm32-wasip1 build under wasmtime (tests/tools/wasmtime_run.py) in a
//! scratch directory, with the real-rbd corpus visible to both.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which build runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    Native,
    Wasm,
}

/// Instantiate a test body `fn(&Cli)` once per runner.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn native() {
                super::$name(&$crate::cli_common::Cli::new($crate::cli_common::Runner::Native));
            }
            #[test]
            fn wasm() {
                super::$name(&$crate::cli_common::Cli::new($crate::cli_common::Runner::Wasm));
            }
        }
    )*};
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn workspace() -> PathBuf {
    manifest_dir().parent().expect("workspace").to_path_buf()
}

/// The public corpus.
pub fn fixtures() -> PathBuf {
    manifest_dir().join("fixtures/rbd-16.2.15")
}

fn build(args: &[&str], artifact: &str) -> PathBuf {
    build_in("cli-tests", args, artifact)
}

/// Builds in a target dir of its own (`sub` of the target dir), so that a
/// build with other features does not replace the binaries the other tests run.
fn build_in(sub: &str, args: &[&str], artifact: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join(sub);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(workspace())
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "-q", "-p", "rbdiff-cli"])
        .args(args)
        .status()
        .expect("run cargo");
    assert!(st.success(), "cargo build {args:?} failed");
    target.join(artifact)
}

/// The native binary: $RBDIFF_BIN, or built on first use.
pub fn native_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| match std::env::var_os("RBDIFF_BIN") {
        Some(p) => PathBuf::from(p),
        None => build(&[], "debug/rbdiff"),
    })
}

/// The wasm module: $RBDIFF_WASM, or built on first use.
pub fn wasm_module() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| match std::env::var_os("RBDIFF_WASM") {
        Some(p) => PathBuf::from(p),
        None => build(
            &["--release", "--target", "wasm32-wasip1"],
            "wasm32-wasip1/release/rbdiff.wasm",
        ),
    })
}

/// The native binary built with the test-only feature `test-hooks`
/// ($RBDIFF_HOOKS_BIN, or built on first use): `RBDIFF_TEST_CRASH_AFTER`
/// makes `import-diff` die as a killed process would.
pub fn hooks_bin() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| match std::env::var_os("RBDIFF_HOOKS_BIN") {
        Some(p) => PathBuf::from(p),
        None => build_in(
            "cli-tests-hooks",
            &["--features", "test-hooks"],
            "debug/rbdiff",
        ),
    })
}

/// The wasm module with `test-hooks` ($RBDIFF_HOOKS_WASM, or built on first use).
pub fn hooks_wasm() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| match std::env::var_os("RBDIFF_HOOKS_WASM") {
        Some(p) => PathBuf::from(p),
        None => build_in(
            "cli-tests-hooks",
            &[
                "--features",
                "test-hooks",
                "--release",
                "--target",
                "wasm32-wasip1",
            ],
            "wasm32-wasip1/release/rbdiff.wasm",
        ),
    })
}

pub fn sha256(data: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_file(p: &Path) -> String {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    std::io::copy(&mut f, &mut h).expect("read");
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Result of one run.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "command failed: {}", self.stderr);
        self
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: o.stdout,
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// A scratch directory and a runner.
pub struct Cli {
    pub runner: Runner,
    pub dir: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl Cli {
    pub fn new(runner: Runner) -> Cli {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "rbdiff-cli-{}-{}-{n}",
            std::process::id(),
            match runner {
                Runner::Native => "native",
                Runner::Wasm => "wasm",
            }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Cli { runner, dir }
    }

    /// Path of a corpus file as the runner sees it.
    pub fn fx(&self, rel: &str) -> String {
        match self.runner {
            Runner::Native => fixtures().join(rel).to_string_lossy().into_owned(),
            Runner::Wasm => format!("/fx/{rel}"),
        }
    }

    /// Host path of a scratch file.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// A command running `rbdiff --store store ARGS` in the scratch dir.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_env(args, &[])
    }

    /// [`Cli::command`] with environment variables set for rbdiff (passed
    /// into the guest for wasm).
    pub fn command_env(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        self.command_with(native_bin, wasm_module, args, env)
    }

    fn command_with(
        &self,
        native: fn() -> &'static Path,
        wasm: fn() -> &'static Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Command {
        let mut c = match self.runner {
            Runner::Native => {
                let mut c = Command::new(native());
                c.envs(env.iter().copied());
                c
            }
            Runner::Wasm => {
                let mut c = Command::new("python3");
                c.arg(manifest_dir().join("tools/wasmtime_run.py"))
                    .arg("--dir")
                    .arg(format!("{}::.", self.dir.display()))
                    .arg("--dir")
                    .arg(format!("{}::/fx", fixtures().display()));
                for (k, v) in env {
                    c.arg("--env").arg(format!("{k}={v}"));
                }
                c.arg(wasm());
                c
            }
        };
        c.current_dir(&self.dir)
            .env_remove("RBDIFF_STORE")
            .args(["--store", "store"])
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn")
            .into()
    }

    /// Run with environment variables for rbdiff.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.command_env(args, env)
            .stdin(Stdio::null())
            .output()
            .expect("spawn")
            .into()
    }

    /// [`Cli::run_env`] on the build with the test-only hooks
    /// ([`hooks_bin`], [`hooks_wasm`]).
    pub fn run_hooked(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.command_with(hooks_bin, hooks_wasm, args, env)
            .stdin(Stdio::null())
            .output()
            .expect("spawn")
            .into()
    }

    /// Run with stdin from a host file.
    pub fn run_in(&self, args: &[&str], stdin: &Path) -> Out {
        let f = std::fs::File::open(stdin).unwrap_or_else(|e| panic!("{}: {e}", stdin.display()));
        self.command(args).stdin(f).output().expect("spawn").into()
    }

    pub fn ok(&self, args: &[&str]) -> Out {
        let o = self.run(args);
        assert_eq!(
            o.code, 0,
            "rbdiff {args:?} failed ({}): {}",
            o.code, o.stderr
        );
        o
    }

    /// `a | b`: returns both results.
    pub fn pipe(&self, a: &[&str], b: &[&str]) -> (Out, Out) {
        let mut first: Child = self
            .command(a)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = first.stdout.take().expect("stdout");
        let second = self
            .command(b)
            .stdin(Stdio::from(out))
            .output()
            .expect("spawn");
        let first = first.wait_with_output().expect("wait");
        (first.into(), second.into())
    }

    pub fn read(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn write(&self, rel: &str, data: &[u8]) {
        if let Some(p) = self.path(rel).parent() {
            std::fs::create_dir_all(p).expect("mkdir");
        }
        std::fs::write(self.path(rel), data).expect("write");
    }

    /// `import --export-format 2` of the corpus file `fixture` (an rbd
    /// image v2 stream) into the store as `name`.
    pub fn import_v2(&self, fixture: &str, name: &str) -> Out {
        self.ok(&[
            "import",
            "--no-progress",
            "--export-format",
            "2",
            &self.fx(fixture),
            name,
        ])
    }

    /// sha256 of `export SPEC -` (stdout: every byte).
    pub fn export_sha(&self, spec: &str) -> String {
        sha256(&self.ok(&["export", "--no-progress", spec, "-"]).stdout)
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A case manifest.
pub fn manifest(case: &str) -> serde_json::Value {
    let p = fixtures().join(case).join("manifest.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .expect("json")
}

/// The real-image cases (snapshots made by rbd on a live image).
pub const IMAGE_CASES: &[&str] = &["basic-64k", "empty", "grow", "shrink", "discard-zero"];

/// sha256 of `rel` (e.g. `raw/s1.raw`) recorded in the manifest.
pub fn recorded_sha(m: &serde_json::Value, rel: &str) -> Option<String> {
    for k in ["files", "unstored_files"] {
        if let Some(s) = m[k][rel]["sha256"].as_str() {
            return Some(s.to_string());
        }
    }
    None
}

/// The case's image: (name, object size, snapshot names in order).
pub fn image_of(m: &serde_json::Value) -> (String, u64, Vec<String>) {
    let imgs = m["images"].as_object().expect("images");
    let (name, img) = imgs.iter().next().expect("one image");
    let snaps = img["snapshots"]
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_string())
        .collect();
    (
        name.clone(),
        img["object_size"].as_u64().expect("object_size"),
        snaps,
    )
}

/// Pseudo-random but reproducible bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// Snapshot names of a store image, in creation order (`snap ls --format json`).
pub fn snaps(c: &Cli, img: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&c.ok(&["snap", "ls", "--format", "json", img]).stdout)
            .expect("json");
    v.as_array()
        .expect("arr")
        .iter()
        .map(|s| s["name"].as_str().expect("n").to_string())
        .collect()
}
