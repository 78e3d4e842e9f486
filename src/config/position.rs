//! Where each value of a YAML document stands: JSON pointer -> line and column.
//!
//! serde_yaml does not expose positions of values, so problems found after parsing (schema
//! violations, duplicate names, unset variables) would have no line number. This module
//! re-reads the text with a position-reporting YAML parser and records, for every mapping
//! key and sequence item, the position it starts at. It is only used when there is something
//! to report, and to find keys written twice in one mapping (YAML says a key is unique; the
//! parser would silently keep the last one).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

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
    /// Keys written again in the same mapping: the pointer, where it was first written and
    /// where again.
    pub duplicates: Vec<(String, Position, Position)>,
}

impl PositionMap {
    pub fn build(text: &str) -> Self {
        let mut builder = Builder::default();
        // A syntax error was already reported by the real parser; keep what was mapped.
        let _ = Parser::new_from_str(text).load(&mut builder, false);
        PositionMap {
            by_pointer: builder.map,
            duplicates: builder.duplicates,
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
    Map {
        path: String,
        key: Option<String>,
        /// Keys of this mapping so far, where each was written.
        seen: HashMap<String, Position>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    map: HashMap<String, Position>,
    duplicates: Vec<(String, Position, Position)>,
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
            Some(Frame::Map { path, key, seen }) => match key.take() {
                None => {
                    // This node is a key: remember where the entry starts.
                    let name = key_scalar.unwrap_or("?");
                    let child = format!("{path}/{}", escape(name));
                    if key_scalar.is_some()
                        && let Some(first) = seen.insert(name.to_string(), pos)
                    {
                        seen.insert(name.to_string(), first);
                        self.duplicates.push((child.clone(), first, pos));
                    }
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
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    seen: HashMap::new(),
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
pub fn escape(key: &str) -> String {
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
        assert!(map.duplicates.is_empty());
    }

    #[test]
    fn keys_written_twice_are_found_at_every_level() {
        let text = "defaults:\n  timeout: 5m\n  timeout: 9m\ntargets:\n  - name: a\n    os: {linux: {stop: x, stop: y}}\n    name: b\ntargets: []\n";
        let map = PositionMap::build(text);
        let found: Vec<(&str, usize, usize)> = map
            .duplicates
            .iter()
            .map(|(p, a, b)| (p.as_str(), a.line, b.line))
            .collect();
        assert_eq!(
            found,
            [
                ("/defaults/timeout", 2, 3),
                ("/targets/0/os/linux/stop", 6, 6),
                ("/targets/0/name", 5, 7),
                ("/targets", 4, 8),
            ]
        );
    }
}
