//! Observing heartbeat files. One `stat` per observation; the file is never opened, so a
//! heartbeat on a slow or hung filesystem costs a blocked stat at worst (the daemon runs
//! observations on the rayon pool, see `daemon`).

use std::io::ErrorKind;
use std::path::Path;

use crate::platform;
use crate::schedule::{Fingerprint, Observation};

/// Looks at `path`. A missing file is simply no heartbeat; any other failure is also no
/// heartbeat, and comes with the reason so it can be logged.
pub fn observe(path: &Path) -> (Observation, Option<String>) {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => (
            Observation::Present(Fingerprint {
                mtime: meta.modified().ok(),
                len: meta.len(),
                identity: platform::file_identity(&meta),
            }),
            None,
        ),
        Ok(meta) => {
            let kind = if meta.is_dir() {
                "a directory"
            } else {
                "a special file"
            };
            (
                Observation::Absent,
                Some(format!("not a regular file ({kind})")),
            )
        }
        Err(e) if e.kind() == ErrorKind::NotFound => (Observation::Absent, None),
        Err(e) => (Observation::Unknown, Some(e.to_string())),
    }
}

/// The directory that should hold `path` when it does not exist (or is not a directory):
/// nothing can create a heartbeat there until someone creates the directory. `None` when the
/// directory is there, when `path` has no parent, or when the parent cannot be looked at for
/// another reason (permissions, a hung mount): that is reported by `observe`.
pub fn missing_dir(path: &Path) -> Option<&Path> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => Some(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Some(dir),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_dir_names_the_absent_directory_only() {
        let tmp = tempfile::tempdir().unwrap();
        let absent = tmp.path().join("absent").join("beat");
        assert_eq!(
            missing_dir(&absent),
            Some(tmp.path().join("absent").as_path())
        );
        assert_eq!(missing_dir(&tmp.path().join("beat")), None);
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let under_file = tmp.path().join("file").join("beat");
        assert_eq!(
            missing_dir(&under_file),
            Some(tmp.path().join("file").as_path())
        );
        assert_eq!(missing_dir(Path::new("beat")), None);
    }
}
