//! `sr introduce`: an SR beside the admin's own LVs in an existing VG (shared mode), or an
//! SR thinsr made before, found again from its metadata LV after a reinstall.

use std::collections::HashSet;

use super::{find_meta_lv, new_uuid, no_space, pool_metadata_size, SrDetail, META_LV, POOL_LV};
use crate::crash;
use crate::engine::context::{sr_tag, Ctx};
use crate::engine::meta::{Geometry, MetaStore, Mode, SrMeta, FORMAT, META_LV_SIZE};
use crate::engine::names;
use crate::engine::pool::CHUNK;
use crate::engine::registry::{meta_path, Entry, Registry};
use crate::error::{Error, Result};
use crate::host::lock;
use crate::host::lvm::cmd::{self, Activate};
use crate::host::lvm::{Lv, Vg, TAG_META, TAG_POOL, TAG_SR};
use crate::ids::{LvName, LvPath, SrUuid, VgName};
use crate::units::{clip, Bytes, PoolSize};

/// `sr introduce VG --pool LV`: the admin's thin pool to adopt, and whether they agreed to
/// turn its zeroing on should it be off.
#[derive(Clone, Copy)]
pub struct Adopt<'a> {
    pub pool: &'a str,
    pub turn_on_zeroing: bool,
}

impl Ctx {
    /// `sr introduce VG`: shared mode beside the admin's LVs, or re-registering an SR whose
    /// metadata is already in the VG (after `forget`, or on a reinstalled host).
    pub fn introduce(
        &self,
        vg_name: &VgName,
        name: Option<&str>,
        pool_size: Option<PoolSize>,
        pool: Option<Adopt<'_>>,
        uuid: Option<&SrUuid>,
    ) -> Result<SrDetail> {
        if let Some(n) = name {
            names::check_label(n)?;
        }
        if !names::is_valid_lvm_name(vg_name) {
            return Err(Error::VgNotFound(clip(vg_name)));
        }
        let reg_lock = lock::acquire("registry", "the SR registry")?;
        let reg = self.load()?;
        let vg = self.lvm.report_vg(vg_name)?;
        let mut warnings: Vec<String> = Vec::new();
        let uuid = if let Some(meta_lv) = find_meta_lv(&vg) {
            if pool_size.is_some() || pool.is_some() {
                warnings.push("the volume group already holds a thinsr SR: --pool-size and --pool are ignored".into());
            }
            self.reintroduce(&reg_lock, &reg, &vg, meta_lv, name)?
        } else {
            let name = name.unwrap_or(vg_name);
            Self::check_name_free(&reg, name, None)?;
            let uuid = new_uuid(&reg, uuid.map(SrUuid::as_str))?;
            self.introduce_new(&reg_lock, &vg, name, pool_size, pool, uuid)?
        };
        drop(reg_lock);
        let mut detail = self.show(Some(&uuid))?;
        detail.warnings = warnings;
        Ok(detail)
    }

    fn reintroduce(
        &self,
        held: &lock::Lock,
        reg: &Registry,
        vg: &Vg,
        meta_lv: &Lv,
        name: Option<&str>,
    ) -> Result<String> {
        let uuid = meta_lv.tag_value(TAG_SR).unwrap_or_default().to_string();
        if let Some(e) = reg.srs.iter().find(|e| e.uuid == uuid) {
            return Err(Error::SrExists {
                name: e.name.clone(),
                uuid,
            });
        }
        if !meta_lv.active {
            let path = [LvPath::new(&vg.name, &meta_lv.name)];
            self.lvm.run(&cmd::activate(&path, Activate::Sr))?;
        }
        let store = MetaStore::new(meta_path(&vg.name, &meta_lv.name), vg.name.as_str());
        let (mut meta, _) = store.read()?;
        if let Some(n) = name.filter(|n| *n != meta.name) {
            Self::check_name_free(reg, n, Some(&meta.uuid))?;
            meta.name = n.into();
            store.write(&meta, false)?;
        } else {
            Self::check_name_free(reg, &meta.name, Some(&meta.uuid))?;
        }
        self.add_entry(held, Entry::from_meta(&meta, &vg.name, &meta_lv.name))?;
        Ok(meta.uuid.to_string())
    }

    /// Pools a crashed `sr introduce` made: tagged by thinsr for an SR that is neither
    /// registered nor has a metadata LV, and holding no thin volume. Removed (they are
    /// empty) so the new attempt does not leave them taking space; returns their names.
    fn clear_half_introduced(&self, vg: &Vg, _held: &lock::Lock) -> Result<Vec<String>> {
        let reg = self.load()?;
        let leftovers: Vec<String> = vg
            .lvs
            .iter()
            .filter(|l| l.has_tag(TAG_POOL) && l.is_thin_pool())
            .filter(|l| {
                let Some(sr) = l.tag_value(TAG_SR) else {
                    return false;
                };
                let tag = sr_tag(sr);
                !reg.srs.iter().any(|e| e.uuid == sr)
                    && !vg
                        .lvs
                        .iter()
                        .any(|m| m.has_tag(TAG_META) && m.has_tag(&tag))
                    && !vg.lvs.iter().any(|t| t.pool == l.name)
            })
            .map(|l| l.name.to_string())
            .collect();
        if !leftovers.is_empty() {
            let paths: Vec<LvPath> = leftovers
                .iter()
                .map(|n| LvPath::new(&vg.name, &n.as_str().into()))
                .collect();
            self.lvm.run(&cmd::remove(&paths))?;
        }
        Ok(leftovers)
    }

    fn introduce_new(
        &self,
        held: &lock::Lock,
        vg: &Vg,
        name: &str,
        pool_size: Option<PoolSize>,
        pool: Option<Adopt<'_>>,
        uuid: String,
    ) -> Result<String> {
        let cleared = self.clear_half_introduced(vg, held)?;
        let taken: HashSet<String> = vg
            .lvs
            .iter()
            .map(|l| l.name.to_string())
            .filter(|n| !cleared.contains(n))
            .collect();
        let meta_lv = names::unique_name(META_LV, &vg.name, &taken);
        let meta_lv_size = META_LV_SIZE.round_up(vg.extent_size.0);
        let (pool_lv, pool_owned) = match (pool_size, pool) {
            (Some(_), Some(_)) => {
                return Err(Error::Usage("give either --pool-size (a new pool) or --pool (adopt one), not both".into()))
            }
            (None, None) => {
                return Err(Error::Usage(format!(
                    "shared mode needs a pool: --pool-size SIZE|N% makes one (volume group '{}' has {} free), --pool LV adopts an existing thin pool",
                    vg.name, vg.free
                )))
            }
            (None, Some(Adopt { pool: p, turn_on_zeroing })) => {
                let lv = vg.lv(p).ok_or_else(|| Error::LvNotFound(format!("{}/{}", vg.name, clip(p))))?;
                if !lv.is_thin_pool() {
                    return Err(Error::NotAThinPool { lv: format!("{}/{}", vg.name, p), kind: lv.kind() });
                }
                if vg.free < meta_lv_size {
                    return Err(no_space(vg, meta_lv_size));
                }
                if !lv.zeroes_new_blocks() {
                    // A pool made with -Zn hands out blocks with whatever they held: the
                    // disk's old bytes, or a destroyed VDI's.
                    let vg_pool = LvPath::new(&vg.name, &p.into());
                    if !turn_on_zeroing {
                        return Err(Error::PoolNotZeroing {
                            pool: vg_pool.to_string(),
                        });
                    }
                    self.turn_on_zeroing(&vg_pool)?;
                }
                (p.to_string(), false)
            }
            (Some(size), None) => {
                let bytes = match size {
                    PoolSize::Absolute(b) => b.round_up(vg.extent_size.0),
                    PoolSize::PercentOfFree(p) => Bytes(vg.free.0 / 100 * u64::from(p)),
                };
                let pool_meta = pool_metadata_size(vg.size, vg.extent_size);
                let overhead = Bytes(pool_meta.0 * 2 + meta_lv_size.0);
                // A percentage is of what is free: leave room for the pool's metadata.
                let bytes = match size {
                    PoolSize::PercentOfFree(_) => {
                        Bytes(bytes.0.min(vg.free.0.saturating_sub(overhead.0))).round_down(vg.extent_size.0)
                    }
                    PoolSize::Absolute(_) => bytes,
                };
                if bytes.0 == 0 || bytes.0 + overhead.0 > vg.free.0 {
                    return Err(no_space(vg, Bytes(bytes.0 + overhead.0)));
                }
                let lv = names::unique_name(POOL_LV, &vg.name, &taken);
                let sr = SrUuid::from(uuid.as_str());
                self.create_pool(&vg.name, &lv.as_str().into(), bytes, pool_meta, &sr)?;
                (lv, true)
            }
        };
        let meta = SrMeta {
            format: FORMAT,
            uuid: uuid.clone().into(),
            name: name.into(),
            description: String::new(),
            mode: Mode::Shared,
            pool: pool_lv.clone().into(),
            pool_owned,
            file: None,
            vdis: vec![],
            policy: Default::default(),
            // An adopted pool's chunk size is learnt from the first report that needs it.
            geometry: pool_owned.then_some(Geometry {
                extent: vg.extent_size,
                chunk: CHUNK,
            }),
            receiving: vec![],
        };
        let rest = (|| {
            let meta_lv = LvName::from(meta_lv.as_str());
            crash::point("sr-introduce.after-pool");
            self.create_meta_lv(&vg.name, &meta_lv, &meta.uuid)?;
            MetaStore::new(meta_path(&vg.name, &meta_lv), name).write(&meta, true)?;
            self.add_entry(held, Entry::from_meta(&meta, &vg.name, &meta_lv))
        })();
        if let Err(e) = rest {
            // Remove only what this call made: its pool and metadata LV, by name.
            let mut made = vec![LvPath::new(&vg.name, &meta_lv.as_str().into())];
            if pool_owned {
                made.insert(0, LvPath::new(&vg.name, &pool_lv.as_str().into()));
            }
            let args = cmd::remove(&made);
            return Err(e.undo("removing the LVs it made", || self.lvm.run(&args)));
        }
        Ok(uuid)
    }
}
