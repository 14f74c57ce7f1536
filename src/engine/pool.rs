//! The thin pool: show, extend, policy, cron-driven growth, checks. A full pool freezes VMs
//! (I/O queues for 60 s, then fails), so thinsr grows it early, within limits the admin set.

use serde::Serialize;

use crate::engine::context::Ctx;
use crate::engine::growth::{self, Growth};
use crate::engine::hooks::Hook;
use crate::engine::meta::{Mode, PoolPolicy, SrMeta};
use crate::engine::registry::Entry;
pub use crate::engine::usage::CHUNK;
use crate::engine::usage::{kernel_usage, pool_info, usage, PoolInfo};
use crate::error::{Error, Result};
use crate::host::dm::{self, PoolState};
use crate::host::lock;
use crate::host::lvm::{cmd, Lv, Vg};
use crate::ids::LvPath;
use crate::units::{Bytes, NewSize, PoolSize, GIB};

/// LVM's largest pool metadata.
const MAX_POOL_METADATA: Bytes = Bytes(15 * GIB + 812 * (1 << 20));

/// The least the data grows by at a time. A step must cover what a VM writing at device
/// speed puts down while the pool is extended (an lvm report and an lvextend: about a
/// second on a host, two in the test VM), so that a burst never reaches a full pool: at
/// 500 MB/s that is 1 GiB. A percentage alone would make small pools grow in slivers.
pub const DATA_STEP: Bytes = Bytes(GIB);

/// The least the metadata grows by: what a data step's worth of new mappings needs, by
/// LVM's rule of 64 bytes per chunk, twice over for the btree's own nodes.
fn metadata_step() -> Bytes {
    Bytes(DATA_STEP.0 / CHUNK.0 * 64 * 2)
}

/// `pool show`: what `sr show` says of the pool, plus its policy and room to grow.
#[derive(Debug, Serialize)]
pub struct PoolDetail {
    pub sr: String,
    pub name: String,
    pub vg: String,
    #[serde(flatten)]
    pub pool: PoolInfo,
    pub chunk_size: Bytes,
    pub overcommit: f64,
    pub policy: PoolPolicy,
    /// The largest the pool may grow to under the policy and the VG's free space.
    pub max_size: Bytes,
    /// How much more it may still grow.
    pub room: Bytes,
    pub when_full: String,
    /// Who grows the pool between cron's runs.
    pub growth: Growth,
    /// The failures of hooks the command ran (`pool extend`'s `post-pool-grow`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_failures: Vec<String>,
}

/// What `pool maintain` did or found for one SR.
#[derive(Debug, Serialize)]
pub struct Finding {
    pub sr: String,
    /// 0 news, 1 warning, 2 critical: also `maintain`'s exit status (the worst).
    pub severity: u8,
    pub message: String,
}

/// What `pool set` changes; None leaves a setting as it is.
#[derive(Debug, Default)]
pub struct PolicyChange {
    pub threshold: Option<u8>,
    pub grow_by: Option<u16>,
    pub max_size: Option<PoolSize>,
    pub when_full_error: Option<bool>,
    pub max_overcommit: Option<f64>,
}

/// The largest the pool may become: the policy's maximum (shared SRs default to the size
/// the admin chose), never more than the VG can give.
pub fn max_size(mode: Mode, policy: &PoolPolicy, pool: &Lv, vg: &Vg) -> Bytes {
    let reachable = Bytes(pool.size.0 + vg.free.0);
    let limit = match (policy.max_size, mode) {
        (Some(m), _) => m,
        (None, Mode::Owned) => reachable,
        (None, Mode::Shared) => pool.size,
    };
    limit.min(reachable).max(pool.size)
}

/// Why a pool past its threshold cannot grow, with what to do: for `pool maintain` and
/// for SR health.
pub(crate) fn why_stuck(vg: &Vg, max: Bytes, size: Bytes) -> String {
    if max <= size && vg.free.0 > 0 {
        format!(
            "it is at its maximum {max}; raise it with 'thinsr pool set {} --max-size'",
            vg.name
        )
    } else {
        format!("volume group {} has no free space", vg.name)
    }
}

pub(crate) fn pool_lv<'a>(vg: &'a Vg, e: &Entry) -> Result<&'a Lv> {
    vg.lv(&e.pool)
        .ok_or_else(|| Error::LvNotFound(format!("{}/{}", vg.name, e.pool)))
}

impl Ctx {
    /// `pool show`: one lvm report and the kernel's status.
    pub fn pool_show(&self, key: Option<&str>) -> Result<PoolDetail> {
        let e = self.entry(key)?;
        let meta = Self::read_meta(&e)?;
        let vg = self.lvm.report_vg(&e.vg)?;
        let lv = pool_lv(&vg, &e)?;
        let max = max_size(e.mode, &meta.policy, lv, &vg);
        let pool = pool_info(&vg, &e)?;
        Ok(PoolDetail {
            sr: e.uuid.to_string(),
            name: meta.name.clone(),
            vg: vg.name.to_string(),
            chunk_size: CHUNK,
            overcommit: pool.overcommit(),
            policy: meta.policy.clone(),
            max_size: max,
            room: Bytes(max.0 - lv.size.0),
            when_full: pool
                .kernel
                .as_ref()
                .map(|k| k.when_full.clone())
                .unwrap_or_else(|| "queue".into()),
            growth: growth::growth(&vg.name, &lv.name, lv.chunk_size.unwrap_or(CHUNK)),
            pool,
            hook_failures: vec![],
        })
    }

    /// `pool extend`: the data to `size` (an admin's explicit growth also raises a shared
    /// SR's maximum), the metadata to `metadata`.
    pub fn pool_extend(
        &self,
        key: Option<&str>,
        size: Option<NewSize>,
        metadata: Option<NewSize>,
    ) -> Result<PoolDetail> {
        let e = self.entry(key)?;
        let grew = {
            let mut op = self.lock_sr(&e)?;
            let vg = self.lvm.report_vg(&e.vg)?;
            let lv = pool_lv(&vg, &e)?;
            let target = |new: NewSize, current: Bytes| -> Result<Bytes> {
                let t = new.from(current, vg.extent_size.0)?;
                if t < current {
                    let (NewSize::To(given) | NewSize::Grow(given)) = new;
                    return Err(Error::InvalidSize {
                        input: given.to_string(),
                        why: format!("thin pools cannot shrink (it is {current})"),
                    });
                }
                Ok(t)
            };
            let data = size.map(|s| target(s, lv.size)).transpose()?;
            let meta_current = lv.metadata_size.unwrap_or_default();
            let md = metadata.map(|s| target(s, meta_current)).transpose()?;
            // LVM keeps a spare copy of the metadata of the same size.
            let wanted = data.map(|d| d.0 - lv.size.0).unwrap_or(0)
                + md.map(|m| (m.0 - meta_current.0) * 2).unwrap_or(0);
            if wanted > vg.free.0 {
                return Err(Error::NoSpace {
                    vg: vg.name.to_string(),
                    wanted: Bytes(wanted).to_string(),
                    free: vg.free.to_string(),
                    detail: String::new(),
                });
            }
            if md.is_some_and(|m| m > MAX_POOL_METADATA) {
                return Err(Error::InvalidSize {
                    input: md.unwrap().to_string(),
                    why: format!("pool metadata is at most {MAX_POOL_METADATA}"),
                });
            }
            let grow_data = data.filter(|d| *d > lv.size);
            let grow_meta = md.filter(|m| *m > meta_current);
            if grow_data.is_some() || grow_meta.is_some() {
                let path = LvPath::new(&vg.name, &lv.name);
                // A resize loads the pool's table anew: with the policy's mark.
                self.lvm.set_pool_threshold(op.meta.policy.threshold);
                self.lvm
                    .run(&cmd::extend_pool(&path, grow_data, grow_meta))?;
            }
            if let Some(d) = data {
                let policy = &mut op.meta.policy;
                if policy.max_size.is_some_and(|m| m < d) || e.mode == Mode::Shared {
                    policy.max_size = Some(policy.max_size.unwrap_or(d).max(d));
                    op.save()?;
                }
            }
            grow_data.is_some() || grow_meta.is_some()
        };
        // Outside the lock: a hook may call thinsr.
        let failed = match grew {
            true => self.after_sr(Hook::PostPoolGrow, &e),
            false => vec![],
        };
        let mut d = self.pool_show(Some(&e.uuid))?;
        d.hook_failures = failed;
        Ok(d)
    }

    /// `pool set`: stored in the SR's metadata; `--when-full` also goes to LVM.
    pub fn pool_set(&self, key: Option<&str>, change: &PolicyChange) -> Result<PoolDetail> {
        if let Some(t) = change.threshold {
            if !(1..=99).contains(&t) {
                return Err(Error::InvalidArgument(format!(
                    "--threshold {t}: give a percentage from 1 to 99"
                )));
            }
        }
        if change.grow_by == Some(0) || change.grow_by.is_some_and(|g| g > 1000) {
            return Err(Error::InvalidArgument(
                "--grow-by: give a percentage from 1 to 1000".into(),
            ));
        }
        if let Some(r) = change.max_overcommit {
            if !(r.is_finite() && r >= 1.0) {
                return Err(Error::InvalidArgument(format!(
                    "--max-overcommit {r}: give a ratio of 1 or more (1 = no over-commitment)"
                )));
            }
        }
        let e = self.entry(key)?;
        {
            let mut op = self.lock_sr(&e)?;
            let vg = self.lvm.report_vg(&e.vg)?;
            let lv = pool_lv(&vg, &e)?;
            let p = &mut op.meta.policy;
            if let Some(t) = change.threshold {
                p.threshold = t;
            }
            if let Some(g) = change.grow_by {
                p.grow_by = g;
            }
            if let Some(m) = change.max_size {
                let bytes = match m {
                    PoolSize::Absolute(b) => b.round_up(vg.extent_size.0),
                    PoolSize::PercentOfFree(pct) => {
                        Bytes(vg.size.0 / 100 * u64::from(pct)).round_down(vg.extent_size.0)
                    }
                };
                if bytes < lv.size {
                    return Err(Error::InvalidSize {
                        input: bytes.to_string(),
                        why: format!("the pool is already {} and cannot shrink", lv.size),
                    });
                }
                p.max_size = Some(bytes);
            }
            if let Some(r) = change.max_overcommit {
                p.max_overcommit = Some(r);
            }
            if change.threshold.is_some() && lv.active {
                // The low-water mark follows the threshold: LVM computes it at a reload.
                self.lvm.set_pool_threshold(p.threshold);
                self.lvm
                    .run(&cmd::refresh(&LvPath::new(&vg.name, &lv.name)))?;
            }
            if let Some(error) = change.when_full_error {
                let path = LvPath::new(&vg.name, &lv.name);
                self.lvm.run(&cmd::error_when_full(&path, error))?;
            }
            op.save()?;
        }
        self.pool_show(Some(&e.uuid))
    }

    /// Grows data and metadata that passed the threshold, within the policy. Returns what
    /// it did or could not do, whether the pool grew, and whether it is past its threshold
    /// with no room to grow (full, for the `post-pool-full` hook). The caller holds the
    /// SR's lock.
    pub(crate) fn grow_if_needed(
        &self,
        e: &Entry,
        meta: &SrMeta,
        vg: &Vg,
    ) -> Result<(Vec<Finding>, bool, bool)> {
        let lv = pool_lv(vg, e)?;
        let kernel = dm::pool_status(&vg.name, &e.pool)?;
        let mut out = Vec::new();
        let say = |severity, message: String| Finding {
            sr: meta.name.clone(),
            severity,
            message,
        };
        if let Some(t) = kernel.as_ref().and_then(|k| k.trouble()) {
            out.push(say(
                2,
                format!(
                    "SR '{}': thin pool {}/{} is {t}: run 'thinsr pool check {}'",
                    meta.name, vg.name, lv.name, vg.name
                ),
            ));
        }
        let (dp, mp) = usage(lv, kernel.as_ref());
        let threshold = f64::from(meta.policy.threshold);
        let grow = |size: Bytes, floor: Bytes| {
            let step = (size.0 * u64::from(meta.policy.grow_by) / 100).max(floor.0);
            Bytes(size.0 + step).round_up(vg.extent_size.0)
        };
        let max = max_size(e.mode, &meta.policy, lv, vg);
        let mut free = vg.free.0;
        let (mut grow_data, mut grow_meta) = (None, None);
        let mut done = Vec::new();
        // Metadata first: a full data area queues writes, full metadata needs a repair. It
        // takes its share (twice over: LVM keeps a spare copy) before the data grows.
        let mut md_done = None;
        let mut stuck = false;
        if mp >= threshold {
            let current = lv.metadata_size.unwrap_or_default();
            let target = grow(current, metadata_step())
                .max(Bytes(current.0 + vg.extent_size.0))
                .min(MAX_POOL_METADATA)
                .min(Bytes(current.0 + free / 2).round_down(vg.extent_size.0));
            if target > current {
                grow_meta = Some(target);
                free -= (target.0 - current.0) * 2;
                md_done = Some(format!(
                    "metadata {} -> {} (was {mp:.0}% full)",
                    current, target
                ));
            } else {
                stuck = true;
                out.push(say(
                    if mp >= 95.0 { 2 } else { 1 },
                    format!(
                        "SR '{}': thin pool metadata is {mp:.0}% full and cannot grow (volume group {} has {} free)",
                        meta.name, vg.name, vg.free
                    ),
                ));
            }
        }
        if dp >= threshold {
            let target = grow(lv.size, DATA_STEP)
                .min(max)
                .min(Bytes(lv.size.0 + free));
            if target > lv.size {
                grow_data = Some(target);
                done.push(format!(
                    "data {} -> {} (was {dp:.0}% full)",
                    lv.size, target
                ));
            } else {
                stuck = true;
                let why = why_stuck(vg, max, lv.size);
                out.push(say(
                    if dp >= 95.0 { 2 } else { 1 },
                    format!(
                        "SR '{}': thin pool data is {dp:.0}% full and cannot grow: {why}",
                        meta.name
                    ),
                ));
            }
        }
        done.extend(md_done);
        let grew = !done.is_empty();
        if grew {
            let path = LvPath::new(&vg.name, &lv.name);
            // A resize loads the pool's table anew: with the policy's mark.
            self.lvm.set_pool_threshold(meta.policy.threshold);
            self.lvm
                .run(&cmd::extend_pool(&path, grow_data, grow_meta))?;
            out.push(say(
                0,
                format!(
                    "SR '{}': grew thin pool {}/{}: {}",
                    meta.name,
                    vg.name,
                    lv.name,
                    done.join(", ")
                ),
            ));
        }
        Ok((out, grew, stuck))
    }

    /// `pool maintain`: every SR named (all registered by default), each under its lock
    /// with a short wait; a busy SR is skipped, never waited on.
    pub fn pool_maintain(&self, keys: &[String]) -> Result<Vec<Finding>> {
        let reg = self.registry.load()?;
        let entries: Vec<Entry> = if keys.is_empty() {
            reg.srs.clone()
        } else {
            keys.iter()
                .map(|k| reg.find(k).cloned())
                .collect::<Result<_>>()?
        };
        let mut out = Vec::new();
        // Only a watcher that died is news every minute: one never started is the admin's
        // choice, which `pool show` points out.
        let w = growth::watcher();
        if let (growth::Watcher::Down(_), Some(m)) = (w, growth::watcher_warning(w)) {
            out.push(Finding {
                sr: String::new(),
                severity: 1,
                message: m,
            });
        }
        for e in entries {
            let found = (|| -> Result<Vec<Finding>> {
                let _l =
                    match lock::acquire_within(&e.uuid, &e.name, std::time::Duration::from_secs(2))
                    {
                        Ok(l) => l,
                        Err(Error::SrBusy(_)) => {
                            return Ok(vec![Finding {
                                sr: e.name.clone(),
                                severity: 0,
                                message: format!(
                            "SR '{}' is busy (another thinsr command holds it): skipped this time",
                            e.name
                        ),
                            }])
                        }
                        Err(err) => return Err(err),
                    };
                let meta = match Self::read_meta(&e) {
                    Ok(m) => m,
                    // A detached SR has no active pool to fill.
                    Err(Error::SrNotAttached(_)) => return Ok(vec![]),
                    Err(err) => return Err(err),
                };
                let vg = self.lvm.report_vg(&e.vg)?;
                let (found, grew, stuck) = self.grow_if_needed(&e, &meta, &vg)?;
                drop(_l);
                Ok(self.pool_hooks(&e, grew, stuck, found))
            })();
            match found {
                Ok(f) => out.extend(f),
                Err(err) => out.push(Finding {
                    sr: e.name.clone(),
                    severity: 2,
                    message: format!("SR '{}': {err}", e.name),
                }),
            }
        }
        Ok(out)
    }

    /// After a growth check, outside the SR's lock: the `post-pool-grow` hook when the pool
    /// grew, `post-pool-full` when it is past its threshold and cannot grow; their failures
    /// join `found`.
    pub(crate) fn pool_hooks(
        &self,
        e: &Entry,
        grew: bool,
        full: bool,
        mut found: Vec<Finding>,
    ) -> Vec<Finding> {
        for (hook, on) in [(Hook::PostPoolGrow, grew), (Hook::PostPoolFull, full)] {
            if on {
                found.extend(self.after_sr(hook, e).into_iter().map(|m| Finding {
                    sr: e.name.clone(),
                    severity: 1,
                    message: m,
                }));
            }
        }
        found
    }

    /// True when a thin VDI can be made without an lvm report: no overcommit limit to add
    /// up, and the kernel says the pool is active, writable and below the growth threshold.
    /// Otherwise `prepare_thin` decides, from a report.
    pub(crate) fn thin_ready(e: &Entry, meta: &SrMeta) -> bool {
        if meta.policy.max_overcommit.is_some() {
            return false;
        }
        let Ok(Some(k)) = dm::pool_status(&e.vg, &e.pool) else {
            return false;
        };
        let Some((dp, mp)) = kernel_usage(&k) else {
            return false;
        };
        let limit = f64::from(meta.policy.threshold);
        k.state == PoolState::ReadWrite && !k.needs_check && dp < limit && mp < limit
    }

    /// Before a thin VDI of `adding` bytes is made: refuse past `--max-overcommit`, and grow
    /// the pool first when it is over the threshold. The caller holds the SR's lock.
    pub(crate) fn prepare_thin(
        &self,
        e: &Entry,
        meta: &SrMeta,
        vg: &Vg,
        adding: Bytes,
    ) -> Result<()> {
        let lv = pool_lv(vg, e)?;
        if let Some(limit) = meta.policy.max_overcommit {
            let total: u64 = vg
                .lvs
                .iter()
                .filter(|l| l.pool == e.pool)
                .map(|l| l.size.0)
                .sum::<u64>()
                + adding.0;
            if total as f64 > limit * lv.size.0 as f64 {
                return Err(Error::PoolOvercommitted {
                    sr: meta.name.clone(),
                    virtual_total: Bytes(total).to_string(),
                    pool: lv.size.to_string(),
                    limit,
                });
            }
        }
        let (dp, mp) = usage(lv, None);
        if dp >= f64::from(meta.policy.threshold) || mp >= f64::from(meta.policy.threshold) {
            let (_, grew, _) = self.grow_if_needed(e, meta, vg)?;
            if !grew {
                // LVM refuses a thin volume in a pool past its low-water threshold. One
                // that cannot grow stays usable until it is full (`pool maintain` warns):
                // its table is reloaded without a mark (which could wake no one), by a
                // refresh, since the thin volume's own create must not change the table.
                self.lvm.set_pool_threshold(100);
                // None: not active, so the next activation loads a table of its own.
                if crate::host::dmevent::pool_low_water(&vg.name, &lv.name).is_some_and(|m| m.0 > 0)
                {
                    self.lvm
                        .run(&cmd::refresh(&LvPath::new(&vg.name, &lv.name)))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(size: u64) -> Lv {
        Lv {
            name: "pool".into(),
            uuid: String::new(),
            size: Bytes(size),
            tags: vec![],
            attr: String::new(),
            layout: "thin,pool".into(),
            pool: String::new(),
            origin: String::new(),
            data_percent: Some(50.0),
            metadata_percent: Some(10.0),
            metadata_size: Some(Bytes(8 << 20)),
            active: true,
            open: false,
            thin_id: None,
            chunk_size: None,
            zero: None,
        }
    }

    fn vg(free: u64) -> Vg {
        Vg {
            name: "vg".into(),
            uuid: String::new(),
            size: Bytes(100 * GIB),
            free: Bytes(free),
            extent_size: Bytes(4 << 20),
            tags: vec![],
            pvs: vec![],
            lvs: vec![],
            vdi_index: Default::default(),
        }
    }

    #[test]
    fn maximum_follows_mode_policy_and_free_space() {
        let p = PoolPolicy::default();
        let pool = lv(10 * GIB);
        // Owned: everything free; shared: the size chosen, until raised.
        assert_eq!(
            max_size(Mode::Owned, &p, &pool, &vg(30 * GIB)),
            Bytes(40 * GIB)
        );
        assert_eq!(
            max_size(Mode::Shared, &p, &pool, &vg(30 * GIB)),
            Bytes(10 * GIB)
        );
        let raised = PoolPolicy {
            max_size: Some(Bytes(15 * GIB)),
            ..PoolPolicy::default()
        };
        assert_eq!(
            max_size(Mode::Shared, &raised, &pool, &vg(30 * GIB)),
            Bytes(15 * GIB)
        );
        // Never more than the VG can give, never less than the pool is.
        assert_eq!(
            max_size(Mode::Shared, &raised, &pool, &vg(GIB)),
            Bytes(11 * GIB)
        );
        let low = PoolPolicy {
            max_size: Some(Bytes(GIB)),
            ..PoolPolicy::default()
        };
        assert_eq!(
            max_size(Mode::Owned, &low, &pool, &vg(GIB)),
            Bytes(10 * GIB)
        );
    }
}
