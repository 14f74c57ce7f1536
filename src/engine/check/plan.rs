//! `sr check`'s rules, as a pure function of what was read (`facts.rs`): each rule turns a
//! state an interrupted command can leave into a finding, and with `--repair` into the
//! metadata's entries as they will be and the host actions that get there (`apply` in
//! `mod.rs` carries them out). Nothing here touches the host, so every rule has a unit test.

use std::collections::HashSet;

use super::facts::Facts;
use super::finding::{Finding, FindingKind as K, Fix};
use crate::engine::context::ours;
use crate::engine::datapath::local_key;
use crate::engine::meta::{Pending, VdiKind, VdiMeta};
use crate::engine::registry::Entry;
use crate::host::lvm::{
    TAG_CACHE, TAG_CBT, TAG_COMPOSE, TAG_LOCAL, TAG_ORIGIN, TAG_RECEIVE, TAG_SR, TAG_VDI,
};
use crate::ids::{LvName, LvPath, VdiUuid};
use crate::units::Bytes;

/// What the admin asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub repair: bool,
    /// Also what removes data or touches what may be in use.
    pub yes: bool,
}

/// What `--repair` does for a finding whose fix needs `--yes`, saying so when it is missing.
fn with_yes(action: &str, m: Mode) -> String {
    if m.repair && !m.yes {
        format!("{action} (needs --yes)")
    } else {
        action.to_string()
    }
}

#[derive(Debug)]
pub struct Plan {
    pub findings: Vec<Finding>,
    /// The metadata's entries once repaired, when a repair changes them.
    pub vdis: Option<Vec<VdiMeta>>,
}

/// The rules, in the order their repairs run.
pub fn plan(f: &Facts, m: Mode) -> Plan {
    let mut findings = Vec::new();
    let (mut vdis, mut changed) = entries(f, m, &mut findings);
    let adopted = orphan_lvs(f, m, &mut findings);
    changed |= !adopted.is_empty();
    vdis.extend(adopted);
    orphan_copies(f, m, &vdis, &mut findings);
    devices(f, m, &vdis, &mut findings);
    cbt(f, m, &mut findings);
    compose(f, m, &mut findings);
    super::receives::receives(f, m.repair, &mut findings);
    exports(f, m, &mut findings);
    super::mirrors::mirrors(f, m.repair, &mut findings);
    super::shares::shares(f, m.repair, &mut findings);
    thin_devices(f, m, &mut findings);
    pool(f, m, &mut findings);
    registry(f, m, &mut findings);
    Plan {
        findings,
        vdis: changed.then_some(vdis),
    }
}

fn path(f: &Facts, lv: &LvName) -> LvPath {
    LvPath::new(&f.vg.name, lv)
}

fn vg_lv(f: &Facts, lv: &str) -> String {
    format!("{}/{lv}", f.vg.name)
}

/// Each entry against its LV. Returns the entries as repaired, and whether any changed.
fn entries(f: &Facts, m: Mode, out: &mut Vec<Finding>) -> (Vec<VdiMeta>, bool) {
    let (vg, repair) = (&f.vg, m.repair);
    let mut changed = false;
    let mut keep = Vec::new();
    for v in &f.meta.vdis {
        let mut v = v.clone();
        if v.is_template() {
            // Its image lives outside the VG; only its cache is ours.
            let subject = format!("template '{}' ({})", v.name, v.uuid);
            if let Some(c) = v.local.clone().filter(|c| vg.lv(c).is_none()) {
                out.push(
                    Finding::new(
                        K::MissingLocalCopy,
                        &subject,
                        format!("its local copy LV {} is gone", vg_lv(f, &c)),
                        "serve it from its image ('template localize' copies it again)",
                    )
                    .fixed_by(repair, vec![]),
                );
                if repair {
                    v.local = None;
                    changed = true;
                }
            }
            if let Some(c) = v.cache.clone().filter(|c| vg.lv(c).is_none()) {
                out.push(
                    Finding::new(
                        K::MissingCache,
                        &subject,
                        format!("its cache LV {} is gone", vg_lv(f, &c)),
                        "serve it uncached ('template cache on' makes a new cache)",
                    )
                    .fixed_by(repair, vec![]),
                );
                if repair {
                    v.cache = None;
                    changed = true;
                }
            }
            keep.push(v);
            continue;
        }
        let composed_onto = f
            .meta
            .vdis
            .iter()
            .any(|c| c.composing.as_ref().is_some_and(|k| k.parent == v.uuid));
        if v.cbt_map.is_some() || v.reverting.is_some() || v.composing.is_some() || composed_onto {
            // Data-destroyed, mid-revert or mid-compose: their LVs are those rules'.
            keep.push(v);
            continue;
        }
        let subject = format!("VDI '{}' ({})", v.name, v.uuid);
        let Some(lv) = vg.vdi_lv(&v.uuid) else {
            out.push(
                Finding::new(
                    K::MissingLv,
                    subject,
                    format!(
                        "its LV {} is gone (a destroy was interrupted)",
                        vg_lv(f, &v.lv)
                    ),
                    "forget the entry",
                )
                .fixed_by(repair, vec![]),
            );
            changed |= repair;
            if !repair {
                keep.push(v);
            }
            continue;
        };
        if lv.name != v.lv {
            out.push(
                Finding::new(
                    K::RenamedLv,
                    &subject,
                    format!(
                        "its LV is {}, the metadata says {}",
                        vg_lv(f, &lv.name),
                        v.lv
                    ),
                    "record the LV's name",
                )
                .fixed_by(repair, vec![]),
            );
            if repair {
                v.lv = lv.name.clone();
                changed = true;
            }
        }
        if let Some(Pending::Zeroing { from }) = v.pending {
            let problem = format!(
                "preallocation stopped: {} of {} from {from} on are not zeroed yet",
                Bytes(lv.size.0.saturating_sub(from.0)),
                lv.size
            );
            if lv.open {
                out.push(Finding::new(
                    K::IncompleteZeroing,
                    &subject,
                    problem,
                    "none now: it is open, perhaps still being zeroed",
                ));
            } else {
                let zero = Fix::Zero {
                    lv: lv.name.clone(),
                    from,
                    to: lv.size,
                    what: format!("zeroing {}", v.name),
                };
                out.push(
                    Finding::new(
                        K::IncompleteZeroing,
                        &subject,
                        problem,
                        "zero the rest, then allow attaching it",
                    )
                    .fixed_by(repair, vec![zero]),
                );
                if repair {
                    v.pending = None;
                    v.size = lv.size;
                    changed = true;
                }
            }
        }
        if v.pending == Some(Pending::Importing) {
            let remove = repair && m.yes && !lv.open;
            let action = if lv.open {
                "none now: it is open, perhaps still being imported".into()
            } else {
                format!("{}, then import again", with_yes("remove it", m))
            };
            out.push(
                Finding::new(
                    K::IncompleteImport,
                    subject,
                    "an import stopped before the end: its data is incomplete",
                    action,
                )
                .fixed_by(remove, vec![Fix::RemoveLv(path(f, &lv.name))]),
            );
            if remove {
                changed = true;
                continue;
            }
        }
        keep.push(v);
    }
    (keep, changed)
}

/// Tagged VDI LVs no entry names (in the metadata as read: an entry a repair above drops
/// still names its LV, which that repair removes).
fn orphan_lvs(f: &Facts, m: Mode, out: &mut Vec<Finding>) -> Vec<VdiMeta> {
    let mut adopted = Vec::new();
    for lv in ours(&f.vg, &f.entry.uuid) {
        let Some(uuid) = lv.tag_value(TAG_VDI) else {
            continue;
        };
        if f.meta.vdi(uuid).is_some() || lv.tag_value(TAG_RECEIVE).is_some() {
            // A receive's LV without its entry is that rule's (receives.rs).
            continue;
        }
        let subject = format!("LV {}", vg_lv(f, &lv.name));
        if !lv.pool.is_empty() {
            out.push(
                Finding::new(
                    K::OrphanThinLv,
                    subject,
                    format!(
                        "tagged as VDI {uuid} but not in the metadata (a create was interrupted)"
                    ),
                    format!("adopt it as VDI '{}'", lv.name),
                )
                .fixed_by(m.repair, vec![]),
            );
            if m.repair {
                let read_only = lv.attr.as_bytes().get(1) == Some(&b'r');
                let kind = if read_only {
                    VdiKind::Snapshot
                } else {
                    VdiKind::Thin
                };
                adopted.push(VdiMeta {
                    origin: lv.tag_value(TAG_ORIGIN).map(VdiUuid::from),
                    ..VdiMeta::new(&uuid.into(), &lv.name, kind, &lv.name, lv.size)
                });
            }
        } else {
            let remove = m.repair && m.yes;
            out.push(
                Finding::new(
                    K::OrphanLv,
                    subject,
                    format!(
                        "tagged as VDI {uuid} but not in the metadata: a preallocation interrupted before it was recorded, never zeroed nor used"
                    ),
                    with_yes("remove it", m),
                )
                .fixed_by(remove, vec![Fix::RemoveLv(path(f, &lv.name))]),
            );
        }
    }
    adopted
}

/// The entry of `uuid` among the entries as repaired.
fn entry<'a>(vdis: &'a [VdiMeta], uuid: &str) -> Option<&'a VdiMeta> {
    vdis.iter().find(|v| v.uuid == uuid)
}

/// Caches and local copies no template uses. They hold copies of their template only:
/// nothing is lost removing them.
fn orphan_copies(f: &Facts, m: Mode, vdis: &[VdiMeta], out: &mut Vec<Finding>) {
    for lv in ours(&f.vg, &f.entry.uuid) {
        let (template, kind, what) = match (lv.tag_value(TAG_CACHE), lv.tag_value(TAG_LOCAL)) {
            (Some(t), _) => (t, K::OrphanCache, "a cache"),
            (None, Some(t)) => (t, K::OrphanLocalCopy, "a local copy"),
            (None, None) => continue,
        };
        let wanted = entry(vdis, template).is_some_and(|t| {
            let name = Some(lv.name.as_str());
            t.cache.as_deref() == name
                || t.local.as_deref() == name
                || t.lazy.as_ref().map(|l| l.lv.as_str()) == name
        });
        if wanted || lv.open {
            continue;
        }
        out.push(
            Finding::new(
                kind,
                format!("LV {}", vg_lv(f, &lv.name)),
                format!(
                    "{what} of template {template} that no template uses (a cache on, off, localize or forget was interrupted)"
                ),
                "remove it (it holds only copies of the template)",
            )
            .fixed_by(m.repair, vec![Fix::RemoveLv(path(f, &lv.name))]),
        );
    }
}

/// Devices of thinsr's and template attachments of this SR.
fn devices(f: &Facts, m: Mode, vdis: &[VdiMeta], out: &mut Vec<Finding>) {
    let mut uuids: HashSet<String> = vdis.iter().map(|v| v.uuid.to_string()).collect();
    uuids.extend(
        ours(&f.vg, &f.entry.uuid).filter_map(|l| l.tag_value(TAG_VDI).map(str::to_string)),
    );
    let locals: HashSet<String> = vdis
        .iter()
        .filter(|v| v.is_template())
        .map(|v| local_key(&v.uuid))
        .collect();
    uuids.extend(locals.iter().cloned());
    for d in &f.devices {
        let (dev, name) = (&d.dev, d.dev.name.clone());
        if !uuids.contains(&dev.vdi) {
            continue;
        }
        let subject = format!("device {}", dev.path().display());
        let vdi = dev.vdi.clone();
        if !dev.live {
            out.push(
                Finding::new(
                    K::StaleDevice,
                    subject,
                    "left suspended or without a table by an interrupted command",
                    "resume it, or remove it when it has no table",
                )
                .fixed_by(m.repair, vec![Fix::ReviveOrRemove { device: name, vdi }]),
            );
        } else if locals.contains(&dev.vdi) {
            // A template's local copy serves its clones; none reading it means a command
            // stopped between removing the last clone's device and this one.
            if d.readers == 0 && dev.open_count == 0 {
                out.push(
                    Finding::new(
                        K::IdleDevice,
                        subject,
                        "serves a template's local copy that no clone reads",
                        "remove it",
                    )
                    .fixed_by(m.repair, vec![Fix::RemoveDevice { device: name, vdi }]),
                );
            }
        } else if entry(vdis, &dev.vdi).is_none() {
            let remove = m.repair && m.yes && dev.open_count == 0;
            let action = if dev.open_count > 0 {
                "none now: it is open; stop what uses it".into()
            } else {
                with_yes("remove it", m)
            };
            out.push(
                Finding::new(
                    K::OrphanDevice,
                    subject,
                    format!("serves VDI {vdi} which the metadata does not know"),
                    action,
                )
                .fixed_by(remove, vec![Fix::RemoveDevice { device: name, vdi }]),
            );
        }
    }
    for t in vdis.iter().filter(|v| v.is_template()) {
        let Some(&users) = f.dead_origins.get(&t.uuid) else {
            continue;
        };
        let problem = if users > 0 {
            format!("the server of its image is gone: {users} attached clone(s) cannot read it")
        } else {
            "the server of its image is gone".into()
        };
        // An NBD device its readers hold open cannot take a new server: the kernel keeps
        // failing their reads (checked on 6.1).
        let action = if users > 0 {
            "none here: detach those clones (stop their VMs) and attach them again"
        } else {
            "clear the attachment"
        };
        let fix = Fix::ReleaseOrigin(t.uuid.clone());
        out.push(
            Finding::new(
                K::DeadOrigin,
                format!("template '{}' ({})", t.name, t.uuid),
                problem,
                action,
            )
            .fixed_by(m.repair && users == 0, vec![fix]),
        );
    }
    super::shares::changed_sources(f, vdis, out);
    for l in &f.stray_loops {
        let detach = m.repair && m.yes && !l.held;
        let action = if l.held {
            "none now: a device reads it; detach the clones using it".into()
        } else {
            with_yes("detach it", m)
        };
        out.push(
            Finding::new(
                K::StrayLoop,
                format!("loop device {}", l.device.display()),
                format!(
                    "reads the template image {} but no attachment of thinsr's names it",
                    l.file.display()
                ),
                action,
            )
            .fixed_by(detach, vec![Fix::DetachLoop(l.device.clone())]),
        );
    }
}

/// What a crash in a revert or data-destroy left.
fn cbt(f: &Facts, m: Mode, out: &mut Vec<Finding>) {
    let vg = &f.vg;
    for v in &f.meta.vdis {
        let subject = format!("VDI '{}' ({})", v.name, v.uuid);
        if let Some(to) = &v.reverting {
            out.push(
                Finding::new(
                    K::RevertUnfinished,
                    &subject,
                    format!("its revert to snapshot {to} was interrupted"),
                    "finish it (the VDI gets the snapshot's contents, as asked)",
                )
                .fixed_by(m.repair, vec![Fix::FinishRevert(v.uuid.clone())]),
            );
        }
        let Some(map) = &v.cbt_map else { continue };
        if let Some(lv) = vg.vdi_lv(&v.uuid) {
            out.push(
                Finding::new(
                    K::DataDestroyUnfinished,
                    &subject,
                    format!("its data LV {} is still there (a data-destroy was interrupted after its map was saved)", vg_lv(f, &lv.name)),
                    "remove the data LV (its block map is kept)",
                )
                .fixed_by(m.repair, vec![Fix::RemoveLv(path(f, &lv.name))]),
            );
        }
        let kept = vg
            .lvs
            .iter()
            .any(|l| l.name == *map && l.tag_value(TAG_CBT) == Some(&v.uuid));
        if !kept {
            out.push(Finding::new(
                K::MissingBlockMap,
                subject,
                format!(
                    "its saved block map {} is gone: changed blocks against it cannot be listed",
                    vg_lv(f, map)
                ),
                "none: destroy the snapshot ('thinsr vdi destroy'); the next backup is a full one",
            ));
        }
    }
    for l in vg
        .lvs
        .iter()
        .filter(|l| l.tag_value(TAG_SR) == Some(&f.entry.uuid))
    {
        let Some(of) = l.tag_value(TAG_CBT) else {
            continue;
        };
        let wanted = f
            .meta
            .vdi(of)
            .is_some_and(|v| v.cbt_map.as_deref() == Some(l.name.as_str()));
        if wanted {
            continue;
        }
        out.push(
            Finding::new(
                K::OrphanBlockMap,
                format!("LV {}", vg_lv(f, &l.name)),
                format!("a block map saved for snapshot {of}, which no entry names (a data-destroy interrupted before it was recorded, or a destroy after)"),
                "remove it (the snapshot's data, if any, is untouched)",
            )
            .fixed_by(m.repair, vec![Fix::RemoveLv(path(f, &l.name))]),
        );
    }
}

/// Thin devices the pool holds that no LV names (an lvcreate or lvremove interrupted
/// between the kernel and LVM's metadata: space lost for good unless freed), and LVs whose
/// thin device the pool does not hold (their data is gone). The pool's metadata and the
/// LVM report were read together, before any repair.
fn thin_devices(f: &Facts, m: Mode, out: &mut Vec<Finding>) {
    let Some(kernel) = &f.thin_devices else {
        return;
    };
    let (vg, pool, owned) = (&f.vg.name, &f.entry.pool, f.meta.pool_owned);
    let lvm: std::collections::HashMap<u32, &str> =
        f.vg.lvs
            .iter()
            .filter(|l| l.pool == *pool)
            .filter_map(|l| Some((l.thin_id?, l.name.as_str())))
            .collect();
    let mut unknown: Vec<(u32, u64)> = kernel
        .iter()
        .filter(|(id, _)| !lvm.contains_key(id))
        .map(|(id, b)| (*id, *b))
        .collect();
    unknown.sort_unstable();
    for (id, bytes) in unknown {
        // In the admin's own pool an lvcreate of theirs may be under way: report only.
        let action = if owned {
            with_yes("free it", m)
        } else {
            "none: the pool is the admin's; check 'lvs' and 'thin_ls'".into()
        };
        out.push(
            Finding::new(
                K::UnknownThinDevice,
                format!("thin device {id} of pool {vg}/{pool}"),
                format!(
                    "it holds {} but no LV names it (an lvcreate or lvremove was interrupted)",
                    Bytes(bytes)
                ),
                action,
            )
            .fixed_by(m.repair && m.yes && owned, vec![Fix::FreeThinDevice(id)]),
        );
    }
    let mut missing: Vec<(&u32, &&str)> = lvm
        .iter()
        .filter(|(id, _)| !kernel.contains_key(id))
        .collect();
    missing.sort_unstable();
    for (id, lv) in missing {
        out.push(Finding::new(
            K::MissingThinDevice,
            format!("LV {vg}/{lv}"),
            format!("its thin device {id} is not in the pool: its data is gone"),
            "none: restore it from a backup (thinsr export) and remove the LV",
        ));
    }
}

/// The pool: zeroing turned off after thinsr made or adopted it (`lvchange --zero n`: every
/// new VDI would read what its blocks held before), and the kernel's view of its health.
fn pool(f: &Facts, m: Mode, out: &mut Vec<Finding>) {
    if let Some(pool) = f.vg.lv(&f.entry.pool).filter(|p| !p.zeroes_new_blocks()) {
        let vg_pool = vg_lv(f, &pool.name);
        let owned = f.meta.pool_owned;
        let action = if owned {
            "turn zeroing on (lvchange --zero y)".into()
        } else {
            with_yes("turn zeroing on in the admin's pool (lvchange --zero y)", m)
        };
        out.push(
            Finding::new(
                K::UnzeroedPool,
                format!("thin pool {vg_pool}"),
                "it does not zero new blocks: a new VDI can show the disk's old bytes or a destroyed VDI's",
                action,
            )
            .fixed_by(m.repair && (owned || m.yes), vec![Fix::TurnOnZeroing(path(f, &pool.name))]),
        );
    }
    if let Some(t) = &f.pool_trouble {
        out.push(Finding::new(
            K::Pool,
            format!("thin pool {}", vg_lv(f, &f.entry.pool)),
            format!("it is {t}"),
            format!("none here: see 'thinsr pool check {}'", f.vg.name),
        ));
    }
}

/// The metadata is the SR's truth; the host's registry copies it (a rename that crashed
/// between the two leaves the old name there).
fn registry(f: &Facts, m: Mode, out: &mut Vec<Finding>) {
    let e = &f.entry;
    let truth = Entry::from_meta(&f.meta, &e.vg, &e.meta_lv);
    if truth == *e {
        return;
    }
    out.push(
        Finding::new(
            K::RegistryStale,
            format!("SR '{}' in this host's registry", e.name),
            format!(
                "the registry says '{}', the SR's metadata '{}' (a rename or change was interrupted)",
                e.name, truth.name
            ),
            "copy the metadata into the registry",
        )
        .fixed_by(m.repair, vec![Fix::CopyToRegistry(truth)]),
    );
}

/// What a crash in a compose left: the compose itself, and a new LV no compose names.
fn compose(f: &Facts, m: Mode, out: &mut Vec<Finding>) {
    for v in &f.meta.vdis {
        let Some(k) = &v.composing else { continue };
        let forward = k.copied || f.compose_logs.contains(&v.uuid);
        out.push(
            Finding::new(
                K::ComposeUnfinished,
                format!("VDI '{}' ({})", v.name, v.uuid),
                format!(
                    "its compose onto {} was interrupted {} the copy of its writes",
                    k.parent,
                    if k.copied { "after" } else { "before the end of" }
                ),
                if forward {
                    "finish it (the VDI reads the parent's data under its own writes; the parent goes)"
                } else {
                    "undo it: the log of its writes is gone (a reboot since); the VDI and the parent stay as they were"
                },
            )
            .fixed_by(
                m.repair,
                vec![Fix::FinishCompose {
                    vdi: v.uuid.clone(),
                    redo: forward,
                }],
            ),
        );
    }
    for l in ours(&f.vg, &f.entry.uuid) {
        let Some(of) = l.tag_value(TAG_COMPOSE) else {
            continue;
        };
        let wanted = f
            .meta
            .vdi(of)
            .and_then(|v| v.composing.as_ref())
            .is_some_and(|k| k.lv == l.name);
        if wanted {
            continue;
        }
        out.push(
            Finding::new(
                K::OrphanComposeLv,
                format!("LV {}", vg_lv(f, &l.name)),
                format!("made by a compose of VDI {of} that is no longer under way"),
                "remove it (a snapshot of the parent with copies of the child's writes)",
            )
            .fixed_by(m.repair, vec![Fix::RemoveLv(path(f, &l.name))]),
        );
    }
}

/// Exports of volumes that are not attached (a detach interrupted between the two, or an
/// LV deactivated behind thinsr's back): they hold nothing between clients, but run.
fn exports(f: &Facts, m: Mode, out: &mut Vec<Finding>) {
    for vdi in &f.exports {
        let attached = f.vg.vdi_lv(vdi).is_some_and(|l| l.active)
            || f.devices.iter().any(|d| d.dev.vdi == vdi.as_str());
        if attached {
            continue;
        }
        let name = f
            .meta
            .vdi(vdi)
            .map_or("an unknown VDI", |v| v.name.as_str());
        out.push(
            Finding::new(
                K::StrayExport,
                format!("NBD export of VDI {vdi} ({name})"),
                "runs though the VDI is not attached (a detach was interrupted)",
                "stop it",
            )
            .fixed_by(m.repair, vec![Fix::StopExport(vdi.clone())]),
        );
    }
}
