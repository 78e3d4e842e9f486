//! What loading a large config holds at its peak, counted by this test's own allocator: the
//! whole YAML document of 10,000 targets is never built (config/stream.rs), so the load's
//! heap peak is the text, the targets' compact JSON and the model, not the document
//! (12.1 MB before; docs/performance.md, eighth round). Bytes allocated are the same on
//! a loaded machine or an idle one: this bound holds anywhere. One test in this binary, so
//! that nothing else allocates beside it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use protector::config::{self, Os};

/// The system's allocator, counting the bytes live and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is the system allocator's, with the same arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_config_of_10000_targets_loads_without_its_whole_document_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("protector.yaml");
    // As the bench's file: targets alike but for their name and heartbeat.
    let mut text = String::from("defaults:\n  timeout: 60s\n  restart_grace: 1h\ntargets:\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "  - {{name: t{i}, heartbeat: t{i}.beat, start: ['true']}}\n"
        ));
    }
    std::fs::write(&path, &text).unwrap();
    let file_bytes = text.len();
    drop(text);
    // The schema compiled first: it is the same for any config.
    config::load(&path, Os::host()).unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);

    let config = config::load(&path, Os::host()).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let kept = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(config.targets.len(), 10_000);
    assert!(config.targets[9_999].heartbeat.ends_with("t9999.beat"));
    eprintln!("file {file_bytes} bytes; load peak {peak} bytes, kept {kept}");
    // The model itself, and the text kept as the accepted config.
    assert!(kept < 2_500_000, "kept {kept}");
    assert!(peak < 4_000_000, "peak {peak}");
}
