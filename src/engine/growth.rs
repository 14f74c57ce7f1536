//! Who grows a pool between cron's runs: whether `pool watch` is running, stopped, or
//! down (it died: its pid file is left with no process holding its lock), and the low-water
//! mark in the pool's live table that wakes it. `pool show`, `sr show` and `pool maintain`
//! report it; `pool watch` (engine/watch.rs) keeps it.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::host::dmevent::pool_low_water;
use crate::host::lock::{self, Lock};
use crate::ids::{LvName, VgName};
use crate::units::Bytes;

/// Written when the watcher starts, removed when it stops cleanly; /run empties at boot.
pub const PID_FILE: &str = "/run/thinsr/pool-watch.pid";
/// Held by the watcher for as long as it runs.
const LOCK_NAME: &str = "pool-watch";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watcher {
    Running(Option<u32>),
    /// Never started since boot, or stopped cleanly.
    Stopped,
    /// Started and gone without stopping cleanly (killed, crashed).
    Down(Option<u32>),
}

fn recorded_pid() -> Option<u32> {
    crate::host::rundir::read(Path::new(PID_FILE), 64).and_then(|s| s.trim().parse().ok())
}

pub fn watcher() -> Watcher {
    match lock::acquire_within(LOCK_NAME, "the pool watcher", Duration::ZERO) {
        Err(_) => Watcher::Running(recorded_pid()),
        Ok(_free) if Path::new(PID_FILE).exists() => Watcher::Down(recorded_pid()),
        Ok(_) => Watcher::Stopped,
    }
}

/// Takes the watcher's lock, or says which watcher holds it.
pub(crate) fn claim() -> crate::error::Result<Lock> {
    lock::acquire_within(LOCK_NAME, "the pool watcher", Duration::ZERO)
        .map_err(|_| crate::error::Error::WatcherRunning(recorded_pid().unwrap_or(0)))
}

/// How a pool grows between cron's runs, as `pool show` and `sr show` say it.
#[derive(Debug, Serialize)]
pub struct Growth {
    /// `running`, `stopped` or `down`.
    pub watcher: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watcher_pid: Option<u32>,
    /// Free data (bytes) at which the kernel wakes the watcher; 0: it says nothing before
    /// the pool is full. None while the pool is not active.
    pub low_water_mark: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The message `pool maintain` gives for a watcher that is not running; None when it is.
pub fn watcher_warning(w: Watcher) -> Option<String> {
    let how = "pools grow only when 'thinsr pool maintain' runs (cron) or a VDI is made";
    match w {
        Watcher::Running(_) => None,
        Watcher::Stopped => Some(format!(
            "the pool watcher is not running: {how}; start it with 'systemctl enable --now thinsr-pool-watch' (or run 'thinsr pool watch')"
        )),
        Watcher::Down(pid) => Some(format!(
            "the pool watcher{} is down: {how}; restart it with 'systemctl restart thinsr-pool-watch'",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )),
    }
}

/// The growth state of pool `vg/pool`, whose data blocks are `block` bytes.
pub fn growth(vg: &VgName, pool: &LvName, block: Bytes) -> Growth {
    let w = watcher();
    let (watcher, watcher_pid) = match w {
        Watcher::Running(p) => ("running", p),
        Watcher::Stopped => ("stopped", None),
        Watcher::Down(p) => ("down", p),
    };
    Growth {
        watcher,
        watcher_pid,
        low_water_mark: pool_low_water(vg, pool).map(|blocks| blocks.bytes(block).0),
        warning: watcher_warning(w),
    }
}
