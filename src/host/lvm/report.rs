//! lvm's JSON reports (`lvs`, `fullreport`) read into `Vg`, `Pv` and `Lv`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;

use super::{Lv, Pv, Vg};
use crate::error::{Error, Result};
use crate::units::Bytes;

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
    /// A segment's zeroing of new blocks: "zero" (lvm 2.02's binary fields print their
    /// name when set), "1" with `--binary`, empty or "0" when not. Absent: not asked.
    #[serde(borrow)]
    zero: Option<Cow<'a, str>>,
}

/// A number of a report. lvm2 2.02.180 (dom0's) pads some with a trailing space
/// (`"stripe_size":"0 "`), so every number is read trimmed.
fn number<T: std::str::FromStr>(v: &str) -> Option<T> {
    v.trim().parse().ok()
}

fn bytes(v: &str, key: &str) -> Result<Bytes> {
    number(v).map(Bytes).ok_or_else(|| Error::LvmFailed {
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
        name: v.vg_name.to_string().into(),
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

/// The segment facts an LV row lacks.
#[derive(Default, Clone, Copy)]
struct Seg {
    thin_id: Option<u64>,
    chunk: Option<u64>,
    zero: Option<bool>,
}

impl Seg {
    fn of(s: &Row) -> Seg {
        Seg {
            thin_id: number(&s.thin_id),
            chunk: number(&s.chunk_size),
            zero: s
                .zero
                .as_deref()
                .map(|z| !matches!(z.trim(), "" | "0" | "unknown")),
        }
    }
}

/// An LV from its report row, with its segment's facts.
fn lv_from(l: &Row, seg: Seg) -> Result<Lv> {
    let attr: &str = &l.lv_attr;
    let state = attr.as_bytes().get(4).copied().unwrap_or(b'-');
    // a(ctive), s(uspended), d/i (device present without/with an inactive table), h(eld).
    let active = matches!(state, b'a' | b's' | b'd' | b'i' | b'h');
    Ok(Lv {
        name: l.lv_name.to_string().into(),
        uuid: l.lv_uuid.to_string(),
        size: bytes(&l.lv_size, "lv_size")?,
        tags: tags(&l.lv_tags),
        attr: attr.into(),
        layout: l.lv_layout.to_string(),
        pool: l.pool_lv.to_string(),
        origin: l.origin.to_string(),
        data_percent: number(&l.data_percent),
        metadata_percent: number(&l.metadata_percent),
        metadata_size: number(&l.lv_metadata_size).map(Bytes),
        active,
        open: attr.as_bytes().get(5) == Some(&b'o'),
        thin_id: seg.thin_id.and_then(|id| u32::try_from(id).ok()),
        chunk_size: seg.chunk.filter(|&c| c > 0).map(Bytes),
        zero: seg.zero,
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
            name: first.vg_name.to_string().into(),
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
            vg.lvs.push(lv_from(row, Seg::of(row))?);
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
        // An LV of several segments keeps its first's facts (thin LVs have one).
        let mut segs: HashMap<&str, Seg> = HashMap::new();
        for s in &r.seg {
            segs.entry(&*s.lv_uuid).or_insert_with(|| Seg::of(s));
        }
        for l in &r.lv {
            let seg = segs.get(&*l.lv_uuid).copied().unwrap_or_default();
            vg.lvs.push(lv_from(l, seg)?);
        }
        vgs.push(vg);
    }
    Ok(vgs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::lvm::{TAG_OWNED, TAG_SR};

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
    fn a_lean_report_takes_zeroing_from_the_segment() {
        let lean = |zero: &str| {
            SAMPLE.replace(r#""lv_attr":"twi-aotz--", "#, "").replace(
                r#"{"lv_uuid":"x", "thin_id":"", "chunk_size":"65536"}"#,
                &format!(
                    r#"{{"lv_uuid":"x", "thin_id":"", "chunk_size":"65536", "zero":"{zero}"}}"#
                ),
            )
        };
        for (zero, want) in [("zero", true), ("1", true), ("", false), ("0", false)] {
            let vgs = parse_report(&lean(zero)).unwrap();
            let pool = vgs[0].lv("pool").unwrap();
            assert_eq!(pool.zeroes_new_blocks(), want, "{zero:?}");
            // Without lv_attr nothing is known active: the caller marks it.
            assert!(!pool.active);
        }
        // Not asked: lv_attr says.
        let vgs = parse_report(SAMPLE).unwrap();
        assert!(vgs[0].lv("pool").unwrap().zeroes_new_blocks());
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
    fn numbers_with_dom0s_trailing_space_are_read() {
        let json = r#"{"report": [{"lv": [{"lv_name":"a", "vg_name":"v", "lv_size":"4096 ", "lv_tags":"", "lv_attr":"Vwi-a-tz--", "thin_id":"7 ", "chunk_size":"65536 ", "data_percent":"12.50 "}]}]}"#;
        let vg = parse_lvs(json, false).unwrap().unwrap();
        let a = vg.lv("a").unwrap();
        assert_eq!(
            (a.size, a.thin_id, a.chunk_size, a.data_percent),
            (Bytes(4096), Some(7), Some(Bytes(65536)), Some(12.5))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_report("not json").unwrap_err().code(), "LVM_FAILED");
        let bad = SAMPLE.replace("\"8581545984\"", "\"lots\"");
        assert_eq!(parse_report(&bad).unwrap_err().code(), "LVM_FAILED");
    }
}
