//! The offline tools' view of a stopped portcullis's data directory.
//!
//! Why a copy: `audit verify --data-dir` must leave the evidence as it found it,
//! but replaying the WAL writes to sled, cutting a torn tail writes to the WAL,
//! and sled itself writes to its files when it opens them (sled 0.34 has no
//! read-only mode). So verification runs on a private copy of the directory, taken
//! while holding a shared lock on sled's `db` file (which a running portcullis
//! holds exclusively), and the original is never opened for writing.
//!
//! Repair ([`repair_offline`]) is the one tool that changes the log, and only the
//! WAL: it cuts the WAL where it stops continuing the chain, after copying every
//! segment it changes or removes, whole, into `audit-wal.removed-<unix time>/`.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::store::{Stores, VerifyScope};
use super::{open_sled_offline, store, wal, ChainBreak, RecordError, VerifyReport};

/// A shared `flock` on sled's `db` file: refused while a portcullis (which sled
/// locks exclusively) runs, and keeps one from starting while we read.
struct SharedLock(#[allow(dead_code)] File);

fn lock_shared(data_dir: &Path) -> Result<SharedLock, RecordError> {
    let path = data_dir.join("db");
    let file =
        File::open(&path).map_err(|e| RecordError::Open(format!("{}: {e}", path.display())))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
        return Err(RecordError::Open(format!(
            "{}: {} (another process holds it: is portcullis running? stop it first)",
            path.display(),
            io::Error::last_os_error()
        )));
    }
    Ok(SharedLock(file))
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// A directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Full verification of a stopped portcullis's log, WAL included, without
/// changing a byte of `data_dir`: the first break in sled, else the first WAL
/// frame that does not continue it.
pub fn verify_offline(data_dir: &Path) -> Result<VerifyReport, RecordError> {
    super::require_db(data_dir)?;
    let _lock = lock_shared(data_dir)?;
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "portcullis-verify-{}-{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    )));
    copy_tree(data_dir, &scratch.0).map_err(|e| {
        RecordError::Open(format!(
            "copy {} to {} to verify it untouched: {e}",
            data_dir.display(),
            scratch.0.display()
        ))
    })?;
    // Errors name the original directory, not the copy.
    let rename = |e: RecordError| rename_dir(e, &scratch.0, data_dir);
    let report = super::without_panic(&scratch.0, || verify_copy(&scratch.0, data_dir))
        .and_then(|r| r)
        .map_err(rename)?;
    Ok(report)
}

/// [`verify_offline`] on the `copy` of `data_dir`.
fn verify_copy(copy: &Path, data_dir: &Path) -> Result<VerifyReport, RecordError> {
    let db = open_sled_offline(copy)?;
    let wal_break = super::replay_offline(&db, copy)?;
    let mut report = super::verify_db(&db)?;
    if report.broken.is_none() {
        report.broken = wal_break.map(|mut b| {
            b.detail = b
                .detail
                .replace(&copy.display().to_string(), &data_dir.display().to_string());
            b
        });
    }
    drop(db);
    Ok(report)
}

fn rename_dir(e: RecordError, copy: &Path, original: &Path) -> RecordError {
    let (c, o) = (copy.display().to_string(), original.display().to_string());
    match e {
        RecordError::Open(s) => RecordError::Open(s.replace(&c, &o)),
        RecordError::Store(s) => RecordError::Store(s.replace(&c, &o)),
        RecordError::Corrupt(s) => RecordError::Corrupt(s.replace(&c, &o)),
        other => other,
    }
}

/// What [`repair_offline`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// The WAL break that was cut off (None: the WAL continued the chain).
    pub cut: Option<ChainBreak>,
    /// Where the segments were copied, whole, before being cut or removed.
    pub kept_in: Option<PathBuf>,
    /// Segments cut or removed.
    pub segments: Vec<PathBuf>,
    /// Verification of the store after the repair (a break inside sled itself is
    /// not repaired: it stays for investigation).
    pub verify: VerifyReport,
}

/// Cut the audit WAL of a stopped portcullis where it stops continuing the chain,
/// keeping a copy of every segment changed or removed. Records in the cut part are
/// gone from the log (they stay in the copy); everything before is replayed.
pub fn repair_offline(data_dir: &Path) -> Result<RepairReport, RecordError> {
    super::without_panic(data_dir, || repair(data_dir))?
}

fn repair(data_dir: &Path) -> Result<RepairReport, RecordError> {
    let db = open_sled_offline(data_dir)?;
    let stores = Stores::open(&db)?;
    let wal_dir = data_dir.join(wal::WAL_DIR);
    let replayed = wal::recover(&stores, &wal_dir, data_dir, true)?;
    let mut report = RepairReport {
        cut: None,
        kept_in: None,
        segments: Vec::new(),
        verify: store::verify(&stores, VerifyScope::Full)?,
    };
    let (Some(b), Some((segment, offset))) = (replayed.broken, replayed.broken_at) else {
        return Ok(report);
    };
    let io = |what: String, e: io::Error| RecordError::Store(format!("audit repair: {what}: {e}"));
    let kept = data_dir.join(format!(
        "{}.removed-{}",
        wal::WAL_DIR,
        time::OffsetDateTime::now_utc().unix_timestamp()
    ));
    fs::create_dir_all(&kept).map_err(|e| io(format!("create {}", kept.display()), e))?;
    let affected: Vec<PathBuf> = wal::segments(&wal_dir)
        .map_err(|e| io("list segments".into(), e))?
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| *p >= segment)
        .collect();
    for path in &affected {
        let name = path.file_name().unwrap_or_default();
        fs::copy(path, kept.join(name)).map_err(|e| io(format!("keep {}", path.display()), e))?;
    }
    File::open(&kept)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync kept copy".into(), e))?;
    for path in &affected {
        if *path == segment && offset >= wal::SEGMENT_HEADER {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io(format!("open {}", path.display()), e))?;
            f.set_len(offset)
                .and_then(|()| f.sync_all())
                .map_err(|e| io(format!("cut {}", path.display()), e))?;
        } else {
            fs::remove_file(path).map_err(|e| io(format!("remove {}", path.display()), e))?;
        }
    }
    let again = wal::recover(&stores, &wal_dir, data_dir, true)?;
    if let Some(b2) = again.broken {
        return Err(RecordError::BrokenChain(b2));
    }
    report.cut = Some(b);
    report.kept_in = Some(kept);
    report.segments = affected;
    report.verify = store::verify(&stores, VerifyScope::Full)?;
    Ok(report)
}
