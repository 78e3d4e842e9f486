//! What is asked about a heartbeat file and how it is answered: its look, and what to warn
//! about its place (each directory looked at once per batch).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::super::effects::{Look, Place};
use crate::heartbeat::{self, DirFacts};
use crate::schedule::Observation;

/// What is asked about a heartbeat file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Ask {
    /// Its fingerprint (a look).
    Look,
    /// Its fingerprint, and what to warn about its place (a target newly watched).
    LookAndPlace,
}

/// An answer to an [`Ask`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Look(Look),
    Placed(Look, Place),
}

/// Answers `ask` about `path`; its directory's facts come from `dirs`.
pub(super) fn answer(ask: Ask, path: &Path, dirs: &Dirs) -> Answer {
    match ask {
        Ask::Look => Answer::Look(heartbeat::observe(path)),
        Ask::LookAndPlace => {
            let (look, meta) = heartbeat::observe_keeping(path);
            let place = place(path, &look, meta.as_ref(), dirs);
            Answer::Placed(look, place)
        }
    }
}

/// What to warn about the place of the heartbeat at `path`, looked at as `look` (its metadata
/// `meta`, when it could be read).
fn place(path: &Path, look: &Look, meta: Option<&std::fs::Metadata>, dirs: &Dirs) -> Place {
    let Ok(path) = std::path::absolute(path) else {
        return Place::default();
    };
    let Some(dir) = path.parent() else {
        return Place::default();
    };
    let DirFacts { missing, exposed } = dirs.of(dir);
    Place {
        missing_dir: (missing && look.0 == Observation::Absent).then(|| dir.display().to_string()),
        exposed: exposed
            .or_else(|| meta.and_then(|m| crate::perms::heartbeat_file_exposure_of(&path, m))),
    }
}

/// The directories of one batch's heartbeats, each looked at once (10,000 heartbeats in one
/// directory: one `stat` of it, not 20,000).
#[derive(Default)]
pub(super) struct Dirs(Mutex<HashMap<PathBuf, DirFacts>>);

impl Dirs {
    pub(super) fn of(&self, dir: &Path) -> DirFacts {
        let known = |dirs: &Self| {
            let map = dirs.0.lock().unwrap_or_else(|p| p.into_inner());
            map.get(dir).cloned()
        };
        if let Some(facts) = known(self) {
            return facts;
        }
        // Not under the lock: a directory that does not answer holds up its own looks only.
        let facts = heartbeat::dir_facts(dir);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(dir.to_path_buf()).or_insert(facts).clone()
    }
}

/// The looks of answers (no answer in time: [`no_answer`]).
pub(super) fn looks_of(answers: Vec<Option<Answer>>) -> Vec<Look> {
    answers
        .into_iter()
        .map(|a| match a {
            Some(Answer::Look(look) | Answer::Placed(look, _)) => look,
            None => no_answer(),
        })
        .collect()
}

/// The looks and places of answers (no answer in time: [`no_answer`], nothing to say).
pub(super) fn placed_of(answers: Vec<Option<Answer>>) -> Vec<(Look, Place)> {
    answers
        .into_iter()
        .map(|a| match a {
            Some(Answer::Placed(look, place)) => (look, place),
            Some(Answer::Look(look)) => (look, Place::default()),
            None => (no_answer(), Place::default()),
        })
        .collect()
}

/// The same words every time, so that a stuck file is logged once, not at every look.
pub(super) fn no_answer() -> Look {
    (
        Observation::Unknown,
        Some("no answer in time: the filesystem does not respond".into()),
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::daemon::effects::Looker;
    use std::time::Duration;

    #[test]
    fn a_heartbeat_in_a_place_any_user_can_write_or_a_missing_directory_is_told() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("beats");
        std::fs::create_dir(&dir).unwrap();
        let beat = dir.join("svc.alive");
        let gone = tmp.path().join("gone").join("svc.alive");
        let looker = super::super::FileLooker::default();
        let place = |path: &Path| {
            let mut placed = looker.look_and_place(&[path, path], Duration::from_secs(5));
            assert_eq!(placed[0], placed[1], "one file, one answer");
            placed.pop().unwrap()
        };
        chmod(&dir, 0o755);
        assert_eq!(
            place(&beat),
            ((Observation::Absent, None), Place::default())
        );
        chmod(&dir, 0o1777);
        let r = place(&beat).1.exposed.unwrap();
        assert!(
            r.contains("create the heartbeat file before the writer"),
            "{r}"
        );
        chmod(&dir, 0o777);
        let r = place(&beat).1.exposed.unwrap();
        assert!(r.contains("delete or replace the heartbeat"), "{r}");
        chmod(&dir, 0o755);
        std::fs::write(&beat, "").unwrap();
        chmod(&beat, 0o666);
        let (look, place_of_beat) = place(&beat);
        assert!(matches!(look.0, Observation::Present(_)), "{look:?}");
        let r = place_of_beat.exposed.unwrap();
        assert!(r.contains("svc.alive is writable by every user"), "{r}");
        let missing = place(&gone).1;
        assert_eq!(
            missing.missing_dir.as_deref(),
            Some(gone.parent().unwrap().to_str().unwrap())
        );
        assert_eq!(missing.exposed, None);
        let r = place(Path::new("/tmp/htrd_minion_alived"))
            .1
            .exposed
            .unwrap();
        assert!(r.contains("/tmp is writable by every user"), "{r}");
    }
}
