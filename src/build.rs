//! Build script: records what `protector --version` says besides the version, the target it
//! was built for and the git commit it was built from ("unknown" outside a git checkout, as
//! in a crate downloaded by `cargo install`).

use std::process::Command;

/// `git rev-parse ARGS`, when git answers.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("rev-parse")
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    let commit = git(&["--short=12", "HEAD"])
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PROTECTOR_TARGET={target}");
    println!("cargo:rustc-env=PROTECTOR_COMMIT={commit}");
    println!("cargo:rerun-if-changed=src/build.rs");
    // A new commit means a new version string. Only files that exist are named: a missing
    // one would make cargo run this script (and rebuild) every time.
    let dirs = [git(&["--git-dir"]), git(&["--git-common-dir"])];
    for dir in dirs.iter().flatten() {
        for file in ["HEAD", "refs/heads", "packed-refs"] {
            let path = std::path::Path::new(dir).join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}
