//! The control endpoint: how `protector pause|resume|restart|reset|reload` (or a script, or
//! the Salt module) asks the running daemon to act on targets.
//!
//! Protocol (version 1): the client connects, writes one request as a line of JSON, reads one
//! response line, and the connection ends. A request is at most [`MAX_REQUEST`] bytes and
//! must arrive within [`READ_TIMEOUT`]; otherwise the answer is an error and the connection is
//! closed, so a stuck or hostile client never holds up the daemon.
//!
//! ```text
//! {"protocol":1,"command":"pause","targets":["salt-minion"],"for_secs":1800,"reason":"upgrade"}
//! {"protocol":1,"ok":true,"targets":[{"name":"salt-minion","ok":true,"message":"paused for 30m00s: upgrade"}]}
//! ```
//!
//! `command` is `pause` (with `for_secs`, default 3600, and `reason`), `resume`, `restart`
//! (answered once the restarts end), `reset` or `reload` (answered with `message`);
//! `targets` names targets, or `"all": true` means every enabled one. An error is
//! `{"protocol":1,"ok":false,"error":"..."}`. At most [`MAX_CLIENTS`] connections are served
//! at once; one more is answered with the error [`BUSY`] at once, and may try again shortly
//! (`protector` itself does, for up to [`BUSY_PATIENCE`]).
//!
//! Transport: a Unix domain socket in protector's runtime directory named after the config
//! file (`/run/protector/protector-<hash>.sock` for root; mode 0600; the peer's user must be
//! root or the daemon's own); on Windows a named pipe `\\.\pipe\protector-<hash>` that only
//! SYSTEM, Administrators and protector's own account may open (local clients only).

pub mod server;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const PROTOCOL: u32 = 1;
/// The longest request line accepted, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client has to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A pause without `for_secs` lasts this long, so a forgotten pause ends by itself.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(3600);
/// The longest pause (a year): longer is a mistake, or `enabled: false`.
pub const MAX_PAUSE: Duration = Duration::from_secs(366 * 86400);
/// The longest reason kept, in characters.
pub const MAX_REASON: usize = 200;
/// Connections served at once; one more is told [`BUSY`].
pub const MAX_CLIENTS: usize = 8;
/// The error a client gets while every place for a connection is taken.
pub const BUSY: &str = "busy: too many requests at once; try again";
/// How long [`ask`] keeps trying while the daemon says it is busy: longer than a silent
/// client may hold a place ([`READ_TIMEOUT`]).
pub const BUSY_PATIENCE: Duration = Duration::from_secs(12);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Pause,
    Resume,
    Restart,
    Reset,
    Reload,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Restart => "restart",
            Verb::Reset => "reset",
            Verb::Reload => "reload",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub protocol: u32,
    pub command: Verb,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_secs: Option<f64>,
    /// A pause with no end of its own: it lasts until `resume` (instead of `for_secs`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub until_resumed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub protocol: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    pub name: String,
    pub ok: bool,
    pub message: String,
}

impl Response {
    pub fn error(e: impl Into<String>) -> Response {
        Response {
            protocol: PROTOCOL,
            ok: false,
            error: Some(e.into()),
            message: None,
            targets: Vec::new(),
        }
    }

    /// Every place for a connection is taken: the client may try again shortly.
    pub fn busy() -> Response {
        Response::error(BUSY)
    }

    pub fn is_busy(&self) -> bool {
        !self.ok && self.error.as_deref() == Some(BUSY)
    }
}

/// What the daemon's loop answers a request with, piece by piece (the connection's thread
/// puts the response together once the loop drops its end of the channel).
#[derive(Debug)]
pub enum Reply {
    /// The whole request is refused.
    Error(String),
    /// A restart of this target began; its result follows when it ends.
    Pending(String),
    Target(TargetResult),
    /// The outcome of a reload.
    Message {
        ok: bool,
        message: String,
    },
}

/// Puts the loop's replies together: every reply until the loop lets go of the channel.
pub fn collect(replies: impl IntoIterator<Item = Reply>) -> Response {
    let mut response = Response {
        protocol: PROTOCOL,
        ok: true,
        error: None,
        message: None,
        targets: Vec::new(),
    };
    let mut pending = Vec::new();
    for reply in replies {
        match reply {
            Reply::Error(e) => return Response::error(e),
            Reply::Pending(name) => pending.push(name),
            Reply::Target(t) => {
                pending.retain(|p| *p != t.name);
                response.ok &= t.ok;
                response.targets.push(t);
            }
            Reply::Message { ok, message } => {
                response.ok &= ok;
                response.message = Some(message);
            }
        }
    }
    for name in pending {
        response.ok = false;
        response.targets.push(TargetResult {
            name,
            ok: false,
            message: "protector stopped before the restart ended".into(),
        });
    }
    response
}

/// The control endpoint of the protector started on config file `config`, named after its
/// instance (`lock::instance_name`): `protector-<hash of the path>.sock` in protector's
/// runtime directory, or the named pipe `\\.\pipe\protector-<hash>` on Windows.
pub fn socket_for(config: &Path) -> PathBuf {
    let name = crate::lock::instance_name(config);
    #[cfg(windows)]
    {
        PathBuf::from(format!(r"\\.\pipe\{name}"))
    }
    #[cfg(not(windows))]
    {
        crate::lock::runtime_dir().join(format!("{name}.sock"))
    }
}

/// Where a client looks for the socket of `config`'s protector: its own runtime directory,
/// then (not being root) root's, so that it is told it may not rather than that none runs.
pub fn sockets_for(config: &Path) -> Vec<PathBuf> {
    let own = socket_for(config);
    #[cfg(not(windows))]
    if !crate::perms::is_root()
        && let Some(name) = own.file_name()
    {
        let root = crate::lock::root_runtime_dir().join(name);
        return vec![own, root];
    }
    vec![own]
}

/// Sends `req` to the protector listening at `socket` and waits for its answer (a restart is
/// answered when it ends); while protector says it is busy (every place taken, by clients
/// that may be silent for up to [`READ_TIMEOUT`]), asks again for up to [`BUSY_PATIENCE`].
/// The error says what an operator should know.
pub fn ask(socket: &Path, req: &Request) -> Result<Response, String> {
    let deadline = std::time::Instant::now() + BUSY_PATIENCE;
    loop {
        let response = ask_once(socket, req)?;
        if !response.is_busy() || std::time::Instant::now() >= deadline {
            return Ok(response);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`ask`], giving up after `within`: a protector that took the request but does not answer
/// (stopped, stuck) must not hold an operator's command, or a script, for ever.
pub fn ask_within(socket: &Path, req: &Request, within: Duration) -> Result<Response, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (socket, req) = (socket.to_path_buf(), req.clone());
    std::thread::Builder::new()
        .name("ask".into())
        .spawn(move || {
            let _ = tx.send(ask(&socket, &req));
        })
        .map_err(|e| format!("cannot ask protector: {e}"))?;
    rx.recv_timeout(within).unwrap_or_else(|_| {
        Err(format!(
            "protector did not answer within {}: it may be stopped or stuck; see its log and \
             `protector status`",
            crate::config::duration::format(within)
        ))
    })
}

fn ask_once(socket: &Path, req: &Request) -> Result<Response, String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut conn = crate::platform::connect_endpoint(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "no protector is running for this config (nothing listens at {})",
            socket.display()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "not allowed to use {}: only root (Administrators on Windows) or the user protector \
             runs as may control it",
            socket.display()
        ),
        _ => format!("cannot reach protector at {}: {e}", socket.display()),
    })?;
    let mut line = serde_json::to_string(req).expect("a request serializes");
    line.push('\n');
    // A refusal may come (and the connection close) before the request is written: its
    // answer is still there to read.
    let sent = conn.write_all(line.as_bytes());
    let mut answer = String::new();
    let read = BufReader::new(&mut conn)
        .take(16 << 20)
        .read_line(&mut answer);
    if answer.is_empty() {
        return Err(match (sent, read) {
            (Err(e), _) => format!("cannot send the request: {e}"),
            (_, Err(e)) => format!("no answer from protector: {e}"),
            _ => "protector closed the connection without an answer".into(),
        });
    }
    serde_json::from_str(&answer).map_err(|e| format!("unreadable answer from protector: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_and_the_default_lock_are_named_after_one_instance() {
        let config = Path::new("/etc/protector/protector.yaml");
        let name = crate::lock::instance_name(config);
        assert!(name.starts_with("protector-") && name.len() == "protector-".len() + 16);
        let lock = crate::lock::default_path(None, config);
        assert_eq!(
            lock.file_name().unwrap().to_string_lossy(),
            format!("{name}.lock")
        );
        let socket = socket_for(config);
        let socket = socket.to_string_lossy();
        assert!(
            socket.ends_with(&name) || socket.ends_with(&format!("{name}.sock")),
            "{socket}"
        );
        assert_ne!(
            name,
            crate::lock::instance_name(Path::new("/etc/protector/other.yaml"))
        );
    }

    #[test]
    fn requests_are_strict_and_responses_collect_pending_restarts() {
        let r: Request = serde_json::from_str(
            r#"{"protocol":1,"command":"pause","targets":["a"],"for_secs":60}"#,
        )
        .unwrap();
        assert_eq!(r.command, Verb::Pause);
        assert!(serde_json::from_str::<Request>(r#"{"protocol":1,"command":"explode"}"#).is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"protocol":1,"command":"reset","extra":1}"#)
                .is_err()
        );
        let resp = collect([
            Reply::Pending("a".into()),
            Reply::Pending("b".into()),
            Reply::Target(TargetResult {
                name: "a".into(),
                ok: true,
                message: "restarted".into(),
            }),
        ]);
        assert!(!resp.ok, "b never ended");
        assert_eq!(resp.targets.len(), 2);
        assert_eq!(resp.targets[1].name, "b");
    }
}
