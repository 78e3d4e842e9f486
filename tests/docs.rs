//! The documents' links hold: every relative link in the Markdown files a user reads names a
//! file of the repository, and every `#anchor` a heading or an `<a id>` of that file (as
//! GitHub makes them), so moving text between the README and docs/ cannot leave a dead link.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files a user reads.
fn documents() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = [
        "README.md",
        "SECURITY.md",
        "CONTRIBUTING.md",
        "ARCHITECTURE.md",
        "examples/salt/README.md",
    ]
    .iter()
    .map(|p| root().join(p))
    .collect();
    for entry in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            all.push(entry.path());
        }
    }
    all
}

/// The targets of `[text](target)` links, outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if fenced || line.starts_with("    ") {
            continue;
        }
        // Code spans dropped: `a](b)` in one is not a link.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            if let Some(end) = rest.find(')') {
                found.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    found
}

/// The anchors of a Markdown file: its headings as GitHub spells them, and `<a id="...">`.
fn anchors(text: &str) -> Vec<String> {
    let mut all = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix('#') {
            let heading = heading.trim_start_matches('#').trim();
            let slug: String = heading
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect();
            all.push(slug);
        }
        let mut rest = line;
        while let Some(at) = rest.find("<a id=\"") {
            rest = &rest[at + 7..];
            if let Some(end) = rest.find('"') {
                all.push(rest[..end].to_string());
            }
        }
    }
    all
}

#[test]
fn every_relative_link_in_the_documents_leads_somewhere() {
    let mut dead = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") || link.starts_with('<') {
                continue;
            }
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap_or(Path::new(".")).join(file)
            };
            let shown = format!(
                "{}: {link}",
                doc.strip_prefix(root()).unwrap_or(&doc).display()
            );
            if !target.exists() {
                dead.push(format!("{shown} (no such file)"));
                continue;
            }
            if !anchor.is_empty() && target.extension().is_some_and(|e| e == "md") {
                let target_text = std::fs::read_to_string(&target).unwrap();
                if !anchors(&target_text).iter().any(|a| a == anchor) {
                    dead.push(format!("{shown} (no such anchor)"));
                }
            }
        }
    }
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn links_and_anchors_are_read_as_github_reads_them() {
    let text = "See [a](docs/x.md#the-config-in-force) and `[no](code)`.\n    [no](indented)\n";
    assert_eq!(links(text), ["docs/x.md#the-config-in-force"]);
    assert_eq!(
        anchors("## The config in force\n### check\n<a id=\"incidents\"></a>"),
        ["the-config-in-force", "check", "incidents"]
    );
}
