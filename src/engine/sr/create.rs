//! `sr create`: an owned VG on blank disks, or on a sparse file through a loop device.

use std::collections::HashSet;
use std::path::Path;

use super::{
    absolute, initial_pool_size, new_uuid, usable, SrDetail, DEFAULT_NAME, EXTENT, META_LV,
    MIN_FILE_SIZE, POOL_LV,
};
use crate::crash;
use crate::engine::context::{sr_tag, Ctx};
use crate::engine::meta::{Geometry, MetaStore, Mode, SrMeta, FORMAT};
use crate::engine::names;
use crate::engine::pool::CHUNK;
use crate::engine::registry::{meta_path, Entry, Registry};
use crate::error::{Error, Result};
use crate::host::lock;
use crate::host::loopdev;
use crate::host::lvm::{cmd, Vg, TAG_META, TAG_OWNED, TAG_SR};
use crate::host::probe;
use crate::ids::{LvName, SrUuid, VgName};
use crate::units::Bytes;

impl Ctx {
    /// `sr create DEVICE...`: owned mode on raw disks.
    pub fn create_owned(
        &self,
        devices: &[String],
        name: Option<&str>,
        force: bool,
        uuid: Option<&str>,
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
        let uuid = new_uuid(&reg, uuid)?;
        let mut all = self.lvm.report(None)?;
        if self.clear_half_made(&reg, &all, devices)? {
            all = self.lvm.report(None)?;
        }
        let devs = probe::check_devices(devices, force)?;
        let entry = self.build_owned(&held, &all, &devs, name, None, uuid)?;
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
        let uuid = new_uuid(&self.load()?, None)?;
        Self::check_name_free(&self.load()?, name, None)?;
        loopdev::create_sparse(&path, size)?;
        let result = loopdev::attach(&path).and_then(|dev| {
            let devs = [probe::Device {
                path: dev.clone(),
                size,
            }];
            let all = self.lvm.report(None)?;
            self.build_owned(&held, &all, &devs, name, Some(&path), uuid)
                .map_err(|e| {
                    e.undo(&format!("detaching {}", dev.display()), || {
                        loopdev::detach(&dev)
                    })
                })
        });
        let entry = match result {
            Ok(e) => e,
            Err(e) => {
                return Err(e.undo(&format!("removing {}", path.display()), || {
                    std::fs::remove_file(&path)
                        .map_err(|x| Error::io(path.display().to_string(), x))
                }));
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
        uuid: String,
    ) -> Result<Entry> {
        let paths: HashSet<String> = devs.iter().map(|d| d.path.display().to_string()).collect();
        let ids = probe::device_ids(paths.iter().map(String::as_str));
        for vg in all {
            if let Some(pv) = vg
                .pvs
                .iter()
                .find(|p| probe::is_one_of(&p.name, &ids, &paths))
            {
                return Err(Error::DeviceInUse {
                    device: pv.name.clone(),
                    found: format!("a physical volume of volume group '{}'", vg.name),
                });
            }
        }
        let taken: HashSet<String> = all.iter().map(|v| v.name.to_string()).collect();
        // An SR's label may be empty (xapi's are allowed to be): its VG is named as if it
        // had the default one.
        let base = if name.trim().is_empty() {
            DEFAULT_NAME
        } else {
            name
        };
        let vg = names::unique_name(base, "", &taken);
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
        let meta = SrMeta {
            format: FORMAT,
            uuid: uuid.clone().into(),
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
            receiving: vec![],
        };
        let (vg, sr) = (VgName::from(vg.as_str()), SrUuid::from(uuid.as_str()));
        // In the order given: LVM allocates from the first PV first. The extent size is
        // the one the pool was sized with, whatever lvm.conf's default.
        let pvs: Vec<String> = devs.iter().map(|d| d.path.display().to_string()).collect();
        let tags = [TAG_OWNED.into(), sr_tag(&sr)];
        self.lvm.run(&cmd::create_vg(&vg, EXTENT, &tags, &pvs))?;
        let rest = (|| {
            let (pool_lv, meta_lv) = (LvName::from(POOL_LV), LvName::from(META_LV));
            crash::point("sr-create.after-vgcreate");
            self.create_pool(&vg, &pool_lv, pool_size, pool_meta, &sr)?;
            crash::point("sr-create.after-pool");
            self.create_meta_lv(&vg, &meta_lv, &sr)?;
            MetaStore::new(meta_path(&vg, &meta_lv), name).write(&meta, true)?;
            crash::point("sr-create.after-meta");
            let entry = Entry::from_meta(&meta, &vg, &meta_lv);
            self.add_entry(held, entry.clone())?;
            Ok(entry)
        })();
        // Undo: the VG is ours (just made, tagged); remove it and the PV labels.
        rest.map_err(|e: Error| {
            e.undo(&format!("removing the new volume group {vg}"), || {
                self.remove_vg_and_labels(&vg, &pvs)
            })
        })
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
        let ids = probe::device_ids(devices.iter().map(String::as_str));
        let registered: HashSet<&str> = reg.srs.iter().map(|e| e.vg.as_str()).collect();
        let mut removed = false;
        for vg in all {
            let ours = vg.has_tag(TAG_OWNED) && vg.tag_value(TAG_SR).is_some();
            if !ours
                || registered.contains(vg.name.as_str())
                || !vg
                    .pvs
                    .iter()
                    .any(|p| probe::is_one_of(&p.name, &ids, &paths))
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
            let pvs: Vec<String> = vg.pvs.iter().map(|p| p.name.clone()).collect();
            self.remove_vg_and_labels(&vg.name, &pvs)?;
            removed = true;
        }
        Ok(removed)
    }
}
