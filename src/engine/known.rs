//! What a VDI command can know without an lvm report: the LV names thinsr's metadata records,
//! the SR's geometry, the pool's use (from the kernel) and whether an LV is active (from its
//! dm device). Making, snapshotting and destroying a VDI is then one lvm call, as with bare
//! lvm. A report is read when these cannot say, or when LVM refuses for a reason a report
//! explains: a name taken by an LV thinsr does not know (in a shared VG), an LV renamed
//! behind thinsr's back, too little free space for a preallocated VDI.

use std::collections::HashSet;

use crate::engine::context::Locked;
use crate::engine::meta::Geometry;
use crate::engine::names;
use crate::engine::pool::CHUNK;
use crate::error::{Error, Result};
use crate::host::lvm::Vg;
use crate::ids::{LvName, VgName};

impl Locked {
    /// A friendly LV name for `label` that no LV thinsr's metadata knows of has.
    pub(crate) fn known_free_name(&self, label: &str) -> LvName {
        let e = &self.entry;
        let mut taken: HashSet<String> = [&e.pool, &e.meta_lv]
            .into_iter()
            .map(|n| n.to_string())
            .collect();
        for v in &self.meta.vdis {
            taken.insert(v.lv.to_string());
            taken.extend(v.cache.as_ref().map(|n| n.to_string()));
            taken.extend(v.local.as_ref().map(|n| n.to_string()));
        }
        names::unique_name(label, &e.vg, &taken).into()
    }

    /// Keeps the VG's extent size and the pool's chunk size from a report, so the next
    /// command needs none. Saved with the metadata's next write.
    pub(crate) fn learn_geometry(&mut self, vg: &Vg) {
        if self.meta.geometry.is_none() {
            let chunk = vg.lv(&self.entry.pool).and_then(|p| p.chunk_size);
            self.meta.geometry = Some(Geometry {
                extent: vg.extent_size,
                chunk: chunk.unwrap_or(CHUNK),
            });
        }
    }
}

/// The outcome of an attempt made without a report: None when LVM refused for a reason a
/// fresh report lets thinsr work around (the caller then reads one and tries again).
pub(crate) fn unless_a_report_helps<T>(attempt: Result<T>) -> Result<Option<T>> {
    match attempt {
        Ok(v) => Ok(Some(v)),
        Err(e) if report_would_help(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// True when LVM refused for a reason a fresh report lets thinsr work around.
fn report_would_help(e: &Error) -> bool {
    match e {
        Error::LvmFailed { message, .. } => {
            let m = message.to_ascii_lowercase();
            [
                "already exists",
                "not found",
                "failed to find",
                "insufficient free",
            ]
            .iter()
            .any(|s| m.contains(s))
        }
        _ => false,
    }
}

/// Marks the LVs of a report made without `lv_attr` active or not, from one list of the
/// kernel's devices (a thin pool is active through its `-tpool` layer). A list that cannot
/// be read leaves every LV inactive.
pub(crate) fn mark_active(vg: &mut Vg) {
    let names = crate::host::dm::names().unwrap_or_default();
    for lv in &mut vg.lvs {
        let name = crate::host::dm::dm_name(&vg.name, &lv.name);
        lv.active = names.contains(&name) || names.contains(&format!("{name}-tpool"));
    }
}

/// True when LVM has activated `vg/lv` (its dm device exists).
pub(crate) fn lv_active(vg: &VgName, lv: &LvName) -> bool {
    crate::host::dm::exists(&crate::host::dm::dm_name(vg, lv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_helps_with_names_and_space_only() {
        let lvm = |m: &str| Error::LvmFailed {
            command: "lvcreate".into(),
            message: m.into(),
        };
        for m in [
            "Logical Volume \"v12\" already exists in volume group \"s\"",
            "Snapshot origin LV nosuch not found in Volume group s.",
            "Volume group \"s\" has insufficient free space (10 extents): 64 required.",
        ] {
            assert!(report_would_help(&lvm(m)), "{m}");
        }
        for m in [
            "Cannot create new thin volume, free space in thin pool s/pool reached threshold.",
            "exit status 5",
        ] {
            assert!(!report_would_help(&lvm(m)), "{m}");
        }
        assert!(!report_would_help(&Error::NotRoot));
    }
}
