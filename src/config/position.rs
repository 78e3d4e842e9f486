//! Where each value of a YAML document stands: JSON pointer -> line and column.
//!
//! serde_yaml does not expose positions of values, so problems found after parsing (schema
//! violations, duplicate names, unset variables) would have no line number. This module
//! re-reads the text with a position-reporting YAML parser and records, for every mapping
//! key and sequence item, the position it starts at. It is only used when there is something
//! to report (`document.rs` reads the document, and the keys written twice, in one pass).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Positions of the values in one document, by JSON pointer (`/targets/0/timeout`).
#[derive(Debug, Default)]
pub struct PositionMap {
    by_pointer: HashMap<String, Position>,
}

/// A key written again in the same mapping: its pointer, where it was first written and
/// where again.
pub type Duplicate = (String, Position, Position);

/// Most collections a config may nest in one another (serde_yaml's own limit): `document.rs`
/// stops there, before serde_yaml, which reads a whole document before it finds it too deep
/// (a few MB of `[` took seconds and hundreds of MB).
pub const MAX_NESTING: usize = 128;

impl PositionMap {
    pub fn build(text: &str) -> Self {
        let mut builder = Builder::default();
        // A syntax error was already reported by the real parser; keep what was mapped.
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        PositionMap {
            by_pointer: builder.map,
        }
    }

    /// The position of `pointer`, or of its nearest ancestor that has one.
    pub fn find(&self, pointer: &str) -> Option<Position> {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.by_pointer.get(p) {
                return Some(*pos);
            }
            p = &p[..p.rfind('/')?];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    map: HashMap<String, Position>,
}

impl Builder {
    /// Called for every node; returns the path of the node when it is a value.
    /// Mappings report a start mark that may lie before their first key, so they are placed
    /// at their first key instead (`record` false).
    fn node(&mut self, key_scalar: Option<&str>, mark: Marker, record: bool) -> Option<String> {
        let pos = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let child = format!("{path}/{next}");
                *next += 1;
                if record {
                    self.map.entry(child.clone()).or_insert(pos);
                }
                Some(child)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key: remember where the entry starts.
                    let name = key_scalar.unwrap_or("?");
                    let child = format!("{path}/{}", escape(name));
                    self.map.entry(child).or_insert(pos);
                    self.map.entry(path.clone()).or_insert(pos);
                    *key = Some(name.to_string());
                    None
                }
                Some(name) => Some(format!("{path}/{}", escape(&name))),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                self.node(Some(&value), mark, true);
            }
            Event::Alias(_) => {
                self.node(None, mark, true);
            }
            Event::SequenceStart(..) => {
                let path = self.node(None, mark, true).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingStart(..) => {
                let path = self.node(None, mark, false).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// A plain (unquoted) value that a comment follows on its line: YAML ends such a value at a
/// `#` after a space, which is easy to miss in a command (`start: echo "a # b"` is `echo "a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub pointer: String,
    /// The value as YAML read it.
    pub value: String,
    /// What YAML took for a comment, from its `#` to the end of the line.
    pub comment: String,
}

/// Every plain one-line value of `text` that a comment follows on its line. The text is
/// parsed again only when a line has a `#` after something else.
pub fn cut_by_comments(text: &str) -> Vec<Cut> {
    let trailing = |line: &str| {
        let line = line.trim_start();
        !line.starts_with('#') && (line.contains(" #") || line.contains("\t#"))
    };
    if !text.lines().any(trailing) {
        return Vec::new();
    }
    let mut scan = CutScan {
        builder: Builder::default(),
        lines: text.lines().collect(),
        found: Vec::new(),
    };
    let _ = Parser::new_from_str(text).load(&mut scan, false);
    scan.found
}

struct CutScan<'a> {
    builder: Builder,
    lines: Vec<&'a str>,
    found: Vec<Cut>,
}

impl MarkedEventReceiver for CutScan<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let Event::Scalar(value, style, ..) = &ev else {
            self.builder.on_event(ev, mark);
            return;
        };
        let Some(pointer) = self.builder.node(Some(value), mark, true) else {
            return;
        };
        if *style != TScalarStyle::Plain || value.contains('\n') {
            return;
        }
        // On one line, a plain value is written as YAML reads it: what follows it is the rest.
        let Some(line) = mark.line().checked_sub(1).and_then(|i| self.lines.get(i)) else {
            return;
        };
        let rest: String = line
            .chars()
            .skip(mark.col() + value.chars().count())
            .collect();
        if rest.trim_start().starts_with('#') {
            self.found.push(Cut {
                pointer,
                value: value.clone(),
                comment: rest.trim().to_string(),
            });
        }
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
pub fn escape(key: &str) -> String {
    if !key.contains(['~', '/']) {
        return key.to_string();
    }
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keys_and_items() {
        let text = "defaults:\n  timeout: 5m\ntargets:\n  - name: a\n    heartbeat: /x\n  - name: b\n    stop: [a, b]\n";
        let map = PositionMap::build(text);
        let at = |p: &str| map.find(p).map(|p| (p.line, p.column));
        assert_eq!(at("/defaults/timeout"), Some((2, 3)));
        assert_eq!(at("/targets/0/name"), Some((4, 5)));
        assert_eq!(at("/targets/0/heartbeat"), Some((5, 5)));
        assert_eq!(at("/targets/1"), Some((6, 5)));
        assert_eq!(at("/targets/1/stop/1"), Some((7, 15)));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(at("/targets/1/nothing/here"), Some((6, 5)));
    }

    #[test]
    fn values_cut_by_a_comment_are_found() {
        let text = "# a comment line\ntargets:\n  - name: a # named\n    start: echo \"a # b\"\n    stop: 'quoted # kept'\n    notify: x#y\n";
        let cuts = cut_by_comments(text);
        assert_eq!(
            cuts,
            [
                Cut {
                    pointer: "/targets/0/name".into(),
                    value: "a".into(),
                    comment: "# named".into()
                },
                Cut {
                    pointer: "/targets/0/start".into(),
                    value: "echo \"a".into(),
                    comment: "# b\"".into()
                },
            ]
        );
        assert!(cut_by_comments("targets: []\n# end\n").is_empty());
    }
}
