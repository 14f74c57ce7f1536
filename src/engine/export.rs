//! `thinsr export`: a VDI written as a raw, VHD or qcow2 image, reading only what holds
//! data. Which blocks hold data comes from the pool's metadata (`thin_dump`; with `--base`,
//! the difference of two block maps, `changes.rs`) and, for a template's clone, from the
//! template's own map (`qemu-img map`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::engine::context::Ctx;
use crate::engine::meta::{VdiKind, VdiMeta};
use crate::error::{finally, Error, Result};
use crate::host::thin;
use crate::ids::{LvName, SrUuid, VdiUuid, VgName};
use crate::image::block_map::Delta;
use crate::image::extent::{align, normalize, subtract, total, Extent};
use crate::image::stream::Out;
use crate::image::{qcow2, vhd, write_raw, Device, Feed, Format};
use crate::progress::Progress;
use crate::units::Bytes;
use crate::{cancel, crash};

/// Where an export goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// A new file (replaced only with `force`).
    File {
        path: PathBuf,
        force: bool,
    },
    Stdout,
}

#[derive(Debug, Clone)]
pub struct ExportOpts {
    pub format: Format,
    pub base: Option<String>,
    pub backing_name: Option<String>,
}

/// What an export did.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportReport {
    pub vdi: String,
    pub uuid: String,
    pub format: String,
    pub output: String,
    pub virtual_size: Bytes,
    /// Bytes read from the VDI: its data, never the whole disk.
    pub read: Bytes,
    /// Bytes of the image written.
    pub written: Bytes,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// True when the VDI was attached read-write and a temporary snapshot was exported.
    pub from_snapshot: bool,
    pub seconds: f64,
}

/// The device an export reads, and what to undo afterwards.
pub(crate) struct Readable {
    uuid: VdiUuid,
    pub path: PathBuf,
    thin_id: Option<u32>,
    /// With `--base`: what differs from it (`changes.rs`, the core `vdi changed-blocks`
    /// uses too).
    delta: Option<Delta>,
    vg: VgName,
    pool: LvName,
    pub size: u64,
    origin: Option<VdiMeta>,
    attached_here: Attached,
}

/// What the export attached itself, to undo.
enum Attached {
    Nothing,
    /// A read-only device of ours, by its dm name: removed without asking LVM anything.
    Ours(String),
    /// Activated by LVM: `vdi detach` deactivates it.
    Lvm,
}

enum Prepared {
    Ready(Box<Readable>),
    /// Attached read-write: export a snapshot instead.
    Live,
}

/// The output file while it is written: a hidden file beside it, renamed over it only
/// once the image is complete, so a failed, cancelled or crashed export never leaves a
/// partial image under the name (nor destroys the file --force would replace).
struct Partial {
    file: File,
    tmp: PathBuf,
    path: PathBuf,
}

impl Partial {
    fn create(path: &Path, force: bool) -> Result<Partial> {
        if path.exists() {
            if !force {
                return Err(Error::FileExists(path.display().to_string()));
            }
            if !path.metadata().map(|m| m.is_file()).unwrap_or(false) {
                return Err(Error::InvalidArgument(format!(
                    "{} is not a regular file: thinsr writes images to files or stdout",
                    path.display()
                )));
            }
        }
        let name = path
            .file_name()
            .ok_or_else(|| Error::InvalidArgument(format!("{} names no file", path.display())))?;
        let tmp = path.with_file_name(format!(
            ".{}.thinsr-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(tmp.display().to_string(), e))?;
        Ok(Partial {
            file,
            tmp,
            path: path.to_path_buf(),
        })
    }

    /// Puts the complete image in place.
    fn finish(self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| Error::io(self.path.display().to_string(), e))
    }

    fn discard(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Runs `f` on where `target` says a stream goes: stdout, or a file that appears under its
/// name only once `f` succeeded and the data is on disk.
pub(crate) fn write_to<T>(
    target: &Target,
    f: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    match target {
        Target::Stdout => f(&mut std::io::stdout().lock()),
        Target::File { path, force } => {
            let mut p = Partial::create(path, *force)?;
            let done = f(&mut p.file).and_then(|r| {
                p.file
                    .sync_all()
                    .map_err(|e| Error::io(path.display().to_string(), e))
                    .map(|_| r)
            });
            match done {
                Ok(r) => p.finish().map(|_| r),
                Err(e) => {
                    p.discard();
                    Err(e)
                }
            }
        }
    }
}

impl Ctx {
    /// `thinsr export`: writes the VDI (or what changed since `base`) as an image, reading
    /// only its data. A VDI attached read-write is exported from a temporary snapshot.
    pub fn export(
        &self,
        key: &str,
        sr: Option<&str>,
        opts: &ExportOpts,
        target: &Target,
        progress: &dyn Progress,
    ) -> Result<ExportReport> {
        let start = Instant::now();
        let (sr_uuid, v) = self.readable_vdi(key, sr)?;
        if opts.base.is_some() && opts.format != Format::Qcow2 {
            return Err(Error::Usage(
                "--base writes a qcow2 image (only qcow2 can fall through to a backing file)"
                    .into(),
            ));
        }
        let base = match &opts.base {
            None => None,
            Some(b) => Some(self.export_base(&v, b, &sr_uuid)?),
        };
        let mut opts = opts.clone();
        if let Some(b) = &base {
            opts.backing_name
                .get_or_insert_with(|| format!("{}.qcow2", b.lv));
        }
        let opts = &opts;
        if opts.format == Format::Vhd && v.size.0 > vhd::MAX_SIZE {
            return Err(Error::InvalidArgument(format!(
                "VDI '{}' is {}, beyond the 2040 GiB a VHD holds: export it as qcow2 or raw",
                v.name, v.size
            )));
        }
        if let Some(n) = &opts.backing_name {
            if n.len() > qcow2::MAX_BACKING_NAME || n.contains('\0') {
                return Err(Error::InvalidArgument(
                    "--backing-name is at most 1023 bytes, without NUL".into(),
                ));
            }
        }
        cancel::watch();
        let partial = match target {
            Target::File { path, force } => Some(Partial::create(path, *force)?),
            Target::Stdout => None,
        };
        let base_uuid = base.as_ref().map(|b| b.uuid.clone());
        let result = self.export_to(
            &v,
            &sr_uuid,
            base_uuid.as_deref(),
            opts,
            partial.as_ref().map(|p| &p.file),
            progress,
        );
        let result = match (result, partial) {
            (Ok(r), Some(p)) => p.finish().map(|_| r),
            (Err(e), Some(p)) => {
                p.discard();
                Err(e)
            }
            (r, None) => r,
        };
        let (read, written, from_snapshot) = result?;
        Ok(ExportReport {
            vdi: v.name.clone(),
            uuid: v.uuid.to_string(),
            format: opts.format.to_string(),
            output: match target {
                Target::File { path, .. } => path.display().to_string(),
                Target::Stdout => "-".into(),
            },
            virtual_size: v.size,
            read: Bytes(read),
            written: Bytes(written),
            base: base.map(|b| b.uuid.into()),
            from_snapshot,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The snapshot `key` a delta export of `v` is taken against.
    fn export_base(&self, v: &VdiMeta, key: &str, sr: &str) -> Result<VdiMeta> {
        let found = self.resolve(key, Some(sr))?;
        let b = found.vdi()?;
        let why = if b.uuid == v.uuid {
            Some("it is the VDI itself".to_string())
        } else if b.kind == VdiKind::Preallocated || v.kind == VdiKind::Preallocated {
            Some("a delta needs two thin VDIs; preallocated ones have no map".into())
        } else if b.is_template() {
            Some("it is a template".into())
        } else if b.origin != v.origin {
            Some("it does not read the same template".into())
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::InvalidArgument(format!(
                "'{}' cannot be the base of an export of '{}': {why}",
                b.name, v.name
            ))),
            None => Ok(b),
        }
    }

    /// The SR and entry of VDI `key`, when it has data to read: not a template, nothing
    /// pending, not data-destroyed.
    pub(crate) fn readable_vdi(&self, key: &str, sr: Option<&str>) -> Result<(SrUuid, VdiMeta)> {
        let found = self.resolve(key, sr)?;
        let v = found.vdi()?;
        if v.is_template() {
            return Err(Error::VdiIsTemplate(v.name.clone()));
        }
        crate::engine::vdi::refuse_pending(&v)?;
        Ok((found.entry.uuid, v))
    }

    /// Attaches what the export reads and exports it. Returns (read, written, from_snapshot).
    fn export_to(
        &self,
        v: &VdiMeta,
        sr: &str,
        base: Option<&str>,
        opts: &ExportOpts,
        file: Option<&File>,
        progress: &dyn Progress,
    ) -> Result<(u64, u64, bool)> {
        let ((read, written), from_snapshot) = self.with_readable(v, sr, base, |src, _| {
            let result = self.export_from(src, opts, file, progress);
            progress.end();
            result
        })?;
        Ok((read, written, from_snapshot))
    }

    /// Runs `f` on a device that reads `v` (what differs from `base` too, with one) and
    /// cannot change while it runs: a read-only device, or a temporary snapshot when `v`
    /// is attached read-write. Undoes the attachment (and removes the snapshot) whatever
    /// happens. `f` is told whether it reads a snapshot. Returns what `f` did, and whether
    /// a snapshot was read.
    pub(crate) fn with_readable<T>(
        &self,
        v: &VdiMeta,
        sr: &str,
        base: Option<&str>,
        f: impl FnOnce(&Readable, bool) -> Result<T>,
    ) -> Result<(T, bool)> {
        let (src, snapshot) = match self.export_source(&v.uuid, sr, base)? {
            Prepared::Ready(s) => (s, None),
            Prepared::Live if v.kind == VdiKind::Preallocated => {
                return Err(Error::VdiAttached {
                    vdi: v.name.clone(),
                    device: "attached read-write, and a preallocated VDI has no instant \
                             snapshot to export from: detach it, or attach it read-only"
                        .into(),
                })
            }
            Prepared::Live => {
                let label = format!("export of {}", &v.uuid[..8]);
                let snap = self.snapshot_quietly(&v.uuid, Some(sr), &label)?;
                crash::point("export.after-snapshot");
                match self.export_source(&snap.uuid, sr, base) {
                    Ok(Prepared::Ready(s)) => (s, Some(snap.uuid)),
                    other => {
                        let destroyed = self.destroy_quietly(&snap.uuid, Some(sr));
                        let what = format!("destroying the temporary snapshot {}", snap.name);
                        finally(other, &what, || destroyed)?;
                        return Err(Error::VdiAttached {
                            vdi: snap.name,
                            device: "its temporary snapshot is attached read-write".into(),
                        });
                    }
                }
            }
        };
        crash::point("export.after-attach");
        let result = f(&src, snapshot.is_some());
        let mut undo = match &src.attached_here {
            Attached::Nothing => Ok(()),
            Attached::Lvm => self.detach_quietly(&src.uuid, Some(sr)).map(drop),
            Attached::Ours(name) => self.release_reader(name, &src.uuid, sr, src.origin.as_ref()),
        };
        if let Some(s) = &snapshot {
            undo = undo.and(self.destroy_quietly(s, Some(sr)).map(drop));
        }
        let done = result?;
        undo?;
        Ok((done, snapshot.is_some()))
    }

    /// Makes VDI `uuid` readable without letting it change under the export: a read-only
    /// device of ours (or LVM's, preallocated), or the one it has when attached read-only.
    fn export_source(&self, uuid: &VdiUuid, sr: &str, base: Option<&str>) -> Result<Prepared> {
        self.with_vdi(uuid, Some(sr), |ctx, op, vg, uuid| {
            let v = op
                .meta
                .vdi(uuid)
                .cloned()
                .ok_or_else(|| Error::VdiNotFound(uuid.into()))?;
            let lv = vg.vdi_lv(uuid).ok_or_else(|| {
                Error::LvNotFound(format!("{}/{} (of VDI '{}')", vg.name, v.lv, v.name))
            })?;
            let writable_lv = matches!(lv.attr.as_bytes().get(1), Some(b'w'));
            let base = base.map(|b| op.vdi(b).cloned()).transpose()?;
            let delta = match (&base, v.kind) {
                (Some(b), k) if k != VdiKind::Preallocated => {
                    Some(ctx.between(op, vg, b, &v)?.delta)
                }
                _ => None,
            };
            let (path, attached_here) = match ctx.our_device(uuid) {
                Some(d) if !d.read_only => return Ok(Prepared::Live),
                Some(d) => (d.path(), Attached::Nothing),
                None if lv.active && writable_lv => return Ok(Prepared::Live),
                None if lv.active => (
                    PathBuf::from(crate::host::lvm::dev_path(&vg.name, &lv.name)),
                    Attached::Nothing,
                ),
                None => {
                    let path = ctx.attach_for_reading(op, vg, &v)?;
                    let ours = if v.kind == VdiKind::Preallocated {
                        Attached::Lvm
                    } else {
                        Attached::Ours(crate::host::dm::our_name(&vg.name, &lv.name, uuid))
                    };
                    (path, ours)
                }
            };
            let origin = v.origin.as_ref().and_then(|t| op.meta.vdi(t)).cloned();
            Ok(Prepared::Ready(Box::new(Readable {
                uuid: uuid.into(),
                path,
                thin_id: lv.thin_id.filter(|_| v.kind != VdiKind::Preallocated),
                delta,
                vg: vg.name.clone(),
                pool: op.entry.pool.clone(),
                size: lv.size.0,
                origin,
                attached_here,
            })))
        })
    }

    /// Removes the read-only device the export made (under the SR's lock, like a detach,
    /// but with no lvm report: LVM never knew of it) and the template's attachment with
    /// its last reader.
    fn release_reader(
        &self,
        name: &str,
        uuid: &VdiUuid,
        sr: &str,
        origin: Option<&VdiMeta>,
    ) -> Result<()> {
        let entry = self.entry(Some(sr))?;
        let _op = self.lock_sr(&entry)?;
        self.detach_reader(name, uuid, origin.map(|t| &t.uuid))
    }

    /// Where `src` holds data (the whole of it, or what differs from the base) and, with
    /// a base, which ranges it no longer holds, both aligned to `unit`: what an export or
    /// a replication stream reads and says is gone.
    pub(crate) fn layout(&self, src: &Readable, unit: u64) -> Result<(Vec<Extent>, Vec<Extent>)> {
        let size = src.size;
        let template = match &src.origin {
            Some(t) => self.template_data(t, size)?,
            None => vec![],
        };
        Ok(match (src.thin_id, &src.delta) {
            (None, _) => (vec![Extent::new(0, size)], vec![]),
            (Some(id), None) => {
                let maps = thin::block_maps(&src.vg, &src.pool, &[id])?.ok_or_else(|| {
                    Error::DmFailed(format!("the pool {}/{} is not active", src.vg, src.pool))
                })?;
                let mapped = maps.into_iter().flat_map(|m| m.extents()).collect();
                let all = normalize([mapped, template].concat());
                (align(&all, unit, size), vec![])
            }
            (Some(_), Some(d)) => {
                if src.origin.is_some() {
                    // Discarded blocks of a clone read its template again.
                    let changed = normalize([d.changed.clone(), d.removed.clone()].concat());
                    (align(&changed, unit, size), vec![])
                } else {
                    let data = align(&d.changed, unit, size);
                    let zero = subtract(&align(&d.removed, unit, size), &data);
                    (data, zero)
                }
            }
        })
    }

    /// Maps the source, then writes the image. Returns (bytes read, bytes written).
    fn export_from(
        &self,
        src: &Readable,
        opts: &ExportOpts,
        file: Option<&File>,
        progress: &dyn Progress,
    ) -> Result<(u64, u64)> {
        let size = src.size;
        let (data, zero) = self.layout(src, qcow2::CLUSTER)?;
        let mut reader = Device::open(&src.path)?;
        progress.begin(&format!("exporting {}", Bytes(size)), total(&data));
        let mut feed = Feed::new(&mut reader, progress);
        let stdout = std::io::stdout();
        let mut lock = stdout.lock();
        let mut out = match file {
            Some(f) => Out::file(f, "the output file"),
            None => Out::stream(&mut lock as &mut dyn Write, "stdout"),
        };
        match opts.format {
            Format::Raw => write_raw(size, &data, &mut feed, &mut out)?,
            Format::Vhd => {
                let id = *uuid::Uuid::new_v4().as_bytes();
                vhd::write(size, &data, &id, &mut feed, &mut out)?;
            }
            Format::Qcow2 => {
                let img = qcow2::Image {
                    size,
                    data: &data,
                    zero: &zero,
                    backing: opts.backing_name.as_deref(),
                };
                qcow2::write(&img, &mut feed, &mut out)?;
            }
        }
        let read = feed.read;
        let written = out.finish()?;
        if let Some(f) = file {
            f.sync_all().map_err(|e| Error::io("the output file", e))?;
        }
        Ok((read, written))
    }
}
