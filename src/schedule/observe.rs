//! What the decision core is given: the moment (on both clocks) and a look at a heartbeat file.

use std::time::{Duration, Instant, SystemTime};

/// The moment of a decision, on both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// `at + d`, saturating: a deadline beyond what the clock can hold is as late as it can be
/// (durations are at most 100 years, so this is a guard, not a rule).
pub fn later(at: Instant, d: Duration) -> Instant {
    if let Some(t) = at.checked_add(d) {
        return t;
    }
    let mut step = d;
    while !step.is_zero() {
        step /= 2;
        if let Some(t) = at.checked_add(step) {
            return t;
        }
    }
    at
}

/// What identifies one version of a heartbeat file: a touch, a write, or a replacement by a
/// new file all change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub mtime: Option<SystemTime>,
    pub len: u64,
    /// Device and inode on Unix, creation time on Windows.
    pub identity: (u64, u64),
    /// The filesystem keeps file times in whole seconds (ext2/ext3 with small inodes, FAT,
    /// some NFS servers): two changes within one second leave the same mtime.
    pub coarse: bool,
    /// On such a filesystem, a hash of a small file's content: a write within the same second
    /// as the previous one still shows.
    pub content: Option<u64>,
}

/// How far a coarse file time may be behind the change it records (FAT's two seconds).
const COARSE_GRANULE: Duration = Duration::from_secs(2);

impl Fingerprint {
    /// The latest the file can have changed by `now`, per its mtime: a coarse time is
    /// rounded down.
    pub(super) fn changed_by(&self, now: SystemTime) -> Option<SystemTime> {
        let m = self.mtime?;
        Some(if self.coarse {
            m.checked_add(COARSE_GRANULE).unwrap_or(m).min(now).max(m)
        } else {
            m
        })
    }
}

/// A look at the heartbeat file. Missing and unreadable files are both "no heartbeat";
/// the daemon logs the reason of the latter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Present(Fingerprint),
    Absent,
    /// The look failed (an I/O error, no answer in time): no heartbeat, and nothing learnt
    /// about the file, so the next look that works compares with the last one that did
    /// (a file unchanged since then is not taken for a heartbeat).
    Unknown,
}

impl Observation {
    pub(super) fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Observation::Present(f) => Some(*f),
            Observation::Absent | Observation::Unknown => None,
        }
    }
}
