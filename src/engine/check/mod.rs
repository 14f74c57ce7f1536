//! `sr check [--repair]`: compares an SR's metadata with what LVM and the kernel hold, and
//! repairs what an interrupted command left, by rules that never lose data:
//! - an entry whose LV is gone (a crash after lvremove) is dropped;
//! - an entry whose LV was renamed (a crash after lvrename) records the new name;
//! - a preallocated VDI whose zeroing did not finish is zeroed now;
//! - a VDI whose import did not finish is removed, with --yes (import it again);
//! - a tagged thin LV with no entry (a crash after lvcreate) is adopted as a VDI named
//!   after it: nothing is deleted that a VM might have written;
//! - a tagged preallocated LV with no entry was never zeroed nor used: removed, with --yes;
//! - a device of thinsr's left without a table or suspended by a crash is resumed if it
//!   can be, else removed; one serving a VDI the SR no longer has is removed, with --yes;
//! - a thin device in an owned pool that no LV names (an interrupted lvcreate or lvremove)
//!   is freed, with --yes;
//! - a template cache LV no template uses (an interrupted cache on/off) is removed: it
//!   holds only copies;
//! - a template attachment whose server died is cleared when no clone reads it; clones
//!   still reading it must be detached and attached again.

mod facts;
mod finding;
mod mirrors;
mod plan;
#[cfg(test)]
mod plan_tests;
mod receives;
mod shares;

pub use finding::{CheckReport, Finding, FindingKind};

use crate::engine::context::{Ctx, Locked};
use crate::error::{Error, Result};
use crate::host::lvm::cmd::{self, Activate};
use crate::host::{dm, loopdev, thin, tool};
use crate::ids::LvPath;
use crate::progress::Progress;
use finding::Fix;
use plan::{plan, Mode};

/// The host filter that keeps LVM off thinsr's devices (README, "Install on a host").
pub const LVM_FILTER: &str = r#"[ "r|^/dev/mapper/thinsr-|", "r|^/dev/nbd|" ]"#;

impl Ctx {
    /// Reads what the SR holds (`facts.rs`), decides (`plan.rs`, pure), and with `repair`
    /// carries the plan out.
    pub fn sr_check(
        &self,
        key: Option<&str>,
        repair: bool,
        yes: bool,
        progress: &dyn Progress,
    ) -> Result<CheckReport> {
        let entry = self.entry(key)?;
        let mut op = self.lock_sr(&entry)?;
        let facts = self.check_facts(&op)?;
        let plan = plan(&facts, Mode { repair, yes });
        // The entries as repaired are written once every host action before them is done:
        // a failed action leaves the metadata as it was.
        let mut changed = false;
        if let Some(vdis) = plan.vdis {
            op.meta.vdis = vdis;
            changed = true;
        }
        for fix in plan.findings.iter().flat_map(|f| &f.fixes) {
            if matches!(fix, Fix::CopyToRegistry(_)) && changed {
                op.save()?;
                changed = false;
            }
            self.apply(&mut op, fix, progress)?;
        }
        if changed {
            op.save()?;
        }
        Ok(CheckReport {
            sr: entry.uuid.to_string(),
            name: op.meta.name.clone(),
            findings: plan.findings,
            warnings: self.lvm_filter_warning().into_iter().collect(),
        })
    }

    fn apply(&self, op: &mut Locked, fix: &Fix, progress: &dyn Progress) -> Result<()> {
        let vg = op.entry.vg.clone();
        match fix {
            Fix::Zero { lv, from, to, what } => {
                self.zero_lv(&vg, lv, *from, *to, what, progress)?
            }
            Fix::RemoveLv(path) => self.remove_lv(path)?,
            Fix::ReviveOrRemove { device, vdi } => {
                if !dm::revive(device)? {
                    dm::remove(device, vdi)?;
                }
            }
            Fix::RemoveDevice { device, vdi } => dm::remove(device, vdi)?,
            Fix::ReleaseOrigin(template) => self.release_origin_if_unused(template)?,
            Fix::DetachLoop(device) => loopdev::detach(device)?,
            Fix::FinishRevert(vdi) => {
                self.finish_revert(op, vdi)?;
            }
            Fix::FinishCompose { vdi, redo } => {
                self.finish_compose(op, vdi, *redo)?;
            }
            Fix::ForgetReceive(snapshot) => {
                op.meta.receiving.retain(|r| &r.snapshot != snapshot);
                op.save()?;
            }
            Fix::StopExport(vdi) => crate::engine::datapath_nbd::stop(&op.entry.uuid, vdi),
            Fix::EndMirror(vdi) => mirrors::end(&op.entry.uuid, vdi)?,
            Fix::Unmount(id) => crate::engine::share::holders::settle(id)?,
            Fix::FreeThinDevice(id) => thin::delete_thin(&vg, &op.entry.pool, *id)?,
            Fix::TurnOnZeroing(vg_pool) => self.turn_on_zeroing(vg_pool)?,
            Fix::CopyToRegistry(truth) => self.replace_entry(truth.clone())?,
        }
        Ok(())
    }

    /// LVM scans every block device: without a filter rejecting thinsr's devices, a VM's PVs
    /// inside a disk or a template show up on the host (as duplicates, once cloned).
    fn lvm_filter_warning(&self) -> Option<String> {
        let out = self.lvm.run(&cmd::config("devices/global_filter")).ok()?;
        let rejects = out.contains("r|^/dev/mapper/thinsr-|") && out.contains("r|^/dev/nbd|");
        // Accepting everything also accepts the /dev/dm-N names of thinsr's devices.
        (!rejects || out.contains("a|.*|")).then(|| {
            format!(
                "LVM scans thinsr's devices ({}): a VM's PVs inside a disk would appear on the host; set devices/global_filter = {LVM_FILTER} in /etc/lvm/lvm.conf (without an \"a|.*|\" entry)",
                out.trim()
            )
        })
    }
}

impl Ctx {
    /// `pool check`: thin_check on a metadata snapshot of the live pool, or on the metadata
    /// itself when the pool is inactive.
    pub fn pool_check(&self, key: Option<&str>) -> Result<String> {
        let e = self.entry(key)?;
        let vg = self.lvm.report_vg(&e.vg)?;
        let lv = crate::engine::pool::pool_lv(&vg, &e)?;
        let check = |args: &[&str]| -> Result<String> {
            let out = tool::output("thin_check", args)?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Ok(text)
            } else {
                Err(Error::PoolCheckFailed {
                    pool: format!("{}/{}", vg.name, lv.name),
                    output: text.trim().to_string(),
                })
            }
        };
        if lv.active {
            let old = thin::tools_version().filter(|v| *v < (0, 9, 0));
            thin::with_metadata_snapshot(&vg.name, &lv.name, |tmeta| match old {
                None => check(&["-m", tmeta]),
                // thin_check before 0.9.0 (CentOS 7's 0.7.3 to 0.8.5 on XCP-ng) has no
                // --metadata-snap: read the snapshot with thinsr's own reader, which
                // checks the superblock and every block of the device-details tree.
                Some((a, b, c)) => thin::details::read(std::path::Path::new(tmeta))
                    .map(|d| {
                        format!(
                            "thin_check {a}.{b}.{c} cannot check a live pool (--metadata-snap needs 0.9.0): thinsr's own reader checked the metadata snapshot's superblock and device-details tree ({} thin devices), every block's checksum; the mapping trees were not walked. For a full check, detach the SR and run 'thinsr pool check' again (thin_check on the inactive metadata).",
                            d.mapped_blocks.len()
                        )
                    })
                    .map_err(|e| Error::PoolCheckFailed {
                        pool: format!("{}/{}", vg.name, lv.name),
                        output: e.to_string(),
                    }),
            })?
            .ok_or_else(|| {
                Error::DmFailed(format!("the pool {}/{} has no dm device", vg.name, lv.name))
            })
        } else {
            let tmeta = [LvPath::new(&vg.name, &format!("{}_tmeta", lv.name).into())];
            self.lvm.run(&cmd::activate(&tmeta, Activate::Sr))?;
            let result = check(&[&format!("/dev/{}", tmeta[0])]);
            self.lvm.run(&cmd::activate(&tmeta, Activate::Off))?;
            result
        }
    }
}
