//! `pool watch`: grows thin pools the moment the kernel says they are filling, not at
//! cron's cadence. A VM writing at device speed fills a gigabyte in seconds, and a full
//! pool queues its writes for 60 s and then fails them; cron's minute is too slow.
//!
//! One loop for every SR of the host: arm the device-mapper event poll, look at each
//! active pool's kernel status (an ioctl, no lvm call), grow those past their threshold
//! under the SR's lock, then sleep until the next event or the interval. dm-thin raises an
//! event when a pool's free data reaches its low-water mark, which LVM sets from the
//! threshold thinsr passes on every call (host/lvm.rs); the interval covers pools whose
//! table was loaded without one. dmeventd is not used: its thin plugin reads thresholds
//! from lvm.conf or a profile attached to the LV, and thinsr changes neither.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cancel;
use crate::engine::context::Ctx;
use crate::engine::growth::{claim, PID_FILE};
use crate::engine::meta::SrMeta;
use crate::engine::pool::Finding;
use crate::engine::registry::Entry;
use crate::engine::usage::kernel_usage;
use crate::error::{Error, Result};
use crate::host::dm;
use crate::host::dmevent::Events;
use crate::host::lvm::cmd;
use crate::ids::LvPath;
use crate::units::DataBlocks;

/// How often a pool that cannot grow is tried again (and its warning repeated).
const RETRY: Duration = Duration::from_secs(60);
/// How long an SR's policy is trusted before its metadata is read again.
const POLICY_AGE: Duration = Duration::from_secs(10);

/// What the loop remembers of one SR between wakes.
#[derive(Default)]
struct Seen {
    meta: Option<(SrMeta, Instant)>,
    /// Past its threshold and could not grow: not tried again before this.
    quiet_until: Option<Instant>,
    /// The pool size (data blocks) whose table was refreshed for a low-water mark.
    refreshed_at: Option<DataBlocks>,
    /// Full (past its threshold, no room): `post-pool-full` ran, and runs again only
    /// after the pool was not full.
    full: bool,
}

/// Removes the pid file when the watcher stops cleanly; a kill leaves it, which is how
/// `pool show` and `pool maintain` tell "down" from "stopped".
struct PidFile;

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(PID_FILE);
    }
}

impl Ctx {
    /// Runs until SIGTERM or Ctrl-C. `keys` limits it to those SRs (default: all
    /// registered, read again at every wake so new SRs are picked up).
    pub fn pool_watch(
        &self,
        keys: &[String],
        interval: Duration,
        report: &mut dyn FnMut(&Finding),
    ) -> Result<()> {
        let _lock = claim()?;
        let events = Events::open()?;
        events.arm()?;
        cancel::watch();
        crate::host::rundir::write(
            std::path::Path::new(PID_FILE),
            format!("{}\n", std::process::id()).as_bytes(),
        )?;
        let _pid = PidFile;
        report(&Finding {
            sr: String::new(),
            severity: 0,
            message: format!(
                "pool watch: growing pools on device-mapper events and every {:?} (pid {})",
                interval,
                std::process::id()
            ),
        });
        let mut seen: HashMap<String, Seen> = HashMap::new();
        while !cancel::requested() {
            events.arm()?;
            let reg = self.registry.load()?;
            // The SRs named, resolved once per wake (the registry may have changed).
            let named: Vec<&str> = keys
                .iter()
                .filter_map(|k| reg.find(k).ok().map(|f| f.uuid.as_str()))
                .collect();
            for e in reg
                .srs
                .iter()
                .filter(|e| keys.is_empty() || named.contains(&e.uuid.as_str()))
            {
                let s = seen.entry(e.uuid.to_string()).or_default();
                match self.look_at(e, s, &events, report) {
                    Ok(()) => {}
                    // Another command holds the SR (a boot storm's attaches): the next
                    // wake, a second or two away, tries again.
                    Err(Error::SrBusy(_)) => {}
                    Err(err) => {
                        report(&Finding {
                            sr: e.name.clone(),
                            severity: 2,
                            message: format!("SR '{}': {err}", e.name),
                        });
                        s.quiet_until = Some(Instant::now() + RETRY);
                    }
                }
            }
            events.wait(interval)?;
        }
        Ok(())
    }

    fn look_at(
        &self,
        e: &Entry,
        s: &mut Seen,
        events: &Events,
        report: &mut dyn FnMut(&Finding),
    ) -> Result<()> {
        let Some(k) = dm::pool_status(&e.vg, &e.pool)? else {
            return Ok(()); // detached: nothing fills
        };
        if s.quiet_until.is_some_and(|t| Instant::now() < t) {
            return Ok(());
        }
        let fresh = s
            .meta
            .as_ref()
            .is_some_and(|(_, t)| t.elapsed() < POLICY_AGE);
        if !fresh {
            match Self::read_meta(e) {
                Ok(m) => s.meta = Some((m, Instant::now())),
                Err(Error::SrNotAttached(_)) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        let threshold = f64::from(
            s.meta
                .as_ref()
                .map(|(m, _)| m.policy.threshold)
                .unwrap_or(80),
        );
        let (dp, mp) = kernel_usage(&k).unwrap_or_default();
        let filling = dp >= threshold || mp >= threshold || k.trouble().is_some();
        let blocks = k.data_total;
        let unmarked = events.low_water(&e.vg, &e.pool) == Some(DataBlocks(0))
            && s.refreshed_at != Some(blocks);
        if !filling {
            s.full = false;
        }
        if !filling && !unmarked {
            return Ok(());
        }
        let op = self.lock_sr(e)?;
        s.meta = Some((op.meta.clone(), Instant::now()));
        if filling {
            let vg = self.lvm.report_vg(&e.vg)?;
            let (found, grew, stuck) = self.grow_if_needed(e, &op.meta, &vg)?;
            drop(op);
            if found.iter().any(|f| f.severity > 0) {
                s.quiet_until = Some(Instant::now() + RETRY);
            }
            let newly_full = stuck && !s.full;
            s.full = stuck;
            for f in &self.pool_hooks(e, grew, newly_full, found) {
                report(f);
            }
        } else {
            // A table loaded without thinsr's threshold (boot-time activation, an admin's
            // lvchange) has no mark: reload it once so the kernel wakes us in time.
            self.lvm.set_pool_threshold(op.meta.policy.threshold);
            self.lvm.run(&cmd::refresh(&LvPath::new(&e.vg, &e.pool)))?;
            s.refreshed_at = Some(blocks);
            report(&Finding {
                sr: op.meta.name.clone(),
                severity: 0,
                message: format!(
                    "SR '{}': set the low-water mark of thin pool {}/{} (its table was loaded without one)",
                    op.meta.name, e.vg, e.pool
                ),
            });
        }
        Ok(())
    }
}
