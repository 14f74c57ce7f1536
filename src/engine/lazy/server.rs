//! The lazy source: one process per attached lazy template (`thinsr __lazy-origin`),
//! started by the template's attach (`engine/datapath.rs`) outside the caller
//! (`host/daemon.rs`), ended by its release.
//!
//! It holds the template's store (`store.rs`) on the device of ours over the store's LV,
//! and serves the file's bytes as a read-only NBD export:
//! - for a raw image, to a kernel NBD device it connects itself over a socket pair (by
//!   netlink, so the kernel's device names this process as its server): clones' external
//!   origin is that device;
//! - for qcow2, vhd and vmdk, on `T.sock`, where qemu-nbd reads the image through it.
//!
//! Beside it, `T.ctl` takes one request per connection: `warm RATE` (fetch the rest, at
//! most RATE bytes a second; lines `have PRESENT PIECES` as it goes, then `done SHA256`,
//! `stopped` or `error WHY`). `T.status` (JSON) says what the store holds and how the
//! server answered last, for `template show`. Files are root's alone under
//! /run/thinsr/lazy/SR/.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::map::Layout;
use super::store::{Counts, Store};
use crate::cancel;
use crate::error::{Error, Result};
use crate::host::http::{Pinned, RangeError, Ranged};
use crate::host::listener::{self, Clients, Socket};
use crate::host::nbd_server::{self, Export, Layered, Served};
use crate::host::{daemon, nbd_client, nbd_netlink, rundir};
use crate::ids::{SrUuid, VdiUuid};

const DIR: &str = "/run/thinsr/lazy";
/// The internal command the server runs as (and is recognised by in /proc).
pub const COMMAND: &str = "__lazy-origin";
/// How often what was written is marked in the store's map.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

/// Where a lazy template's server is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub socket: PathBuf,
    pub control: PathBuf,
    pub status: PathBuf,
    /// A warm's mark that it attached the template for its while (its pid).
    pub warming: PathBuf,
    pid: PathBuf,
    template: String,
}

impl Endpoint {
    pub fn of(sr: &SrUuid, template: &VdiUuid) -> Endpoint {
        let dir = Path::new(DIR).join(sr.as_str());
        Endpoint {
            socket: dir.join(format!("{template}.sock")),
            control: dir.join(format!("{template}.ctl")),
            status: dir.join(format!("{template}.status")),
            warming: dir.join(format!("{template}.warming")),
            pid: dir.join(format!("{template}.pid")),
            template: template.to_string(),
        }
    }

    /// The server's pid, if it runs.
    pub fn server(&self) -> Option<u32> {
        let pid: u32 = rundir::read(&self.pid, 64)?.trim().parse().ok()?;
        daemon::running(pid, &[COMMAND, &self.template]).then_some(pid)
    }

    /// What qemu-nbd opens: the export on `socket`.
    pub fn nbd_uri(&self) -> String {
        format!(
            "nbd+unix:///{}?socket={}",
            self.template,
            self.socket.display()
        )
    }

    /// True when a warm that attached the template for its while died before it let go
    /// (its attachment is the next warm's to end).
    pub fn warm_died(&self) -> bool {
        rundir::read(&self.warming, 64)
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    }

    /// What the server said last (None when no server ran since the host started).
    pub fn last_status(&self) -> Option<Status> {
        serde_json::from_str(&rundir::read(&self.status, 64 << 10)?).ok()
    }

    fn remove_files(&self) {
        for p in [&self.socket, &self.control, &self.pid] {
            std::fs::remove_file(p).ok();
        }
    }
}

/// What a lazy template's server says of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    #[serde(flatten)]
    pub counts: Counts,
    /// The last fetch's failure, until one succeeds again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The server holds another version of the file.
    #[serde(default)]
    pub changed: bool,
}

/// How the server is started: everything but secrets (a key is read from its file by the
/// server itself), as arguments.
pub struct Launch<'a> {
    pub sr: &'a SrUuid,
    pub template: &'a VdiUuid,
    pub device: &'a Path,
    pub url: &'a str,
    /// Where s3 keys are read from (`<config>/credentials/s3/`).
    pub config: &'a Path,
    pub version: &'a str,
    pub layout: Layout,
    pub timeout: Duration,
    /// Connect a kernel NBD device (a raw image) rather than only listen (qemu-nbd's).
    pub kernel: bool,
}

/// Starts the server; returns its pid and, with `kernel`, the NBD device's index.
pub fn start(l: &Launch) -> Result<(u32, Option<u32>)> {
    let ep = Endpoint::of(l.sr, l.template);
    rundir::private_dir(ep.socket.parent().unwrap_or(Path::new(DIR)))?;
    if let Some(pid) = ep.server() {
        daemon::stop(pid, &[COMMAND, &ep.template]);
    }
    ep.remove_files();
    let exe = std::env::current_exe().map_err(|e| Error::io("finding thinsr itself", e))?;
    let args = [
        COMMAND.to_string(),
        l.sr.to_string(),
        l.template.to_string(),
        l.device.display().to_string(),
        l.url.to_string(),
        l.config.display().to_string(),
        l.version.to_string(),
        l.layout.length.to_string(),
        l.layout.piece.to_string(),
        l.timeout.as_secs().to_string(),
        if l.kernel { "kernel" } else { "socket" }.to_string(),
    ];
    let unit = format!(
        "thinsr-lazy-{}-{}",
        &l.template[..8.min(l.template.len())],
        std::process::id()
    );
    let said = daemon::start(
        &exe,
        &args,
        &unit,
        &format!("thinsr lazy template {}", l.template),
        None,
    )?;
    let pid = ep.server().ok_or_else(|| Error::CommandFailed {
        tool: COMMAND.into(),
        message: "the lazy template's server said it was ready, then was gone".into(),
    })?;
    Ok((pid, said.trim().parse().ok()))
}

/// Ends the server of `template`, if one runs (it disconnects its kernel device first).
pub fn stop(sr: &SrUuid, template: &VdiUuid) {
    let ep = Endpoint::of(sr, template);
    if let Some(pid) = ep.server() {
        daemon::stop(pid, &[COMMAND, template]);
    }
    ep.remove_files();
}

/// Asks the running server to fetch the rest (`rate` bytes a second at most, 0: no
/// bound); `told` hears the pieces present as it goes. Returns the file's SHA-256 once
/// every piece is on the host.
pub fn warm(
    sr: &SrUuid,
    template: &VdiUuid,
    rate: u64,
    told: &mut dyn FnMut(u64, u64),
) -> Result<String> {
    let ep = Endpoint::of(sr, template);
    let failed = |e: std::io::Error| Error::io(ep.control.display().to_string(), e);
    let mut s = UnixStream::connect(&ep.control).map_err(failed)?;
    writeln!(s, "warm {rate}").map_err(failed)?;
    let reader = BufReader::new(s.try_clone().map_err(failed)?);
    for line in reader.lines() {
        let line = line.map_err(failed)?;
        if cancel::requested() {
            return Err(Error::Cancelled);
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["have", p, n] => told(p.parse().unwrap_or(0), n.parse().unwrap_or(0)),
            ["done", sha] => return Ok(sha.to_string()),
            ["stopped"] => return Err(Error::Cancelled),
            _ => {
                let why = line.strip_prefix("error ").unwrap_or(&line).to_string();
                return Err(Error::CommandFailed {
                    tool: "template warm".into(),
                    message: why,
                });
            }
        }
    }
    Err(Error::CommandFailed {
        tool: "template warm".into(),
        message: "the lazy template's server ended before the warm did".into(),
    })
}

/// The store as an NBD export's bytes: read-only, a failed fetch is EIO.
struct Bytes<'a>(&'a Store<'a>);

impl Layered for Bytes<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0
            .read_at(buf, offset)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::PermissionDenied.into())
    }
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `thinsr __lazy-origin SR TEMPLATE DEVICE URI CONFIG VERSION LENGTH PIECE TIMEOUT
/// kernel|socket`:
/// the server process; its exit status. Nothing reads its stderr.
pub fn run_server(args: &[String]) -> i32 {
    let [sr, template, device, url, config, version, length, piece, timeout, mode] = args else {
        return 2;
    };
    let (Ok(length), Ok(piece), Ok(timeout)) = (
        length.parse::<u64>(),
        piece.parse::<u64>(),
        timeout.parse::<u64>(),
    ) else {
        return 2;
    };
    let l = Launch {
        sr: &SrUuid::from(sr.as_str()),
        template: &VdiUuid::from(template.as_str()),
        device: Path::new(device),
        url,
        config: Path::new(config),
        version,
        layout: Layout { length, piece },
        timeout: Duration::from_secs(timeout),
        kernel: mode == "kernel",
    };
    match serve(&l) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn serve(l: &Launch) -> Result<()> {
    cancel::watch();
    let ep = Endpoint::of(l.sr, l.template);
    let dev = std::fs::File::options()
        .read(true)
        .write(true)
        .open(l.device)
        .map_err(|e| Error::io(l.device.display().to_string(), e))?;
    let source = Ranged::new(
        l.url,
        l.config,
        Pinned::from_record(l.version),
        l.layout.length,
        l.timeout,
    )?;
    let direct = nbd_server::direct_handle(l.device);
    let store = Store::open(dev, direct, l.layout, l.version, &source, l.timeout)
        .map_err(|e| Error::io(l.device.display().to_string(), e))?;
    rundir::private_dir(ep.socket.parent().unwrap_or(Path::new(DIR)))?;
    let plain = Socket::bind(&ep.socket)?;
    let control = Socket::bind(&ep.control)?;
    rundir::write(&ep.pid, std::process::id().to_string().as_bytes())?;
    let bytes = Bytes(&store);
    let export = Export {
        name: l.template.as_str(),
        file: store_file_placeholder(),
        size: l.layout.length.div_ceil(512) * 512,
        writable: false,
        direct: None,
        unmap_block: None,
        on_write: None,
        layered: Some(&bytes),
    };
    let kernel_gone = AtomicBool::new(false);
    let last_error: Mutex<Option<RangeError>> = Mutex::new(None);
    std::thread::scope(|scope| -> Result<()> {
        let writer = scope.spawn(|| store.writer());
        let committer = scope.spawn(|| store.committer(COMMIT_EVERY));
        let reporter = scope.spawn(|| report(&ep, &store, &last_error, &kernel_gone));
        // Whatever ends the serving, the threads above are told to end and joined.
        let ran = (|| -> Result<()> {
            let mut index = None;
            if l.kernel {
                let (mut ours, theirs) =
                    UnixStream::pair().map_err(|e| Error::io("a socket pair", e))?;
                let export = &export;
                let kernel_gone = &kernel_gone;
                scope.spawn(move || {
                    let _ = nbd_server::serve(&mut ours, export);
                    let _ = ours.shutdown(std::net::Shutdown::Both);
                    kernel_gone.store(true, Ordering::SeqCst);
                });
                let mut theirs = theirs;
                let n = nbd_client::negotiate(&mut theirs, l.template)
                    .map_err(|e| Error::io("negotiating with the kernel's end", e))?;
                let socket = OwnedFd::from(theirs);
                index = Some(nbd_netlink::connect(&nbd_netlink::Connect {
                    socket: &socket,
                    size: n.size,
                    flags: n.flags,
                    // Above the store's own bound, which answers EIO first.
                    timeout_s: l.timeout.as_secs() + 30,
                })?);
                // The kernel holds the socket now; our descriptor goes.
                drop(socket);
            }
            let mut out = std::io::stdout();
            writeln!(
                out,
                "{} {}",
                daemon::READY,
                index.map_or("-".to_string(), |i| i.to_string())
            )
            .and_then(|_| out.flush())
            .map_err(|e| Error::io("saying the server is ready", e))?;
            let session = |socket: usize, stream: UnixStream, _: &Clients| -> Served {
                let mut stream = stream;
                if socket == 1 {
                    control_session(stream, &store, &last_error);
                    return Served::default();
                }
                nbd_server::serve(&mut stream, &export).unwrap_or_default()
            };
            let stop = || cancel::requested() || kernel_gone.load(Ordering::SeqCst);
            let served = listener::serve_until(&[&plain, &control], &session, &stop);
            if let Some(i) = index {
                let _ = nbd_netlink::disconnect(i);
            }
            served.map(drop)
        })();
        kernel_gone.store(true, Ordering::SeqCst);
        store.stop();
        let _ = writer.join();
        let _ = committer.join();
        // What the writer wrote after the committer's last pass.
        let _ = store.mark_written();
        let _ = reporter.join();
        ran
    })?;
    std::fs::remove_file(&ep.pid).ok();
    Ok(())
}

/// The export's `file` is not read when it is layered; /dev/null stands in.
fn store_file_placeholder() -> &'static std::fs::File {
    static NULL: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    NULL.get_or_init(|| std::fs::File::open("/dev/null").expect("/dev/null opens"))
}

/// Writes the status file when what it says changes, until the server ends.
fn report(ep: &Endpoint, store: &Store, last_error: &Mutex<Option<RangeError>>, gone: &AtomicBool) {
    let mut said: Option<Status> = None;
    loop {
        let error = store
            .last_error()
            .or_else(|| last_error.lock().expect("not poisoned").clone());
        let now = Status {
            counts: store.counts(),
            changed: matches!(error, Some(RangeError::Changed(_))),
            error: error.map(|e| e.to_string()),
        };
        if said.as_ref() != Some(&now) {
            if let Ok(text) = serde_json::to_string(&now) {
                let _ = rundir::write(&ep.status, text.as_bytes());
            }
            said = Some(now);
        }
        if gone.load(Ordering::SeqCst) || cancel::requested() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One request on the control socket.
fn control_session(stream: UnixStream, store: &Store, last_error: &Mutex<Option<RangeError>>) {
    let mut line = String::new();
    let mut r = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut w = stream;
    let Some(rate) = line
        .trim()
        .strip_prefix("warm ")
        .and_then(|n| n.parse::<u64>().ok())
    else {
        let _ = writeln!(w, "error unknown request");
        return;
    };
    let mut last = Instant::now() - Duration::from_secs(1);
    let mut told = |c: Counts| -> bool {
        if cancel::requested() {
            return false;
        }
        if last.elapsed() < Duration::from_millis(250) && c.present < c.pieces {
            return true;
        }
        last = Instant::now();
        writeln!(w, "have {} {}", c.present, c.pieces).is_ok()
    };
    let answer = match store.fill(rate, &mut told) {
        Ok(true) => match store.sha256() {
            Ok(sha) => format!("done {sha}"),
            Err(e) => format!("error reading the local store: {e}"),
        },
        Ok(false) => "stopped".to_string(),
        Err(e) => {
            *last_error.lock().expect("not poisoned") = Some(e.clone());
            format!("error {e}")
        }
    };
    let _ = writeln!(w, "{answer}");
}
