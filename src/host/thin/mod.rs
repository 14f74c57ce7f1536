//! The live pool's own metadata, read through a metadata snapshot: what LVM cannot say about
//! inactive thin volumes (how much each one really holds).

pub mod details;
pub mod mapping;

use std::collections::HashMap;

use devicemapper::{DevId, DmName, DM};

use crate::error::{Error, Result};
use crate::host::dm::{self, dm_name};
use crate::host::{lock, tool};
use crate::ids::{LvName, VgName};
use crate::image::block_map::BlockMap;
use crate::image::thin_xml;

fn message(dm: &DM, target: &str, msg: &str) -> std::result::Result<(), String> {
    let name = DmName::new(target).map_err(|e| e.to_string())?;
    dm.target_msg(&DevId::Name(name), None, msg)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Runs `f` with a metadata snapshot of the active pool `vg/pool` reserved, and releases it.
/// The kernel allows one snapshot per pool: a lock serialises thinsr's readers, and a
/// snapshot still reserved while we hold that lock was left by a crashed run.
pub fn with_metadata_snapshot<T>(
    vg: &VgName,
    pool: &LvName,
    f: impl FnOnce(&str) -> Result<T>,
) -> Result<Option<T>> {
    let dm = dm::open()?;
    let Some((target, _)) = dm::pool_target(&dm, vg, pool) else {
        return Ok(None);
    };
    let _l = lock::acquire(
        &format!("msnap-{}", dm_name(vg, pool)),
        "the pool's metadata snapshot",
    )?;
    if message(&dm, &target, "reserve_metadata_snap").is_err() {
        let _ = message(&dm, &target, "release_metadata_snap");
        message(&dm, &target, "reserve_metadata_snap")
            .map_err(|e| Error::DmFailed(format!("reserve_metadata_snap on {target}: {e}")))?;
    }
    let tmeta = format!(
        "/dev/mapper/{}",
        dm_name(vg, &format!("{pool}_tmeta").into())
    );
    // A run killed here leaves the snapshot reserved; the next reader (under this lock)
    // releases it before reserving its own.
    crate::crash::point("thin.metadata-snapshot-held");
    let result = f(&tmeta);
    let released = message(&dm, &target, "release_metadata_snap");
    let value = result?;
    released.map_err(|e| Error::DmFailed(format!("release_metadata_snap on {target}: {e}")))?;
    Ok(Some(value))
}

/// The block maps of thin devices `ids` of the active pool `vg/pool`, read from one
/// metadata snapshot (so consistent with each other); None when the pool is not active.
pub fn block_maps(vg: &VgName, pool: &LvName, ids: &[u32]) -> Result<Option<Vec<BlockMap>>> {
    with_metadata_snapshot(vg, pool, |tmeta| {
        ids.iter()
            .map(|id| {
                let dev = id.to_string();
                let xml = tool::run("thin_dump", &["-m", "--dev-id", &dev, tmeta])?;
                thin_xml::parse_map(&xml, *id)
            })
            .collect()
    })
}

/// What differs between thin devices `base` and `new` of the active pool `vg/pool`, read
/// from one metadata snapshot without entering the subtrees they share (`mapping`); None
/// when the pool is not active.
pub fn delta(
    vg: &VgName,
    pool: &LvName,
    base: u32,
    new: u32,
) -> Result<Option<crate::image::block_map::Delta>> {
    with_metadata_snapshot(vg, pool, |tmeta| {
        mapping::read_delta(std::path::Path::new(tmeta), base, new).map(|(d, _nodes)| d)
    })
}

/// Deletes thin device `id` from the active pool `vg/pool` (one LVM does not know).
pub fn delete_thin(vg: &VgName, pool: &LvName, id: u32) -> Result<()> {
    let dm = dm::open()?;
    let (target, _) = dm::pool_target(&dm, vg, pool)
        .ok_or_else(|| Error::DmFailed(format!("the pool {vg}/{pool} is not active")))?;
    message(&dm, &target, &format!("delete {id}"))
        .map_err(|e| Error::DmFailed(format!("delete {id} on {target}: {e}")))
}

/// Bytes mapped by each thin device of the active pool `vg/pool`, by thin id; None when the
/// pool is not active.
pub fn mapped_bytes(vg: &VgName, pool: &LvName) -> Result<Option<HashMap<u32, u64>>> {
    with_metadata_snapshot(vg, pool, |tmeta| {
        let d = details::read(std::path::Path::new(tmeta))?;
        Ok(d.mapped_bytes().into_iter().collect())
    })
}

/// thin-provisioning-tools' version (`thin_check --version`: "0.7.3"), None when it does
/// not run or says something else.
pub fn tools_version() -> Option<(u32, u32, u32)> {
    let out = crate::host::tool::output("thin_check", &["--version"]).ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let word = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut n = word
        .split('.')
        .map(|p| p.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok());
    Some((n.next()??, n.next()??, n.next().flatten().unwrap_or(0)))
}

#[cfg(test)]
mod version_tests {
    #[test]
    fn reads_thin_tools_versions() {
        assert_eq!(super::parse_version("0.7.3\n"), Some((0, 7, 3)));
        assert_eq!(super::parse_version("0.9.0"), Some((0, 9, 0)));
        assert_eq!(super::parse_version("thin_check 1.0.12"), Some((1, 0, 12)));
        assert_eq!(super::parse_version("nonsense"), None);
    }
}
