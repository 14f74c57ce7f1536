//! Finding thinsr SRs on storage this host may not know: `SR.probe` on a device or VG
//! (xapi's sr-probe, and its "introduce an existing SR"), and `SR.attach` of an SR whose
//! registry entry is gone (a reinstalled host, a lost /etc/thinsr). What identifies an SR
//! is on disk: its metadata LV carries `thinsr_meta` and `thinsr_sr=<uuid>`.

use std::collections::HashSet;

use super::{find_meta_lv, SrDetail};
use crate::engine::context::Ctx;
use crate::error::{Error, Result};
use crate::host::lvm::{Vg, TAG_OWNED, TAG_SR};
use crate::host::probe;
use crate::units::Bytes;

/// One SR found on the storage probed.
#[derive(Debug)]
pub struct Found {
    pub uuid: String,
    pub vg: String,
    pub owned: bool,
    pub total_space: Bytes,
    pub free_space: Bytes,
    /// The host's own view, when it has the SR registered and attached.
    pub detail: Option<SrDetail>,
}

fn sr_uuid_of(vg: &Vg) -> Option<String> {
    find_meta_lv(vg)
        .and_then(|l| l.tag_value(TAG_SR))
        .map(str::to_string)
}

impl Ctx {
    /// The thinsr SRs on `devices` (their VGs) and in `vg`; with neither, every VG this
    /// host sees. Reads one report and changes nothing.
    pub fn probe(&self, devices: &[String], vg: Option<&str>) -> Result<Vec<Found>> {
        let all = self.lvm.report(None)?;
        let mut wanted: HashSet<&str> = HashSet::new();
        for d in devices {
            let names: HashSet<String> = [d.clone()].into();
            let ids = probe::device_ids([d.as_str()]);
            match all.iter().find(|g| {
                g.pvs
                    .iter()
                    .any(|p| probe::is_one_of(&p.name, &ids, &names))
            }) {
                Some(g) => {
                    wanted.insert(&g.name);
                }
                None => continue, // a blank disk holds no SR: an empty answer, not an error
            }
        }
        if let Some(v) = vg {
            if !all.iter().any(|g| g.name == v) {
                return Err(Error::VgNotFound(crate::units::clip(v)));
            }
            wanted.insert(v);
        }
        let every = devices.is_empty() && vg.is_none();
        let reg = self.load()?;
        let mut out = Vec::new();
        for g in all
            .iter()
            .filter(|g| every || wanted.contains(g.name.as_str()))
        {
            let Some(uuid) = sr_uuid_of(g) else { continue };
            let detail = reg
                .srs
                .iter()
                .any(|e| e.uuid == uuid)
                .then(|| self.show(Some(&uuid)).ok())
                .flatten();
            out.push(Found {
                owned: g.has_tag(TAG_OWNED),
                total_space: g.size,
                free_space: g.free,
                uuid,
                vg: g.name.to_string(),
                detail,
            });
        }
        Ok(out)
    }

    /// `SR.attach`: the SR named by `uuid` (or VG); when this host does not know it, found
    /// by its tags (in `vg` if given, else in any VG) and registered again from its own
    /// metadata, with the same uuid, name and everything in it; then attached.
    /// `key`: the SR's uuid, or its VG's name.
    pub fn attach_or_recover(&self, key: &str, vg: Option<&str>) -> Result<SrDetail> {
        if self.load()?.find(key).is_ok() {
            return self.attach(Some(key));
        }
        let found = self.probe(&[], vg)?;
        let f = found
            .iter()
            .find(|f| f.uuid == key || vg.is_some_and(|v| f.vg == v))
            .ok_or_else(|| Error::SrNotFound(key.into()))?;
        self.introduce(&f.vg.as_str().into(), None, None, None, None)?;
        self.attach(Some(&f.uuid))
    }
}
