//! Templates read lazily from web servers and object stores (http(s)://, s3://, the latter
//! signed by `host/s3.rs`): `template introduce URI` asks the server
//! only for the file's first bytes (its length, version and format) and returns; clones
//! attach at once and read the template through thinsr's lazy source (`server.rs`), which
//! fetches each piece the first time any clone reads it into the template's store
//! (`store.rs`, a thin LV of the pool) and answers from there. `template warm` fetches the
//! rest; once every piece is on the host the store is the template's local copy, attached
//! clones move onto it (a thin device in the kernel) and the lazy source ends.
//!
//! One version of the file, ever: its ETag (or Last-Modified) is pinned at introduce and
//! every range request is conditional on it. A file replaced on the server fails the
//! reads of pieces not on the host (EIO) and is named by `template show`; what is on the
//! host stays as it is.

mod device;
pub mod map;
pub mod server;
pub mod store;

use std::time::Duration;

use crate::engine::context::{sr_tag, Ctx};
use crate::engine::datapath::store_key;
use crate::engine::meta::{Lazy, VdiMeta};
use crate::engine::names;
use crate::engine::template::{check_url, default_name};
use crate::engine::vdi::{free_lv_name, Found, LazyState, Volume};
use crate::error::{Error, Result};
use crate::host::http::Ranged;
use crate::host::lvm::cmd::LvCreate;
use crate::host::lvm::{dev_path, TAG_LOCAL};
use crate::ids::{LvName, LvPath, SrUuid, VdiUuid};
use crate::image::be;
use crate::progress::Progress;
use crate::units::{clip, Bytes};
use crate::{cancel, crash};
use map::Layout;

/// What introduce reads of the file: enough for any format's header.
const HEAD: u64 = 64 << 10;
/// The piece when the SR's metadata does not know its pool's block.
const DEFAULT_PIECE: u64 = 64 << 10;

/// An image's format and virtual size from its first bytes (qemu's names). A fixed VHD
/// (its footer only at the end) reads as raw with the footer as its last sector.
pub fn sniff(head: &[u8], length: u64) -> (String, Bytes) {
    let le64 = |at: usize| {
        head.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    };
    if head.len() >= 32 && head.starts_with(b"QFI\xfb") {
        return ("qcow2".into(), Bytes(be::get64(head, 24)));
    }
    if head.starts_with(b"KDMV") {
        if let Some(sectors) = le64(12) {
            return ("vmdk".into(), Bytes(sectors * 512));
        }
    }
    if head.len() >= 56 && head.starts_with(b"conectix") {
        return ("vpc".into(), Bytes(be::get64(head, 48)));
    }
    ("raw".into(), Bytes(length))
}

/// How `template introduce` reads an http(s) file lazily.
pub struct LazyIntroduce<'a> {
    pub timeout: Duration,
    /// Fetch the rest at once, at this many bytes a second (0: unbounded).
    pub warm: Option<u64>,
    pub progress: &'a dyn Progress,
}

impl Ctx {
    /// `template introduce http(s)://...` without `--sha256`: registers the file to be read
    /// lazily, making its store LV (inactive) and its entry. One request to the server.
    pub(crate) fn introduce_lazy(
        &self,
        uri: &str,
        sr: Option<&str>,
        name: Option<&str>,
        how: &LazyIntroduce,
    ) -> Result<Volume> {
        if uri.starts_with("s3://") {
            crate::host::s3::parse(uri)?;
        } else {
            check_url(uri)?;
        }
        let label = name.map_or_else(|| default_name(uri), str::to_string);
        names::check_label(&label)?;
        if how.timeout.is_zero() || how.timeout > Duration::from_secs(3600) {
            return Err(Error::InvalidArgument(
                "--timeout is between 1 and 3600 seconds".into(),
            ));
        }
        let entry = self.entry(sr)?;
        let exists = |meta: &crate::engine::meta::SrMeta| {
            meta.vdis
                .iter()
                .find(|v| v.image.as_ref().is_some_and(|i| i.uri == uri))
                .map(|t| Error::TemplateExists {
                    uri: clip(uri),
                    name: t.name.clone(),
                })
        };
        if let Some(e) = exists(&Self::read_meta(&entry)?) {
            return Err(e);
        }
        // Not under the SR's lock: a server may be slow.
        let probe = Ranged::probe(uri, &self.config_dir(), HEAD, how.timeout)?;
        let (format, size) = sniff(&probe.head, probe.length);
        if size.0 == 0 {
            return Err(Error::ImageUnreadable {
                uri: clip(uri),
                why: "the image is empty".into(),
            });
        }
        let uuid = VdiUuid::random();
        let vol = {
            let mut op = self.lock_sr(&entry)?;
            if let Some(e) = exists(&op.meta) {
                return Err(e);
            }
            let vg = self.lvm.report_vg(&entry.vg)?;
            let piece = op
                .meta
                .geometry
                .as_ref()
                .map_or(DEFAULT_PIECE, |g| g.chunk.0)
                .max(4096);
            let layout = Layout {
                length: probe.length,
                piece,
            };
            let lv_size = Bytes(layout.store_size()).round_up(vg.extent_size.0.max(1));
            self.prepare_thin(&op.entry, &op.meta, &vg, lv_size)?;
            let lv = free_lv_name(&vg, &format!("{label} local"), None);
            let tags = [sr_tag(&entry.uuid), format!("{TAG_LOCAL}{uuid}")];
            self.lvm
                .run(&LvCreate::new(&lv, &tags).thin(&vg.name, &entry.pool, lv_size))?;
            crash::point("lazy.after-lvcreate");
            let t = VdiMeta {
                lazy: Some(Lazy {
                    lv,
                    length: Bytes(probe.length),
                    version: probe.pinned.to_record(),
                    piece: Bytes(piece),
                    timeout_s: how.timeout.as_secs(),
                }),
                ..VdiMeta::template(&uuid, &label, uri, &format, size)
            };
            op.meta.vdis.push(t.clone());
            op.save()?;
            let vg = self.lvm.report_vg(&entry.vg)?;
            self.volume(&entry, &op.meta, &vg, &t, None)
        };
        match how.warm {
            None => Ok(vol),
            Some(rate) => {
                let (found, t) = self.find_template(&uuid, Some(&entry.uuid))?;
                self.warm_lazy(&found, t, rate, how.progress)
            }
        }
    }

    /// `template warm` of a lazy template: the rest fetched through its lazy source (the
    /// template attached on its own for the while), then the store recorded as its local
    /// copy, attached clones moved onto it, and the source ended.
    pub(crate) fn warm_lazy(
        &self,
        found: &Found,
        t: VdiMeta,
        rate: u64,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        let sr = found.entry.uuid.clone();
        let lazy = t.lazy.clone().expect("a lazy template");
        cancel::watch();
        let ep = server::Endpoint::of(&sr, &t.uuid);
        // Attached by an earlier warm that died: this one ends that attachment.
        let was_attached = self.our_device(&t.uuid).is_some() && !ep.warm_died();
        if !was_attached {
            crate::host::rundir::private_dir(ep.warming.parent().expect("in a directory"))?;
            crate::host::rundir::write(&ep.warming, std::process::id().to_string().as_bytes())?;
        }
        self.attach_quietly(&t.uuid, Some(&sr), true)?;
        progress.begin(
            &format!("fetching template {} to the host", t.name),
            lazy.length.0,
        );
        let piece = lazy.piece.0;
        let warmed = server::warm(&sr, &t.uuid, rate, &mut |present, _| {
            progress.set((present * piece).min(lazy.length.0))
        });
        progress.end();
        let sha256 = match warmed {
            Ok(s) => s,
            Err(e) => {
                if !was_attached {
                    self.end_warm_attachment(&sr, &t.uuid).ok();
                }
                return Err(e);
            }
        };
        crash::point("lazy.warmed");
        let format = t.image.as_ref().map_or("raw", |i| i.format.as_str());
        let local = match format {
            // The store holds the image's bytes where its clones read them.
            "raw" => Ok(lazy.lv.clone()),
            // The store holds the file: its image is converted into a raw copy.
            _ => self.convert_store(found, &t, format, progress),
        };
        let local = match local {
            Ok(l) => l,
            Err(e) => {
                if !was_attached {
                    self.end_warm_attachment(&sr, &t.uuid).ok();
                }
                return Err(e);
            }
        };
        self.with_vdi(&t.uuid, Some(&sr), |ctx, op, vg, uuid| {
            let v = op.vdi_mut(uuid)?;
            if v.lazy.as_ref() != Some(&lazy) {
                return Ok(());
            }
            v.local = Some(local.clone());
            v.lazy = None;
            if let Some(i) = v.image.as_mut() {
                i.sha256 = Some(sha256.clone());
            }
            op.save()?;
            crash::point("lazy.recorded");
            let t = op.vdi(uuid)?.clone();
            ctx.trim_store(&t, vg)?;
            ctx.move_clones_to_local(&t, vg, &op.entry).map(drop)
        })?;
        if !was_attached {
            self.end_warm_attachment(&sr, &t.uuid)?;
        }
        if local != lazy.lv {
            // After the entry: a crash between leaves an orphan copy sr check removes.
            self.remove_lv(&LvPath::new(&found.entry.vg, &lazy.lv))?;
        }
        let (found, t) = self.find_template(&t.uuid, Some(&sr))?;
        let mut vol = self.show_found(&found)?;
        vol.sha256 = t.image.and_then(|i| i.sha256);
        Ok(vol)
    }

    /// Detaches the template a warm attached for its while, and drops the warm's mark.
    pub(crate) fn end_warm_attachment(&self, sr: &SrUuid, template: &VdiUuid) -> Result<()> {
        self.detach_quietly(template, Some(sr))?;
        std::fs::remove_file(server::Endpoint::of(sr, template).warming).ok();
        Ok(())
    }

    /// A raw lazy template's store become its local copy is cut to the template's size:
    /// its map (past the image) is of no use now, and a clone of the copy, a thin snapshot
    /// as long as the LV, must not read it. A warm interrupted before this does it again.
    pub(crate) fn trim_store(&self, t: &VdiMeta, vg: &crate::host::lvm::Vg) -> Result<()> {
        let Some(lv) = t.local.as_deref().and_then(|l| vg.lv(l)) else {
            return Ok(());
        };
        let want = t.size.round_up(vg.extent_size.0.max(1));
        if lv.size > want {
            let path = LvPath::new(&vg.name, &lv.name);
            self.lvm
                .run(&crate::host::lvm::cmd::resize(&path, want, true))?;
        }
        Ok(())
    }

    /// A raw copy of a lazy qcow2, vhd or vmdk template, converted from its complete store
    /// (attached): a new LV tagged as its local copy, removed again if the conversion fails.
    fn convert_store(
        &self,
        found: &Found,
        t: &VdiMeta,
        format: &str,
        progress: &dyn Progress,
    ) -> Result<LvName> {
        let store = self
            .our_device(&store_key(&t.uuid))
            .ok_or_else(|| Error::VdiIncomplete {
                vdi: t.name.clone(),
                why: "its store's device went away during the warm".into(),
            })?
            .path();
        let made = self.with_vdi(&t.uuid, Some(&found.entry.uuid), |ctx, op, vg, uuid| {
            let rounded = t.size.round_up(vg.extent_size.0.max(1));
            ctx.prepare_thin(&op.entry, &op.meta, vg, rounded)?;
            let label = format!("{} copy", op.vdi(uuid)?.name);
            ctx.copy_lv(&op.entry, vg, &label, rounded, &t.uuid)
        })?;
        crash::point("lazy.after-convert-lvcreate");
        let name = LvPath::new(&found.entry.vg, &made);
        let converted = crate::engine::import::convert(
            &store.display().to_string(),
            format,
            &dev_path(&found.entry.vg, &made),
            t.size,
            progress,
        )
        .and_then(|_| self.set_active(&name, false));
        match converted {
            Ok(()) => Ok(made),
            Err(e) => Err(e.undo("removing the conversion's LV", || self.remove_lv(&name))),
        }
    }
}

/// What `template show` says of lazy template `t` (its SR `sr`).
pub(crate) fn state_of(sr: &crate::ids::SrUuid, t: &VdiMeta) -> Option<LazyState> {
    let lazy = t.lazy.as_ref()?;
    let status = server::Endpoint::of(sr, &t.uuid).last_status();
    let piece = lazy.piece.0;
    Some(LazyState {
        version: lazy.version.clone(),
        length: lazy.length,
        on_host: status
            .as_ref()
            .map(|s| Bytes((s.counts.present * piece).min(lazy.length.0))),
        fetched: status.as_ref().map(|s| Bytes(s.counts.fetched)),
        source_changed: status.as_ref().is_some_and(|s| s.changed),
        error: status.and_then(|s| s.error),
        timeout_s: lazy.timeout_s,
        verified: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        let mut q = vec![0u8; 512];
        q[..4].copy_from_slice(b"QFI\xfb");
        q[24..32].copy_from_slice(&(10u64 << 30).to_be_bytes());
        assert_eq!(sniff(&q, 1 << 20), ("qcow2".into(), Bytes(10 << 30)));
        let mut v = vec![0u8; 512];
        v[..4].copy_from_slice(b"KDMV");
        v[12..20].copy_from_slice(&(2048u64).to_le_bytes());
        assert_eq!(sniff(&v, 1 << 20), ("vmdk".into(), Bytes(1 << 20)));
        let mut h = vec![0u8; 512];
        h[..8].copy_from_slice(b"conectix");
        h[48..56].copy_from_slice(&(4u64 << 30).to_be_bytes());
        assert_eq!(sniff(&h, 1 << 20), ("vpc".into(), Bytes(4 << 30)));
        assert_eq!(sniff(&[0u8; 512], 12345), ("raw".into(), Bytes(12345)));
        assert_eq!(
            sniff(b"QFI", 3),
            ("raw".into(), Bytes(3)),
            "too short for a header"
        );
    }
}
