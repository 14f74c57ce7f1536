//! `vdi serve`: a VDI (or snapshot) as a read-only NBD export on a unix socket of root's,
//! until interrupted: what a backup tool or `qemu-img convert nbd+unix://...` reads. The
//! VDI is read as `export` reads it (a read-only device, or a temporary snapshot while it
//! is attached read-write), and the NBD server is thinsr's own (`host/nbd_server.rs`).
//! Clients may come one after another or together; each is served in its own thread.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cancel;
use crate::engine::context::Ctx;
use crate::engine::meta::{VdiKind, VdiMeta};
use crate::error::{finally, Error, Result};
use crate::host::nbd_server::{self, Export};
use crate::host::rundir;
use crate::units::Bytes;

/// Where `vdi serve` puts its sockets unless told otherwise: root's alone.
const SOCKET_DIR: &str = "/run/thinsr/serve";

/// What a client needs to read the export; given once the socket accepts.
#[derive(Debug, Serialize)]
pub struct Serving {
    pub vdi: String,
    pub uuid: String,
    pub socket: PathBuf,
    /// The export as qemu names it: `nbd+unix:///NAME?socket=PATH`.
    pub uri: String,
    pub size: Bytes,
    pub read_only: bool,
    /// True when the VDI was attached read-write and a temporary snapshot is served.
    pub from_snapshot: bool,
}

/// What the export served before it was stopped.
#[derive(Debug, Serialize)]
pub struct Served {
    pub vdi: String,
    pub connections: u64,
    pub bytes_read: Bytes,
    /// Data clients wrote (WRITE payloads; zeros asked for by WRITE_ZEROES not counted).
    pub bytes_written: Bytes,
    pub seconds: f64,
}

/// The socket: bound only where nothing is, root's alone, removed when dropped.
struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

impl Socket {
    fn bind(path: &Path) -> Result<Socket> {
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
        // Ours: made by bind above, in a directory of root's.
        std::fs::remove_file(&self.path).ok();
    }
}

impl Ctx {
    /// Serves VDI `key` until SIGINT or SIGTERM; `ready` is told where once clients can
    /// connect. `writable` serves a detached VDI read-write (attached for the while).
    pub fn vdi_serve(
        &self,
        key: &str,
        sr: Option<&str>,
        socket: Option<&Path>,
        writable: bool,
        ready: &mut dyn FnMut(&Serving),
    ) -> Result<Served> {
        let (sr_uuid, v) = self.readable_vdi(key, sr)?;
        if writable {
            let vol = self.vdi_show(&v.uuid, Some(&sr_uuid))?;
            if !v.read_write() {
                return Err(Error::VdiReadOnly(v.name.clone()));
            }
            if vol.attached {
                return Err(Error::VdiAttached {
                    vdi: v.name.clone(),
                    device: format!("{}: a writable export needs it detached", vol.path),
                });
            }
        }
        let path = match socket {
            Some(p) => p.to_path_buf(),
            None => {
                rundir::private_dir(Path::new(SOCKET_DIR))?;
                Path::new(SOCKET_DIR).join(format!("{}.sock", v.uuid))
            }
        };
        cancel::watch();
        let socket = Socket::bind(&path)?;
        let start = Instant::now();
        let mut serve = |device: &Path, size: u64, from_snapshot: bool| -> Result<(u64, Totals)> {
            let file = std::fs::File::options()
                .read(true)
                .write(writable)
                .open(device)
                .map_err(|e| Error::io(device.display().to_string(), e))?;
            let export = Export {
                name: &v.lv,
                file: &file,
                size,
                writable,
                unmap_block: if writable {
                    self.unmap_block(&v, &sr_uuid)?
                } else {
                    None
                },
            };
            ready(&Serving {
                vdi: v.name.clone(),
                uuid: v.uuid.to_string(),
                socket: path.clone(),
                uri: format!("nbd+unix:///{}?socket={}", v.lv, path.display()),
                size: Bytes(size),
                read_only: !writable,
                from_snapshot,
            });
            accept_until_cancelled(&socket, &export)
        };
        let served = if writable {
            let vol = self.vdi_attach(&v.uuid, Some(&sr_uuid), false)?;
            let served = serve(Path::new(&vol.path), vol.virtual_size.0, false);
            finally(served, "detaching the VDI", || {
                self.vdi_detach(&v.uuid, Some(&sr_uuid))
            })?
        } else {
            self.with_readable(&v, &sr_uuid, None, |src, snap| {
                serve(&src.path, src.size, snap)
            })?
            .0
        };
        drop(socket);
        Ok(Served {
            vdi: v.name.clone(),
            connections: served.0,
            bytes_read: Bytes(served.1.bytes_read),
            bytes_written: Bytes(served.1.bytes_written),
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

impl Ctx {
    /// The block size at which a discard of `v` reads back as zeros: a thin volume of
    /// thinsr's pool without an external origin (a template's clone reads the template
    /// where it has no block), once the pool's chunk size is known.
    fn unmap_block(&self, v: &VdiMeta, sr: &str) -> Result<Option<u64>> {
        if v.kind == VdiKind::Preallocated || v.origin.is_some() {
            return Ok(None);
        }
        let meta = Self::read_meta(&self.entry(Some(sr))?)?;
        Ok(meta.geometry.map(|g| g.chunk.0))
    }
}

/// What every session served, added up.
type Totals = nbd_server::Served;

/// Accepts clients, each in a thread, until a cancel is asked for; then ends every
/// session and waits for its thread. Returns the connections and what they served.
fn accept_until_cancelled(socket: &Socket, export: &Export) -> Result<(u64, Totals)> {
    let mut clients: Vec<UnixStream> = Vec::new();
    let mut connections = 0u64;
    let totals = std::thread::scope(|scope| -> Result<Totals> {
        let mut sessions = Vec::new();
        while !cancel::requested() {
            match socket.listener.accept() {
                Ok((stream, _)) => {
                    connections += 1;
                    stream
                        .set_nonblocking(false)
                        .map_err(|e| Error::io("an NBD client's socket", e))?;
                    clients.push(
                        stream
                            .try_clone()
                            .map_err(|e| Error::io("an NBD client's socket", e))?,
                    );
                    sessions.push(scope.spawn(move || {
                        let mut stream = stream;
                        // A client that breaks the protocol or hangs up ends its own
                        // session, never the export.
                        nbd_server::serve(&mut stream, export).unwrap_or_default()
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(Error::io(socket.path.display().to_string(), e)),
            }
        }
        for c in &clients {
            c.shutdown(std::net::Shutdown::Both).ok();
        }
        let mut totals = Totals::default();
        for s in sessions {
            let s = s.join().unwrap_or_default();
            totals.requests += s.requests;
            totals.bytes_read += s.bytes_read;
            totals.bytes_written += s.bytes_written;
        }
        Ok(totals)
    })?;
    Ok((connections, totals))
}
