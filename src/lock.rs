//! The single-instance lock: an OS file lock held for protector's lifetime. The OS releases it
//! when the process dies however it dies, so a lock file left behind by a crash never blocks a
//! new start. The holder's pid is written into the file for the "already running" message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while it lives.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    pub path: PathBuf,
}

pub fn acquire(path: &Path) -> anyhow::Result<InstanceLock> {
    // Its directory (often the state file's) is created like the state file's would be.
    crate::fsutil::create_parent(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the directory of lock file {}: {e}",
            path.display()
        )
    })?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = writeln!(file, "{}", std::process::id());
            let _ = file.sync_all();
            Ok(InstanceLock {
                _file: file,
                path: path.to_path_buf(),
            })
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text) {
                Ok(_) if !text.trim().is_empty() => format!("pid {}", text.trim()),
                _ => "pid unknown".to_string(),
            };
            anyhow::bail!(
                "another protector ({holder}) is already running with lock file {}",
                path.display()
            )
        }
        Err(TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
    }
}

/// Is a protector holding the lock at `path` right now?
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// The lock used when the config names none: beside the state file when there is one,
/// otherwise in the temp directory, named after `key` (the config file, or the heartbeat file
/// of the positional form) so protectors on different configs do not exclude each other.
pub fn default_path(state_file: Option<&Path>, key: &Path) -> PathBuf {
    if let Some(state) = state_file {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        return PathBuf::from(name);
    }
    let absolute = std::fs::canonicalize(key)
        .or_else(|_| std::path::absolute(key))
        .unwrap_or_else(|_| key.to_path_buf());
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in absolute.to_string_lossy().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    std::env::temp_dir().join(format!("protector-{hash:016x}.lock"))
}
