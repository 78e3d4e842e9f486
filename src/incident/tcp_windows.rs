//! A process's TCP connections and their states (Windows): the system's TCP tables (IPv4 and
//! IPv6), which name each connection's process, read whole and bounded. The twin of
//! `tcp_linux.rs`; the states carry Linux's names, so a summary reads the same on both.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP6ROW_OWNER_PID, MIB_TCPROW_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};

use super::buffer_windows::{Buffer, read_at};
use super::snapshot::Connection;

/// Most bytes of one TCP table read (about 500,000 connections).
const MAX_TABLE: usize = 16 * 1024 * 1024;

/// The names of TCP states as Linux writes them, by Windows's numbers (`MIB_TCP_STATE`).
fn state_name(code: u32) -> &'static str {
    match code {
        1 => "CLOSE",
        2 => "LISTEN",
        3 => "SYN_SENT",
        4 => "SYN_RECV",
        5 => "ESTABLISHED",
        6 => "FIN_WAIT1",
        7 => "FIN_WAIT2",
        8 => "CLOSE_WAIT",
        9 => "CLOSING",
        10 => "LAST_ACK",
        11 => "TIME_WAIT",
        12 => "DELETE_TCB",
        _ => "UNKNOWN",
    }
}

/// A port as the tables hold it: in network order, in the low 16 bits.
fn port(dw: u32) -> u16 {
    u16::from_be(dw as u16)
}

/// The table of one address family (`AF_INET`, `AF_INET6`), read whole up to [`MAX_TABLE`]:
/// its rows' bytes.
fn table(family: u16) -> Option<(usize, Vec<u8>)> {
    const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
    let mut size = 0u32;
    for _ in 0..4 {
        let mut buf = Buffer::new(size as usize);
        let mut have = size;
        // SAFETY: the system writes at most `have` bytes into `buf`, which holds that many
        // (none while `have` is 0, when it only says the size).
        let error = unsafe {
            GetExtendedTcpTable(
                buf.as_mut_ptr().cast(),
                &mut have,
                0,
                u32::from(family),
                TCP_TABLE_OWNER_PID_ALL,
                0,
            )
        };
        match error {
            0 => {
                let bytes = buf.bytes(size as usize);
                let rows: u32 = read_at(bytes, 0)?;
                return Some((rows as usize, bytes.to_vec()));
            }
            ERROR_INSUFFICIENT_BUFFER if (have as usize) <= MAX_TABLE => size = have + 4096,
            _ => return None,
        }
    }
    None
}

/// The first `rows` rows of type `R` in a table's bytes (they follow the row count, 4-byte
/// aligned), those wholly inside, each read by `each` as its process and connection.
fn rows_of<R: Copy>(
    rows: usize,
    bytes: &[u8],
    each: impl Fn(R) -> (u32, Connection),
) -> Vec<(u32, Connection)> {
    (0..rows)
        .map_while(|k| read_at::<R>(bytes, 4 + k * size_of::<R>()))
        .map(each)
        .collect()
}

/// A connection between `local` and `remote` in the state numbered `state`.
fn connection(local: SocketAddr, remote: SocketAddr, state: u32) -> Connection {
    Connection {
        local,
        remote,
        state: state_name(state).into(),
    }
}

/// The rows of an IPv4 table.
fn v4_rows(rows: usize, bytes: &[u8]) -> Vec<(u32, Connection)> {
    let v4 = |addr: u32, p: u32| {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(addr.to_ne_bytes())), port(p))
    };
    rows_of(rows, bytes, |r: MIB_TCPROW_OWNER_PID| {
        let local = v4(r.dwLocalAddr, r.dwLocalPort);
        let remote = v4(r.dwRemoteAddr, r.dwRemotePort);
        (r.dwOwningPid, connection(local, remote, r.dwState))
    })
}

/// The rows of an IPv6 table.
fn v6_rows(rows: usize, bytes: &[u8]) -> Vec<(u32, Connection)> {
    let v6 = |addr: [u8; 16], p: u32| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(addr)), port(p));
    rows_of(rows, bytes, |r: MIB_TCP6ROW_OWNER_PID| {
        let local = v6(r.ucLocalAddr, r.dwLocalPort);
        let remote = v6(r.ucRemoteAddr, r.dwRemotePort);
        (r.dwOwningPid, connection(local, remote, r.dwState))
    })
}

/// Every TCP connection of the system (IPv4 and IPv6) with the process that owns it.
pub fn connections() -> Vec<(u32, Connection)> {
    let mut out = Vec::new();
    if let Some((rows, bytes)) = table(AF_INET) {
        out.extend(v4_rows(rows, &bytes));
    }
    if let Some((rows, bytes)) = table(AF_INET6) {
        out.extend(v6_rows(rows, &bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_rows_are_read_as_windows_writes_them() {
        // 10.0.0.9:40000 -> 10.0.0.5:4506, CLOSE_WAIT (8), owned by 812.
        let row = MIB_TCPROW_OWNER_PID {
            dwState: 8,
            dwLocalAddr: u32::from_ne_bytes([10, 0, 0, 9]),
            dwLocalPort: u32::from(40000u16.to_be()),
            dwRemoteAddr: u32::from_ne_bytes([10, 0, 0, 5]),
            dwRemotePort: u32::from(4506u16.to_be()),
            dwOwningPid: 812,
        };
        let mut bytes = 1u32.to_ne_bytes().to_vec();
        // SAFETY: the row is a plain C struct of u32s.
        bytes.extend_from_slice(unsafe {
            std::slice::from_raw_parts(
                (&raw const row).cast::<u8>(),
                size_of::<MIB_TCPROW_OWNER_PID>(),
            )
        });
        let rows = v4_rows(1, &bytes);
        assert_eq!(rows.len(), 1);
        let (pid, c) = &rows[0];
        assert_eq!(*pid, 812);
        assert_eq!(c.line(), "10.0.0.5:4506 CLOSE_WAIT (from 10.0.0.9:40000)");
        // A table that says more rows than it holds gives those it holds.
        assert_eq!(v4_rows(1000, &bytes).len(), 1);
    }
}
