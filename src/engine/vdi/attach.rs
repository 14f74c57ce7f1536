//! `vdi attach` and `vdi detach`: the VDI as a block device, through LVM for plain thin
//! and preallocated LVs, through a device of thinsr's own for a template's clones.

use std::path::PathBuf;

use super::{is_thin, refuse_pending, template_of, vdi_lv, Volume};
use crate::crash;
use crate::engine::context::{Ctx, Locked};
use crate::engine::hooks::Hook;
use crate::engine::meta::VdiMeta;
use crate::engine::names;
use crate::engine::registry::Entry;
use crate::error::{Error, Result};
use crate::host::dm;
use crate::host::lvm::cmd::{self, Activate};
use crate::host::lvm::{dev_path, Lv, Vg};
use crate::ids::{LvPath, VdiUuid};

/// `VDI_ATTACHED` for an attach in the other mode than the VDI's current one.
fn mode_clash(v: &VdiMeta, device: &str, now_ro: bool, want_ro: bool) -> Error {
    let mode = |ro| if ro { "read-only" } else { "read-write" };
    Error::VdiAttached {
        vdi: v.name.clone(),
        device: format!(
            "{device}, {}; detach it first to attach it {}",
            mode(now_ro),
            mode(want_ro)
        ),
    }
}

impl Ctx {
    /// `vdi attach`: returns the block device to give the VM, making it if needed. A VDI
    /// reading a template gets a device of ours over its template; any other VDI is its LV,
    /// activated by LVM. A template itself attaches read-only, as a device over its image.
    pub fn vdi_attach(&self, key: &str, sr: Option<&str>, read_only: bool) -> Result<Volume> {
        let made = std::cell::Cell::new(false);
        let mut v = self.attach_noting(key, sr, read_only, &made)?;
        if made.get() {
            self.after(Hook::PostVdiAttach, &mut v)?;
        }
        Ok(v)
    }

    /// `vdi attach` without hooks: thinsr's own attachment for the while of a command.
    pub(crate) fn attach_quietly(
        &self,
        key: &str,
        sr: Option<&str>,
        read_only: bool,
    ) -> Result<Volume> {
        self.attach_noting(key, sr, read_only, &std::cell::Cell::new(false))
    }

    /// `vdi attach`, setting `made` when it made the device.
    fn attach_noting(
        &self,
        key: &str,
        sr: Option<&str>,
        read_only: bool,
        made: &std::cell::Cell<bool>,
    ) -> Result<Volume> {
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let v = op.vdi(uuid)?.clone();
            refuse_pending(&v)?;
            // A read-only volume (snapshot, template) attaches read-only: xapi's
            // Datapath.attach carries no mode, and read-only VBDs, vdi-copy and dom0
            // reads of a template all come this way.
            let read_only = read_only || !v.read_write();
            let device = match ctx.our_device(uuid) {
                Some(d) if d.live || dm::revive(&d.name)? => {
                    if d.read_only != read_only {
                        let path = d.path().display().to_string();
                        return Err(mode_clash(&v, &path, d.read_only, read_only));
                    }
                    if !d.live {
                        ctx.forget_devices(); // revived
                    }
                    d.path()
                }
                left => {
                    if let Some(d) = left {
                        // Left without a table by a crash: start again.
                        dm::remove(&d.name, &v.name)?;
                    }
                    let device = ctx.make_device(op, vg, &v, read_only)?;
                    ctx.forget_devices();
                    made.set(true);
                    device
                }
            };
            let mut vol = ctx.volume(&op.entry, &op.meta, vg, &v, None);
            vol.path = device.display().to_string();
            vol.attached = true;
            vol.read_write = !read_only;
            Ok(vol)
        })
    }

    /// The device to give a VM for `v`, which has none yet.
    fn make_device(&self, op: &Locked, vg: &Vg, v: &VdiMeta, read_only: bool) -> Result<PathBuf> {
        if v.is_template() {
            return self.attach_template(v, vg, &op.entry);
        }
        let lv = vdi_lv(vg, v)?;
        let template = template_of(op, v)?;
        // LVM activates snapshots read-only by their permission, and writable LVs
        // read-write; a writable thin VDI wanted read-only, or one reading a template,
        // needs a device of ours. (LVM's read_only_volume_list would make it reload the
        // whole pool read-only, which the kernel refuses.)
        if template.is_some() || read_only && is_thin(v.kind) && v.read_write() {
            self.attach_thin(&op.entry, vg, v, lv, template, read_only)
        } else if read_only {
            self.activate(vg, v, lv, read_only)
        } else {
            // A writable VDI is given through a device of ours over its LV, whose table
            // can become a mirror under the VM (engine/mirror.rs) and back; LVM keeps
            // its own device. A crash between the two leaves the LV active, which the
            // next attach takes as it is.
            let source = self.activate(vg, v, lv, false)?;
            let name = dm::our_name(&vg.name, &lv.name, &v.uuid);
            let table = dm::Table::Linear {
                source: source.display().to_string(),
            };
            dm::create(&name, &v.uuid, lv.size.sectors(), &table, false)
        }
    }

    /// Marks an imported VDI complete.
    pub(crate) fn finish_import(&self, mut op: Locked, uuid: &str) -> Result<()> {
        op.vdi_mut(uuid)?.pending = None;
        op.save()
    }

    /// A read-only device over VDI `v`, which has none (an export reads it): thin VDIs
    /// get one of ours, which needs no lvm call; preallocated ones are activated read-only.
    pub(crate) fn attach_for_reading(&self, op: &Locked, vg: &Vg, v: &VdiMeta) -> Result<PathBuf> {
        let lv = vdi_lv(vg, v)?;
        if is_thin(v.kind) {
            let made = self.attach_thin(&op.entry, vg, v, lv, template_of(op, v)?, true);
            self.forget_devices();
            made
        } else {
            self.activate(vg, v, lv, true)
        }
    }

    /// Undoes `attach_for_reading`'s device of ours `name` for VDI `uuid` (the caller holds
    /// the SR's lock), and the attachment of its template with its last reader.
    pub(crate) fn detach_reader(
        &self,
        name: &str,
        uuid: &VdiUuid,
        template: Option<&VdiUuid>,
    ) -> Result<()> {
        crate::host::dm::remove(name, uuid)?;
        self.forget_devices();
        match template {
            Some(t) => self.release_origin_if_unused(t),
            None => Ok(()),
        }
    }

    /// The VDI's LV activated by LVM (a preallocated one wanted read-only is activated
    /// read-only without changing the LV).
    fn activate(&self, vg: &Vg, v: &VdiMeta, lv: &Lv, read_only: bool) -> Result<PathBuf> {
        if !lv.active {
            let how = match read_only && v.read_write() {
                true => Activate::ReadOnly,
                false => Activate::Ours,
            };
            let path = [LvPath::new(&vg.name, &lv.name)];
            self.lvm.run(&cmd::activate(&path, how))?;
        } else {
            // 'r' is a read-only LV, 'R' a read-only activation of a writable one.
            let now_ro = matches!(lv.attr.as_bytes().get(1), Some(b'r' | b'R'));
            if now_ro != read_only {
                let path = dev_path(&vg.name, &lv.name);
                return Err(mode_clash(v, &path, now_ro, read_only));
            }
        }
        Ok(PathBuf::from(dev_path(&vg.name, &lv.name)))
    }

    /// A thin device of ours: the VDI's LVM thin id in the pool, reading the template's
    /// image (when it has one) where the VDI has no data.
    fn attach_thin(
        &self,
        entry: &Entry,
        vg: &Vg,
        v: &VdiMeta,
        lv: &Lv,
        template: Option<&VdiMeta>,
        read_only: bool,
    ) -> Result<PathBuf> {
        if lv.active {
            // Two devices on one thin id would corrupt it; LVM's own reads zeros for the
            // template's blocks.
            return Err(Error::VdiAttached {
                vdi: v.name.clone(),
                device: format!(
                    "{} is active through LVM, without its template; 'lvchange -an' it first",
                    dev_path(&vg.name, &lv.name)
                ),
            });
        }
        let thin_id = lv.thin_id.ok_or_else(|| Error::LvmFailed {
            command: "fullreport".into(),
            message: format!("no thin id reported for {}/{}", vg.name, lv.name),
        })?;
        let (pool, _) = dm::pool_target(&dm::open()?, &vg.name, &entry.pool)
            .ok_or_else(|| Error::SrNotAttached(entry.name.clone()))?;
        let origin = template
            .map(|t| self.attach_origin(t, vg, entry))
            .transpose()?;
        crash::point("vdi-attach.after-origin");
        let table = dm::Table::Thin {
            pool: format!("/dev/mapper/{pool}"),
            thin_id,
            origin,
        };
        let name = dm::our_name(&vg.name, &lv.name, &v.uuid);
        dm::create(&name, &v.uuid, lv.size.sectors(), &table, read_only).map_err(|e| match template
        {
            Some(t) => e.undo("releasing the template's image", || {
                self.release_origin_if_unused(&t.uuid)
            }),
            None => e,
        })
    }

    /// A template attached on its own, read-only: a device over its image.
    fn attach_template(&self, t: &VdiMeta, vg: &Vg, entry: &Entry) -> Result<PathBuf> {
        let origin = self.attach_origin(t, vg, entry)?;
        let name = dm::our_name(
            &vg.name,
            &format!("template-{}", names::sanitize(&t.name, 64)).into(),
            &t.uuid,
        );
        let sectors = t.size.sectors();
        let table = dm::Table::Linear { source: origin };
        dm::create(&name, &t.uuid, sectors, &table, true).map_err(|e| {
            e.undo("releasing the template's image", || {
                self.release_origin_if_unused(&t.uuid)
            })
        })
    }

    /// `vdi detach`: removes the device of ours (and the template's attachment when no
    /// other clone reads it) or deactivates the LV. Idempotent, and it clears what a crash
    /// or a dead qemu-nbd left behind.
    pub fn vdi_detach(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        let found = self.resolve(key, sr)?;
        let attached = self.our_device(&found.uuid).is_some()
            || found
                .meta
                .vdi(&found.uuid)
                .is_some_and(|v| crate::engine::known::lv_active(&found.entry.vg, &v.lv));
        if attached {
            // Before the lock: a hook may call thinsr.
            self.before(Hook::PreVdiDetach, &found.entry, || self.show_found(&found))?;
        }
        let mut v = self.detach_found(&found)?;
        if attached {
            self.after(Hook::PostVdiDetach, &mut v)?;
        }
        Ok(v)
    }

    /// `vdi detach` without hooks: the end of thinsr's own attachment.
    pub(crate) fn detach_quietly(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        self.detach_found(&self.resolve(key, sr)?)
    }

    /// `vdi detach` of a VDI resolved already, without hooks.
    fn detach_found(&self, found: &super::Found) -> Result<Volume> {
        self.with_found(found, |ctx, op, vg, uuid| {
            let v = op.vdi(uuid)?.clone();
            // The volume's NBD export (xapi's attach started it) goes with the device,
            // whoever detaches: it holds the device only while a client is connected.
            crate::engine::datapath_nbd::stop(&op.entry.uuid, &v.uuid);
            // A mirror ends with the device: complete if every write reached the
            // destination (a halted VM's disk copied, then xapi's detach), else given up;
            // not while something still has the device open (the detach is refused below).
            let held = ctx
                .our_device(uuid)
                .and_then(|d| dm::open_count(&d.name))
                .is_some_and(|n| n > 0);
            if !held {
                crate::engine::mirror::finish(&op.entry.uuid, &v.uuid)?;
                crate::engine::mirror::forget(&op.entry.uuid, &v.uuid);
            }
            if let Some(d) = ctx.our_device(uuid) {
                dm::remove(&d.name, &v.name)?;
                ctx.forget_devices();
            }
            // A migration's leaf detached before its compose: the view's kernel device
            // goes too (compose then runs on the LVs alone, from the log).
            crate::engine::compose::live::end(&op.entry.uuid, &VdiUuid::from(uuid))?;
            if let Some(t) = v.origin.as_ref().or(v.is_template().then_some(&v.uuid)) {
                ctx.release_origin_if_unused(t)?;
            }
            if let Some(lv) = vg.vdi_lv(uuid).filter(|l| l.active) {
                // Asked now: the report was read while our device above still held it.
                let open =
                    dm::open_count(&dm::dm_name(&vg.name, &lv.name)).map_or(lv.open, |n| n > 0);
                if open {
                    return Err(Error::VdiAttached {
                        vdi: v.name.clone(),
                        device: dev_path(&vg.name, &lv.name),
                    });
                }
                ctx.set_active(&LvPath::new(&vg.name, &lv.name), false)?;
            }
            ctx.rename_lv_to_label(op, vg, uuid);
            let v = op.vdi(uuid)?.clone();
            let mut vol = ctx.volume(&op.entry, &op.meta, vg, &v, None);
            vol.attached = false;
            vol.path = String::new();
            Ok(vol)
        })
    }
}
