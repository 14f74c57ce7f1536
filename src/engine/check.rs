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

use std::collections::HashSet;

use serde::Serialize;

use crate::engine::context::{ours, Ctx};
use crate::engine::datapath::{local_key, readers};
use crate::engine::meta::{Pending, SrMeta, VdiKind, VdiMeta};
use crate::error::{Error, Result};
use crate::host::lvm::{strings, Vg, TAG_ORIGIN, TAG_VDI};
use crate::host::{dm, thin, tool};
use crate::progress::Progress;
use crate::units::Bytes;

/// The host filter that keeps LVM off thinsr's devices (README, "Install on a host").
pub const LVM_FILTER: &str = r#"[ "r|^/dev/mapper/thinsr-|", "r|^/dev/nbd|" ]"#;

#[derive(Debug, Serialize)]
pub struct Finding {
    /// missing_lv, renamed_lv, incomplete_zeroing, orphan_thin_lv, orphan_lv, stale_device,
    /// orphan_device, dead_origin, pool, revert_unfinished, data_destroy_unfinished,
    /// missing_block_map, orphan_block_map, unzeroed_pool.
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

/// What `--repair` does for a finding whose fix needs `--yes`, saying so when it is missing.
fn with_yes(action: &str, repair: bool, yes: bool) -> String {
    if repair && !yes {
        format!("{action} (needs --yes)")
    } else {
        action.to_string()
    }
}

impl CheckReport {
    /// True when nothing is left to repair.
    pub fn clean(&self) -> bool {
        self.findings.iter().all(|f| f.repaired)
    }
}

impl Ctx {
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
                // Its image lives outside the VG; only its cache is ours.
                if let Some(c) = v.local.clone().filter(|c| vg.lv(c).is_none()) {
                    findings.push(Finding {
                        kind: "missing_local_copy",
                        subject: format!("template '{}' ({})", v.name, v.uuid),
                        problem: format!("its local copy LV {}/{c} is gone", vg.name),
                        repair: "serve it from its image ('template localize' copies it again)"
                            .into(),
                        repaired: repair,
                    });
                    if repair {
                        v.local = None;
                        changed = true;
                    }
                }
                if let Some(c) = v.cache.clone().filter(|c| vg.lv(c).is_none()) {
                    findings.push(Finding {
                        kind: "missing_cache",
                        subject: format!("template '{}' ({})", v.name, v.uuid),
                        problem: format!("its cache LV {}/{c} is gone", vg.name),
                        repair: "serve it uncached ('template cache on' makes a new cache)".into(),
                        repaired: repair,
                    });
                    if repair {
                        v.cache = None;
                        changed = true;
                    }
                }
                keep.push(v);
                continue;
            }
            if v.cbt_map.is_some() || v.reverting.is_some() {
                // Data-destroyed, or mid-revert: their LVs are the CBT rules' (cbt.rs).
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
                    } else {
                        format!("{}, then import again", with_yes("remove it", repair, yes))
                    },
                    repaired: remove,
                });
                if remove {
                    self.remove_lv(&format!("{}/{}", vg.name, lv.name))?;
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
                        cache: None,
                        local: None,
                        cbt: false,
                        cbt_map: None,
                        reverting: None,
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
                    repair: with_yes("remove it", repair, yes),
                    repaired: remove,
                });
                if remove {
                    self.remove_lv(&format!("{}/{}", vg.name, lv.name))?;
                    removed.insert(lv.name.clone());
                }
            }
        }

        for lv in ours(&vg, &entry.uuid) {
            let (template, kind, what) = match (
                lv.tag_value(crate::host::lvm::TAG_CACHE),
                lv.tag_value(crate::host::lvm::TAG_LOCAL),
            ) {
                (Some(t), _) => (t, "orphan_cache", "a cache"),
                (None, Some(t)) => (t, "orphan_local_copy", "a local copy"),
                (None, None) => continue,
            };
            let wanted = op.meta.vdi(template).is_some_and(|t| {
                let name = Some(lv.name.as_str());
                t.cache.as_deref() == name || t.local.as_deref() == name
            });
            if wanted || lv.open {
                continue;
            }
            // A cache or local copy holds copies of its template only: nothing is lost
            // removing it.
            findings.push(Finding {
                kind,
                subject: format!("LV {}/{}", vg.name, lv.name),
                problem: format!(
                    "{what} of template {template} that no template uses (a cache on, off, localize or forget was interrupted)"
                ),
                repair: "remove it (it holds only copies of the template)".into(),
                repaired: repair,
            });
            if repair {
                self.remove_lv(&format!("{}/{}", vg.name, lv.name))?;
                removed.insert(lv.name.clone());
            }
        }

        findings.extend(self.datapath_findings(&op.meta, &vg, &entry.uuid, repair, yes)?);
        let cbt = self.cbt_findings(&mut op, &vg, repair, &mut removed)?;
        // A finished revert made a thin LV (by the old one's name) that the report above
        // does not know: without a fresh one, its thin device would pass for one LVM does
        // not know. A fresh report has none of the LVs removed so far.
        let vg = match cbt.iter().any(|f| f.repaired) {
            true => {
                removed.clear();
                self.lvm.report_vg(&entry.vg)?
            }
            false => vg,
        };
        findings.extend(cbt);
        findings.extend(self.thin_id_findings(
            &vg,
            &removed,
            &entry.pool,
            op.meta.pool_owned,
            repair,
            yes,
        )?);

        if let Some(pool) = vg.lv(&entry.pool).filter(|p| !p.zeroes_new_blocks()) {
            // Turned off after thinsr made or adopted it (`lvchange --zero n`): every new
            // VDI would read what its blocks held before.
            let vg_pool = format!("{}/{}", vg.name, pool.name);
            let owned = op.meta.pool_owned;
            let fix = repair && (owned || yes);
            findings.push(Finding {
                kind: "unzeroed_pool",
                subject: format!("thin pool {vg_pool}"),
                problem: "it does not zero new blocks: a new VDI can show the disk's old bytes or a destroyed VDI's".into(),
                repair: if owned {
                    "turn zeroing on (lvchange --zero y)".into()
                } else {
                    with_yes("turn zeroing on in the admin's pool (lvchange --zero y)", repair, yes)
                },
                repaired: fix,
            });
            if fix {
                self.turn_on_zeroing(&vg_pool)?;
            }
        }
        let status = crate::host::dm::pool_status(&vg.name, &entry.pool)?;
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
        // The metadata is the SR's truth; the host's registry copies it (a rename that
        // crashed between the two leaves the old name here).
        let truth = crate::engine::registry::Entry::from_meta(&op.meta, &entry.vg, &entry.meta_lv);
        if truth != entry {
            findings.push(Finding {
                kind: "registry_stale",
                subject: format!("SR '{}' in this host's registry", entry.name),
                problem: format!(
                    "the registry says '{}', the SR's metadata '{}' (a rename or change was interrupted)",
                    entry.name, truth.name
                ),
                repair: "copy the metadata into the registry".into(),
                repaired: repair,
            });
            if repair {
                self.replace_entry(truth)?;
            }
        }
        Ok(CheckReport {
            sr: entry.uuid.clone(),
            name: op.meta.name.clone(),
            findings,
            warnings: self.lvm_filter_warning().into_iter().collect(),
        })
    }

    /// Thin devices the pool holds that no LV names (an lvcreate or lvremove interrupted
    /// between the kernel and LVM's metadata: space lost for good unless freed), and LVs
    /// whose thin device the pool does not hold (their data is gone). Read from the
    /// pool's own metadata, so only while the pool is active.
    fn thin_id_findings(
        &self,
        vg: &Vg,
        removed: &HashSet<String>,
        pool: &str,
        pool_owned: bool,
        repair: bool,
        yes: bool,
    ) -> Result<Vec<Finding>> {
        let Some(kernel) = crate::host::thin::mapped_bytes(&vg.name, pool)? else {
            return Ok(vec![]);
        };
        let lvm: std::collections::HashMap<u32, &str> = vg
            .lvs
            .iter()
            .filter(|l| l.pool == pool && !removed.contains(&l.name))
            .filter_map(|l| Some((l.thin_id?, l.name.as_str())))
            .collect();
        let mut findings = Vec::new();
        let mut unknown: Vec<(u32, u64)> = kernel
            .iter()
            .filter(|(id, _)| !lvm.contains_key(id))
            .map(|(id, b)| (*id, *b))
            .collect();
        unknown.sort_unstable();
        for (id, bytes) in unknown {
            // In the admin's own pool an lvcreate of theirs may be under way: report only.
            let remove = repair && yes && pool_owned;
            findings.push(Finding {
                kind: "unknown_thin_device",
                subject: format!("thin device {id} of pool {}/{pool}", vg.name),
                problem: format!(
                    "it holds {} but no LV names it (an lvcreate or lvremove was interrupted)",
                    Bytes(bytes)
                ),
                repair: if !pool_owned {
                    "none: the pool is the admin's; check 'lvs' and 'thin_ls'".into()
                } else {
                    with_yes("free it", repair, yes)
                },
                repaired: remove,
            });
            if remove {
                crate::host::thin::delete_thin(&vg.name, pool, id)?;
            }
        }
        let mut missing: Vec<(&u32, &&str)> = lvm
            .iter()
            .filter(|(id, _)| !kernel.contains_key(id))
            .collect();
        missing.sort_unstable();
        for (id, lv) in missing {
            findings.push(Finding {
                kind: "missing_thin_device",
                subject: format!("LV {}/{lv}", vg.name),
                problem: format!("its thin device {id} is not in the pool: its data is gone"),
                repair: "none: restore it from a backup (thinsr export) and remove the LV".into(),
                repaired: false,
            });
        }
        Ok(findings)
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
        let locals: HashSet<String> = meta
            .vdis
            .iter()
            .filter(|v| v.is_template())
            .map(|v| local_key(&v.uuid))
            .collect();
        uuids.extend(locals.iter().cloned());
        let devices = crate::host::dm::our_devices_or_none();
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
            } else if locals.contains(&d.vdi) {
                // A template's local copy serves its clones; none reading it means a
                // command stopped between removing the last clone's device and this one.
                if readers(&d.path(), &devices) == 0 && d.open_count == 0 {
                    findings.push(Finding {
                        kind: "idle_device",
                        subject,
                        problem: "serves a template's local copy that no clone reads".into(),
                        repair: "remove it".into(),
                        repaired: repair,
                    });
                    if repair {
                        dm::remove(&d.name, &d.vdi)?;
                    }
                }
            } else if meta.vdi(&d.vdi).is_none() {
                let remove = repair && yes && d.open_count == 0;
                findings.push(Finding {
                    kind: "orphan_device",
                    subject,
                    problem: format!("serves VDI {} which the metadata does not know", d.vdi),
                    repair: if d.open_count > 0 {
                        "none now: it is open; stop what uses it".into()
                    } else {
                        with_yes("remove it", repair, yes)
                    },
                    repaired: remove,
                });
                if remove {
                    dm::remove(&d.name, &d.vdi)?;
                }
            }
        }
        for t in meta.vdis.iter().filter(|v| v.is_template()) {
            let Some(users) = crate::engine::datapath::dead_origin(&t.uuid, &devices) else {
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
        let templates: Vec<&VdiMeta> = meta.vdis.iter().filter(|v| v.is_template()).collect();
        for (device, file) in crate::engine::datapath::stray_loops(&templates) {
            let held = crate::host::loopdev::has_holders(&device);
            let detach = repair && yes && !held;
            findings.push(Finding {
                kind: "stray_loop",
                subject: format!("loop device {}", device.display()),
                problem: format!(
                    "reads the template image {} but no attachment of thinsr's names it",
                    file.display()
                ),
                repair: if held {
                    "none now: a device reads it; detach the clones using it".into()
                } else {
                    with_yes("detach it", repair, yes)
                },
                repaired: detach,
            });
            if detach {
                crate::host::loopdev::detach(&device)?;
            }
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
            let tmeta = format!("{}/{}_tmeta", vg.name, lv.name);
            self.lvm.run(&strings(&["lvchange", "-ay", "-y", &tmeta]))?;
            let result = check(&[&format!("/dev/{tmeta}")]);
            self.lvm.run(&strings(&["lvchange", "-an", &tmeta]))?;
            result
        }
    }
}
