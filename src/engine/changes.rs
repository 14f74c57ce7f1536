//! What changed between two thin VDIs of one SR: the one core behind `vdi changed-blocks`
//! (xapi's `Volume.list_changed_blocks`) and `export --base`. It reads dm-thin's own block
//! maps (or the map `data-destroy` saved), so nothing is tracked while VMs write, and the
//! answer survives reboots and crashes as the pool's metadata does. Two VDIs in the pool
//! are compared by walking their mapping trees side by side (`thin::mapping`), which skips
//! every subtree they share: the cost follows the change. A saved map is compared with a
//! `thin_dump` of the other.

use std::path::PathBuf;

use serde::Serialize;

use super::context::{Ctx, Locked};
use super::meta::{SrMeta, VdiKind, VdiMeta};
use crate::aligned::AlignedBuf;
use crate::error::{finally, Error, Result};
use crate::host::lvm::{dev_path, Lv, Vg, TAG_CBT};
use crate::host::{dm, thin};
use crate::ids::{LvName, LvPath};
use crate::image::block_map::{self, BlockMap, Delta, CBT_BLOCK};
use crate::image::extent::{normalize, pieces, Extent};
use crate::image::{Device, ReadAt};
use crate::units::Bytes;

/// `vdi changed-blocks`: the 64 KiB blocks that differ between `base` and `new`.
#[derive(Debug, Clone, Serialize)]
pub struct ChangedBlocks {
    pub base: String,
    pub base_name: String,
    pub new: String,
    pub new_name: String,
    /// Bytes per bit: always 64 KiB.
    pub granularity: Bytes,
    /// Base64 of the bitmap: bit i (most significant first in each byte) is the block at
    /// `offset + i * granularity`.
    pub bitmap: String,
    pub offset: Bytes,
    /// Bytes the bitmap covers (to the disk's end at most).
    pub length: Bytes,
    pub size: Bytes,
    /// Bytes in changed blocks.
    pub changed: Bytes,
    /// Where: the changed ranges, merged.
    pub extents: Vec<Extent>,
    /// The pool's allocation unit, and the bytes of both VDIs read to narrow its changed
    /// units down to 64 KiB blocks when it is larger.
    pub pool_block: Bytes,
    pub compared: Bytes,
}

/// The difference between two VDIs, in bytes of the newer one.
pub(crate) struct Between {
    pub delta: Delta,
    pub size: u64,
}

/// Where a VDI's block map comes from.
enum MapOf {
    Live(u32),
    Saved(LvName),
}

impl Ctx {
    /// `vdi changed-blocks BASE NEW`: the blocks of `new` that differ from `base`, over
    /// `[offset, offset+length)` (None: to the end) widened to whole 64 KiB blocks.
    pub fn vdi_changed_blocks(
        &self,
        base: &str,
        new: &str,
        sr: Option<&str>,
        offset: u64,
        length: Option<u64>,
    ) -> Result<ChangedBlocks> {
        let found = self.resolve(new, sr)?;
        let base_found = self.resolve(base, sr)?;
        same_sr(&base_found, &found)?;
        let op = self.lock_sr(&found.entry)?;
        let vg = self.lvm.report_vg(&op.entry.vg)?;
        let (b, n) = (
            op.vdi(&base_found.uuid)?.clone(),
            op.vdi(&found.uuid)?.clone(),
        );
        let between = self.between(&op, &vg, &b, &n)?;
        let mut changed = normalize([between.delta.changed, between.delta.removed].concat());
        let mut compared = 0;
        if between.delta.block > CBT_BLOCK && b.cbt_map.is_none() && n.cbt_map.is_none() {
            // A pool unit holds several 64 KiB blocks: read both sides where it changed and
            // keep the blocks whose bytes differ (a saved map has no data to compare with).
            (changed, compared) = self.compare(&op, &vg, [&b, &n], &changed)?;
        }
        let size = between.size;
        let (first, bits) = block_map::bitmap(&changed, size, offset, length);
        let extents = block_map::bitmap_extents(first, &bits, size);
        let start = first * CBT_BLOCK;
        Ok(ChangedBlocks {
            base: b.uuid.to_string(),
            base_name: b.name.clone(),
            new: n.uuid.to_string(),
            new_name: n.name.clone(),
            granularity: Bytes(CBT_BLOCK),
            bitmap: base64(&bits),
            offset: Bytes(start),
            length: Bytes((bits.len() as u64 * 8 * CBT_BLOCK).min(size.saturating_sub(start))),
            size: Bytes(size),
            changed: Bytes(extents.iter().map(|e| e.len).sum()),
            extents,
            pool_block: Bytes(between.delta.block),
            compared: Bytes(compared),
        })
    }

    /// What differs between `base` and `new` (both thin VDIs of the SR `op` holds, of one
    /// chain), from their block maps, with `vg` the VG's report.
    pub(crate) fn between(
        &self,
        op: &Locked,
        vg: &Vg,
        base: &VdiMeta,
        new: &VdiMeta,
    ) -> Result<Between> {
        refuse_untracked(base)?;
        refuse_untracked(new)?;
        if chain(&op.meta, base) != chain(&op.meta, new) {
            return Err(Error::InvalidArgument(format!(
                "'{}' and '{}' are not of one chain (neither descends from the other's disk): \
                 their changed blocks mean nothing",
                base.name, new.name
            )));
        }
        let (sb, sn) = (self.map_source(vg, base)?, self.map_source(vg, new)?);
        let size = vg.vdi_lv(&new.uuid).map_or(new.size.0, |l| l.size.0);
        if let (MapOf::Live(a), MapOf::Live(b)) = (&sb, &sn) {
            // Both in the pool: walk their mapping trees, skipping what they share, so
            // the cost follows the change rather than the disks' size.
            let delta =
                thin::delta(&vg.name, &op.entry.pool, *a, *b)?.ok_or_else(|| not_active(vg, op))?;
            return Ok(Between { delta, size });
        }
        let live: Vec<u32> = [&sb, &sn]
            .iter()
            .filter_map(|s| match s {
                MapOf::Live(id) => Some(*id),
                MapOf::Saved(_) => None,
            })
            .collect();
        let mut maps = if live.is_empty() {
            vec![]
        } else {
            thin::block_maps(&vg.name, &op.entry.pool, &live)?.ok_or_else(|| not_active(vg, op))?
        }
        .into_iter();
        let mut take = |s: &MapOf, v: &VdiMeta| -> Result<BlockMap> {
            match s {
                MapOf::Live(_) => Ok(maps.next().expect("one map per live id")),
                MapOf::Saved(lv) => self.read_saved_map(vg, v, lv),
            }
        };
        let (mb, mn) = (take(&sb, base)?, take(&sn, new)?);
        Ok(Between {
            delta: block_map::diff(&mb, &mn)?,
            size,
        })
    }

    fn map_source(&self, vg: &Vg, v: &VdiMeta) -> Result<MapOf> {
        if let Some(lv) = &v.cbt_map {
            return Ok(MapOf::Saved(lv.clone()));
        }
        let lv = vg.vdi_lv(&v.uuid).ok_or_else(|| {
            Error::LvNotFound(format!("{}/{} (of VDI '{}')", vg.name, v.lv, v.name))
        })?;
        thin_id(vg, lv).map(MapOf::Live)
    }

    /// The map `data-destroy` saved for `v` in its map LV, activated for the read and
    /// deactivated again.
    fn read_saved_map(&self, vg: &Vg, v: &VdiMeta, lv: &LvName) -> Result<BlockMap> {
        let found = vg
            .lvs
            .iter()
            .find(|l| l.name == *lv && l.tag_value(TAG_CBT) == Some(&v.uuid));
        let l = found.ok_or_else(|| Error::VdiIncomplete {
            vdi: v.name.clone(),
            why: format!("its saved block map {}/{lv} is missing", vg.name),
        })?;
        let name = LvPath::new(&vg.name, lv);
        if !l.active {
            self.set_active(&name, true)?;
        }
        let read = std::fs::read(dev_path(&vg.name, lv))
            .map_err(|e| Error::io(dev_path(&vg.name, lv), e))
            .and_then(|b| {
                BlockMap::decode(&b).map_err(|why| Error::VdiIncomplete {
                    vdi: v.name.clone(),
                    why: format!("its saved block map {name} is unreadable: {why}"),
                })
            });
        let off = if l.active {
            Ok(())
        } else {
            self.set_active(&name, false)
        };
        let map = read?;
        off?;
        Ok(map)
    }

    /// Narrows `changed` (whole pool units) to the 64 KiB blocks whose bytes differ
    /// between the two VDIs. Returns them and the bytes read of each.
    fn compare(
        &self,
        op: &Locked,
        vg: &Vg,
        vdis: [&VdiMeta; 2],
        changed: &[Extent],
    ) -> Result<(Vec<Extent>, u64)> {
        let mut opened = Vec::new();
        let mut made = Vec::new();
        let mut result = Ok(());
        for v in vdis {
            match self.readable(op, vg, v) {
                Ok((path, ours)) => {
                    if ours {
                        made.push(v);
                    }
                    opened.push(path);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let mut out = result.and_then(|_| differing(&opened[0], &opened[1], changed));
        for v in made {
            let lv = vg.vdi_lv(&v.uuid).map_or(&v.lv, |l| &l.name);
            let name = dm::our_name(&vg.name, lv, &v.uuid);
            out = finally(out, &format!("removing the reading device {name}"), || {
                self.detach_reader(&name, &v.uuid, v.origin.as_ref())
            });
        }
        out
    }

    /// A path to read `v` from, and whether it was made for this read.
    fn readable(&self, op: &Locked, vg: &Vg, v: &VdiMeta) -> Result<(PathBuf, bool)> {
        if let Some(d) = self.our_device(&v.uuid) {
            return Ok((d.path(), false));
        }
        match vg.vdi_lv(&v.uuid) {
            Some(l) if l.active => Ok((PathBuf::from(dev_path(&vg.name, &l.name)), false)),
            _ => Ok((self.attach_for_reading(op, vg, v)?, true)),
        }
    }
}

/// The 64 KiB blocks of `changed` whose bytes differ between devices `a` and `b`, and the
/// bytes read of each.
fn differing(
    a: &std::path::Path,
    b: &std::path::Path,
    changed: &[Extent],
) -> Result<(Vec<Extent>, u64)> {
    const PIECE: u64 = 4 << 20;
    let (mut da, mut db) = (Device::open(a)?, Device::open(b)?);
    let mut ba = AlignedBuf::zeroed(PIECE as usize);
    let mut bb = AlignedBuf::zeroed(PIECE as usize);
    let (mut out, mut read) = (Vec::new(), 0);
    for p in pieces(changed, PIECE) {
        if crate::cancel::requested() {
            return Err(Error::Cancelled);
        }
        let n = p.len as usize;
        da.read_at(p.start, &mut ba.as_mut_slice()[..n])?;
        db.read_at(p.start, &mut bb.as_mut_slice()[..n])?;
        read += p.len;
        let (x, y) = (&ba.as_mut_slice()[..n], &bb.as_mut_slice()[..n]);
        let mut at = 0;
        while at < n {
            let end =
                (at + CBT_BLOCK as usize - (p.start as usize + at) % CBT_BLOCK as usize).min(n);
            if x[at..end] != y[at..end] {
                out.push(Extent::new(p.start + at as u64, (end - at) as u64));
            }
            at = end;
        }
    }
    Ok((normalize(out), read))
}

fn not_active(vg: &Vg, op: &Locked) -> Error {
    Error::DmFailed(format!(
        "the pool {}/{} is not active",
        vg.name, op.entry.pool
    ))
}

/// Refuses what has no block map of its own: preallocated VDIs and templates.
pub(crate) fn refuse_untracked(v: &VdiMeta) -> Result<()> {
    let what = match v.kind {
        VdiKind::Template => "a template",
        VdiKind::Preallocated => "preallocated",
        _ => return Ok(()),
    };
    Err(Error::InvalidArgument(format!(
        "'{}' is {what}: changed blocks come from dm-thin's maps, which only thin VDIs and \
         their snapshots have",
        v.name
    )))
}

/// The thin device id LVM reports for `lv`.
pub(crate) fn thin_id(vg: &Vg, lv: &Lv) -> Result<u32> {
    lv.thin_id.ok_or_else(|| Error::LvmFailed {
        command: "lvs".into(),
        message: format!("no thin id reported for {}/{}", vg.name, lv.name),
    })
}

/// Two VDIs named for one command must be of one SR (one pool).
pub(crate) fn same_sr(a: &super::vdi::Found, b: &super::vdi::Found) -> Result<()> {
    if a.entry.uuid == b.entry.uuid {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "the two VDIs are in different SRs ('{}' and '{}'): changed blocks and reverts are \
         between a VDI and its own snapshots",
        a.entry.name, b.entry.name
    )))
}

/// The first VDI of `v`'s line of parents (snapshots and clones record theirs).
fn chain(meta: &SrMeta, v: &VdiMeta) -> String {
    let mut at = v;
    for _ in 0..=meta.vdis.len() {
        match at.parent.as_deref().and_then(|p| meta.vdi(p)) {
            Some(p) => at = p,
            None => return at.parent.clone().unwrap_or_else(|| at.uuid.clone()).into(),
        }
    }
    at.uuid.to_string()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
