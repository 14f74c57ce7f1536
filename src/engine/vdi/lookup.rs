//! Finding a VDI by what an admin or xapi calls it, listing them, and the xapi `volume`
//! record of each.

use std::collections::{HashMap, HashSet};

use super::{is_thin, origin_name, parent_name, Found, Listing, Volume, VolumeType};
use crate::engine::context::{ours, Ctx, Locked};
use crate::engine::meta::{SrMeta, VdiMeta};
use crate::engine::registry::Entry;
use crate::error::{Error, Result};
use crate::host::lvm::{dev_path, Lv, Vg, TAG_VDI};
use crate::host::thin;
use crate::ids::VgName;
use crate::units::{clip, Bytes};

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

impl Ctx {
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
        if found.is_empty() {
            // `SR/name`: the SR part may itself hold a '/', so try every split. With `sr`
            // given, only that SR's metadata was read: another SR's name finds nothing.
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
                Ok(Found {
                    entry,
                    uuid: uuid.to_string(),
                    meta,
                })
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
            [(e, _)] => vec![self.listing_report(&e.vg)?],
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

    /// A listing report of `vg`, each LV's `active` read from one list of the kernel's
    /// devices (a thin pool is active through its `-tpool` layer).
    fn listing_report(&self, vg: &VgName) -> Result<Vg> {
        let mut report = self.lvm.report_listing(vg)?;
        crate::engine::known::mark_active(&mut report);
        Ok(report)
    }

    /// `vdi show`: one lvm report.
    pub fn vdi_show(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        self.show_found(&self.resolve(key, sr)?)
    }

    /// `vdi show` of a VDI already resolved.
    pub(crate) fn show_found(&self, f: &Found) -> Result<Volume> {
        let v = f.meta.vdi(&f.uuid).expect("resolve found it there");
        let vg = self.listing_report(&f.entry.vg)?;
        let mapped = self.mapped_if_needed(&f.entry, &vg, std::slice::from_ref(v));
        Ok(self.volume(&f.entry, &f.meta, &vg, v, mapped.as_ref()))
    }

    /// Bytes mapped per thin id, read from the pool's metadata when LVM cannot say (it
    /// reports usage of active thin volumes only). Best effort: None when unreadable.
    fn mapped_if_needed(&self, e: &Entry, vg: &Vg, vdis: &[VdiMeta]) -> Option<HashMap<u32, u64>> {
        let needed = vdis.iter().any(|v| {
            let lv = match v.cache.as_ref().or(v.local.as_ref()) {
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
        let used = |l: &Lv| match (l.mapped(), l.thin_id.and_then(|id| mapped?.get(&id))) {
            (Some(b), _) => b.0,
            (None, Some(b)) => *b,
            (None, None) => 0,
        };
        let physical = match lv {
            None => 0,
            Some(l) if !is_thin(v.kind) => l.size.0,
            Some(l) => used(l),
        };
        let mine = self.our_device(&v.uuid);
        let mut vol = self.volume_of(
            e,
            &vg.name,
            v,
            lv,
            size,
            lv.is_some_and(|l| l.active) || mine.is_some(),
            Some(Bytes(physical)),
        );
        vol.sr_name = meta.name.clone();
        vol.cached = v
            .cache
            .as_ref()
            .or(v.local.as_ref())
            .map(|c| vg.lv(c).map(used).unwrap_or(0));
        vol.parent_name = parent_name(meta, v);
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
        if !v.is_template() && lv.is_none() && v.cbt_map.is_none() {
            vol.problems
                .push(format!("its LV {}/{} is missing", vg.name, v.lv));
        }
        vol
    }

    /// VDI `uuid`'s volume record after a change under the SR's lock, from a fresh report.
    pub(crate) fn reported_volume(&self, op: &Locked, uuid: &str) -> Result<Volume> {
        let v = op.vdi(uuid)?.clone();
        let vg = self.lvm.report_vg(&op.entry.vg)?;
        let mut vol = self.volume(&op.entry, &op.meta, &vg, &v, None);
        vol.sr_name = op.meta.name.clone();
        Ok(vol)
    }

    /// VDI `uuid`'s volume record just after its LV was made anew (inactive, `physical`
    /// bytes mapped), without a fresh report: what `reported_volume` would read.
    pub(crate) fn made_volume(&self, op: &Locked, uuid: &str, physical: Bytes) -> Result<Volume> {
        let v = op.vdi(uuid)?.clone();
        let mut vol = self.volume_of(
            &op.entry,
            &op.entry.vg,
            &v,
            None,
            v.size,
            false,
            Some(physical),
        );
        vol.sr_name = op.meta.name.clone();
        vol.parent_name = parent_name(&op.meta, &v);
        vol.origin_name = origin_name(&op.meta, &v);
        Ok(vol)
    }

    /// A volume record from what is known without a fresh report.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn volume_of(
        &self,
        e: &Entry,
        vg: &VgName,
        v: &VdiMeta,
        lv: Option<&Lv>,
        size: Bytes,
        attached: bool,
        physical: Option<Bytes>,
    ) -> Volume {
        let lv_name = lv.map(|l| l.name.clone()).unwrap_or_else(|| v.lv.clone());
        let physical = physical.unwrap_or(if is_thin(v.kind) { Bytes(0) } else { size });
        Volume {
            key: v.uuid.to_string(),
            uuid: v.uuid.clone(),
            name: v.name.clone(),
            description: v.description.clone(),
            read_write: v.read_write(),
            sharable: false,
            virtual_size: size,
            physical_utilisation: physical,
            uri: vec![format!("thinsr://{}/{}", e.uuid, v.uuid)],
            keys: v.keys.clone(),
            sr: e.uuid.to_string(),
            sr_name: e.name.clone(),
            kind: v.kind,
            vg: vg.clone(),
            // A VDI reading a template is not its LV alone, and a template has none: their
            // device exists only while attached.
            path: if v.is_template() || v.origin.is_some() || v.cbt_map.is_some() {
                String::new()
            } else {
                dev_path(vg, &lv_name)
            },
            lv: lv_name.clone(),
            attached,
            parent: v.parent.clone().map(String::from),
            parent_name: None,
            source: v.image.as_ref().map(|i| i.uri.clone()),
            format: v.image.as_ref().map(|i| i.format.clone()),
            origin: v.origin.clone().map(String::from),
            cache: v.cache.clone().map(String::from),
            local: v.local.clone().map(String::from),
            cached: None,
            image_allocated: None,
            server: None,
            lazy: None,
            sha256: None,
            origin_name: None,
            created: v.created,
            pending: v.pending,
            cbt_enabled: v.cbt,
            data_destroyed: v.cbt_map.is_some(),
            volume_type: match v.cbt_map {
                Some(_) => VolumeType::CbtMetadata,
                None => VolumeType::Data,
            },
            problems: vec![],
            replica: v.replica.clone(),
            hook_failures: vec![],
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
        self.with_found(&self.resolve(key, sr)?, f)
    }

    /// As `with_vdi`, for a VDI the caller has resolved already.
    pub(crate) fn with_found<T>(
        &self,
        found: &Found,
        f: impl FnOnce(&Self, &mut Locked, &Vg, &str) -> Result<T>,
    ) -> Result<T> {
        let mut op = self.lock_sr(&found.entry)?;
        op.vdi(&found.uuid)?;
        let vg = self.lvm.report_vg(&found.entry.vg)?;
        f(self, &mut op, &vg, &found.uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fixtures::{lv, sr, vdi};
    use crate::engine::vdi::{space_detail, VOLUME_FIELDS};
    use std::path::PathBuf;

    fn vg(lvs: Vec<Lv>) -> Vg {
        crate::engine::fixtures::vg("vg", lvs)
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
