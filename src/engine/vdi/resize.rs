//! `vdi resize`: thin VDIs grow in the pool, preallocated ones grow and zero the new part.

use super::{is_thin, refuse_pending, refuse_template, space_detail, vdi_lv, Volume};
use crate::cancel;
use crate::crash;
use crate::engine::context::{Ctx, Locked};
use crate::engine::hooks::Hook;
use crate::engine::meta::{Pending, VdiKind, VdiMeta};
use crate::error::{Error, Result};
use crate::host::dm;
use crate::host::lvm::{cmd, Lv, Vg};
use crate::ids::LvPath;
use crate::progress::Progress;
use crate::units::{Bytes, NewSize};

/// The least common multiple of two allocation units (powers of two in practice).
pub(super) fn lcm(a: u64, b: u64) -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if a == 0 || b == 0 {
        a.max(b)
    } else {
        a / gcd(a, b) * b
    }
}

impl Ctx {
    /// `vdi resize`: grow (a preallocated VDI's new part is zeroed first), or shrink when
    /// `allow_shrink` (the caller has confirmed).
    pub fn vdi_resize(
        &self,
        key: &str,
        sr: Option<&str>,
        new: NewSize,
        allow_shrink: bool,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        if new == NewSize::To(Bytes(0)) {
            return Err(Error::InvalidSize {
                input: "0".into(),
                why: "a disk must be larger than zero".into(),
            });
        }
        cancel::watch();
        let mut resized = self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let v = op.vdi(uuid)?.clone();
            refuse_template(&v)?;
            if v.pending == Some(Pending::Importing) {
                refuse_pending(&v)?;
            }
            if !v.read_write() {
                return Err(Error::VdiReadOnly(v.name.clone()));
            }
            let lv = vdi_lv(vg, &v)?;
            // An attached thin VDI grows live: LVM reloads its LV's table, and a device of
            // ours over it (a template clone's) gets the new length below.
            let ours = ctx.our_device(uuid);
            let current = lv.size;
            let target = new.from(current, vg.extent_size.0)?;
            let name = LvPath::new(&vg.name, &lv.name);
            if target < current {
                if !allow_shrink {
                    return Err(Error::ShrinkRefused {
                        vdi: v.name.clone(),
                        from: current.to_string(),
                        to: target.to_string(),
                    });
                }
                ctx.refuse_attached(vg, &v, lv)?;
            }
            let pending_from = match v.pending {
                Some(Pending::Zeroing { from }) => Some(from),
                _ => None,
            };
            if target == current && pending_from.is_none() {
                // A run interrupted between the LV's resize and the device's finishes here.
                if let Some(d) = &ours {
                    dm::grow(&d.name, target.sectors())?;
                }
                return Ok(ctx.volume(&op.entry, &op.meta, vg, &v, None));
            }
            if v.kind == VdiKind::Preallocated && target > current || pending_from.is_some() {
                // Its new part is zeroed before use: a VM that saw the new size at once
                // could write there first, and lose it to the zeroing.
                ctx.refuse_attached(vg, &v, lv).map_err(|e| match e {
                    Error::VdiAttached { vdi, device } => Error::VdiAttached {
                        vdi,
                        device: format!(
                            "{device}; a preallocated VDI grows only while detached, since its new part is zeroed before use"
                        ),
                    },
                    e => e,
                })?;
                ctx.grow_preallocated(op, vg, &v, lv, target, pending_from, progress)?;
            } else {
                ctx.lvm.run(&cmd::resize(&name, target, true))?;
                crash::point("vdi-resize.after-lvresize");
                op.vdi_mut(uuid)?.size = target;
                op.save()?;
                if let Some(d) = &ours {
                    dm::grow(&d.name, target.sectors())?;
                    ctx.forget_devices();
                }
            }
            let mut done = op.vdi(uuid)?.clone();
            done.pending = None;
            let mut vol = ctx.volume_of(
                &op.entry,
                &vg.name,
                &done,
                Some(lv),
                target,
                lv.active,
                None,
            );
            vol.sr_name = op.meta.name.clone();
            if is_thin(v.kind) {
                vol.physical_utilisation = ctx
                    .volume(&op.entry, &op.meta, vg, &v, None)
                    .physical_utilisation;
            }
            Ok(vol)
        })?;
        // After the lock: a hook may call thinsr.
        self.after(Hook::PostVdiResize, &mut resized)?;
        Ok(resized)
    }

    /// Grows a preallocated VDI and zeroes the new part; also finishes an earlier grow that
    /// was interrupted (`pending_from`). A cancel shrinks it back.
    #[allow(clippy::too_many_arguments)]
    fn grow_preallocated(
        &self,
        op: &mut Locked,
        vg: &Vg,
        v: &VdiMeta,
        lv: &Lv,
        target: Bytes,
        pending_from: Option<Bytes>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let name = LvPath::new(&vg.name, &lv.name);
        let from = pending_from.unwrap_or(lv.size).min(lv.size);
        let target = target.max(lv.size);
        if target > lv.size && vg.free.0 < target.0 - lv.size.0 {
            return Err(Error::NoSpace {
                vg: vg.name.to_string(),
                wanted: Bytes(target.0 - lv.size.0).to_string(),
                free: vg.free.to_string(),
                detail: space_detail(vg, &op.entry),
            });
        }
        // Recorded before the LV grows: a crash leaves an unzeroed tail the metadata knows of.
        op.vdi_mut(&v.uuid)?.pending = Some(Pending::Zeroing { from });
        op.save()?;
        if target > lv.size {
            self.lvm.run(&cmd::resize(&name, target, false))?;
            crash::point("vdi-resize.after-lvresize");
        }
        let what = format!("zeroing the new part of {}", v.name);
        match self.zero_lv(&vg.name, &lv.name, from, target, &what, progress) {
            Ok(()) => {
                let m = op.vdi_mut(&v.uuid)?;
                m.pending = None;
                m.size = target;
                op.save()
            }
            Err(e) => {
                // Back to the size whose every byte is zeroed; nothing beyond it held data.
                self.lvm.run(&cmd::resize(&name, from, true))?;
                let m = op.vdi_mut(&v.uuid)?;
                m.pending = None;
                m.size = from;
                op.save()?;
                Err(e)
            }
        }
    }
}
