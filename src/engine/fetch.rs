//! Templates from `http://` and `https://` URIs: the image is fetched once into a local copy
//! (a thin LV of the pool, as `template localize` makes), which its clones then read in the
//! kernel; the server is never asked again. qemu-dp on dom0 reads no https itself.
//!
//! Steps, each recorded so that `template introduce URI` again resumes rather than starts
//! over: (1) a thin LV tagged as the template's local copy, then the template's entry
//! naming it with a `fetch` record (a crash between leaves an orphan copy `sr check`
//! removes); (2) the file's bytes written to the LV, zeros skipped, the LV synced and
//! `fetched` recorded every 256 MiB and when stopped (Ctrl-C, a dropped connection); a
//! resume asks for the rest of the same version of the file (If-Range), else starts again
//! on a fresh LV; (3) `--sha256` checked by reading the LV back; a mismatch removes the
//! entry and the LV; (4) an image format (qcow2, vhd, vmdk) converted into a second LV as
//! the raw copy, the download's LV removed after the entry names the new one; a raw file
//! is its own copy; (5) the `fetch` record dropped: the template is ready.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::engine::context::{tagged_thin_lvcreate, Ctx};
use crate::engine::meta::{Fetch, Image, VdiMeta};
use crate::engine::names;
use crate::engine::template::{check_url, default_name};
use crate::engine::vdi::{free_lv_name, Volume};
use crate::error::{Error, Result};
use crate::host::http;
use crate::host::lvm::{dev_path, TAG_LOCAL};
use crate::host::qemu::probe;
use crate::ids::{LvName, LvPath, SrUuid, VdiUuid, VgName};
use crate::image::SparseWriter;
use crate::progress::Progress;
use crate::units::{clip, Bytes};
use crate::{cancel, crash};

/// Progress is recorded (the LV synced first) at least this often.
const RECORD_EVERY: u64 = 256 << 20;
const PIECE: usize = 4 << 20;

/// Checks a `--sha256` value: 64 hex digits.
pub fn check_sha256(hex: &str) -> Result<String> {
    let h = hex.trim().to_ascii_lowercase();
    if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!(
            "'{}' is not a SHA-256 (64 hexadecimal digits)",
            clip(hex)
        )));
    }
    Ok(h)
}

struct Target {
    sr: SrUuid,
    vg: VgName,
    uuid: VdiUuid,
    lv: LvName,
    fetch: Fetch,
}

impl Ctx {
    /// `template introduce http(s)://...`: fetches the image into a local copy (or resumes
    /// a fetch an earlier run left), checks `sha256` when given, and registers it.
    pub(crate) fn fetch_template(
        &self,
        uri: &str,
        sr: Option<&str>,
        name: Option<&str>,
        sha256: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        check_url(uri)?;
        let sha256 = sha256.map(check_sha256).transpose()?;
        let label = name.map_or_else(|| default_name(uri), str::to_string);
        names::check_label(&label)?;
        cancel::watch();
        let (mut target, body) = self.fetch_target(uri, sr, &label)?;
        if target.fetch.fetched < target.fetch.length {
            self.download(uri, &mut target, body, progress)?;
        }
        progress.end();
        let path = dev_path(&target.vg, &target.lv);
        if let Some(want) = &sha256 {
            let got = sha256_of(Path::new(&path), target.fetch.length.0)?;
            if &got != want {
                let e = Error::ImageUnreadable {
                    uri: clip(uri),
                    why: format!("its SHA-256 is {got}, not the {want} given"),
                };
                return Err(e.undo("removing the download", || self.drop_fetch(&target)));
            }
        }
        let vol = self.finish_fetch(uri, &target, progress);
        progress.end();
        vol
    }

    /// The template entry and LV a fetch of `uri` writes to: an unfinished one of an
    /// earlier run, or new ones, with the response that sized them (read on from there).
    fn fetch_target(
        &self,
        uri: &str,
        sr: Option<&str>,
        label: &str,
    ) -> Result<(Target, Option<http::Body>)> {
        let entry = self.entry(sr)?;
        let earlier = |meta: &crate::engine::meta::SrMeta| -> Option<Result<Target>> {
            let t = meta
                .vdis
                .iter()
                .find(|v| v.image.as_ref().is_some_and(|i| i.uri == uri))?;
            Some(match (&t.fetch, &t.local) {
                (Some(f), Some(lv)) => Ok(Target {
                    sr: entry.uuid.clone(),
                    vg: entry.vg.clone(),
                    uuid: t.uuid.clone(),
                    lv: lv.clone(),
                    fetch: f.clone(),
                }),
                _ => Err(Error::TemplateExists {
                    uri: clip(uri),
                    name: t.name.clone(),
                }),
            })
        };
        if let Some(found) = earlier(&Self::read_meta(&entry)?) {
            return found.map(|t| (t, None));
        }
        // The file's length sizes the LV: asked (not under the SR's lock: a server may be
        // slow) before anything is made; the download reads on from this response.
        let body = http::get(uri, 0, None)?;
        let mut op = self.lock_sr(&entry)?;
        if let Some(found) = earlier(&op.meta) {
            return found.map(|t| (t, None));
        }
        let vg = self.lvm.report_vg(&entry.vg)?;
        let size = Bytes(body.length.max(512)).round_up(vg.extent_size.0.max(1));
        self.prepare_thin(&op.entry, &op.meta, &vg, size)?;
        let uuid = VdiUuid::random();
        let lv = self.copy_lv(&op.entry, &vg, &format!("{label} local"), size, &uuid)?;
        crash::point("fetch.after-lvcreate");
        let fetch = Fetch {
            length: Bytes(body.length),
            fetched: Bytes(0),
            validator: body.validator.clone(),
        };
        let t = VdiMeta {
            local: Some(lv.clone()),
            fetch: Some(fetch.clone()),
            ..VdiMeta::template(&uuid, label, uri, "raw", Bytes(body.length))
        };
        op.meta.vdis.push(t);
        op.save()?;
        let target = Target {
            sr: entry.uuid.clone(),
            vg: vg.name,
            uuid,
            lv,
            fetch,
        };
        Ok((target, Some(body)))
    }

    /// A new thin LV of `size` tagged as template `uuid`'s local copy, named after `label`.
    pub(crate) fn copy_lv(
        &self,
        entry: &crate::engine::registry::Entry,
        vg: &crate::host::lvm::Vg,
        label: &str,
        size: Bytes,
        uuid: &VdiUuid,
    ) -> Result<LvName> {
        let lv = free_lv_name(vg, label, None);
        self.lvm.run(&tagged_thin_lvcreate(
            &vg.name,
            &entry.pool,
            &lv,
            size,
            &entry.uuid,
            TAG_LOCAL,
            uuid,
        ))?;
        Ok(lv)
    }

    /// Writes the file from `target.fetch.fetched` on to the LV (reading `body` when the
    /// caller has the response already), recording progress.
    fn download(
        &self,
        uri: &str,
        target: &mut Target,
        body: Option<http::Body>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let from = target.fetch.fetched.0;
        let mut body = match body {
            Some(b) => b,
            None => http::get(uri, from, target.fetch.validator.as_deref())?,
        };
        let resumed = body.start == from
            && body.validator == target.fetch.validator
            && (from == 0 || body.validator.is_some());
        if !resumed {
            // Another version of the file (or a server that cannot resume): what the LV
            // holds is of no use, and bytes left in it must not show through the new
            // file's zeros. Start again on a fresh LV, from the first byte.
            if body.start != 0 {
                drop(body);
                body = http::get(uri, 0, None)?;
            }
            self.restart_fetch(target, &body)?;
        }
        let path = dev_path(&target.vg, &target.lv);
        let mut out = SparseWriter::open(Path::new(&path))?;
        progress.begin(&format!("downloading {}", clip(uri)), target.fetch.length.0);
        progress.set(body.start);
        let mut at = body.start;
        let mut recorded = at;
        let mut buf = vec![0u8; PIECE];
        let result = (|| -> Result<()> {
            while at < target.fetch.length.0 {
                if cancel::requested() {
                    return Err(Error::Cancelled);
                }
                let want = (target.fetch.length.0 - at).min(PIECE as u64) as usize;
                let n = read_full(&mut body.reader, &mut buf[..want]).map_err(|e| {
                    Error::ServerUnreachable {
                        server: http::server_of(uri),
                        why: format!("the download stopped at byte {at}: {e}"),
                    }
                })?;
                if n == 0 {
                    return Err(Error::ServerUnreachable {
                        server: http::server_of(uri),
                        why: format!(
                            "the connection ended at byte {at} of {}",
                            target.fetch.length.0
                        ),
                    });
                }
                out.put(at, &buf[..n], progress)?;
                at += n as u64;
                progress.set(at);
                if at - recorded >= RECORD_EVERY {
                    out.finish()?;
                    self.record_fetched(target, at)?;
                    recorded = at;
                }
            }
            Ok(())
        })();
        // Whatever stopped it, what was written is kept for the next run.
        let synced = out.finish();
        if synced.is_ok() && at > recorded {
            self.record_fetched(target, at)?;
        }
        result?;
        synced
    }

    /// Records that `at` bytes from the start are on the LV.
    fn record_fetched(&self, target: &mut Target, at: u64) -> Result<()> {
        target.fetch.fetched = Bytes(at);
        self.with_fetch(target, |f| f.fetched = Bytes(at))
    }

    fn with_fetch(&self, target: &Target, change: impl FnOnce(&mut Fetch)) -> Result<()> {
        let entry = self.entry(Some(target.sr.as_str()))?;
        let mut op = self.lock_sr(&entry)?;
        let f = op.vdi_mut(&target.uuid)?.fetch.as_mut().ok_or_else(|| {
            Error::InvalidArgument("the download was finished or dropped meanwhile".into())
        })?;
        change(f);
        op.save()
    }

    /// A fresh LV for a download that starts over (`body`, from byte 0).
    fn restart_fetch(&self, target: &mut Target, body: &http::Body) -> Result<()> {
        let entry = self.entry(Some(target.sr.as_str()))?;
        let old = target.lv.clone();
        let target_uuid = target.uuid.clone();
        let fetch = Fetch {
            length: Bytes(body.length),
            fetched: Bytes(0),
            validator: body.validator.clone(),
        };
        let new = self.with_vdi(
            target.uuid.as_str(),
            Some(target.sr.as_str()),
            |ctx, op, vg, uuid| {
                let size = Bytes(body.length.max(512)).round_up(vg.extent_size.0.max(1));
                let label = format!("{} local", op.vdi(uuid)?.name);
                let lv = ctx.copy_lv(&entry, vg, &label, size, &target_uuid)?;
                let v = op.vdi_mut(uuid)?;
                v.local = Some(lv.clone());
                v.size = Bytes(body.length);
                v.fetch = Some(fetch.clone());
                op.save()?;
                Ok(lv)
            },
        )?;
        // After the entry: a crash between leaves an orphan copy sr check removes.
        self.remove_lv(&LvPath::new(&target.vg, &old))?;
        target.lv = new;
        target.fetch = fetch;
        Ok(())
    }

    /// Removes a download's entry, then its LV.
    fn drop_fetch(&self, target: &Target) -> Result<()> {
        let entry = self.entry(Some(target.sr.as_str()))?;
        {
            let mut op = self.lock_sr(&entry)?;
            op.meta.vdis.retain(|v| v.uuid != target.uuid);
            op.save()?;
        }
        self.remove_lv(&LvPath::new(&target.vg, &target.lv))
    }

    /// Reads the downloaded image's format; converts an image format into a raw copy;
    /// records the template as ready.
    fn finish_fetch(&self, uri: &str, target: &Target, progress: &dyn Progress) -> Result<Volume> {
        let path = dev_path(&target.vg, &target.lv);
        let (format, size) = probe(&path, None)?;
        let mut local = target.lv.clone();
        let mut gone: Option<LvName> = None;
        if format != "raw" {
            let made = self.with_vdi(
                target.uuid.as_str(),
                Some(target.sr.as_str()),
                |ctx, op, vg, uuid| {
                    let rounded = size.round_up(vg.extent_size.0.max(1));
                    ctx.prepare_thin(&op.entry, &op.meta, vg, rounded)?;
                    let label = format!("{} copy", op.vdi(uuid)?.name);
                    ctx.copy_lv(&op.entry, vg, &label, rounded, &target.uuid)
                },
            )?;
            crash::point("fetch.after-convert-lvcreate");
            let converted = crate::engine::import::convert(
                &path,
                &format,
                &dev_path(&target.vg, &made),
                size,
                progress,
            );
            if let Err(e) = converted {
                return Err(e.undo("removing the conversion's LV", || {
                    self.remove_lv(&LvPath::new(&target.vg, &made))
                }));
            }
            gone = Some(std::mem::replace(&mut local, made));
        }
        let vol = self.with_vdi(
            target.uuid.as_str(),
            Some(target.sr.as_str()),
            |ctx, op, vg, uuid| {
                let v = op.vdi_mut(uuid)?;
                v.fetch = None;
                v.local = Some(local.clone());
                v.size = size;
                v.image = Some(Image::new(uri, &format));
                op.save()?;
                let t = op.vdi(uuid)?.clone();
                Ok(ctx.volume(&op.entry, &op.meta, vg, &t, None))
            },
        )?;
        for lv in [&local].into_iter().chain(gone.as_ref()) {
            self.set_active(&LvPath::new(&target.vg, lv), false)?;
        }
        if let Some(lv) = gone {
            // After the entry: a crash between leaves an orphan copy sr check removes.
            self.remove_lv(&LvPath::new(&target.vg, &lv))?;
        }
        Ok(vol)
    }
}

/// Reads until `buf` is full or the stream ends.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// SHA-256 of the first `len` bytes of `path`, as lowercase hex.
fn sha256_of(path: &Path, len: u64) -> Result<String> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("seeking", e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; PIECE];
    let mut left = len;
    while left > 0 {
        let want = left.min(PIECE as u64) as usize;
        f.read_exact(&mut buf[..want])
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        h.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_urls_are_checked() {
        assert!(check_url("https://cloud.debian.org/images/debian-12.qcow2").is_ok());
        assert!(check_url("http://10.0.0.1:8080/t.raw").is_ok());
        for bad in [
            "https://user:pw@host/x",
            "https:///x",
            "ftp://host/x",
            "https://host/a b",
            "https://host/x#frag",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        let ok = "A".repeat(64);
        assert_eq!(check_sha256(&ok).unwrap(), "a".repeat(64));
        assert!(check_sha256("abc").is_err());
        assert!(check_sha256(&"g".repeat(64)).is_err());
    }
}
