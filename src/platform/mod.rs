//! What differs between operating systems, behind one small interface: how a shell command
//! line is run, how a command's whole process tree is contained (so it can be killed), and
//! what identifies a file. `unix.rs` and `windows.rs` implement the same functions.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
