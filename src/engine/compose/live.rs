//! The other half of `compose::view`, run by the plugin's calls: the view put under the
//! VM's device when the VM's domain activates a migration's leaf (`land`), the switch onto
//! compose's snapshot of the parent asked of the volume's server (`switch`), the VM's
//! device pointed at that snapshot afterwards (`leave`), and the view's kernel device let
//! go when the volume is detached first (`end`).
//!
//! State, beside the volume's export under /run/thinsr/nbd/SR/: `VDI.landing` (the
//! kernel NBD device the view is read through, while it is) and `VDI.landed` (written by
//! the server: the snapshot the view was composed onto).

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::view;
use crate::crash;
use crate::engine::context::Ctx;
use crate::engine::datapath_nbd::{self, Endpoint};
use crate::engine::meta::VdiKind;
use crate::engine::vdi::Found;
use crate::error::{Error, Result};
use crate::host::{dm, fdpass, nbd_client, nbd_netlink, rundir};
use crate::ids::{SrUuid, VdiUuid};

/// How long the server may take to let go of the leaf's old LV once the kernel did.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// How long a switch may take: the copy of the bytes written during the migration.
const SWITCH_WAIT: Duration = Duration::from_secs(600);

/// The kernel NBD device (its index) the view of `vdi` is read through, while it is.
pub fn landing(sr: &SrUuid, vdi: &VdiUuid) -> Option<u32> {
    let ep = Endpoint::of(sr, vdi);
    rundir::read(&ep.landing, 64)?.trim().parse().ok()
}

/// The snapshot the view of `vdi` was composed onto, once the server switched.
pub fn landed(sr: &SrUuid, vdi: &VdiUuid) -> Option<PathBuf> {
    let ep = Endpoint::of(sr, vdi);
    rundir::read(&ep.landed, 4096).map(PathBuf::from)
}

fn nbd_path(index: u32) -> PathBuf {
    PathBuf::from(format!("/dev/nbd{index}"))
}

/// Points our device `top` at `source` (`length` sectors), unless it reads it already.
fn point(top: &str, source: &Path) -> Result<()> {
    let (length, target, params) = dm::table_of(top)?;
    let want = dm::devno(source)?;
    if target == "linear" && params.split_whitespace().next() == Some(want.as_str()) {
        return Ok(());
    }
    dm::replace_table(top, length, "linear", &format!("{} 0", source.display()))
}

impl Ctx {
    /// At the VM's activate of `found` (attached, writable): when a migration's import
    /// wrote it and no compose has run yet, its VM reads it through the view, never the
    /// leaf alone.
    pub fn land_if_migrating(&self, found: &Found) -> Result<()> {
        let (sr, vdi) = (&found.entry.uuid, VdiUuid::from(found.uuid.as_str()));
        let Some(v) = found.meta.vdi(&found.uuid) else {
            return Ok(());
        };
        if !v.read_write() || !datapath_nbd::has_log(sr, &vdi) || v.composing.is_some() {
            return Ok(());
        }
        if v.kind == VdiKind::Preallocated || v.origin.is_some() {
            // Compose refuses them: refused here, while the VM still runs at the source.
            return Err(Error::InvalidArgument(format!(
                "'{}' received a migration's writes but cannot be composed (only thin VDIs without a template are)",
                v.name
            )));
        }
        let top = self.our_device(&vdi).ok_or_else(|| Error::VdiAttached {
            vdi: v.name.clone(),
            device: "no device of thinsr's: Datapath.attach comes first".into(),
        })?;
        let lower = PathBuf::from("/dev/mapper").join(dm::dm_name(&found.entry.vg, &v.lv));
        let ep = Endpoint::of(sr, &vdi);
        let index = match landing(sr, &vdi).filter(|i| nbd_netlink::connected(*i)) {
            Some(i) => i,
            None => {
                // The leaf's own LV, which our device reads now.
                let (_, _, params) = dm::table_of(&top.name)?;
                if params.split_whitespace().next() != Some(dm::devno(&lower)?.as_str()) {
                    return Err(Error::DmFailed(format!(
                        "{} does not read {}: '{params}'",
                        top.name,
                        lower.display()
                    )));
                }
                let i = connect_view(&ep, &lower)?;
                rundir::write(&ep.landing, i.to_string().as_bytes())?;
                i
            }
        };
        crash::point("compose.landing-connected");
        // The kernel reads a new NBD device's partition table at its first open: here,
        // while the view answers such reads at once (with EIO: the parent is not known),
        // not in device-mapper's table load below once reads wait.
        std::fs::File::open(nbd_path(index))
            .map_err(|e| Error::io(nbd_path(index).display().to_string(), e))?;
        ask(&ep, view::ARM, &[])?;
        point(&top.name, &nbd_path(index))
    }
}

/// A connection to the volume's server for the view of `lower`, handed to the kernel;
/// returns its NBD device's index.
fn connect_view(ep: &Endpoint, lower: &Path) -> Result<u32> {
    let failed = |e: std::io::Error| Error::io("connecting the view of a migration's leaf", e);
    let mut ours = pass(ep, view::LANDING, lower.as_os_str().as_encoded_bytes())?;
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(failed)?;
    let n = nbd_client::negotiate(&mut ours, &ep.export).map_err(failed)?;
    ours.set_read_timeout(None).map_err(failed)?;
    let socket = OwnedFd::from(ours);
    nbd_netlink::connect(&nbd_netlink::Connect {
        socket: &socket,
        size: n.size,
        flags: n.flags,
        // Above the view's own wait, which answers EIO first.
        timeout_s: view::WAIT.as_secs() + 30,
    })
}

/// Asks the server of `vdi` to switch its view onto `snapshot`; returns once it did.
pub fn switch(sr: &SrUuid, vdi: &VdiUuid, snapshot: &Path) -> Result<()> {
    let snapshot = snapshot.as_os_str().as_encoded_bytes();
    ask(&Endpoint::of(sr, vdi), view::SWITCH, snapshot)
}

/// One end of a new connection passed to the server of `ep` with the message `kind` and
/// `arg`; returns the other end.
fn pass(ep: &Endpoint, kind: &[u8], arg: &[u8]) -> Result<UnixStream> {
    let failed = |e: std::io::Error| Error::io("passing a connection to a volume's NBD export", e);
    let (ours, theirs) = UnixStream::pair().map_err(failed)?;
    let control = UnixStream::connect(&ep.passing).map_err(failed)?;
    fdpass::send(&control, theirs.as_fd(), &[kind, arg].concat()).map_err(failed)?;
    Ok(ours)
}

/// Sends `message` to the server of `ep` with a connection for its answer; waits for it.
fn ask(ep: &Endpoint, kind: &[u8], arg: &[u8]) -> Result<()> {
    let vdi = &ep.export;
    let failed = |e: std::io::Error| Error::io("asking the NBD export of a migration's leaf", e);
    let ours = pass(ep, kind, arg)?;
    ours.set_read_timeout(Some(SWITCH_WAIT)).map_err(failed)?;
    let mut answer = String::new();
    BufReader::new(ours)
        .read_line(&mut answer)
        .map_err(failed)?;
    match answer.trim() {
        "ok" => Ok(()),
        "" => Err(Error::DmFailed(format!(
            "the NBD export of {vdi} gave no answer"
        ))),
        other => Err(Error::DmFailed(format!(
            "the NBD export of {vdi} answered: {other}"
        ))),
    }
}

/// After the switch: the VM's device `top` reads `snapshot` itself, the view's kernel
/// device goes, and the server lets go of the leaf's old LV (dm name `lower`, when there
/// still is one), about to be removed.
pub fn leave(
    sr: &SrUuid,
    vdi: &VdiUuid,
    top: &str,
    snapshot: &Path,
    lower: Option<&str>,
) -> Result<()> {
    point(top, snapshot)?;
    crash::point("compose.kernel");
    end(sr, vdi)?;
    let deadline = Instant::now() + CLOSE_WAIT;
    while lower.and_then(dm::open_count).is_some_and(|n| n > 0) {
        if Instant::now() > deadline {
            return Err(Error::VdiAttached {
                vdi: vdi.to_string(),
                device: format!(
                    "/dev/mapper/{} is still held by its NBD export",
                    lower.unwrap_or_default()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The view's kernel device disconnected and its record dropped (the volume detached, or
/// composed).
pub fn end(sr: &SrUuid, vdi: &VdiUuid) -> Result<()> {
    if let Some(i) = landing(sr, vdi) {
        nbd_netlink::disconnect(i)?;
    }
    std::fs::remove_file(Endpoint::of(sr, vdi).landing).ok();
    Ok(())
}

/// The records of a compose that finished.
pub fn forget(sr: &SrUuid, vdi: &VdiUuid) {
    std::fs::remove_file(Endpoint::of(sr, vdi).landed).ok();
}
