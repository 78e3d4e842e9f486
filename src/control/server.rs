//! The control endpoint's server: a Unix socket or a named pipe (`platform::endpoint_*`),
//! one short-lived thread per connection, each reading one request (bounded in size and
//! time), handing it on through a callback and writing back the answers that come. It knows
//! nothing of the loop that acts on requests, which never waits for a client.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::{Reply, Request};

/// The control endpoint, while protector listens on it (removed when dropped, and its
/// accepting thread ended).
pub struct Listener {
    guard: crate::platform::EndpointGuard,
    closer: crate::platform::Closer,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::Relaxed);
        self.closer.close();
    }
}

impl Listener {
    /// Is its socket still at its path (not removed, not replaced)?
    pub fn in_place(&self) -> bool {
        self.guard.in_place()
    }
}

/// One of the [`super::MAX_CLIENTS`] places, given back when dropped.
struct Place(Arc<AtomicUsize>);

impl Place {
    fn take(busy: &Arc<AtomicUsize>) -> Place {
        busy.fetch_add(1, Ordering::Relaxed);
        Place(busy.clone())
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Hands a request, and where its answers go, to whoever acts on it; false when no one will
/// any more (protector is shutting down).
pub type Deliver = Box<dyn Fn(Request, mpsc::Sender<Reply>) -> bool + Send + Sync>;

/// Listens at `path` (the caller holds the instance lock): each request goes to `deliver`,
/// each connection on a thread of its own.
pub fn listen(path: &std::path::Path, deliver: Deliver) -> std::io::Result<Listener> {
    let deliver = Arc::new(deliver);
    let (endpoint, guard) = crate::platform::bind_endpoint(path)?;
    let closer = endpoint.closer();
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ended = closed.clone();
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            loop {
                let Ok(mut conn) = endpoint.accept() else {
                    if ended.load(Ordering::Relaxed) {
                        return;
                    }
                    // A client that went away at once.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if busy.load(Ordering::Relaxed) >= super::MAX_CLIENTS {
                    answer(&mut conn, &super::Response::busy());
                    continue;
                }
                // Counted until the connection's thread ends however it ends (the guard goes
                // with the closure if the thread cannot even be made).
                let place = Place::take(&busy);
                let deliver = deliver.clone();
                let _ = std::thread::Builder::new()
                    .name("control-client".into())
                    .spawn(move || {
                        let _place = place;
                        serve(conn, &deliver);
                    });
            }
        })?;
    Ok(Listener {
        guard,
        closer,
        closed,
    })
}

/// One connection: the peer is checked, one request read (bounded in size and time), handed
/// on, and its answer written back.
fn serve(mut conn: crate::platform::Connection, deliver: &Deliver) {
    if let Err(who) = conn.check_peer() {
        tracing::warn!(event = "control_refused", peer = %who, "control request from another user refused");
        return answer(
            &mut conn,
            &super::Response::error(
                "refused: only root or the user protector runs as may control it",
            ),
        );
    }
    let request = match conn.read_line(super::MAX_REQUEST, super::READ_TIMEOUT) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Err(format!(
                "no request within {} s",
                super::READ_TIMEOUT.as_secs()
            ))
        }
        Err(e) => Err(format!("cannot read the request: {e}")),
        Ok(line) if line.len() > super::MAX_REQUEST => Err(format!(
            "request too large: at most {} bytes",
            super::MAX_REQUEST
        )),
        Ok(line) => serde_json::from_slice::<Request>(&line)
            .map_err(|e| format!("malformed request: {e}"))
            .and_then(|r| {
                if r.protocol == super::PROTOCOL {
                    Ok(r)
                } else {
                    Err(format!(
                        "protocol version {} is not spoken here (this protector speaks {})",
                        r.protocol,
                        super::PROTOCOL
                    ))
                }
            }),
    };
    let response = match request {
        Err(e) => super::Response::error(e),
        Ok(req) => {
            let (reply, replies) = mpsc::channel();
            if !deliver(req, reply) {
                super::Response::error("protector is shutting down")
            } else {
                super::collect(replies)
            }
        }
    };
    answer(&mut conn, &response);
}

fn answer(conn: &mut crate::platform::Connection, response: &super::Response) {
    let mut line = serde_json::to_string(response).expect("a response serializes");
    line.push('\n');
    let _ = conn.write_all(line.as_bytes(), super::READ_TIMEOUT);
}
