//! `vdi serve`: a VDI (or snapshot) as a read-only NBD export on a unix socket of root's,
//! until interrupted: what a backup tool or `qemu-img convert nbd+unix://...` reads. The
//! VDI is read as `export` reads it (a read-only device, or a temporary snapshot while it
//! is attached read-write), and the NBD server is thinsr's own (`host/nbd_server.rs`).
//! Clients may come one after another or together; each is served in its own thread.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::cancel;
use crate::engine::context::Ctx;
use crate::error::{finally, Error, Result};
use crate::host::listener::{self, Clients, Socket};
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
        let mut serve =
            |device: &Path, size: u64, from_snapshot: bool| -> Result<(u64, nbd_server::Served)> {
                let file = std::fs::File::options()
                    .read(true)
                    .write(writable)
                    .open(device)
                    .map_err(|e| Error::io(device.display().to_string(), e))?;
                let direct = writable
                    .then(|| nbd_server::direct_handle(device))
                    .flatten();
                let export = Export {
                    direct: direct.as_ref(),
                    name: &v.lv,
                    file: &file,
                    size,
                    writable,
                    unmap_block: if writable {
                        self.unmap_block(&v, &sr_uuid)?
                    } else {
                        None
                    },
                    on_write: None,
                    layered: None,
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
                let session = |_: usize, mut stream: UnixStream, _: &Clients| {
                    nbd_server::serve(&mut stream, &export).unwrap_or_default()
                };
                listener::serve_until(&[&socket], &session, &cancel::requested)
            };
        let served = if writable {
            let vol = self.attach_quietly(&v.uuid, Some(&sr_uuid), false)?;
            let served = serve(Path::new(&vol.path), vol.virtual_size.0, false);
            finally(served, "detaching the VDI", || {
                self.detach_quietly(&v.uuid, Some(&sr_uuid))
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
