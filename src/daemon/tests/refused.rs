//! Running on the last accepted config: said at start-up, again at every shortest target
//! timeout while the file is refused, once when it is valid again, and over once a reload
//! puts the file in force (simulated time; the config file itself is real).

use super::harness::Harness;
use super::{config, secs, target};
use crate::config::accepted::Refused;

const BROKEN: &str = "targets: [\n";

#[test]
fn a_refused_file_is_said_at_start_and_at_every_timeout_until_a_reload_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("protector.yaml");
    std::fs::write(&file, BROKEN).unwrap();
    let b = "  - name: b\n    heartbeat: /h/b\n    timeout: 30s\n    start: [start, b]\n";
    let yaml = config(&[target("a", ""), b.to_string()], "");
    let mut h = Harness::started(&yaml, |o| {
        o.config_path = Some(file.clone());
        o.refused = Some(Refused {
            problems: vec!["protector.yaml:2:1: invalid YAML".into()],
            copy: dir.path().join(".protector.yaml.accepted"),
            saved_at: None,
        });
    });
    let said = |h: &Harness, event: &str| h.events("").iter().filter(|e| *e == event).count();
    assert_eq!(said(&h, "config_refused"), 1);
    assert!(
        h.d.snapshot(h.d.now()).config_refused.is_some(),
        "in the state file"
    );
    // Every shortest timeout (a's 10 s), while a and b are watched as usual.
    h.touch("a");
    h.touch("b");
    h.advance(secs(9.5));
    assert_eq!(said(&h, "config_still_refused"), 0);
    h.advance(secs(1.0));
    assert_eq!(said(&h, "config_still_refused"), 1);
    h.advance(secs(10.0));
    assert_eq!(said(&h, "config_still_refused"), 2);
    // Fixed: said once, not applied until a reload.
    std::fs::write(&file, config(&[target("a", "")], "")).unwrap();
    h.advance(secs(30.0));
    assert_eq!(said(&h, "config_valid_again"), 1);
    assert_eq!(said(&h, "config_still_refused"), 2);
    assert_eq!(h.d.slots.len(), 2, "not applied by itself");
    h.reload();
    assert_eq!(said(&h, "config_in_force"), 1);
    assert!(h.d.snapshot(h.d.now()).config_refused.is_none());
    assert_eq!(h.d.slots.len(), 1);
    h.advance(secs(60.0));
    assert_eq!(
        said(&h, "config_still_refused") + said(&h, "config_valid_again"),
        3
    );
}
