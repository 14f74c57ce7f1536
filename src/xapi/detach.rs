//! `Datapath.detach` never fails and never leaves work undone. xapi cannot do anything
//! with a failed detach but retry, and a detach that lost a race (the SR's lock held too
//! long, an lvm call refused) would leave the device active: the next `Volume.destroy` or
//! `SR.detach` would then fail. So a detach is retried, and what still fails is queued
//! under /run/thinsr and finished before the next call on that SR. An attach of the same
//! volume drops its queued detach: the volume is wanted again.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine::context::Ctx;
use crate::error::Error;

const QUEUE_DIR: &str = "/run/thinsr/detach-queue";
const TRIES: u32 = 3;

fn safe(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Where the detaches queued for `sr` are kept: one file per volume, holding the error.
fn queue_dir(sr: &str) -> Option<PathBuf> {
    safe(sr).then(|| PathBuf::from(QUEUE_DIR).join(sr))
}

fn queued(sr: &str, vdi: &str) -> Option<PathBuf> {
    queue_dir(sr).filter(|_| safe(vdi)).map(|d| d.join(vdi))
}

/// Detaches, retrying with a short pause; returns the last error when every try failed.
fn try_detach(ctx: &Ctx, sr: &str, vdi: &str, tries: u32) -> Option<Error> {
    let mut last = None;
    for attempt in 0..tries {
        match ctx.vdi_detach(vdi, Some(sr)) {
            // Gone already is detached.
            Ok(_) | Err(Error::VdiNotFound(_) | Error::SrNotFound(_)) => return None,
            // The admin's pre-vdi-detach hook decided: asked again at the next call.
            Err(e @ Error::HookRefused { .. }) => return Some(e),
            Err(e) => last = Some(e),
        }
        if attempt + 1 < tries {
            std::thread::sleep(Duration::from_millis(500 << attempt));
        }
    }
    last
}

/// `Datapath.detach`: succeeds whatever happens; what it could not do is queued.
pub fn detach(ctx: &Ctx, sr: &str, vdi: &str) {
    let Some(e) = try_detach(ctx, sr, vdi, TRIES) else {
        forget(sr, vdi);
        return;
    };
    if let Some(path) = queued(sr, vdi) {
        let _ = crate::host::rundir::write(&path, format!("{e}\n").as_bytes());
    }
}

/// The volume is attached again: a detach queued for it must not run.
pub fn forget(sr: &str, vdi: &str) {
    if let Some(path) = queued(sr, vdi) {
        let _ = std::fs::remove_file(path);
    }
}

/// Before a call on `sr`: finishes the detaches queued for it (one try each). Those that
/// still fail stay queued for the next call.
pub fn finish_queued(ctx: &Ctx, sr: &str) {
    let Some(dir) = queue_dir(sr) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let vdi = entry.file_name().to_string_lossy().into_owned();
        if try_detach(ctx, sr, &vdi, 1).is_none() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let _ = std::fs::remove_dir(&dir);
}
