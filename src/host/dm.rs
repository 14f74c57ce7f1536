//! device-mapper, through the `devicemapper` crate: what LVM does not tell us exactly.

use std::str::FromStr;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use devicemapper::{
    DevId, DmFlags, DmName, DmOptions, DmUuid, ThinPoolStatus, ThinPoolStatusSummary, DM,
};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids::{LvName, VgName};
use crate::units::{Bytes, DataBlocks, Sectors};

/// The dm name LVM gives `vg/lv`: dashes doubled, joined by one dash.
pub fn dm_name(vg: &VgName, lv: &LvName) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// Prefix of the names of the dm devices thinsr makes itself (LVM never sees them).
pub const OUR_PREFIX: &str = "thinsr-";
/// Prefix of their dm uuids; the rest is the VDI's uuid.
const OUR_UUID_PREFIX: &str = "THINSR-";

/// A thin pool's state as its status line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PoolState {
    #[serde(rename = "rw")]
    ReadWrite,
    #[serde(rename = "ro")]
    ReadOnly,
    #[serde(rename = "out_of_data_space")]
    OutOfDataSpace,
    #[serde(rename = "error")]
    Error,
    #[serde(rename = "fail")]
    Fail,
}

impl PoolState {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::ReadWrite => "rw",
            PoolState::ReadOnly => "ro",
            PoolState::OutOfDataSpace => "out_of_data_space",
            PoolState::Error => "error",
            PoolState::Fail => "fail",
        }
    }
}

impl std::fmt::Display for PoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kernel's view of a thin pool. Data counts are in data blocks: the status line does
/// not say how large one is (the pool's chunk size); metadata blocks are always 4 KiB.
#[derive(Debug, Clone)]
pub struct PoolStatus {
    pub state: PoolState,
    pub needs_check: bool,
    pub data_used: DataBlocks,
    pub data_total: DataBlocks,
    pub metadata_used: Bytes,
    pub metadata_total: Bytes,
    pub transaction_id: u64,
    pub when_full: String,
}

pub fn open() -> Result<DM> {
    DM::new().map_err(|e| Error::DmFailed(format!("cannot open /dev/mapper/control: {e}")))
}

/// The dm device carrying the thin-pool target of `vg/pool` and its status line, or None
/// when the pool is not active. With thin volumes LVM stacks the target under `-tpool`; an
/// unused pool may carry it itself.
pub fn pool_target(dm: &DM, vg: &VgName, pool: &LvName) -> Option<(String, String)> {
    pool_line(dm, vg, pool, DmFlags::DM_NOFLUSH)
}

/// As `pool_target`, with the pool's table line instead of its status.
pub fn pool_table(dm: &DM, vg: &VgName, pool: &LvName) -> Option<(String, String)> {
    pool_line(dm, vg, pool, DmFlags::DM_STATUS_TABLE)
}

fn pool_line(dm: &DM, vg: &VgName, pool: &LvName, flags: DmFlags) -> Option<(String, String)> {
    [format!("{}-tpool", dm_name(vg, pool)), dm_name(vg, pool)]
        .into_iter()
        .find_map(|name| {
            let (_, table) = dm
                .table_status(
                    &DevId::Name(DmName::new(&name).ok()?),
                    DmOptions::default().set_flags(flags),
                )
                .ok()?;
            let (_, _, target, params) = table.into_iter().next()?;
            (target == "thin-pool").then_some((name, params))
        })
}

/// Status of the pool `vg/pool`, or None when it is not active.
pub fn pool_status(vg: &VgName, pool: &LvName) -> Result<Option<PoolStatus>> {
    pool_target(&open()?, vg, pool)
        .map(|(_, params)| parse_pool_status(&params))
        .transpose()
}

fn parse_pool_status(params: &str) -> Result<PoolStatus> {
    let status = ThinPoolStatus::from_str(params)
        .map_err(|e| Error::DmFailed(format!("unreadable thin-pool status '{params}': {e}")))?;
    Ok(match status {
        ThinPoolStatus::Working(w) => {
            let meta_block = 4096u64;
            PoolStatus {
                state: match w.summary {
                    ThinPoolStatusSummary::Good => PoolState::ReadWrite,
                    ThinPoolStatusSummary::ReadOnly => PoolState::ReadOnly,
                    ThinPoolStatusSummary::OutOfSpace => PoolState::OutOfDataSpace,
                },
                needs_check: w.needs_check,
                data_used: DataBlocks(*w.usage.used_data),
                data_total: DataBlocks(*w.usage.total_data),
                metadata_used: Bytes(*w.usage.used_meta * meta_block),
                metadata_total: Bytes(*w.usage.total_meta * meta_block),
                transaction_id: w.transaction_id,
                when_full: match w.no_space_policy {
                    devicemapper::ThinPoolNoSpacePolicy::Error => "error",
                    devicemapper::ThinPoolNoSpacePolicy::Queue => "queue",
                }
                .into(),
            }
        }
        ThinPoolStatus::Error => failed(PoolState::Error),
        ThinPoolStatus::Fail => failed(PoolState::Fail),
    })
}

fn failed(state: PoolState) -> PoolStatus {
    PoolStatus {
        state,
        needs_check: false,
        data_used: DataBlocks(0),
        data_total: DataBlocks(0),
        metadata_used: Bytes(0),
        metadata_total: Bytes(0),
        transaction_id: 0,
        when_full: String::new(),
    }
}

impl PoolStatus {
    /// What is wrong with the pool, as "out_of_data_space, needs_check"; None when it is a
    /// healthy read-write pool.
    pub fn trouble(&self) -> Option<String> {
        trouble(self.state, self.needs_check)
    }
}

/// What is wrong with a pool in `state`, as "out_of_data_space, needs_check"; None when it
/// is a healthy read-write pool.
pub fn trouble(state: PoolState, needs_check: bool) -> Option<String> {
    (state != PoolState::ReadWrite || needs_check)
        .then(|| format!("{state}{}", if needs_check { ", needs_check" } else { "" }))
}

impl PoolStatus {
    /// Data and metadata use in percent (data blocks over data blocks: no block size
    /// needed); None for a failed pool, which reports no counts.
    pub fn percent_used(&self) -> Option<(f64, f64)> {
        (self.data_total.0 > 0 && self.metadata_total.0 > 0).then(|| {
            (
                self.data_used.0 as f64 * 100.0 / self.data_total.0 as f64,
                self.metadata_used.0 as f64 * 100.0 / self.metadata_total.0 as f64,
            )
        })
    }
}

fn valid_name(name: &str) -> Result<&DmName> {
    DmName::new(name).map_err(|e| dm_err(name, e))
}

fn dm_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::DmFailed(format!("{what}: {e}"))
}

/// A device thinsr made for a VDI.
#[derive(Debug, Clone)]
pub struct OurDevice {
    pub name: String,
    /// The VDI (or template) it serves.
    pub vdi: String,
    pub open_count: i32,
    /// The last field of its table: a thin device's external origin, a linear one's source.
    pub origin: Option<String>,
    pub read_only: bool,
    /// False when it has no live table (left by a crash between create and resume).
    pub live: bool,
}

impl OurDevice {
    pub fn path(&self) -> PathBuf {
        Path::new("/dev/mapper").join(&self.name)
    }
}

/// The dm name for VDI `lv` of `vg`, readable in `dmsetup ls`; the uuid when that would be
/// too long for the kernel (127 bytes).
pub fn our_name(vg: &VgName, lv: &LvName, vdi: &str) -> String {
    let name = format!("{OUR_PREFIX}{}", dm_name(vg, lv));
    if name.len() <= 127 {
        name
    } else {
        format!("{OUR_PREFIX}{vdi}")
    }
}

/// thinsr's devices, or none where device-mapper is unavailable (listing must not fail).
pub fn our_devices_or_none() -> Vec<OurDevice> {
    open().and_then(|dm| our_devices(&dm)).unwrap_or_default()
}

/// The names of every device-mapper device, in one ioctl: which LVs are active, without
/// asking the kernel about each.
pub fn names() -> Result<std::collections::HashSet<String>> {
    let dm = open()?;
    Ok(dm
        .list_devices()
        .map_err(|e| dm_err("listing devices", e))?
        .into_iter()
        .map(|(name, _, _)| name.to_string())
        .collect())
}

/// Every device thinsr made, with its table: one list ioctl and one per device (the table
/// status carries the device's uuid, flags and open count too).
pub fn our_devices(dm: &DM) -> Result<Vec<OurDevice>> {
    let mut found = Vec::new();
    for (name, _, _) in dm
        .list_devices()
        .map_err(|e| dm_err("listing devices", e))?
    {
        if !name.to_string().starts_with(OUR_PREFIX) {
            continue;
        }
        let status = DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE);
        let Ok((info, table)) = dm.table_status(&DevId::Name(&name), status) else {
            continue; // removed meanwhile
        };
        let Some(vdi) = info.uuid().and_then(|u| {
            u.to_string()
                .strip_prefix(OUR_UUID_PREFIX)
                .map(str::to_string)
        }) else {
            continue;
        };
        found.push(OurDevice {
            name: name.to_string(),
            vdi,
            open_count: info.open_count(),
            origin: origin_of(&table),
            read_only: info.flags().contains(DmFlags::DM_READONLY),
            live: !table.is_empty() && !info.flags().contains(DmFlags::DM_SUSPEND),
        });
    }
    Ok(found)
}

/// The device a table reads besides the pool: a thin target's external origin (its third
/// field), a linear target's source.
fn origin_of(table: &[(u64, u64, String, String)]) -> Option<String> {
    let (_, _, target, params) = table.first()?;
    let mut fields = params.split_whitespace();
    match target.as_str() {
        "linear" => fields.next(),
        "thin" => fields.nth(2),
        _ => None,
    }
    .map(str::to_string)
}

/// `major:minor` of a block device node.
pub fn devno(path: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if !m.file_type().is_block_device() {
        return Err(Error::NotABlockDevice(path.display().to_string()));
    }
    let rdev = m.rdev();
    Ok(format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    ))
}

/// What a new device of ours maps.
pub enum Table {
    /// A thin volume of a pool, reading `origin` (`major:minor`) where it has no data.
    Thin {
        pool: String,
        thin_id: u32,
        origin: Option<String>,
    },
    /// All of another device (a template attached read-only, a writable VDI's LV).
    Linear { source: String },
    /// A table line read from another device (`target`, `params`).
    Line { target: String, params: String },
}

/// Creates `/dev/mapper/<name>` for VDI `vdi`: `sectors` long, mapped by `table`. On any
/// failure the half-made device is removed again.
pub fn create(
    name: &str,
    vdi: &str,
    length: Sectors,
    table: &Table,
    read_only: bool,
) -> Result<PathBuf> {
    let dm = open()?;
    let dm_name = valid_name(name)?;
    let uuid = format!("{OUR_UUID_PREFIX}{vdi}");
    let dm_uuid = DmUuid::new(&uuid).map_err(|e| dm_err(&uuid, e))?;
    let flags = if read_only {
        DmFlags::DM_READONLY
    } else {
        DmFlags::empty()
    };
    let (target, params) = match table {
        Table::Thin {
            pool,
            thin_id,
            origin,
        } => (
            "thin",
            match origin {
                Some(o) => format!("{pool} {thin_id} {o}"),
                None => format!("{pool} {thin_id}"),
            },
        ),
        Table::Linear { source } => ("linear", format!("{source} 0")),
        Table::Line { target, params } => (target.as_str(), params.clone()),
    };
    dm.device_create(
        dm_name,
        Some(dm_uuid),
        DmOptions::default().set_flags(flags),
    )
    .map_err(|e| dm_err(&format!("creating {name}"), e))?;
    let id = DevId::Name(dm_name);
    let made = dm
        .table_load(
            &id,
            &[(0, length.0, target.to_string(), params.clone())],
            DmOptions::default().set_flags(flags),
        )
        .map_err(|e| dm_err(&format!("loading '{target} {params}' into {name}"), e))
        .and_then(|_| {
            crate::crash::point("dm.after-table-load");
            dm.device_suspend(&id, DmOptions::default())
                .map_err(|e| dm_err(&format!("resuming {name}"), e))
        })
        .and_then(|info| make_node(name, info.device().major, info.device().minor));
    if made.is_err() {
        let _ = dm.device_remove(&id, DmOptions::default());
        remove_node(name);
    }
    made
}

/// Removes device `name`; refused (VDI_ATTACHED) while something holds it open.
pub fn remove(name: &str, vdi: &str) -> Result<()> {
    let dm = open()?;
    let dm_name = valid_name(name)?;
    let id = DevId::Name(dm_name);
    match dm.device_info(&id) {
        Err(_) => {
            remove_node(name);
            return Ok(());
        }
        Ok(info) if info.open_count() > 0 => {
            return Err(Error::VdiAttached {
                vdi: vdi.into(),
                device: format!(
                    "/dev/mapper/{name}, held open by {} user(s)",
                    info.open_count()
                ),
            })
        }
        Ok(info) if info.flags().contains(DmFlags::DM_SUSPEND) => {
            // A crash left it suspended: let queued I/O go before it goes.
            let _ = dm.device_suspend(&id, DmOptions::default());
        }
        Ok(_) => {}
    }
    dm.device_remove(&id, DmOptions::default())
        .map_err(|e| dm_err(&format!("removing {name}"), e))?;
    remove_node(name);
    Ok(())
}

/// How many hold device `name` open now (an LVM report read before a change may be stale).
pub fn open_count(name: &str) -> Option<i32> {
    let dm_name = DmName::new(name).ok()?;
    let info = open().ok()?.device_info(&DevId::Name(dm_name)).ok()?;
    Some(info.open_count())
}

/// True when a dm device `name` exists (for an LV: LVM has activated it).
pub fn exists(name: &str) -> bool {
    let Ok(dm_name) = DmName::new(name) else {
        return false;
    };
    open().is_ok_and(|dm| dm.device_info(&DevId::Name(dm_name)).is_ok())
}

/// Suspends (flushing) or resumes device `name`.
pub fn suspend(name: &str, on: bool) -> Result<()> {
    let dm = open()?;
    let dm_name = valid_name(name)?;
    let flags = if on {
        DmFlags::DM_SUSPEND
    } else {
        DmFlags::empty()
    };
    dm.device_suspend(&DevId::Name(dm_name), DmOptions::default().set_flags(flags))
        .map(drop)
        .map_err(|e| {
            dm_err(
                &format!("{} {name}", if on { "suspending" } else { "resuming" }),
                e,
            )
        })
}

/// Points thin device `name`'s external origin at `origin` (`major:minor`) while it is in
/// use: the new table is loaded beside the live one, and the suspend (which flushes) and
/// resume that follow swap them. Only for an origin holding the same bytes: reads in
/// flight finish on the old one. A crash in between leaves the old table live, or the
/// device suspended with the new one loaded, which `revive` resumes: both read the same.
pub fn swap_origin(name: &str, origin: &str) -> Result<()> {
    reload(name, |len, target, params| {
        let fields: Vec<&str> = params.split_whitespace().collect();
        let [pool, thin_id, _old] = fields.as_slice() else {
            return Err(Error::DmFailed(format!(
                "{name} reads no external origin: '{target} {params}'"
            )));
        };
        if target != "thin" {
            return Err(Error::DmFailed(format!("{name} is not a thin device")));
        }
        Ok(Some((len, format!("{pool} {thin_id} {origin}"))))
    })
}

/// Gives device `name` (one target) at least the length `sectors`, its target and
/// parameters kept: a VDI grown while attached. A device already that long is left alone
/// (a rerun after a crash). The new table is loaded beside the live one and swapped in by
/// a suspend (which flushes) and resume; the device's users see the new size at once. A
/// crash in between leaves the old length live (the resize is run again) or the new table
/// loaded and suspended, which `revive` resumes.
pub fn grow(name: &str, length: Sectors) -> Result<()> {
    reload(name, |len, _target, params| {
        Ok((len < length.0).then(|| (length.0, params.to_string())))
    })
}

/// One line of a table: start and length in 512-byte sectors, target, parameters.
type Target = (u64, u64, String, String);

/// Device `name`'s one-target table: its length, target and parameters.
pub fn table_of(name: &str) -> Result<(Sectors, String, String)> {
    let (_, (_, len, target, params)) = single_table(name)?;
    Ok((Sectors(len), target, params))
}

/// Device `name`'s status line (one target): its target and status parameters.
pub fn status_of(name: &str) -> Result<(String, String)> {
    let dm = open()?;
    let id = DevId::Name(valid_name(name)?);
    let (_, table) = dm
        .table_status(&id, DmOptions::default().set_flags(DmFlags::DM_NOFLUSH))
        .map_err(|e| dm_err(name, e))?;
    let (_, _, target, params) = table
        .into_iter()
        .next()
        .ok_or_else(|| Error::DmFailed(format!("{name} has no table")))?;
    Ok((target, params))
}

/// Loads `target params` (`length` long) into device `name` and makes it live: a device
/// already suspended by the caller stays so until this resume; one in use is suspended
/// (its I/O in flight finishes first) and resumed. The VM sees no error, only a pause.
pub fn replace_table(name: &str, length: Sectors, target: &str, params: &str) -> Result<()> {
    let (flags, _) = single_table(name)?;
    let dm = open()?;
    let id = DevId::Name(valid_name(name)?);
    dm.table_load(
        &id,
        &[(0, length.0, target.to_string(), params.to_string())],
        DmOptions::default().set_flags(flags & DmFlags::DM_READONLY),
    )
    .map_err(|e| dm_err(&format!("loading '{target} {params}' into {name}"), e))?;
    crate::crash::point("dm.replace-table.loaded");
    suspend(name, true)?;
    suspend(name, false)
}

fn single_table(name: &str) -> Result<(DmFlags, Target)> {
    let dm = open()?;
    let id = DevId::Name(valid_name(name)?);
    let (info, table) = dm
        .table_status(
            &id,
            DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
        )
        .map_err(|e| dm_err(name, e))?;
    match <[Target; 1]>::try_from(table) {
        Ok([t]) => Ok((info.flags(), t)),
        Err(_) => Err(Error::DmFailed(format!(
            "{name} has no single-target table"
        ))),
    }
}

/// Loads a changed copy of device `name`'s one-target table (`change` gets its length,
/// target and parameters; returns the new length and parameters, or None for no change)
/// and swaps it in.
fn reload(
    name: &str,
    change: impl FnOnce(u64, &str, &str) -> Result<Option<(u64, String)>>,
) -> Result<()> {
    let (flags, (start, len, target, params)) = single_table(name)?;
    let Some((new_len, new_params)) = change(len, &target, &params)? else {
        return Ok(());
    };
    let dm = open()?;
    let id = DevId::Name(valid_name(name)?);
    dm.table_load(
        &id,
        &[(start, new_len, target.clone(), new_params.clone())],
        DmOptions::default().set_flags(flags & DmFlags::DM_READONLY),
    )
    .map_err(|e| dm_err(&format!("loading '{target} {new_params}' into {name}"), e))?;
    suspend(name, true)?;
    suspend(name, false)
}

/// Drops the table loaded into device `name` and not yet made live, if any: a crash
/// between a load and its resume must not have the next resume make it live.
pub fn clear_inactive(name: &str) -> Result<()> {
    let dm = open()?;
    let id = DevId::Name(valid_name(name)?);
    let info = dm.device_info(&id).map_err(|e| dm_err(name, e))?;
    if info.flags().contains(DmFlags::DM_INACTIVE_PRESENT) {
        dm.table_clear(&id)
            .map_err(|e| dm_err(&format!("clearing the table loaded into {name}"), e))?;
    }
    Ok(())
}

/// Resumes device `name` if it can be (a crash may have left it suspended, or with its
/// table loaded and never resumed); true when it is live afterwards.
pub fn revive(name: &str) -> Result<bool> {
    let dm = open()?;
    let dm_name = valid_name(name)?;
    let id = DevId::Name(dm_name);
    let _ = dm.device_suspend(&id, DmOptions::default());
    // The live table's targets: none when the crash came before the first resume.
    let (info, table) = dm
        .table_status(
            &id,
            DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
        )
        .map_err(|e| dm_err(name, e))?;
    let live = !table.is_empty() && !info.flags().contains(DmFlags::DM_SUSPEND);
    if live {
        // The crash may have come before its node was made.
        make_node(name, info.device().major, info.device().minor)?;
    }
    Ok(live)
}

fn udev_running() -> bool {
    Path::new("/run/udev/control").exists()
}

/// Without udev nothing makes `/dev/mapper/<name>`: make it as libdevmapper would.
fn make_node(name: &str, major: u32, minor: u32) -> Result<PathBuf> {
    let path = Path::new("/dev/mapper").join(name);
    if udev_running() || path.exists() {
        return Ok(path);
    }
    let dev = nix::sys::stat::makedev(major.into(), minor.into());
    nix::sys::stat::mknod(
        &path,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        dev,
    )
    .map_err(|e| Error::io(format!("creating {}", path.display()), e.into()))?;
    Ok(path)
}

fn remove_node(name: &str) {
    if !udev_running() {
        let _ = std::fs::remove_file(Path::new("/dev/mapper").join(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_dashes() {
        assert_eq!(dm_name(&"vg".into(), &"pool".into()), "vg-pool");
        assert_eq!(
            dm_name(&"my-vg".into(), &"thin-pool".into()),
            "my--vg-thin--pool"
        );
        assert_eq!(
            our_name(&"my-vg".into(), &"Win-10".into(), "u"),
            "thinsr-my--vg-Win--10"
        );
        let long = "x".repeat(120);
        assert_eq!(
            our_name(&"vg".into(), &long.as_str().into(), "u1"),
            "thinsr-u1"
        );
    }

    #[test]
    fn parses_status_line() {
        let s =
            parse_pool_status("1 113/1024 10/16384 - rw discard_passdown queue_if_no_space - 256")
                .unwrap();
        assert_eq!(s.state, PoolState::ReadWrite);
        assert_eq!(s.data_used.bytes(Bytes(65536)), Bytes(10 * 65536));
        assert_eq!(s.data_total, DataBlocks(16384));
        assert_eq!(s.metadata_used, Bytes(113 * 4096));
        assert_eq!(s.when_full, "queue");
        assert!(!s.needs_check);
        let s = parse_pool_status("2 1/1024 16384/16384 - out_of_data_space discard_passdown error_if_no_space needs_check 256").unwrap();
        assert_eq!(s.state, PoolState::OutOfDataSpace);
        assert!(s.needs_check);
        assert_eq!(s.when_full, "error");
        assert_eq!(parse_pool_status("Fail").unwrap().state, PoolState::Fail);
        assert_eq!(
            serde_json::to_value(PoolState::OutOfDataSpace).unwrap(),
            "out_of_data_space"
        );
        assert!(parse_pool_status("garbage here").is_err());
    }
}
