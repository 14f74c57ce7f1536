//! Per-SR locks (flock under /run/lock/thinsr) with a bounded wait: cron and an admin never
//! interleave their changes to one SR, and neither waits forever.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

pub const LOCK_DIR: &str = "/run/lock/thinsr";
const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// Held until dropped.
pub struct Lock {
    _file: Flock<File>,
}

/// The default wait when `THINSR_LOCK_TIMEOUT` is not set, in milliseconds (0: 10 s).
static DEFAULT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sets this process's default wait: xapi's calls wait longer than an admin's, since a
/// boot storm queues a dozen attaches on one SR and every one must succeed.
pub fn set_default_wait(wait: Duration) {
    DEFAULT_MS.store(
        wait.as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// How long to wait for a lock: `THINSR_LOCK_TIMEOUT` seconds, else the default (10 s).
pub fn wait_limit() -> Duration {
    let default = match DEFAULT_MS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => DEFAULT_WAIT,
        ms => Duration::from_millis(ms),
    };
    std::env::var("THINSR_LOCK_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(default)
}

/// Takes the lock called `name` (an SR uuid, or `registry`). `what` names it in errors.
pub fn acquire(name: &str, what: &str) -> Result<Lock> {
    acquire_within(name, what, wait_limit())
}

/// As `acquire`, waiting at most `wait`.
pub fn acquire_within(name: &str, what: &str, wait: Duration) -> Result<Lock> {
    let path = PathBuf::from(LOCK_DIR).join(format!("{name}.lock"));
    let deadline = Instant::now() + wait;
    let mut file = super::rundir::open_lock(&path)?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => return Ok(Lock { _file: l }),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    return Err(Error::SrBusy(what.into()));
                }
                file = f;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, e)) => {
                return Err(Error::io(
                    format!("locking {}", path.display()),
                    std::io::Error::from(e),
                ))
            }
        }
    }
}
