//! VDIs: the engine. No printing; every function returns data.
//!
//! Ordering rules (a crash at any step leaves a state the next run can see):
//! - create, snapshot, clone: the tagged LV first, then the metadata entry. A crash between
//!   leaves a tagged LV with no entry, which `vdi list` reports.
//! - destroy: the LV first, then the entry. A crash between leaves an entry whose LV is gone.
//! - preallocation: the entry is written with `pending: zeroing` before the zeroing starts
//!   and cleared after it; nothing attaches a VDI whose zeroing is pending.
//! - rename: the LV first. Entries find their LV by its `thinsr_vdi=` tag, never by name.
//!
//! Split by what is done: `lookup` (finding a VDI, listing, the xapi volume record),
//! `create` (create and destroy), `snapshot` (snapshots and clones), `resize`, `rename`
//! (labels, descriptions, keys), `attach` (attach and detach). Shared checks live here.

mod attach;
mod create;
mod lookup;
mod rename;
mod resize;
mod snapshot;

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::engine::context::{sr_tag, Ctx, Locked};
use crate::engine::meta::{Mode, Pending, SrMeta, VdiKind, VdiMeta};
use crate::engine::names;
use crate::engine::registry::Entry;
use crate::error::{Error, Result};
use crate::host::lvm::cmd::LvCreate;
use crate::host::lvm::{dev_path, Lv, Vg, TAG_META, TAG_VDI};
use crate::ids::{LvName, SrUuid, VdiUuid, VgName};
use crate::units::Bytes;

/// The fields of xapi's `volume` record, all present in every `Volume`.
pub const VOLUME_FIELDS: [&str; 12] = [
    "key",
    "uuid",
    "name",
    "description",
    "read_write",
    "sharable",
    "virtual_size",
    "physical_utilisation",
    "uri",
    "keys",
    "volume_type",
    "cbt_enabled",
];

/// What `template show` says of a lazy template.
#[derive(Debug, Clone, Serialize)]
pub struct LazyState {
    /// The version of the file every read is pinned to.
    pub version: String,
    pub length: Bytes,
    /// Bytes of the file on the host (whole pieces), when known: a server ran since the
    /// host started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_host: Option<Bytes>,
    /// Bytes received from the server by the running lazy source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched: Option<Bytes>,
    /// The server holds another version of the file now.
    pub source_changed: bool,
    /// The last fetch's failure, while none has succeeded since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Seconds a clone's read waits for the server before it fails.
    pub timeout_s: u64,
    /// Nothing has checked the file's bytes: a full warm computes its SHA-256.
    pub verified: bool,
}

/// A VDI as xapi's `volume` record (the first fields) plus what thinsr knows of it.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    pub key: String,
    pub uuid: VdiUuid,
    pub name: String,
    pub description: String,
    pub read_write: bool,
    pub sharable: bool,
    pub virtual_size: Bytes,
    pub physical_utilisation: Bytes,
    pub uri: Vec<String>,
    pub keys: BTreeMap<String, String>,
    pub sr: String,
    pub sr_name: String,
    pub kind: VdiKind,
    pub vg: VgName,
    pub lv: LvName,
    /// The block device, present while the LV is active.
    pub path: String,
    pub attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_name: Option<String>,
    /// A template's image URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// A template's image format (qemu's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The template this VDI reads where it has written nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_name: Option<String>,
    /// A template's cache LV, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// A template's local copy LV (its data as a raw disk, read in the kernel), when it has
    /// one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// Bytes held by the template's cache or local copy LV (the blocks fetched so far,
    /// plus qcow2's tables for a cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<u64>,
    /// Bytes of a template's image that hold data, from qemu's map (`template show` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_allocated: Option<u64>,
    /// Where a template's image is served from and whether it answers (`template show`
    /// only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerState>,
    /// A template read lazily from its server: what of it is on the host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lazy: Option<LazyState>,
    /// A template image's SHA-256, as checked (a lazy one's once fully warmed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// xapi's field: changed block tracking is on.
    pub cbt_enabled: bool,
    /// Only the block map is left (`vdi data-destroy`): xapi's `cbt_metadata` VDI.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub data_destroyed: bool,
    /// xapi's `volume_type`: what the volume holds.
    pub volume_type: VolumeType,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// A replica's source (`vdi receive`): the sending SR's VDI and snapshot, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<crate::engine::meta::Replica>,
    /// `post-` hooks of the command that made this record that failed (the change stands).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_failures: Vec<String>,
}

/// The IDL's `volume_type` variant (xen-api ocaml/xapi-storage/generator/lib/control.ml),
/// encoded as ocaml-rpc encodes a constructor without arguments: its name as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VolumeType {
    Data,
    /// Data destroyed, the block map kept.
    #[serde(rename = "CBT_Metadata")]
    CbtMetadata,
}

/// `vdi list`: the volumes, and what the admin should know about the SRs listed.
#[derive(Debug)]
pub struct Listing {
    pub volumes: Vec<Volume>,
    pub warnings: Vec<String>,
}

/// A VDI named on the command line, found in an SR's metadata (as read, without the lock).
#[derive(Debug, Clone)]
pub struct Found {
    pub entry: Entry,
    pub uuid: String,
    pub meta: SrMeta,
}

impl Found {
    /// The VDI's entry, as `resolve` read it.
    pub(crate) fn vdi(&self) -> Result<VdiMeta> {
        self.meta
            .vdi(&self.uuid)
            .cloned()
            .ok_or_else(|| Error::VdiNotFound(self.uuid.clone()))
    }
}

pub(crate) fn vdi_tag(uuid: &str) -> String {
    format!("{TAG_VDI}{uuid}")
}

pub(crate) use crate::units::now;

fn is_thin(kind: VdiKind) -> bool {
    kind != VdiKind::Preallocated
}

/// The LV of a VDI, or an error saying it is gone.
fn vdi_lv<'a>(vg: &'a Vg, v: &VdiMeta) -> Result<&'a Lv> {
    vg.vdi_lv(&v.uuid)
        .ok_or_else(|| Error::LvNotFound(format!("{}/{} (of VDI '{}')", vg.name, v.lv, v.name)))
}

/// A friendly LV name for `label` that no LV in the VG has; `keep` (the LV being renamed)
/// may keep its own.
pub(crate) fn free_lv_name(vg: &Vg, label: &str, keep: Option<&str>) -> LvName {
    let taken: HashSet<String> = vg
        .lvs
        .iter()
        .filter(|l| Some(l.name.as_str()) != keep)
        .map(|l| l.name.to_string())
        .collect();
    names::unique_name(label, &vg.name, &taken).into()
}

/// The start of every VDI's `lvcreate`: its name and tags (and, beyond the SR's and the
/// VDI's, `more`), activation skipped.
pub(crate) fn lvcreate(sr: &SrUuid, uuid: &VdiUuid, lv: &LvName, more: &[String]) -> LvCreate {
    let mut tags = vec![sr_tag(sr), vdi_tag(uuid)];
    tags.extend(more.iter().cloned());
    LvCreate::new(lv, &tags)
}

fn refuse_template(v: &VdiMeta) -> Result<()> {
    if v.is_template() {
        return Err(Error::VdiIsTemplate(v.name.clone()));
    }
    Ok(())
}

pub(crate) fn refuse_pending(v: &VdiMeta) -> Result<()> {
    if v.cbt_map.is_some() {
        return Err(Error::VdiDataDestroyed(v.name.clone()));
    }
    if let Some(s) = &v.reverting {
        return Err(Error::VdiIncomplete {
            vdi: v.name.clone(),
            why: format!(
                "its revert to snapshot {s} did not finish: run 'thinsr vdi revert' again, or 'thinsr sr check --repair'"
            ),
        });
    }
    if let Some(k) = &v.composing {
        return Err(Error::VdiIncomplete {
            vdi: v.name.clone(),
            why: format!(
                "its compose onto {} did not finish: run 'thinsr sr check --repair'",
                k.parent
            ),
        });
    }
    if let Some(f) = &v.fetch {
        return Err(Error::VdiIncomplete {
            vdi: v.name.clone(),
            why: format!(
                "its download stopped at {} of {}: 'thinsr template introduce {}' again resumes it",
                f.fetched,
                f.length,
                v.image.as_ref().map_or("URI", |i| i.uri.as_str())
            ),
        });
    }
    match v.pending {
        None => Ok(()),
        Some(Pending::Zeroing { from }) => Err(Error::VdiIncomplete {
            vdi: v.name.clone(),
            why: format!("zeroing stopped at {from} or later and did not finish"),
        }),
        Some(Pending::Importing) => Err(Error::VdiIncomplete {
            vdi: v.name.clone(),
            why: "its import stopped before the end; destroy it and import again".into(),
        }),
    }
}

/// The template VDI `v` reads, if any.
fn template_of<'a>(op: &'a Locked, v: &VdiMeta) -> Result<Option<&'a VdiMeta>> {
    match &v.origin {
        None => Ok(None),
        Some(t) => Ok(Some(op.meta.vdi(t).ok_or_else(|| {
            Error::VdiIncomplete {
                vdi: v.name.clone(),
                why: format!("its template {t} is no longer registered"),
            }
        })?)),
    }
}

/// Where a VG's space went, for a NO_SPACE error on a preallocated VDI.
fn space_detail(vg: &Vg, entry: &Entry) -> String {
    let tag = sr_tag(&entry.uuid);
    let (mut pool, mut prealloc, mut ours, mut others) = (0u64, 0u64, 0u64, 0u64);
    for l in &vg.lvs {
        if l.name == entry.pool {
            // LVM keeps a spare copy of the pool's metadata beside it.
            pool += l.size.0 + 2 * l.metadata_size.map(|b| b.0).unwrap_or(0);
        } else if !l.pool.is_empty() {
            // Thin volumes live inside the pool.
        } else if l.has_tag(&tag) && l.tag_value(TAG_VDI).is_some() {
            prealloc += l.size.0;
        } else if l.has_tag(&tag) || l.has_tag(TAG_META) {
            ours += l.size.0;
        } else if !l.name.starts_with('[') {
            others += l.size.0;
        }
    }
    let mut parts = vec![format!(
        "the thin pool holds {}{}",
        Bytes(pool),
        if entry.mode == Mode::Owned {
            " (it grows as thin disks fill, and cannot shrink)"
        } else {
            ""
        }
    )];
    parts.push(format!("preallocated VDIs {}", Bytes(prealloc)));
    parts.push(format!("thinsr's metadata {}", Bytes(ours)));
    if others > 0 {
        parts.push(format!("LVs that are not thinsr's {}", Bytes(others)));
    }
    format!(" of {}; {}", vg.size, parts.join(", "))
}

impl Ctx {
    /// Refuses while the VDI is in use: active through LVM or through a device of ours.
    pub(crate) fn refuse_attached(&self, vg: &Vg, v: &VdiMeta, lv: &Lv) -> Result<()> {
        let device = match self.our_device(&v.uuid) {
            Some(d) => d.path().display().to_string(),
            None if lv.active || lv.open => dev_path(&vg.name, &lv.name),
            None => return Ok(()),
        };
        Err(Error::VdiAttached {
            vdi: v.name.clone(),
            device,
        })
    }
}

/// The name of `v`'s parent, for display.
fn parent_name(meta: &SrMeta, v: &VdiMeta) -> Option<String> {
    v.parent.as_ref().map(|p| {
        meta.vdi(p)
            .map(|pv| pv.name.clone())
            .unwrap_or_else(|| "(destroyed)".into())
    })
}

/// The name of the template `v` reads, for display.
fn origin_name(meta: &SrMeta, v: &VdiMeta) -> Option<String> {
    v.origin.as_ref().map(|o| {
        meta.vdi(o)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| "(forgotten)".into())
    })
}

/// A template's server, as `template show` found it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerState {
    /// What serves the image: `nfs://HOST/EXPORT`, `smb://HOST/SHARE`, an NBD server, or
    /// a web server.
    pub place: String,
    /// `host:port`.
    pub address: String,
    /// Its port answered just now.
    pub reachable: bool,
    /// Why it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A share: mounted on this host now (by thinsr, under /run/thinsr/mnt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounted: Option<bool>,
}
