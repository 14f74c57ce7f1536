//! The mirror for admins outside xapi: `vdi mirror` (a VDI, in use or not, copied to an
//! NBD export while it keeps running) and `vdi copy` (into another SR of this host, thin,
//! through the same path: the new VDI's own NBD export is the destination).

use serde::Serialize;

use super::{finish, stat, Phase};
use crate::cancel;
use crate::engine::context::Ctx;
use crate::engine::vdi::Volume;
use crate::error::{Error, Result};
use crate::ids::{SrUuid, VdiUuid};
use crate::progress::Progress;

/// What `vdi mirror` did.
#[derive(Debug, Serialize)]
pub struct Mirrored {
    pub vdi: VdiUuid,
    pub remote: String,
    /// Bytes the kernel copied (regions marked at the start); the VM's writes meanwhile
    /// went to both besides.
    pub copied: crate::units::Bytes,
    pub seconds: f64,
}

impl Ctx {
    /// `vdi mirror`: copies VDI `key` to `remote` while whatever uses it keeps writing (a
    /// detached VDI is attached for the while), and ends the mirror once the copy is in
    /// sync: the destination then holds the VDI as it was at that instant. Ctrl-C ends it
    /// at once, the VDI untouched.
    pub fn vdi_mirror(
        &self,
        key: &str,
        sr: Option<&str>,
        remote: &str,
        progress: &dyn Progress,
    ) -> Result<Mirrored> {
        cancel::watch();
        let found = self.resolve(key, sr)?;
        let (sr_id, uuid) = (found.entry.uuid.clone(), VdiUuid::from(found.uuid.as_str()));
        let ours = self.our_device(&uuid).is_none();
        if ours {
            self.attach_quietly(&uuid, Some(sr_id.as_str()), false)?;
        }
        let ran = self.mirror_until_synced(&sr_id, &uuid, remote, progress);
        if ours {
            let detached = self.detach_quietly(&uuid, Some(sr_id.as_str()));
            if let Err(e) = detached {
                return Err(match ran {
                    Ok(_) => e,
                    Err(first) => first.undo("detaching the VDI", || Err::<(), _>(e)),
                });
            }
        }
        ran
    }

    fn mirror_until_synced(
        &self,
        sr: &SrUuid,
        vdi: &VdiUuid,
        remote: &str,
        progress: &dyn Progress,
    ) -> Result<Mirrored> {
        let t = std::time::Instant::now();
        let m = self.mirror_start(vdi, Some(sr.as_str()), remote)?;
        let total = m.to_copy * m.region_bytes;
        progress.begin(&format!("mirroring {vdi} to {remote}"), total);
        let outcome = loop {
            if cancel::requested() {
                break Err(Error::Cancelled);
            }
            let p = stat(&m.key())?;
            progress.set((p.progress * total as f64) as u64);
            if p.failed || p.complete {
                break Ok(());
            }
        };
        let ended = finish(sr, vdi);
        progress.end();
        outcome?;
        match ended?.map(|m| m.phase) {
            Some(Phase::Complete) => Ok(Mirrored {
                vdi: vdi.clone(),
                remote: remote.to_string(),
                copied: crate::units::Bytes(total),
                seconds: t.elapsed().as_secs_f64(),
            }),
            Some(Phase::Failed { why }) => Err(Error::MirrorFailed {
                vdi: vdi.to_string(),
                why,
            }),
            _ => Err(Error::MirrorFailed {
                vdi: vdi.to_string(),
                why: "its record is gone".into(),
            }),
        }
    }

    /// `vdi copy`: a new thin VDI in SR `to` holding what VDI `key` holds (in use or not),
    /// sent through the mirror to the new VDI's own NBD export: only the data travels,
    /// and zeros the source holds become no data. On failure the new VDI is destroyed.
    pub fn vdi_copy(
        &self,
        key: &str,
        sr: Option<&str>,
        to: &str,
        name: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        let source = self.vdi_show(key, sr)?;
        let label = name.unwrap_or(&source.name);
        let silent = crate::progress::Silent;
        // No hook hears of the copy until it holds the data.
        let made = self.create(
            Some(to),
            label,
            source.virtual_size,
            &source.description,
            false,
            false,
            &silent,
        )?;
        let copied = self.copy_into(&source, &made, progress);
        match copied {
            Ok(()) => {
                let mut v = self.vdi_show(&made.uuid, Some(&made.sr))?;
                self.after(crate::engine::hooks::Hook::PostVdiCreate, &mut v)?;
                Ok(v)
            }
            Err(e) => Err(e.undo("destroying the half-made copy", || {
                self.detach_quietly(&made.uuid, Some(&made.sr))?;
                self.destroy_quietly(&made.uuid, Some(&made.sr)).map(drop)
            })),
        }
    }

    fn copy_into(&self, source: &Volume, made: &Volume, progress: &dyn Progress) -> Result<()> {
        let dest = self.attach_quietly(&made.uuid, Some(&made.sr), false)?;
        let sr = SrUuid::from(made.sr.as_str());
        let ep = self.datapath_export(&sr, &made.uuid, std::path::Path::new(&dest.path))?;
        let remote = format!("nbd+unix:///{}?socket={}", ep.export, ep.socket.display());
        let mirrored = self.vdi_mirror(&source.uuid, Some(&source.sr), &remote, progress);
        crate::engine::datapath_nbd::stop(&sr, &made.uuid);
        let detached = self.detach_quietly(&made.uuid, Some(&made.sr));
        mirrored?;
        detached.map(drop)
    }
}
