//! Storage repositories: the engine. No printing; every function returns data.
//!
//! Ordering rule for every multi-step change: the metadata LV is written last when creating
//! and removed last when destroying, and the registry follows the disk. A crash at any step
//! leaves tagged LVM objects that `sr introduce` or the next run can see.
//!
//! Split by what is done: `create` (owned VGs and file-backed SRs), `introduce` (shared
//! mode and re-registration), `lifecycle` (attach, detach, forget, destroy), `show` (list,
//! show, rename, descriptions). Shared steps and sizing rules live here.

mod create;
mod introduce;
pub use introduce::Adopt;
mod lifecycle;
pub mod probe;
mod show;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::engine::context::{ours, sr_tag, Ctx};
use crate::engine::datapath::local_key;
use crate::engine::meta::{Mode, META_LV_SIZE};
use crate::engine::pool::CHUNK;
use crate::engine::registry::{Entry, Registry};
use crate::engine::usage::PoolInfo;
use crate::error::{Error, Result};
use crate::host::lock;
use crate::host::lvm::{cmd, Lv, Vg, TAG_META, TAG_POOL, TAG_SR, TAG_VDI};
use crate::ids::{LvName, LvPath, SrUuid, VgName};
use crate::units::{clip, Bytes, GIB, MIB};

pub const DEFAULT_NAME: &str = "Local storage";

/// Smallest file SR worth making: room for the pool, its metadata and ours.
pub const MIN_FILE_SIZE: Bytes = Bytes(256 * MIB);

const POOL_LV: &str = "thinsr_pool";

const META_LV: &str = "thinsr_meta";

/// A summary line of `sr list`.
#[derive(Debug, Serialize)]
pub struct SrSummary {
    pub uuid: String,
    pub name: String,
    pub vg: String,
    pub mode: Mode,
    /// attached, detached, or missing (the VG is not visible).
    pub state: String,
    pub total_space: Bytes,
    pub free_space: Bytes,
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
    pub free_space: Bytes,
    pub total_space: Bytes,
    pub datasources: Vec<String>,
    pub clustered: bool,
    pub health: (String, String),
    pub vg: String,
    pub mode: Mode,
    pub attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    pub vg_size: Bytes,
    pub vg_free: Bytes,
    pub pvs: Vec<PvInfo>,
    pub pool: PoolInfo,
    /// Who grows the pool between cron's runs, and how owned pools are sized.
    pub growth: crate::engine::growth::Growth,
    pub pool_sizing: String,
    /// VDI LVs (templates have none), and template cache LVs, counted apart.
    pub vdis: usize,
    pub caches: usize,
    /// thinsr's own LVs.
    pub lvs: Vec<LvInfo>,
    /// LVs in the VG that thinsr did not create and never touches (shared mode).
    pub foreign_lvs: Vec<LvInfo>,
    /// Virtual size of all thin volumes over the pool's size.
    pub overcommit: f64,
    /// Receives that stopped with what verified kept (`vdi receive --resumable`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub receiving: Vec<Interrupted>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A receive that stopped, kept to be resumed: whose snapshot, how much verified, and the
/// token its sender resumes with (`vdi send --resume`).
#[derive(Debug, Serialize)]
pub struct Interrupted {
    pub source_sr: String,
    pub source_vdi: String,
    pub label: String,
    pub snapshot: String,
    pub verified: Bytes,
    pub token: String,
}

#[derive(Debug, Serialize)]
pub struct PvInfo {
    pub device: String,
    pub size: Bytes,
    pub free: Bytes,
}

#[derive(Debug, Serialize)]
pub struct LvInfo {
    pub name: String,
    pub role: String,
    pub size: Bytes,
    pub active: bool,
}

/// Pool metadata sized for everything the pool may grow to: 64 bytes per chunk, LVM's own
/// rule, never below 4 MiB nor above LVM's 15.8 GiB maximum.
pub fn pool_metadata_size(max_pool: Bytes, extent: Bytes) -> Bytes {
    let raw = max_pool.0 / CHUNK.0 * 64;
    Bytes(raw.clamp(4 * MIB, 15 * GIB)).round_up(extent.0.max(1))
}

/// Initial pool of an owned SR: a quarter of the VG, at least 1 GiB, within what is free
/// once the metadata (and LVM's spare copy of it) and thinsr's own LV are set aside. A
/// first burst of up to a quarter of the disks needs no growth at all, and later ones find
/// the pool grown in whole-GiB steps as they fill it (`pool watch`). Pools cannot shrink,
/// so the other three quarters stay free for preallocated VDIs until the pool needs them;
/// the metadata is sized for the whole VG from the start.
pub fn initial_pool_size(vg_size: Bytes, extent: Bytes) -> Result<(Bytes, Bytes)> {
    let meta = pool_metadata_size(vg_size, extent);
    let reserved = meta.0 * 2 + META_LV_SIZE.round_up(extent.0).0 + extent.0 * 2;
    let room = Bytes(vg_size.0.saturating_sub(reserved)).round_down(extent.0);
    let want = Bytes((vg_size.0 / 4).max(GIB)).round_down(extent.0);
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

/// The uuid a new SR takes: the one xapi's `SR.create` passes (so `xe sr-list`, URIs and
/// `SR.stat` agree), or a new one.
pub(crate) fn new_uuid(reg: &Registry, given: Option<&str>) -> Result<String> {
    let Some(given) = given else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let uuid = SrUuid::parse(given)?.to_string();
    if let Some(e) = reg.srs.iter().find(|e| e.uuid == uuid) {
        return Err(Error::SrExists {
            name: e.name.clone(),
            uuid,
        });
    }
    Ok(uuid)
}

impl Ctx {
    /// Names must not repeat, so that an admin can name an SR by its name. Empty ones may
    /// (xapi's labels can be empty): such SRs are named by uuid or VG.
    fn check_name_free(reg: &Registry, name: &str, except_uuid: Option<&str>) -> Result<()> {
        if name.trim().is_empty() {
            return Ok(());
        }
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

    fn create_pool(
        &self,
        vg: &VgName,
        lv: &LvName,
        size: Bytes,
        meta: Bytes,
        uuid: &SrUuid,
    ) -> Result<()> {
        let tags = [TAG_POOL.into(), sr_tag(uuid)];
        let path = LvPath::new(vg, lv);
        self.lvm
            .run(&cmd::create_pool(&path, size, meta, CHUNK, &tags))
            .map(drop)
    }

    /// `lvchange --zero y VG/POOL`: new blocks of the pool read as zeros from now on. The
    /// pool's table is reloaded live; blocks it handed out before keep what they hold.
    pub(crate) fn turn_on_zeroing(&self, pool: &LvPath) -> Result<()> {
        self.lvm.run(&cmd::zero_new_blocks(pool)).map(drop)
    }

    fn create_meta_lv(&self, vg: &VgName, lv: &LvName, uuid: &SrUuid) -> Result<()> {
        let tags = [TAG_META.into(), sr_tag(uuid)];
        let path = LvPath::new(vg, lv);
        self.lvm
            .run(&cmd::create_plain(&path, META_LV_SIZE, &tags))
            .map(drop)
    }

    fn add_entry(&self, held: &lock::Lock, entry: Entry) -> Result<()> {
        self.update_registry_locked(held, |reg| {
            reg.srs.retain(|e| e.uuid != entry.uuid);
            reg.srs.push(entry);
            Ok(())
        })
    }

    /// Removes a VG thinsr made (it checked the tags) and the PV labels of its disks.
    fn remove_vg_and_labels(&self, vg: &VgName, pvs: &[String]) -> Result<()> {
        self.lvm.run(&cmd::remove_vg(vg))?;
        self.lvm.run(&cmd::remove_pv_labels(pvs)).map(drop)
    }
}

/// Total and free space for VDIs: the pool plus what the VG still has for it to grow into.
/// `used`: the pool's data in use (from the kernel's status, or LVM's percentage).
fn space(vg: &Vg, e: &Entry, used: Bytes) -> (Bytes, Bytes) {
    let size = vg.lv(&e.pool).map(|l| l.size.0).unwrap_or(0);
    (
        Bytes(size + vg.free.0),
        Bytes(size.saturating_sub(used.0) + vg.free.0),
    )
}

/// The pool's data in use as LVM's report says (active pools only).
fn lvm_used(vg: &Vg, e: &Entry) -> Bytes {
    vg.lv(&e.pool)
        .and_then(|l| {
            l.data_percent
                .map(|p| Bytes((l.size.0 as f64 * p / 100.0) as u64))
        })
        .unwrap_or_default()
}

fn no_space(vg: &Vg, wanted: Bytes) -> Error {
    Error::NoSpace {
        vg: vg.name.to_string(),
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

/// Refuses while a VDI of the SR is in use: active through LVM, or served by a device of
/// thinsr's own (a template's clone, or a template attached read-only).
fn refuse_attached(ctx: &Ctx, entry: &Entry, vg: &Vg) -> Result<()> {
    let mut attached: Vec<String> = ours(vg, &entry.uuid)
        .filter(|l| l.tag_value(TAG_VDI).is_some() && (l.open || l.active))
        .map(|l| l.name.to_string())
        .collect();
    let mut uuids: Vec<String> = ours(vg, &entry.uuid)
        .filter_map(|l| l.tag_value(TAG_VDI).map(str::to_string))
        .collect();
    if let Ok(meta) = Ctx::read_meta(entry) {
        uuids.extend(
            meta.vdis
                .iter()
                .filter(|v| v.is_template())
                .flat_map(|v| [v.uuid.to_string(), local_key(&v.uuid)]),
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
        assert_eq!(pool, Bytes(2 * GIB)); // a quarter
        assert_eq!(meta, Bytes(8 * MIB));
        let (pool, _) = initial_pool_size(Bytes(2 * GIB), EXTENT).unwrap();
        assert_eq!(pool, Bytes(GIB)); // a quarter < 1 GiB floor
        let (pool, _) = initial_pool_size(Bytes(100 * GIB), EXTENT).unwrap();
        assert_eq!(pool, Bytes(25 * GIB).round_down(EXTENT.0));
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
