//! SR metadata: a JSON document (YAML from older versions is still read) on a small LV,
//! written crash-safely in two slots.
//!
//! Each slot is a 4 KiB-aligned header plus the document. A write goes to the slot that
//! does not hold the current generation, is flushed, and only then counts: a torn or failed
//! write leaves the other slot, the previous state, readable.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aligned::AlignedBuf;
use crate::crash;
use crate::error::{Error, Result};
use crate::ids::{LvName, SrUuid, VdiUuid};
use crate::image::le;
use crate::units::Bytes;

pub use crate::engine::records::{Composing, Fetch, Image, Lazy, Receiving, Replica};

const MAGIC: &[u8; 8] = b"THINSRMD";
const VERSION: u32 = 1;
const HEADER: usize = 4096;
pub const FORMAT: u32 = 1;
/// Size of the metadata LV thinsr creates.
pub const META_LV_SIZE: Bytes = Bytes(8 << 20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// thinsr made the VG on raw disks and may use all of it.
    Owned,
    /// thinsr lives beside the admin's LVs in an existing VG.
    Shared,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Owned => "owned",
            Mode::Shared => "shared",
        })
    }
}

/// What an SR knows about itself and its VDIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrMeta {
    pub format: u32,
    pub uuid: SrUuid,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub mode: Mode,
    /// The thin pool LV.
    pub pool: LvName,
    /// False when the admin's own pool was adopted: thinsr never removes it.
    pub pool_owned: bool,
    /// The backing file of an SR made with `sr create --file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vdis: Vec<VdiMeta>,
    #[serde(default)]
    pub policy: PoolPolicy,
    /// The VG's extent size and the pool's chunk size: kept so that making a VDI needs no
    /// lvm report. Filled by the first command that had one (SRs made before 0.2 lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometry: Option<Geometry>,
    /// Streams `vdi receive` began and did not finish: each one's staging LV and how far it
    /// verified, for the stream resumed from there (`engine/replica/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receiving: Vec<Receiving>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geometry {
    pub extent: Bytes,
    pub chunk: Bytes,
}

/// How the pool grows, set with `pool set`. Defaults protect: grow early, by a fifth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolPolicy {
    /// Data or metadata use (percent) at which the pool grows.
    pub threshold: u8,
    /// How much it grows each time, in percent of its size.
    pub grow_by: u16,
    /// The largest the pool may grow to. None: owned SRs may use all the VG's free space;
    /// shared SRs stay at the size the admin chose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Bytes>,
    /// Virtual size of all thin volumes over the pool's size that VDI creation must not pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_overcommit: Option<f64>,
}

impl Default for PoolPolicy {
    fn default() -> PoolPolicy {
        PoolPolicy {
            threshold: 80,
            grow_by: 20,
            max_size: None,
            max_overcommit: None,
        }
    }
}

impl SrMeta {
    pub fn vdi(&self, uuid: &str) -> Option<&VdiMeta> {
        self.vdis.iter().find(|v| v.uuid == uuid)
    }
    pub fn vdi_mut(&mut self, uuid: &str) -> Option<&mut VdiMeta> {
        self.vdis.iter_mut().find(|v| v.uuid == uuid)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VdiKind {
    /// A thin LV in the pool.
    Thin,
    /// A regular LV from VG free space, zeroed completely before first use.
    Preallocated,
    /// A read-only thin snapshot of another VDI.
    Snapshot,
    /// A writable thin snapshot of another VDI.
    Clone,
    /// A read-only image outside the VG, referenced by URI: the external origin of clones.
    Template,
}

impl std::fmt::Display for VdiKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VdiKind::Thin => "thin",
            VdiKind::Preallocated => "preallocated",
            VdiKind::Snapshot => "snapshot",
            VdiKind::Clone => "clone",
            VdiKind::Template => "template",
        })
    }
}

/// One VDI. Its LV is found by its `thinsr_vdi=<uuid>` tag, not by `lv`: a crash between
/// an LV rename and the metadata write must not lose the disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VdiMeta {
    pub uuid: VdiUuid,
    /// The label exactly as given; the LV name is derived from it.
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub kind: VdiKind,
    /// The LV's name when the metadata was last written.
    pub lv: LvName,
    /// Size in bytes (whole extents), as last set by thinsr.
    pub size: Bytes,
    /// The VDI this one was snapshotted or cloned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<VdiUuid>,
    /// Unix time of creation.
    #[serde(default)]
    pub created: u64,
    /// Keys set with `vdi set` (xapi keeps its VDI metadata here).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
    /// Work begun and not finished: the VDI cannot be attached until it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// A template's image: where it lives and how to read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// The template whose image this VDI reads where it has written nothing (its dm-thin
    /// external origin). Snapshots and clones inherit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<VdiUuid>,
    /// A template's local cache: the thin LV holding a qcow2 overlay of its image, filled
    /// as clones read it (found by its `thinsr_cache=<template>` tag, this is its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<LvName>,
    /// A template's local copy: a thin LV holding its data as a raw disk, which its clones
    /// read in the kernel (found by its `thinsr_local=<template>` tag, this is its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LvName>,
    /// Changed block tracking asked for (`vdi cbt on`, `Volume.enable_cbt`): dm-thin's maps
    /// know the changes anyway; this records the admin's wish, which snapshots inherit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cbt: bool,
    /// The data was destroyed (`vdi data-destroy`): its block map is kept in this thin LV
    /// (tagged `thinsr_cbt=<uuid>`) for changed-block queries against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cbt_map: Option<LvName>,
    /// A revert to this snapshot began and has not finished: the VDI's LV may be the old
    /// one, gone, or the new one; `vdi revert` and `sr check --repair` finish it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverting: Option<VdiUuid>,
    /// `Volume.compose` began and has not finished: this VDI is to read `parent`'s data
    /// under the ranges written into it; see `engine/compose.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composing: Option<Composing>,
    /// A template from an http(s):// URI whose download into its local copy (`local`) has
    /// not finished: nothing reads it until it has; `template introduce` again resumes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<Fetch>,
    /// A template read lazily from its http(s):// server (`Lazy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy: Option<Lazy>,
    /// Received from another SR (`vdi receive`): the replica VDI, or one of its snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<Replica>,
}

impl VdiMeta {
    /// A new template's entry, made now: its image at `uri` in `format`, of `size`.
    pub fn template(uuid: &VdiUuid, name: &str, uri: &str, format: &str, size: Bytes) -> VdiMeta {
        VdiMeta {
            created: crate::units::now(),
            image: Some(Image::new(uri, format)),
            ..VdiMeta::new(uuid, name, VdiKind::Template, &LvName::default(), size)
        }
    }

    /// A new entry with nothing pending, no parent, keys, image, origin, cache or CBT and
    /// no creation time (set `created` for a VDI thinsr makes; an adopted LV's is unknown).
    pub fn new(uuid: &VdiUuid, name: &str, kind: VdiKind, lv: &LvName, size: Bytes) -> VdiMeta {
        VdiMeta {
            uuid: uuid.clone(),
            name: name.to_string(),
            description: String::new(),
            kind,
            lv: lv.clone(),
            size,
            parent: None,
            created: 0,
            keys: BTreeMap::new(),
            pending: None,
            image: None,
            origin: None,
            cache: None,
            local: None,
            cbt: false,
            cbt_map: None,
            reverting: None,
            composing: None,
            fetch: None,
            lazy: None,
            replica: None,
        }
    }

    /// Whether this VDI is the parent of a compose under way in `vdis`, or composing
    /// itself: it is not destroyed meanwhile. Returns the composing VDI's name.
    pub fn composing_in(&self, vdis: &[VdiMeta]) -> Option<String> {
        vdis.iter()
            .find(|v| {
                v.composing
                    .as_ref()
                    .is_some_and(|k| v.uuid == self.uuid || k.parent == self.uuid)
            })
            .map(|v| v.name.clone())
    }

    pub fn read_write(&self) -> bool {
        !matches!(self.kind, VdiKind::Snapshot | VdiKind::Template)
    }
    pub fn is_template(&self) -> bool {
        self.kind == VdiKind::Template
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pending {
    /// A preallocated LV not yet zeroed from this byte offset on: nothing may read it.
    Zeroing { from: Bytes },
    /// Made by `vdi import`, which has not finished writing it: nothing may use it.
    Importing,
}

pub struct MetaStore {
    path: PathBuf,
    /// The SR's name, for messages.
    label: String,
    /// The two copies' generations (None: empty or invalid) and the slot size, as this store
    /// last read or wrote them: a write that follows a read under the SR's lock need not
    /// read and checksum both copies again (at a thousand VDIs, half a megabyte).
    known: std::cell::Cell<Option<Known>>,
}

/// Generation of copy A, of copy B, and the slot size.
type Known = (Option<u64>, Option<u64>, u64);

struct Slot {
    generation: u64,
    payload: Vec<u8>,
}

fn header(generation: u64, payload: &[u8]) -> [u8; 64] {
    let mut h = [0u8; 64];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&generation.to_le_bytes());
    h[24..32].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[32..36].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let hcrc = crc32fast::hash(&h[0..36]);
    h[36..40].copy_from_slice(&hcrc.to_le_bytes());
    h
}

/// Decodes one slot; None when it is empty, torn or corrupt.
fn decode_slot(buf: &[u8]) -> Option<Slot> {
    if buf.len() < HEADER || &buf[0..8] != MAGIC {
        return None;
    }
    let u32_at = |o: usize| le::get32(buf, o);
    let u64_at = |o: usize| le::get64(buf, o);
    if u32_at(8) != VERSION || u32_at(36) != crc32fast::hash(&buf[0..36]) {
        return None;
    }
    let len = usize::try_from(u64_at(24)).ok()?;
    let payload = buf.get(HEADER..HEADER.checked_add(len)?)?;
    if crc32fast::hash(payload) != u32_at(32) {
        return None;
    }
    Some(Slot {
        generation: u64_at(16),
        payload: payload.to_vec(),
    })
}

/// The document of a slot (JSON, or YAML as older versions wrote it), checked; the error says why it is not one.
fn parse_document(payload: &[u8]) -> std::result::Result<SrMeta, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "not UTF-8".to_string())?;
    let meta: SrMeta = if text.starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        serde_yaml::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?
    };
    if meta.format != FORMAT {
        return Err(format!(
            "unknown format {} (this thinsr reads {FORMAT})",
            meta.format
        ));
    }
    Ok(meta)
}

/// The document as written: JSON, which parses ten times faster than YAML (a thousand VDIs
/// are 250 KB) and which YAML readers, older thinsr among them, read as well. Documents
/// written as YAML by older versions are still read.
fn encode(meta: &SrMeta) -> Result<Vec<u8>> {
    serde_json::to_vec(meta)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode metadata: {e}")))
}

/// What a metadata slot's bytes decode to, for the fuzz tests.
#[cfg(test)]
pub(crate) fn decode_for_fuzz(buf: &[u8]) -> Option<std::result::Result<SrMeta, String>> {
    decode_slot(buf).map(|s| parse_document(&s.payload))
}

/// A slot holding `meta` as this version writes it, or (`json` false) as YAML, as versions
/// before 0.2 did, for the fuzz corpus.
#[cfg(test)]
pub(crate) fn encode_for_fuzz(meta: &SrMeta, json: bool) -> Vec<u8> {
    let payload = if json {
        encode(meta).unwrap()
    } else {
        serde_yaml::to_string(meta).unwrap().into_bytes()
    };
    let mut v = header(1, &payload).to_vec();
    v.resize(HEADER, 0);
    v.extend_from_slice(&payload);
    v
}

impl MetaStore {
    pub fn new(path: impl Into<PathBuf>, label: impl Into<String>) -> MetaStore {
        MetaStore {
            path: path.into(),
            label: label.into(),
            known: Default::default(),
        }
    }

    /// True when the metadata volume is there to read (its LV is active).
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    fn open(&self, write: bool) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.path)
            .map_err(|e| {
                Error::io(
                    format!("opening metadata volume {}", self.path.display()),
                    e,
                )
            })
    }

    /// For writing, bypassing the page cache: a write the disk refused must not stay
    /// readable from the cache, where the next read would take it for the new state.
    /// (Files on filesystems without O_DIRECT, as in unit tests, fall back to buffered.)
    fn open_direct(&self) -> Result<File> {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(&self.path)
        {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => self.open(true),
            r => r.map_err(|e| {
                Error::io(
                    format!("opening metadata volume {}", self.path.display()),
                    e,
                )
            }),
        }
    }

    fn slot_size(file: &mut File, path: &Path) -> Result<u64> {
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io(format!("sizing {}", path.display()), e))?;
        Ok(size / 2 / 4096 * 4096)
    }

    fn corrupt(&self, why: impl Into<String>) -> Error {
        Error::MetadataCorrupt {
            sr: self.label.clone(),
            why: why.into(),
        }
    }

    fn read_slots(&self) -> Result<(Option<Slot>, Option<Slot>, u64)> {
        let mut f = self.open(false)?;
        let slot_size = Self::slot_size(&mut f, &self.path)?;
        if slot_size < HEADER as u64 * 2 {
            return Err(self.corrupt("the metadata volume is too small"));
        }
        let mut slots = Vec::new();
        for i in 0..2 {
            // The header first, then only as much payload as it announces: a slot is
            // megabytes, the document usually kilobytes.
            let io = |e| Error::io(format!("reading {}", self.path.display()), e);
            let mut buf = vec![0u8; HEADER];
            f.seek(SeekFrom::Start(i * slot_size))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(io)?;
            let len = le::get64(&buf, 24);
            if &buf[0..8] == MAGIC && len <= slot_size - HEADER as u64 {
                buf.resize(HEADER + len as usize, 0);
                f.read_exact(&mut buf[HEADER..]).map_err(io)?;
            }
            slots.push(decode_slot(&buf));
        }
        let b = slots.pop().unwrap();
        let a = slots.pop().unwrap();
        Ok((a, b, slot_size))
    }

    /// The current metadata and its generation.
    pub fn read(&self) -> Result<(SrMeta, u64)> {
        let (start, mut size) = (crate::stats::thread_cpu(), 0);
        let read = self.read_counted(&mut size);
        crate::stats::metadata(false, size, start);
        read
    }

    fn read_counted(&self, size: &mut u64) -> Result<(SrMeta, u64)> {
        let (a, b, slot_size) = self.read_slots()?;
        let generation = |s: &Option<Slot>| s.as_ref().map(|s| s.generation);
        self.known
            .set(Some((generation(&a), generation(&b), slot_size)));
        let best = match (a, b) {
            (Some(a), Some(b)) => {
                if a.generation >= b.generation {
                    a
                } else {
                    b
                }
            }
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => return Err(self.corrupt("no valid metadata copy (empty or torn)")),
        };
        *size = best.payload.len() as u64;
        let meta = parse_document(&best.payload).map_err(|why| self.corrupt(why))?;
        Ok((meta, best.generation))
    }

    /// Writes `meta` as the next generation into the slot not holding the current one.
    /// On a fresh volume (`fresh`), both slots are cleared first so old bytes never count.
    pub fn write(&self, meta: &SrMeta, fresh: bool) -> Result<u64> {
        let (start, mut size) = (crate::stats::thread_cpu(), 0);
        let written = self.write_counted(meta, fresh, &mut size);
        crate::stats::metadata(true, size, start);
        written
    }

    fn write_counted(&self, meta: &SrMeta, fresh: bool, size: &mut u64) -> Result<u64> {
        let payload = encode(meta)?;
        *size = payload.len() as u64;
        let (ga, gb, slot_size) = match (fresh, self.known.take()) {
            (true, _) => {
                let mut f = self.open(true)?;
                (None, None, Self::slot_size(&mut f, &self.path)?)
            }
            (false, Some(known)) => known,
            (false, None) => {
                let (a, b, size) = self.read_slots()?;
                let generation = |s: Option<Slot>| s.map(|s| s.generation);
                (generation(a), generation(b), size)
            }
        };
        let max = slot_size as usize - HEADER;
        if payload.len() > max {
            return Err(Error::MetadataTooLarge {
                size: payload.len(),
                max,
            });
        }
        let current = ga.max(gb).unwrap_or(0);
        // Overwrite the older copy, or an invalid one; never the current.
        let target: u64 = match (ga, gb) {
            (Some(x), Some(y)) => u64::from(x >= y),
            (Some(_), None) => 1,
            (None, _) => 0,
        };
        let generation = current + 1;
        let mut buf = vec![0u8; HEADER + payload.len()];
        buf[..64].copy_from_slice(&header(generation, &payload));
        buf[HEADER..].copy_from_slice(&payload);
        let buf = AlignedBuf::copy_of(&buf);
        let buf = buf.as_slice();

        let f = self.open_direct()?;
        let io = |e| {
            Error::io(
                format!("writing metadata volume {}", self.path.display()),
                e,
            )
        };
        if fresh {
            let zero = AlignedBuf::zeroed(HEADER);
            for i in 0..2 {
                f.write_all_at(zero.as_slice(), i * slot_size).map_err(io)?;
            }
            f.sync_all().map_err(io)?;
        }
        crash::point("meta.before-write");
        if crash::torn("meta.torn-write") {
            // A crash half-way through the slot: the first blocks reach the disk.
            let half = buf.len() / 2 / 4096 * 4096;
            let _ = f
                .write_all_at(&buf[..half.max(4096)], target * slot_size)
                .and_then(|_| f.sync_all());
            crash::abort("meta.torn-write");
        }
        f.write_all_at(buf, target * slot_size).map_err(io)?;
        crash::point("meta.before-flush");
        f.sync_all().map_err(io)?;
        crash::point("meta.after-flush");
        let (ga, gb) = if fresh { (None, None) } else { (ga, gb) };
        self.known.set(Some(if target == 0 {
            (Some(generation), gb, slot_size)
        } else {
            (ga, Some(generation), slot_size)
        }));
        Ok(generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> SrMeta {
        SrMeta {
            format: FORMAT,
            uuid: "3f0c".into(),
            name: "Local storage".into(),
            description: String::new(),
            mode: Mode::Owned,
            pool: "thinsr_pool".into(),
            pool_owned: true,
            file: None,
            vdis: vec![],
            policy: PoolPolicy::default(),
            geometry: None,
            receiving: vec![],
        }
    }

    fn store() -> (tempdir::Dir, MetaStore) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("meta");
        File::create(&path).unwrap().set_len(1 << 20).unwrap();
        let s = MetaStore::new(&path, "test");
        (dir, s)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!("thinsr-meta-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn round_trip_and_generations_alternate_slots() {
        let (_d, s) = store();
        let mut m = sample();
        assert_eq!(s.write(&m, true).unwrap(), 1);
        assert_eq!(s.read().unwrap(), (m.clone(), 1));
        for g in 2..6 {
            m.name = format!("name {g}");
            assert_eq!(s.write(&m, false).unwrap(), g);
            assert_eq!(s.read().unwrap(), (m.clone(), g));
        }
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_previous_state() {
        let (_d, s) = store();
        let m1 = sample();
        s.write(&m1, true).unwrap();
        let mut m2 = sample();
        m2.name = "second".into();
        s.write(&m2, false).unwrap(); // generation 2, slot 1
                                      // Tear slot 1: flip a byte in its payload.
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&s.path)
            .unwrap();
        let slot = (1u64 << 20) / 2;
        f.seek(SeekFrom::Start(slot + HEADER as u64 + 3)).unwrap();
        f.write_all(b"#").unwrap();
        assert_eq!(s.read().unwrap(), (m1.clone(), 1));
        // The next write replaces the torn slot, not the good one.
        let mut m3 = sample();
        m3.name = "third".into();
        assert_eq!(s.write(&m3, false).unwrap(), 2);
        assert_eq!(s.read().unwrap(), (m3, 2));
    }

    #[test]
    fn empty_volume_is_corrupt_not_garbage() {
        let (_d, s) = store();
        assert_eq!(s.read().unwrap_err().code(), "METADATA_CORRUPT");
    }

    #[test]
    fn oversized_documents_are_refused() {
        let (_d, s) = store();
        let mut m = sample();
        m.description = "x".repeat(1 << 20);
        assert_eq!(s.write(&m, true).unwrap_err().code(), "METADATA_TOO_LARGE");
    }

    #[test]
    fn decode_rejects_bad_headers() {
        let payload = b"format: 1";
        let mut buf = vec![0u8; HEADER + payload.len()];
        buf[..64].copy_from_slice(&header(7, payload));
        buf[HEADER..].copy_from_slice(payload);
        assert_eq!(decode_slot(&buf).unwrap().generation, 7);
        let mut bad = buf.clone();
        bad[20] ^= 1; // generation changed, header checksum no longer matches
        assert!(decode_slot(&bad).is_none());
        let mut long = buf.clone();
        long[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_slot(&long).is_none());
        assert!(decode_slot(&buf[..10]).is_none());
    }
}
