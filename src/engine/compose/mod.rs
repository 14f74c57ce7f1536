//! `Volume.compose(sr, child, parent)`: the child ends up reading the parent's data
//! wherever it has no write of its own (xapi-storage's control.ml: "layers the updates
//! from child_volume onto parent_volume, modifying child_volume"; the parent is no longer
//! valid afterwards). xapi calls it at the end of a storage migration from an SMAPIv1 SR:
//! the child is the leaf tapdisk mirrored the VM's writes into (through
//! `Datapath.import_activate`), the parent the copy of the disk as it was when the mirror
//! began.
//!
//! A thin LV knows which 64 KiB blocks were written, not which bytes: a 4 KiB write into a
//! new block leaves the other 60 KiB zeros, not the parent's data. So the ranges come from
//! the log the volume's NBD export kept of every write through a passed connection
//! (`datapath_nbd::written`), exact to the byte. Steps, each one recorded so that a crash
//! anywhere leaves what `sr check --repair` (or compose again) can finish or undo:
//!
//! 1. intent (`composing`: parent, new LV name) in the metadata;
//! 2. a thin snapshot of the parent as the new LV, tagged `thinsr_compose=<child>`;
//! 3. the logged ranges copied from the child's LV onto it, then `copied` recorded: from
//!    here on only forward;
//! 4. the child's old LV removed, the new one retagged as the child's and renamed to its
//!    name; the parent's LV removed; the metadata written once (child updated, parent
//!    gone), the log dropped.
//!
//! Time and space: one snapshot (no copy) plus the written ranges.
//!
//! xenopsd's real order runs the VM on the leaf before compose arrives: the VM then reads
//! it through a view of the leaf over the parent (`view.rs`, served by the volume's NBD
//! export; `live.rs` puts it under the VM's device at activate), and step 3 is the view's
//! switch onto the new LV, done by the server while the VM goes on (recorded by it as
//! `landed`: forward only from there), after which the VM's device reads the new LV
//! itself (`live::leave`).

pub mod live;
pub mod view;

use std::os::unix::fs::FileExt;

use crate::crash;
use crate::engine::context::{sr_tag, Ctx, Locked};
use crate::engine::datapath_nbd;
use crate::engine::meta::{Composing, VdiKind};
use crate::engine::vdi::{free_lv_name, refuse_pending, vdi_tag, Volume};
use crate::error::{Error, Result};
use crate::host::dm;
use crate::host::lvm::cmd::{self, LvCreate};
use crate::host::lvm::{dev_path, Vg, TAG_COMPOSE, TAG_ORIGIN};
use crate::ids::{LvPath, VdiUuid};
use crate::image::extent::{self, Extent};

/// Records that compose's new LV holds everything the child reads: forward only now.
fn mark_copied(op: &mut Locked, uuid: &str) -> Result<()> {
    op.vdi_mut(uuid)?
        .composing
        .as_mut()
        .expect("recorded above")
        .copied = true;
    op.save()?;
    crash::point("compose.copied");
    Ok(())
}

/// A written child whose log of writes is gone.
fn log_lost(vdi: &str) -> Error {
    Error::VdiIncomplete {
        vdi: vdi.to_string(),
        why: "the log of the bytes its migration wrote was lost with a restart of the \
              host, so its writes cannot be told from the zeros around them; nothing was \
              composed: migrate the VM again"
            .into(),
    }
}

/// The largest piece copied at once.
const PIECE: u64 = 1 << 20;

impl Ctx {
    /// Composes `child` onto `parent` (both VDIs of one SR), as described above.
    pub fn vdi_compose(&self, child: &str, parent: &str, sr: Option<&str>) -> Result<Volume> {
        let c = self.resolve(child, sr)?;
        let p = self.resolve(parent, sr)?;
        super::changes::same_sr(&p, &c)?;
        let mut op = self.lock_sr(&c.entry)?;
        let v = op.vdi(&c.uuid)?.clone();
        let pv = op.vdi(&p.uuid)?.clone();
        match &v.composing {
            Some(k) if k.parent != pv.uuid => {
                return Err(Error::VdiIncomplete {
                    vdi: v.name.clone(),
                    why: format!("a compose onto {} began: finish it first", k.parent),
                })
            }
            Some(_) => {}
            None => {
                let why = if v.uuid == pv.uuid {
                    Some("it is the VDI itself".to_string())
                } else if v.is_template() || pv.is_template() {
                    Some("templates are not composed".into())
                } else if v.kind == VdiKind::Preallocated || pv.kind == VdiKind::Preallocated {
                    Some("only thin VDIs are composed".into())
                } else if pv.size > v.size {
                    Some(format!(
                        "the parent ({}) is larger than the child ({})",
                        pv.size, v.size
                    ))
                } else {
                    None
                };
                if let Some(why) = why {
                    return Err(Error::InvalidArgument(format!(
                        "'{}' cannot be composed onto '{}': {why}",
                        v.name, pv.name
                    )));
                }
                refuse_pending(&v)?;
                refuse_pending(&pv)?;
                self.refuse_in_use_unless_landing(&op, &v)?;
                self.refuse_in_use(&op, &pv)?;
                let vg = self.lvm.report_vg(&op.entry.vg)?;
                let lv = free_lv_name(&vg, &format!("{}.composed", v.name), None);
                op.vdi_mut(&v.uuid)?.composing = Some(Composing {
                    parent: pv.uuid.clone(),
                    lv,
                    copied: false,
                });
                op.save()?;
                crash::point("compose.recorded");
            }
        }
        self.refuse_in_use_unless_landing(&op, &v)?;
        self.finish_compose(&mut op, &v.uuid, true)
    }

    /// A VDI in use is composed only while its VM reads it through the view.
    fn refuse_in_use_unless_landing(
        &self,
        op: &Locked,
        v: &crate::engine::meta::VdiMeta,
    ) -> Result<()> {
        match live::landing(&op.entry.uuid, &VdiUuid::from(v.uuid.as_str())) {
            Some(_) => Ok(()),
            None => self.refuse_in_use(op, v),
        }
    }

    /// The steps of a recorded compose of VDI `uuid`, from wherever a crash stopped them.
    /// Before the copy is recorded, the copy is made again when `redo` and the log of
    /// writes is still there (no reboot since); otherwise the compose is undone: the new
    /// LV goes and the child stays as it was.
    pub(crate) fn finish_compose(&self, op: &mut Locked, uuid: &str, redo: bool) -> Result<Volume> {
        let v = op.vdi(uuid)?.clone();
        let k = v.composing.clone().ok_or_else(|| {
            Error::InvalidArgument(format!("no compose of '{}' is under way", v.name))
        })?;
        let sr = op.entry.uuid.clone();
        let vg = self.lvm.report_vg(&op.entry.vg)?;
        let new = LvPath::new(&vg.name, &k.lv);
        let new_exists = vg
            .lv(&k.lv)
            .is_some_and(|l| l.tag_value(TAG_COMPOSE) == Some(&v.uuid) || l.is_vdi(&v.uuid));
        let vdi = VdiUuid::from(v.uuid.as_str());
        let new_dev = std::path::PathBuf::from("/dev/mapper").join(dm::dm_name(&vg.name, &k.lv));
        // The VM reads the child through the view (live), or did until the server
        // switched it onto the new LV (landed): the new LV is the server's to fill, never
        // made again.
        let live = live::landing(&sr, &vdi);
        let landed = live::landed(&sr, &vdi).is_some_and(|p| p == new_dev);
        if !k.copied && (live.is_some() || landed) {
            if !new_exists {
                self.snapshot_parent(op, &vg, &v, &k)?;
                crash::point("compose.created");
            }
            if !landed {
                live::switch(&sr, &vdi, &new_dev)?;
                crash::point("compose.switched");
            }
            mark_copied(op, &v.uuid)?;
        } else if !k.copied {
            let old_lv = vg.vdi_lv(&v.uuid).map(|l| LvPath::new(&vg.name, &l.name));
            if new_exists {
                // Half copied, or copied but not recorded: made again from the start.
                self.remove_lv(&new)?;
            }
            let parent_known = op
                .meta
                .vdi(&k.parent)
                .is_some_and(|p| vg.vdi_lv(&p.uuid).is_some());
            // Without the log (the host restarted since the writes), a written child's
            // bytes cannot be told from the zeros around them in its 64 KiB blocks: a
            // compose would guess, so it is undone and refused.
            let lost = !datapath_nbd::has_log(&sr, &vdi)
                && old_lv
                    .as_ref()
                    .is_some_and(|_| self.holds_data(&vg, &v.uuid, &op.entry.pool));
            let (Some(old_lv), true, true, false) = (old_lv, parent_known, redo, lost) else {
                // Nothing to go forward with: the child stays as it was.
                op.vdi_mut(&v.uuid)?.composing = None;
                op.save()?;
                if lost && redo {
                    return Err(log_lost(&v.name));
                }
                return self.reported_volume(op, &v.uuid);
            };
            self.snapshot_parent(op, &vg, &v, &k)?;
            crash::point("compose.created");
            let ranges = datapath_nbd::written(&sr, &vdi);
            self.copy_ranges(&old_lv, &new, &ranges, v.size.0)?;
            mark_copied(op, &v.uuid)?;
        }
        if live.is_some() {
            let top = self.our_device(&v.uuid).ok_or_else(|| Error::VdiAttached {
                vdi: v.name.clone(),
                device: "its view, without a device of thinsr's over it".into(),
            })?;
            let old = vg
                .vdi_lv(&v.uuid)
                .filter(|l| l.name != k.lv)
                .map(|l| dm::dm_name(&vg.name, &l.name));
            live::leave(&sr, &vdi, &top.name, &new_dev, old.as_deref())?;
            self.forget_devices();
        }
        // Forward only: the new LV holds everything the child is to read.
        let vg = self.lvm.report_vg(&op.entry.vg)?;
        if let Some(old) = vg.vdi_lv(&v.uuid).filter(|l| l.name != k.lv) {
            self.remove_lv(&LvPath::new(&vg.name, &old.name))?;
            crash::point("compose.old-removed");
        }
        let mut name = k.lv.clone();
        if vg
            .lv(&k.lv)
            .is_some_and(|l| l.tag_value(TAG_COMPOSE).is_some())
        {
            self.lvm.run(&cmd::retag(
                &new,
                &vdi_tag(&v.uuid),
                &format!("{TAG_COMPOSE}{}", v.uuid),
            ))?;
            crash::point("compose.retagged");
        }
        // The VDI keeps its LV name unless something else took it meanwhile.
        if name != v.lv && vg.lv(&v.lv).is_none_or(|l| l.name == k.lv) {
            self.lvm.run(&cmd::rename(&vg.name, &k.lv, &v.lv))?;
            name = v.lv.clone();
        }
        let parent = op.meta.vdi(&k.parent).cloned();
        let origin = vg
            .lv(&k.lv)
            .and_then(|l| l.tag_value(TAG_ORIGIN))
            .map(VdiUuid::from);
        if let Some(p) = &parent {
            if let Some(l) = vg.vdi_lv(&p.uuid) {
                self.remove_lv(&LvPath::new(&vg.name, &l.name))?;
            }
            crash::point("compose.parent-removed");
        }
        {
            let e = op.vdi_mut(&v.uuid)?;
            e.lv = name;
            e.origin = parent.as_ref().map_or(origin, |p| p.origin.clone());
            e.composing = None;
        }
        op.meta.vdis.retain(|x| x.uuid != k.parent);
        op.save()?;
        datapath_nbd::forget_written(&sr, &vdi);
        live::forget(&sr, &vdi);
        self.forget_devices();
        self.reported_volume(op, &v.uuid)
    }

    /// Whether VDI `uuid`'s thin LV maps any block (true when that cannot be read).
    fn holds_data(&self, vg: &Vg, uuid: &str, pool: &crate::ids::LvName) -> bool {
        let Some(id) = vg.vdi_lv(uuid).and_then(|l| l.thin_id) else {
            return true;
        };
        match crate::host::thin::mapped_bytes(&vg.name, pool) {
            Ok(Some(m)) => m.get(&id).is_some_and(|&b| b > 0),
            _ => true,
        }
    }

    /// Compose's new LV: a thin snapshot of the parent, tagged as the compose's.
    fn snapshot_parent(
        &self,
        op: &Locked,
        vg: &Vg,
        v: &crate::engine::meta::VdiMeta,
        k: &Composing,
    ) -> Result<()> {
        let parent_lv = op
            .meta
            .vdi(&k.parent)
            .and_then(|p| vg.vdi_lv(&p.uuid))
            .map(|l| LvPath::new(&vg.name, &l.name))
            .ok_or_else(|| Error::VdiIncomplete {
                vdi: v.name.clone(),
                why: format!("the parent {} of its compose is gone", k.parent),
            })?;
        // A template's clone keeps reading its template: the tag says so after a crash.
        let origin = op.meta.vdi(&k.parent).and_then(|p| p.origin.clone());
        let mut tags = vec![sr_tag(&op.entry.uuid), format!("{TAG_COMPOSE}{}", v.uuid)];
        tags.extend(origin.map(|o| format!("{TAG_ORIGIN}{o}")));
        self.lvm
            .run(
                &LvCreate::new(&k.lv, &tags)
                    .active()
                    .writable(true)
                    .snapshot(&parent_lv),
            )
            .map(drop)
    }

    /// Copies `ranges` (clipped to `size`) from `from` to `to`, both activated for the
    /// while, and makes them durable.
    fn copy_ranges(&self, from: &LvPath, to: &LvPath, ranges: &[Extent], size: u64) -> Result<()> {
        let clipped: Vec<Extent> = ranges
            .iter()
            .filter(|e| e.start < size)
            .map(|e| Extent::new(e.start, e.len.min(size - e.start)))
            .collect();
        self.set_active(from, true)?;
        let copied = (|| -> Result<()> {
            let src_path = dev_path(&from.vg, &from.lv);
            let dst_path = dev_path(&to.vg, &to.lv);
            let src = std::fs::File::open(&src_path).map_err(|e| Error::io(&src_path, e))?;
            let dst = std::fs::File::options()
                .write(true)
                .open(&dst_path)
                .map_err(|e| Error::io(&dst_path, e))?;
            let mut buf = vec![0u8; PIECE as usize];
            for piece in extent::pieces(&clipped, PIECE) {
                let b = &mut buf[..piece.len as usize];
                src.read_exact_at(b, piece.start)
                    .map_err(|e| Error::io(&src_path, e))?;
                dst.write_all_at(b, piece.start)
                    .map_err(|e| Error::io(&dst_path, e))?;
            }
            dst.sync_all().map_err(|e| Error::io(&dst_path, e))
        })();
        let off = self
            .set_active(from, false)
            .and_then(|_| self.set_active(to, false));
        copied.and(off)
    }
}
