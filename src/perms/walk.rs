//! StrictModes' walk: a path followed one part at a time from `/`, each part opened by a
//! handle on the directory before it and looked at through its own handle, each symlink read
//! and followed by hand (its owner checked like every other part's), and the file at the end
//! opened from the same directory handle and compared with what was checked. What is read is
//! then what was checked, however the names on the way change meanwhile: nothing is looked
//! up twice by name. (The kernel's own lookup, `open` or `canonicalize`, resolves nested
//! symlinks without saying which it went through, and a second lookup after a check can land
//! elsewhere.) No crate walks a path checking each link's owner, hence this one.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

const STICKY: u32 = 0o1000;

/// Symlinks followed in one path at most (as Linux's own lookup; beyond: ELOOP).
const MAX_LINKS: usize = 40;

/// What a walk found.
pub enum Walked<T> {
    /// A part another user could change, and why.
    Exposed(String),
    /// A part that does not exist (yet); every part before it is safe.
    Missing(io::Error),
    /// Every part is safe; what was done with the last one.
    Safe(T),
}

/// Checks every part of `path`.
pub fn check(path: &Path) -> io::Result<Walked<()>> {
    walk(path, |_, _, _, _| Ok(Walked::Safe(())))
}

/// Checks every part of `path` and opens the file at the end to read (without waiting: the
/// caller checks that it is a regular file).
pub fn open(path: &Path) -> io::Result<Walked<File>> {
    walk(path, open_last)
}

enum Step {
    Root,
    Up,
    Name(OsString),
}

fn steps(path: &Path) -> impl DoubleEndedIterator<Item = Step> + '_ {
    path.components().filter_map(|c| match c {
        Component::RootDir | Component::Prefix(_) => Some(Step::Root),
        Component::CurDir => None,
        Component::ParentDir => Some(Step::Up),
        Component::Normal(name) => Some(Step::Name(name.to_owned())),
    })
}

/// `openat(dir, name, flags)`, close-on-exec.
fn open_at(dir: &File, name: &OsStr, flags: libc::c_int) -> io::Result<File> {
    let name = CString::new(name.as_bytes())?;
    // SAFETY: `name` is NUL-terminated and outlives the call; the descriptor is `dir`'s own.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn open_root() -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open("/")
}

/// Where the symlink opened (O_PATH, O_NOFOLLOW) as `link` leads.
fn read_link(link: &File) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty name reads the link `link` refers to; buf's length is passed.
    let n = unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if n >= buf.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    buf.truncate(n);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// Walks `path` (made absolute against the working directory) from `/`, stopping at the first
/// part another user could change; `last` is given the last part (its directory, its name in
/// it, its path and what was checked).
fn walk<T>(
    path: &Path,
    last: impl FnOnce(&File, &OsStr, &Path, &std::fs::Metadata) -> io::Result<Walked<T>>,
) -> io::Result<Walked<T>> {
    let me = super::euid();
    let path = std::path::absolute(path)?;
    let mut dir = open_root()?;
    let mut at = PathBuf::from("/");
    if let Some(why) = entry(&at, &dir.metadata()?, me) {
        return Ok(Walked::Exposed(why));
    }
    let mut pending: VecDeque<Step> = steps(&path).collect();
    let mut links = 0;
    while let Some(step) = pending.pop_front() {
        let name = match step {
            Step::Root => {
                dir = open_root()?;
                at = PathBuf::from("/");
                continue;
            }
            // Up from a directory reached part by part: to one already checked.
            Step::Up => {
                dir = open_at(&dir, OsStr::new(".."), libc::O_PATH | libc::O_DIRECTORY)?;
                at.pop();
                continue;
            }
            Step::Name(name) => name,
        };
        let handle = match open_at(&dir, &name, libc::O_PATH | libc::O_NOFOLLOW) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Walked::Missing(e)),
            other => other?,
        };
        let meta = handle.metadata()?;
        let here = at.join(&name);
        if let Some(why) = entry(&here, &meta, me) {
            return Ok(Walked::Exposed(why));
        }
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            // Resolved in the directory that holds the link (or from `/`).
            let target = read_link(&handle)?;
            for step in steps(&target).rev() {
                pending.push_front(step);
            }
            continue;
        }
        if pending.is_empty() {
            return last(&dir, &name, &here, &meta);
        }
        dir = handle;
        at = here;
    }
    // Ended on `/` or `..`: a directory already checked.
    let meta = dir.metadata()?;
    last(&dir, OsStr::new("."), &at, &meta)
}

/// The last part, `name` in `dir`, checked as `meta`, opened to read; refused if what the open
/// found is not what was checked.
fn open_last(
    dir: &File,
    name: &OsStr,
    here: &Path,
    meta: &std::fs::Metadata,
) -> io::Result<Walked<File>> {
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    let file = open_at(dir, name, flags)?;
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Ok(Walked::Exposed(format!(
            "{} was replaced while it was being checked",
            here.display()
        )));
    }
    Ok(Walked::Safe(file))
}

fn sticky_root(meta: &std::fs::Metadata) -> bool {
    meta.is_dir() && meta.mode() & STICKY != 0 && meta.uid() == 0
}

/// Why entry `at` is not safe: it belongs to another user, or others may write it. A
/// directory all may write is fine when it is root's and sticky (like /tmp): only an entry's
/// owner can then replace the entry, and every entry checked must be root's. A symlink's own
/// mode means nothing (no one can write a link); its owner can replace it, so it counts.
fn entry(at: &Path, meta: &std::fs::Metadata, me: u32) -> Option<String> {
    let (uid, mode) = (meta.uid(), meta.mode());
    let link = meta.file_type().is_symlink();
    let what = if link { "the symlink " } else { "" };
    if uid != 0 && uid != me {
        return Some(format!(
            "{what}{} belongs to {} (mode {:04o})",
            at.display(),
            super::user_name(uid),
            mode & 0o7777
        ));
    }
    let writable_by_others = mode & 0o022 != 0;
    if !link && writable_by_others && !sticky_root(meta) {
        return Some(format!(
            "{} is writable by {} (owner {}, mode {:04o})",
            at.display(),
            if mode & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            },
            super::user_name(uid),
            mode & 0o7777
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn exposed<T>(walked: io::Result<Walked<T>>) -> Option<String> {
        match walked.unwrap() {
            Walked::Exposed(why) => Some(why),
            _ => None,
        }
    }

    /// `etc/conf` -> `u/link` -> `real`, with `real/protector.yaml`; `None` when the temporary
    /// directory's own ancestors are not safe here.
    fn nested() -> Option<(tempfile::TempDir, PathBuf)> {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path();
        for dir in ["etc", "u", "real"] {
            std::fs::create_dir(top.join(dir)).unwrap();
            chmod(&top.join(dir), 0o755);
        }
        std::fs::write(top.join("real/protector.yaml"), "targets: []").unwrap();
        chmod(&top.join("real/protector.yaml"), 0o644);
        symlink("../real", top.join("u/link")).unwrap();
        symlink(top.join("u/link"), top.join("etc/conf")).unwrap();
        let config = top.join("etc/conf/protector.yaml");
        exposed(check(&config)).is_none().then_some((tmp, config))
    }

    #[test]
    fn every_link_on_the_way_and_every_directory_it_leads_through_is_checked() {
        let Some((tmp, config)) = nested() else {
            return;
        };
        let Walked::Safe(mut file) = open(&config).unwrap() else {
            panic!("a safe path is opened");
        };
        let mut text = String::new();
        io::Read::read_to_string(&mut file, &mut text).unwrap();
        assert_eq!(text, "targets: []");
        // The directory holding the nested link: neither on the path as given nor where it
        // all leads.
        chmod(&tmp.path().join("u"), 0o777);
        let why = exposed(check(&config)).expect("the link's directory is open to all");
        assert!(why.contains("/u is writable by every user"), "{why}");
        assert!(exposed(open(&config)).is_some());
        chmod(&tmp.path().join("u"), 0o755);
        // Where it leads, after a `..` in the link.
        chmod(&tmp.path().join("real"), 0o775);
        let why = exposed(check(&config)).expect("the directory it leads to is open");
        assert!(why.contains("/real is writable by its group"), "{why}");
    }

    #[test]
    fn a_link_another_user_owns_is_refused_wherever_it_leads() {
        let Some((tmp, config)) = nested() else {
            return;
        };
        if super::super::euid() != 0 {
            return; // Giving a link to another user needs root.
        }
        let link = CString::new(tmp.path().join("u/link").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::lchown(link.as_ptr(), 65534, 65534) }, 0);
        let why = exposed(check(&config)).expect("another user's link");
        assert!(why.contains("the symlink "), "{why}");
        assert!(why.contains("/u/link belongs to uid 65534"), "{why}");
    }

    #[test]
    fn a_loop_of_links_ends_and_a_missing_part_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        if exposed(check(tmp.path())).is_some() {
            return; // The temporary directory's ancestors are not safe here.
        }
        symlink("b", tmp.path().join("a")).unwrap();
        symlink("a", tmp.path().join("b")).unwrap();
        let error = check(&tmp.path().join("a/x")).err().expect("a loop");
        assert_eq!(error.raw_os_error(), Some(libc::ELOOP));
        assert!(matches!(
            check(&tmp.path().join("absent/state.json")).unwrap(),
            Walked::Missing(_)
        ));
    }

    #[test]
    fn a_file_replaced_between_its_check_and_its_open_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("checked"), "a").unwrap();
        std::fs::write(tmp.path().join("other"), "b").unwrap();
        let checked = std::fs::symlink_metadata(tmp.path().join("checked")).unwrap();
        let dir = File::open(tmp.path()).unwrap();
        // What the walk checked was `checked`; by the open, `other` has its name.
        std::fs::rename(tmp.path().join("other"), tmp.path().join("checked")).unwrap();
        let here = tmp.path().join("checked");
        let why = exposed(open_last(&dir, OsStr::new("checked"), &here, &checked))
            .expect("a file replaced after its check");
        assert!(
            why.ends_with("checked was replaced while it was being checked"),
            "{why}"
        );
    }
}
