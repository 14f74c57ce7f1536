//! The lvm adapter: runs the `lvm` binary with argument vectors and parses its JSON reports.
//! Every lvm call costs 0.3-1 s in the test VM (tens of ms on a host), so a command makes
//! one report at most (an `lvs`; a `fullreport` when it needs PVs) and this module counts
//! the calls and their time.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::units::Bytes;

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
    pub name: String,
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
    pub name: String,
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
}

impl Lv {
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

// The raw report: every value is a string, absent is "". Rows borrow from the JSON text (a
// thousand LVs are half a megabyte: a map of owned strings per row took five times longer).
#[derive(Deserialize)]
struct RawReport<'a> {
    #[serde(borrow)]
    report: Vec<RawVgReport<'a>>,
}
#[derive(Deserialize)]
struct RawVgReport<'a> {
    #[serde(default, borrow)]
    vg: Vec<Row<'a>>,
    #[serde(default, borrow)]
    pv: Vec<Row<'a>>,
    #[serde(default, borrow)]
    lv: Vec<Row<'a>>,
    #[serde(default, borrow)]
    seg: Vec<Row<'a>>,
}

/// Every field thinsr asks any report for.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Row<'a> {
    #[serde(borrow)]
    vg_name: Cow<'a, str>,
    #[serde(borrow)]
    vg_uuid: Cow<'a, str>,
    #[serde(borrow)]
    vg_size: Cow<'a, str>,
    #[serde(borrow)]
    vg_free: Cow<'a, str>,
    #[serde(borrow)]
    vg_extent_size: Cow<'a, str>,
    #[serde(borrow)]
    vg_tags: Cow<'a, str>,
    #[serde(borrow)]
    pv_name: Cow<'a, str>,
    #[serde(borrow)]
    pv_size: Cow<'a, str>,
    #[serde(borrow)]
    pv_free: Cow<'a, str>,
    #[serde(borrow)]
    lv_name: Cow<'a, str>,
    #[serde(borrow)]
    lv_uuid: Cow<'a, str>,
    #[serde(borrow)]
    lv_size: Cow<'a, str>,
    #[serde(borrow)]
    lv_tags: Cow<'a, str>,
    #[serde(borrow)]
    lv_attr: Cow<'a, str>,
    #[serde(borrow)]
    lv_layout: Cow<'a, str>,
    #[serde(borrow)]
    pool_lv: Cow<'a, str>,
    #[serde(borrow)]
    origin: Cow<'a, str>,
    #[serde(borrow)]
    data_percent: Cow<'a, str>,
    #[serde(borrow)]
    metadata_percent: Cow<'a, str>,
    #[serde(borrow)]
    lv_metadata_size: Cow<'a, str>,
    #[serde(borrow)]
    thin_id: Cow<'a, str>,
    #[serde(borrow)]
    chunk_size: Cow<'a, str>,
}

fn bytes(v: &str, key: &str) -> Result<Bytes> {
    v.parse().map(Bytes).map_err(|_| Error::LvmFailed {
        command: "lvm report".into(),
        message: format!("unexpected value '{v}' for {key}"),
    })
}
fn tags(v: &str) -> Vec<String> {
    v.split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

fn vg_from(v: &Row) -> Result<Vg> {
    Ok(Vg {
        name: v.vg_name.to_string(),
        uuid: v.vg_uuid.to_string(),
        size: bytes(&v.vg_size, "vg_size")?,
        free: bytes(&v.vg_free, "vg_free")?,
        extent_size: bytes(&v.vg_extent_size, "vg_extent_size")?,
        tags: tags(&v.vg_tags),
        pvs: Vec::new(),
        lvs: Vec::new(),
        vdi_index: Default::default(),
    })
}

/// An LV from its report row, with its segment's thin id and chunk size.
fn lv_from(l: &Row, thin_id: Option<u64>, chunk: Option<u64>) -> Result<Lv> {
    let attr: &str = &l.lv_attr;
    let state = attr.as_bytes().get(4).copied().unwrap_or(b'-');
    // a(ctive), s(uspended), d/i (device present without/with an inactive table), h(eld).
    let active = matches!(state, b'a' | b's' | b'd' | b'i' | b'h');
    Ok(Lv {
        name: l.lv_name.to_string(),
        uuid: l.lv_uuid.to_string(),
        size: bytes(&l.lv_size, "lv_size")?,
        tags: tags(&l.lv_tags),
        attr: attr.into(),
        layout: l.lv_layout.to_string(),
        pool: l.pool_lv.to_string(),
        origin: l.origin.to_string(),
        data_percent: l.data_percent.parse().ok(),
        metadata_percent: l.metadata_percent.parse().ok(),
        metadata_size: l.lv_metadata_size.parse().ok().map(Bytes),
        active,
        open: attr.as_bytes().get(5) == Some(&b'o'),
        thin_id: thin_id.and_then(|id| u32::try_from(id).ok()),
        chunk_size: chunk.filter(|&c| c > 0).map(Bytes),
    })
}

/// Parses `lvs --reportformat json` output of one VG: one row per segment, so an LV of
/// several segments appears once per segment. With `vg_fields` the rows carry the VG's own
/// fields; without, the VG has its name and LVs only. None when the VG has no LVs.
pub fn parse_lvs(json: &str, vg_fields: bool) -> Result<Option<Vg>> {
    let raw: RawReport = serde_json::from_str(json).map_err(|e| Error::LvmFailed {
        command: "lvs".into(),
        message: format!("unreadable JSON report: {e}"),
    })?;
    let rows: Vec<&Row> = raw.report.iter().flat_map(|r| &r.lv).collect();
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut vg = if vg_fields {
        vg_from(first)?
    } else {
        Vg {
            name: first.vg_name.to_string(),
            uuid: String::new(),
            size: Bytes(0),
            free: Bytes(0),
            extent_size: Bytes(0),
            tags: Vec::new(),
            pvs: Vec::new(),
            lvs: Vec::new(),
            vdi_index: Default::default(),
        }
    };
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        if seen.insert(&row.lv_name) {
            let (thin_id, chunk) = (row.thin_id.parse().ok(), row.chunk_size.parse().ok());
            vg.lvs.push(lv_from(row, thin_id, chunk)?);
        }
    }
    Ok(Some(vg))
}

/// Parses `lvm fullreport --reportformat json` output.
pub fn parse_report(json: &str) -> Result<Vec<Vg>> {
    let raw: RawReport = serde_json::from_str(json).map_err(|e| Error::LvmFailed {
        command: "fullreport".into(),
        message: format!("unreadable JSON report: {e}"),
    })?;
    let mut vgs = Vec::new();
    for r in raw.report {
        let Some(v) = r.vg.first() else { continue };
        let mut vg = vg_from(v)?;
        for p in &r.pv {
            vg.pvs.push(Pv {
                name: p.pv_name.to_string(),
                size: bytes(&p.pv_size, "pv_size")?,
                free: bytes(&p.pv_free, "pv_free")?,
            });
        }
        let (mut thin_ids, mut chunks) = (HashMap::new(), HashMap::new());
        for s in &r.seg {
            if let Ok(id) = s.thin_id.parse::<u64>() {
                thin_ids.insert(&*s.lv_uuid, id);
            }
            if let Ok(c) = s.chunk_size.parse::<u64>() {
                chunks.insert(&*s.lv_uuid, c);
            }
        }
        for l in &r.lv {
            let uuid: &str = &l.lv_uuid;
            vg.lvs.push(lv_from(
                l,
                thin_ids.get(uuid).copied(),
                chunks.get(uuid).copied(),
            )?);
        }
        vgs.push(vg);
    }
    Ok(vgs)
}

/// Runs lvm. Cheap to clone; counts invocations for `-v` and the benchmarks.
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
        let out = cmd
            .args(args)
            .env("LC_ALL", "C")
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::LvmFailed {
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
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// One report of VGs, their PVs and LVs: all VGs, or just `vg`.
    /// A VG that does not exist is `Ok(None)` when one was named.
    pub fn report(&self, vg: Option<&str>) -> Result<Vec<Vg>> {
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
            LV_FIELDS,
            "--configreport",
            "pvseg",
            "-o",
            "pvseg_start",
            "--configreport",
            "seg",
            "-o",
            SEG_FIELDS,
        ]);
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

    /// A VG's LVs as a listing needs them: names, sizes, tags, state and thin ids, nothing
    /// of the VG but its name. How much each thin LV holds comes from the pool's metadata
    /// (`thin::mapped_bytes`), so LVM is not asked for usage either: at a thousand LVs this
    /// report costs less than a bare `lvs`.
    pub fn report_listing(&self, vg: &str) -> Result<Vg> {
        self.lvs(vg, "lv_name,vg_name,lv_size,lv_tags,lv_attr,thin_id", false)
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

/// The device path LVM gives an active LV.
pub fn dev_path(vg: &str, lv: &str) -> String {
    format!("/dev/{vg}/{lv}")
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `--addtag T` for each tag.
pub fn tag_args(tags: &[String]) -> Vec<String> {
    tags.iter()
        .flat_map(|t| ["--addtag".to_string(), t.clone()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"  {
      "report": [
          {
              "vg": [
                  {"vg_name":"tvg", "vg_uuid":"u1", "vg_size":"8581545984", "vg_free":"7491026944", "vg_tags":"thinsr_owned,thinsr_sr=abc", "vg_extent_size":"4194304"}
              ],
              "pv": [
                  {"pv_name":"/dev/vda", "pv_size":"4290772992", "pv_free":"1", "vg_name":"tvg"}
              ],
              "lv": [
                  {"lv_name":"pool", "vg_name":"tvg", "lv_uuid":"x", "lv_size":"1073741824", "lv_tags":"thinsr_pool,thinsr_sr=abc", "lv_attr":"twi-aotz--", "lv_layout":"thin,pool", "pool_lv":"", "origin":"", "data_percent":"12.50", "metadata_percent":"11.04", "lv_metadata_size":"4194304", "lv_active":"active", "lv_device_open":"open", "lv_dm_path":"/dev/mapper/tvg-pool"},
                  {"lv_name":"disk", "vg_name":"tvg", "lv_uuid":"z", "lv_size":"104857600", "lv_tags":"thinsr_sr=abc,thinsr_vdi=v1", "lv_attr":"Vwi---tz-k", "lv_layout":"thin,sparse", "pool_lv":"pool", "origin":"", "data_percent":"", "metadata_percent":"", "lv_metadata_size":"", "lv_active":"", "lv_device_open":"", "lv_dm_path":""},
                  {"lv_name":"meta", "vg_name":"tvg", "lv_uuid":"y", "lv_size":"8388608", "lv_tags":"", "lv_attr":"-wi-------", "lv_layout":"linear", "pool_lv":"", "origin":"", "data_percent":"", "metadata_percent":"", "lv_metadata_size":"", "lv_active":"", "lv_device_open":"", "lv_dm_path":""}
              ],
              "pvseg": [], "seg": [{"lv_uuid":"x", "thin_id":"", "chunk_size":"65536"}, {"lv_uuid":"z", "thin_id":"3", "chunk_size":"0"}]
          }
      ]
  }"#;

    #[test]
    fn parses_fullreport() {
        let vgs = parse_report(SAMPLE).unwrap();
        assert_eq!(vgs.len(), 1);
        let vg = &vgs[0];
        assert_eq!(vg.size, Bytes(8581545984));
        assert!(vg.has_tag(TAG_OWNED));
        assert_eq!(vg.tag_value(TAG_SR), Some("abc"));
        assert_eq!(vg.pvs[0].name, "/dev/vda");
        let pool = vg.lv("pool").unwrap();
        assert!(pool.is_thin_pool() && pool.active && pool.open);
        assert_eq!(pool.data_percent, Some(12.5));
        assert_eq!(pool.metadata_size, Some(Bytes(4194304)));
        assert_eq!(pool.chunk_size, Some(Bytes(65536)));
        let meta = vg.lv("meta").unwrap();
        assert!(!meta.is_thin_pool() && !meta.active && meta.tags.is_empty());
        assert_eq!(meta.data_percent, None);
        assert_eq!(meta.thin_id, None);
        let disk = vg.vdi_lv("v1").unwrap();
        assert_eq!((disk.name.as_str(), disk.thin_id), ("disk", Some(3)));
        assert!(vg.vdi_lv("v2").is_none());
    }

    #[test]
    fn parses_lvs_with_vg_and_segment_fields() {
        let row = |name: &str, attr: &str, thin: &str, tags: &str| {
            format!(
                r#"{{"lv_name":"{name}", "vg_name":"my-vg", "lv_uuid":"u-{name}", "lv_size":"67108864", "lv_tags":"{tags}", "lv_attr":"{attr}", "lv_layout":"thin,sparse", "pool_lv":"pool", "origin":"", "data_percent":"", "metadata_percent":"", "lv_metadata_size":"", "thin_id":"{thin}", "chunk_size":"0", "vg_uuid":"g", "vg_size":"8581545984", "vg_free":"4194304", "vg_extent_size":"4194304", "vg_tags":"thinsr_owned"}}"#
            )
        };
        let json = format!(
            r#"{{"report": [{{"lv": [{}, {}, {}]}}]}}"#,
            row("a", "Vwi-aotz--", "1", "thinsr_vdi=v1"),
            row("b", "Vwi---tz-k", "2", "thinsr_vdi=v2,thinsr_sr=s"),
            // A second segment of `b`: the LV appears once.
            row("b", "Vwi---tz-k", "2", "thinsr_vdi=v2,thinsr_sr=s"),
        );
        let vg = parse_lvs(&json, true).unwrap().unwrap();
        assert_eq!(
            (vg.name.as_str(), vg.extent_size),
            ("my-vg", Bytes(4194304))
        );
        assert!(vg.has_tag(TAG_OWNED));
        assert_eq!(vg.lvs.len(), 2);
        let a = vg.vdi_lv("v1").unwrap();
        assert!(a.active && a.open);
        let b = vg.vdi_lv("v2").unwrap();
        assert!(!b.active && !b.open);
        assert_eq!((b.thin_id, b.chunk_size), (Some(2), None));
        assert!(vg.vdi_lv("v3").is_none());
        assert!(parse_lvs(r#"{"report": [{"lv": []}]}"#, true)
            .unwrap()
            .is_none());
        assert_eq!(parse_lvs("[", true).unwrap_err().code(), "LVM_FAILED");
        let listing = parse_lvs(
            r#"{"report": [{"lv": [{"lv_name":"a", "vg_name":"v", "lv_size":"4096", "lv_tags":"", "lv_attr":"Vwi-a-tz--", "thin_id":"7"}]}]}"#,
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!((listing.name.as_str(), listing.size), ("v", Bytes(0)));
        assert_eq!(listing.lv("a").unwrap().thin_id, Some(7));
    }

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
    fn rejects_garbage() {
        assert_eq!(parse_report("not json").unwrap_err().code(), "LVM_FAILED");
        let bad = SAMPLE.replace("\"8581545984\"", "\"lots\"");
        assert_eq!(parse_report(&bad).unwrap_err().code(), "LVM_FAILED");
    }
}
