//! `vdi snapshot` and `vdi clone`: thin snapshots of a VDI, of a template's local copy, or
//! of a template over its external origin.

use super::resize::lcm;
use super::{free_lv_name, lvcreate, now, origin_name, refuse_pending, vdi_lv, Volume};
use crate::crash;
use crate::engine::context::Ctx;
use crate::engine::hooks::Hook;
use crate::engine::known;
use crate::engine::meta::{Geometry, VdiKind, VdiMeta};
use crate::engine::names;
use crate::error::{Error, Result};
use crate::host::dm;
use crate::host::lvm::TAG_ORIGIN;
use crate::ids::{LvName, LvPath, VdiUuid};
use crate::units::Bytes;

impl Ctx {
    /// `vdi snapshot` (read-only) and `vdi clone` (writable): instant thin snapshots.
    pub fn vdi_snapshot(
        &self,
        key: &str,
        sr: Option<&str>,
        name: Option<&str>,
        clone: bool,
    ) -> Result<Volume> {
        if let Some(n) = name {
            names::check_label(n)?;
        }
        let found = self.resolve(key, sr)?;
        if !clone {
            // Before the lock: a hook may call thinsr.
            self.before(Hook::PreVdiSnapshot, &found.entry, || {
                self.show_found(&found)
            })?;
        }
        let mut v = self.snapshot_found(&found, name, clone)?;
        let hook = if clone {
            Hook::PostVdiClone
        } else {
            Hook::PostVdiSnapshot
        };
        self.after(hook, &mut v)?;
        Ok(v)
    }

    /// `vdi snapshot` without hooks: an export's temporary snapshot, thinsr's own.
    pub(crate) fn snapshot_quietly(
        &self,
        key: &str,
        sr: Option<&str>,
        name: &str,
    ) -> Result<Volume> {
        self.snapshot_found(&self.resolve(key, sr)?, Some(name), false)
    }

    fn snapshot_found(
        &self,
        found: &super::Found,
        name: Option<&str>,
        clone: bool,
    ) -> Result<Volume> {
        let mut op = self.lock_sr(&found.entry)?;
        let parent = op.vdi(&found.uuid)?.clone();
        refuse_pending(&parent)?;
        if parent.kind == VdiKind::Preallocated {
            return Err(Error::InvalidArgument(format!(
                "VDI '{}' is preallocated: instant snapshots and clones need a thin VDI",
                parent.name
            )));
        }
        // The IDL copies name and description, and xapi's scans copy the plugin's names
        // back over its own: any other default would drift on every scan.
        let label = name.map_or_else(|| parent.name.clone(), str::to_string);
        names::check_label(&label)?;
        let new_uuid = VdiUuid::random();
        // A template with a local copy is cloned as a thin snapshot of that copy: the
        // clone then reads like any thin VDI, one dm-thin lookup in the kernel, and owes
        // nothing to the template any more.
        let local = parent.local.clone().filter(|_| parent.is_template());
        let origin = if parent.is_template() {
            Some(parent.uuid.clone()).filter(|_| local.is_none())
        } else {
            parent.origin.clone()
        };
        let from_template = parent.is_template() && local.is_none();
        let (vg_name, pool) = (op.entry.vg.clone(), op.entry.pool.clone());
        // A template's clone is a new thin LV reading the template where it has no data;
        // anything else is an LVM thin snapshot of the parent's (or local copy's) LV.
        let make = |lv: &LvName, size: Bytes, parent_lv: Option<&str>| -> Result<()> {
            let tags: Vec<String> = origin.iter().map(|o| format!("{TAG_ORIGIN}{o}")).collect();
            let new = lvcreate(&found.entry.uuid, &new_uuid, lv, &tags).writable(clone);
            let Some(parent_lv) = parent_lv else {
                return self.lvm.run(&new.thin(&vg_name, &pool, size)).map(drop);
            };
            let args = new.snapshot(&LvPath::new(&vg_name, &parent_lv.into()));
            match self.our_device(&parent.uuid) {
                None => self.lvm.run(&args).map(drop),
                // The parent is in use through a device of ours, which LVM does not know to
                // quiesce: suspend it (flushing the VM's writes) for the instant the
                // snapshot is taken. (Our lvm calls skip suspended devices rather than wait
                // on them.)
                Some(d) => {
                    dm::suspend(&d.name, true)?;
                    crash::point("vdi-snapshot.while-suspended");
                    let made = self.lvm.run(&args);
                    dm::suspend(&d.name, false)?;
                    made.map(drop)
                }
            }
        };
        let clone_size = |g: Geometry| parent.size.round_up(lcm(g.extent.0, g.chunk.0));
        // One lvm call when the metadata and the kernel can say all a report would.
        let ready = Self::thin_ready(&op.entry, &op.meta);
        let made = match op.meta.geometry.filter(|_| ready) {
            Some(g) => {
                let lv = op.known_free_name(&label);
                let (size, parent_lv) = match &local {
                    Some(l) => (parent.size.round_up(g.extent.0), Some(l.as_str())),
                    None if from_template => (clone_size(g), None),
                    None => (parent.size, Some(parent.lv.as_str())),
                };
                // What the new VDI maps is known from the next listing.
                known::unless_a_report_helps(make(&lv, size, parent_lv))?
                    .map(|()| (lv, size, Bytes(0)))
            }
            None => None,
        };
        let (lv, size, physical) = match made {
            Some(m) => m,
            None => {
                let vg = self.lvm.report_vg(&op.entry.vg)?;
                op.learn_geometry(&vg);
                let g = op.meta.geometry.expect("just learnt");
                let copy = local.as_deref().map(|l| {
                    vg.lv(l).ok_or_else(|| {
                        Error::LvNotFound(format!(
                            "{}/{l} (the local copy of template '{}')",
                            vg.name, parent.name
                        ))
                    })
                });
                let (size, parent_lv) = if let Some(copy) = copy {
                    let copy = copy?;
                    (copy.size, Some(copy.name.as_str()))
                } else if from_template {
                    (clone_size(g), None)
                } else {
                    let l = vdi_lv(&vg, &parent)?;
                    if l.name != parent.lv {
                        // Renamed outside thinsr: the metadata learns the name (saved with
                        // the new VDI), so the next command needs no report again.
                        op.vdi_mut(&parent.uuid)?.lv = l.name.clone();
                    }
                    (l.size, Some(l.name.as_str()))
                };
                self.prepare_thin(&op.entry, &op.meta, &vg, size)?;
                let lv = free_lv_name(&vg, &label, None);
                make(&lv, size, parent_lv)?;
                // Until the pool's metadata says otherwise, a snapshot maps what its parent
                // does.
                let parent_vol = self.volume(&op.entry, &op.meta, &vg, &parent, None);
                (lv, size, parent_vol.physical_utilisation)
            }
        };
        crash::point("vdi-snapshot.after-lvcreate");
        let kind = if clone {
            VdiKind::Clone
        } else {
            VdiKind::Snapshot
        };
        let vdi = VdiMeta {
            description: parent.description.clone(),
            parent: Some(parent.uuid.clone()),
            created: now(),
            origin: origin.clone(),
            // Snapshots go on tracking as their VDI did (a backup chain's next base); a clone
            // is a new disk.
            cbt: parent.cbt && !clone,
            ..VdiMeta::new(&new_uuid, &label, kind, &lv, size)
        };
        self.record_new(&mut op, &vg_name, &vdi)?;
        let mut vol = self.volume_of(&op.entry, &vg_name, &vdi, None, size, false, Some(physical));
        vol.sr_name = op.meta.name.clone();
        vol.parent_name = Some(parent.name.clone());
        vol.origin_name = origin_name(&op.meta, &vdi);
        Ok(vol)
    }
}
