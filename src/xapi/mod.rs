//! thinsr as an SMAPIv3 (xapi-storage 5.0) plugin: xapi runs executables named after each
//! method with `--json` and the named arguments as a JSON object on stdin, and reads the
//! bare result (or an error in the xapi shape) from stdout. Each method file `thinsr xapi
//! install` writes runs thinsr, which answers through the engine and serializers of `--json`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::engine::context::Ctx;
use crate::engine::datapath_nbd::Endpoint;
use crate::engine::registry::{config_dir_from_env, RegistryFile};
use crate::error::{Error, Result};
use crate::host::lvm::Lvm;
use crate::ids::{SrUuid, VdiUuid};
use crate::units::{Bytes, NewSize};

mod data;
mod detach;
mod domains;
mod install;
pub use install::{install, uninstall};

/// The volume plugin's directory name; xapi calls the SR type `thinsr`.
pub const VOLUME_PLUGIN: &str = "org.xen.xapi.storage.thinsr";
/// The URI scheme of thinsr's volumes, which is also its datapath plugin's directory.
pub const SCHEME: &str = "thinsr";
pub const DEFAULT_ROOT: &str = "/usr/libexec/xapi-storage-script";

/// How long an xapi call waits for an SR's lock: long enough for a dozen attaches queued
/// before it (an admin's command keeps the 10 s default and says SR_BUSY sooner).
const XAPI_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

pub const VOLUME_METHODS: [&str; 27] = [
    "Plugin.Query",
    "Plugin.diagnostics",
    "SR.create",
    "SR.attach",
    "SR.detach",
    "SR.destroy",
    "SR.stat",
    "SR.ls",
    "SR.probe",
    "SR.set_name",
    "SR.set_description",
    "Volume.create",
    "Volume.snapshot",
    "Volume.clone",
    "Volume.destroy",
    "Volume.resize",
    "Volume.stat",
    "Volume.set",
    "Volume.unset",
    "Volume.set_name",
    "Volume.set_description",
    "Volume.enable_cbt",
    "Volume.disable_cbt",
    "Volume.list_changed_blocks",
    "Volume.data_destroy",
    "Volume.revert",
    "Volume.compose",
];
pub const DATAPATH_METHODS: [&str; 9] = [
    "Plugin.Query",
    "Datapath.attach",
    "Datapath.activate",
    "Datapath.activate_readonly",
    "Datapath.import_activate",
    "Datapath.deactivate",
    "Datapath.detach",
    "Data.mirror",
    "Data.stat",
];

/// What `Plugin.Query` declares: xapi calls only what is declared, so this is what holds.
/// Not SR_METADATA (disaster-recovery metadata VDIs). LARGE_VDI: thin volumes up to LVM's
/// limits, though `thinsr export --format vhd` still refuses disks over 2040 GiB (VHD's
/// own limit).
/// VDI_MIRROR_IN: a storage migration may land here (the Nbd entry of every attach,
/// `Datapath.import_activate`); xapi checks the volume plugin's list, and forwards
/// import_activate only when the datapath plugin's lists it too: both declare one list.
/// VDI_MIRROR: a storage migration may leave from here (data.rs).
pub const FEATURES: [&str; 22] = [
    "SR_ATTACH",
    "SR_DETACH",
    "SR_CREATE",
    "SR_PROBE",
    "VDI_CREATE",
    "VDI_DESTROY",
    "VDI_ATTACH",
    "VDI_DETACH",
    "VDI_ACTIVATE",
    "VDI_DEACTIVATE",
    "VDI_CLONE",
    "VDI_SNAPSHOT",
    "VDI_RESIZE",
    "THIN_PROVISIONING",
    "LARGE_VDI",
    "VDI_CONFIG_CBT",
    "VDI_REVERT",
    "VDI_RESIZE_ONLINE",
    "VDI_ACTIVATE_READONLY",
    "VDI_MIRROR_IN",
    "VDI_COMPOSE",
    "VDI_MIRROR",
];

/// The method named by how thinsr was run (`.../SR.create`), if it is one.
pub fn method_of(argv0: &str) -> Option<&'static str> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    VOLUME_METHODS
        .iter()
        .chain(DATAPATH_METHODS.iter())
        .find(|m| **m == name)
        .copied()
}

/// Runs `method` with the arguments on stdin; returns the exit status.
pub fn serve(method: &str) -> i32 {
    let mut input = String::new();
    let read = std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut input)
        .map_err(|e| Error::io("reading the arguments on stdin", e));
    let result = read.and_then(|_| {
        let args: Value = serde_json::from_str(&input)
            .map_err(|e| Error::InvalidArgument(format!("arguments are not JSON: {e}")))?;
        let args = args
            .as_object()
            .ok_or_else(|| Error::InvalidArgument("arguments are not a JSON object".into()))?;
        let scheme_dir = std::env::var_os("THINSR_SCHEME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(crate::engine::template::DEFAULT_SCHEME_DIR));
        let registry = RegistryFile::in_dir(&config_dir_from_env());
        let mut ctx = Ctx::new(Lvm::new(false), registry, scheme_dir);
        ctx.caller = crate::engine::context::Caller::Xapi;
        // A boot storm queues a dozen attaches on one SR: each waits its turn.
        crate::host::lock::set_default_wait(XAPI_LOCK_WAIT);
        let a = Args(args);
        // Detaches queued by an earlier Datapath.detach finish before anything else on
        // the SR; an attach of the same volume cancels its own.
        if let Some((sr, vdi)) = a.uri_parts() {
            if method == "Datapath.attach" {
                detach::forget(&sr, &vdi);
            }
            detach::finish_queued(&ctx, &sr);
        } else if let Ok(sr) = a.sr() {
            detach::finish_queued(&ctx, sr);
        }
        call(&ctx, method, &a)
    });
    match result {
        Ok(v) => {
            println!("{}", serde_json::to_string(&v).expect("results serialize"));
            0
        }
        Err(e) => {
            println!(
                "{}",
                serde_json::to_string(&plugin_error(&e)).expect("errors serialize")
            );
            1
        }
    }
}

/// xapi-storage's own exceptions where one fits, thinsr's codes otherwise.
fn plugin_error(e: &Error) -> Value {
    let (code, params): (&str, Vec<String>) = match e {
        Error::VdiNotFound(k) => ("Volume_does_not_exist", vec![k.clone()]),
        Error::SrNotFound(s) => ("SR_does_not_exist", vec![s.clone()]),
        Error::SrNotAttached(s) => ("Sr_not_attached", vec![s.clone()]),
        _ => return serde_json::to_value(e.to_xapi()).expect("errors serialize"),
    };
    json!({"code": code, "params": params, "backtrace": {"error": e.to_string(), "files": [], "lines": []}})
}

struct Args<'a>(&'a Map<String, Value>);

impl Args<'_> {
    fn missing(name: &str) -> Error {
        Error::InvalidArgument(format!("argument '{name}' is missing or of the wrong type"))
    }
    fn str(&self, name: &str) -> Result<&str> {
        self.0
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| Self::missing(name))
    }
    fn size(&self, name: &str) -> Result<Bytes> {
        self.0
            .get(name)
            .and_then(Value::as_u64)
            .map(Bytes)
            .ok_or_else(|| Self::missing(name))
    }
    fn int(&self, name: &str) -> Result<i64> {
        self.0
            .get(name)
            .and_then(Value::as_i64)
            .ok_or_else(|| Self::missing(name))
    }
    fn map(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let obj = self
            .0
            .get(name)
            .and_then(Value::as_object)
            .ok_or_else(|| Self::missing(name))?;
        obj.iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| Self::missing(&format!("{name}.{k}")))
            })
            .collect()
    }
    /// The SR a call names: the `sr` string SR.attach returned (the SR's uuid).
    fn sr(&self) -> Result<&str> {
        self.str("sr")
    }
    /// The SR and VDI of a Datapath call's `uri`.
    fn uri_parts(&self) -> Option<(String, String)> {
        parse_volume_uri(self.str("uri").ok()?).ok()
    }
}

fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::InvalidArgument(format!("cannot encode: {e}")))
}

/// The VDI named by a volume `key` within `sr`: keys are VDI uuids.
fn volume(ctx: &Ctx, a: &Args, sr: &str) -> Result<String> {
    volume_in(ctx, a, sr, "key")
}

/// The volume whose key is argument `field`.
fn volume_in(ctx: &Ctx, a: &Args, sr: &str, field: &str) -> Result<String> {
    let key = a.str(field)?;
    let found = ctx.resolve(key, Some(sr))?;
    if found.uuid != key.to_ascii_lowercase() {
        // A key is a uuid, never a name or prefix: anything else does not exist.
        return Err(Error::VdiNotFound(key.into()));
    }
    Ok(found.uuid)
}

/// `thinsr://<sr>/<vdi>`: the VDI's datapath URI.
fn parse_volume_uri(uri: &str) -> Result<(String, String)> {
    let rest = uri
        .strip_prefix(&format!("{SCHEME}://"))
        .ok_or_else(|| Error::InvalidUri {
            uri: uri.into(),
            why: format!("not a {SCHEME}:// volume URI"),
        })?;
    let (sr, vdi) = rest.split_once('/').ok_or_else(|| Error::InvalidUri {
        uri: uri.into(),
        why: "expected thinsr://SR/VDI".into(),
    })?;
    Ok((sr.into(), vdi.into()))
}

/// Read-only activations of a writable volume make its device read-only while they last;
/// a read-only volume's device is read-only from its attach on, and stays so.
fn set_read_only(ctx: &Ctx, vdi: &str, sr: &str, on: bool) -> Result<()> {
    let v = ctx.vdi_show(vdi, Some(sr))?;
    if !v.read_write || v.path.is_empty() {
        return Ok(());
    }
    crate::host::probe::set_read_only(std::path::Path::new(&v.path), on)
}

fn call(ctx: &Ctx, method: &str, a: &Args) -> Result<Value> {
    let unit = |r: Result<()>| r.map(|_| Value::Null);
    match method {
        "Plugin.Query" => Ok(json!({
            "plugin": "thinsr",
            "name": "thinsr",
            "description": "Thin-provisioned local VM disks on LVM and dm-thin, with instant clones of templates",
            "vendor": "thinsr",
            "copyright": "thinsr developers, MIT OR Apache-2.0",
            "version": env!("CARGO_PKG_VERSION"),
            "required_api_version": "5.0",
            "features": FEATURES,
            "configuration": {
                "device": "owned mode: comma-separated disks to make the SR's volume group on",
                "vg": "shared mode: an existing volume group to live in beside the admin's LVs",
                "pool-size": "shared mode: the thin pool's size (20G) or share of free space (50%)",
                "force": "owned mode: 'true' to wipe disks holding a signature"
            },
            "required_cluster_stack": []
        })),
        "Plugin.diagnostics" => Ok(Value::String(crate::host::version::long())),
        "SR.create" => {
            let config = a.map("configuration")?;
            let name = a.str("name")?;
            // xapi's own uuid for the SR: kept, so xe sr-list, URIs and SR.stat agree.
            let uuid = a.0.get("uuid").and_then(Value::as_str);
            let detail = if let Some(devices) = config.get("device") {
                let devices: Vec<String> = devices
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(str::to_string)
                    .collect();
                let force = config.get("force").is_some_and(|f| f == "true");
                ctx.create_owned(&devices, Some(name), force, uuid)?
            } else if let Some(vg) = config.get("vg") {
                let size = config
                    .get("pool-size")
                    .map(|s| crate::units::parse_pool_size(s))
                    .transpose()?;
                ctx.introduce(
                    &vg.into(),
                    Some(name),
                    size,
                    None,
                    uuid.map(SrUuid::from).as_ref(),
                )?
            } else {
                return Err(Error::InvalidArgument(
                    "the configuration needs 'device' (owned mode) or 'vg' (shared mode)".into(),
                ));
            };
            let description = a.str("description").unwrap_or_default();
            if !description.is_empty() {
                ctx.set_description(Some(&detail.uuid), description)?;
            }
            let mut out = config.clone();
            out.insert("sr".into(), detail.uuid.clone());
            to_value(&out)
        }
        // The configuration SR.create returned: after a host reinstall the registry does
        // not know the SR, which is then found by its tags and registered again.
        "SR.attach" => {
            let config = a.map("configuration")?;
            let key = config
                .get("sr")
                .or(config.get("sr_uuid"))
                .or(config.get("vg"))
                .ok_or_else(|| Args::missing("configuration.sr"))?;
            let vg = config.get("vg").map(String::as_str);
            Ok(Value::String(ctx.attach_or_recover(key, vg)?.sr))
        }
        "SR.detach" => unit(ctx.detach(Some(a.sr()?)).map(drop)),
        "SR.destroy" => {
            let entry = ctx.entry(Some(a.sr()?))?;
            ctx.check_destroy(&entry)?;
            unit(ctx.destroy(&entry))
        }
        "SR.stat" => {
            let mut d = ctx.show(Some(a.sr()?))?;
            // xapi keeps Healthy's constructor and drops its text: a warning that comes
            // before trouble (the pool cannot grow, or is full and about to) travels in
            // the description, which xapi shows.
            if d.health.0 == "Healthy" && !d.health.1.is_empty() {
                d.description = match d.description.as_str() {
                    "" => format!("thinsr: {}", d.health.1),
                    own => format!("{own} (thinsr: {})", d.health.1),
                };
            }
            to_value(&d)
        }
        "SR.ls" => to_value(&ctx.vdi_list(Some(a.sr()?))?.volumes),
        // The SRs on the storage the configuration names (every VG, with neither
        // `device` nor `vg`), each with `sr_uuid` and an `sr` record, as xapi counts them.
        "SR.probe" => {
            let config = a.map("configuration").unwrap_or_default();
            let devices: Vec<String> = config
                .get("device")
                .map(|d| {
                    d.split(',')
                        .map(str::trim)
                        .filter(|d| !d.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let found = ctx.probe(&devices, config.get("vg").map(String::as_str))?;
            let list: Vec<Value> = found
                .into_iter()
                .map(|f| {
                    let mut conf = config.clone();
                    conf.insert("sr".into(), f.uuid.clone());
                    conf.insert("sr_uuid".into(), f.uuid.clone());
                    conf.insert("vg".into(), f.vg.clone());
                    let sr = match &f.detail {
                        Some(d) => to_value(d).unwrap_or(Value::Null),
                        // Not attached here: what the VG says, until SR.attach reads more.
                        None => json!({"sr": f.uuid, "name": f.vg, "uuid": f.uuid,
                            "description": "", "free_space": f.free_space,
                            "total_space": f.total_space, "datasources": [],
                            "clustered": false, "health": ["Healthy", ""]}),
                    };
                    json!({"configuration": conf, "complete": true, "sr": sr,
                        "extra_info": {"mode": if f.owned { "owned" } else { "shared" },
                            "registered": f.detail.is_some().to_string()}})
                })
                .collect();
            Ok(Value::Array(list))
        }
        "SR.set_name" => ctx
            .rename(Some(a.sr()?), a.str("new_name")?)
            .map(|_| Value::Null),
        "SR.set_description" => ctx
            .set_description(Some(a.sr()?), a.str("new_description")?)
            .map(|_| Value::Null),
        "Volume.create" => {
            if a.0.get("sharable").and_then(Value::as_bool) == Some(true) {
                return Err(Error::InvalidArgument(
                    "sharable volumes are not supported: thinsr's disks are local to one host and one VM writer".into(),
                ));
            }
            let progress = crate::progress::Silent;
            let v = ctx.vdi_create(
                Some(a.sr()?),
                a.str("name")?,
                a.size("size")?.max(Bytes(1)),
                a.str("description").unwrap_or_default(),
                false,
                &progress,
            )?;
            to_value(&v)
        }
        m if m.starts_with("Volume.") => volume_call(ctx, m, a),
        // The device is shared by every domain that attaches the volume (domains.rs).
        "Datapath.attach" => {
            let (sr, vdi) = parse_volume_uri(a.str("uri")?)?;
            let domain = a.str("domain")?;
            let (sr_id, vdi_id) = (SrUuid::from(sr.as_str()), VdiUuid::from(vdi.as_str()));
            let (v, nbd) = domains::with(&sr, &vdi, |d| {
                // While others read it, its device is read-only in the kernel (which a
                // fresh attach would take for another mode): this domain shares it as it is.
                let v = match d.read_only_active() {
                    true => Some(ctx.vdi_show(&vdi, Some(&sr))?).filter(|v| !v.path.is_empty()),
                    false => None,
                };
                let v = match v {
                    Some(v) => v,
                    None => ctx.vdi_attach(&vdi, Some(&sr), false)?,
                };
                let nbd = ctx.datapath_export(&sr_id, &vdi_id, Path::new(&v.path))?;
                d.attach(domain);
                Ok((v, nbd))
            })?;
            Ok(json!({"implementations": [
                ["XenDisk", {"backend_type": "vbd", "params": v.path, "extra": {}}],
                ["BlockDevice", {"path": v.path}],
                ["Nbd", {"uri": nbd.uri()}]
            ]}))
        }
        // The socket xapi passes a connected descriptor to (storage_migrate.ml
        // nbd_handler, once per connection): the volume's export takes it. Called after
        // attach and activate; the export started with the attach.
        "Datapath.import_activate" => {
            let (sr, vdi) = parse_volume_uri(a.str("uri")?)?;
            let domain = a.str("domain")?;
            let (sr_id, vdi_id) = (SrUuid::from(sr.as_str()), VdiUuid::from(vdi.as_str()));
            let ep = domains::with(&sr, &vdi, |d| {
                if !d.domains.contains_key(domain) {
                    return Err(Error::InvalidArgument(format!(
                        "volume {sr}/{vdi} is not attached for domain {domain}: Datapath.attach and activate come first"
                    )));
                }
                let ep = Endpoint::of(&sr_id, &vdi_id);
                if ep.serving() {
                    return Ok(ep);
                }
                let v = ctx.vdi_show(&vdi, Some(&sr))?;
                ctx.datapath_export(&sr_id, &vdi_id, Path::new(&v.path))
            })?;
            Ok(json!(ep.passing.display().to_string()))
        }
        // The device is ready from attach on; a VM's blkback opens it. Activation checks the
        // VDI exists (metadata alone: these run at every VM start and stop) and who else
        // has it active; read-only activations make the device read-only in the kernel
        // while they last.
        "Datapath.activate" | "Datapath.activate_readonly" | "Datapath.deactivate" => {
            let (sr, vdi) = parse_volume_uri(a.str("uri")?)?;
            let domain = a.str("domain")?;
            let found = ctx.resolve(&vdi, Some(&sr))?;
            // A read-only volume (snapshot, template) is read by whoever activates it,
            // however they ask: several VMs may read one at once.
            let writable = found.meta.vdi(&found.uuid).is_some_and(|v| v.read_write());
            let mut writer_left = false; // the drain point of a migration leaving (data.rs)
            let device = domains::with(&sr, &vdi, |d| match method {
                "Datapath.activate" if writable => {
                    let device = d.activate(domain, domains::Use::ReadWrite, &vdi)?;
                    // A migration's leaf, activated for its VM before compose: the VM reads
                    // the parent's data under the mirrored writes (compose/view.rs).
                    if !domains::mirror_receiver(domain) {
                        ctx.land_if_migrating(&found)?;
                    }
                    Ok(device)
                }
                "Datapath.activate" | "Datapath.activate_readonly" => {
                    d.activate(domain, domains::Use::ReadOnly, &vdi)
                }
                _ => {
                    writer_left = d.domains.get(domain) == Some(&domains::Use::ReadWrite);
                    Ok(d.deactivate(domain))
                }
            })?;
            if let domains::Device::ReadOnly(on) = device {
                set_read_only(ctx, &found.uuid, &sr, on)?;
            }
            if writer_left {
                data::drain(&found, &vdi)?;
            }
            Ok(Value::Null)
        }
        "Data.mirror" | "Data.stat" => data::call(ctx, method, a),
        // Never fails: xapi must be able to clean up whatever state the VDI is in. The
        // device goes with the last domain.
        "Datapath.detach" => {
            if let Some((sr, vdi)) = a.uri_parts() {
                let domain = a.str("domain").unwrap_or_default();
                let _ = domains::with(&sr, &vdi, |d| {
                    match d.detach(domain) {
                        // The volume's NBD export ends with the device (vdi_detach).
                        domains::Device::Release => detach::detach(ctx, &sr, &vdi),
                        domains::Device::ReadOnly(false) => {
                            let _ = set_read_only(ctx, &vdi, &sr, false);
                        }
                        _ => {}
                    }
                    Ok(())
                });
            }
            Ok(Value::Null)
        }
        other => Err(Error::InvalidArgument(format!("unknown method {other}"))),
    }
}

/// Volume.* methods other than create: all name a volume by `sr` and `key`.
fn volume_call(ctx: &Ctx, method: &str, a: &Args) -> Result<Value> {
    let sr_key = a.sr()?;
    let uuid = volume(ctx, a, sr_key)?;
    let sr = Some(sr_key);
    let done = |r: Result<crate::engine::vdi::Volume>| r.map(|_| Value::Null);
    match method {
        "Volume.snapshot" | "Volume.clone" => {
            to_value(&ctx.vdi_snapshot(&uuid, sr, None, method == "Volume.clone")?)
        }
        "Volume.destroy" => done(ctx.vdi_destroy(&uuid, sr)),
        "Volume.resize" => {
            let to = NewSize::To(a.size("new_size")?);
            done(ctx.vdi_resize(&uuid, sr, to, false, &crate::progress::Silent))
        }
        "Volume.stat" => to_value(&ctx.vdi_show(&uuid, sr)?),
        "Volume.set" => done(ctx.vdi_set_key(&uuid, sr, a.str("k")?, a.str("v")?)),
        "Volume.unset" => done(ctx.vdi_unset_key(&uuid, sr, a.str("k")?)),
        "Volume.set_name" => done(ctx.vdi_rename(&uuid, sr, a.str("new_name")?)),
        "Volume.set_description" => {
            done(ctx.vdi_set_description(&uuid, sr, a.str("new_description")?))
        }
        "Volume.enable_cbt" | "Volume.disable_cbt" => {
            done(ctx.vdi_set_cbt(&uuid, sr, method == "Volume.enable_cbt"))
        }
        "Volume.data_destroy" => done(ctx.vdi_data_destroy(&uuid, sr)),
        "Volume.list_changed_blocks" => {
            // `key` is the older volume, `key2` the newer; length -1 is the whole disk.
            let new = volume_in(ctx, a, sr_key, "key2")?;
            let offset = a.int("offset").unwrap_or(0);
            let length = a.int("length").unwrap_or(-1);
            let offset = u64::try_from(offset)
                .map_err(|_| Error::InvalidArgument(format!("offset {offset} is negative")))?;
            let length = u64::try_from(length).ok();
            let c = ctx.vdi_changed_blocks(&uuid, &new, sr, offset, length)?;
            Ok(json!({"granularity": c.granularity, "bitmap": c.bitmap}))
        }
        // compose(dbg, sr, key, key2): `key` is the child (the migration's leaf), `key2`
        // the parent whose data goes under the child's writes; the parent is gone after.
        "Volume.compose" => {
            let parent = volume_in(ctx, a, sr_key, "key2")?;
            done(ctx.vdi_compose(&uuid, &parent, sr))
        }
        "Volume.revert" => {
            // revert(dbg, sr, snapshot, key): `key`'s contents become `snapshot`'s. The
            // IDL returns unit: ocaml-rpc takes only null for it.
            let snapshot = volume_in(ctx, a, sr_key, "snapshot")?;
            done(ctx.vdi_revert(&uuid, &snapshot, sr))
        }
        other => Err(Error::InvalidArgument(format!("unknown method {other}"))),
    }
}

#[cfg(test)]
mod tests;
