//! Build script: records what `protector --version` says besides the version, the target it
//! was built for and the git commit it was built from ("unknown" outside a git checkout, as
//! in a crate downloaded by `cargo install`).

use std::process::Command;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PROTECTOR_TARGET={target}");
    println!("cargo:rustc-env=PROTECTOR_COMMIT={commit}");
    // A new commit means a new version string.
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    println!("cargo:rerun-if-changed=src/build.rs");
}
