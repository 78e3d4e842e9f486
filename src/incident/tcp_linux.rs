//! A process's TCP connections and their states (Linux): the sockets among its descriptors,
//! found in its network namespace's `/proc/PID/net/tcp` and `tcp6`. A minion whose
//! connection to its master is half open (`CLOSE_WAIT`: the master closed, the minion never
//! read it) is the classic hang. Reads are bounded; what cannot be read is left out.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::snapshot::{Connection, MAX_CONNECTIONS};

/// Most bytes read of one connection table (about 25,000 connections).
const MAX_TABLE: u64 = 4 * 1024 * 1024;

/// The kernel's names of TCP states, by their number in the tables.
fn state_name(code: u8) -> &'static str {
    match code {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECV",
        0x04 => "FIN_WAIT1",
        0x05 => "FIN_WAIT2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSE",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// An address as the tables write it: the address's bytes as 32-bit words in the machine's
/// order, in hex, then `:` and the port in hex.
fn address(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    for word in ip.as_bytes().chunks(8) {
        let word = u32::from_str_radix(std::str::from_utf8(word).ok()?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// One line of a table: its socket's inode and the connection.
fn row(line: &str) -> Option<(u64, Connection)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((
        inode,
        Connection {
            local: address(fields.get(1)?)?,
            remote: address(fields.get(2)?)?,
            state: state_name(state).to_string(),
        },
    ))
}

/// The socket inodes among process `pid`'s descriptors.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .take(100_000)
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// The network namespace of process `pid`, as the kernel names it (`net:[4026531840]`);
/// unreadable, one of its own.
fn namespace(pid: u32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|_| format!("pid {pid}").into())
}

/// The TCP connections of each of `pids` (IPv4 and IPv6; at most [`MAX_CONNECTIONS`] each), in
/// order. The tables are read once per network
/// namespace (a service's processes share one; each table may be megabytes).
pub fn of_processes(pids: &[u32]) -> Vec<Vec<Connection>> {
    let inodes: Vec<Vec<u64>> = pids
        .iter()
        .map(|&pid| {
            let mut own = socket_inodes(pid);
            own.sort_unstable();
            own
        })
        .collect();
    let mut found: Vec<Vec<Connection>> = vec![Vec::new(); pids.len()];
    let mut namespaces_read: Vec<std::path::PathBuf> = Vec::new();
    for (at, &pid) in pids.iter().enumerate() {
        if inodes[at].is_empty() {
            continue;
        }
        let namespace = namespace(pid);
        if namespaces_read.contains(&namespace) {
            continue;
        }
        namespaces_read.push(namespace.clone());
        // Every process of that namespace gets its own sockets' rows.
        let sharing: Vec<usize> = (at..pids.len())
            .filter(|&k| !inodes[k].is_empty() && self::namespace(pids[k]) == namespace)
            .collect();
        for table in ["tcp", "tcp6"] {
            let path = std::path::PathBuf::from(format!("/proc/{pid}/net/{table}"));
            let Ok(file) = crate::fsutil::open_to_read(&path) else {
                continue;
            };
            let lines = BufReader::new(file.take(MAX_TABLE)).lines().skip(1);
            for line in lines.map_while(Result::ok) {
                let Some((inode, connection)) = row(&line) else {
                    continue;
                };
                for &k in &sharing {
                    if inodes[k].binary_search(&inode).is_ok() && found[k].len() < MAX_CONNECTIONS {
                        found[k].push(connection.clone());
                    }
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_are_read_as_the_kernel_writes_them() {
        // 127.0.0.1:8080 -> 127.0.0.1:4506, CLOSE_WAIT, inode 12345 (a little-endian machine's
        // words; on a big-endian one the kernel writes them the other way round, as read).
        let word = |ip: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(ip));
        let line = format!(
            "   0: {}:1F90 {}:119A 08 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 20 4 30 10 -1",
            word([127, 0, 0, 1]),
            word([127, 0, 0, 1])
        );
        let (inode, c) = row(&line).unwrap();
        assert_eq!(inode, 12345);
        assert_eq!(c.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.remote, "127.0.0.1:4506".parse().unwrap());
        assert_eq!(c.state, "CLOSE_WAIT");
        assert_eq!(c.line(), "127.0.0.1:4506 CLOSE_WAIT (from 127.0.0.1:8080)");
        let six: String = [[0u8, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
            .into_iter()
            .map(word)
            .collect();
        assert_eq!(
            address(&format!("{six}:0050")),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(row("garbage"), None);
        assert_eq!(address("zz:1"), None);
    }

    #[test]
    fn a_half_open_connection_of_a_process_is_seen_in_close_wait() {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = listener.local_addr().unwrap();
        let client = TcpStream::connect(to).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        // The far end closes; the client never reads it: half open.
        drop(accepted);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let mine = of_processes(&[std::process::id()]).remove(0);
            let seen = mine
                .iter()
                .find(|c| c.remote == to && c.local == client.local_addr().unwrap());
            if seen.is_some_and(|c| c.state == "CLOSE_WAIT") {
                break;
            }
            assert!(std::time::Instant::now() < end, "{mine:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let listening = of_processes(&[std::process::id()]).remove(0);
        assert!(
            listening
                .iter()
                .any(|c| c.state == "LISTEN" && c.local == to),
            "{listening:?}"
        );
    }
}
