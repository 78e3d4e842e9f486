//! What an earlier protector left, read at start-up: its temporaries (removed), its state
//! file's records, and the records of the commands it had running (`state::running`). Read
//! on a thread of its own while the first looks are made (`install.rs`): the looks happen in
//! the look helper, and at 100,000 targets the state file alone is tens of megabytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::config::Files;
use crate::state::{self, RunningCommand, TargetRecord};

/// What the previous protector left, by target name.
#[derive(Default)]
pub(super) struct Left {
    /// Its state file's records.
    pub records: HashMap<String, TargetRecord>,
    /// The commands it had running, as its state file or (when newer) their own records say.
    pub commands: HashMap<String, RunningCommand>,
    /// The records of running commands read: taken off once the state file holds them.
    pub record_files: Vec<PathBuf>,
    /// The state file is not a regular file: it is left alone and no state is kept.
    pub state_file_unusable: bool,
}

/// Reads what was left beside `files` by a protector of `targets` targets (`dry_run`: nothing
/// is removed or moved).
pub(super) fn read(files: &Files, targets: usize, dry_run: bool) -> Left {
    if !dry_run {
        remove_stale_temps(files);
    }
    let Some(path) = files.state_file.as_deref() else {
        return Left::default();
    };
    let Some(records) = read_state_file(path, state::max_bytes(targets), dry_run) else {
        return Left {
            state_file_unusable: true,
            ..Left::default()
        };
    };
    let mut commands: HashMap<String, RunningCommand> = records
        .iter()
        .filter_map(|(name, rec)| Some((name.clone(), *rec.running_command.clone()?)))
        .collect();
    let mut record_files = Vec::new();
    for (record, target, running) in state::running::left(path) {
        record_files.push(record);
        match commands.get(&target) {
            Some(known) if known.started_at >= running.started_at => {}
            _ => {
                commands.insert(target, running);
            }
        }
    }
    Left {
        records,
        commands,
        record_files,
        state_file_unusable: false,
    }
}

/// Temporary files an earlier protector left when it died mid-write go.
fn remove_stale_temps(files: &Files) {
    for path in [&files.state_file, &files.metrics_file]
        .into_iter()
        .flatten()
    {
        let removed = crate::fsutil::remove_stale_temps(path);
        if removed > 0 {
            info!(
                event = "stale_temps_removed",
                file = %path.display(),
                removed,
                "removed temporary files an earlier protector left behind"
            );
        }
    }
}

/// The state file's records, by target name (an unusable file is set aside); `None` when it
/// is not a regular file (left alone).
fn read_state_file(path: &Path, max: u64, dry_run: bool) -> Option<HashMap<String, TargetRecord>> {
    match state::load(path, max) {
        Ok(Some(file)) => Some(
            file.targets
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
        ),
        Ok(None) => Some(HashMap::new()),
        Err(state::Unusable::NotRegular(reason)) => {
            error!(
                event = "state_file_unusable",
                state_file = %path.display(),
                reason = %reason,
                "the state file is not a regular file; it is left alone and no state is kept"
            );
            None
        }
        Err(state::Unusable::Corrupt(reason) | state::Unusable::Planted(reason)) if dry_run => {
            warn!(event = "state_file_unusable", state_file = %path.display(), reason = %reason, "state file is unusable; dry run: left as it is");
            Some(HashMap::new())
        }
        Err(state::Unusable::Corrupt(reason)) => {
            match state::set_aside(path) {
                Ok(aside) => warn!(
                    event = "state_file_unusable",
                    state_file = %path.display(),
                    reason = %reason,
                    moved_to = %aside.display(),
                    "state file is unusable; moved it aside and starting fresh"
                ),
                Err(e) => {
                    warn!(event = "state_file_unusable", state_file = %path.display(), reason = %reason, "state file is unusable and cannot be moved aside ({e}); it will be overwritten")
                }
            }
            Some(HashMap::new())
        }
        // Not trusted: set aside all the same, and said as an error (someone may be at work).
        Err(state::Unusable::Planted(reason)) => {
            let aside = state::set_aside(path).map_or_else(
                |e| format!("(cannot move it aside: {e})"),
                |a| a.display().to_string(),
            );
            error!(
                event = "state_file_refused",
                state_file = %path.display(),
                reason = %reason,
                moved_to = %aside,
                "the state file is not protector's own; not read, moved aside, starting fresh"
            );
            Some(HashMap::new())
        }
    }
}
