//! The guard of a mirror: a small process of thinsr's that lives as long as the mirror,
//! started outside the plugin call like the NBD export (`host/daemon.rs`), holding a copy
//! of the connection the kernel mirrors to. It ends the mirror itself when
//! - the destination hangs up: the kernel's NBD driver notices a closed socket but keeps
//!   the requests in flight until its timeout, stalling the VM's writes meanwhile; the
//!   guard sees the hang-up at once, disconnects (the stuck writes fail on that leg and
//!   succeed for the VM) and swaps the VDI's own table back, as xapi never cancels;
//! - the start that made it dies mid-way (the VM's device may be suspended): it undoes
//!   what was made, within a fifth of a second.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{give_up, load, Mirror, Phase};
use crate::error::{Error, Result};
use crate::host::daemon;
use crate::ids::{SrUuid, VdiUuid};

/// The internal command the guard runs as.
pub const COMMAND: &str = "__mirror-guard";
const TICK: Duration = Duration::from_millis(200);

/// Starts the guard of mirror `m` (being started by this process) watching `socket`.
pub(super) fn start(m: &Mirror, socket: &OwnedFd) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding thinsr's binary", e))?;
    let watched = socket
        .try_clone()
        .map_err(|e| Error::io("copying the mirror's connection", e))?;
    let starter = std::process::id().to_string();
    let args = [COMMAND, m.sr.as_str(), m.vdi.as_str(), &starter];
    let vdi = m.vdi.as_str();
    let unit = format!("thinsr-mirror-{}-{starter}", &vdi[..8.min(vdi.len())]);
    daemon::start(
        &exe,
        &args,
        &unit,
        &format!("thinsr mirror guard of VDI {vdi}"),
        Some(watched),
    )
    .map(drop)
}

/// The guard's body: `SR VDI STARTER_PID`, the connection on stdin.
pub fn run(args: &[String]) -> i32 {
    let [sr, vdi, starter] = args else { return 2 };
    let (sr, vdi) = (SrUuid::from(sr.as_str()), VdiUuid::from(vdi.as_str()));
    let starter: u32 = starter.parse().unwrap_or(0);
    println!("{}", daemon::READY);
    let stdin = std::io::stdin();
    let socket = stdin.as_fd();
    loop {
        let Some(m) = load(&sr, &vdi) else { return 0 };
        let why = match m.phase {
            Phase::Complete | Phase::Failed { .. } => return 0,
            Phase::Starting if !daemon::running(starter, &[]) => {
                // Read again: a start may have recorded Running and exited between the
                // first look and this one (seen under load), which is no interruption.
                let again = load(&sr, &vdi).map(|m| m.phase);
                if !matches!(again, Some(Phase::Starting)) {
                    continue;
                }
                Some("its start was interrupted".to_string())
            }
            _ => hung_up(socket).then(|| "the destination closed the connection".into()),
        };
        if let Some(why) = why {
            return match give_up(&m, why) {
                Ok(_) => 0,
                Err(_) => 1,
            };
        }
    }
}

/// Waits up to a tick; true when the peer hung up (only a hang-up or an error wakes it:
/// the replies the kernel reads are not ours).
fn hung_up(socket: std::os::fd::BorrowedFd) -> bool {
    let rdhup = PollFlags::from_bits_retain(nix::libc::POLLRDHUP);
    let mut fds = [PollFd::new(socket, rdhup)];
    let ms = PollTimeout::from(TICK.as_millis() as u16);
    match poll(&mut fds, ms) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(rdhup | PollFlags::POLLHUP | PollFlags::POLLERR)),
        Ok(_) => false,
        Err(_) => {
            std::thread::sleep(TICK);
            false
        }
    }
}
