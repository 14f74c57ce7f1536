//! Templates kept on the host, two ways:
//! - a copy-on-read cache: a thin LV holding a qcow2 overlay whose backing file is the
//!   template's image. Attached clones read the template through qemu's copy-on-read filter
//!   over it (datapath), so each block crosses the network once per host;
//! - a local copy (`template localize`, or `template warm` of a cached template): a thin LV
//!   holding the template's data as a raw disk, which clones read in the kernel, with no
//!   qemu process at all (attached clones are moved onto it live). It replaces the cache.
//!
//! VMs never write either (their writes go to their own thin volumes).

use std::path::Path;

use crate::engine::context::{tagged_thin_lvcreate, Ctx};
use crate::engine::datapath::local_key;
use crate::engine::meta::VdiMeta;
use crate::engine::template::{parse_uri, server_state, Source};
use crate::engine::vdi::{Found, Volume};
use crate::error::{Error, Result};
use crate::host::lvm::{dev_path, Vg, TAG_CACHE, TAG_LOCAL};
use crate::host::tool;
use crate::ids::{LvName, LvPath, SrUuid};
use crate::image::extent::align;
use crate::image::{Device, ReadAt, SparseWriter};
use crate::progress::Progress;
use crate::units::Bytes;
use crate::{cancel, crash};

/// How `template introduce` registers an image.
pub struct Introduce<'a> {
    /// Give it a copy-on-read cache.
    pub cache: bool,
    /// What an http(s) image's SHA-256 must be: it is then fetched whole and checked;
    /// without one it is read lazily.
    pub sha256: Option<&'a str>,
    /// A lazy template's bound on a clone's read waiting for the server.
    pub timeout: std::time::Duration,
    /// Fetch a lazy template whole at once, at this many bytes a second (0: unbounded).
    pub warm: Option<u64>,
    pub progress: &'a dyn Progress,
}

/// Room for qcow2's own tables beside the data: L2 tables take 1/8192 of the disk with
/// 64 KiB clusters, refcounts 1/32768; the rest is headers. Thin: unused room costs nothing.
pub fn overlay_size(virtual_size: u64) -> u64 {
    virtual_size + virtual_size / 4096 + (4 << 20)
}

/// What qemu opens as the overlay's backing file, or why this template cannot be cached.
fn backing(t: &VdiMeta) -> Result<(String, String)> {
    let image = t
        .image
        .as_ref()
        .ok_or_else(|| Error::NotATemplate(t.name.clone()))?;
    let file = match parse_uri(&image.uri)? {
        Source::File(p) => p.display().to_string(),
        Source::Nbd(u) => u,
        // Its path in the share's mount, which is the same at every attach.
        Source::Share(_) => String::new(),
        Source::Http(_) => {
            return Err(Error::InvalidArgument(format!(
                "template '{}' is read from the local copy fetched when it was introduced: it needs no cache",
                t.name
            )))
        }
        Source::Scheme(s) => {
            return Err(Error::InvalidArgument(format!(
                "template '{}' is served by the '{s}' script, whose device changes from one \
                 attach to the next: a cache needs an image qemu opens itself (file:// or nbd://)",
                t.name
            )))
        }
    };
    Ok((file, image.format.clone()))
}

fn refuse_if_attached(ctx: &Ctx, t: &VdiMeta) -> Result<()> {
    if crate::engine::datapath::is_attached(&t.uuid)
        || ctx.our_device(&local_key(&t.uuid)).is_some()
    {
        return Err(Error::TemplateInUse {
            template: t.name.clone(),
            users: vec!["attached: detach its clones (and the template) first".into()],
        });
    }
    Ok(())
}

impl Ctx {
    /// `template introduce`: registers an image after reading its format and size, and with
    /// `cache` gives it a copy-on-read cache (here, above the catalog in template.rs, which
    /// needs no cache).
    pub fn template_introduce(
        &self,
        uri: &str,
        sr: Option<&str>,
        name: Option<&str>,
        how: &Introduce,
    ) -> Result<Volume> {
        let mut t = self.introduce_any(uri, sr, name, how)?;
        self.after(crate::engine::hooks::Hook::PostTemplateIntroduce, &mut t)?;
        Ok(t)
    }

    /// `template introduce` without its hook.
    fn introduce_any(
        &self,
        uri: &str,
        sr: Option<&str>,
        name: Option<&str>,
        how: &Introduce,
    ) -> Result<Volume> {
        let cache = how.cache;
        let lazily = || {
            let lazy = crate::engine::lazy::LazyIntroduce {
                timeout: how.timeout,
                warm: how.warm,
                progress: how.progress,
            };
            self.introduce_lazy(uri, sr, name, &lazy)
        };
        // s3:// is read lazily by thinsr itself unless a scheme script replaces it.
        if uri.starts_with("s3://") && !self.has_script(uri) {
            if cache || how.sha256.is_some() {
                return Err(Error::InvalidArgument(
                    "an s3:// template is read lazily into a store of its own: it takes no --cache or --sha256".into(),
                ));
            }
            return lazily();
        }
        if matches!(parse_uri(uri)?, Source::Http(_)) && !self.has_script(uri) {
            if cache {
                return Err(Error::InvalidArgument(
                    "an http(s) template is fetched into a local copy: it needs no cache".into(),
                ));
            }
            if how.sha256.is_none() {
                return lazily();
            }
            return self.fetch_template(uri, sr, name, how.sha256, how.progress);
        }
        if how.warm.is_some() {
            return Err(Error::InvalidArgument(
                "--warm fetches an http(s):// template whole: 'thinsr template warm' warms a cached one".into(),
            ));
        }
        if how.sha256.is_some() {
            return Err(Error::InvalidArgument(
                "--sha256 checks a download: it is for http(s):// templates".into(),
            ));
        }
        if cache {
            if let Source::Scheme(s) = parse_uri(uri)? {
                return Err(Error::InvalidArgument(format!(
                    "'{s}' templates are served by a script whose device changes from one \
                     attach to the next: a cache needs an image qemu opens itself (file:// or nbd://)"
                )));
            }
        }
        let t = self.introduce_template(uri, sr, name)?;
        if !cache {
            return Ok(t);
        }
        self.template_cache(&t.uuid, Some(&t.sr), true)
            .map_err(|e| {
                e.undo("forgetting the template again", || {
                    self.forget_template_quietly(&t.uuid, Some(&t.sr))
                })
            })
    }

    /// `template cache TEMPLATE on|off`.
    pub fn template_cache(&self, key: &str, sr: Option<&str>, on: bool) -> Result<Volume> {
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let t = op.meta.vdi(uuid).cloned().expect("with_vdi found it");
            if !t.is_template() {
                return Err(Error::NotATemplate(t.name.clone()));
            }
            match (on, &t.cache) {
                (true, Some(_)) => {}
                // A local copy serves better than a cache could.
                (true, None) if t.local.is_some() => {}
                (false, None) if t.local.is_none() => {}
                (true, None) => {
                    // Clones attached now read the image directly: switching under them
                    // would serve one template two ways.
                    refuse_if_attached(ctx, &t)?;
                    let lv = ctx.make_cache(&op.entry.uuid, &op.entry.pool, vg, &t)?;
                    crash::point("cache.after-lvcreate");
                    op.meta.vdi_mut(uuid).expect("found").cache = Some(lv);
                    op.save()?;
                }
                (false, _) => {
                    // Off forgets the local copy too: the host then keeps nothing of it.
                    refuse_if_attached(ctx, &t)?;
                    // The entry first: a crash before the lvremove leaves an orphan copy
                    // that sr check removes, never an entry pointing at nothing.
                    let v = op.meta.vdi_mut(uuid).expect("found");
                    let lvs: Vec<LvName> =
                        v.cache.take().into_iter().chain(v.local.take()).collect();
                    op.save()?;
                    crash::point("cache.after-meta");
                    for lv in lvs {
                        ctx.remove_lv(&LvPath::new(&vg.name, &lv))?;
                    }
                }
            }
            let t = op.meta.vdi(uuid).cloned().expect("found");
            let vg = ctx.lvm.report_vg(&vg.name)?;
            let mapped = crate::host::thin::mapped_bytes(&vg.name, &op.entry.pool)
                .ok()
                .flatten();
            Ok(ctx.volume(&op.entry, &op.meta, &vg, &t, mapped.as_ref()))
        })
    }

    /// A new cache LV for `t`, its overlay written: returns the LV's name. Removed again
    /// if anything fails.
    fn make_cache(&self, sr: &SrUuid, pool: &LvName, vg: &Vg, t: &VdiMeta) -> Result<LvName> {
        let (backing, format) = backing(t)?;
        let lv = crate::engine::vdi::free_lv_name(vg, &format!("{} cache", t.name), None);
        let size = Bytes(overlay_size(t.size.0)).round_up(vg.extent_size.0);
        self.lvm.run(&tagged_thin_lvcreate(
            &vg.name, pool, &lv, size, sr, TAG_CACHE, &t.uuid,
        ))?;
        let path = dev_path(&vg.name, &lv);
        let name = LvPath::new(&vg.name, &lv);
        let create = |backing: &str| {
            tool::run(
                "qemu-img",
                &[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-o",
                    "cluster_size=65536",
                    "-b",
                    backing,
                    "-F",
                    &format,
                    &path,
                    &t.size.0.to_string(),
                ],
            )
        };
        let made = if backing.is_empty() {
            let uri = &t.image.as_ref().expect("templates have an image").uri;
            self.with_image(uri, create)
        } else {
            create(&backing)
        }
        .and_then(|_| self.set_active(&name, false));
        if let Err(e) = made {
            return Err(e.undo(&format!("removing the new cache LV {name}"), || {
                self.remove_lv(&name)
            }));
        }
        Ok(lv)
    }

    /// `template warm`: fetches the whole template now, through its cache, into a local
    /// copy that replaces the cache: no clone ever waits on the server again, and clones
    /// attached from then on read it in the kernel.
    pub fn template_warm(
        &self,
        key: &str,
        sr: Option<&str>,
        rate: u64,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        let (found, t) = self.find_template(key, sr)?;
        if t.lazy.is_some() {
            return self.warm_lazy(&found, t, rate, progress);
        }
        if t.cache.is_none() && t.local.is_none() {
            return Err(Error::InvalidArgument(format!(
                "template '{}' has no cache: 'thinsr template cache {} on' makes one, or \
                 'thinsr template localize {}' copies it to the host at once",
                t.name, t.uuid, t.uuid
            )));
        }
        self.localize(&found, t, progress)
    }

    /// `template localize`: copies the template's data into a new thin LV of the pool, as
    /// a raw disk its clones read in the kernel. The image is read through thinsr's own
    /// datapath (its cache, when it has one) and only where qemu's map says it holds data;
    /// zeros are not written. The SR stays usable meanwhile: its lock is held only to make
    /// the LV and to record it. Cancellable; a crash leaves a tagged LV no template names,
    /// which `sr check --repair` removes.
    pub fn template_localize(
        &self,
        key: &str,
        sr: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        let (found, t) = self.find_template(key, sr)?;
        self.localize(&found, t, progress)
    }

    fn localize(&self, found: &Found, t: VdiMeta, progress: &dyn Progress) -> Result<Volume> {
        let sr = &found.entry.uuid;
        if t.local.is_some() {
            // A warm of a lazy template stopped after the copy was recorded: its store is
            // cut to size and attached clones move now.
            if t.image.as_ref().is_some_and(|i| i.sha256.is_some()) {
                self.with_vdi(&t.uuid, Some(sr), |ctx, op, vg, uuid| {
                    let t = op.vdi(uuid)?.clone();
                    ctx.trim_store(&t, vg)?;
                    ctx.move_clones_to_local(&t, vg, &op.entry).map(drop)
                })?;
                if crate::engine::lazy::server::Endpoint::of(sr, &t.uuid).warm_died() {
                    self.end_warm_attachment(sr, &t.uuid)?;
                }
            }
            return self.show_template(found, &t, None);
        }
        cancel::watch();
        let (vg, lv) = self.with_vdi(&t.uuid, Some(sr), |ctx, op, vg, _| {
            let size = t.size.round_up(vg.extent_size.0.max(1));
            ctx.prepare_thin(&op.entry, &op.meta, vg, size)?;
            let lv = crate::engine::vdi::free_lv_name(vg, &format!("{} local", t.name), None);
            let pool = &op.entry.pool;
            ctx.lvm.run(&tagged_thin_lvcreate(
                &vg.name, pool, &lv, size, sr, TAG_LOCAL, &t.uuid,
            ))?;
            Ok((vg.name.clone(), lv))
        })?;
        crash::point("localize.after-lvcreate");
        let name = LvPath::new(&vg, &lv);
        let copied = self
            .copy_template(&t, sr, Path::new(&dev_path(&vg, &lv)), progress)
            .and_then(|allocated| self.set_active(&name, false).map(|_| allocated));
        progress.end();
        let allocated = match copied {
            Ok(a) => a,
            Err(e) => {
                return Err(
                    e.undo(&format!("removing the new local copy LV {name}"), || {
                        // Deactivating first is a courtesy: the removal is what must work.
                        self.set_active(&name, false).ok();
                        self.remove_lv(&name)
                    }),
                );
            }
        };
        crash::point("localize.after-copy");
        // Recorded last, then the attached clones move onto it. The cache goes unless
        // something still reads through it (the template attached on its own: then
        // 'template cache off' removes it later). A copy another command recorded
        // meanwhile wins, and ours goes.
        let unused = self.with_vdi(&t.uuid, Some(sr), |ctx, op, vg, uuid| {
            let v = op.vdi_mut(uuid)?;
            if v.local.is_some() {
                return Ok(Some(lv.clone()));
            }
            v.local = Some(lv.as_str().into());
            op.save()?;
            let t = op.vdi(uuid)?.clone();
            ctx.move_clones_to_local(&t, vg, &op.entry)?;
            if crate::engine::datapath::is_attached(uuid) {
                return Ok(None);
            }
            let cache = op.vdi_mut(uuid)?.cache.take();
            if cache.is_some() {
                op.save()?;
            }
            Ok(cache)
        })?;
        if let Some(c) = unused {
            crash::point("localize.after-meta");
            // After the entry: a crash between leaves an orphan copy sr check removes.
            self.remove_lv(&LvPath::new(&vg, &c))?;
        }
        // Read again: the metadata changed since `found`.
        let (found, t) = self.find_template(&t.uuid, Some(sr))?;
        self.show_template(&found, &t, Some(allocated))
    }

    /// `template show`: with the bytes its image holds (qemu's map), so a cache or local
    /// copy can say how much of it is on the host.
    pub fn template_show(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        let (found, t) = self.find_template(key, sr)?;
        self.show_template(&found, &t, None)
    }

    /// `template show` of template `t`, found as `found`; `allocated`, the bytes its image
    /// holds when the caller has read qemu's map already.
    pub(crate) fn show_template(
        &self,
        found: &Found,
        t: &VdiMeta,
        allocated: Option<u64>,
    ) -> Result<Volume> {
        let mut vol = self.show_found(found)?;
        let image = t.image.as_ref().expect("templates have an image");
        vol.server = server_state(&image.uri);
        vol.lazy = crate::engine::lazy::state_of(&found.entry.uuid, t);
        vol.sha256 = image.sha256.clone();
        let answers = vol.server.as_ref().is_none_or(|s| s.reachable);
        if vol.cached.is_some() && answers {
            // Best effort: a server that does not answer leaves the share unsaid.
            vol.image_allocated = allocated.or_else(|| {
                self.template_data(t, t.size.0)
                    .ok()
                    .map(|d| d.iter().map(|e| e.len).sum())
            });
        }
        Ok(vol)
    }

    /// Writes template `t`'s data to `dst` (a new thin LV, reading zeros): the template
    /// attached read-only through the datapath, read only where its image holds data.
    /// Returns the bytes its image holds, by qemu's map.
    fn copy_template(
        &self,
        t: &VdiMeta,
        sr: &str,
        dst: &Path,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let was_attached = self.our_device(&t.uuid).is_some();
        // Attached first, so that the map of an NBD template's image is not asked of its
        // server over a second connection (one client is qemu-nbd's default).
        let attached = self.attach_quietly(&t.uuid, Some(sr), true)?;
        let copied = (|| {
            let mapped = self.template_data(t, t.size.0)?;
            let allocated: u64 = mapped.iter().map(|e| e.len).sum();
            // Whole 64 KiB blocks: the pieces written, and aligned for O_DIRECT reads.
            let data = align(&mapped, 64 << 10, t.size.0);
            let mut src = Device::open(Path::new(&attached.path))?;
            let mut out = SparseWriter::open(dst)?;
            progress.begin(
                &format!("copying template {} to the host", t.name),
                t.size.0,
            );
            let mut buf = crate::aligned::AlignedBuf::zeroed(PIECE);
            for piece in crate::image::extent::pieces(&data, PIECE as u64) {
                let b = &mut buf.as_mut_slice()[..piece.len as usize];
                src.read_at(piece.start, b)?;
                out.put(piece.start, b, progress)?;
            }
            out.finish().map(|_| allocated)
        })();
        if !was_attached {
            self.detach_quietly(&t.uuid, Some(sr))?;
        }
        copied
    }
}

/// Pieces a template is copied in (aligned for O_DIRECT reads).
const PIECE: usize = 4 << 20;
