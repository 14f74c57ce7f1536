//! Every attached volume is an NBD export while it is attached: what `Datapath.attach`
//! returns as its `Nbd` entry (`nbd:unix:SOCKET:exportname=VDI`, the form xapi's
//! `parse_nbd_uri` reads), where xapi's nbd proxy relays a storage migration's writes and
//! copies write, connecting again for each transfer. Beside it, a socket that takes
//! connections xapi accepted and passes by SCM_RIGHTS (`Datapath.import_activate`: an
//! SMAPIv1 source's tapdisk mirroring into the volume); the ranges those change are logged
//! for `Volume.compose`, which layers them onto the parent's data.
//!
//! One server process per volume (`thinsr __datapath-nbd`), started by the first attach
//! outside the plugin call (`host/daemon.rs`), ended before the device goes at the last
//! detach. Its files are root's alone under /run/thinsr/nbd/SR/: VDI.sock, VDI.fds,
//! VDI.pid, and VDI.written (the log, kept past the server for compose). Each connection
//! opens the device for itself (read-write, or read-only while the kernel holds it so),
//! so nothing holds the device between transfers.

use std::io::{Seek, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cancel;
use crate::engine::compose::view::{self, View};
use crate::engine::context::Ctx;
use crate::engine::meta::{SrMeta, VdiKind, VdiMeta};
use crate::error::{Error, Result};
use crate::host::listener::{self, Clients, Socket};
use crate::host::nbd_server::{self, Export, Served};
use crate::host::{daemon, fdpass, rundir};
use crate::ids::{SrUuid, VdiUuid};
use crate::image::extent::{self, Extent};

const DIR: &str = "/run/thinsr/nbd";
/// The internal command the server runs as (and is recognised by in /proc).
pub const COMMAND: &str = "__datapath-nbd";
/// The longest log read back: 16 bytes a write, 4 million writes.
const MAX_LOG: u64 = 64 << 20;

/// Where a volume's export is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The NBD socket (clients connect).
    pub socket: PathBuf,
    /// The socket that takes connected descriptors by SCM_RIGHTS.
    pub passing: PathBuf,
    pub export: String,
    pid: PathBuf,
    written: PathBuf,
    /// The kernel NBD device a migration's leaf is read through by its VM until compose
    /// (`compose::live`), and the snapshot that view was composed onto (`compose::view`).
    pub landing: PathBuf,
    pub landed: PathBuf,
}

impl Endpoint {
    pub fn of(sr: &SrUuid, vdi: &VdiUuid) -> Endpoint {
        let dir = Path::new(DIR).join(sr.as_str());
        Endpoint {
            socket: dir.join(format!("{vdi}.sock")),
            passing: dir.join(format!("{vdi}.fds")),
            export: vdi.to_string(),
            pid: dir.join(format!("{vdi}.pid")),
            written: dir.join(format!("{vdi}.written")),
            landing: dir.join(format!("{vdi}.landing")),
            landed: dir.join(format!("{vdi}.landed")),
        }
    }

    /// The `Nbd` implementation's uri, as xapi parses it (split on ':': no ':' in the
    /// socket path or the name, both uuids here).
    pub fn uri(&self) -> String {
        format!(
            "nbd:unix:{}:exportname={}",
            self.socket.display(),
            self.export
        )
    }

    /// Whether a server takes connections now.
    pub fn serving(&self) -> bool {
        self.server().is_some() && self.socket.exists() && self.passing.exists()
    }

    /// The server's pid, if it runs.
    fn server(&self) -> Option<u32> {
        let pid: u32 = rundir::read(&self.pid, 64)?.trim().parse().ok()?;
        daemon::running(pid, &[COMMAND, &self.export]).then_some(pid)
    }

    fn remove_sockets(&self) {
        for p in [&self.socket, &self.passing, &self.pid] {
            // Ours, in a private directory; a removed link is harmless.
            std::fs::remove_file(p).ok();
        }
    }
}

impl Ctx {
    /// The block size at which a discard of `v` reads back as zeros: a thin volume of
    /// thinsr's pool without an external origin (a template's clone reads the template
    /// where it has no block), once the pool's chunk size is known.
    pub(crate) fn unmap_block(&self, v: &VdiMeta, sr: &str) -> Result<Option<u64>> {
        if v.kind == VdiKind::Preallocated || v.origin.is_some() {
            return Ok(None);
        }
        Ok(unmap_block_in(v, &Self::read_meta(&self.entry(Some(sr))?)?))
    }

    /// The export of attached volume `vdi` (its device `device`): the running server's, or
    /// a new one.
    pub fn datapath_export(&self, sr: &SrUuid, vdi: &VdiUuid, device: &Path) -> Result<Endpoint> {
        let ep = Endpoint::of(sr, vdi);
        if ep.serving() {
            return Ok(ep);
        }
        let found = self.resolve(vdi, Some(sr))?;
        let v = found
            .meta
            .vdi(&found.uuid)
            .ok_or_else(|| Error::VdiNotFound(vdi.to_string()))?;
        // The metadata `resolve` just read says it: no second read on every VM start.
        let unmap = unmap_block_in(v, &found.meta);
        rundir::private_dir(ep.socket.parent().unwrap_or(Path::new(DIR)))?;
        ep.remove_sockets();
        let exe = std::env::current_exe().map_err(|e| Error::io("finding thinsr itself", e))?;
        // A template or snapshot is read-only whatever its device allows.
        let access = if v.read_write() { "rw" } else { "ro" };
        let unmap = unmap.map_or("-".to_string(), |b| b.to_string());
        let args = [
            COMMAND,
            sr,
            vdi,
            &device.display().to_string(),
            access,
            &unmap,
        ];
        let unit = format!(
            "thinsr-nbd-{}-{}",
            &vdi[..8.min(vdi.len())],
            std::process::id()
        );
        daemon::start(
            &exe,
            &args,
            &unit,
            &format!("thinsr NBD export of VDI {vdi}"),
            None,
        )?;
        Ok(ep)
    }
}

/// `Ctx::unmap_block` with the SR's metadata at hand.
fn unmap_block_in(v: &VdiMeta, meta: &SrMeta) -> Option<u64> {
    let thin = v.kind != VdiKind::Preallocated && v.origin.is_none();
    meta.geometry.as_ref().filter(|_| thin).map(|g| g.chunk.0)
}

/// Ends the export of `vdi`, if one runs, and removes its sockets. The log stays.
pub fn stop(sr: &SrUuid, vdi: &VdiUuid) {
    let ep = Endpoint::of(sr, vdi);
    if let Some(pid) = ep.server() {
        daemon::stop(pid, &[COMMAND, vdi]);
    }
    ep.remove_sockets();
}

/// The volumes of SR `sr` whose export runs now.
pub fn running(sr: &SrUuid) -> Vec<VdiUuid> {
    let dir = Path::new(DIR).join(sr.as_str());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<VdiUuid> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let vdi = VdiUuid::from(name.strip_suffix(".pid")?);
            Endpoint::of(sr, &vdi).server().map(|_| vdi)
        })
        .collect();
    out.sort();
    out
}

/// The ranges written through passed connections, merged.
pub fn written(sr: &SrUuid, vdi: &VdiUuid) -> Vec<Extent> {
    let ep = Endpoint::of(sr, vdi);
    let bytes = rundir::read_bytes(&ep.written, MAX_LOG).unwrap_or_default();
    let v = bytes
        .chunks_exact(16)
        .map(|r| {
            let (o, l) = r.split_at(8);
            Extent::new(
                u64::from_be_bytes(o.try_into().expect("8 bytes")),
                u64::from_be_bytes(l.try_into().expect("8 bytes")),
            )
        })
        .collect();
    extent::normalize(v)
}

/// Whether a log of writes exists (a compose needs one only if the volume was written).
pub fn has_log(sr: &SrUuid, vdi: &VdiUuid) -> bool {
    Endpoint::of(sr, vdi).written.exists()
}

/// Drops the log of `vdi` (composed, or destroyed).
pub fn forget_written(sr: &SrUuid, vdi: &VdiUuid) {
    std::fs::remove_file(Endpoint::of(sr, vdi).written).ok();
}

/// The server process: serves `device` on the volume's sockets until SIGTERM.
pub fn serve(
    sr: &SrUuid,
    vdi: &VdiUuid,
    device: &Path,
    read_only: bool,
    unmap_block: Option<u64>,
) -> Result<()> {
    cancel::watch();
    let ep = Endpoint::of(sr, vdi);
    rundir::private_dir(ep.socket.parent().unwrap_or(Path::new(DIR)))?;
    let plain = Socket::bind(&ep.socket)?;
    let passing = Socket::bind(&ep.passing)?;
    rundir::write(&ep.pid, std::process::id().to_string().as_bytes())?;
    let mut out = std::io::stdout();
    writeln!(out, "{}", daemon::READY)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("saying the export is ready", e))?;
    // The view of a migration's leaf for its VM, while one is served (compose::view).
    let view: Mutex<Option<Arc<View>>> = Mutex::new(None);
    let session = |socket: usize, stream: UnixStream, clients: &Clients| -> Served {
        let passed = socket == 1;
        let run = || -> Result<Served> {
            let (mut stream, _registered) = if passed {
                let (fd, message) =
                    fdpass::receive(&stream).map_err(|e| Error::io("a passed connection", e))?;
                let s = UnixStream::from(fd);
                let r = clients.register(&s)?;
                if let Some(lower) = message.strip_prefix(view::LANDING) {
                    return serve_view(&ep, sr, vdi, &view, s, lower);
                }
                if let Some(snapshot) = message.strip_prefix(view::SWITCH) {
                    switch_view(&view, s, snapshot);
                    return Ok(Served::default());
                }
                if message == view::ARM {
                    let armed = view.lock().expect("not poisoned").as_ref().map(|v| v.arm());
                    let answer = if armed.is_some() {
                        "ok\n"
                    } else {
                        "error: no view is served\n"
                    };
                    (&s).write_all(answer.as_bytes()).ok();
                    return Ok(Served::default());
                }
                (s, Some(r))
            } else {
                (stream, None)
            };
            // Read-write where the VDI is and the kernel lets it be (a device is read-only
            // while some domain has it active read-only).
            let rw = match read_only {
                true => None,
                false => std::fs::File::options()
                    .read(true)
                    .write(true)
                    .open(device)
                    .ok(),
            };
            let (file, writable) = match rw {
                Some(f) => (f, true),
                None => (
                    std::fs::File::open(device)
                        .map_err(|e| Error::io(device.display().to_string(), e))?,
                    false,
                ),
            };
            let size = (&file)
                .seek(std::io::SeekFrom::End(0))
                .map_err(|e| Error::io(device.display().to_string(), e))?;
            let log = match passed {
                true => Some(rundir::append(&ep.written)?),
                false => None,
            };
            let note = |offset: u64, len: u64| -> std::io::Result<()> {
                let mut rec = [0u8; 16];
                rec[..8].copy_from_slice(&offset.to_be_bytes());
                rec[8..].copy_from_slice(&len.to_be_bytes());
                // O_APPEND: each record lands whole at the end, whichever session writes.
                (&mut log.as_ref().expect("a log for passed sessions")).write_all(&rec)
            };
            let direct = writable
                .then(|| nbd_server::direct_handle(device))
                .flatten();
            let export = Export {
                name: &ep.export,
                file: &file,
                size,
                writable,
                direct: direct.as_ref(),
                unmap_block: unmap_block.filter(|_| writable),
                on_write: if passed { Some(&note) } else { None },
                layered: None,
            };
            Ok(nbd_server::serve(&mut stream, &export).unwrap_or_default())
        };
        run().unwrap_or_default()
    };
    let served = listener::serve_until(&[&plain, &passing], &session, &cancel::requested);
    std::fs::remove_file(&ep.pid).ok();
    served.map(drop)
}

/// A path a passed message names (the sender is root: the socket is root's alone).
fn message_path(bytes: &[u8]) -> Result<PathBuf> {
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.starts_with("/dev/mapper/") && !t.contains(".."));
    text.map(PathBuf::from).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "a passed message names no device: {}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// Serves the view of leaf device `lower` to the kernel connection `s` (`compose::live`
/// passed it); the view is dropped, and the leaf's device closed, when the kernel lets go.
fn serve_view(
    ep: &Endpoint,
    sr: &SrUuid,
    vdi: &VdiUuid,
    slot: &Mutex<Option<Arc<View>>>,
    mut s: UnixStream,
    lower: &[u8],
) -> Result<Served> {
    let lower = message_path(lower)?;
    let v = {
        let mut held = slot.lock().expect("not poisoned");
        match held.as_ref() {
            Some(v) => v.clone(),
            None => {
                let v = View::open(&lower, &ep.written, &ep.landed, &written(sr, vdi))
                    .map_err(|e| Error::io(lower.display().to_string(), e))?;
                held.insert(Arc::new(v)).clone()
            }
        }
    };
    let export = Export {
        name: &ep.export,
        file: v.lower(),
        size: v.size,
        writable: true,
        direct: None,
        unmap_block: None,
        on_write: None,
        layered: Some(&*v),
    };
    let served = nbd_server::serve(&mut s, &export).unwrap_or_default();
    let mut held = slot.lock().expect("not poisoned");
    if held.as_ref().is_some_and(|h| Arc::ptr_eq(h, &v)) {
        *held = None;
    }
    Ok(served)
}

/// Compose's request on `s`: the view switched onto `snapshot`; answers "ok" or the error.
fn switch_view(slot: &Mutex<Option<Arc<View>>>, mut s: UnixStream, snapshot: &[u8]) {
    let v = slot.lock().expect("not poisoned").clone();
    let done = match (message_path(snapshot), v) {
        (Ok(p), Some(v)) => v.switch(&p).map_err(|e| e.to_string()),
        (Err(e), _) => Err(e.to_string()),
        (_, None) => Err("no view is served".into()),
    };
    let answer = match done {
        Ok(()) => "ok\n".to_string(),
        Err(e) => format!("error: {e}\n"),
    };
    s.write_all(answer.as_bytes()).ok();
}

/// `thinsr __datapath-nbd SR VDI DEVICE rw|ro UNMAP_BLOCK|-`: the server process; its exit
/// status. Nothing reads its stderr.
pub fn run_server(args: &[String]) -> i32 {
    let [sr, vdi, device, access, unmap] = args else {
        return 2;
    };
    let unmap = unmap.parse::<u64>().ok();
    match serve(
        &SrUuid::from(sr.as_str()),
        &VdiUuid::from(vdi.as_str()),
        Path::new(device),
        access != "rw",
        unmap,
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}
