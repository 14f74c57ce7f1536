//! VDIs: the engine. No printing; every function returns data.
//!
//! Ordering rules (a crash at any step leaves a state the next run can see):
//! - create, snapshot, clone: the tagged LV first, then the metadata entry. A crash between
//!   leaves a tagged LV with no entry, which `vdi list` reports.
//! - destroy: the LV first, then the entry. A crash between leaves an entry whose LV is gone.
//! - preallocation: the entry is written with `pending: zeroing` before the zeroing starts
//!   and cleared after it; nothing attaches a VDI whose zeroing is pending.
//! - rename: the LV first. Entries find their LV by its `thinsr_vdi=` tag, never by name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde::Serialize;

use crate::cancel;
use crate::crash;
use crate::engine::known;
use crate::engine::meta::{Geometry, MetaStore, Mode, Pending, SrMeta, VdiKind, VdiMeta};
use crate::engine::names;
use crate::engine::registry::Entry;
use crate::engine::sr::{ours, sr_tag, Ctx};
use crate::error::{Error, Result};
use crate::host::dm;
use crate::host::lock::{self, Lock};
use crate::host::lvm::{dev_path, strings, tag_args, Lv, Vg, TAG_META, TAG_ORIGIN, TAG_VDI};
use crate::host::thin;
use crate::host::zero;
use crate::progress::Progress;
use crate::units::{clip, Bytes, NewSize};

/// The fields of xapi's `volume` record, all present in every `Volume`.
pub const VOLUME_FIELDS: [&str; 10] = [
    "key",
    "uuid",
    "name",
    "description",
    "read_write",
    "sharable",
    "virtual_size",
    "physical_utilisation",
    "uri",
    "keys",
];

/// A VDI as xapi's `volume` record (the first fields) plus what thinsr knows of it.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub key: String,
    pub uuid: String,
    pub name: String,
    pub description: String,
    pub read_write: bool,
    pub sharable: bool,
    pub virtual_size: u64,
    pub physical_utilisation: u64,
    pub uri: Vec<String>,
    pub keys: BTreeMap<String, String>,
    pub sr: String,
    pub sr_name: String,
    pub kind: VdiKind,
    pub vg: String,
    pub lv: String,
    /// The block device, present while the LV is active.
    pub path: String,
    pub attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_name: Option<String>,
    /// A template's image URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A template's image format (qemu's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The template this VDI reads where it has written nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_name: Option<String>,
    /// A template's cache LV, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// Bytes held by the template's cache LV (the blocks fetched so far, plus qcow2's
    /// tables).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<u64>,
    pub created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// `vdi list`: the volumes, and what the admin should know about the SRs listed.
#[derive(Debug)]
pub struct Listing {
    pub volumes: Vec<Volume>,
    pub warnings: Vec<String>,
}

/// A VDI named on the command line, found in an SR's metadata (as read, without the lock).
#[derive(Debug, Clone)]
pub struct Found {
    pub entry: Entry,
    pub uuid: String,
    pub meta: SrMeta,
}

/// An SR under its lock, with its metadata read.
pub(crate) struct Locked {
    pub entry: Entry,
    store: MetaStore,
    pub meta: SrMeta,
    _lock: Lock,
}

impl Locked {
    fn vdi(&self, uuid: &str) -> Result<&VdiMeta> {
        self.meta
            .vdi(uuid)
            .ok_or_else(|| Error::VdiNotFound(uuid.into()))
    }
    fn vdi_mut(&mut self, uuid: &str) -> Result<&mut VdiMeta> {
        self.meta
            .vdi_mut(uuid)
            .ok_or_else(|| Error::VdiNotFound(uuid.into()))
    }
    pub fn save(&self) -> Result<()> {
        self.store.write(&self.meta, false).map(drop)
    }
}

fn vdi_tag(uuid: &str) -> String {
    format!("{TAG_VDI}{uuid}")
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn is_thin(kind: VdiKind) -> bool {
    kind != VdiKind::Preallocated
}

/// The LV of a VDI, or an error saying it is gone.
fn vdi_lv<'a>(vg: &'a Vg, v: &VdiMeta) -> Result<&'a Lv> {
    vg.vdi_lv(&v.uuid)
        .ok_or_else(|| Error::LvNotFound(format!("{}/{} (of VDI '{}')", vg.name, v.lv, v.name)))
}

/// A friendly LV name for `label` that no LV in the VG has; `keep` (the LV being renamed)
/// may keep its own.
pub(crate) fn free_lv_name(vg: &Vg, label: &str, keep: Option<&str>) -> String {
    let taken: HashSet<String> = vg
        .lvs
        .iter()
        .filter(|l| Some(l.name.as_str()) != keep)
        .map(|l| l.name.clone())
        .collect();
    names::unique_name(label, &vg.name, &taken)
}

/// The start of every VDI's `lvcreate`: its name, its tags, activation skipped.
fn lvcreate_args(sr: &str, uuid: &str, lv: &str) -> Vec<String> {
    let mut args = strings(&["lvcreate", "-y", "-n", lv, "--setactivationskip", "y"]);
    args.extend(tag_args(&[sr_tag(sr), vdi_tag(uuid)]));
    args
}

fn refuse_template(v: &VdiMeta) -> Result<()> {
    if v.is_template() {
        return Err(Error::VdiIsTemplate(v.name.clone()));
    }
    Ok(())
}

pub(crate) fn refuse_pending(v: &VdiMeta) -> Result<()> {
    match v.pending {
        None => Ok(()),
        Some(Pending::Zeroing { from }) => Err(Error::VdiIncomplete {
            vdi: v.name.clone(),
            why: format!("zeroing stopped at {from} or later and did not finish"),
        }),
        Some(Pending::Importing) => Err(Error::VdiIncomplete {
            vdi: v.name.clone(),
            why: "its import stopped before the end; destroy it and import again".into(),
        }),
    }
}

/// The template VDI `v` reads, if any.
fn template_of<'a>(op: &'a Locked, v: &VdiMeta) -> Result<Option<&'a VdiMeta>> {
    match &v.origin {
        None => Ok(None),
        Some(t) => Ok(Some(op.meta.vdi(t).ok_or_else(|| {
            Error::VdiIncomplete {
                vdi: v.name.clone(),
                why: format!("its template {t} is no longer registered"),
            }
        })?)),
    }
}

/// Where a VG's space went, for a NO_SPACE error on a preallocated VDI.
fn space_detail(vg: &Vg, entry: &Entry) -> String {
    let tag = sr_tag(&entry.uuid);
    let (mut pool, mut prealloc, mut ours, mut others) = (0u64, 0u64, 0u64, 0u64);
    for l in &vg.lvs {
        if l.name == entry.pool {
            // LVM keeps a spare copy of the pool's metadata beside it.
            pool += l.size.0 + 2 * l.metadata_size.map(|b| b.0).unwrap_or(0);
        } else if !l.pool.is_empty() {
            // Thin volumes live inside the pool.
        } else if l.has_tag(&tag) && l.tag_value(TAG_VDI).is_some() {
            prealloc += l.size.0;
        } else if l.has_tag(&tag) || l.has_tag(TAG_META) {
            ours += l.size.0;
        } else if !l.name.starts_with('[') {
            others += l.size.0;
        }
    }
    let mut parts = vec![format!(
        "the thin pool holds {}{}",
        Bytes(pool),
        if entry.mode == Mode::Owned {
            " (it grows as thin disks fill, and cannot shrink)"
        } else {
            ""
        }
    )];
    parts.push(format!("preallocated VDIs {}", Bytes(prealloc)));
    parts.push(format!("thinsr's metadata {}", Bytes(ours)));
    if others > 0 {
        parts.push(format!("LVs that are not thinsr's {}", Bytes(others)));
    }
    format!(" of {}; {}", vg.size, parts.join(", "))
}

impl Ctx {
    /// Refuses while the VDI is in use: active through LVM or through a device of ours.
    fn refuse_attached(&self, vg: &Vg, v: &VdiMeta, lv: &Lv) -> Result<()> {
        let device = match self.our_device(&v.uuid) {
            Some(d) => d.path().display().to_string(),
            None if lv.active || lv.open => dev_path(&vg.name, &lv.name),
            None => return Ok(()),
        };
        Err(Error::VdiAttached {
            vdi: v.name.clone(),
            device,
        })
    }

    /// Removes an LV (`vg/lv`) thinsr made.
    pub(crate) fn remove_lv(&self, vg_lv: &str) -> Result<()> {
        self.lvm.run(&strings(&["lvremove", "-f", vg_lv])).map(drop)
    }

    /// Activates (ignoring the activation-skip flag every VDI carries) or deactivates an LV.
    pub(crate) fn set_active(&self, vg_lv: &str, on: bool) -> Result<()> {
        let args: &[&str] = if on {
            &["lvchange", "-ay", "-K"]
        } else {
            &["lvchange", "-an"]
        };
        let mut args = strings(args);
        args.push(vg_lv.into());
        self.lvm.run(&args).map(drop)
    }

    /// The metadata of an attached SR.
    pub(crate) fn read_meta(entry: &Entry) -> Result<SrMeta> {
        let store = entry.meta_store();
        if !store.exists() {
            return Err(Error::SrNotAttached(entry.name.clone()));
        }
        Ok(store.read()?.0)
    }

    pub(crate) fn lock_sr(&self, entry: &Entry) -> Result<Locked> {
        let lock = lock::acquire(&entry.uuid, &entry.name)?;
        Ok(Locked {
            entry: entry.clone(),
            store: entry.meta_store(),
            meta: Self::read_meta(entry)?,
            _lock: lock,
        })
    }

    /// Finds a VDI by uuid, LV name, label, unique uuid prefix, or `SR/any of those`, in the
    /// SR named by `sr` or in every attached SR. Reads metadata only, no LVM.
    pub fn resolve(&self, key: &str, sr: Option<&str>) -> Result<Found> {
        let reg = self.registry.load()?;
        let entries: Vec<Entry> = match sr {
            Some(s) => vec![reg.pick(Some(s))?.clone()],
            None => reg.srs.clone(),
        };
        let mut metas = Vec::new();
        for e in entries {
            match Self::read_meta(&e) {
                Ok(m) => metas.push((e, m)),
                Err(Error::SrNotAttached(_)) if sr.is_none() => {}
                Err(err) => return Err(err),
            }
        }
        let mut found = match_vdis(&metas, None, key);
        if found.is_empty() && sr.is_none() {
            // `SR/name`: the SR part may itself hold a '/', so try every split.
            for (i, _) in key.match_indices('/') {
                if let Ok(e) = reg.find(&key[..i]) {
                    found = match_vdis(&metas, Some(&e.uuid), &key[i + 1..]);
                    if !found.is_empty() {
                        break;
                    }
                }
            }
        }
        match found.as_slice() {
            [] => Err(Error::VdiNotFound(clip(key))),
            [(i, v)] => {
                let (i, uuid) = (*i, v.uuid.clone());
                let (entry, meta) = metas.swap_remove(i);
                Ok(Found { entry, uuid, meta })
            }
            many => Err(Error::VdiAmbiguous {
                name: clip(key),
                candidates: many
                    .iter()
                    .map(|(i, v)| format!("{}/{} ({})", metas[*i].0.name, v.lv, v.uuid))
                    .collect(),
            }),
        }
    }

    /// `vdi create`: a thin LV in the pool, or a preallocated LV zeroed completely.
    pub fn vdi_create(
        &self,
        sr: Option<&str>,
        label: &str,
        size: Bytes,
        description: &str,
        preallocate: bool,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        self.create(sr, label, size, description, preallocate, false, progress)
    }

    /// `vdi create`, or the empty VDI an import fills (`importing`: marked so until the
    /// import finishes, and created active so the import needs no further lvm call).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create(
        &self,
        sr: Option<&str>,
        label: &str,
        size: Bytes,
        description: &str,
        preallocate: bool,
        importing: bool,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        names::check_label(label)?;
        names::check_description(description)?;
        if size.0 == 0 {
            return Err(Error::InvalidSize {
                input: "0".into(),
                why: "a disk must be larger than zero".into(),
            });
        }
        if preallocate {
            cancel::watch();
        }
        let entry = self.entry(sr)?;
        let mut op = self.lock_sr(&entry)?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let args_for = |lv: &str, size: Bytes| {
            let mut args = lvcreate_args(&entry.uuid, &uuid, lv);
            if preallocate {
                // Active now, to be zeroed; LVM's own zeroing covers only the first 4 KiB.
                args.extend(strings(&["-K", "-Zn", "-Wn", "-L"]));
                args.extend([format!("{}b", size.0), entry.vg.clone()]);
            } else {
                if importing {
                    args.push("-K".into());
                }
                args.extend(["-V".into(), format!("{}b", size.0), "-T".into()]);
                args.push(format!("{}/{}", entry.vg, entry.pool));
            }
            args
        };
        // One lvm call when the metadata and the kernel can say all a report would.
        let ready = preallocate || Self::thin_ready(&entry, &op.meta);
        let made = match op.meta.geometry.filter(|_| ready) {
            Some(g) => {
                let size = size.round_up(g.extent.0);
                let lv = op.known_free_name(label);
                known::unless_a_report_helps(self.lvm.run(&args_for(&lv, size)))?
                    .map(|_| (lv, size))
            }
            None => None,
        };
        let (lv, size) = match made {
            Some(m) => m,
            None => {
                let vg = self.lvm.report_vg(&entry.vg)?;
                op.learn_geometry(&vg);
                let size = size.round_up(vg.extent_size.0);
                let lv = free_lv_name(&vg, label, None);
                if preallocate && vg.free < size {
                    return Err(Error::NoSpace {
                        vg: vg.name.clone(),
                        wanted: size.to_string(),
                        free: vg.free.to_string(),
                        detail: space_detail(&vg, &entry),
                    });
                }
                if !preallocate {
                    self.prepare_thin(&entry, &op.meta, &vg, size)?;
                }
                self.lvm.run(&args_for(&lv, size))?;
                (lv, size)
            }
        };
        crash::point("vdi-create.after-lvcreate");
        let vdi = VdiMeta {
            uuid: uuid.clone(),
            name: label.into(),
            description: description.into(),
            kind: if preallocate {
                VdiKind::Preallocated
            } else {
                VdiKind::Thin
            },
            lv: lv.clone(),
            size,
            parent: None,
            created: now(),
            keys: BTreeMap::new(),
            pending: if importing {
                Some(Pending::Importing)
            } else {
                preallocate.then_some(Pending::Zeroing { from: Bytes(0) })
            },
            image: None,
            origin: None,
            cache: None,
        };
        self.record_new(&mut op, &entry.vg, &vdi)?;
        crash::point("vdi-create.after-meta");
        if preallocate {
            // Other commands on this SR go on while the disk is zeroed.
            drop(op);
            self.finish_zeroing(&entry, &vdi, Bytes(0), size, progress)?;
        }
        let mut v = vdi;
        if !importing {
            v.pending = None;
        }
        Ok(self.volume_of(&entry, &entry.vg, &v, None, size, false, None))
    }

    /// Zeroes `[from, to)` of an LV: activated for it (VDIs are inactive unless attached)
    /// and deactivated after, whatever the outcome.
    pub(crate) fn zero_lv(
        &self,
        vg: &str,
        lv: &str,
        from: Bytes,
        to: Bytes,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<()> {
        let name = format!("{vg}/{lv}");
        self.set_active(&name, true)?;
        let zeroed = zero::zero(
            &PathBuf::from(dev_path(vg, lv)),
            from.0,
            to.0,
            what,
            progress,
        );
        self.set_active(&name, false)?;
        zeroed
    }

    /// Records a VDI whose LV was just made. When the metadata cannot be written the LV
    /// goes again, so no half-made VDI is left behind.
    fn record_new(&self, op: &mut Locked, vg: &str, vdi: &VdiMeta) -> Result<()> {
        op.meta.vdis.push(vdi.clone());
        op.save().inspect_err(|_| {
            let _ = self.remove_lv(&format!("{vg}/{}", vdi.lv));
        })
    }

    /// Zeroes a new preallocated VDI (an active LV), deactivates it and clears `pending`; on
    /// cancel or failure removes the LV and its entry.
    fn finish_zeroing(
        &self,
        entry: &Entry,
        vdi: &VdiMeta,
        from: Bytes,
        to: Bytes,
        progress: &dyn Progress,
    ) -> Result<()> {
        let lv = format!("{}/{}", entry.vg, vdi.lv);
        let zeroed = if cancel::requested() {
            Err(Error::Cancelled)
        } else {
            zero::zero(
                &PathBuf::from(dev_path(&entry.vg, &vdi.lv)),
                from.0,
                to.0,
                &format!("zeroing {}", vdi.name),
                progress,
            )
        };
        crash::point("vdi-create.after-zero");
        match zeroed {
            Ok(()) => {
                self.set_active(&lv, false)?;
                let mut op = self.lock_sr(entry)?;
                op.vdi_mut(&vdi.uuid)?.pending = None;
                op.save()
            }
            Err(e) => {
                let mut op = self.lock_sr(entry)?;
                self.remove_lv(&lv)?;
                op.meta.vdis.retain(|v| v.uuid != vdi.uuid);
                op.save()?;
                Err(e)
            }
        }
    }

    /// `vdi list`: one lvm report for every SR listed.
    pub fn vdi_list(&self, sr: Option<&str>) -> Result<Listing> {
        let reg = self.registry.load()?;
        let entries: Vec<Entry> = match sr {
            Some(s) => vec![reg.pick(Some(s))?.clone()],
            None => reg.srs.clone(),
        };
        let mut warnings = Vec::new();
        let mut metas = Vec::new();
        for e in entries {
            match Self::read_meta(&e) {
                Ok(m) => metas.push((e, m)),
                Err(Error::SrNotAttached(_)) if sr.is_none() => warnings.push(format!(
                    "SR '{}' is not attached: its VDIs are not listed",
                    e.name
                )),
                Err(err) => return Err(err),
            }
        }
        if metas.is_empty() {
            return Ok(Listing {
                volumes: vec![],
                warnings,
            });
        }
        let vgs = match metas.as_slice() {
            [(e, _)] => vec![self.lvm.report_listing(&e.vg)?],
            _ => self.lvm.report(None)?,
        };
        let mut volumes = Vec::new();
        for (e, m) in &metas {
            let Some(vg) = vgs.iter().find(|v| v.name == e.vg) else {
                warnings.push(format!(
                    "volume group {} of SR '{}' is missing",
                    e.vg, e.name
                ));
                continue;
            };
            let mapped = self.mapped_if_needed(e, vg, &m.vdis);
            for v in &m.vdis {
                volumes.push(self.volume(e, m, vg, v, mapped.as_ref()));
            }
            let known: HashSet<&str> = m.vdis.iter().map(|v| v.uuid.as_str()).collect();
            for l in ours(vg, &e.uuid) {
                if let Some(u) = l.tag_value(TAG_VDI).filter(|u| !known.contains(u)) {
                    warnings.push(format!(
                        "LV {}/{} carries VDI tag {u} but SR '{}' has no such VDI: left by an interrupted command",
                        vg.name, l.name, e.name
                    ));
                }
            }
        }
        Ok(Listing { volumes, warnings })
    }

    /// `vdi show`: one lvm report.
    pub fn vdi_show(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        let f = self.resolve(key, sr)?;
        let v = f.meta.vdi(&f.uuid).expect("resolve found it there");
        let vg = self.lvm.report_listing(&f.entry.vg)?;
        let mapped = self.mapped_if_needed(&f.entry, &vg, std::slice::from_ref(v));
        Ok(self.volume(&f.entry, &f.meta, &vg, v, mapped.as_ref()))
    }

    /// Bytes mapped per thin id, read from the pool's metadata when LVM cannot say (it
    /// reports usage of active thin volumes only). Best effort: None when unreadable.
    fn mapped_if_needed(&self, e: &Entry, vg: &Vg, vdis: &[VdiMeta]) -> Option<HashMap<u32, u64>> {
        let needed = vdis.iter().any(|v| {
            let lv = match &v.cache {
                Some(c) => vg.lv(c),
                None => vg.vdi_lv(&v.uuid),
            };
            is_thin(v.kind) && lv.is_some_and(|l| l.data_percent.is_none())
        });
        let pool_active = vg.lv(&e.pool).is_some_and(|l| l.active);
        if !needed || !pool_active {
            return None;
        }
        thin::mapped_bytes(&vg.name, &e.pool).ok().flatten()
    }

    pub(crate) fn volume(
        &self,
        e: &Entry,
        meta: &SrMeta,
        vg: &Vg,
        v: &VdiMeta,
        mapped: Option<&HashMap<u32, u64>>,
    ) -> Volume {
        let lv = vg.vdi_lv(&v.uuid);
        let size = lv.map(|l| l.size).unwrap_or(v.size);
        let used = |l: &Lv| match (l.data_percent, l.thin_id.and_then(|id| mapped?.get(&id))) {
            (Some(p), _) => (l.size.0 as f64 * p / 100.0).round() as u64,
            (None, Some(b)) => *b,
            (None, None) => 0,
        };
        let physical = match lv {
            None => 0,
            Some(l) if !is_thin(v.kind) => l.size.0,
            Some(l) => used(l),
        };
        let parent_name = v.parent.as_ref().map(|p| {
            meta.vdi(p)
                .map(|pv| pv.name.clone())
                .unwrap_or_else(|| "(destroyed)".into())
        });
        let mine = self.our_device(&v.uuid);
        let mut vol = self.volume_of(
            e,
            &vg.name,
            v,
            lv,
            size,
            lv.is_some_and(|l| l.active) || mine.is_some(),
            Some(physical),
        );
        vol.sr_name = meta.name.clone();
        vol.cached = v.cache.as_ref().map(|c| vg.lv(c).map(used).unwrap_or(0));
        vol.parent_name = parent_name;
        vol.origin_name = origin_name(meta, v);
        if let Some(d) = mine {
            vol.path = d.path().display().to_string();
            if !d.live {
                vol.problems.push(format!(
                    "its device {} was left half-made: 'thinsr vdi detach' removes it",
                    d.name
                ));
            }
        }
        if !v.is_template() && lv.is_none() {
            vol.problems
                .push(format!("its LV {}/{} is missing", vg.name, v.lv));
        }
        vol
    }

    /// A volume record from what is known without a fresh report.
    #[allow(clippy::too_many_arguments)]
    fn volume_of(
        &self,
        e: &Entry,
        vg: &str,
        v: &VdiMeta,
        lv: Option<&Lv>,
        size: Bytes,
        attached: bool,
        physical: Option<u64>,
    ) -> Volume {
        let lv_name = lv.map(|l| l.name.clone()).unwrap_or_else(|| v.lv.clone());
        let physical = physical.unwrap_or(if is_thin(v.kind) { 0 } else { size.0 });
        Volume {
            key: v.uuid.clone(),
            uuid: v.uuid.clone(),
            name: v.name.clone(),
            description: v.description.clone(),
            read_write: v.read_write(),
            sharable: false,
            virtual_size: size.0,
            physical_utilisation: physical,
            uri: vec![format!("thinsr://{}/{}", e.uuid, v.uuid)],
            keys: v.keys.clone(),
            sr: e.uuid.clone(),
            sr_name: e.name.clone(),
            kind: v.kind,
            vg: vg.to_string(),
            // A VDI reading a template is not its LV alone, and a template has none: their
            // device exists only while attached.
            path: if v.is_template() || v.origin.is_some() {
                String::new()
            } else {
                dev_path(vg, &lv_name)
            },
            lv: lv_name,
            attached,
            parent: v.parent.clone(),
            parent_name: None,
            source: v.image.as_ref().map(|i| i.uri.clone()),
            format: v.image.as_ref().map(|i| i.format.clone()),
            origin: v.origin.clone(),
            cache: v.cache.clone(),
            cached: None,
            origin_name: None,
            created: v.created,
            pending: v.pending,
            problems: vec![],
        }
    }

    /// Runs `f` on a VDI under its SR's lock with one fresh lvm report, then renders the VDI
    /// as `f` left it (re-reading nothing).
    pub(crate) fn with_vdi<T>(
        &self,
        key: &str,
        sr: Option<&str>,
        f: impl FnOnce(&Self, &mut Locked, &Vg, &str) -> Result<T>,
    ) -> Result<T> {
        let found = self.resolve(key, sr)?;
        let mut op = self.lock_sr(&found.entry)?;
        op.vdi(&found.uuid)?;
        let vg = self.lvm.report_vg(&found.entry.vg)?;
        f(self, &mut op, &vg, &found.uuid)
    }

    /// `vdi destroy`: refused while attached. Thin space returns to the pool. One lvm call:
    /// `lvremove` of the LV the metadata names, selected by the VDI's tag (so it can only
    /// remove thinsr's LV of this VDI); a report only when that LV is not there by that name.
    pub fn vdi_destroy(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        let found = self.resolve(key, sr)?;
        let mut op = self.lock_sr(&found.entry)?;
        let v = op.vdi(&found.uuid)?.clone();
        refuse_template(&v)?;
        let vg_name = op.entry.vg.clone();
        if let Some(d) = self.our_device(&v.uuid) {
            return Err(Error::VdiAttached {
                vdi: v.name.clone(),
                device: d.path().display().to_string(),
            });
        }
        // An active LV by the recorded name is ours attached, or an LV renamed into that
        // name: the report below tells which. Otherwise lvremove without -f (were the LV
        // active after all, lvremove would ask, and with no terminal to answer, refuse).
        let removed = !known::lv_active(&vg_name, &v.lv)
            && self
                .lvm
                .run(&[
                    "lvremove".into(),
                    "-S".into(),
                    format!("lv_tags={}", vdi_tag(&v.uuid)),
                    format!("{vg_name}/{}", v.lv),
                ])?
                .contains("successfully removed");
        let mut vol = self.volume_of(&op.entry, &vg_name, &v, None, v.size, false, None);
        vol.sr_name = op.meta.name.clone();
        if !removed {
            // Not by that name: find it by its tag, if it is anywhere.
            let vg = self.lvm.report_vg(&vg_name)?;
            if let Some(lv) = vg.vdi_lv(&v.uuid) {
                self.refuse_attached(&vg, &v, lv)?;
                self.remove_lv(&format!("{vg_name}/{}", lv.name))?;
            }
        }
        crash::point("vdi-destroy.after-lvremove");
        op.meta.vdis.retain(|x| x.uuid != v.uuid);
        op.save()?;
        Ok(vol)
    }

    /// Checks that `vdi destroy` would be allowed, before the admin is asked to confirm.
    pub fn vdi_check_destroy(&self, v: &Volume) -> Result<()> {
        if v.kind == VdiKind::Template {
            return Err(Error::VdiIsTemplate(v.name.clone()));
        }
        if v.attached {
            return Err(Error::VdiAttached {
                vdi: v.name.clone(),
                device: v.path.clone(),
            });
        }
        Ok(())
    }

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
        let mut op = self.lock_sr(&found.entry)?;
        let parent = op.vdi(&found.uuid)?.clone();
        refuse_pending(&parent)?;
        if parent.kind == VdiKind::Preallocated {
            return Err(Error::InvalidArgument(format!(
                "VDI '{}' is preallocated: instant snapshots and clones need a thin VDI",
                parent.name
            )));
        }
        let label = match name {
            Some(n) => n.to_string(),
            None => format!(
                "{} {}",
                parent.name,
                if clone { "clone" } else { "snapshot" }
            ),
        };
        names::check_label(&label)?;
        let new_uuid = uuid::Uuid::new_v4().to_string();
        let origin = if parent.is_template() {
            Some(parent.uuid.clone())
        } else {
            parent.origin.clone()
        };
        let (vg_name, pool) = (op.entry.vg.clone(), op.entry.pool.clone());
        // A template's clone is a new thin LV reading the template where it has no data;
        // anything else is an LVM thin snapshot of the parent's LV.
        let make = |lv: &str, size: Bytes, parent_lv: Option<&str>| -> Result<()> {
            let mut args = lvcreate_args(&found.entry.uuid, &new_uuid, lv);
            if let Some(o) = &origin {
                args.extend(tag_args(&[format!("{TAG_ORIGIN}{o}")]));
            }
            args.extend(["-p".into(), (if clone { "rw" } else { "r" }).into()]);
            let Some(parent_lv) = parent_lv else {
                args.extend(["-V".into(), format!("{}b", size.0), "-T".into()]);
                args.push(format!("{vg_name}/{pool}"));
                return self.lvm.run(&args).map(drop);
            };
            args.extend(["-s".into(), format!("{vg_name}/{parent_lv}")]);
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
                let (size, parent_lv) = if parent.is_template() {
                    (clone_size(g), None)
                } else {
                    (parent.size, Some(parent.lv.as_str()))
                };
                // What the new VDI maps is known from the next listing.
                known::unless_a_report_helps(make(&lv, size, parent_lv))?.map(|()| (lv, size, 0))
            }
            None => None,
        };
        let (lv, size, physical) = match made {
            Some(m) => m,
            None => {
                let vg = self.lvm.report_vg(&op.entry.vg)?;
                op.learn_geometry(&vg);
                let g = op.meta.geometry.expect("just learnt");
                let (size, parent_lv) = if parent.is_template() {
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
        let vdi = VdiMeta {
            uuid: new_uuid.clone(),
            name: label,
            description: parent.description.clone(),
            kind: if clone {
                VdiKind::Clone
            } else {
                VdiKind::Snapshot
            },
            lv,
            size,
            parent: Some(parent.uuid.clone()),
            created: now(),
            keys: BTreeMap::new(),
            pending: None,
            image: None,
            origin: origin.clone(),
            cache: None,
        };
        self.record_new(&mut op, &vg_name, &vdi)?;
        let mut vol = self.volume_of(&op.entry, &vg_name, &vdi, None, size, false, Some(physical));
        vol.sr_name = op.meta.name.clone();
        vol.parent_name = Some(parent.name.clone());
        vol.origin_name = origin_name(&op.meta, &vdi);
        Ok(vol)
    }

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
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let v = op.vdi(uuid)?.clone();
            refuse_template(&v)?;
            if v.pending == Some(Pending::Importing) {
                refuse_pending(&v)?;
            }
            if !v.read_write() {
                return Err(Error::VdiReadOnly(v.name.clone()));
            }
            let lv = vdi_lv(vg, &v)?;
            if v.origin.is_some() || ctx.our_device(uuid).is_some() {
                // A device of ours has the old size in its table: a resize waits for detach.
                ctx.refuse_attached(vg, &v, lv)?;
            }
            let current = lv.size;
            let target = new.from(current, vg.extent_size.0)?;
            let name = format!("{}/{}", vg.name, lv.name);
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
                return Ok(ctx.volume(&op.entry, &op.meta, vg, &v, None));
            }
            if v.kind == VdiKind::Preallocated && target > current || pending_from.is_some() {
                ctx.refuse_attached(vg, &v, lv)?;
                ctx.grow_preallocated(op, vg, &v, lv, target, pending_from, progress)?;
            } else {
                ctx.lvm.run(&strings(&[
                    "lvresize",
                    "-y",
                    "-f",
                    "-L",
                    &format!("{}b", target.0),
                    &name,
                ]))?;
                crash::point("vdi-resize.after-lvresize");
                op.vdi_mut(uuid)?.size = target;
                op.save()?;
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
        })
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
        let name = format!("{}/{}", vg.name, lv.name);
        let from = pending_from.unwrap_or(lv.size).min(lv.size);
        let target = target.max(lv.size);
        if target > lv.size && vg.free.0 < target.0 - lv.size.0 {
            return Err(Error::NoSpace {
                vg: vg.name.clone(),
                wanted: Bytes(target.0 - lv.size.0).to_string(),
                free: vg.free.to_string(),
                detail: space_detail(vg, &op.entry),
            });
        }
        // Recorded before the LV grows: a crash leaves an unzeroed tail the metadata knows of.
        op.vdi_mut(&v.uuid)?.pending = Some(Pending::Zeroing { from });
        op.save()?;
        if target > lv.size {
            self.lvm.run(&strings(&[
                "lvresize",
                "-y",
                "-L",
                &format!("{}b", target.0),
                &name,
            ]))?;
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
                self.lvm.run(&strings(&[
                    "lvresize",
                    "-y",
                    "-f",
                    "-L",
                    &format!("{}b", from.0),
                    &name,
                ]))?;
                let m = op.vdi_mut(&v.uuid)?;
                m.pending = None;
                m.size = from;
                op.save()?;
                Err(e)
            }
        }
    }

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

    /// `vdi attach`: returns the block device to give the VM, making it if needed. A VDI
    /// reading a template gets a device of ours over its template; any other VDI is its LV,
    /// activated by LVM. A template itself attaches read-only, as a device over its image.
    pub fn vdi_attach(&self, key: &str, sr: Option<&str>, read_only: bool) -> Result<Volume> {
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let v = op.vdi(uuid)?.clone();
            if v.is_template() && !read_only {
                return Err(Error::VdiIsTemplate(v.name.clone()));
            }
            refuse_pending(&v)?;
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
                    let made = ctx.make_device(op, vg, &v, read_only)?;
                    ctx.forget_devices();
                    made
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
            return self.attach_template(v, vg);
        }
        let lv = vdi_lv(vg, v)?;
        let template = template_of(op, v)?;
        // LVM activates snapshots read-only by their permission, and writable LVs
        // read-write; a writable thin VDI wanted read-only, or one reading a template,
        // needs a device of ours. (LVM's read_only_volume_list would make it reload the
        // whole pool read-only, which the kernel refuses.)
        if template.is_some() || read_only && is_thin(v.kind) && v.read_write() {
            self.attach_thin(&op.entry, vg, v, lv, template, read_only)
        } else {
            self.activate(vg, v, lv, read_only)
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

    /// The VDI's LV activated by LVM (a preallocated one wanted read-only is activated
    /// read-only without changing the LV).
    fn activate(&self, vg: &Vg, v: &VdiMeta, lv: &Lv, read_only: bool) -> Result<PathBuf> {
        let name = format!("{}/{}", vg.name, lv.name);
        if !lv.active {
            let mut args = strings(&["lvchange", "-ay", "-K"]);
            if read_only && v.read_write() {
                args.push("--config".into());
                args.push(format!(
                    "activation {{ read_only_volume_list = [ \"{name}\" ] }}"
                ));
            }
            args.push(name);
            self.lvm.run(&args)?;
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
        let origin = template.map(|t| self.attach_origin(t, vg)).transpose()?;
        crash::point("vdi-attach.after-origin");
        let table = dm::Table::Thin {
            pool: format!("/dev/mapper/{pool}"),
            thin_id,
            origin,
        };
        let name = dm::our_name(&vg.name, &lv.name, &v.uuid);
        dm::create(&name, &v.uuid, lv.size.0 / 512, &table, read_only).inspect_err(|_| {
            if let Some(t) = template {
                let _ = self.release_origin_if_unused(&t.uuid);
            }
        })
    }

    /// A template attached on its own, read-only: a device over its image.
    fn attach_template(&self, t: &VdiMeta, vg: &Vg) -> Result<PathBuf> {
        let origin = self.attach_origin(t, vg)?;
        let name = dm::our_name(
            &vg.name,
            &format!("template-{}", names::sanitize(&t.name, 64)),
            &t.uuid,
        );
        let sectors = t.size.0.div_ceil(512);
        let table = dm::Table::Linear { source: origin };
        dm::create(&name, &t.uuid, sectors, &table, true).inspect_err(|_| {
            let _ = self.release_origin_if_unused(&t.uuid);
        })
    }

    /// `vdi detach`: removes the device of ours (and the template's attachment when no
    /// other clone reads it) or deactivates the LV. Idempotent, and it clears what a crash
    /// or a dead qemu-nbd left behind.
    pub fn vdi_detach(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let v = op.vdi(uuid)?.clone();
            if let Some(d) = ctx.our_device(uuid) {
                dm::remove(&d.name, &v.name)?;
                ctx.forget_devices();
            }
            if let Some(t) = v.origin.as_ref().or(v.is_template().then_some(&v.uuid)) {
                ctx.release_origin_if_unused(t)?;
            }
            if let Some(lv) = vg.vdi_lv(uuid).filter(|l| l.active) {
                if lv.open {
                    return Err(Error::VdiAttached {
                        vdi: v.name.clone(),
                        device: dev_path(&vg.name, &lv.name),
                    });
                }
                ctx.set_active(&format!("{}/{}", vg.name, lv.name), false)?;
            }
            let mut vol = ctx.volume(&op.entry, &op.meta, vg, &v, None);
            vol.attached = false;
            vol.path = String::new();
            Ok(vol)
        })
    }
}

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

/// The name of the template `v` reads, for display.
fn origin_name(meta: &SrMeta, v: &VdiMeta) -> Option<String> {
    v.origin.as_ref().map(|o| {
        meta.vdi(o)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| "(forgotten)".into())
    })
}

/// The least common multiple of two allocation units (powers of two in practice).
fn lcm(a: u64, b: u64) -> u64 {
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

/// VDIs matching `key` (with the index of their SR in `metas`), in every SR or only the
/// one whose uuid is `only`, by the first rule that matches any: uuid, LV name, label, then
/// uuid prefix (at least 4 characters).
fn match_vdis<'a>(
    metas: &'a [(Entry, SrMeta)],
    only: Option<&str>,
    key: &str,
) -> Vec<(usize, &'a VdiMeta)> {
    let lower = key.to_ascii_lowercase();
    let rules: [&dyn Fn(&VdiMeta) -> bool; 4] = [
        &|v| v.uuid == lower,
        &|v| v.lv == key,
        &|v| v.name == key,
        &|v| key.len() >= 4 && v.uuid.starts_with(&lower),
    ];
    for rule in rules {
        let found: Vec<(usize, &VdiMeta)> = metas
            .iter()
            .enumerate()
            .filter(|(_, (e, _))| only.is_none_or(|u| e.uuid == u))
            .flat_map(|(i, (_, m))| m.vdis.iter().filter(|v| rule(v)).map(move |v| (i, v)))
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::meta::FORMAT;

    fn vdi(uuid: &str, name: &str, lv: &str) -> VdiMeta {
        VdiMeta {
            uuid: uuid.into(),
            name: name.into(),
            description: String::new(),
            kind: VdiKind::Thin,
            lv: lv.into(),
            size: Bytes(1 << 30),
            parent: None,
            created: 0,
            keys: BTreeMap::new(),
            pending: None,
            image: None,
            origin: None,
            cache: None,
        }
    }

    fn sr(uuid: &str, name: &str, vdis: Vec<VdiMeta>) -> (Entry, SrMeta) {
        let meta = SrMeta {
            format: FORMAT,
            uuid: uuid.into(),
            name: name.into(),
            description: String::new(),
            mode: Mode::Owned,
            pool: "thinsr_pool".into(),
            pool_owned: true,
            file: None,
            vdis,
            policy: Default::default(),
            geometry: None,
        };
        (Entry::from_meta(&meta, name, "thinsr_meta"), meta)
    }

    /// An 8 GiB VG named `vg` with 1 GiB free.
    fn vg(lvs: Vec<Lv>) -> Vg {
        Vg {
            name: "vg".into(),
            uuid: String::new(),
            size: Bytes(8 << 30),
            free: Bytes(1 << 30),
            extent_size: Bytes(4 << 20),
            tags: vec![],
            pvs: vec![],
            lvs,
            vdi_index: Default::default(),
        }
    }

    fn uuids<'a>(found: &[(usize, &'a VdiMeta)]) -> Vec<&'a str> {
        found.iter().map(|(_, v)| v.uuid.as_str()).collect()
    }

    #[test]
    fn matching_rules_in_order() {
        let a = "aaaa1111-0000-0000-0000-000000000000";
        let b = "aaaa2222-0000-0000-0000-000000000000";
        let c = "cccc3333-0000-0000-0000-000000000000";
        let metas = vec![
            sr(
                "s1",
                "one",
                vec![
                    vdi(a, "Windows 10", "Windows_10"),
                    vdi(b, "Windows 10", "Windows_10+1"),
                ],
            ),
            sr("s2", "two", vec![vdi(c, "Windows_10+1", "other")]),
        ];
        assert_eq!(uuids(&match_vdis(&metas, None, a)), [a]);
        assert_eq!(uuids(&match_vdis(&metas, None, &a.to_uppercase())), [a]);
        // An LV name wins over another VDI's identical label.
        assert_eq!(uuids(&match_vdis(&metas, None, "Windows_10+1")), [b]);
        // Two VDIs with one label: ambiguous, both returned.
        assert_eq!(uuids(&match_vdis(&metas, None, "Windows 10")), [a, b]);
        assert_eq!(uuids(&match_vdis(&metas, None, "aaaa")), [a, b]);
        assert_eq!(uuids(&match_vdis(&metas, None, "aaaa1")), [a]);
        assert_eq!(uuids(&match_vdis(&metas, None, "cccc")), [c]);
        // Prefixes shorter than 4 characters do not count.
        assert!(match_vdis(&metas, None, "ccc").is_empty());
        assert!(match_vdis(&metas, None, "nothing").is_empty());
    }

    #[test]
    fn volumes_follow_the_xapi_shape() {
        let (e, m) = sr("s1", "one", vec![vdi("u1", "disk", "disk")]);
        let vg = vg(vec![]);
        let ctx = Ctx::new(
            crate::host::lvm::Lvm::new(false),
            crate::engine::registry::RegistryFile::in_dir(std::path::Path::new("/nonexistent")),
            PathBuf::from("/nonexistent"),
        );
        let vol = ctx.volume(&e, &m, &vg, &m.vdis[0], None);
        let json = serde_json::to_value(&vol).unwrap();
        for field in VOLUME_FIELDS {
            assert!(json.get(field).is_some(), "{field} missing");
        }
        assert_eq!(json["virtual_size"], 1u64 << 30);
        assert_eq!(json["read_write"], true);
        assert_eq!(json["uri"][0], "thinsr://s1/u1");
        // Optional fields are left out rather than null: xapi rejects null strings.
        assert!(json.get("parent").is_none());
        assert_eq!(vol.problems, ["its LV vg/disk is missing"]);
    }

    #[test]
    fn space_detail_says_where_the_space_went() {
        let (e, _) = sr("s1", "one", vec![]);
        let lv = |name: &str, size: u64, tags: &[&str], pool: &str| Lv {
            name: name.into(),
            uuid: String::new(),
            size: Bytes(size),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            attr: String::new(),
            layout: String::new(),
            pool: pool.into(),
            origin: String::new(),
            data_percent: None,
            metadata_percent: None,
            metadata_size: None,
            active: false,
            open: false,
            thin_id: None,
            chunk_size: None,
        };
        let vg = vg(vec![
            lv("thinsr_pool", 5 << 30, &["thinsr_sr=s1"], ""),
            lv(
                "thin",
                100 << 30,
                &["thinsr_sr=s1", "thinsr_vdi=x"],
                "thinsr_pool",
            ),
            lv("fat", 2 << 30, &["thinsr_sr=s1", "thinsr_vdi=y"], ""),
            lv("thinsr_meta", 8 << 20, &["thinsr_meta", "thinsr_sr=s1"], ""),
        ]);
        let d = space_detail(&vg, &e);
        assert!(d.contains("thin pool holds 5.00 GiB"), "{d}");
        assert!(d.contains("preallocated VDIs 2.00 GiB"), "{d}");
        assert!(d.contains("metadata 8.00 MiB"), "{d}");
        assert!(!d.contains("not thinsr's"), "{d}");
    }
}
