//! Opening sled, and reading it, without a panic for an answer.
//!
//! Why: sled 0.34 answers some damage in its files with a panic (an `unwrap` or
//! assertion deep in its page cache) rather than an error. To an operator that is
//! a backtrace at `serve` or `audit verify`, and no hint of which file is damaged
//! or what to do. The panic is caught, its message kept, and it becomes a
//! [`RecordError::Open`] naming the files and the way out.

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use super::RecordError;

/// What to do about a damaged sled database in `data_dir`.
fn damaged(data_dir: &Path, detail: &str) -> RecordError {
    RecordError::Open(format!(
        "the sled database in {dir} (files {dir}/db and {dir}/conf) is damaged: {detail}. \
         Stop here and keep a copy of {dir} as evidence; then restore it from a backup, \
         or move it aside and start with an empty data directory (the decision log and \
         trust data in it are then no longer served)",
        dir = data_dir.display()
    ))
}

/// Run `f` (which opens or reads the sled db in `data_dir`) with a panic turned
/// into an error. The default panic hook is silenced meanwhile, so no backtrace
/// reaches the terminal; this is meant for startup and the offline tools, where
/// no other thread's panic report can be lost.
pub fn without_panic<T>(data_dir: &Path, f: impl FnOnce() -> T) -> Result<T, RecordError> {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(hook);
    match out {
        Ok(r) => Ok(r),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "sled panicked".into());
            Err(damaged(data_dir, &format!("sled panicked: {msg}")))
        }
    }
}

/// Open the sled db in `data_dir`: a lock held by another process, damage and a
/// panic each become an error that says which and what to do.
pub fn open_sled(data_dir: &Path) -> Result<sled::Db, RecordError> {
    without_panic(data_dir, || {
        sled::Config::new().path(data_dir).open().map_err(|e| {
            let text = e.to_string();
            if text.contains("lock")
                || text.contains("WouldBlock")
                || text.contains("Resource temporarily unavailable")
            {
                RecordError::Open(format!(
                    "{}: {text} (another process holds it: is portcullis running? stop it first)",
                    data_dir.display()
                ))
            } else if matches!(e, sled::Error::Corruption { .. }) {
                damaged(data_dir, &text)
            } else {
                RecordError::Open(format!("{}: {text}", data_dir.display()))
            }
        })
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_becomes_an_error_naming_the_files() {
        let dir = Path::new("/var/lib/portcullis");
        let e = without_panic(dir, || -> u32 { panic!("page table entry out of range") })
            .unwrap_err()
            .to_string();
        assert!(e.contains("page table entry out of range"), "{e}");
        assert!(e.contains("/var/lib/portcullis/db"), "{e}");
        assert!(e.contains("backup"), "{e}");
        assert_eq!(without_panic(dir, || 7).unwrap(), 7);
    }
}
