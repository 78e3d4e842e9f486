//! A state file's bytes to what `protector status` prints (table and JSON, running or not):
//! `status` reads a file another user may have written, so no content may make it panic,
//! hang or grow without bound (libFuzzer's -timeout and -rss_limit_mb catch the last two).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for running in [false, true] {
        for json in [false, true] {
            if let Ok(shown) = protector::status::render_text(text, running, 1.8e9, json) {
                assert!(json || shown.starts_with("protector "));
            }
        }
    }
});
