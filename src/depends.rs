//! Checking a target's dependencies (`depends_on`) for real: TCP endpoints and a command, all
//! tried at the same time and the whole bounded by `check_timeout`, name resolution included.
//!
//! Each endpoint is resolved and connected to on a thread of its own, which the check waits
//! for at most until its deadline: a name server that never answers holds up nothing. Such a
//! thread is left behind (never joined); while one is still resolving a name, later checks of
//! that name say so at once instead of starting another, so stuck threads stay one per name.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::config::{Depends, Endpoint};

/// How a dependency check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub up: bool,
    /// What was tried and what each answered: for the log and `status`.
    pub detail: String,
}

/// Resolves a name to addresses (the system's resolver in production).
pub type Resolve = fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>;

fn system_resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Checks `deps`, with `env` for its command; returns within about `check_timeout`.
pub fn check(deps: &Depends, env: &[(&'static str, String)]) -> Verdict {
    check_with(deps, env, system_resolve)
}

/// [`check`] with another resolver (tests: one that never answers).
pub fn check_with(deps: &Depends, env: &[(&'static str, String)], resolve: Resolve) -> Verdict {
    let deadline = crate::schedule::later(Instant::now(), deps.check_timeout);
    let (tx, rx) = mpsc::channel();
    let mut asked = 0;
    for (i, endpoint) in deps.tcp.iter().enumerate() {
        let theirs = tx.clone();
        let endpoint = endpoint.clone();
        let made = std::thread::Builder::new()
            .name("protector-depends".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = theirs.send((i, reach(&endpoint, deadline, resolve)));
            });
        if let Err(e) = made {
            let _ = tx.send((i, Err(format!("cannot start a thread to check it: {e}"))));
        }
        asked += 1;
    }
    drop(tx);
    // The command runs meanwhile, on this thread, killed at the same deadline.
    let command = deps.command.as_ref().map(|line| {
        let left = deadline.saturating_duration_since(Instant::now());
        let o = crate::command::run(line, env, left.max(Duration::from_millis(1)), |_| {});
        match o.failure() {
            None => Ok(()),
            Some(why) => Err(why),
        }
    });
    let mut answers: Vec<Option<Result<String, String>>> = vec![None; deps.tcp.len()];
    let mut tcp_up = None;
    while asked > 0 && tcp_up.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, answer)) => {
                asked -= 1;
                if let Ok(how) = &answer {
                    tcp_up = Some(format!("{} {how}", deps.tcp[i]));
                }
                answers[i] = Some(answer);
            }
            Err(_) => break,
        }
    }
    let mut parts = Vec::new();
    let mut up = true;
    if !deps.tcp.is_empty() {
        match tcp_up {
            Some(how) => parts.push(how),
            None => {
                up = false;
                for (endpoint, answer) in deps.tcp.iter().zip(answers) {
                    let why = match answer {
                        Some(Err(why)) => why,
                        _ => format!("no answer within {}", secs(deps.check_timeout)),
                    };
                    parts.push(format!("{endpoint}: {why}"));
                }
            }
        }
    }
    match command {
        Some(Ok(())) => parts.push("command exited 0".into()),
        Some(Err(why)) => {
            up = false;
            parts.push(format!("command {why}"));
        }
        None => {}
    }
    Verdict {
        up,
        detail: crate::text::clean(&parts.join("; ")).into_owned(),
    }
}

fn secs(d: Duration) -> String {
    crate::config::duration::format(d)
}

/// Names being resolved by a thread of an earlier check that has not returned.
static RESOLVING: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Resolves and connects to `endpoint` before `deadline`: `Ok` says where it connected.
fn reach(endpoint: &Endpoint, deadline: Instant, resolve: Resolve) -> Result<String, String> {
    let literal = endpoint.host.parse::<std::net::IpAddr>().ok();
    let addrs = match literal {
        Some(ip) => vec![SocketAddr::new(ip, endpoint.port)],
        None => resolve_once(&endpoint.host, endpoint.port, resolve)?,
    };
    // A name's addresses are said; an address written as such is said once, by the caller.
    let at = |addr: &SocketAddr| {
        if literal.is_none() {
            format!("{addr}: ")
        } else {
            String::new()
        }
    };
    let mut last = "the name has no address".to_string();
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no answer in time (last: {last})"));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(_) => return Ok(format!("accepted a connection ({addr})")),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!("{}no answer in time", at(&addr));
            }
            Err(e) => last = format!("{}{e}", at(&addr)),
        }
    }
    Err(last)
}

/// Resolves `host` unless a thread of an earlier check is still resolving it.
fn resolve_once(host: &str, port: u16, resolve: Resolve) -> Result<Vec<SocketAddr>, String> {
    {
        let mut set = RESOLVING.lock().unwrap_or_else(|p| p.into_inner());
        let set = set.get_or_insert_with(HashSet::new);
        if !set.insert(host.to_string()) {
            return Err("name resolution still under way from an earlier check".into());
        }
    }
    let found = resolve(host, port);
    let mut set = RESOLVING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(set) = set.as_mut() {
        set.remove(host);
    }
    found.map_err(|e| format!("cannot resolve the name: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommandLine;
    use std::net::TcpListener;

    fn deps(tcp: &[&str], command: Option<&str>, timeout_ms: u64) -> Depends {
        Depends {
            tcp: tcp.iter().map(|t| Endpoint::parse(t).unwrap()).collect(),
            command: command.map(|c| CommandLine::Exec(shell_words::split(c).unwrap())),
            check_timeout: Duration::from_millis(timeout_ms),
            recheck: Duration::from_secs(30),
        }
    }

    /// A port on loopback where nothing listens (bound, then closed).
    fn closed_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn one_endpoint_that_answers_is_enough() {
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let dead = closed_port();
        let v = check(
            &deps(
                &[&format!("127.0.0.1:{dead}"), &format!("localhost:{port}")],
                None,
                5000,
            ),
            &[],
        );
        assert!(v.up, "{v:?}");
        assert!(
            v.detail.contains(&format!("localhost:{port} accepted")),
            "{v:?}"
        );
    }

    #[test]
    fn ipv6_endpoints_are_reached_in_brackets() {
        let Ok(open) = TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here; skipped");
            return;
        };
        let port = open.local_addr().unwrap().port();
        let v = check(&deps(&[&format!("[::1]:{port}")], None, 5000), &[]);
        assert!(v.up, "{v:?}");
    }

    #[test]
    fn every_endpoint_refused_is_down_and_says_why() {
        let (a, b) = (closed_port(), closed_port());
        let v = check(
            &deps(
                &[&format!("127.0.0.1:{a}"), &format!("127.0.0.1:{b}")],
                None,
                5000,
            ),
            &[],
        );
        assert!(!v.up);
        assert!(v.detail.contains(&format!("127.0.0.1:{a}: ")), "{v:?}");
        assert!(v.detail.contains(&format!("127.0.0.1:{b}: ")), "{v:?}");
        assert!(v.detail.to_lowercase().contains("refused"), "{v:?}");
    }

    #[test]
    fn a_resolver_that_never_answers_holds_the_check_only_to_its_bound() {
        fn never(_: &str, _: u16) -> std::io::Result<Vec<SocketAddr>> {
            std::thread::sleep(Duration::from_secs(3600));
            unreachable!()
        }
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = open.local_addr().unwrap().port();
        let started = Instant::now();
        let hung = deps(&["hangs.invalid:4506"], None, 300);
        let v = check_with(&hung, &[], never);
        assert!(!v.up);
        assert!(
            v.detail.contains("hangs.invalid:4506: no answer within"),
            "{v:?}"
        );
        // Generous for a loaded machine; without the bound it would take an hour.
        assert!(started.elapsed() < Duration::from_secs(20));
        // The same name again: no second stuck thread, an answer at once.
        let v = check_with(&hung, &[], never);
        assert!(v.detail.contains("still under way"), "{v:?}");
        // A second endpoint that answers is still enough.
        let both = deps(
            &["hangs.invalid:4506", &format!("127.0.0.1:{port}")],
            None,
            300,
        );
        assert!(check_with(&both, &[], never).up);
    }

    #[cfg(unix)]
    #[test]
    fn a_command_decides_too_and_both_must_be_up() {
        let open = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = format!("127.0.0.1:{}", open.local_addr().unwrap().port());
        assert!(check(&deps(&[], Some("true"), 5000), &[]).up);
        let v = check(&deps(&[&up], Some("false"), 5000), &[]);
        assert!(!v.up);
        assert!(
            v.detail.contains("command ended with exit status: 1"),
            "{v:?}"
        );
        let started = Instant::now();
        let v = check(&deps(&[], Some("sleep 60"), 300), &[]);
        assert!(!v.up);
        assert!(v.detail.contains("timed out"), "{v:?}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
