//! The single-instance lock: an OS file lock held for protector's lifetime. The OS releases it
//! when the process dies however it dies, so a lock file left behind by a crash never blocks a
//! new start. The holder's pid is written into the file for the "already running" message.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while it lives.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    pub path: PathBuf,
}

impl InstanceLock {
    /// Is the file held still the one at its path (not removed, not replaced)? A lock on a
    /// file no longer there keeps no one out.
    pub fn in_place(&self) -> bool {
        let id = crate::platform::file_identity;
        match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(held), Ok(there)) => id(&held) == id(&there),
            _ => false,
        }
    }
}

pub fn acquire(path: &Path) -> anyhow::Result<InstanceLock> {
    // Its directory (often the state file's) is created like the state file's would be.
    crate::fsutil::create_parent(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the directory of lock file {}: {e}",
            path.display()
        )
    })?;
    if crate::perms::enforced()
        && let Some(reason) = path.parent().and_then(crate::perms::exposure)
    {
        anyhow::bail!(
            "lock file {}: {}",
            path.display(),
            crate::perms::refusal(&reason)
        );
    }
    // Never through a symlink, never truncated before it is known to be ours.
    let mut file = crate::fsutil::no_follow(0o644)
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| {
            // The kernel may refuse root a file another user made in a sticky directory
            // (fs.protected_regular): say whose it is.
            let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
            let reason = if is_link || is_symlink_refusal(&e) {
                "it is a symbolic link (a lock file is never opened through one)".into()
            } else if let Some(owner) = crate::perms::foreign_owner(path) {
                format!("it belongs to {owner} ({e})")
            } else {
                e.to_string()
            };
            anyhow::anyhow!("cannot open lock file {}: {reason}", path.display())
        })?;
    check_ours(&file, path)?;
    match file.try_lock() {
        Ok(()) => {
            let _ = file.set_len(0);
            let _ = file.rewind();
            let _ = writeln!(file, "{}", std::process::id());
            let _ = file.sync_all();
            Ok(InstanceLock {
                file,
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

/// ELOOP is how O_NOFOLLOW refuses a symlink.
fn is_symlink_refusal(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(libc::ELOOP)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// A lock file must be a regular file of protector's own user with no other name: one made by
/// someone else (to keep protector from starting, or to have root write into it), or a hard
/// link to another file, is an error that says so.
fn check_ours(file: &File, path: &Path) -> anyhow::Result<()> {
    let meta = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("cannot look at lock file {}: {e}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("lock file {} is not a regular file", path.display());
    }
    if let Some(why) = crate::perms::not_ours_alone(&meta) {
        anyhow::bail!(
            "lock file {}: {why}, not protector's alone: someone else made it; remove it if \
             that is not expected, or set lock_file",
            path.display(),
        );
    }
    Ok(())
}

/// Is a protector holding the lock at `path` right now?
/// The path comes from a state file, which another user may have written: it is opened without
/// waiting (a FIFO would hold a blocking open for ever) and only a regular file is asked.
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = crate::fsutil::open_to_read(path) else {
        return false;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// The lock used when the config names none: beside the state file when there is one,
/// otherwise in protector's runtime directory ([`runtime_dir`]), named after `key` (the
/// config file, or the heartbeat file of the positional form) so protectors on different
/// configs do not exclude each other. The key is the path as named, with its directories
/// resolved but not a symlink at its end: re-pointing `current.yaml` at another file does not
/// make room for a second protector on the same name.
pub fn default_path(state_file: Option<&Path>, key: &Path) -> PathBuf {
    if let Some(state) = state_file {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        return PathBuf::from(name);
    }
    runtime_dir().join(format!("{}.lock", instance_name(key)))
}

/// The name of the protector started on config file `config` (`protector-` and a hash of the
/// file's absolute path), which its default lock and its control endpoint are named after,
/// so a client finds them from the config's path alone.
pub fn instance_name(config: &Path) -> String {
    let absolute = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let absolute = match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    };
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in absolute.to_string_lossy().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("protector-{hash:016x}")
}

/// Where protector keeps files that only matter while it runs: `/run/protector` for root on
/// Linux (systemd's `RuntimeDirectory=protector` makes it; protector does too, root's and
/// 0755), `$XDG_RUNTIME_DIR/protector` for another user (else `~/.local/state/protector`),
/// `%ProgramData%\protector` on Windows. Never a directory any user can write, like /tmp,
/// where anyone could take the name first.
pub fn runtime_dir() -> PathBuf {
    #[cfg(windows)]
    {
        crate::platform::program_data().join("protector")
    }
    #[cfg(not(windows))]
    {
        if crate::perms::is_root() {
            return root_runtime_dir();
        }
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(dir) = var("XDG_RUNTIME_DIR") {
            return dir.join("protector");
        }
        if let Some(home) = var("HOME") {
            return home.join(".local/state/protector");
        }
        std::env::temp_dir().join(format!("protector-{}", crate::perms::euid()))
    }
}

/// [`runtime_dir`] of a protector running as root.
#[cfg(not(windows))]
pub fn root_runtime_dir() -> PathBuf {
    PathBuf::from(if cfg!(target_os = "linux") {
        "/run/protector"
    } else {
        "/var/run/protector"
    })
}
