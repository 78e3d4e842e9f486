//! The last config protector accepted, kept so that a protector started on a config file it
//! refuses (an edit with a mistake, then a package upgrade or a restart) goes on watching with
//! what it ran before, instead of leaving the host unwatched.
//!
//! The copy is `.NAME.accepted` beside the config file `NAME` (`/etc/protector/.protector.yaml.accepted`):
//! found without reading the refused file, kept across reboots, in a directory that StrictModes
//! already requires to be root's alone, closed to other users (0600: commands may hold
//! secrets), written through a temporary file and a rename, never through a symlink. Relative
//! paths in it mean what they meant in the file, since it lives in the same directory.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Config, Os};

/// Where the last accepted copy of the config file `config` is kept.
pub fn copy_path(config: &Path) -> PathBuf {
    let name = config
        .file_name()
        .map_or_else(|| "protector.yaml".into(), |n| n.to_string_lossy());
    config.with_file_name(format!(".{name}.accepted"))
}

/// Keeps `text`, the config file `config` as protector just accepted it (nothing is written
/// when the copy already says the same).
pub fn keep(config: &Path, text: &str) -> std::io::Result<()> {
    let copy = copy_path(config);
    if crate::fsutil::open_to_read(&copy)
        .and_then(|f| {
            use std::io::Read;
            let mut old = Vec::new();
            f.take(text.len() as u64 + 1).read_to_end(&mut old)?;
            Ok(old == text.as_bytes())
        })
        .unwrap_or(false)
    {
        return Ok(());
    }
    crate::fsutil::write_atomically_mode(&copy, 0o600, |w| w.write_all(text.as_bytes()))
}

/// The config file was refused at start-up; protector runs on its last accepted copy.
#[derive(Debug, Clone)]
pub struct Refused {
    /// What is wrong with the file, a line each (as `protector check` says it).
    pub problems: Vec<String>,
    /// The copy in force.
    pub copy: PathBuf,
    /// When that copy was written (when that config was last accepted).
    pub saved_at: Option<SystemTime>,
}

/// What protector starts on.
#[derive(Debug)]
pub struct Start {
    pub config: Config,
    /// The file's text, when the file itself was accepted (kept as the copy once running).
    pub text: Option<String>,
    /// Why the file is not what protector runs on, when it is not.
    pub refused: Option<Refused>,
}

/// The config file `path`, or, when it is refused, its last accepted copy. The error says
/// what is wrong with the file (and with the copy, when it cannot be used either).
pub fn start_on(path: &Path, os: Os) -> Result<Start, String> {
    let e = match super::load_text(path, os) {
        Ok((config, text)) => {
            return Ok(Start {
                config,
                text: Some(text),
                refused: None,
            });
        }
        Err(e) => e,
    };
    let copy = copy_path(path);
    let Ok(meta) = std::fs::symlink_metadata(&copy) else {
        return Err(e.to_string());
    };
    match super::load(&copy, os) {
        Ok(config) => Ok(Start {
            config,
            text: None,
            refused: Some(Refused {
                problems: e.lines().collect(),
                copy,
                saved_at: meta.modified().ok(),
            }),
        }),
        Err(copy_error) => Err(format!(
            "{e}protector: its last accepted copy cannot be used either:\n{copy_error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 1m\n    start: [x]\n";

    #[test]
    fn the_copy_is_a_hidden_sibling() {
        assert_eq!(
            copy_path(Path::new("/etc/protector/protector.yaml")),
            Path::new("/etc/protector/.protector.yaml.accepted")
        );
    }

    #[test]
    fn the_kept_copy_is_what_was_accepted_and_only_the_owner_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("p.yaml");
        std::fs::write(&cfg, "targets: [broken").unwrap();
        let refused = start_on(&cfg, Os::host()).unwrap_err();
        assert!(refused.contains("p.yaml:2:1: invalid YAML"), "{refused}");
        keep(&cfg, GOOD).unwrap();
        let start = start_on(&cfg, Os::host()).unwrap();
        assert_eq!(start.config.targets[0].name, "a");
        // Relative paths are the file's directory's, as in the file itself.
        assert_eq!(start.config.targets[0].heartbeat, dir.path().join("a.beat"));
        let why = start.refused.unwrap();
        assert_eq!(why.copy, copy_path(&cfg));
        assert!(
            why.problems
                .iter()
                .any(|p| p.contains("p.yaml:2:1: invalid YAML")),
            "{:?}",
            why.problems
        );
        assert!(start.text.is_none());
        // A copy that cannot be used is said too.
        std::fs::write(copy_path(&cfg), "nonsense: [").unwrap();
        let both = start_on(&cfg, Os::host()).unwrap_err();
        assert!(both.contains("cannot be used either"), "{both}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(copy_path(&cfg))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_planted_as_the_copy_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("p.yaml");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, copy_path(&cfg)).unwrap();
        keep(&cfg, GOOD).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(copy_path(&cfg)).unwrap(), GOOD);
    }
}
