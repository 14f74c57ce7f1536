//! Unix sockets that serve clients, each in a thread of its own, until told to stop:
//! `vdi serve`'s export and a datapath's. A socket is bound only where nothing is, is
//! root's alone (0600), and goes when dropped.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{Error, Result};
use crate::host::nbd_server::Served;

/// The longest an idle server sleeps before it looks for a stop again.
const IDLE_WAKE_MS: u16 = 1000;

pub struct Socket {
    listener: UnixListener,
    pub path: PathBuf,
}

impl Socket {
    pub fn bind(path: &Path) -> Result<Socket> {
        if path.symlink_metadata().is_ok() {
            return Err(Error::FileExists(path.display().to_string()));
        }
        let listener =
            UnixListener::bind(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        let socket = Socket {
            listener,
            path: path.to_path_buf(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        socket
            .listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(path.display().to_string(), e))?;
        Ok(socket)
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Ours: made by bind above.
        std::fs::remove_file(&self.path).ok();
    }
}

/// The connections open now, so that a stop can end them (a shutdown wakes a session
/// blocked reading its client).
#[derive(Default)]
pub struct Clients {
    next: AtomicU64,
    open: Mutex<HashMap<u64, UnixStream>>,
}

/// A connection in `Clients` while it lives.
pub struct Registered<'a> {
    clients: &'a Clients,
    id: u64,
}

impl Clients {
    pub fn register(&self, stream: &UnixStream) -> Result<Registered<'_>> {
        let copy = stream
            .try_clone()
            .map_err(|e| Error::io("a client's socket", e))?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().expect("not poisoned").insert(id, copy);
        Ok(Registered { clients: self, id })
    }

    fn end_all(&self) {
        for c in self.open.lock().expect("not poisoned").values() {
            c.shutdown(std::net::Shutdown::Both).ok();
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.clients
            .open
            .lock()
            .expect("not poisoned")
            .remove(&self.id);
    }
}

/// What a session is handed: which socket it came to (its index), the stream, and the
/// registry to put a stream it is passed into.
pub type Session<'a> = dyn Fn(usize, UnixStream, &Clients) -> Served + Sync + 'a;

/// Accepts clients on every socket, each served by `session` in its own thread, until
/// `stop()`; then ends every connection and waits for its thread. Returns the
/// connections and what they served, added up.
pub fn serve_until(
    sockets: &[&Socket],
    session: &Session,
    stop: &dyn Fn() -> bool,
) -> Result<(u64, Served)> {
    let clients = Clients::default();
    let mut connections = 0u64;
    let totals = std::thread::scope(|scope| -> Result<Served> {
        let mut sessions: Vec<std::thread::ScopedJoinHandle<Served>> = Vec::new();
        let mut totals = Served::default();
        while !stop() {
            let mut idle = true;
            for (i, socket) in sockets.iter().enumerate() {
                match socket.listener.accept() {
                    Ok((stream, _)) => {
                        idle = false;
                        connections += 1;
                        stream
                            .set_nonblocking(false)
                            .map_err(|e| Error::io("a client's socket", e))?;
                        let clients = &clients;
                        let registered = clients.register(&stream)?;
                        sessions.push(scope.spawn(move || {
                            let _registered = registered;
                            // A client that breaks the protocol or hangs up ends its own
                            // session, never the export.
                            session(i, stream, clients)
                        }));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(Error::io(socket.path.display().to_string(), e)),
                }
            }
            // A long-lived server sees many connections: finished ones are added up now.
            let (done, running): (Vec<_>, Vec<_>) =
                sessions.into_iter().partition(|s| s.is_finished());
            sessions = running;
            done.into_iter()
                .for_each(|s| add(&mut totals, s.join().unwrap_or_default()));
            if idle {
                wait_for_clients(sockets);
            }
        }
        clients.end_all();
        sessions
            .into_iter()
            .for_each(|s| add(&mut totals, s.join().unwrap_or_default()));
        Ok(totals)
    })?;
    Ok((connections, totals))
}

/// Sleeps until a client knocks on one of `sockets`, a signal arrives (a stop is asked
/// for by SIGTERM), or a second passes: an idle export (one per attached volume) wakes
/// once a second, not twenty times.
fn wait_for_clients(sockets: &[&Socket]) {
    let mut fds: Vec<PollFd> = sockets
        .iter()
        .map(|s| PollFd::new(s.listener.as_fd(), PollFlags::POLLIN))
        .collect();
    // EINTR (the signal) and errors alike end the wait; the loop looks again.
    let _ = poll(&mut fds, PollTimeout::from(IDLE_WAKE_MS));
}

fn add(totals: &mut Served, s: Served) {
    totals.requests += s.requests;
    totals.bytes_read += s.bytes_read;
    totals.bytes_written += s.bytes_written;
}
