//! Storage repositories: the engine. No printing; every function returns data.
//!
//! Ordering rule for every multi-step change: the metadata LV is written last when creating
//! and removed last when destroying, and the registry follows the disk. A crash at any step
//! leaves tagged LVM objects that `sr introduce` or the next run can see.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::crash;
use crate::engine::meta::{Geometry, MetaStore, Mode, SrMeta, FORMAT, META_LV_SIZE};
use crate::engine::names;
use crate::engine::registry::{Entry, Registry, RegistryFile};
use crate::error::{Error, Result};
use crate::host::dm::PoolStatus;
use crate::host::lock;
use crate::host::loopdev;
use crate::host::lvm::{
    strings, tag_args, Lv, Lvm, Vg, TAG_META, TAG_OWNED, TAG_POOL, TAG_SR, TAG_VDI,
};
use crate::host::probe;
use crate::units::{clip, Bytes, PoolSize, GIB, MIB};

pub const DEFAULT_NAME: &str = "Local storage";
pub const CHUNK: Bytes = Bytes(64 * 1024);
/// Smallest file SR worth making: room for the pool, its metadata and ours.
pub const MIN_FILE_SIZE: Bytes = Bytes(256 * MIB);
const POOL_LV: &str = "thinsr_pool";
const META_LV: &str = "thinsr_meta";

pub struct Ctx {
    pub lvm: Lvm,
    pub registry: RegistryFile,
    /// Where the scripts handling template URI schemes live.
    pub scheme_dir: PathBuf,
    /// thinsr's own dm devices, listed when first needed and again after a change.
    devices: std::cell::RefCell<Option<Vec<crate::host::dm::OurDevice>>>,
}

impl Ctx {
    pub fn new(lvm: Lvm, registry: RegistryFile, scheme_dir: PathBuf) -> Ctx {
        Ctx {
            lvm,
            registry,
            scheme_dir,
            devices: Default::default(),
        }
    }

    /// The device of ours serving VDI `uuid`, from one listing per command.
    pub(crate) fn our_device(&self, uuid: &str) -> Option<crate::host::dm::OurDevice> {
        self.devices
            .borrow_mut()
            .get_or_insert_with(crate::engine::datapath::our_devices)
            .iter()
            .find(|d| d.vdi == uuid)
            .cloned()
    }

    /// After a device of ours was made, changed or removed: list them again when asked.
    pub(crate) fn forget_devices(&self) {
        self.devices.borrow_mut().take();
    }
}

/// A summary line of `sr list`.
#[derive(Debug, Serialize)]
pub struct SrSummary {
    pub uuid: String,
    pub name: String,
    pub vg: String,
    pub mode: Mode,
    /// attached, detached, or missing (the VG is not visible).
    pub state: String,
    pub total_space: u64,
    pub free_space: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Everything `sr show` knows. The first fields are xapi's `sr_stat`.
#[derive(Debug, Serialize)]
pub struct SrDetail {
    pub sr: String,
    pub name: String,
    pub uuid: String,
    pub description: String,
    pub free_space: u64,
    pub total_space: u64,
    pub datasources: Vec<String>,
    pub clustered: bool,
    pub health: (String, String),
    pub vg: String,
    pub mode: Mode,
    pub attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    pub vg_size: u64,
    pub vg_free: u64,
    pub pvs: Vec<PvInfo>,
    pub pool: PoolInfo,
    /// VDI LVs (templates have none), and template cache LVs, counted apart.
    pub vdis: usize,
    pub caches: usize,
    /// thinsr's own LVs.
    pub lvs: Vec<LvInfo>,
    /// LVs in the VG that thinsr did not create and never touches (shared mode).
    pub foreign_lvs: Vec<LvInfo>,
    /// Virtual size of all thin volumes over the pool's size.
    pub overcommit: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PvInfo {
    pub device: String,
    pub size: u64,
    pub free: u64,
}

#[derive(Debug, Serialize)]
pub struct PoolInfo {
    pub lv: String,
    /// False when the admin's own pool was adopted.
    pub owned: bool,
    pub size: u64,
    pub data_used: u64,
    pub data_percent: f64,
    pub metadata_size: u64,
    pub metadata_used: u64,
    pub metadata_percent: f64,
    pub thin_volumes: usize,
    pub virtual_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PoolStatus>,
}

impl PoolInfo {
    /// Virtual size of all thin volumes over the pool's size.
    pub fn overcommit(&self) -> f64 {
        if self.size > 0 {
            self.virtual_total as f64 / self.size as f64
        } else {
            0.0
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LvInfo {
    pub name: String,
    pub role: String,
    pub size: u64,
    pub active: bool,
}

pub(crate) fn sr_tag(uuid: &str) -> String {
    format!("{TAG_SR}{uuid}")
}

pub(crate) fn meta_path(vg: &str, lv: &str) -> PathBuf {
    PathBuf::from(crate::host::lvm::dev_path(vg, lv))
}

/// Pool metadata sized for everything the pool may grow to: 64 bytes per chunk, LVM's own
/// rule, never below 4 MiB nor above LVM's 15.8 GiB maximum.
pub fn pool_metadata_size(max_pool: Bytes, extent: Bytes) -> Bytes {
    let raw = max_pool.0 / CHUNK.0 * 64;
    Bytes(raw.clamp(4 * MIB, 15 * GIB)).round_up(extent.0.max(1))
}

/// Initial pool of an owned SR: a tenth of the VG, at least 1 GiB, within what is free once
/// the metadata (and LVM's spare copy of it) and thinsr's own LV are set aside. Pools
/// cannot shrink, so they start modest and grow.
pub fn initial_pool_size(vg_size: Bytes, extent: Bytes) -> Result<(Bytes, Bytes)> {
    let meta = pool_metadata_size(vg_size, extent);
    let reserved = meta.0 * 2 + META_LV_SIZE.round_up(extent.0).0 + extent.0 * 2;
    let room = Bytes(vg_size.0.saturating_sub(reserved)).round_down(extent.0);
    let want = Bytes((vg_size.0 / 10).max(GIB)).round_down(extent.0);
    let pool = want.min(room);
    if pool.0 < 64 * MIB {
        return Err(Error::NoSpace {
            vg: String::new(),
            wanted: Bytes(reserved + 64 * MIB).to_string(),
            free: vg_size.to_string(),
            detail: String::new(),
        });
    }
    Ok((pool, meta))
}

/// What a PV offers once LVM has its label and metadata area (1 MiB) and whole extents.
fn usable(dev: Bytes, extent: Bytes) -> Bytes {
    Bytes(dev.0.saturating_sub(MIB)).round_down(extent.0)
}

const EXTENT: Bytes = Bytes(4 * MIB);

impl Ctx {
    fn load(&self) -> Result<Registry> {
        self.registry.load()
    }

    /// The registered SR named by `key` (or the only one); reads no LVM state.
    pub fn entry(&self, key: Option<&str>) -> Result<Entry> {
        Ok(self.load()?.pick(key)?.clone())
    }

    fn update_registry(&self, f: impl FnOnce(&mut Registry) -> Result<()>) -> Result<()> {
        let held = lock::acquire("registry", "the SR registry")?;
        self.update_registry_locked(&held, f)
    }

    /// As `update_registry`, for a caller that already holds the registry lock (flock
    /// locks belong to an open file: taking it twice would wait on ourselves).
    fn update_registry_locked(
        &self,
        _held: &lock::Lock,
        f: impl FnOnce(&mut Registry) -> Result<()>,
    ) -> Result<()> {
        let mut reg = self.load()?;
        f(&mut reg)?;
        self.registry.save(&reg)
    }

    fn check_name_free(reg: &Registry, name: &str, except_uuid: Option<&str>) -> Result<()> {
        if let Some(e) = reg
            .srs
            .iter()
            .find(|e| e.name == name && Some(e.uuid.as_str()) != except_uuid)
        {
            return Err(Error::InvalidName {
                input: clip(name),
                why: format!(
                    "storage repository {} already has this name; choose another with --name",
                    e.uuid
                ),
            });
        }
        Ok(())
    }

    /// `sr create DEVICE...`: owned mode on raw disks.
    pub fn create_owned(
        &self,
        devices: &[String],
        name: Option<&str>,
        force: bool,
    ) -> Result<SrDetail> {
        let name = name.unwrap_or(DEFAULT_NAME);
        names::check_label(name)?;
        if devices.is_empty() {
            return Err(Error::Usage(
                "name at least one device, or use --file".into(),
            ));
        }
        let held = lock::acquire("registry", "the SR registry")?;
        let reg = self.load()?;
        Self::check_name_free(&reg, name, None)?;
        let mut all = self.lvm.report(None)?;
        if self.clear_half_made(&reg, &all, devices)? {
            all = self.lvm.report(None)?;
        }
        let devs = probe::check_devices(devices, force)?;
        let entry = self.build_owned(&held, &all, &devs, name, None)?;
        drop(held);
        self.show(Some(&entry.uuid))
    }

    /// `sr create --file PATH --size SIZE`: owned mode on a loop-attached sparse file.
    pub fn create_file(&self, path: &Path, size: Bytes, name: Option<&str>) -> Result<SrDetail> {
        let name = name.unwrap_or(DEFAULT_NAME);
        names::check_label(name)?;
        if size < MIN_FILE_SIZE {
            return Err(Error::InvalidSize {
                input: size.to_string(),
                why: format!("a file SR needs at least {MIN_FILE_SIZE}"),
            });
        }
        let path = absolute(path)?;
        let held = lock::acquire("registry", "the SR registry")?;
        Self::check_name_free(&self.load()?, name, None)?;
        loopdev::create_sparse(&path, size)?;
        let result = loopdev::attach(&path).and_then(|dev| {
            let devs = [probe::Device {
                path: dev.clone(),
                size,
            }];
            let all = self.lvm.report(None)?;
            self.build_owned(&held, &all, &devs, name, Some(&path))
                .inspect_err(|_| {
                    let _ = loopdev::detach(&dev);
                })
        });
        let entry = match result {
            Ok(e) => e,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
        drop(held);
        let warning = format!(
            "this SR lives in {}: it is only as safe as the filesystem holding that file",
            path.display()
        );
        let mut detail = self.show(Some(&entry.uuid))?;
        detail.warnings.push(warning);
        Ok(detail)
    }

    /// Creates VG, pool, metadata and registry entry on checked devices; on failure removes
    /// everything it made.
    fn build_owned(
        &self,
        held: &lock::Lock,
        all: &[Vg],
        devs: &[probe::Device],
        name: &str,
        file: Option<&Path>,
    ) -> Result<Entry> {
        let paths: HashSet<String> = devs.iter().map(|d| d.path.display().to_string()).collect();
        for vg in all {
            if let Some(pv) = vg.pvs.iter().find(|p| paths.contains(&p.name)) {
                return Err(Error::DeviceInUse {
                    device: pv.name.clone(),
                    found: format!("a physical volume of volume group '{}'", vg.name),
                });
            }
        }
        let taken: HashSet<String> = all.iter().map(|v| v.name.clone()).collect();
        let vg = names::unique_name(name, "", &taken);
        let vg_size = Bytes(devs.iter().map(|d| usable(d.size, EXTENT).0).sum());
        let (pool_size, pool_meta) = initial_pool_size(vg_size, EXTENT).map_err(|e| match e {
            Error::NoSpace {
                wanted,
                free,
                detail,
                ..
            } => Error::NoSpace {
                vg: vg.clone(),
                wanted,
                free,
                detail,
            },
            e => e,
        })?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let meta = SrMeta {
            format: FORMAT,
            uuid: uuid.clone(),
            name: name.into(),
            description: String::new(),
            mode: Mode::Owned,
            pool: POOL_LV.into(),
            pool_owned: true,
            file: file.map(Path::to_path_buf),
            vdis: vec![],
            policy: Default::default(),
            geometry: Some(Geometry {
                extent: EXTENT,
                chunk: CHUNK,
            }),
        };
        let mut args = strings(&["vgcreate", "-y"]);
        // The extent size the pool was sized with, whatever lvm.conf's default.
        args.extend(["-s".into(), format!("{}k", EXTENT.0 / 1024)]);
        args.extend(tag_args(&[TAG_OWNED.into(), sr_tag(&uuid)]));
        args.push(vg.clone());
        // In the order given: LVM allocates from the first PV first.
        args.extend(devs.iter().map(|d| d.path.display().to_string()));
        self.lvm.run(&args)?;
        let rest = (|| {
            crash::point("sr-create.after-vgcreate");
            self.create_pool(&vg, POOL_LV, pool_size, pool_meta, &uuid)?;
            crash::point("sr-create.after-pool");
            self.create_meta_lv(&vg, META_LV, &uuid)?;
            MetaStore::new(meta_path(&vg, META_LV), name).write(&meta, true)?;
            crash::point("sr-create.after-meta");
            let entry = Entry::from_meta(&meta, &vg, META_LV);
            self.add_entry(held, entry.clone())?;
            Ok(entry)
        })();
        if rest.is_err() {
            // Undo: the VG is ours (just made, tagged); remove it and the PV labels.
            let _ =
                self.remove_vg_and_labels(&vg, devs.iter().map(|d| d.path.display().to_string()));
        }
        rest
    }

    /// A `sr create` that crashed before the SR's metadata existed leaves a VG tagged as
    /// thinsr's own, unregistered, with at most the empty pool: nothing a VM wrote. Creating
    /// again on those disks removes it first. One that crashed later left a whole SR, which
    /// `sr introduce` registers: that is refused here, with the hint.
    /// True when it removed one (`all`, the VGs before, is then out of date).
    fn clear_half_made(&self, reg: &Registry, all: &[Vg], devices: &[String]) -> Result<bool> {
        let paths: HashSet<String> = devices
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .map(|p| p.display().to_string())
            .collect();
        let registered: HashSet<&str> = reg.srs.iter().map(|e| e.vg.as_str()).collect();
        let mut removed = false;
        for vg in all {
            let ours = vg.has_tag(TAG_OWNED) && vg.tag_value(TAG_SR).is_some();
            if !ours
                || registered.contains(vg.name.as_str())
                || !vg.pvs.iter().any(|p| paths.contains(&p.name))
            {
                continue;
            }
            let tag = sr_tag(vg.tag_value(TAG_SR).unwrap_or_default());
            if vg.lvs.iter().any(|l| l.has_tag(TAG_META)) {
                return Err(Error::DeviceInUse {
                    device: vg.pvs[0].name.clone(),
                    found: format!(
                        "thinsr SR volume group '{}', not registered: 'thinsr sr introduce {}' registers it",
                        vg.name, vg.name
                    ),
                });
            }
            if vg
                .lvs
                .iter()
                .any(|l| !l.has_tag(&tag) && !l.name.starts_with('['))
            {
                continue; // someone added LVs: not ours to remove
            }
            self.remove_vg_and_labels(&vg.name, vg.pvs.iter().map(|p| p.name.clone()))?;
            removed = true;
        }
        Ok(removed)
    }

    /// Removes a VG thinsr made (it checked the tags) and the PV labels of its disks.
    fn remove_vg_and_labels(&self, vg: &str, pvs: impl Iterator<Item = String>) -> Result<()> {
        self.lvm.run(&strings(&["vgremove", "-f", vg]))?;
        let mut args = strings(&["pvremove", "-y"]);
        args.extend(pvs);
        self.lvm.run(&args).map(drop)
    }

    fn create_pool(&self, vg: &str, lv: &str, size: Bytes, meta: Bytes, uuid: &str) -> Result<()> {
        let mut args = strings(&["lvcreate", "-y", "--type", "thin-pool", "-n", lv]);
        args.extend(["-L".into(), format!("{}b", size.0)]);
        args.extend(["--poolmetadatasize".into(), format!("{}b", meta.0)]);
        args.extend(["--chunksize".into(), format!("{}b", CHUNK.0)]);
        args.extend(tag_args(&[TAG_POOL.into(), sr_tag(uuid)]));
        args.push(vg.into());
        self.lvm.run(&args).map(drop)
    }

    fn create_meta_lv(&self, vg: &str, lv: &str, uuid: &str) -> Result<()> {
        let mut args = strings(&["lvcreate", "-y", "-Wy", "-n", lv]);
        args.extend(["-L".into(), format!("{}b", META_LV_SIZE.0)]);
        args.extend(tag_args(&[TAG_META.into(), sr_tag(uuid)]));
        args.push(vg.into());
        self.lvm.run(&args).map(drop)
    }

    fn add_entry(&self, held: &lock::Lock, entry: Entry) -> Result<()> {
        self.update_registry_locked(held, |reg| {
            reg.srs.retain(|e| e.uuid != entry.uuid);
            reg.srs.push(entry);
            Ok(())
        })
    }

    /// `sr introduce VG`: shared mode beside the admin's LVs, or re-registering an SR whose
    /// metadata is already in the VG (after `forget`, or on a reinstalled host).
    pub fn introduce(
        &self,
        vg_name: &str,
        name: Option<&str>,
        pool_size: Option<PoolSize>,
        pool: Option<&str>,
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
            self.introduce_new(&reg_lock, &vg, name, pool_size, pool)?
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
            self.lvm.run(&[
                "lvchange".into(),
                "-ay".into(),
                "-y".into(),
                format!("{}/{}", vg.name, meta_lv.name),
            ])?;
        }
        let store = MetaStore::new(meta_path(&vg.name, &meta_lv.name), &vg.name);
        let (mut meta, _) = store.read()?;
        if let Some(n) = name.filter(|n| *n != meta.name) {
            Self::check_name_free(reg, n, Some(&meta.uuid))?;
            meta.name = n.into();
            store.write(&meta, false)?;
        } else {
            Self::check_name_free(reg, &meta.name, Some(&meta.uuid))?;
        }
        self.add_entry(held, Entry::from_meta(&meta, &vg.name, &meta_lv.name))?;
        Ok(meta.uuid)
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
            .map(|l| l.name.clone())
            .collect();
        if !leftovers.is_empty() {
            let mut args = strings(&["lvremove", "-f"]);
            args.extend(leftovers.iter().map(|n| format!("{}/{n}", vg.name)));
            self.lvm.run(&args)?;
        }
        Ok(leftovers)
    }

    fn introduce_new(
        &self,
        held: &lock::Lock,
        vg: &Vg,
        name: &str,
        pool_size: Option<PoolSize>,
        pool: Option<&str>,
    ) -> Result<String> {
        let uuid = uuid::Uuid::new_v4().to_string();
        let cleared = self.clear_half_introduced(vg, held)?;
        let taken: HashSet<String> = vg
            .lvs
            .iter()
            .map(|l| l.name.clone())
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
            (None, Some(p)) => {
                let lv = vg.lv(p).ok_or_else(|| Error::LvNotFound(format!("{}/{}", vg.name, clip(p))))?;
                if !lv.is_thin_pool() {
                    return Err(Error::NotAThinPool { lv: format!("{}/{}", vg.name, p), kind: lv.kind() });
                }
                if vg.free < meta_lv_size {
                    return Err(no_space(vg, meta_lv_size));
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
                self.create_pool(&vg.name, &lv, bytes, pool_meta, &uuid)?;
                (lv, true)
            }
        };
        let meta = SrMeta {
            format: FORMAT,
            uuid: uuid.clone(),
            name: name.into(),
            description: String::new(),
            mode: Mode::Shared,
            pool: pool_lv.clone(),
            pool_owned,
            file: None,
            vdis: vec![],
            policy: Default::default(),
            // An adopted pool's chunk size is learnt from the first report that needs it.
            geometry: pool_owned.then_some(Geometry {
                extent: vg.extent_size,
                chunk: CHUNK,
            }),
        };
        let rest = (|| {
            crash::point("sr-introduce.after-pool");
            self.create_meta_lv(&vg.name, &meta_lv, &uuid)?;
            MetaStore::new(meta_path(&vg.name, &meta_lv), name).write(&meta, true)?;
            self.add_entry(held, Entry::from_meta(&meta, &vg.name, &meta_lv))
        })();
        if let Err(e) = rest {
            // Remove only what this call made: its pool and metadata LV, by name.
            let mut args = strings(&["lvremove", "-f"]);
            if pool_owned {
                args.push(format!("{}/{}", vg.name, pool_lv));
            }
            args.push(format!("{}/{}", vg.name, meta_lv));
            let _ = self.lvm.run(&args);
            return Err(e);
        }
        Ok(uuid)
    }

    /// `sr attach`: re-creates the loop device of a file SR, activates pool and metadata.
    pub fn attach(&self, key: Option<&str>) -> Result<SrDetail> {
        let entry = self.entry(key)?;
        {
            let _l = lock::acquire(&entry.uuid, &entry.name)?;
            if let Some(file) = &entry.file {
                if loopdev::find(file)?.is_empty() {
                    loopdev::attach(file)?;
                }
            }
            let vg = self.lvm.report_vg(&entry.vg)?;
            let inactive: Vec<String> = [&entry.pool, &entry.meta_lv]
                .into_iter()
                .filter(|n| !vg.lv(n).is_some_and(|l| l.active))
                .map(|n| format!("{}/{}", entry.vg, n))
                .collect();
            if !inactive.is_empty() {
                let mut args = strings(&["lvchange", "-ay", "-y"]);
                args.extend(inactive);
                self.lvm.run(&args)?;
            }
        }
        self.show(Some(&entry.uuid))
    }

    /// `sr detach`: deactivates pool and metadata (and the loop of a file SR). Refused while
    /// a VDI is attached.
    pub fn detach(&self, key: Option<&str>) -> Result<()> {
        let entry = self.entry(key)?;
        let _l = lock::acquire(&entry.uuid, &entry.name)?;
        let vg = match self.lvm.report_vg(&entry.vg) {
            Ok(vg) => vg,
            // A file SR whose loop is gone is already detached.
            Err(Error::VgNotFound(_)) if entry.file.is_some() => return Ok(()),
            Err(e) => return Err(e),
        };
        refuse_attached(self, &entry, &vg)?;
        // Only LVs carrying this SR's tag: an adopted pool is the admin's and stays active.
        let active: Vec<String> = ours(&vg, &entry.uuid)
            .filter(|l| l.active)
            .map(|l| format!("{}/{}", entry.vg, l.name))
            .collect();
        if !active.is_empty() {
            let mut args = strings(&["lvchange", "-an"]);
            args.extend(active);
            self.lvm.run(&args)?;
        }
        if let Some(file) = &entry.file {
            for dev in loopdev::find(file)? {
                loopdev::detach(&dev)?;
            }
        }
        Ok(())
    }

    /// `sr forget`: unregister only; nothing on disk changes.
    pub fn forget(&self, key: Option<&str>) -> Result<Entry> {
        let entry = self.entry(key)?;
        let _l = lock::acquire(&entry.uuid, &entry.name)?;
        self.update_registry(|reg| {
            reg.srs.retain(|e| e.uuid != entry.uuid);
            Ok(())
        })?;
        Ok(entry)
    }

    /// Checks `sr destroy` would be allowed, before the admin is asked to confirm.
    pub fn check_destroy(&self, entry: &Entry) -> Result<()> {
        match self.lvm.report_vg(&entry.vg) {
            Ok(vg) => refuse_attached(self, entry, &vg),
            Err(_) => Ok(()),
        }
    }

    /// `sr destroy`. Owned: the VG, its PV labels (and a file SR's loop and file). Shared:
    /// only LVs carrying this SR's tag, metadata last; the admin's LVs stay as they were.
    pub fn destroy(&self, entry: &Entry) -> Result<()> {
        let _l = lock::acquire(&entry.uuid, &entry.name)?;
        if let Some(file) = &entry.file {
            if loopdev::find(file)?.is_empty() && file.exists() {
                loopdev::attach(file)?;
            }
        }
        let vg = match self.lvm.report_vg_pvs(&entry.vg) {
            // A destroy that crashed after vgremove: only the registry entry is left.
            Err(Error::VgNotFound(_)) if entry.mode == Mode::Owned => {
                return self.update_registry(|reg| {
                    reg.srs.retain(|e| e.uuid != entry.uuid);
                    Ok(())
                })
            }
            other => other?,
        };
        refuse_attached(self, entry, &vg)?;
        let tag = sr_tag(&entry.uuid);
        match entry.mode {
            Mode::Owned => {
                if !(vg.has_tag(TAG_OWNED) && vg.has_tag(&tag)) {
                    return Err(Error::InvalidArgument(format!(
                        "volume group '{}' does not carry this SR's ownership tags; thinsr will not remove it",
                        vg.name
                    )));
                }
                let foreign: Vec<&str> = vg
                    .lvs
                    .iter()
                    .filter(|l| !l.has_tag(&tag))
                    .map(|l| l.name.as_str())
                    .collect();
                if !foreign.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "volume group '{}' holds LVs thinsr did not create ({}); thinsr will not remove them",
                        vg.name,
                        foreign.join(", ")
                    )));
                }
                self.lvm.run(&strings(&["vgremove", "-f", &vg.name]))?;
                crash::point("sr-destroy.after-vgremove");
                let mut args = strings(&["pvremove", "-y"]);
                args.extend(vg.pvs.iter().map(|p| p.name.clone()));
                self.lvm.run(&args)?;
            }
            Mode::Shared => {
                let (meta, rest): (Vec<&Lv>, Vec<&Lv>) =
                    ours(&vg, &entry.uuid).partition(|l| l.has_tag(TAG_META));
                if !rest.is_empty() {
                    let mut args = strings(&["lvremove", "-f"]);
                    args.extend(rest.iter().map(|l| format!("{}/{}", vg.name, l.name)));
                    self.lvm.run(&args)?;
                }
                crash::point("sr-destroy.before-meta");
                if !meta.is_empty() {
                    let mut args = strings(&["lvremove", "-f"]);
                    args.extend(meta.iter().map(|l| format!("{}/{}", vg.name, l.name)));
                    self.lvm.run(&args)?;
                }
            }
        }
        if let Some(file) = &entry.file {
            for dev in loopdev::find(file)? {
                loopdev::detach(&dev)?;
            }
            std::fs::remove_file(file)
                .map_err(|e| Error::io(format!("removing {}", file.display()), e))?;
        }
        self.update_registry(|reg| {
            reg.srs.retain(|e| e.uuid != entry.uuid);
            Ok(())
        })
    }

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
                        let (total, free) = space(vg, e);
                        let attached = vg.lv(&e.meta_lv).is_some_and(|l| l.active);
                        (
                            (if attached { "attached" } else { "detached" }).to_string(),
                            total,
                            free,
                        )
                    }
                };
                SrSummary {
                    uuid: e.uuid.clone(),
                    name: e.name.clone(),
                    vg: e.vg.clone(),
                    mode: e.mode,
                    state,
                    total_space: total.0,
                    free_space: free.0,
                    file: e.file.clone(),
                }
            })
            .collect())
    }

    /// `sr show`: one lvm report, the kernel's pool status, and the metadata when active.
    pub fn show(&self, key: Option<&str>) -> Result<SrDetail> {
        let entry = self.entry(key)?;
        let vg = self.lvm.report_vg_pvs(&entry.vg)?;
        let store = entry.meta_store();
        // The metadata is the truth; the registry can lag it by one crash.
        let (name, description) = match store.exists() {
            true => store.read().map(|(m, _)| (m.name, m.description))?,
            false => (entry.name.clone(), String::new()),
        };
        let attached = vg.lv(&entry.meta_lv).is_some_and(|l| l.active);
        let pool = crate::engine::pool::pool_info(&vg, &entry)?;
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
            } else {
                "other"
            }
            .into()
        };
        let info = |l: &Lv, role: String| LvInfo {
            name: l.name.clone(),
            role,
            size: l.size.0,
            active: l.active,
        };
        let (mine, foreign): (Vec<&Lv>, Vec<&Lv>) = vg
            .lvs
            .iter()
            .partition(|l| l.has_tag(&tag) || l.name == entry.pool);
        let (total, free) = space(&vg, &entry);
        let health = match pool.kernel.as_ref().and_then(|k| k.trouble()) {
            Some(t) => ("Unavailable".to_string(), format!("thin pool is {t}")),
            None => ("Healthy".to_string(), String::new()),
        };
        Ok(SrDetail {
            sr: entry.uuid.clone(),
            name,
            uuid: entry.uuid.clone(),
            description,
            free_space: free.0,
            total_space: total.0,
            datasources: vec![],
            clustered: false,
            health,
            vg: vg.name.clone(),
            mode: entry.mode,
            attached,
            file: entry.file.clone(),
            vg_size: vg.size.0,
            vg_free: vg.free.0,
            pvs: vg
                .pvs
                .iter()
                .map(|p| PvInfo {
                    device: p.name.clone(),
                    size: p.size.0,
                    free: p.free.0,
                })
                .collect(),
            overcommit: pool.overcommit(),
            pool,
            vdis: mine
                .iter()
                .filter(|l| l.tag_value(TAG_VDI).is_some())
                .count(),
            caches: mine
                .iter()
                .filter(|l| l.tag_value(crate::host::lvm::TAG_CACHE).is_some())
                .count(),
            lvs: mine.iter().map(|l| info(l, role(l))).collect(),
            foreign_lvs: foreign.iter().map(|l| info(l, "foreign".into())).collect(),
            warnings: vec![],
        })
    }
}

/// Total and free space for VDIs: the pool plus what the VG still has for it to grow into.
fn space(vg: &Vg, e: &Entry) -> (Bytes, Bytes) {
    let pool = vg.lv(&e.pool);
    let size = pool.map(|l| l.size.0).unwrap_or(0);
    let used = pool
        .and_then(|l| l.data_percent)
        .map(|p| (size as f64 * p / 100.0) as u64)
        .unwrap_or(0);
    (
        Bytes(size + vg.free.0),
        Bytes(size.saturating_sub(used) + vg.free.0),
    )
}

fn no_space(vg: &Vg, wanted: Bytes) -> Error {
    Error::NoSpace {
        vg: vg.name.clone(),
        wanted: wanted.to_string(),
        free: vg.free.to_string(),
        detail: String::new(),
    }
}

fn find_meta_lv(vg: &Vg) -> Option<&Lv> {
    vg.lvs
        .iter()
        .find(|l| l.has_tag(TAG_META) && l.tag_value(TAG_SR).is_some())
}

/// LVs carrying this SR's tag.
pub(crate) fn ours<'a>(vg: &'a Vg, uuid: &'a str) -> impl Iterator<Item = &'a Lv> + 'a {
    let tag = sr_tag(uuid);
    vg.lvs.iter().filter(move |l| l.has_tag(&tag))
}

/// Refuses while a VDI of the SR is in use: active through LVM, or served by a device of
/// thinsr's own (a template's clone, or a template attached read-only).
fn refuse_attached(ctx: &Ctx, entry: &Entry, vg: &Vg) -> Result<()> {
    let mut attached: Vec<String> = ours(vg, &entry.uuid)
        .filter(|l| l.tag_value(TAG_VDI).is_some() && (l.open || l.active))
        .map(|l| l.name.clone())
        .collect();
    let mut uuids: Vec<String> = ours(vg, &entry.uuid)
        .filter_map(|l| l.tag_value(TAG_VDI).map(str::to_string))
        .collect();
    if let Ok(meta) = Ctx::read_meta(entry) {
        uuids.extend(
            meta.vdis
                .iter()
                .filter(|v| v.is_template())
                .map(|v| v.uuid.clone()),
        );
    }
    attached.extend(
        uuids
            .iter()
            .filter_map(|u| ctx.our_device(u))
            .map(|d| d.path().display().to_string()),
    );
    if attached.is_empty() {
        Ok(())
    } else {
        Err(Error::SrHasAttachedVdis {
            sr: entry.name.clone(),
            lvs: attached,
        })
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidArgument("the file path is empty".into()));
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(parent).map_err(|_| {
        Error::InvalidArgument(format!(
            "directory '{}' does not exist",
            clip(&parent.display().to_string())
        ))
    })?;
    let file = path.file_name().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "'{}' names no file",
            clip(&path.display().to_string())
        ))
    })?;
    Ok(dir.join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_sizing() {
        let vg = Bytes(8 * GIB);
        assert_eq!(pool_metadata_size(vg, EXTENT), Bytes(8 * MIB));
        let (pool, meta) = initial_pool_size(vg, EXTENT).unwrap();
        assert_eq!(pool, Bytes(GIB)); // 10% < 1 GiB floor
        assert_eq!(meta, Bytes(8 * MIB));
        let (pool, _) = initial_pool_size(Bytes(100 * GIB), EXTENT).unwrap();
        assert_eq!(pool, Bytes(10 * GIB).round_down(EXTENT.0));
        // A small VG gets what is left, not more.
        let (pool, meta) = initial_pool_size(Bytes(256 * MIB), EXTENT).unwrap();
        assert!(pool.0 + meta.0 * 2 + META_LV_SIZE.0 <= 256 * MIB);
        assert!(initial_pool_size(Bytes(32 * MIB), EXTENT).is_err());
        // Huge VGs cap metadata at LVM's limit.
        assert_eq!(pool_metadata_size(Bytes(1 << 50), EXTENT), Bytes(15 * GIB));
    }

    #[test]
    fn usable_space_leaves_the_label() {
        assert_eq!(usable(Bytes(4 * GIB), EXTENT), Bytes(4 * GIB - 4 * MIB));
        assert_eq!(usable(Bytes(MIB), EXTENT), Bytes(0));
    }
}
