//! Who holds a share's mount: the record beside it, taken and dropped under one host-wide
//! lock; the last holder unmounts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use super::mounting::mount_share;
use super::{Share, MNT_DIR};
use crate::error::{Error, Result};
use crate::host::lock;
use crate::host::mount;
use crate::host::rundir;
use crate::units::clip;

/// Who holds a mount, and what keeps that holder alive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Holder {
    pub key: String,
    /// The process that took it; a holder with no `while_exists` lives as long as it does.
    pub pid: u32,
    /// A file (a template attachment's state) whose existence keeps the holder alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub while_exists: Option<PathBuf>,
}

impl Holder {
    /// This process, for as long as it runs (or until it releases).
    pub fn process() -> Holder {
        static N: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        Holder {
            key: format!("pid-{pid}-{}", N.fetch_add(1, Ordering::Relaxed)),
            pid,
            while_exists: None,
        }
    }

    /// `key` (a template attachment), alive while `state` exists or this process runs.
    pub fn while_exists(key: &str, state: &Path) -> Holder {
        Holder {
            key: key.to_string(),
            pid: std::process::id(),
            while_exists: Some(state.to_path_buf()),
        }
    }

    fn alive(&self) -> bool {
        self.while_exists.as_ref().is_some_and(|p| p.exists())
            || Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// The record beside a mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The export or share (`Share::place`).
    pub place: String,
    pub holders: Vec<Holder>,
}

fn mount_point(id: &str) -> PathBuf {
    Path::new(MNT_DIR).join(id)
}

fn record_path(id: &str) -> PathBuf {
    Path::new(MNT_DIR).join(format!("{id}.json"))
}

fn load(id: &str) -> Option<Record> {
    serde_json::from_str(&rundir::read(&record_path(id), 1 << 20)?).ok()
}

fn save(id: &str, r: &Record) -> Result<()> {
    let text = serde_json::to_vec(r).expect("records serialise");
    rundir::write(&record_path(id), &text)
}

fn mount_lock() -> Result<lock::Lock> {
    lock::acquire("mounts", "the template shares")
}

/// A mount of thinsr's, as `sr check` and `template show` see it.
#[derive(Debug, Clone)]
pub struct MountState {
    pub id: String,
    pub place: Option<String>,
    pub mounted: bool,
    pub holders: usize,
}

/// True when share `id` is mounted now.
pub fn is_mounted(id: &str) -> bool {
    mount::mounted(&mount_point(id)).is_some()
}

/// Every mount (or record) of thinsr's under /run/thinsr/mnt.
pub fn mounts() -> Vec<MountState> {
    let mut ids: Vec<String> = mount::mounted_under(Path::new(MNT_DIR))
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .collect();
    if let Ok(dir) = std::fs::read_dir(MNT_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                if rundir::safe_name(id) && !ids.iter().any(|i| i == id) {
                    ids.push(id.to_string());
                }
            }
        }
    }
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let r = load(&id);
            let live = r
                .as_ref()
                .map_or(0, |r| r.holders.iter().filter(|h| h.alive()).count());
            MountState {
                mounted: is_mounted(&id),
                place: r.map(|r| r.place),
                holders: live,
                id,
            }
        })
        .collect()
}

/// Mounts `share` unless mounted, records `holder`, and returns the image's path inside
/// the mount (which must not lead out of it).
pub fn acquire(share: &Share, holder: &Holder, config_dir: &Path) -> Result<PathBuf> {
    let id = share.id();
    let _l = mount_lock()?;
    let mut r = load(&id).unwrap_or(Record {
        place: share.place(),
        holders: Vec::new(),
    });
    r.holders.retain(|h| h.alive() && h.key != holder.key);
    r.holders.push(holder.clone());
    save(&id, &r)?;
    let at = mount_point(&id);
    let made = (|| {
        if mount::mounted(&at).is_none() {
            mount_share(share, &at, config_dir)?;
            crate::crash::point("share.after-mount");
        }
        image_in(share, &at)
    })();
    made.map_err(|e| {
        e.undo("dropping the share's holder again", || {
            release_locked(&id, &holder.key)
        })
    })
}

/// Drops `key` from the holders of mount `id`; the last one unmounts.
pub fn release(id: &str, key: &str) -> Result<()> {
    let _l = mount_lock()?;
    release_locked(id, key)
}

fn release_locked(id: &str, key: &str) -> Result<()> {
    let mut r = load(id).unwrap_or(Record {
        place: String::new(),
        holders: Vec::new(),
    });
    r.holders.retain(|h| h.alive() && h.key != key);
    if !r.holders.is_empty() {
        return save(id, &r);
    }
    let at = mount_point(id);
    if mount::mounted(&at).is_some() {
        mount::unmount(&at)?;
    }
    // The mount went first: a crash here leaves a record with no mount, settled next time.
    let _ = std::fs::remove_dir(&at);
    match std::fs::remove_file(record_path(id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
            format!("removing {}", record_path(id).display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// Unmounts mount `id` when no live holder is left (`sr check --repair`).
pub fn settle(id: &str) -> Result<()> {
    release(id, "")
}

/// The image's path inside the mount at `at`, resolved: a link on the server leading out
/// of the mount (to a file of this host's) is refused.
fn image_in(share: &Share, at: &Path) -> Result<PathBuf> {
    let path = at.join(&share.file);
    let real = std::fs::canonicalize(&path).map_err(|e| Error::ImageUnreadable {
        uri: clip(&format!("{}/{}", share.place(), share.file)),
        why: format!("{} on {}: {e}", share.file, share.server()),
    })?;
    if !real.starts_with(at) {
        return Err(Error::ImageUnreadable {
            uri: clip(&share.place()),
            why: format!(
                "{} leads out of the share (a link to {})",
                share.file,
                real.display()
            ),
        });
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_live_while_their_process_or_their_file_does() {
        assert!(Holder::process().alive());
        let gone = Holder {
            key: "t".into(),
            pid: u32::MAX - 1,
            while_exists: Some("/nonexistent/state".into()),
        };
        assert!(!gone.alive());
        let kept = Holder {
            while_exists: Some("/".into()),
            ..gone
        };
        assert!(kept.alive());
    }
}
