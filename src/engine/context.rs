//! The engine's context: what every command works through (the lvm runner, the registry
//! of this host's SRs, the scheme-script directory) and an SR opened under its lock.
//! Shared by every operation module; it depends on none of them.

use std::path::PathBuf;

use crate::engine::meta::{MetaStore, SrMeta, VdiMeta};
use crate::engine::registry::{Entry, Registry, RegistryFile};
use crate::error::{Error, Result};
use crate::host::lock::{self, Lock};
use crate::host::lvm::cmd::{self, Activate, LvCreate};
use crate::host::lvm::{Lv, Lvm, Vg, TAG_SR};
use crate::ids::{LvName, LvPath, SrUuid, VdiUuid, VgName};

pub struct Ctx {
    pub lvm: Lvm,
    pub registry: RegistryFile,
    /// Where the scripts handling template URI schemes live.
    pub scheme_dir: PathBuf,
    /// thinsr's own dm devices, listed when first needed and again after a change.
    devices: std::cell::RefCell<Option<Vec<crate::host::dm::OurDevice>>>,
    /// The interface the command came through, as hooks are told.
    pub caller: Caller,
}

/// Which interface a command came through (hooks are told).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Caller {
    #[default]
    Cli,
    Xapi,
    Cron,
    Watch,
}

pub(crate) fn sr_tag(uuid: &str) -> String {
    format!("{TAG_SR}{uuid}")
}

/// `lvcreate` of a thin LV of SR `sr` in `vg/pool` that is not a VDI but belongs to one
/// (a template's cache or local copy, a snapshot's saved block map), marked `{tag}{owner}`:
/// active now to be written, skipped by activation afterwards.
pub(crate) fn tagged_thin_lvcreate(
    vg: &VgName,
    pool: &LvName,
    lv: &LvName,
    size: crate::units::Bytes,
    sr: &SrUuid,
    tag: &str,
    owner: &VdiUuid,
) -> Vec<String> {
    LvCreate::new(lv, &[sr_tag(sr), format!("{tag}{owner}")])
        .active()
        .thin(vg, pool, size)
}

/// LVs carrying this SR's tag.
pub(crate) fn ours<'a>(vg: &'a Vg, uuid: &'a str) -> impl Iterator<Item = &'a Lv> + 'a {
    let tag = sr_tag(uuid);
    vg.lvs.iter().filter(move |l| l.has_tag(&tag))
}

impl Ctx {
    pub fn new(lvm: Lvm, registry: RegistryFile, scheme_dir: PathBuf) -> Ctx {
        Ctx {
            lvm,
            registry,
            scheme_dir,
            devices: Default::default(),
            caller: Default::default(),
        }
    }

    /// thinsr's configuration directory (/etc/thinsr unless `--config-dir` says otherwise):
    /// the registry's and the share credentials'.
    pub(crate) fn config_dir(&self) -> PathBuf {
        self.registry
            .path
            .parent()
            .map_or_else(|| PathBuf::from("/etc/thinsr"), PathBuf::from)
    }

    /// The device of ours serving VDI `uuid`, from one listing per command.
    pub(crate) fn our_device(&self, uuid: &str) -> Option<crate::host::dm::OurDevice> {
        self.devices
            .borrow_mut()
            .get_or_insert_with(crate::host::dm::our_devices_or_none)
            .iter()
            .find(|d| d.vdi == uuid)
            .cloned()
    }

    /// After a device of ours was made, changed or removed: list them again when asked.
    pub(crate) fn forget_devices(&self) {
        self.devices.borrow_mut().take();
    }

    pub(crate) fn load(&self) -> Result<Registry> {
        self.registry.load()
    }

    /// The registered SR named by `key` (or the only one); reads no LVM state.
    pub fn entry(&self, key: Option<&str>) -> Result<Entry> {
        Ok(self.load()?.pick(key)?.clone())
    }

    pub(crate) fn update_registry(
        &self,
        f: impl FnOnce(&mut Registry) -> Result<()>,
    ) -> Result<()> {
        let held = lock::acquire("registry", "the SR registry")?;
        self.update_registry_locked(&held, f)
    }

    /// As `update_registry`, for a caller that already holds the registry lock (flock
    /// locks belong to an open file: taking it twice would wait on ourselves).
    pub(crate) fn update_registry_locked(
        &self,
        _held: &lock::Lock,
        f: impl FnOnce(&mut Registry) -> Result<()>,
    ) -> Result<()> {
        let mut reg = self.load()?;
        f(&mut reg)?;
        self.registry.save(&reg)
    }
}

/// The threshold this SR's lvm calls pass (LVM makes the pool's low-water mark from it at
/// each table load): the one the live table was loaded with, so that a thin volume's
/// create or remove never reloads the pool for its mark alone (see
/// `host::dmevent::threshold_for`). The calls that resize or reload the pool pass the
/// policy's own (`pool.rs` and `watch.rs` call `Lvm::set_pool_threshold` before them),
/// which sets the mark.
fn live_threshold(entry: &Entry, wanted: u8) -> u8 {
    let blocks = crate::host::dm::pool_status(&entry.vg, &entry.pool)
        .ok()
        .flatten()
        .map(|k| k.data_total);
    let mark = crate::host::dmevent::pool_low_water(&entry.vg, &entry.pool);
    match (blocks, mark) {
        (Some(b), Some(m)) => crate::host::dmevent::threshold_for(b, m, wanted),
        _ => wanted, // not active: its next activation loads a fresh table
    }
}

/// An SR under its lock, with its metadata read.
pub(crate) struct Locked {
    pub entry: Entry,
    store: MetaStore,
    pub meta: SrMeta,
    _lock: Lock,
}

impl Locked {
    pub(crate) fn vdi(&self, uuid: &str) -> Result<&VdiMeta> {
        self.meta
            .vdi(uuid)
            .ok_or_else(|| Error::VdiNotFound(uuid.into()))
    }
    pub(crate) fn vdi_mut(&mut self, uuid: &str) -> Result<&mut VdiMeta> {
        self.meta
            .vdi_mut(uuid)
            .ok_or_else(|| Error::VdiNotFound(uuid.into()))
    }
    pub fn save(&self) -> Result<()> {
        self.store.write(&self.meta, false).map(drop)
    }
}

impl Ctx {
    /// Removes an LV thinsr made.
    pub(crate) fn remove_lv(&self, path: &LvPath) -> Result<()> {
        self.lvm
            .run(&cmd::remove(std::slice::from_ref(path)))
            .map(drop)
    }

    /// Activates (ignoring the activation-skip flag every VDI carries) or deactivates an LV.
    pub(crate) fn set_active(&self, path: &LvPath, on: bool) -> Result<()> {
        let how = if on { Activate::Ours } else { Activate::Off };
        self.lvm
            .run(&cmd::activate(std::slice::from_ref(path), how))
            .map(drop)
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
        let meta = Self::read_meta(entry)?;
        self.lvm
            .set_pool_threshold(live_threshold(entry, meta.policy.threshold));
        Ok(Locked {
            entry: entry.clone(),
            store: entry.meta_store(),
            meta,
            _lock: lock,
        })
    }
}
