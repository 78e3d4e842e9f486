//! The look pool: answers in order, a stuck look holding up its own file only.

use super::*;
use crate::schedule::Observation;

#[test]
fn looks_come_back_in_order_and_a_missing_file_is_no_heartbeat() {
    let dir = tempfile::tempdir().unwrap();
    let present = dir.path().join("present");
    std::fs::write(&present, "").unwrap();
    let absent = dir.path().join("absent");
    let looker = FileLooker::default();
    let paths: Vec<&Path> = (0..40)
        .map(|i| {
            if i % 2 == 0 {
                present.as_path()
            } else {
                absent.as_path()
            }
        })
        .collect();
    let looks = looker.look(&paths, Duration::from_secs(5));
    assert_eq!(looks.len(), 40);
    for (i, (obs, err)) in looks.iter().enumerate() {
        assert_eq!(matches!(obs, Observation::Present(_)), i % 2 == 0, "{i}");
        assert!(err.is_none());
    }
    assert!(looker.pool.lock().workers <= READY_WORKERS);
}

/// Files whose look blocks until they are let go (a dead mount, in a test).
static HELD: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static LET_GO: Condvar = Condvar::new();
/// Looks made at held files.
static HELD_LOOKS: AtomicUsize = AtomicUsize::new(0);

fn held_or_answered(ask: Ask, path: &Path, dirs: &Dirs) -> Answer {
    let mut held = lock(&HELD);
    if held.iter().any(|p| p == path) {
        HELD_LOOKS.fetch_add(1, Ordering::SeqCst);
    }
    while held.iter().any(|p| p == path) {
        held = LET_GO.wait(held).unwrap_or_else(|p| p.into_inner());
    }
    drop(held);
    answer(ask, path, dirs)
}

#[test]
fn a_stuck_look_holds_up_its_own_file_only_and_is_not_made_again_until_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let stuck = dir.path().join("stuck");
    lock(&HELD).push(stuck.clone());
    let others: Vec<PathBuf> = (0..200).map(|i| dir.path().join(i.to_string())).collect();
    for path in &others {
        std::fs::write(path, "").unwrap();
    }
    let looker = FileLooker {
        pool: Arc::default(),
        answering: held_or_answered,
    };
    let mut paths: Vec<&Path> = others.iter().map(PathBuf::as_path).collect();
    paths.insert(100, &stuck);
    let present = |looks: &[Look]| {
        looks
            .iter()
            .filter(|(o, _)| matches!(o, Observation::Present(_)))
            .count()
    };
    let looks = looker.look(&paths, Duration::from_secs(2));
    assert_eq!(present(&looks), 200, "every other file is answered");
    assert_eq!(looks[100], answer::no_answer());
    // Asked again while it is stuck: no answer at once, whatever the budget, and no
    // worker is put on it again.
    for _ in 0..3 {
        let asked = Instant::now();
        let looks = looker.look(&paths, Duration::from_secs(60));
        assert!(
            asked.elapsed() < Duration::from_secs(30),
            "it waited for the stuck file"
        );
        assert_eq!(present(&looks), 200);
        assert_eq!(looks[100], answer::no_answer());
    }
    assert_eq!(HELD_LOOKS.load(Ordering::SeqCst), 1, "looked at once");
    // Once its look returns, it is looked at again.
    std::fs::write(&stuck, "").unwrap();
    lock(&HELD).clear();
    LET_GO.notify_all();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let looks = looker.look(&[&stuck], Duration::from_secs(5));
        if matches!(looks[0].0, Observation::Present(_)) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the file stayed unanswered: {looks:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lock(&looker.pool.state).late[Ask::Look as usize].is_empty());
}
