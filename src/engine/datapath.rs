//! The datapath: the block device a VM gets for a VDI, and the template images behind them.
//!
//! A VDI without a template is its LV, activated by LVM. A VDI reading a template (its
//! `origin`) cannot be: LVM's external origins must be LVs of the same VG. So thinsr serves
//! the template read-only as a block device and loads a `thin` table of its own naming that
//! device as the external origin, under the VDI's LVM thin id. LVM keeps the LV inactive
//! meanwhile (the activation-skip flag).
//!
//! The device is the kernel's own wherever it can be, so a clone's reads never leave it: a
//! raw image file is a read-only loop device with direct I/O, a raw block device (from a
//! scheme script) is used as it is. Only images the kernel cannot read (qcow2, vhd, vmdk,
//! NBD exports, a template read through its copy-on-read cache) are served by qemu-nbd.
//!
//! One template attachment serves every attached clone of the template. Who uses it is
//! read from the kernel (the tables of thinsr's devices), not counted in a file that could
//! drift; the state file under /run only says which device serves which template.
//!
//! A template with a local copy (`template localize`, or a warmed cache) is served from it:
//! a read-only thin device of ours over the copy's thin id, which needs no state file (the
//! kernel's table names it) and no lvm call.
//!
//! Order: the state file names the NBD or loop device before it is connected, so a crash at
//! any step leaves something `detach` (or the next attach) recognises and cleans.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crash;
use crate::engine::context::Ctx;
use crate::engine::lazy::map::Layout;
use crate::engine::lazy::server as lazy_server;
use crate::engine::meta::{Lazy, VdiMeta};
use crate::engine::registry::Entry;
use crate::engine::share::holders::{self as share, Holder};
use crate::engine::template::{parse_uri, run_scheme, Opened, Source};
use crate::error::{Error, Result};
use crate::host::dm::{self, OurDevice};
use crate::host::lock;
use crate::host::loopdev;
use crate::host::lvm::Vg;
use crate::host::nbd;
use crate::host::probe::is_block_device;
use crate::host::qemu::qemu_img_json;
use crate::host::rundir;
use crate::ids::{LvPath, SrUuid, VdiUuid};
use crate::image::extent::Extent;
use crate::image::{data_of, MapEntry};

const STATE_DIR: &str = "/run/thinsr/origins";
/// Serialises NBD device allocation and template attach/release across SRs.
const LOCK: &str = "datapath";

/// How a template is attached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginState {
    pub template: String,
    pub uri: String,
    /// The read-only block device serving the image.
    pub device: PathBuf,
    /// True when `device` is an NBD device thinsr connected with qemu-nbd.
    pub nbd: bool,
    /// qemu-nbd's pid, once connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The scheme whose script attached the image (to be told `detach`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The template's cache LV (`vg/lv`) the server reads and fills, activated for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// The share mount (its id under /run/thinsr/mnt) this attachment holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// The raw image file (canonical path) when `device` is a loop device thinsr attached
    /// over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_file: Option<PathBuf>,
    /// The SR whose lazy source (`engine/lazy/server.rs`) serves the image: the NBD
    /// device's own server for a raw image, qemu-nbd's for the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy: Option<SrUuid>,
}

/// The key a template's attachment holds its share's mount by.
fn holder_key(template: &str) -> String {
    format!("template-{template}")
}

fn state_path(template: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("{template}.yaml"))
}

fn load_state(template: &str) -> Option<OriginState> {
    let text = rundir::read(&state_path(template), 64 << 10)?;
    serde_yaml::from_str(&text).ok()
}

fn save_state(s: &OriginState) -> Result<()> {
    let text = serde_yaml::to_string(s)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode attach state: {e}")))?;
    rundir::write(&state_path(&s.template), text.as_bytes())
}

impl OriginState {
    fn is_live(&self) -> bool {
        if let Some(sr) = &self.lazy {
            let template = VdiUuid::from(self.template.as_str());
            if lazy_server::Endpoint::of(sr, &template).server().is_none() {
                return false;
            }
        }
        if let Some(file) = &self.loop_file {
            return self.loop_attached(file);
        }
        match (self.nbd, self.pid) {
            (true, Some(pid)) => nbd::is_alive(&self.device, pid),
            (true, None) => false,
            (false, _) => is_block_device(&self.device),
        }
    }

    /// True when our loop device still reads `file` (and not something attached since).
    fn loop_attached(&self, file: &Path) -> bool {
        loopdev::backing_file(&self.device).as_deref() == Some(file)
    }
}

/// The loop devices attached over template images that no attachment of thinsr's names
/// (left by a lost state file): `(device, file)`.
pub(crate) fn stray_loops(templates: &[&VdiMeta]) -> Vec<(PathBuf, PathBuf)> {
    let files: Vec<PathBuf> = templates
        .iter()
        .filter_map(|t| t.image.as_ref())
        .filter(|i| i.format == "raw")
        .filter_map(|i| match parse_uri(&i.uri) {
            Ok(Source::File(p)) => std::fs::canonicalize(p).ok(),
            _ => None,
        })
        .collect();
    let named: Vec<PathBuf> = templates
        .iter()
        .filter_map(|t| load_state(&t.uuid))
        .filter(|s| s.loop_file.is_some())
        .map(|s| s.device)
        .collect();
    loopdev::attached()
        .into_iter()
        .filter(|(dev, file)| files.contains(file) && !named.contains(dev))
        .collect()
}

impl Ctx {
    /// Data ranges of template `t` (of a clone of `size` bytes), from qemu's map of its
    /// image; the whole template where qemu cannot tell (a scheme's device), and for an NBD
    /// export while thinsr's own server holds a connection to it: an NBD server often
    /// takes one client, and a second would wait on the first.
    pub(crate) fn template_data(&self, t: &VdiMeta, size: u64) -> Result<Vec<Extent>> {
        let image = t.image.as_ref().expect("templates have an image");
        let whole = vec![Extent::new(0, t.size.0.min(size))];
        let map = |path: &str| -> Result<Vec<Extent>> {
            let map: Vec<MapEntry> = qemu_img_json(
                "map",
                &["--output=json", "-f", &image.format, "--", path],
                &image.uri,
            )?;
            Ok(data_of(map))
        };
        match parse_uri(&image.uri)? {
            Source::File(p) => map(&p.to_string_lossy()),
            Source::Nbd(_) if is_attached(&t.uuid) => Ok(whole),
            Source::Nbd(u) => map(&u),
            Source::Share(_) => self.with_image(&image.uri, map),
            Source::Scheme(_) | Source::Http(_) => Ok(whole),
        }
    }
}

/// True while template `uuid` has an attachment (live or not yet cleared).
pub(crate) fn is_attached(template: &str) -> bool {
    load_state(template).is_some()
}

/// How many devices of ours read `device` (a template's origin) through their tables.
pub(crate) fn readers(device: &Path, devices: &[OurDevice]) -> usize {
    match dm::devno(device) {
        Ok(devno) => devices
            .iter()
            .filter(|d| d.origin.as_deref() == Some(devno.as_str()))
            .count(),
        Err(_) => 0,
    }
}

/// When template `uuid` has an attachment whose server is gone: how many of `devices`
/// still read it.
pub(crate) fn dead_origin(template: &str, devices: &[OurDevice]) -> Option<usize> {
    let s = load_state(template).filter(|s| !s.is_live())?;
    Some(readers(&s.device, devices))
}

/// What the device of ours serving template `uuid`'s local copy carries as its VDI (in its
/// dm uuid): the template's own uuid is taken by the template attached on its own.
pub(crate) fn local_key(template: &str) -> String {
    format!("local-{template}")
}

/// What the device of ours over a lazy template's store carries as its VDI: the lazy
/// source writes it (the local copy, once complete, is a device of its own).
pub(crate) fn store_key(template: &str) -> String {
    format!("store-{template}")
}

impl Ctx {
    /// The template's image as a read-only block device, attaching it if no live
    /// attachment exists. Returns its `major:minor`.
    pub(crate) fn attach_origin(&self, t: &VdiMeta, vg: &Vg, entry: &Entry) -> Result<String> {
        let image = t.image.as_ref().ok_or_else(|| Error::VdiIncomplete {
            vdi: t.name.clone(),
            why: "the template records no image".into(),
        })?;
        let _l = lock::acquire(LOCK, "the datapath")?;
        if let Some(local) = &t.local {
            return self.serve_local(t, vg, entry, local);
        }
        if let Some(s) = load_state(&t.uuid) {
            if s.is_live() {
                return dm::devno(&s.device);
            }
            // A dead server or a half-made attachment: clear it and start again.
            self.release(&s)?;
        }
        if let Some(lazy) = &t.lazy {
            return self.serve_lazy(t, &image.format, lazy, vg, entry);
        }
        let mut state = OriginState {
            template: t.uuid.to_string(),
            uri: image.uri.clone(),
            device: PathBuf::new(),
            nbd: false,
            pid: None,
            scheme: None,
            cache: None,
            mount: None,
            loop_file: None,
            lazy: None,
        };
        // A share's mount is held for as long as this attachment's state exists.
        let holder = Holder::while_exists(&holder_key(&t.uuid), &state_path(&t.uuid));
        let remember = |state: &mut OriginState, opened: Opened| match opened {
            Opened::Script(s) => state.scheme = Some(s),
            Opened::Share { id, .. } => state.mount = Some(id),
            Opened::Nothing => {}
        };
        if let Some(cache) = &t.cache {
            // Served through its cache LV: qemu reads the image (the overlay's backing
            // file) only where the cache has nothing yet.
            let lv = vg.lv(cache).ok_or_else(|| Error::VdiIncomplete {
                vdi: t.name.clone(),
                why: format!(
                    "its cache LV {}/{cache} is missing: 'thinsr template cache {} off' forgets it",
                    vg.name, t.uuid
                ),
            })?;
            let name = LvPath::new(&vg.name, &lv.name);
            let path = PathBuf::from(crate::host::lvm::dev_path(&vg.name, &lv.name));
            state.cache = Some(name.to_string());
            if matches!(parse_uri(&image.uri)?, Source::Share(_)) && !self.has_script(&image.uri) {
                // The overlay's backing file is the image's path in the share's mount.
                let (_, opened) = self.open_image(&image.uri, &holder)?;
                remember(&mut state, opened);
            }
            return self.serve_on_nbd(state, |device| {
                // Its device node, not the report: clearing a stale attachment just now
                // may have deactivated it.
                if !path.exists() {
                    self.set_active(&name, true)?;
                }
                crash::point("attach.after-cache-active");
                nbd::connect_cached(device, &path)
            });
        }
        let (path, opened) = self.open_image(&image.uri, &holder)?;
        state.device = path.clone();
        remember(&mut state, opened);
        if image.format == "raw" {
            if state.scheme.is_some() && is_block_device(&path) {
                // A raw block device needs no server in between.
                save_state(&state)?;
                return dm::devno(&path);
            }
            if path.is_file() {
                // Nor does a raw file: the kernel reads it through a loop device. (An NBD
                // export, a raw disk too, names no local file.)
                return self.serve_on_loop(state, &path);
            }
        }
        self.serve_on_nbd(state, |device| {
            nbd::connect(device, &path.to_string_lossy(), &image.format)
        })
    }

    /// Starts a server on a free NBD device for `state`'s template: the state is saved
    /// before `connect` runs (a crash leaves what the next attach clears), and a failure
    /// releases whatever was made. Returns the device's `major:minor`.
    fn serve_on_nbd(
        &self,
        mut state: OriginState,
        connect: impl FnOnce(&Path) -> Result<u32>,
    ) -> Result<String> {
        let connected = nbd::pick_device().and_then(|device| {
            state.device = device;
            state.nbd = true;
            save_state(&state)?;
            crash::point("attach.after-origin-state");
            state.pid = Some(connect(&state.device)?);
            save_state(&state)
        });
        if let Err(e) = connected {
            return Err(e.undo("releasing the template's image again", || {
                self.release(&state)
            }));
        }
        dm::devno(&state.device)
    }

    /// Lazy template `t` served by its lazy source: the store's device made, the source
    /// started (named in the state first, so a crash leaves what the next attach clears),
    /// and for an image format qemu-nbd reading the file through it. Returns the device's
    /// `major:minor`.
    fn serve_lazy(
        &self,
        t: &VdiMeta,
        format: &str,
        lazy: &Lazy,
        vg: &Vg,
        entry: &Entry,
    ) -> Result<String> {
        let image = t.image.as_ref().expect("templates have an image");
        let store = self.thin_device(t, vg, entry, &lazy.lv, &store_key(&t.uuid), None)?;
        let mut state = OriginState {
            template: t.uuid.to_string(),
            uri: image.uri.clone(),
            device: PathBuf::new(),
            nbd: true,
            pid: None,
            scheme: None,
            cache: None,
            mount: None,
            loop_file: None,
            lazy: Some(entry.uuid.clone()),
        };
        save_state(&state)?;
        crash::point("attach.after-origin-state");
        let raw = format == "raw";
        let launch = lazy_server::Launch {
            sr: &entry.uuid,
            template: &t.uuid,
            device: &store,
            url: &image.uri,
            config: &self.config_dir(),
            version: &lazy.version,
            layout: Layout {
                length: lazy.length.0,
                piece: lazy.piece.0,
            },
            timeout: std::time::Duration::from_secs(lazy.timeout_s),
            kernel: raw,
        };
        let started = lazy_server::start(&launch).and_then(|(pid, index)| {
            if raw {
                let index = index.ok_or_else(|| Error::CommandFailed {
                    tool: lazy_server::COMMAND.into(),
                    message: "the lazy source named no NBD device".into(),
                })?;
                state.device = PathBuf::from(format!("/dev/nbd{index}"));
                state.pid = Some(pid);
                return save_state(&state);
            }
            let ep = lazy_server::Endpoint::of(&entry.uuid, &t.uuid);
            state.device = nbd::pick_device()?;
            save_state(&state)?;
            state.pid = Some(nbd::connect(&state.device, &ep.nbd_uri(), format)?);
            save_state(&state)
        });
        if let Err(e) = started {
            return Err(e.undo("releasing the template's image again", || {
                self.release(&state)
            }));
        }
        dm::devno(&state.device)
    }

    /// The template's local copy as a read-only thin device of ours (made unless a live
    /// one exists). Returns its `major:minor`.
    fn serve_local(&self, t: &VdiMeta, vg: &Vg, entry: &Entry, local: &str) -> Result<String> {
        let size = crate::units::Bytes(t.size.0.div_ceil(512) * 512);
        let path = self.thin_device(t, vg, entry, local, &local_key(&t.uuid), Some(size))?;
        dm::devno(&path)
    }

    /// A thin device of ours over LV `local`'s thin id, carrying `key`: read-only and
    /// `size` long (a local copy, as long as the template), or read-write and as long as
    /// the LV (a lazy template's store). Made unless a live one exists; returns its path.
    fn thin_device(
        &self,
        t: &VdiMeta,
        vg: &Vg,
        entry: &Entry,
        local: &str,
        key: &str,
        read_only: Option<crate::units::Bytes>,
    ) -> Result<PathBuf> {
        if let Some(d) = self.our_device(key) {
            if d.live {
                return Ok(d.path());
            }
            // Left without a table by a crash: make it again.
            dm::remove(&d.name, &t.name)?;
        }
        let missing = |why: String| Error::VdiIncomplete {
            vdi: t.name.clone(),
            why,
        };
        let lv = vg.lv(local).ok_or_else(|| {
            missing(format!(
                "its local copy {}/{local} is missing: 'thinsr template cache {} off' forgets it",
                vg.name, t.uuid
            ))
        })?;
        if lv.active {
            // Two devices on one thin id would corrupt it.
            return Err(missing(format!(
                "its local copy {}/{local} is active through LVM: 'lvchange -an' it first",
                vg.name
            )));
        }
        let thin_id = lv.thin_id.ok_or_else(|| Error::LvmFailed {
            command: "lvs".into(),
            message: format!("no thin id reported for {}/{local}", vg.name),
        })?;
        let (pool, _) = dm::pool_target(&dm::open()?, &vg.name, &entry.pool)
            .ok_or_else(|| Error::SrNotAttached(entry.name.clone()))?;
        let table = dm::Table::Thin {
            pool: format!("/dev/mapper/{pool}"),
            thin_id,
            origin: None,
        };
        let mut name = dm::our_name(&vg.name, &lv.name, key);
        if read_only.is_none() {
            // Beside the local copy's device, which the same LV becomes.
            name = format!("{}-store", &name[..name.len().min(120)]);
        }
        let length = read_only.unwrap_or(lv.size).sectors();
        let path = dm::create(&name, key, length, &table, read_only.is_some())?;
        self.forget_devices();
        Ok(path)
    }

    /// Moves the attached clones of template `t` (which has a local copy now) off the
    /// attachment of its image and onto the copy, live: their tables are swapped for ones
    /// naming the copy's device (the same bytes, read-only), and the attachment ends when
    /// nothing reads it any more. Returns how many clones moved.
    pub(crate) fn move_clones_to_local(
        &self,
        t: &VdiMeta,
        vg: &Vg,
        entry: &Entry,
    ) -> Result<usize> {
        let Some(local) = &t.local else {
            return Ok(0);
        };
        let Some(old) = load_state(&t.uuid).and_then(|s| dm::devno(&s.device).ok()) else {
            return Ok(0);
        };
        let moved = {
            let _l = lock::acquire(LOCK, "the datapath")?;
            let devices = dm::our_devices(&dm::open()?)?;
            // The template attached on its own is a linear device: it stays as it is.
            let clones: Vec<&OurDevice> = devices
                .iter()
                .filter(|d| d.vdi != t.uuid && d.origin.as_deref() == Some(old.as_str()))
                .collect();
            if clones.is_empty() {
                0
            } else {
                let new = self.serve_local(t, vg, entry, local)?;
                for d in &clones {
                    dm::swap_origin(&d.name, &new)?;
                }
                clones.len()
            }
        };
        self.forget_devices();
        self.release_origin_if_unused(&t.uuid)?;
        Ok(moved)
    }

    /// Attaches raw image file `file` to a free loop device for `state`'s template: the
    /// state names the device before it is attached, and a failure releases what was made.
    /// Returns the device's `major:minor`.
    fn serve_on_loop(&self, mut state: OriginState, file: &Path) -> Result<String> {
        let file = std::fs::canonicalize(file)
            .map_err(|e| Error::io(format!("opening {}", file.display()), e))?;
        state.loop_file = Some(file.clone());
        let attached = loopdev::pick_free().and_then(|device| {
            state.device = device;
            save_state(&state)?;
            crash::point("attach.after-origin-state");
            loopdev::attach_read_only(&state.device, &file)
        });
        if let Err(e) = attached {
            return Err(e.undo("releasing the template's image again", || {
                self.release(&state)
            }));
        }
        dm::devno(&state.device)
    }

    /// Ends a template's attachment when no device of ours reads it any more.
    pub(crate) fn release_origin_if_unused(&self, template: &str) -> Result<()> {
        let _l = lock::acquire(LOCK, "the datapath")?;
        let devices = dm::our_devices(&dm::open()?)?;
        let key = local_key(template);
        if let Some(d) = devices.iter().find(|d| d.vdi == key) {
            if readers(&d.path(), &devices) == 0 && d.open_count == 0 {
                dm::remove(&d.name, template)?;
                self.forget_devices();
            }
        }
        let Some(s) = load_state(template) else {
            return Ok(());
        };
        if readers(&s.device, &devices) > 0 {
            return Ok(());
        }
        self.release(&s)
    }

    /// Disconnects the server, tells the scheme script, forgets the state.
    fn release(&self, s: &OriginState) -> Result<()> {
        if s.nbd && !s.device.as_os_str().is_empty() {
            nbd::disconnect(&s.device)?;
        }
        if let Some(sr) = &s.lazy {
            lazy_server::stop(sr, &VdiUuid::from(s.template.as_str()));
            if let Some(d) = self.our_device(&store_key(&s.template)) {
                dm::remove(&d.name, &s.template)?;
                self.forget_devices();
            }
        }
        if let Some(file) = &s.loop_file {
            if s.loop_attached(file) {
                loopdev::detach(&s.device)?;
            }
        }
        if let Some(scheme) = &s.scheme {
            run_scheme(&self.scheme_dir, scheme, "detach", &s.uri)?;
        }
        if let Some(id) = &s.mount {
            share::release(id, &holder_key(&s.template))?;
        }
        if let Some(cache) = s.cache.as_deref().and_then(LvPath::split) {
            self.set_active(&cache, false)?;
        }
        match std::fs::remove_file(state_path(&s.template)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                format!("removing {}", state_path(&s.template).display()),
                e,
            )),
            _ => Ok(()),
        }
    }
}
