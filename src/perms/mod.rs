//! Who may change what protector trusts. protector runs as root and runs the commands of its
//! config as root, so (like sshd's StrictModes) a config file, or a directory protector
//! writes its own files into, that another user could change is refused when running as
//! root: the file, and every directory above it, must belong to root (or protector's own
//! user) and not be writable by group or others. A directory writable by all but with the
//! sticky bit and owned by root (like /tmp) is fine above an entry owned by root: no one else
//! can replace that entry. `--no-strict-modes` turns the refusal off.
//!
//! Heartbeat files are another matter: other programs write them, so their place is only
//! warned about (see [`heartbeat_dir_exposure_of`]).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

static RELAXED: AtomicBool = AtomicBool::new(false);

/// `--no-strict-modes`: accept what another user could change (the operator said so).
pub fn relax() {
    RELAXED.store(true, Ordering::Relaxed);
}

/// Are the checks enforced: running as root (Unix), and not relaxed?
pub fn enforced() -> bool {
    is_root() && !RELAXED.load(Ordering::Relaxed)
}

pub fn is_root() -> bool {
    #[cfg(unix)]
    {
        euid() == 0
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// The user protector runs as.
#[cfg(unix)]
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Why another user could change `path` (a file protector trusts, or a directory it writes
/// into), or `None` when no one but root (or protector's user) can. Every part of the path
/// is checked from `/` down, and every symlink met on the way (nested ones too) and every
/// part of where it leads. Parts that do not exist yet are not looked at (protector creates
/// them itself).
pub fn exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        match walk::check(path) {
            Ok(walk::Walked::Exposed(why)) => Some(why),
            _ => None,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Why a file was not opened by [`open_trusted`].
#[derive(Debug)]
pub enum Untrusted {
    /// Another user could change it (what [`exposure`] says).
    #[cfg_attr(not(unix), allow(dead_code))]
    Exposed(String),
    /// It could not be opened.
    Io(std::io::Error),
}

/// Opens `path` to read (without waiting), if no one but root or protector's user could
/// change it (as [`exposure`]); the file opened is the one checked, whatever happens to the
/// names on its path meanwhile. Where StrictModes is not enforced: opened as it is.
pub fn open_trusted(path: &Path) -> Result<std::fs::File, Untrusted> {
    #[cfg(unix)]
    if enforced() {
        return match walk::open(path) {
            Ok(walk::Walked::Safe(file)) => Ok(file),
            Ok(walk::Walked::Exposed(why)) => Err(Untrusted::Exposed(why)),
            Ok(walk::Walked::Missing(e)) | Err(e) => Err(Untrusted::Io(e)),
        };
    }
    crate::fsutil::open_to_read(path).map_err(Untrusted::Io)
}

/// The refusal, from what [`exposure`] found.
pub fn refusal(reason: &str) -> String {
    format!(
        "{reason}: another user could make protector (running as root) do what they want; \
         make it and the directories above it belong to root and not writable by group or \
         others (chown root, chmod go-w), or start protector with --no-strict-modes"
    )
}

/// Why any user could plant, keep fresh or remove a heartbeat in the directory `dir` (its
/// metadata `meta`): it is writable by all (with or without the sticky bit, like /tmp).
/// `None` when that is not so. (A heartbeat's place: its directory's finding, or else its
/// file's, [`heartbeat_file_exposure_of`].)
pub fn heartbeat_dir_exposure_of(dir: &Path, meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        unix::heartbeat_dir(dir, meta)
    }
    #[cfg(not(unix))]
    {
        let _ = (dir, meta);
        None
    }
}

/// Why any user could keep the heartbeat file `path` itself fresh: it is writable by all
/// (`meta`, its metadata, already read).
pub fn heartbeat_file_exposure_of(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        unix::heartbeat_file(path, meta)
    }
    #[cfg(not(unix))]
    {
        let _ = (path, meta);
        None
    }
}

#[cfg(unix)]
mod walk;

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    const STICKY: u32 = 0o1000;

    pub fn heartbeat_dir(dir: &Path, meta: &std::fs::Metadata) -> Option<String> {
        let mode = meta.mode();
        if mode & 0o002 != 0 {
            let how = if mode & STICKY != 0 {
                "any user can create the heartbeat file before the writer does and keep it fresh \
                 (a hung service then looks alive) or make it unwritable"
            } else {
                "any user can delete or replace the heartbeat (getting a healthy service \
                 restarted) or keep it fresh (a hung service then looks alive)"
            };
            return Some(format!(
                "the heartbeat's directory {} is writable by every user (mode {:04o}): {how}; \
                 put heartbeats in a directory only root can write, such as /run/protector",
                dir.display(),
                mode & 0o7777
            ));
        }
        None
    }

    pub fn heartbeat_file(path: &Path, file: &std::fs::Metadata) -> Option<String> {
        if file.mode() & 0o002 != 0 {
            return Some(format!(
                "the heartbeat {} is writable by every user (mode {:04o}): any user can keep it \
                 fresh, so a hung service looks alive; make it writable only by its writer",
                path.display(),
                file.mode() & 0o7777
            ));
        }
        None
    }
}

/// Why a file protector writes in place (its lock, its log) is not its own alone: another
/// user's, or a file with more than one name (a hard link someone made, in a shared
/// directory, to a file protector must not write). `None`: it is (or: not Unix).
pub fn not_ours_alone(meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != euid() {
            return Some(format!("it belongs to {}", user_name(meta.uid())));
        }
        extra_names(meta)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// The JSON in `path`, a file protector wrote itself (a command's record, an incident): read
/// only when it is a regular file, no symlink, not planted ([`planted`]), and at most `max`
/// bytes of it; `None` otherwise, or when it does not parse.
pub fn read_own_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    max: u64,
) -> Option<T> {
    use std::io::Read;
    let file = crate::fsutil::no_follow(0).read(true).open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || planted(&meta).is_some() {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Why a file protector reads as what it wrote itself (the state file) may have been planted:
/// it belongs to a user other than root and protector's own, or it has more than one name.
pub fn planted(meta: &std::fs::Metadata) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != 0 && meta.uid() != euid() {
            return Some(format!(
                "it belongs to {}, not to root or protector's user: another user may have put it there",
                user_name(meta.uid())
            ));
        }
        extra_names(meta)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

#[cfg(unix)]
fn extra_names(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    (meta.nlink() > 1).then(|| {
        format!(
            "it has {} names (hard links): one could be a file protector must not touch",
            meta.nlink()
        )
    })
}

/// The owner of the file at `path`, when it is not protector's user.
pub fn foreign_owner(path: &std::path::Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::symlink_metadata(path).ok()?.uid();
        (uid != euid()).then(|| user_name(uid))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// `uid 1000 (alice)`, or `uid 1000` when the name is unknown.
#[cfg(unix)]
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: passwd is plain data (integers and pointers), for which all zeros is valid.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to memory that outlives the call; buf's length is passed.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc == 0 && !found.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: getpwuid_r filled pw_name with a NUL-terminated string inside buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        format!(
            "uid {uid} ({})",
            crate::text::clean(&name.to_string_lossy())
        )
    } else {
        format!("uid {uid}")
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_file_or_directory_others_can_write_is_named_with_its_mode() {
        // Under the crate's directory: its ancestors are the builder's, not /tmp's.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("conf");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        let file = dir.join("protector.yaml");
        std::fs::write(&file, "targets: []").unwrap();
        chmod(&file, 0o644);
        let base = exposure(&file);
        if base.is_some() {
            // The temp directory's own ancestors are not safe here (not root, say).
            return;
        }
        chmod(&file, 0o666);
        let r = exposure(&file).expect("a file everyone can write");
        assert!(
            r.contains("protector.yaml is writable by every user"),
            "{r}"
        );
        assert!(r.contains("mode 0666"), "{r}");
        chmod(&file, 0o620);
        assert!(exposure(&file).unwrap().contains("by its group"));
        chmod(&file, 0o644);
        chmod(&dir, 0o777);
        let r = exposure(&file).expect("a directory everyone can write");
        assert!(r.contains("conf is writable by every user"), "{r}");
        // Sticky and root's: fine above root's entries (when this runs as root).
        chmod(&dir, 0o1777);
        if is_root() {
            assert_eq!(exposure(&file), None);
        }
        // Not there yet: nothing to say about what protector will make itself.
        chmod(&dir, 0o755);
        assert_eq!(exposure(&dir.join("absent/state.json")), None);
    }

    #[test]
    fn a_symlinked_config_is_checked_where_it_leads_too() {
        let tmp = tempfile::tempdir().unwrap();
        let real_dir = tmp.path().join("shared");
        std::fs::create_dir(&real_dir).unwrap();
        let real = real_dir.join("v2.yaml");
        std::fs::write(&real, "targets: []").unwrap();
        chmod(&real, 0o644);
        chmod(&real_dir, 0o755);
        let link = tmp.path().join("current.yaml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        if exposure(&link).is_some() {
            return;
        }
        chmod(&real_dir, 0o777);
        let r = exposure(&link).expect("the target's directory is open to all");
        assert!(r.contains("shared is writable by every user"), "{r}");
    }
}
