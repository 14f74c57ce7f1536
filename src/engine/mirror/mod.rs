//! A VDI in use copied to an NBD export, in the kernel: the source side of a storage
//! migration (`Data.mirror`, `Data.stat`, the drain at `Datapath.deactivate`) and `vdi
//! mirror`.
//!
//! A writable VDI is attached through a device of thinsr's (`vdi/attach.rs`) whose table
//! can change under the VM. A mirror swaps that table for device-mapper's `mirror` with two
//! legs: a new device carrying the VDI's own table, and a kernel NBD device connected to
//! the destination (the handshake is thinsr's, the socket is handed to the kernel by
//! netlink). The VM's writes go to both; the kernel copies the regions its dirty log marks,
//! and the log is written from the thin volume's block map, read while the device is
//! suspended, so only what the VDI holds travels. Ending it swaps the VDI's own table back.
//!
//! State lives in /run/thinsr/mirror/SR/VDI.json, root's alone: `Data.stat` gets only the
//! key (`SR/VDI`), and each call is a process of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod copy;
mod guard;
mod remote;

pub use copy::Mirrored;
pub use guard::{run as run_guard, COMMAND as GUARD};

use remote::{connect, parse_remote, unreachable, Remote};

use crate::engine::context::Ctx;
use crate::engine::meta::VdiKind;
use crate::error::{Error, Result};
use crate::host::mirror::{self as dm_mirror, Status};
use crate::host::{dm, lock, loopdev, nbd_netlink, rundir, thin};
use crate::ids::{LvName, SrUuid, VdiUuid, VgName};
use crate::units::Sectors;

const DIR: &str = "/run/thinsr/mirror";
/// Seconds one NBD request of the mirror may wait for its reply before the destination is
/// declared dead: the longest a VM's write can stall on a destination that hangs.
const NBD_TIMEOUT_S: u64 = 15;
/// How long `Data.stat` waits for news: xapi calls it in a loop without sleeping.
const STAT_PACE: Duration = Duration::from_secs(1);

/// Where a mirror stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Phase {
    /// Being set up: what `made` names may exist.
    Starting,
    /// The VDI's device is the mirror.
    Running,
    /// Ended with every write on the destination.
    Complete,
    /// Ended, or given up, without.
    Failed { why: String },
}

/// One mirror, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mirror {
    pub sr: SrUuid,
    pub vdi: VdiUuid,
    pub remote: String,
    /// The VDI's device (the VM's).
    pub top: String,
    /// The device carrying the VDI's own table: the mirror's first leg.
    pub leg: String,
    /// The VDI's own table, swapped back at the end.
    pub length: u64,
    pub target: String,
    pub params: String,
    pub nbd: Option<u32>,
    pub log: Option<PathBuf>,
    pub region_bytes: u64,
    pub regions: u64,
    /// Regions the log marked for copying.
    pub to_copy: u64,
    #[serde(flatten)]
    pub phase: Phase,
}

/// What `Data.stat` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub failed: bool,
    pub complete: bool,
    pub progress: f64,
}

fn state_file(sr: &SrUuid, vdi: &VdiUuid) -> Result<PathBuf> {
    if !rundir::safe_name(sr) || !rundir::safe_name(vdi) {
        return Err(Error::InvalidArgument(format!(
            "'{sr}/{vdi}' names no mirror"
        )));
    }
    Ok(Path::new(DIR).join(sr.as_str()).join(format!("{vdi}.json")))
}

impl Mirror {
    /// The key xapi's `MirrorV1` carries.
    pub fn key(&self) -> String {
        format!("{}/{}", self.sr, self.vdi)
    }

    fn file(&self) -> Result<PathBuf> {
        state_file(&self.sr, &self.vdi)
    }

    fn save(&self) -> Result<()> {
        let file = self.file()?;
        let text = serde_json::to_vec_pretty(self).expect("a mirror serializes");
        rundir::write(&file, &text)
    }

    fn log_file(&self) -> Result<PathBuf> {
        Ok(self.file()?.with_extension("log"))
    }

    fn nbd_path(&self) -> Option<String> {
        self.nbd.map(|i| format!("/dev/nbd{i}"))
    }

    pub fn running(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Running)
    }
}

/// The mirror recorded for `vdi` of `sr`, if any.
pub fn load(sr: &SrUuid, vdi: &VdiUuid) -> Option<Mirror> {
    let text = rundir::read(&state_file(sr, vdi).ok()?, 1 << 20)?;
    serde_json::from_str(&text).ok()
}

/// The dm name of the device carrying VDI `vdi`'s own table while it is mirrored.
pub fn leg_name(vdi: &VdiUuid) -> String {
    format!("{}mirror-{vdi}", dm::OUR_PREFIX)
}

/// Every mirror recorded for SR `sr` (until its VDI is detached).
pub fn recorded(sr: &SrUuid) -> Vec<Mirror> {
    let Ok(dir) = std::fs::read_dir(Path::new(DIR).join(sr.as_str())) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        load(sr, &VdiUuid::from(name.strip_suffix(".json")?))
    })
    .collect()
}

/// `SR/VDI` from a key.
pub fn parse_key(key: &str) -> Result<(SrUuid, VdiUuid)> {
    let (sr, vdi) = key
        .split_once('/')
        .filter(|(s, v)| rundir::safe_name(s) && rundir::safe_name(v))
        .ok_or_else(|| Error::InvalidArgument(format!("'{key}' is not a mirror of thinsr's")))?;
    Ok((SrUuid::from(sr), VdiUuid::from(vdi)))
}

/// Where the data is: for a thin VDI of its own (no template under it), the byte ranges
/// its block map holds; for anything else, None: all of it travels.
fn data_extents(vg: &VgName, pool: &LvName, thin: Option<u32>) -> Result<Option<Vec<(u64, u64)>>> {
    let Some(id) = thin else {
        return Ok(None);
    };
    let maps =
        thin::block_maps(vg, pool, &[id])?.ok_or_else(|| Error::SrNotAttached(vg.to_string()))?;
    Ok(Some(
        maps[0].extents().iter().map(|e| (e.start, e.len)).collect(),
    ))
}

/// The thin id of LV `vg/lv` from the table of LVM's device (`thin POOL ID`), if active.
fn thin_id(vg: &VgName, lv: &LvName) -> Option<u32> {
    let (_, target, params) = dm::table_of(&dm::dm_name(vg, lv)).ok()?;
    let id = params.split_whitespace().nth(1)?;
    (target == "thin").then(|| id.parse().ok()).flatten()
}

/// Which regions of `m` (its region size chosen) the data touches.
fn dirty_regions(m: &Mirror, data: Option<&[(u64, u64)]>) -> Vec<bool> {
    let Some(data) = data else {
        return vec![true; m.regions as usize];
    };
    let mut dirty = vec![false; m.regions as usize];
    for (start, len) in data {
        let first = start / m.region_bytes;
        let last = (start + len).div_ceil(m.region_bytes).min(m.regions);
        for r in first..last {
            dirty[r as usize] = true;
        }
    }
    dirty
}

impl Ctx {
    /// Starts mirroring VDI `key` (attached read-write: the VM's device) to the NBD export
    /// `remote_uri`. Returns once the kernel mirrors: the VM's writes reach both from here.
    pub fn mirror_start(&self, key: &str, sr: Option<&str>, remote_uri: &str) -> Result<Mirror> {
        let remote = parse_remote(remote_uri)?;
        // No LVM report: the device-mapper tables say all a mirror needs.
        let found = self.resolve(key, sr)?;
        let op = self.lock_sr(&found.entry)?;
        let uuid = found.uuid.as_str();
        let v = op.vdi(uuid)?.clone();
        let sr_id = op.entry.uuid.clone();
        if let Some(old) = load(&sr_id, &v.uuid).filter(Mirror::running) {
            // Under the SR's lock no other start runs: a record still starting, or
            // running with the VDI's device no mirror, was left by a crash.
            if old.phase == Phase::Running && kernel_status(&old)?.is_some() {
                return Err(Error::VdiAttached {
                    vdi: v.name.clone(),
                    device: format!(
                        "/dev/mapper/{}, mirrored to {} already",
                        old.top, old.remote
                    ),
                });
            }
            give_up(&old, "left behind by an interrupted run".into())?;
        }
        let dev = self
            .our_device(uuid)
            .filter(|d| d.live && !d.read_only)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "VDI '{}' is not attached read-write: a mirror copies a VDI in use (xapi's datapath attaches it; 'thinsr vdi mirror' attaches a detached one for the while)",
                    v.name
                ))
            })?;
        let (length, target, params) = dm::table_of(&dev.name)?;
        if target == "mirror" {
            return Err(Error::VdiAttached {
                vdi: v.name.clone(),
                device: format!(
                    "{} is a mirror already; 'thinsr sr check --repair' ends one left by a crash",
                    dev.path().display()
                ),
            });
        }
        // The pool's block until the data's layout says more (swap_in).
        let region_bytes = op.meta.geometry.map(|g| g.chunk.0).unwrap_or(64 * 1024);
        let mut m = Mirror {
            sr: sr_id,
            vdi: v.uuid.clone(),
            remote: remote_uri.to_string(),
            top: dev.name.clone(),
            leg: leg_name(&v.uuid),
            length: length.0,
            target,
            params,
            nbd: None,
            log: None,
            region_bytes,
            regions: (length.0 * 512).div_ceil(region_bytes),
            to_copy: 0,
            phase: Phase::Starting,
        };
        m.save()?;
        crate::crash::point("mirror.recorded");
        // A thin VDI of its own copies what its block map holds (its thin id read from
        // LVM's device under ours); a template's clone reads its template where it has
        // no data, so all of it travels.
        let thin = match (v.kind, &v.origin) {
            (VdiKind::Thin, None) => thin_id(&op.entry.vg, &v.lv),
            _ => None,
        };
        let (vg, pool) = (op.entry.vg.clone(), op.entry.pool.clone());
        let started = self.mirror_steps(&vg, &mut m, remote_uri, &remote, &pool, thin);
        match started {
            Ok(()) => Ok(m),
            Err(e) => {
                // Where the undo fails too (the VM's device may still be suspended), the
                // record stays 'starting': the guard undoes it again once this call ends.
                let mut undone = true;
                let e = e.undo(
                    "removing what the mirror's start made (its guard tries again when this call ends)",
                    || teardown(&m).inspect_err(|_| undone = false),
                );
                if !undone {
                    return Err(e);
                }
                m.phase = Phase::Failed { why: e.to_string() };
                Err(e.undo("recording the mirror as failed", || m.save()))
            }
        }
    }

    fn mirror_steps(
        &self,
        vg: &VgName,
        m: &mut Mirror,
        uri: &str,
        remote: &Remote,
        pool: &LvName,
        thin: Option<u32>,
    ) -> Result<()> {
        let (socket, n) = connect(uri, remote)?;
        if n.read_only() {
            return Err(unreachable(uri, "the export is read-only"));
        }
        // From here a guard watches: the connection (a destination that hangs up ends
        // the mirror at once, the VM's writes failing on it cut short), and this process
        // (one that dies mid-start, the VM's device suspended say, is undone).
        guard::start(m, &socket)?;
        if n.size < m.length * 512 {
            return Err(Error::InvalidArgument(format!(
                "the destination {uri} holds {} bytes, fewer than the VDI's {}",
                n.size,
                m.length * 512
            )));
        }
        let index = nbd_netlink::connect(&nbd_netlink::Connect {
            socket: &socket,
            size: n.size,
            flags: n.flags,
            timeout_s: NBD_TIMEOUT_S,
        })?;
        drop(socket); // the kernel holds it now
        m.nbd = Some(index);
        m.save()?;
        crate::crash::point("mirror.connected");
        dm::create(
            &m.leg,
            &format!("MIRROR-{}", m.vdi),
            Sectors(m.length),
            &dm::Table::Line {
                target: m.target.clone(),
                params: m.params.clone(),
            },
            false,
        )?;
        // The map is read with the VDI's device suspended: every write the VM made before
        // is mapped (and committed by the metadata snapshot), every one after goes to both.
        dm::suspend(&m.top, true)?;
        crate::crash::point("mirror.suspended");
        let swapped = match crate::crash::fault("mirror.swap") {
            true => Err(Error::DmFailed(format!(
                "loading the mirror into {} failed (injected)",
                m.top
            ))),
            false => self.swap_in(vg, m, pool, thin),
        };
        if let Err(e) = swapped {
            // The VM's device is suspended: resumed here, else by the start's undo, else
            // by the guard once this call is gone (the record still says starting).
            return Err(e.undo("resuming the VM's device", || resume(&m.top)));
        }
        m.phase = Phase::Running;
        m.save()
    }

    fn swap_in(&self, vg: &VgName, m: &mut Mirror, pool: &LvName, thin: Option<u32>) -> Result<()> {
        let data = data_extents(vg, pool, thin)?;
        let region = dm_mirror::choose_region(data.as_deref(), m.region_bytes);
        m.region_bytes = region * 512;
        m.regions = (m.length * 512).div_ceil(m.region_bytes);
        let dirty = dirty_regions(m, data.as_deref());
        m.to_copy = dirty.iter().filter(|d| **d).count() as u64;
        let file = m.log_file()?;
        rundir::write(
            &file,
            &dm_mirror::dirty_log(m.regions, |r| !dirty[r as usize]),
        )?;
        let log = loopdev::attach(&file)?;
        m.log = Some(log.clone());
        m.save()?;
        let leg = Path::new("/dev/mapper").join(&m.leg);
        let params = dm_mirror::table(
            &log.display().to_string(),
            m.region_bytes / 512,
            [
                &leg.display().to_string(),
                &m.nbd_path().expect("connected"),
            ],
        );
        dm::replace_table(&m.top, Sectors(m.length), "mirror", &params)
    }
}

/// The mirror's kernel status, None when the VDI's device is no mirror (any more).
fn kernel_status(m: &Mirror) -> Result<Option<Status>> {
    match dm::status_of(&m.top) {
        Ok((target, line)) if target == "mirror" => dm_mirror::parse_status(&line).map(Some),
        Ok(_) => Ok(None),
        Err(_) if !dm::exists(&m.top) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Resumes the VM's device `top` after a start stopped with it suspended.
fn resume(top: &str) -> Result<()> {
    match crate::crash::fault("mirror.resume") {
        true => Err(Error::DmFailed(format!("resuming {top} failed (injected)"))),
        false => dm::suspend(top, false),
    }
}

/// Undoes whatever of the mirror exists: the VDI's own table back on its device (resumed),
/// then the first leg, the NBD connection, the log. Each step is skipped when done, so it
/// runs again after a crash.
pub fn teardown(m: &Mirror) -> Result<()> {
    if dm::exists(&m.top) {
        // A start killed between loading the mirror's table and resuming left it
        // loaded: cleared first, or the resume below would make it live.
        dm::clear_inactive(&m.top)?;
        let (_, target, _) = dm::table_of(&m.top)?;
        if target == "mirror" {
            dm::replace_table(&m.top, Sectors(m.length), &m.target, &m.params)?;
        } else {
            // Suspended by a start that died before its swap: let the VM go on.
            resume(&m.top)?;
        }
    }
    crate::crash::point("mirror.swapped-back");
    dm::remove(&m.leg, m.vdi.as_str())?;
    if let Some(i) = m.nbd {
        nbd_netlink::disconnect(i)?;
    }
    if let Some(log) = &m.log {
        if loopdev::backing_file(log).is_some() {
            loopdev::detach(log)?;
        }
    }
    let _ = std::fs::remove_file(m.log_file()?);
    Ok(())
}

/// Serialises the calls that end a mirror (the drain, a stat that gives up, `sr check`).
fn end_lock(m: &Mirror) -> Result<lock::Lock> {
    lock::acquire(&format!("mirror-{}", m.vdi), "the VDI's mirror")
}

/// Ends the mirror of `vdi` if one runs: the VDI's device flushed (every write the VM made
/// sent to both legs), checked, its own table swapped back, the rest removed. Returns the
/// mirror as ended (`Complete` only when the destination has every write), None when none
/// ran. The drain point of a migration (`Datapath.deactivate` of the VM's domain), the end
/// of `vdi mirror`, and of a detach.
pub fn finish(sr: &SrUuid, vdi: &VdiUuid) -> Result<Option<Mirror>> {
    let Some(first) = load(sr, vdi) else {
        return Ok(None);
    };
    let _l = end_lock(&first)?;
    // Read again under the lock: a stat may have ended it meanwhile.
    let Some(mut m) = load(sr, vdi) else {
        return Ok(None);
    };
    if !m.running() {
        return Ok(Some(m));
    }
    let verdict = match kernel_status(&m)? {
        Some(_) => {
            let device = Path::new("/dev/mapper").join(&m.top);
            let flushed = std::fs::OpenOptions::new()
                .write(true)
                .open(&device)
                .and_then(|f| f.sync_all());
            crate::crash::point("mirror.flushed");
            let status = kernel_status(&m)?;
            match (flushed, status) {
                (Err(e), _) => Err(format!("flushing {}: {e}", device.display())),
                (_, Some(s)) if !s.leg_alive(1) => Err(format!(
                    "the destination failed (leg health '{}')",
                    s.health
                )),
                (_, Some(s)) if !s.synced() => Err(format!(
                    "{} of {} regions were still to copy",
                    s.regions - s.in_sync,
                    s.regions
                )),
                (_, None) => Err("the mirror was gone".into()),
                _ => match m.nbd.map(nbd_netlink::probe) {
                    Some(Err(e)) => Err(format!("the destination stopped answering: {e}")),
                    _ => Ok(()),
                },
            }
        }
        None => Err("the VDI's device was no mirror any more".into()),
    };
    teardown(&m)?;
    m.phase = match verdict {
        Ok(()) => Phase::Complete,
        Err(why) => Phase::Failed { why },
    };
    m.save()?;
    Ok(Some(m))
}

/// Ends a mirror whose destination failed, the VM's writes going on to the VDI alone.
pub(crate) fn give_up(m: &Mirror, why: String) -> Result<Mirror> {
    let _l = end_lock(m)?;
    let mut m = load(&m.sr, &m.vdi).unwrap_or_else(|| m.clone());
    if m.running() {
        // The connection first: writes stuck on a dead destination fail at once (the
        // VM's succeed on its own leg), so the swap back does not wait for them.
        if let Some(i) = m.nbd {
            nbd_netlink::disconnect(i)?;
        }
        teardown(&Mirror {
            nbd: None, // disconnected above
            ..m.clone()
        })?;
        m.phase = Phase::Failed { why };
        m.save()?;
    }
    Ok(m)
}

fn answer(m: &Mirror, s: Option<&Status>) -> Progress {
    let progress = match (s, m.to_copy) {
        (Some(s), n) if n > 0 => {
            let clean = m.regions - n;
            (s.in_sync.saturating_sub(clean) as f64 / n as f64).min(1.0)
        }
        _ => 1.0,
    };
    match &m.phase {
        Phase::Complete => Progress {
            failed: false,
            complete: true,
            progress: 1.0,
        },
        // xapi reads `complete` first: a failure is not complete.
        Phase::Failed { .. } => Progress {
            failed: true,
            complete: false,
            progress,
        },
        _ => Progress {
            failed: false,
            complete: false,
            progress,
        },
    }
}

/// `Data.stat`: where mirror `key` stands, after waiting up to a second for news. Complete
/// once every region is copied and the destination answers; failed once it does not,
/// and then the mirror is ended here (xapi never cancels one) without the VM noticing.
pub fn stat(key: &str) -> Result<Progress> {
    let (sr, vdi) = parse_key(key)?;
    let deadline = Instant::now() + STAT_PACE;
    loop {
        let m = load(&sr, &vdi)
            .ok_or_else(|| Error::InvalidArgument(format!("no mirror '{key}' on this host")))?;
        if !m.running() {
            return Ok(answer(&m, None));
        }
        let status = kernel_status(&m)?;
        let failure = match &status {
            None if m.phase == Phase::Running => {
                Some("the VDI's device is no mirror any more".to_string())
            }
            Some(s) if !s.leg_alive(1) => Some(format!(
                "the destination failed (leg health '{}')",
                s.health
            )),
            Some(s) if s.synced() => match m.nbd.map(nbd_netlink::probe) {
                Some(Err(e)) => Some(format!("the destination stopped answering: {e}")),
                _ => {
                    return Ok(Progress {
                        failed: false,
                        complete: true,
                        progress: 1.0,
                    })
                }
            },
            _ => None,
        };
        if let Some(why) = failure {
            return Ok(answer(&give_up(&m, why)?, status.as_ref()));
        }
        if Instant::now() >= deadline {
            return Ok(answer(&m, status.as_ref()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Forgets an ended mirror's record (the VDI detached).
pub fn forget(sr: &SrUuid, vdi: &VdiUuid) {
    if let Ok(f) = state_file(sr, vdi) {
        let _ = std::fs::remove_file(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_an_sr_and_a_vdi_and_nothing_else() {
        let (s, v) = parse_key("s-1/v_2").unwrap();
        assert_eq!((s.as_str(), v.as_str()), ("s-1", "v_2"));
        for bad in ["s", "s/", "/v", "s/../v", "../s/v", "s/v/w"] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn xapi_reads_complete_before_failed_so_a_failure_is_never_complete() {
        let mut m: Mirror = serde_json::from_value(serde_json::json!({
            "sr": "s", "vdi": "v", "remote": "r", "top": "t", "leg": "l", "length": 8,
            "target": "linear", "params": "1:2 0", "nbd": 1, "log": null,
            "region_bytes": 65536, "regions": 10, "to_copy": 4, "state": "running"
        }))
        .unwrap();
        let s = Status {
            in_sync: 8,
            regions: 10,
            health: "AA".into(),
        };
        assert_eq!(answer(&m, Some(&s)).progress, 0.5, "2 of the 4 to copy");
        m.phase = Phase::Failed { why: "x".into() };
        let a = answer(&m, Some(&s));
        assert!(a.failed && !a.complete);
        m.phase = Phase::Complete;
        assert!(answer(&m, None).complete);
    }
}
