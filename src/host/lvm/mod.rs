//! The lvm adapter: runs the `lvm` binary with argument vectors and parses its JSON reports.
//! Every lvm call costs 0.3-1 s in the test VM (tens of ms on a host), so a command makes
//! one report at most (an `lvs`; a `fullreport` when it needs PVs) and this module counts
//! the calls and their time.

use std::cell::Cell;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::ids::{LvName, VgName};
use crate::units::Bytes;

pub mod cmd;
mod report;
pub use cmd::tag_args;
pub use report::{parse_lvs, parse_report};

pub const TAG_SR: &str = "thinsr_sr=";
pub const TAG_OWNED: &str = "thinsr_owned";
pub const TAG_META: &str = "thinsr_meta";
pub const TAG_POOL: &str = "thinsr_pool";
pub const TAG_VDI: &str = "thinsr_vdi=";
/// On the LV of a VDI reading a template: the template's uuid, so an LV found without its
/// metadata entry can be adopted with its origin.
pub const TAG_ORIGIN: &str = "thinsr_origin=";
/// On a template's cache LV: the template it caches.
pub const TAG_CACHE: &str = "thinsr_cache=";
pub const TAG_LOCAL: &str = "thinsr_local=";
/// On the LV holding a data-destroyed snapshot's saved block map: that snapshot's uuid.
pub const TAG_CBT: &str = "thinsr_cbt=";
/// A compose's new LV, until it becomes the VDI's (`thinsr_compose=<vdi uuid>`).
pub const TAG_COMPOSE: &str = "thinsr_compose=";
/// A thin LV `vdi receive` writes a stream into, named by the snapshot it will be once the
/// stream verifies; the tag stays on that snapshot.
pub const TAG_RECEIVE: &str = "thinsr_receive=";

const VG_FIELDS: &str = "vg_name,vg_uuid,vg_size,vg_free,vg_extent_size,vg_tags";
const PV_FIELDS: &str = "pv_name,pv_size,pv_free,vg_name";
/// Whether an LV is active or open is read from `lv_attr`: the `lv_active` and
/// `lv_device_open` fields cost a device lookup each, which at a thousand LVs adds a sixth
/// to the report's time.
const LV_FIELDS: &str = "lv_name,vg_name,lv_uuid,lv_size,lv_tags,lv_attr,lv_layout,pool_lv,\
origin,data_percent,metadata_percent,lv_metadata_size";
/// Segment fields: a thin volume's id in its pool is a property of its (single) segment.
const SEG_FIELDS: &str = "lv_uuid,thin_id,chunk_size";

#[derive(Debug, Clone)]
pub struct Vg {
    pub name: VgName,
    pub uuid: String,
    pub size: Bytes,
    pub free: Bytes,
    pub extent_size: Bytes,
    pub tags: Vec<String>,
    pub pvs: Vec<Pv>,
    pub lvs: Vec<Lv>,
    /// Index of `lvs` by VDI tag, made at the first lookup: a listing looks up every VDI,
    /// which a scan per lookup makes quadratic (a thousand VDIs, a million tag reads).
    pub vdi_index: std::cell::OnceCell<HashMap<String, usize>>,
}

#[derive(Debug, Clone)]
pub struct Pv {
    pub name: String,
    pub size: Bytes,
    pub free: Bytes,
}

#[derive(Debug, Clone)]
pub struct Lv {
    pub name: LvName,
    pub uuid: String,
    pub size: Bytes,
    pub tags: Vec<String>,
    pub attr: String,
    pub layout: String,
    pub pool: String,
    pub origin: String,
    pub data_percent: Option<f64>,
    pub metadata_percent: Option<f64>,
    pub metadata_size: Option<Bytes>,
    pub active: bool,
    pub open: bool,
    /// The device id inside its thin pool (thin volumes only).
    pub thin_id: Option<u32>,
    /// A thin pool's allocation unit.
    pub chunk_size: Option<Bytes>,
    /// Whether a thin pool zeroes new blocks, from its segment when the report asked
    /// (`zero`); otherwise `lv_attr` says.
    pub zero: Option<bool>,
}

impl Lv {
    /// Bytes of data the LV holds, as LVM reported its data use (None: not reported).
    pub fn mapped(&self) -> Option<Bytes> {
        self.data_percent
            .map(|p| Bytes((self.size.0 as f64 * p / 100.0).round() as u64))
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
    /// The value of a `key=value` tag.
    pub fn tag_value(&self, prefix: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix(prefix))
    }
    /// The LV thinsr made for VDI `uuid`, found by tag so a rename cannot hide it.
    pub fn is_vdi(&self, uuid: &str) -> bool {
        self.tag_value(TAG_VDI) == Some(uuid)
    }
    /// A thin pool zeroes the blocks it provisions (`lv_attr`'s eighth character is `z`);
    /// without, a new thin volume reads what its blocks held before.
    pub fn zeroes_new_blocks(&self) -> bool {
        self.zero
            .unwrap_or(self.attr.as_bytes().get(7) == Some(&b'z'))
    }
    pub fn is_thin_pool(&self) -> bool {
        self.layout.split(',').any(|l| l == "pool") && self.layout.contains("thin")
    }
    /// What kind of LV this is, for messages.
    pub fn kind(&self) -> String {
        if self.layout.is_empty() {
            "an LV".into()
        } else {
            format!("a {} LV", self.layout)
        }
    }
}

impl Vg {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
    pub fn tag_value(&self, prefix: &str) -> Option<&str> {
        self.tags.iter().find_map(|t| t.strip_prefix(prefix))
    }
    pub fn lv(&self, name: &str) -> Option<&Lv> {
        self.lvs.iter().find(|l| l.name == name)
    }
    /// Replaces the LV of VDI `uuid` in this report (after a rename).
    pub fn set_vdi_lv(&mut self, uuid: &str, lv: Lv) {
        self.lvs.retain(|l| !l.is_vdi(uuid));
        self.lvs.push(lv);
        self.vdi_index.take();
    }

    pub fn vdi_lv(&self, uuid: &str) -> Option<&Lv> {
        let index = self.vdi_index.get_or_init(|| {
            let mut index = HashMap::new();
            for (i, l) in self.lvs.iter().enumerate() {
                if let Some(u) = l.tag_value(TAG_VDI) {
                    index.entry(u.to_string()).or_insert(i);
                }
            }
            index
        });
        index.get(uuid).map(|&i| &self.lvs[i])
    }
}

/// Runs lvm: one per command (not Clone: its call counter and threshold are the
/// command's own); counts invocations and their time for `-v` and the benchmarks.
pub struct Lvm {
    verbose: bool,
    calls: Cell<u32>,
    time: Cell<std::time::Duration>,
    /// The growth threshold of the SR being worked on, given to LVM with every call: LVM
    /// turns it into the pool's low-water mark whenever it loads the pool's table.
    pool_threshold: Cell<u8>,
}

impl Lvm {
    pub fn new(verbose: bool) -> Lvm {
        Lvm {
            verbose,
            calls: Cell::new(0),
            time: Cell::new(Default::default()),
            pool_threshold: Cell::new(DEFAULT_THRESHOLD),
        }
    }

    /// The threshold (percent of data used) at which the kernel should tell `pool watch`
    /// that a pool is filling: 100 for none. LVM never sets a mark below half full.
    pub fn set_pool_threshold(&self, percent: u8) {
        self.pool_threshold.set(percent.clamp(1, 100));
    }

    pub fn calls(&self) -> u32 {
        self.calls.get()
    }

    /// Wall time spent waiting for lvm.
    pub fn time(&self) -> std::time::Duration {
        self.time.get()
    }

    /// Runs `lvm ARGS...` and returns stdout; a failure carries lvm's own message.
    pub fn run(&self, args: &[String]) -> Result<String> {
        let start = Instant::now();
        self.calls.set(self.calls.get() + 1);
        let args = with_config(args, self.pool_threshold.get());
        let args = args.as_slice();
        let mut cmd = Command::new("lvm");
        if let Some(dir) = master_dir() {
            cmd.env("LVM_SYSTEM_DIR", dir);
        }
        cmd.args(args)
            .env("LC_ALL", "C")
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .stdin(Stdio::null());
        let out = crate::host::tool::output_via_memory(&mut cmd).map_err(|e| Error::LvmFailed {
            command: args.first().cloned().unwrap_or_default(),
            message: format!("cannot run lvm: {e} (is lvm2 installed?)"),
        })?;
        self.time.set(self.time.get() + start.elapsed());
        if self.verbose {
            eprintln!(
                "thinsr: lvm {} ({} ms)",
                args.join(" "),
                start.elapsed().as_millis()
            );
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let message: Vec<&str> = stderr
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("WARNING"))
                .collect();
            return Err(Error::LvmFailed {
                command: args.first().cloned().unwrap_or_default(),
                message: if message.is_empty() {
                    format!("exit status {}", out.status)
                } else {
                    message.join("; ")
                },
            });
        }
        if let Some(refusal) = silent_refusal(&String::from_utf8_lossy(&out.stderr)) {
            return Err(Error::LvmFailed {
                command: args.first().cloned().unwrap_or_default(),
                message: format!(
                    "{refusal} (lvm exited 0 without acting: the host's LVM configuration refuses metadata writes in a way thinsr's --config does not override)"
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// One report of VGs, their PVs and LVs: all VGs, or just `vg`.
    /// A VG that does not exist is `Ok(None)` when one was named.
    pub fn report(&self, vg: Option<&str>) -> Result<Vec<Vg>> {
        self.fullreport(vg, LV_FIELDS, &["-o", SEG_FIELDS])
    }

    /// One VG, its PVs and LVs as `sr show` needs them: no `lv_attr` and no usage, for
    /// which LVM asks the kernel about every LV (a status per thin volume, a failed lookup
    /// per inactive one); the caller reads which LVs are active from one list of the
    /// kernel's devices (`active` is false here) and the pool's use from its status. The
    /// pool's zeroing comes from its segment. At a thousand LVs this saves a fifth of the
    /// report.
    pub fn report_show(&self, vg: &str) -> Result<Vg> {
        // Only the pool's segment: its chunk size and zeroing (a thin volume's id is not
        // shown), so the report does not grow by a row per VDI.
        self.fullreport(
            Some(vg),
            "lv_name,vg_name,lv_uuid,lv_size,lv_tags,lv_layout,pool_lv,origin,lv_metadata_size",
            &["-o", "lv_uuid,chunk_size,zero", "-S", "segtype=thin-pool"],
        )?
        .into_iter()
        .find(|v| v.name == vg)
        .ok_or_else(|| Error::VgNotFound(vg.into()))
    }

    /// `seg`: the segment report's options (`-o FIELDS`, and a selection if any).
    fn fullreport(&self, vg: Option<&str>, lv_fields: &str, seg: &[&str]) -> Result<Vec<Vg>> {
        let mut args = strings(&[
            "fullreport",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "--configreport",
            "vg",
            "-o",
            VG_FIELDS,
            "--configreport",
            "pv",
            "-o",
            PV_FIELDS,
            "--configreport",
            "lv",
            "-o",
            lv_fields,
            "--configreport",
            "pvseg",
            "-o",
            "pvseg_start",
            "--configreport",
            "seg",
        ]);
        args.extend(strings(seg));
        args.extend(vg.map(str::to_string));
        match self.run(&args) {
            Ok(out) => parse_report(&out),
            Err(Error::LvmFailed { message, .. })
                if vg.is_some() && message.contains("not found") =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// One VG with its PVs: a `fullreport`.
    pub fn report_vg_pvs(&self, vg: &str) -> Result<Vg> {
        self.report(Some(vg))?
            .into_iter()
            .find(|v| v.name == vg)
            .ok_or_else(|| Error::VgNotFound(vg.into()))
    }

    /// One VG and its LVs, without its PVs: an `lvs` report, which at a thousand LVs costs
    /// what a bare `lvs` does (a `fullreport` costs a fifth more).
    pub fn report_vg(&self, vg: &str) -> Result<Vg> {
        // LV_FIELDS already hold lv_uuid and vg_name.
        let fields = format!(
            "{LV_FIELDS},thin_id,chunk_size,vg_uuid,vg_size,vg_free,vg_extent_size,vg_tags"
        );
        self.lvs(vg, &fields, true)
    }

    /// A VG's LVs as a listing needs them: names, sizes, tags and thin ids, nothing of the
    /// VG but its name. How much each thin LV holds comes from the pool's metadata
    /// (`thin::mapped_bytes`), so LVM is not asked for usage; nor for lv_attr, for which it
    /// asks the kernel about every LV (a failed lookup for each inactive one): the caller
    /// reads which are active from one list of the kernel's devices (`active` is false
    /// here, `attr` empty). At a thousand LVs this report costs less than a bare `lvs`.
    pub fn report_listing(&self, vg: &str) -> Result<Vg> {
        self.lvs(vg, "lv_name,vg_name,lv_size,lv_tags,thin_id", false)
    }

    fn lvs(&self, vg: &str, fields: &str, vg_fields: bool) -> Result<Vg> {
        let mut args = strings(&[
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            fields,
        ]);
        args.push(vg.into());
        match self.run(&args) {
            Ok(out) => match parse_lvs(&out, vg_fields)? {
                Some(v) => Ok(v),
                None => self.report_vg_pvs(vg),
            },
            Err(Error::LvmFailed { message, .. }) if message.contains("not found") => {
                Err(Error::VgNotFound(vg.into()))
            }
            Err(e) => Err(e),
        }
    }
}

/// LVM's scan opens every block device, and blocks on a suspended one: thinsr suspends a
/// device of its own while a snapshot of it is taken, and a crash could leave one
/// suspended. Its lvm calls skip suspended devices rather than hang.
const SCAN_CONFIG: &str = "devices { ignore_suspended_devices = 1 }";

/// XCP-ng keeps the host's lvm.conf read-only (`metadata_read_only = 1`, set by the `sm`
/// package) and a writable copy in /etc/lvm/master, which its own storage code runs LVM
/// with. thinsr does the same where that copy exists (`LVM_SYSTEM_DIR`), and also passes
/// `metadata_read_only = 0` itself: its calls change metadata, and lvm2 2.02 refuses every
/// write lock while the setting is on. Neither file is ever edited.
const MASTER_DIR: &str = "/etc/lvm/master";

/// An admin's own `LVM_SYSTEM_DIR` wins, as it does for lvm itself.
fn master_dir() -> Option<&'static str> {
    (std::env::var_os("LVM_SYSTEM_DIR").is_none()
        && std::path::Path::new(MASTER_DIR).join("lvm.conf").is_file())
    .then_some(MASTER_DIR)
}

/// The threshold LVM is given until an SR's own is known: the policy's default.
pub const DEFAULT_THRESHOLD: u8 = 80;

/// Every call's `--config`, joined with any the call carries (LVM takes one): skip
/// suspended devices, and the low-water threshold. LVM computes a thin pool's low-water
/// mark from `thin_pool_autoextend_threshold` each time it loads the pool's table (any
/// activation, extension or thin volume creation); without it the mark is 0 and the kernel
/// says nothing until the pool is full. Passed per call, never written to lvm.conf.
fn with_config(args: &[String], threshold: u8) -> Vec<String> {
    let config = format!(
        "{SCAN_CONFIG} global {{ metadata_read_only = 0 }} activation {{ thin_pool_autoextend_threshold = {threshold} }}"
    );
    let mut all = args.to_vec();
    match all.iter().position(|a| a == "--config") {
        Some(i) if i + 1 < all.len() => all[i + 1] = format!("{config} {}", all[i + 1]),
        _ => {
            let at = 1.min(all.len());
            all.splice(at..at, [String::from("--config"), config]);
        }
    }
    all
}

/// lvm2 2.02.180 (dom0's), asked to change metadata while `global/metadata_read_only` is
/// set, prints "<command line>: Command not permitted while global/metadata_read_only is
/// set." and exits 0 having done nothing (its lvm_run_command). thinsr turns the setting
/// off in every call's `--config`, which the tests prove prevents it; this is the guard for
/// a host where something else still makes lvm refuse: its exit status is never trusted
/// alone.
fn silent_refusal(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| {
            l.contains("not permitted while global/metadata_read_only")
                || l.contains("prohibited while global/metadata_read_only")
        })
        .map(|l| {
            // The command line lvm echoes before its refusal says nothing an admin needs.
            match l.rfind(": ") {
                Some(i) if l[..i].contains(' ') => l[i + 2..].to_string(),
                _ => l.to_string(),
            }
        })
}

/// The device path LVM gives an active LV.
pub fn dev_path(vg: &VgName, lv: &LvName) -> String {
    format!("/dev/{vg}/{lv}")
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_skips_suspended_devices_and_sets_the_low_water_threshold() {
        let config = format!(
            "{SCAN_CONFIG} global {{ metadata_read_only = 0 }} activation {{ thin_pool_autoextend_threshold = 80 }}"
        );
        let plain = with_config(&strings(&["lvs", "vg"]), 80);
        assert_eq!(plain, strings(&["lvs", "--config", &config, "vg"]));
        let joined = with_config(
            &strings(&["lvchange", "--config", "activation { x = 1 }", "vg/lv"]),
            80,
        );
        assert_eq!(joined[2], format!("{config} activation {{ x = 1 }}"));
        assert_eq!(joined.len(), 4);
        let none = with_config(&strings(&["lvcreate"]), 100);
        assert!(none[2].ends_with("thin_pool_autoextend_threshold = 100 }"));
    }

    #[test]
    fn a_refusal_that_exits_zero_is_still_a_refusal() {
        let stderr = "  WARNING: something\n  lvcreate --config x -n a vg: Command not permitted while global/metadata_read_only is set.\n";
        assert_eq!(
            silent_refusal(stderr).as_deref(),
            Some("Command not permitted while global/metadata_read_only is set.")
        );
        assert!(
            silent_refusal("  Operation prohibited while global/metadata_read_only is set.\n")
                .is_some()
        );
        assert_eq!(silent_refusal("  Logical volume \"a\" created.\n"), None);
        assert_eq!(silent_refusal(""), None);
    }
}
