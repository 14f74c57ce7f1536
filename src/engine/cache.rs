//! Copy-on-read caches of templates: a thin LV per cached template holding a qcow2 overlay
//! whose backing file is the template's image. Attached clones read the template through
//! qemu's copy-on-read filter over it (datapath), so each block crosses the network once
//! per host; VMs never write the cache (their writes go to their own thin volumes).

use std::path::Path;

use crate::engine::context::{sr_tag, Ctx};
use crate::engine::meta::VdiMeta;
use crate::engine::template::{parse_uri, Source};
use crate::engine::vdi::Volume;
use crate::error::{Error, Result};
use crate::host::lvm::{dev_path, strings, tag_args, Vg, TAG_CACHE};
use crate::host::tool;
use crate::image::extent::Extent;
use crate::image::stream::Out;
use crate::image::{Device, Feed};
use crate::progress::Progress;
use crate::{cancel, crash};

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

fn refuse_if_attached(t: &VdiMeta) -> Result<()> {
    if crate::engine::datapath::is_attached(&t.uuid) {
        return Err(Error::TemplateInUse {
            template: t.name.clone(),
            users: vec!["attached: detach its clones (and the template) first".into()],
        });
    }
    Ok(())
}

impl Ctx {
    /// `template cache TEMPLATE on|off`.
    pub fn template_cache(&self, key: &str, sr: Option<&str>, on: bool) -> Result<Volume> {
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let t = op.meta.vdi(uuid).cloned().expect("with_vdi found it");
            if !t.is_template() {
                return Err(Error::NotATemplate(t.name.clone()));
            }
            match (on, &t.cache) {
                (true, Some(_)) | (false, None) => {}
                (true, None) => {
                    // Clones attached now read the image directly: switching under them
                    // would serve one template two ways.
                    refuse_if_attached(&t)?;
                    let lv = ctx.make_cache(&op.entry.uuid, &op.entry.pool, vg, &t)?;
                    crash::point("cache.after-lvcreate");
                    op.meta.vdi_mut(uuid).expect("found").cache = Some(lv);
                    op.save()?;
                }
                (false, Some(lv)) => {
                    refuse_if_attached(&t)?;
                    // The entry first: a crash before the lvremove leaves an orphan cache
                    // that sr check removes, never an entry pointing at nothing.
                    op.meta.vdi_mut(uuid).expect("found").cache = None;
                    op.save()?;
                    crash::point("cache.after-meta");
                    ctx.remove_lv(&format!("{}/{lv}", vg.name))?;
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
    fn make_cache(&self, sr: &str, pool: &str, vg: &Vg, t: &VdiMeta) -> Result<String> {
        let (backing, format) = backing(t)?;
        let lv = crate::engine::vdi::free_lv_name(vg, &format!("{} cache", t.name), None);
        let size = crate::units::Bytes(overlay_size(t.size.0)).round_up(vg.extent_size.0);
        let mut args = strings(&[
            "lvcreate",
            "-y",
            "-n",
            &lv,
            "--setactivationskip",
            "y",
            "-K",
        ]);
        args.extend(tag_args(&[sr_tag(sr), format!("{TAG_CACHE}{}", t.uuid)]));
        args.extend(["-V".into(), format!("{}b", size.0), "-T".into()]);
        args.push(format!("{}/{pool}", vg.name));
        self.lvm.run(&args)?;
        let path = dev_path(&vg.name, &lv);
        let name = format!("{}/{lv}", vg.name);
        let made = tool::run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                "cluster_size=65536",
                "-b",
                &backing,
                "-F",
                &format,
                &path,
                &t.size.0.to_string(),
            ],
        )
        .and_then(|_| self.set_active(&name, false));
        if let Err(e) = made {
            let _ = self.remove_lv(&name);
            return Err(e);
        }
        Ok(lv)
    }

    /// `template warm`: reads the whole template through its cache now, so no clone ever
    /// waits on the server. Cancellable; run again, it reads what is cached locally.
    pub fn template_warm(
        &self,
        key: &str,
        sr: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Volume> {
        // From the metadata and the kernel: no lvm report before the work.
        let found = self.resolve(key, sr)?;
        let t = found
            .meta
            .vdi(&found.uuid)
            .expect("resolve found it")
            .clone();
        if !t.is_template() {
            return Err(Error::NotATemplate(t.name));
        }
        if t.cache.is_none() {
            return Err(Error::InvalidArgument(format!(
                "template '{}' has no cache: 'thinsr template cache {} on' makes one",
                t.name, t.uuid
            )));
        }
        let sr = found.entry.uuid.as_str();
        let was_attached = self.our_device(&t.uuid).is_some();
        cancel::watch();
        let attached = self.vdi_attach(&t.uuid, Some(sr), true)?;
        let read = read_all(Path::new(&attached.path), t.size.0, &t.name, progress);
        progress.end();
        if !was_attached {
            self.vdi_detach(&t.uuid, Some(sr))?;
        }
        read?;
        self.template_show(&t.uuid, Some(sr))
    }
}

/// Reads all `size` bytes of `path` as an export does, the bytes going nowhere.
fn read_all(path: &Path, size: u64, name: &str, progress: &dyn Progress) -> Result<()> {
    let mut dev = Device::open(path)?;
    progress.begin(&format!("warming the cache of {name}"), size);
    let mut feed = Feed::new(&mut dev, progress);
    let mut nowhere = std::io::sink();
    let mut out = Out::stream(&mut nowhere, "nowhere");
    feed.copy(Extent::new(0, size), &mut out)
}
