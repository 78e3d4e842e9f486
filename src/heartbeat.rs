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
        Err(e) => (Observation::Absent, Some(e.to_string())),
    }
}
