//! The state file's layout (see [`Lines`]).

use std::io::Write;

/// The state file's layout: JSON with each of its own keys, and each target's record, on a
/// line of its own, nothing indented (`grep NAME` finds a target's whole record; a third
/// smaller than indented JSON, which was 40 MB at 100,000 targets).
#[derive(Default)]
pub(super) struct Lines {
    depth: usize,
}

impl Lines {
    /// Opens an object or a list.
    fn open<W: ?Sized + Write>(&mut self, w: &mut W, mark: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        w.write_all(mark)
    }

    /// Closes one, on a line of its own when that leaves the depth `own_line` (the file's
    /// end, the end of the targets).
    fn close<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        mark: &[u8],
        own_line: usize,
    ) -> std::io::Result<()> {
        self.depth -= 1;
        if self.depth == own_line {
            w.write_all(b"\n")?;
        }
        w.write_all(mark)
    }

    /// Before an item: a comma after the one before; a new line when it is the file's own
    /// key (depth 1) or a target (depth 2).
    fn item<W: ?Sized + Write>(
        &self,
        w: &mut W,
        first: bool,
        own_line: usize,
    ) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        if self.depth == own_line {
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}

impl serde_json::ser::Formatter for Lines {
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}", 0)
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]", 1)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first, 1)
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first, 2)
    }
}
