//! What `sr check` reads before it decides anything: the SR's metadata, one LVM report,
//! thinsr's devices, template attachments, the pool's own metadata. Read once, under the
//! SR's lock, so that the rules (`plan.rs`) see one consistent picture.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use crate::engine::context::{Ctx, Locked};
use crate::engine::datapath::{dead_origin, readers, stray_loops};
use crate::engine::meta::{SrMeta, VdiMeta};
use crate::engine::registry::Entry;
use crate::engine::{datapath_nbd, mirror, share};
use crate::error::Result;
use crate::host::dm::OurDevice;
use crate::host::lvm::Vg;
use crate::host::{dm, loopdev, thin};
use crate::ids::{SrUuid, VdiUuid};

/// A device of thinsr's, and how many of thinsr's devices read it as their origin.
#[derive(Debug, Clone)]
pub struct Device {
    pub dev: OurDevice,
    pub readers: usize,
}

/// A loop device over a template's image that no attachment names.
#[derive(Debug, Clone)]
pub struct StrayLoop {
    pub device: PathBuf,
    pub file: PathBuf,
    /// Something (a device of thinsr's) still reads it.
    pub held: bool,
}

#[derive(Debug, Clone)]
pub struct Facts {
    /// The host's registry entry for the SR.
    pub entry: Entry,
    pub meta: SrMeta,
    pub vg: Vg,
    pub devices: Vec<Device>,
    /// Templates whose attachment's server is gone, and how many devices still read it.
    pub dead_origins: BTreeMap<VdiUuid, usize>,
    /// Lazy templates whose file on the server is no longer the version pinned, as their
    /// lazy source last found, and what it said.
    pub sources_changed: BTreeMap<VdiUuid, String>,
    pub stray_loops: Vec<StrayLoop>,
    /// Thin device id -> bytes mapped, from the live pool's metadata (None: inactive pool).
    pub thin_devices: Option<HashMap<u32, u64>>,
    /// What is wrong with the pool, as the kernel says.
    pub pool_trouble: Option<String>,
    /// VDIs mid-compose whose log of writes is still there (no reboot since).
    pub compose_logs: HashSet<VdiUuid>,
    /// VDIs whose NBD export (a datapath's) runs now.
    pub exports: Vec<VdiUuid>,
    /// Mirrors recorded as under way, and the devices a mirror left (mirrors.rs).
    pub mirrors: Vec<MirrorFact>,
    /// Template shares this SR's templates use, and any nobody holds (shares.rs).
    pub shares: Vec<ShareFact>,
}

/// A template share's mount, as its record and the kernel have it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareFact {
    pub id: String,
    pub place: Option<String>,
    pub mounted: bool,
    /// Live holders.
    pub holders: usize,
    /// Why its server did not answer just now (asked only of a mount with holders).
    pub unreachable: Option<String>,
}

/// A mirror of one of the SR's VDIs, as recorded and as the kernel has it.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorFact {
    pub vdi: VdiUuid,
    /// The record's phase, None when only a leg device is left.
    pub phase: Option<mirror::Phase>,
    /// The VDI's device is a mirror now.
    pub mirroring: bool,
    /// A leg device of the mirror exists.
    pub leg: bool,
}

impl Ctx {
    pub(super) fn check_facts(&self, op: &Locked) -> Result<Facts> {
        let entry = op.entry.clone();
        let vg = self.lvm.report_vg(&entry.vg)?;
        let ours = dm::our_devices_or_none();
        let devices = ours
            .iter()
            .map(|d| Device {
                dev: d.clone(),
                readers: readers(&d.path(), &ours),
            })
            .collect();
        let templates: Vec<&VdiMeta> = op.meta.vdis.iter().filter(|v| v.is_template()).collect();
        let dead_origins = templates
            .iter()
            .filter_map(|t| Some((t.uuid.clone(), dead_origin(&t.uuid, &ours)?)))
            .collect();
        let sources_changed = templates
            .iter()
            .filter(|t| t.lazy.is_some())
            .filter_map(|t| {
                let s = crate::engine::lazy::server::Endpoint::of(&entry.uuid, &t.uuid)
                    .last_status()?;
                s.changed
                    .then(|| (t.uuid.clone(), s.error.unwrap_or_default()))
            })
            .collect();
        let stray_loops = stray_loops(&templates)
            .into_iter()
            .map(|(device, file)| StrayLoop {
                held: loopdev::has_holders(&device),
                device,
                file,
            })
            .collect();
        let thin_devices = thin::mapped_bytes(&vg.name, &entry.pool)?;
        let pool_trouble = dm::pool_status(&vg.name, &entry.pool)?.and_then(|k| k.trouble());
        let compose_logs = op
            .meta
            .vdis
            .iter()
            .filter(|v| v.composing.is_some() && datapath_nbd::has_log(&entry.uuid, &v.uuid))
            .map(|v| v.uuid.clone())
            .collect();
        Ok(Facts {
            exports: datapath_nbd::running(&entry.uuid),
            mirrors: mirror_facts(&entry.uuid, &ours),
            shares: share_facts(&templates),
            compose_logs,
            entry,
            meta: op.meta.clone(),
            vg,
            devices,
            dead_origins,
            sources_changed,
            stray_loops,
            thin_devices,
            pool_trouble,
        })
    }
}

/// The shares `templates` are on (asking each mounted one's server whether it answers),
/// and every share nobody holds.
fn share_facts(templates: &[&VdiMeta]) -> Vec<ShareFact> {
    let ours: Vec<share::Share> = templates
        .iter()
        .filter_map(|t| share::parse(&t.image.as_ref()?.uri).ok().flatten())
        .collect();
    share::holders::mounts()
        .into_iter()
        .filter_map(|m| {
            let s = ours.iter().find(|s| s.id() == m.id);
            if s.is_none() && m.holders > 0 {
                return None; // another SR's
            }
            let unreachable = match s {
                Some(s) if m.mounted && m.holders > 0 => s.reachable().err().map(|e| e.to_string()),
                _ => None,
            };
            Some(ShareFact {
                id: m.id,
                place: m.place,
                mounted: m.mounted,
                holders: m.holders,
                unreachable,
            })
        })
        .collect()
}

/// The mirrors recorded for SR `sr` still under way, and every leg device of a mirror (a
/// leg's dm uuid is `THINSR-MIRROR-<vdi>`; the rule keeps those of the SR's VDIs).
fn mirror_facts(sr: &SrUuid, ours: &[OurDevice]) -> Vec<MirrorFact> {
    let legs: HashSet<VdiUuid> = ours
        .iter()
        .filter_map(|d| d.vdi.strip_prefix("MIRROR-").map(VdiUuid::from))
        .collect();
    let mut found: Vec<MirrorFact> = mirror::recorded(sr)
        .into_iter()
        .filter(|m| m.running())
        .map(|m| MirrorFact {
            mirroring: dm::table_of(&m.top).is_ok_and(|(_, t, _)| t == "mirror"),
            leg: legs.contains(&m.vdi),
            vdi: m.vdi,
            phase: Some(m.phase),
        })
        .collect();
    for vdi in legs {
        if !found.iter().any(|f| f.vdi == vdi) {
            found.push(MirrorFact {
                vdi,
                phase: None,
                mirroring: false,
                leg: true,
            });
        }
    }
    found
}
