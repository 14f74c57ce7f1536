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
//! - a template attachment whose server died is cleared when no clone reads it; clones
//!   still reading it must be detached and attached again.

use std::collections::HashSet;

use serde::Serialize;

use crate::dm;
use crate::error::Result;
use crate::lvm::{strings, Vg, TAG_ORIGIN, TAG_VDI};
use crate::meta::{Pending, SrMeta, VdiKind, VdiMeta};
use crate::progress::Progress;
use crate::sr::{ours, Ctx};
use crate::units::Bytes;

/// The host filter that keeps LVM off thinsr's devices (README, "Install on a host").
pub const LVM_FILTER: &str = r#"[ "r|^/dev/mapper/thinsr-|", "r|^/dev/nbd|" ]"#;

#[derive(Debug, Serialize)]
pub struct Finding {
    /// missing_lv, renamed_lv, incomplete_zeroing, orphan_thin_lv, orphan_lv, stale_device,
    /// orphan_device, dead_origin, pool.
    pub kind: &'static str,
    pub subject: String,
    pub problem: String,
    /// What --repair does about it (or "none": the admin must act).
    pub repair: String,
    pub repaired: bool,
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub sr: String,
    pub name: String,
    pub findings: Vec<Finding>,
    /// What the admin should change on the host; nothing thinsr repairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// True when nothing is left to repair.
    pub fn clean(&self) -> bool {
        self.findings.iter().all(|f| f.repaired)
    }
}

impl Ctx {
    /// Removes an LV that `sr check` found to hold nothing wanted.
    fn remove_lv(&self, vg: &str, lv: &str) -> Result<()> {
        self.lvm
            .run(&strings(&["lvremove", "-f", &format!("{vg}/{lv}")]))
            .map(drop)
    }

    pub fn sr_check(
        &self,
        key: Option<&str>,
        repair: bool,
        yes: bool,
        progress: &dyn Progress,
    ) -> Result<CheckReport> {
        let entry = self.entry(key)?;
        let mut op = self.lock_sr(&entry)?;
        let vg = self.lvm.report_vg(&entry.vg)?;
        let mut findings = Vec::new();
        let mut changed = false;
        let mut removed = HashSet::new();

        let mut keep = Vec::new();
        for mut v in std::mem::take(&mut op.meta.vdis) {
            if v.is_template() {
                // Its image lives outside the VG.
                keep.push(v);
                continue;
            }
            let subject = format!("VDI '{}' ({})", v.name, v.uuid);
            let Some(lv) = vg.vdi_lv(&v.uuid) else {
                findings.push(Finding {
                    kind: "missing_lv",
                    subject,
                    problem: format!(
                        "its LV {}/{} is gone (a destroy was interrupted)",
                        vg.name, v.lv
                    ),
                    repair: "forget the entry".into(),
                    repaired: repair,
                });
                changed |= repair;
                if !repair {
                    keep.push(v);
                }
                continue;
            };
            if lv.name != v.lv {
                findings.push(Finding {
                    kind: "renamed_lv",
                    subject: subject.clone(),
                    problem: format!(
                        "its LV is {}/{}, the metadata says {}",
                        vg.name, lv.name, v.lv
                    ),
                    repair: "record the LV's name".into(),
                    repaired: repair,
                });
                if repair {
                    v.lv = lv.name.clone();
                    changed = true;
                }
            }
            if let Some(Pending::Zeroing { from }) = v.pending {
                let mut f = Finding {
                    kind: "incomplete_zeroing",
                    subject: subject.clone(),
                    problem: format!(
                        "preallocation stopped: {} of {} from {from} on are not zeroed yet",
                        Bytes(lv.size.0.saturating_sub(from.0)),
                        lv.size
                    ),
                    repair: "zero the rest, then allow attaching it".into(),
                    repaired: false,
                };
                if lv.open {
                    f.repair = "none now: it is open, perhaps still being zeroed".into();
                } else if repair {
                    let what = format!("zeroing {}", v.name);
                    self.zero_lv(&vg.name, &lv.name, from, lv.size, &what, progress)?;
                    v.pending = None;
                    v.size = lv.size;
                    f.repaired = true;
                    changed = true;
                }
                findings.push(f);
            }
            if v.pending == Some(Pending::Importing) {
                let remove = repair && yes && !lv.open;
                findings.push(Finding {
                    kind: "incomplete_import",
                    subject,
                    problem: "an import stopped before the end: its data is incomplete".into(),
                    repair: if lv.open {
                        "none now: it is open, perhaps still being imported".into()
                    } else if repair && !yes {
                        "remove it (needs --yes), then import again".into()
                    } else {
                        "remove it, then import again".into()
                    },
                    repaired: remove,
                });
                if remove {
                    self.remove_lv(&vg.name, &lv.name)?;
                    removed.insert(lv.name.clone());
                    changed = true;
                    continue;
                }
            }
            keep.push(v);
        }
        op.meta.vdis = keep;

        for lv in ours(&vg, &entry.uuid) {
            let Some(uuid) = lv.tag_value(TAG_VDI) else {
                continue;
            };
            if removed.contains(&lv.name) {
                continue; // gone since the report
            }
            if op.meta.vdi(uuid).is_some() {
                continue;
            }
            let subject = format!("LV {}/{}", vg.name, lv.name);
            if !lv.pool.is_empty() {
                findings.push(Finding {
                    kind: "orphan_thin_lv",
                    subject,
                    problem: format!(
                        "tagged as VDI {uuid} but not in the metadata (a create was interrupted)"
                    ),
                    repair: format!("adopt it as VDI '{}'", lv.name),
                    repaired: repair,
                });
                if repair {
                    let read_only = lv.attr.as_bytes().get(1) == Some(&b'r');
                    op.meta.vdis.push(VdiMeta {
                        uuid: uuid.to_string(),
                        name: lv.name.clone(),
                        description: String::new(),
                        kind: if read_only {
                            VdiKind::Snapshot
                        } else {
                            VdiKind::Thin
                        },
                        lv: lv.name.clone(),
                        size: lv.size,
                        parent: None,
                        created: 0,
                        keys: Default::default(),
                        pending: None,
                        image: None,
                        origin: lv.tag_value(TAG_ORIGIN).map(str::to_string),
                    });
                    changed = true;
                }
            } else {
                let remove = repair && yes;
                findings.push(Finding {
                    kind: "orphan_lv",
                    subject,
                    problem: format!(
                        "tagged as VDI {uuid} but not in the metadata: a preallocation interrupted before it was recorded, never zeroed nor used"
                    ),
                    repair: if repair && !yes {
                        "remove it (needs --yes)".into()
                    } else {
                        "remove it".into()
                    },
                    repaired: remove,
                });
                if remove {
                    self.remove_lv(&vg.name, &lv.name)?;
                }
            }
        }

        findings.extend(self.datapath_findings(&op.meta, &vg, &entry.uuid, repair, yes)?);

        let status = crate::dm::pool_status(&vg.name, &entry.pool)?;
        if let Some(t) = status.and_then(|k| k.trouble()) {
            findings.push(Finding {
                kind: "pool",
                subject: format!("thin pool {}/{}", vg.name, entry.pool),
                problem: format!("it is {t}"),
                repair: format!("none here: see 'thinsr pool check {}'", vg.name),
                repaired: false,
            });
        }
        if changed {
            op.save()?;
        }
        Ok(CheckReport {
            sr: entry.uuid.clone(),
            name: op.meta.name.clone(),
            findings,
            warnings: self.lvm_filter_warning().into_iter().collect(),
        })
    }

    /// Devices of ours and template attachments of this SR.
    fn datapath_findings(
        &self,
        meta: &SrMeta,
        vg: &Vg,
        sr: &str,
        repair: bool,
        yes: bool,
    ) -> Result<Vec<Finding>> {
        let mut findings = Vec::new();
        let mut uuids: HashSet<String> = meta.vdis.iter().map(|v| v.uuid.clone()).collect();
        uuids.extend(ours(vg, sr).filter_map(|l| l.tag_value(TAG_VDI).map(str::to_string)));
        let devices = crate::datapath::our_devices();
        for d in &devices {
            if !uuids.contains(&d.vdi) {
                continue;
            }
            let subject = format!("device {}", d.path().display());
            if !d.live {
                let mut f = Finding {
                    kind: "stale_device",
                    subject,
                    problem: "left suspended or without a table by an interrupted command".into(),
                    repair: "resume it, or remove it when it has no table".into(),
                    repaired: false,
                };
                if repair && !dm::revive(&d.name)? {
                    dm::remove(&d.name, &d.vdi)?;
                }
                f.repaired = repair;
                findings.push(f);
            } else if meta.vdi(&d.vdi).is_none() {
                let remove = repair && yes && d.open_count == 0;
                findings.push(Finding {
                    kind: "orphan_device",
                    subject,
                    problem: format!("serves VDI {} which the metadata does not know", d.vdi),
                    repair: if d.open_count > 0 {
                        "none now: it is open; stop what uses it".into()
                    } else if repair && !yes {
                        "remove it (needs --yes)".into()
                    } else {
                        "remove it".into()
                    },
                    repaired: remove,
                });
                if remove {
                    dm::remove(&d.name, &d.vdi)?;
                }
            }
        }
        for t in meta.vdis.iter().filter(|v| v.is_template()) {
            let Some(users) = crate::datapath::dead_origin(&t.uuid, &devices) else {
                continue;
            };
            let mut f = Finding {
                kind: "dead_origin",
                subject: format!("template '{}' ({})", t.name, t.uuid),
                problem: if users > 0 {
                    format!(
                        "the server of its image is gone: {users} attached clone(s) cannot read it"
                    )
                } else {
                    "the server of its image is gone".into()
                },
                // An NBD device its readers hold open cannot take a new server: the
                // kernel keeps failing their reads (checked on 6.1).
                repair: if users > 0 {
                    "none here: detach those clones (stop their VMs) and attach them again".into()
                } else {
                    "clear the attachment".into()
                },
                repaired: false,
            };
            if repair && users == 0 {
                self.release_origin_if_unused(&t.uuid)?;
                f.repaired = true;
            }
            findings.push(f);
        }
        Ok(findings)
    }

    /// LVM scans every block device: without a filter rejecting thinsr's devices, a VM's PVs
    /// inside a disk or a template show up on the host (as duplicates, once cloned).
    fn lvm_filter_warning(&self) -> Option<String> {
        let out = self
            .lvm
            .run(&strings(&[
                "lvmconfig",
                "--typeconfig",
                "full",
                "devices/global_filter",
            ]))
            .ok()?;
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
