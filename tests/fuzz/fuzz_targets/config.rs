//! The whole config path on arbitrary bytes: UTF-8 check, YAML parse, schema validation,
//! deserialization, resolution for each OS, and the error report with its positions. It must
//! never panic, hang or grow without bound (libFuzzer's -timeout and -rss_limit_mb catch the
//! last two). A config accepted the short way (target by target, config/stream.rs) is the one
//! the whole way accepts, and the short way accepts nothing the whole way refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protector::config::{self, Os};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "HOME").then(|| "/home/fuzz".to_string());
    for os in [Os::Linux, Os::Windows] {
        let whole = config::parse_str_whole(text, "fuzz.yaml", os, Some(&env));
        match config::parse_str(text, "fuzz.yaml", os, Some(&env)) {
            Ok(c) => {
                assert!(!c.targets.is_empty());
                assert_eq!(whole.as_ref().ok(), Some(&c));
            }
            Err(e) => {
                // Rendering the report walks the positions map too.
                let report = e.to_string();
                assert!(report.starts_with("fuzz.yaml: "));
                assert!(whole.is_err());
            }
        }
    }
});
