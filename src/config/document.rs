//! A config file's YAML read once, event by event: its document, the keys written twice in
//! one mapping (YAML says a key is unique; a parser keeps the last), and a guard against
//! collections nested too deep, met where they start, before anything else is read.
//!
//! It reads what configs are written with (mappings, sequences, scalars of every style, plain
//! scalars taken as YAML's core schema takes them) and leaves the rest to serde_yaml, whose
//! reading stays the reference: a syntax error (for serde_yaml's words and place), anchors and
//! aliases, tags, keys that are not scalars, several documents, an empty stream. Any plain
//! scalar that might be a number is given to serde_yaml alone, so numbers are read exactly as
//! it reads them (`the_document_is_what_serde_yaml_reads`, a property test, holds the two
//! readings together). Reading once took a 10,000-target file's load from two parses to one
//! (docs/performance.md).

use std::sync::mpsc;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use super::position::{Duplicate, MAX_NESTING, Position, PositionMap, escape};

/// What one reading of a text found.
#[derive(Debug)]
pub struct Reading {
    /// The document, or `None` when it is serde_yaml's to read (see the module's header).
    pub document: Option<Value>,
    /// Keys written twice: pointer, first and second place.
    pub twice: Vec<Duplicate>,
}

/// An open collection and what it holds so far. Where a child sits in it (its key, its
/// index) is what it holds while the child is open: pointers are made from the stack only
/// when a key is found written twice.
enum Open {
    Map {
        map: Map<String, Value>,
        /// The key whose value comes next (or is being read).
        key: Option<String>,
    },
    Seq {
        items: Vec<Value>,
    },
}

/// Why the reading stopped before the end.
enum Stop {
    /// Nested deeper than [`MAX_NESTING`], from here.
    TooDeep(Position),
    /// Something serde_yaml is to read.
    Elsewhere,
}

fn position(mark: Marker) -> Position {
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

/// From this many bytes on, the text is parsed on a thread of its own while this one builds
/// the document from its events (each half of the work about as long as the other).
const BESIDE_FROM: usize = 128 * 1024;
/// Events handed over at a time (64 KiB of them: below the allocator's mmap threshold, see
/// `platform::tune_memory`), and chunks under way at most.
const CHUNK: usize = 64 * 1024 / std::mem::size_of::<Next>();
const CHUNKS_AHEAD: usize = 8;

/// The parser's next event, or why it stopped.
type Next = Result<(Event, Marker), ScanError>;

/// Reads `text` (see the module's header); `Err`: collections nest deeper than
/// [`MAX_NESTING`] from that place, and nothing more was read.
pub fn read(text: &str) -> Result<Reading, Position> {
    read_with(text, text.len() >= BESIDE_FROM, None)
}

/// What is done with each item of the top-level `targets` list as soon as it is read
/// (config/stream.rs): the item is given to it, with the top level read so far, and a null
/// kept in its place, so that no whole document is built. `false` stops the reading: the
/// document is then `None`.
pub type TargetHook<'h> = &'h mut dyn FnMut(Value, &Map<String, Value>) -> bool;

/// [`read`], each target given to `hook` as it is read.
pub fn read_apart(text: &str, hook: TargetHook<'_>) -> Result<Reading, Position> {
    read_with(text, text.len() >= BESIDE_FROM, Some(hook))
}

/// [`read`], parsing on another thread (`beside`) or on this one.
fn read_with(text: &str, beside: bool, hook: Option<TargetHook<'_>>) -> Result<Reading, Position> {
    let mut reader = Reader {
        hook,
        ..Reader::default()
    };
    let stopped = if beside {
        read_beside(text, &mut reader)
    } else {
        read_here(text, &mut reader)
    };
    let mut twice = std::mem::take(&mut reader.twice);
    if !twice.is_empty() {
        // Where each key was first written: only looked for when one was written twice.
        let places = PositionMap::build(text);
        for (pointer, first, _) in &mut twice {
            if let Some(at) = places.find(pointer) {
                *first = at;
            }
        }
    }
    let document = match stopped {
        Ok(()) => reader.root,
        Err(Stop::TooDeep(at)) => return Err(at),
        Err(Stop::Elsewhere) => None,
    };
    Ok(Reading { document, twice })
}

/// `reader` run on the events of `text` parsed on this thread.
fn read_here(text: &str, reader: &mut Reader) -> Result<(), Stop> {
    let mut parser = Parser::new_from_str(text);
    reader.run(|| Some(parser.next_token()))
}

/// `reader` run on the events of `text` parsed on another thread, in chunks. When the reader
/// stops early, the parser stops at its next chunk (its channel is gone).
fn read_beside(text: &str, reader: &mut Reader) -> Result<(), Stop> {
    std::thread::scope(|scope| {
        let (chunks, events) = mpsc::sync_channel::<Vec<Next>>(CHUNKS_AHEAD);
        let parsing = std::thread::Builder::new()
            .name("protector-yaml".into())
            .spawn_scoped(scope, move || {
                let mut parser = Parser::new_from_str(text);
                loop {
                    let mut chunk = Vec::with_capacity(CHUNK);
                    let mut end = false;
                    while !end && chunk.len() < CHUNK {
                        let next = parser.next_token();
                        end = matches!(next, Err(_) | Ok((Event::StreamEnd, _)));
                        chunk.push(next);
                    }
                    if chunks.send(chunk).is_err() || end {
                        return;
                    }
                }
            });
        if parsing.is_err() {
            // No thread to be had: parsed here.
            return read_here(text, reader);
        }
        let mut chunk = Vec::new().into_iter();
        reader.run(|| {
            chunk.next().or_else(|| {
                chunk = events.recv().ok()?.into_iter();
                chunk.next()
            })
        })
    })
}

#[derive(Default)]
struct Reader<'h> {
    /// Given each target as it is read, when set: see [`TargetHook`].
    hook: Option<TargetHook<'h>>,
    stack: Vec<Open>,
    root: Option<Value>,
    documents: usize,
    /// Keys written twice, each with its second place (the first is found afterwards).
    twice: Vec<Duplicate>,
}

impl Reader<'_> {
    /// Reads the events `next` gives (`None`: no more, before the stream's end).
    fn run(&mut self, mut next: impl FnMut() -> Option<Next>) -> Result<(), Stop> {
        loop {
            let (event, mark) = match next().ok_or(Stop::Elsewhere)? {
                Ok(next) => next,
                // The scanner's own bound on flow collections (`[[[`), met before their events.
                Err(e) if e.info().contains("recursion limit") => {
                    return Err(Stop::TooDeep(position(*e.marker())));
                }
                Err(_) => return Err(Stop::Elsewhere),
            };
            match event {
                Event::StreamEnd => {
                    return if self.root.is_some() && self.documents == 1 {
                        Ok(())
                    } else {
                        Err(Stop::Elsewhere)
                    };
                }
                Event::DocumentStart => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(Stop::Elsewhere);
                    }
                }
                Event::Scalar(value, style, anchor, tag) => {
                    if anchor != 0 || tag.is_some() {
                        return Err(Stop::Elsewhere);
                    }
                    self.scalar(value, style, mark)?;
                }
                Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                    if anchor != 0 || tag.is_some() {
                        return Err(Stop::Elsewhere);
                    }
                    // A collection as a mapping's key is serde_yaml's.
                    if let Some(Open::Map { key: None, .. }) = self.stack.last() {
                        return Err(Stop::Elsewhere);
                    }
                    self.stack
                        .push(if matches!(event, Event::MappingStart(..)) {
                            Open::Map {
                                map: Map::new(),
                                key: None,
                            }
                        } else {
                            Open::Seq { items: Vec::new() }
                        });
                    if self.stack.len() > MAX_NESTING {
                        return Err(Stop::TooDeep(position(mark)));
                    }
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let value = match self.stack.pop() {
                        Some(Open::Map { map, .. }) => Value::Object(map),
                        Some(Open::Seq { items, .. }) => Value::Array(items),
                        None => return Err(Stop::Elsewhere),
                    };
                    self.place(value)?;
                }
                Event::Alias(_) => return Err(Stop::Elsewhere),
                _ => {}
            }
        }
    }

    /// The JSON pointer of the node being read in the innermost open collection, whose key
    /// is `key`: each open collection's key or index of the child being read in it.
    fn pointer(&self, key: &str) -> String {
        let mut pointer = String::new();
        for open in &self.stack[..self.stack.len().saturating_sub(1)] {
            pointer.push('/');
            match open {
                Open::Map { key, .. } => pointer.push_str(&escape(key.as_deref().unwrap_or("?"))),
                Open::Seq { items } => pointer.push_str(&items.len().to_string()),
            }
        }
        pointer.push('/');
        pointer.push_str(&escape(key));
        pointer
    }

    fn scalar(&mut self, text: String, style: TScalarStyle, mark: Marker) -> Result<(), Stop> {
        if let Some(Open::Map { map, key, .. }) = self.stack.last_mut()
            && key.is_none()
        {
            // A key: kept as written, whatever its style (as serde_yaml gives a key).
            if style == TScalarStyle::Plain && text.starts_with([':', '?']) {
                return Err(Stop::Elsewhere);
            }
            if map.contains_key(&text) {
                let pointer = self.pointer(&text);
                let at = position(mark);
                self.twice.push((pointer, at, at));
            }
            if let Some(Open::Map { key, .. }) = self.stack.last_mut() {
                *key = Some(text);
            }
            return Ok(());
        }
        // Plain scalars that begin with `:` or `?` (an indicator) are read by YAML 1.2
        // parsers such as yaml-rust2 and refused by serde_yaml's: its word stands.
        if style == TScalarStyle::Plain && text.starts_with([':', '?']) {
            return Err(Stop::Elsewhere);
        }
        let value = if style == TScalarStyle::Plain {
            plain(text)?
        } else {
            Value::String(text)
        };
        self.place(value)
    }

    /// A complete node: into the open collection, or the document; a target to the hook.
    fn place(&mut self, mut value: Value) -> Result<(), Stop> {
        if let Some(hook) = &mut self.hook
            && let [
                Open::Map {
                    key: Some(key),
                    map,
                },
                Open::Seq { .. },
            ] = self.stack.as_slice()
            && key == "targets"
            && !hook(std::mem::take(&mut value), map)
        {
            return Err(Stop::Elsewhere);
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Open::Seq { items, .. }) => items.push(value),
            Some(Open::Map { map, key, .. }) => {
                if let Some(k) = key.take() {
                    // Written twice: the last stays, as serde_yaml keeps it.
                    map.insert(k, value);
                }
            }
        }
        Ok(())
    }
}

/// A plain scalar as YAML's core schema reads it: null, a boolean, a number, else a string.
/// What might be a number (it starts with a digit, a sign or a dot) is read by serde_yaml
/// alone, but for plain decimal integers and durations; what it cannot read alone (`...`, a
/// number out of JSON's range) makes the whole document serde_yaml's.
fn plain(text: String) -> Result<Value, Stop> {
    Ok(match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        t if t.len() <= 18
            && t.bytes().all(|b| b.is_ascii_digit())
            && (t == "0" || !t.starts_with('0')) =>
        {
            t.parse::<u64>().map_or(Value::String(text), Value::from)
        }
        // A duration (`300s`, `5m`, `10ms`): no number ends in a letter other than a hex
        // digit or the `n` of `.nan`. Read here, not by serde_yaml once per target.
        t if t.ends_with(|c: char| c.is_ascii_alphabetic() && !"abcdefABCDEFnN".contains(c)) => {
            Value::String(text)
        }
        t if t.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c)) => {
            match serde_yaml::from_str::<Value>(t) {
                Ok(number @ Value::Number(_)) => number,
                // `.inf` and `.nan`, which JSON cannot hold: serde_yaml makes them null. (Alone,
                // `---` is an empty document, null too; in a document it is a string.)
                Ok(Value::Null) if t.to_ascii_lowercase().ends_with(".inf") => Value::Null,
                Ok(Value::Null) if t.eq_ignore_ascii_case(".nan") => Value::Null,
                Ok(Value::String(_)) => Value::String(text),
                _ => return Err(Stop::Elsewhere),
            }
        }
        _ => Value::String(text),
    })
}

#[cfg(test)]
mod tests;
