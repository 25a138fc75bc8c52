//! `import-diff` into a cluster image, driven by the crate's import engine
//! (`rbdiff::apply`): rbd's rules (from-snap must exist, to-snap must not,
//! resize on `s`, `--sparse-size`, zeros written as rbd writes them, the
//! end snapshot last), plus the base check before the first write, payload
//! and result verification, `--undo`, and resume after an interruption from
//! a journal beside the diff file (or `--journal PATH`).

use super::dev::{AheadChecker, ClusterDev};
use super::{connect, fail, ioctx, open};
use crate::cluster::{Spec, flags};
use crate::cmd::Output;
use crate::cmd::import_diff::decode_fail;
use crate::errors::{EBADMSG, EEXIST, EINVAL, ENOENT, Fail, errstr};
use crate::integ::{self, Identity, Journal, JournalFile};
use crate::progress::{Progress, ProgressFlags};
use rbdiff::IoSink;
use rbdiff::apply::{ImportEngine, ImportError, ImportOptions, Step};
use rbdiff::integrity::{Manifest, VerifyError};
use rbdiff::{Config, EventReader, FormatSet, ReadError};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// What the command line asked for.
pub struct Req<'a> {
    pub spec: &'a Spec,
    /// The diff ('-': stdin).
    pub path: &'a str,
    pub sparse_size: u64,
    /// Accept only v1 and check nothing (rbd 16.2.15).
    pub rbd_compat: bool,
    pub no_verify: bool,
    pub force: bool,
    pub sidecar: Option<&'a str>,
    pub undo: Option<&'a str>,
    pub resume: bool,
    pub journal: Option<&'a str>,
    pub progress: ProgressFlags,
}

type Undo = IoSink<Output>;
type Engine = ImportEngine<Undo>;
type IErr = ImportError<io::Error, io::Error>;

fn failed(f: Fail) -> Fail {
    let code = f.code;
    f.then(format!("rbd: import-diff failed: {}", errstr(code)))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The journal of an interrupted import of this diff into this image.
struct Resumable {
    file: JournalFile,
    ident: Identity,
    loaded: Option<Journal>,
}

fn find_journal(r: &Req<'_>) -> Result<Option<Resumable>, Fail> {
    if r.path == "-" && r.journal.is_none() {
        return Ok(None);
    }
    if r.path == "-" {
        return Err(Fail::new(
            EINVAL,
            "rbdiff: --journal needs a diff file, not stdin",
        ));
    }
    let file = match r.journal {
        Some(p) => JournalFile::at(Path::new(p)),
        None => JournalFile::raw(Path::new(r.path)),
    }
    .map_err(|e| Fail::io("rbdiff: the resume journal's directory", &e))?;
    let ident = Identity::of(r.path)
        .map_err(|e| Fail::io(&format!("rbd: error opening {}", r.path), &e))?;
    let loaded = match file.load() {
        Some(Ok(j)) if j.matches(&ident) => Some(j),
        Some(Ok(_)) => {
            eprintln!(
                "rbdiff: warning: ignoring resume journal {} (it belongs to another diff)",
                file.display()
            );
            None
        }
        Some(Err(e)) => {
            eprintln!(
                "rbdiff: warning: ignoring unreadable resume journal {}: {e}",
                file.display()
            );
            None
        }
        None => None,
    };
    Ok(Some(Resumable {
        file,
        ident,
        loaded,
    }))
}

/// The checks before the cluster is reached: the spec, the integrity
/// data known before the stream, the journal of an interrupted import.
fn prepare(r: &Req<'_>) -> Result<(Option<Manifest>, Option<Resumable>), Fail> {
    if r.spec.snap.is_some() {
        return Err(Fail::new(
            EINVAL,
            "rbd: snapshot name was specified, but is not valid here",
        ));
    }
    let known = if r.no_verify || r.rbd_compat {
        None
    } else {
        integ::find(r.path, r.sidecar)?
    };
    let journal = find_journal(r)?;
    let resuming = journal.as_ref().is_some_and(|j| j.loaded.is_some());
    if r.resume && !resuming {
        return Err(Fail::new(
            ENOENT,
            format!(
                "rbdiff: import-diff --resume: no resume journal of {}",
                r.path
            ),
        ));
    }
    if resuming && r.undo.is_some() {
        return Err(Fail::new(
            EINVAL,
            "rbdiff: an interrupted import already changed the image, so --undo cannot \
             record its previous state; resume without --undo",
        ));
    }
    Ok((known.map(|k| k.manifest), journal))
}

pub fn run(r: &Req<'_>) -> anyhow::Result<()> {
    let verify = !(r.no_verify || r.rbd_compat);
    let (manifest, journal) = prepare(r)?;
    let loaded = journal.as_ref().and_then(|j| j.loaded.clone());
    let rados = connect(r.spec)?;
    let io = ioctx(&rados, r.spec)?;
    let img = open(&io, r.spec, None, false)?;
    let depth = if r.path == "-" {
        1
    } else {
        flags().rbd_concurrent_management_ops
    };
    let mut dev =
        ClusterDev::new(&img, depth).map_err(|e| failed(fail("rbd: error opening image", &e)))?;
    let mut input: Box<dyn Read> = if r.path == "-" {
        Box::new(io::stdin().lock())
    } else {
        let mut f = std::fs::File::open(r.path)
            .map_err(|e| failed(Fail::io(&format!("rbd: error opening {}", r.path), &e)))?;
        if let Some(cp) = loaded.as_ref().and_then(Journal::checkpoint) {
            f.seek(SeekFrom::Start(cp.position))
                .map_err(|e| failed(Fail::io("rbd: error seeking", &e)))?;
        }
        Box::new(f)
    };
    let formats = if r.rbd_compat {
        FormatSet::V1
    } else {
        FormatSet::DIFFS
    };
    let config = Config::rbd_compatible().with_formats(formats);
    let stream_len = (r.path != "-")
        .then(|| std::fs::metadata(r.path).map(|m| m.len()).ok())
        .flatten();
    let opts = ImportOptions::new()
        .with_sparse_size(r.sparse_size)
        .with_verify(verify)
        .with_base_check(!r.force)
        .with_stream_len(stream_len);
    let (mut reader, mut eng) = match loaded.as_ref().and_then(|j| j.checkpoint().map(|c| (j, c))) {
        Some((j, cp)) => {
            eprintln!(
                "rbdiff: resuming the import of {} at stream offset {} ({} records applied before)",
                r.path, cp.position, j.records
            );
            let state = rbdiff::apply::ResumeState::new(
                rbdiff::apply::EndSnap {
                    name: j.to_snap.clone(),
                    protect: j.protect,
                },
                j.end_size,
            );
            (
                EventReader::resume(&mut input, config, &cp),
                Engine::resume(opts, manifest, state).map_err(|e| integrity_data(r.path, &e))?,
            )
        }
        None => (
            EventReader::new(&mut input, config),
            Engine::new(opts, manifest).map_err(|e| integrity_data(r.path, &e))?,
        ),
    };
    reader = reader.hold_payloads(32 << 20);
    if let Some(u) = r.undo {
        let out = Output::create(u)
            .map_err(|e| failed(Fail::io(&format!("rbd: error creating {u}"), &e)))?;
        eng.set_undo(IoSink(out));
    }
    let mut prog = Progress::new("Importing image diff", r.progress);
    let res = apply(
        r,
        &img,
        &mut dev,
        &mut reader,
        &mut eng,
        journal.as_ref(),
        &mut prog,
    );
    let res = res.and_then(|()| finish(r, &img, &mut dev, reader, eng));
    match res {
        Ok(()) => {
            prog.finish(true);
            if let Some(j) = &journal {
                j.file.remove();
            }
            Ok(())
        }
        Err(f) => {
            prog.finish(false);
            // A journal helps only after an interruption or an I/O failure.
            if !matches!(f.code, 5 | 28 | 110)
                && let Some(j) = &journal
            {
                j.file.remove();
            }
            Err(f.into())
        }
    }
}

fn integrity_data(path: &str, e: &rbdiff::apply::IntegrityDataError) -> Fail {
    Fail::new(
        EINVAL,
        format!("rbdiff: import-diff: the integrity data of {path} cannot belong to it: {e}"),
    )
    .then("rbdiff: nothing was written")
}

/// The import's error as rbd's lines and errno.
fn import_fail(path: &str, e: IErr) -> Fail {
    match e {
        ImportError::Device(e) => failed(fail("rbd: import-diff: writing the image failed", &e)),
        ImportError::BeyondSize { .. } => failed(Fail::new(EINVAL, format!("rbd: {e}"))),
        ImportError::NotBase(v) => {
            let mut f = Fail::new(
                EINVAL,
                format!("rbdiff: import-diff: the image is not the base {path} was made from: {v}"),
            );
            if let VerifyError::Block { offset, len, .. } = v {
                f = f.then(format!(
                    "rbdiff: first mismatching block: offset {offset}, length {len}"
                ));
            }
            f.then("rbdiff: nothing was written (--force imports anyway, --no-verify skips all checks)")
        }
        ImportError::Stream(f) => Fail::new(
            EBADMSG,
            format!("rbdiff: import-diff: integrity check of {path} failed: {f}"),
        )
        .then("rbdiff: the end snapshot was not created"),
        ImportError::Result(v) => Fail::new(
            EBADMSG,
            format!("rbdiff: import-diff: the imported image does not match {path}: {v}"),
        )
        .then("rbdiff: the end snapshot was not created"),
        other => Fail::new(EINVAL, format!("rbdiff: import-diff: {other}")),
    }
}

/// Apply every event, checking the snapshot rules and saving a journal
/// entry every `RBDIFF_RESUME_INTERVAL` bytes (512 MiB).
fn apply<R: Read>(
    r: &Req<'_>,
    img: &crate::ceph::Image<'_>,
    dev: &mut ClusterDev<'_, '_>,
    reader: &mut EventReader<R>,
    eng: &mut Engine,
    journal: Option<&Resumable>,
    prog: &mut Progress,
) -> Result<(), Fail> {
    let every = env_u64("RBDIFF_RESUME_INTERVAL")
        .unwrap_or(512 << 20)
        .max(1);
    let crash_after = env_u64("RBDIFF_TEST_CRASH_AFTER");
    let start = reader.decoder().position();
    let mut journaled = start;
    let total = (r.path != "-")
        .then(|| std::fs::metadata(r.path).map(|m| m.len()).ok())
        .flatten();
    loop {
        let (at, event, raw) = match reader.next_event_raw() {
            Ok(Some(ev)) => ev,
            Ok(None) => return Ok(()),
            Err(e) => {
                let _ = eng.abort(dev);
                let _ = dev.settle();
                return Err(match e {
                    ReadError::Decode(d) => failed(decode_fail(&d, EBADMSG)).at_stream(r.path, &d),
                    ReadError::Io(e) => failed(Fail::io("rbd: error reading diff", &e)),
                });
            }
        };
        let step = eng
            .event(dev, &mut AheadChecker, at, &event, raw)
            .map_err(|e| import_fail(r.path, e))?;
        snap_rules(img, &step)?;
        let pos = reader.decoder().position();
        if let Some(j) = journal
            && pos - journaled >= every
            && let Some(cp) = reader.decoder().checkpoint()
        {
            let res = eng
                .checkpoint(dev, cp)
                .map_err(|e| import_fail(r.path, e))?;
            save_journal(j, &res, dev)?;
            journaled = pos;
        }
        if crash_after.is_some_and(|n| pos >= n) {
            let _ = dev.settle();
            eprintln!("rbdiff: RBDIFF_TEST_CRASH_AFTER reached at stream offset {pos}");
            std::process::exit(99);
        }
        if let Some(t) = total {
            prog.update(pos, t);
        }
    }
}

/// rbd's snapshot rules at the diff's `f` and `t` records.
fn snap_rules(img: &crate::ceph::Image<'_>, step: &Step<'_>) -> Result<(), Fail> {
    let query = |n: &str, what| {
        img.snap_exists(n)
            .map_err(|e| failed(fail(&format!("rbd: failed to query {what} snap state"), &e)))
    };
    match step {
        Step::FromSnap(n) => {
            let n = String::from_utf8_lossy(n);
            if !query(&n, "start")? {
                return Err(failed(Fail::new(
                    EINVAL,
                    format!("start snapshot '{n}' does not exist in the image, aborting"),
                )));
            }
        }
        Step::ToSnap(n) => {
            let n = String::from_utf8_lossy(n);
            if query(&n, "end")? {
                return Err(failed(Fail::new(
                    EEXIST,
                    format!("end snapshot '{n}' already exists, aborting"),
                )));
            }
        }
        Step::Unknown(tag) => eprintln!("unrecognized tag byte {tag} in stream; skipping"),
        Step::DiffVerified(end) => create_snap(img, end)?,
        _ => {}
    }
    Ok(())
}

pub(super) fn create_snap(
    img: &crate::ceph::Image<'_>,
    end: &rbdiff::apply::EndSnap,
) -> Result<(), Fail> {
    if let Some(n) = &end.name {
        let n = String::from_utf8_lossy(n);
        img.snap_create(&n)
            .map_err(|e| failed(fail("rbd: failed to create end snapshot", &e)))?;
        if end.protect {
            img.snap_protect(&n)
                .map_err(|e| failed(fail("rbd: failed to protect end snapshot", &e)))?;
        }
    }
    Ok(())
}

fn save_journal(
    j: &Resumable,
    res: &rbdiff::apply::Resume,
    dev: &mut ClusterDev<'_, '_>,
) -> Result<(), Fail> {
    use rbdiff::block::BlockSink;
    dev.flush()
        .map_err(|e| failed(fail("rbd: import-diff: flushing the image failed", &e)))?;
    let journal = Journal {
        version: 1,
        diff_path: j.ident.path.clone(),
        diff_size: j.ident.size,
        diff_head_xxh3: j.ident.head.clone(),
        checkpoint: crate::store::hex(&res.checkpoint.to_bytes()),
        stream_offset: res.checkpoint.position,
        records: res.stats.records,
        data_bytes: res.stats.data_bytes,
        zero_bytes: res.stats.zero_bytes,
        to_snap: res.state.end_snap.name.clone(),
        protect: res.state.end_snap.protect,
        end_size: res.state.end_size,
    };
    j.file.save(&journal).map_err(|e| {
        Fail::io(
            &format!("rbdiff: cannot write resume journal {}", j.file.display()),
            &e,
        )
    })
}

/// The stream is applied: its verdict, the result check, the end snapshot,
/// the undo diff.
fn finish<R: Read>(
    r: &Req<'_>,
    img: &crate::ceph::Image<'_>,
    dev: &mut ClusterDev<'_, '_>,
    reader: EventReader<R>,
    mut eng: Engine,
) -> Result<(), Fail> {
    use rbdiff::block::BlockSink;
    dev.flush()
        .map_err(|e| failed(fail("rbd: import-diff: writing the image failed", &e)))?;
    if r.path == "-" {
        let rest = reader.buffered().to_vec();
        eng.trailing(&rest);
        eng.read_trailing(reader.into_inner())
            .map_err(|e| failed(Fail::io("rbd: error reading diff", &e)))?;
    }
    let seen = eng
        .end_stream()
        .map_err(|f| import_fail(r.path, ImportError::Stream(f)))?;
    if let Some((_, true)) = seen {
        crate::cmd::import_diff::note_late_integrity(r.path);
    }
    eng.check_result(dev, &mut AheadChecker, 0)
        .map_err(|e| import_fail(r.path, e))?;
    let undo = eng.take_undo();
    let done = eng.finish();
    create_snap(img, &done.end_snap)?;
    if let Some(u) = undo {
        let IoSink(out) =
            u.map_err(|e| Fail::new(5, format!("rbdiff: writing the undo diff failed: {e}")))?;
        out.commit()
            .map_err(|e| Fail::io("rbdiff: writing the undo diff failed", &e))?;
    }
    Ok(())
}
