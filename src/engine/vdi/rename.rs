//! A VDI's label (and the LV name made from it), description and keys.

use super::{free_lv_name, refuse_template, vdi_lv, Volume};
use crate::crash;
use crate::engine::context::Ctx;
use crate::engine::meta::VdiMeta;
use crate::engine::names;
use crate::error::Result;
use crate::host::lvm::strings;

impl Ctx {
    /// `vdi rename`: a new label and a new friendly LV name; the uuid stays.
    pub fn vdi_rename(&self, key: &str, sr: Option<&str>, label: &str) -> Result<Volume> {
        names::check_label(label)?;
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let v = op.vdi(uuid)?.clone();
            refuse_template(&v)?;
            let lv = vdi_lv(vg, &v)?;
            let new_lv = free_lv_name(vg, label, Some(&lv.name));
            if new_lv != lv.name {
                ctx.refuse_attached(vg, &v, lv)?;
                ctx.lvm
                    .run(&strings(&["lvrename", &vg.name, &lv.name, &new_lv]))?;
                crash::point("vdi-rename.after-lvrename");
            }
            let m = op.vdi_mut(uuid)?;
            m.name = label.into();
            m.lv = new_lv.clone();
            let m = m.clone();
            op.save().inspect_err(|_| {
                // The metadata keeps the old name: so does the LV.
                if new_lv != lv.name {
                    let _ = ctx
                        .lvm
                        .run(&strings(&["lvrename", &vg.name, &new_lv, &lv.name]));
                }
            })?;
            let mut renamed = lv.clone();
            renamed.name = new_lv;
            let mut vg2 = vg.clone();
            vg2.set_vdi_lv(uuid, renamed);
            Ok(ctx.volume(&op.entry, &op.meta, &vg2, &m, None))
        })
    }

    /// Metadata-only changes: description and keys.
    fn vdi_update(
        &self,
        key: &str,
        sr: Option<&str>,
        f: impl FnOnce(&mut VdiMeta) -> Result<()>,
    ) -> Result<Volume> {
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            refuse_template(op.vdi(uuid)?)?;
            f(op.vdi_mut(uuid)?)?;
            op.save()?;
            let v = op.vdi(uuid)?.clone();
            Ok(ctx.volume(&op.entry, &op.meta, vg, &v, None))
        })
    }

    pub fn vdi_set_description(&self, key: &str, sr: Option<&str>, text: &str) -> Result<Volume> {
        names::check_description(text)?;
        self.vdi_update(key, sr, |v| {
            v.description = text.into();
            Ok(())
        })
    }

    pub fn vdi_set_key(&self, key: &str, sr: Option<&str>, k: &str, value: &str) -> Result<Volume> {
        names::check_key(k)?;
        names::check_value(value)?;
        self.vdi_update(key, sr, |v| {
            v.keys.insert(k.into(), value.into());
            Ok(())
        })
    }

    /// Removing a key that is not set is not an error (as for xapi).
    pub fn vdi_unset_key(&self, key: &str, sr: Option<&str>, k: &str) -> Result<Volume> {
        names::check_key(k)?;
        self.vdi_update(key, sr, |v| {
            v.keys.remove(k);
            Ok(())
        })
    }
}
