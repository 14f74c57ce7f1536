//! `sr list` and `sr show`, and the SR's own name and description.

use super::{lvm_used, space, LvInfo, PvInfo, SrDetail, SrSummary};
use crate::crash;
use crate::engine::context::{sr_tag, Ctx};
use crate::engine::meta::{Mode, PoolPolicy, SrMeta};
use crate::engine::names;
use crate::engine::pool::{CHUNK, DATA_STEP};
use crate::engine::registry::{Entry, Registry};
use crate::error::{Error, Result};
use crate::host::dm::PoolState;
use crate::host::lock;
use crate::host::lvm::{Lv, TAG_META, TAG_VDI};
use crate::ids::{LvName, VgName};
use crate::units::Bytes;

impl Ctx {
    /// `sr rename` / `sr set-description`: a metadata write, then the registry.
    pub fn update_meta(
        &self,
        key: Option<&str>,
        f: impl FnOnce(&mut SrMeta, &Registry) -> Result<()>,
    ) -> Result<SrMeta> {
        let entry = self.entry(key)?;
        let _l = lock::acquire(&entry.uuid, &entry.name)?;
        let store = entry.meta_store();
        if !store.exists() {
            return Err(Error::SrNotAttached(entry.name.clone()));
        }
        let (mut meta, _) = store.read()?;
        f(&mut meta, &self.load()?)?;
        store.write(&meta, false)?;
        crash::point("sr-meta.after-write");
        self.replace_entry(Entry::from_meta(&meta, &entry.vg, &entry.meta_lv))?;
        Ok(meta)
    }

    /// Puts `updated` in the registry in place of the entry with its uuid.
    pub(crate) fn replace_entry(&self, updated: Entry) -> Result<()> {
        self.update_registry(|reg| {
            for e in reg.srs.iter_mut().filter(|e| e.uuid == updated.uuid) {
                *e = updated.clone();
            }
            Ok(())
        })
    }

    pub fn rename(&self, key: Option<&str>, name: &str) -> Result<SrMeta> {
        names::check_label(name)?;
        self.update_meta(key, |meta, reg| {
            Self::check_name_free(reg, name, Some(&meta.uuid))?;
            meta.name = name.into();
            Ok(())
        })
    }

    pub fn set_description(&self, key: Option<&str>, text: &str) -> Result<SrMeta> {
        names::check_description(text)?;
        self.update_meta(key, |meta, _| {
            meta.description = text.into();
            Ok(())
        })
    }

    /// `sr list`: one lvm report for every SR.
    pub fn list(&self) -> Result<Vec<SrSummary>> {
        let reg = self.load()?;
        if reg.srs.is_empty() {
            return Ok(Vec::new());
        }
        let vgs = self.lvm.report(None)?;
        Ok(reg
            .srs
            .iter()
            .map(|e| {
                let vg = vgs.iter().find(|v| v.name == e.vg);
                let (state, total, free) = match vg {
                    None => ("missing".to_string(), Bytes(0), Bytes(0)),
                    Some(vg) => {
                        let (total, free) = space(vg, e, lvm_used(vg, e));
                        let attached = vg.lv(&e.meta_lv).is_some_and(|l| l.active);
                        (
                            (if attached { "attached" } else { "detached" }).to_string(),
                            total,
                            free,
                        )
                    }
                };
                SrSummary {
                    uuid: e.uuid.to_string(),
                    name: e.name.clone(),
                    vg: e.vg.to_string(),
                    mode: e.mode,
                    state,
                    total_space: total,
                    free_space: free,
                    file: e.file.clone(),
                }
            })
            .collect())
    }

    /// `sr show`: one lvm report (without what LVM would ask the kernel per LV), one list
    /// of the kernel's devices, the pool's status, and the metadata when active.
    pub fn show(&self, key: Option<&str>) -> Result<SrDetail> {
        let entry = self.entry(key)?;
        let mut vg = self.lvm.report_show(&entry.vg)?;
        crate::engine::known::mark_active(&mut vg);
        let store = entry.meta_store();
        // The metadata is the truth; the registry can lag it by one crash.
        let (name, description, policy, receiving) = match store.exists() {
            true => store
                .read()
                .map(|(m, _)| (m.name, m.description, m.policy, m.receiving))?,
            false => (
                entry.name.clone(),
                String::new(),
                Default::default(),
                vec![],
            ),
        };
        let attached = vg.lv(&entry.meta_lv).is_some_and(|l| l.active);
        let pool = crate::engine::usage::pool_info(&vg, &entry)?;
        let tag = sr_tag(&entry.uuid);
        let role = |l: &Lv| -> String {
            if l.name == entry.pool {
                "pool"
            } else if l.has_tag(TAG_META) {
                "metadata"
            } else if l.tag_value(TAG_VDI).is_some() {
                "vdi"
            } else if l.tag_value(crate::host::lvm::TAG_CACHE).is_some() {
                "template cache"
            } else if l.tag_value(crate::host::lvm::TAG_LOCAL).is_some() {
                "template local copy"
            } else if l.tag_value(crate::host::lvm::TAG_CBT).is_some() {
                "block map"
            } else if l.tag_value(crate::host::lvm::TAG_RECEIVE).is_some() {
                "receive staging"
            } else {
                "other"
            }
            .into()
        };
        let info = |l: &Lv, role: String| LvInfo {
            name: l.name.to_string(),
            role,
            size: l.size,
            active: l.active,
        };
        let (mine, foreign): (Vec<&Lv>, Vec<&Lv>) = vg
            .lvs
            .iter()
            .partition(|l| l.has_tag(&tag) || l.name == entry.pool);
        let (total, free) = space(&vg, &entry, pool.data_used);
        let stuck = cannot_grow(entry.mode, &policy, &vg, &entry, &pool);
        let health = match pool.kernel.as_ref().filter(|k| k.trouble().is_some()) {
            Some(k) => trouble_health(k, &vg.name, &entry.pool, &pool, stuck.is_none()),
            // xapi drops Healthy's text: SR.stat also puts it in the description.
            None => ("Healthy".to_string(), stuck.unwrap_or_default()),
        };
        Ok(SrDetail {
            sr: entry.uuid.to_string(),
            name,
            uuid: entry.uuid.to_string(),
            description,
            free_space: free,
            total_space: total,
            datasources: vec![],
            clustered: false,
            health,
            vg: vg.name.to_string(),
            mode: entry.mode,
            attached,
            file: entry.file.clone(),
            vg_size: vg.size,
            vg_free: vg.free,
            pvs: vg
                .pvs
                .iter()
                .map(|p| PvInfo {
                    device: p.name.clone(),
                    size: p.size,
                    free: p.free,
                })
                .collect(),
            overcommit: pool.overcommit(),
            growth: crate::engine::growth::growth(&vg.name, &entry.pool, CHUNK),
            pool_sizing: sizing(entry.mode, &policy),
            pool,
            vdis: mine
                .iter()
                .filter(|l| l.tag_value(TAG_VDI).is_some())
                .count(),
            caches: mine
                .iter()
                .filter(|l| {
                    l.tag_value(crate::host::lvm::TAG_CACHE).is_some()
                        || l.tag_value(crate::host::lvm::TAG_LOCAL).is_some()
                })
                .count(),
            lvs: mine.iter().map(|l| info(l, role(l))).collect(),
            foreign_lvs: foreign.iter().map(|l| info(l, "foreign".into())).collect(),
            receiving: receiving
                .iter()
                .map(|r| super::Interrupted {
                    source_sr: r.header.sr.clone(),
                    source_vdi: r.header.vdi.clone(),
                    label: r.header.label.clone(),
                    snapshot: r.header.snapshot.clone(),
                    verified: Bytes(r.point.bytes),
                    token: crate::engine::replica::token_of(r),
                })
                .collect(),
            warnings: vec![],
        })
    }
}

/// How the pool is sized and grows, in words, for `sr show`.
fn sizing(mode: Mode, p: &PoolPolicy) -> String {
    let step = format!(
        "grows by {}% (at least {}) when {}% is used",
        p.grow_by, DATA_STEP, p.threshold
    );
    match (mode, p.max_size) {
        (_, Some(max)) => format!("{step}, up to {max} ('pool set --max-size')"),
        (Mode::Owned, None) => format!(
            "started at a quarter of the volume group and {step}, up to all of it; until then the free space also serves preallocated VDIs (pools cannot shrink)"
        ),
        (Mode::Shared, None) => format!("{step}, up to the size chosen for it"),
    }
}

/// The early warning `SR.stat` carries in its health while the pool is past its
/// threshold and cannot grow (shared mode at its maximum, or a VG with no room left): the
/// figures and what to do, long before the pool is full. None when all is well.
fn cannot_grow(
    mode: Mode,
    policy: &PoolPolicy,
    vg: &crate::host::lvm::Vg,
    e: &Entry,
    info: &crate::engine::usage::PoolInfo,
) -> Option<String> {
    let lv = vg.lv(&e.pool)?;
    let t = f64::from(policy.threshold);
    if info.data_percent < t && info.metadata_percent < t {
        return None;
    }
    let max = crate::engine::pool::max_size(mode, policy, lv, vg);
    let data_stuck = info.data_percent >= t && max <= lv.size;
    let meta_stuck = info.metadata_percent >= t && vg.free.0 < 2 * vg.extent_size.0;
    if !data_stuck && !meta_stuck {
        return None;
    }
    let why = crate::engine::pool::why_stuck(vg, max, lv.size);
    Some(format!(
        "thin pool data {:.0}% and metadata {:.0}% used, past the {}% threshold, and it cannot grow: {why}",
        info.data_percent, info.metadata_percent, policy.threshold
    ))
}

/// The health xapi gets for a pool in trouble, decided by what xapi 26.1 does with each
/// (xapi-storage-script's SR.scan2): `Healthy` scans on (its text is dropped); `Unreachable`
/// is retried three times a second apart, then the scan fails with SR_UNHEALTHY;
/// `Unavailable` fails it at once. So a full data area that thinsr can still grow (the
/// watcher or cron will, or `pool extend` now) stays `Healthy`; one with no room left, and
/// metadata read-only after it filled, are an admin's to fix: `Unreachable`, with the
/// figures and the command. Only a pool whose metadata needs a repair, or that failed, is
/// `Unavailable`.
fn trouble_health(
    k: &crate::engine::usage::KernelPool,
    vg: &VgName,
    lv: &LvName,
    info: &crate::engine::usage::PoolInfo,
    can_grow: bool,
) -> (String, String) {
    let figures = format!(
        "data {:.0}% and metadata {:.0}% used",
        info.data_percent, info.metadata_percent
    );
    if k.needs_check || matches!(k.state, PoolState::Fail | PoolState::Error) {
        return (
            "Unavailable".into(),
            format!(
                "thin pool {vg}/{lv} is {} ({figures}): its metadata needs a repair: detach the SR, then 'lvconvert --repair {vg}/{lv}' and 'thinsr pool check'",
                k.trouble().unwrap_or_default()
            ),
        );
    }
    if k.state == PoolState::OutOfDataSpace && can_grow {
        return (
            "Healthy".into(),
            format!("thin pool {vg}/{lv} is out of data space ({figures}): thinsr grows it at the pool watcher's next wake or cron's 'thinsr pool maintain'; 'thinsr pool extend {vg} +SIZE' grows it now"),
        );
    }
    let what = if k.state == PoolState::OutOfDataSpace {
        format!("out of data space ({figures}): writes wait; give it room with 'thinsr pool extend {vg} +SIZE' (add a disk to the VG first if it has none free)")
    } else {
        format!("read-only ({figures}): grow its metadata with 'thinsr pool extend {vg} --metadata +SIZE'")
    };
    (
        "Unreachable".into(),
        format!("thin pool {vg}/{lv} is {what}"),
    )
}
