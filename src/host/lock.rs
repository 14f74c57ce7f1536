//! Per-SR locks (flock under /run/lock/thinsr) with a bounded wait: cron and an admin never
//! interleave their changes to one SR, and neither waits forever.

use std::fs::{self, File, OpenOptions};
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

/// How long to wait for a lock: `THINSR_LOCK_TIMEOUT` seconds, 10 by default.
pub fn wait_limit() -> Duration {
    std::env::var("THINSR_LOCK_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_WAIT)
}

/// Takes the lock called `name` (an SR uuid, or `registry`). `what` names it in errors.
pub fn acquire(name: &str, what: &str) -> Result<Lock> {
    acquire_within(name, what, wait_limit())
}

/// As `acquire`, waiting at most `wait`.
pub fn acquire_within(name: &str, what: &str, wait: Duration) -> Result<Lock> {
    let dir = PathBuf::from(LOCK_DIR);
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(format!("{name}.lock"));
    let deadline = Instant::now() + wait;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
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
