//! The XML that `thin_dump` prints: which pool block holds each block of a thin device, and
//! since when. Units are the pool's data blocks.

use std::collections::HashMap;

use super::block_map::{BlockMap, Run};
use crate::error::{Error, Result};

/// One tag: `<name a="v" .../>`, `<name ...>` or `</name>`.
struct Tag<'a> {
    name: &'a str,
    closing: bool,
    attrs: Vec<(&'a str, &'a str)>,
}

impl Tag<'_> {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

fn bad(tool: &str, why: impl Into<String>) -> Error {
    Error::CommandFailed {
        tool: tool.into(),
        message: format!("unexpected output: {}", why.into()),
    }
}

/// The tags of `xml`, in order; text between them is ignored (these documents have none).
fn tags<'a>(tool: &'a str, xml: &'a str) -> impl Iterator<Item = Result<Tag<'a>>> + 'a {
    let mut rest = xml;
    std::iter::from_fn(move || {
        let open = rest.find('<')?;
        let Some(len) = rest[open..].find('>') else {
            rest = "";
            return Some(Err(bad(tool, "a tag is not closed")));
        };
        let body = &rest[open + 1..open + len];
        rest = &rest[open + len + 1..];
        if body.starts_with('?') || body.starts_with('!') {
            return Some(Ok(Tag {
                name: "",
                closing: false,
                attrs: vec![],
            }));
        }
        Some(parse_tag(tool, body))
    })
}

fn parse_tag<'a>(tool: &str, body: &'a str) -> Result<Tag<'a>> {
    let closing = body.starts_with('/');
    let body = body.trim_start_matches('/').trim_end_matches('/');
    let (name, mut rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    let mut attrs = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (key, after) = rest
            .split_once("=\"")
            .ok_or_else(|| bad(tool, format!("attribute without a value in <{name}>")))?;
        let (value, after) = after
            .split_once('"')
            .ok_or_else(|| bad(tool, format!("unterminated attribute in <{name}>")))?;
        attrs.push((key.trim(), value));
        rest = after;
    }
    Ok(Tag {
        name,
        closing,
        attrs,
    })
}

fn num(tool: &str, tag: &Tag, key: &str) -> Result<u64> {
    let v = tag
        .attr(key)
        .ok_or_else(|| bad(tool, format!("<{}> without {key}", tag.name)))?;
    v.parse().map_err(|_| {
        bad(
            tool,
            format!("{key}=\"{}\" is not a number", crate::units::clip(v)),
        )
    })
}

/// The pool's data block size in bytes, from `<superblock data_block_size=sectors>`.
fn block_size(tool: &str, tag: &Tag) -> Result<u64> {
    let sectors = num(tool, tag, "data_block_size")?;
    if sectors == 0 || sectors > 1 << 21 {
        return Err(bad(tool, format!("data_block_size {sectors}")));
    }
    Ok(sectors * 512)
}

/// Thin device `dev_id`'s block map, from `thin_dump`. thin-tools 1.x may share subtrees:
/// `<def name>` ... `</def>` and `<ref name>`.
pub fn parse_map(xml: &str, dev_id: u32) -> Result<BlockMap> {
    const T: &str = "thin_dump";
    let mut block = None;
    let mut defs: HashMap<String, Vec<Run>> = HashMap::new();
    let mut def: Option<(String, Vec<Run>)> = None;
    let mut in_dev = false;
    let mut found = false;
    let mut runs = Vec::new();
    for tag in tags(T, xml) {
        let tag = tag?;
        let run = match (tag.name, tag.closing) {
            ("superblock", false) => {
                block = Some(block_size(T, &tag)?);
                continue;
            }
            ("device", false) => {
                in_dev = num(T, &tag, "dev_id")? == u64::from(dev_id);
                found |= in_dev;
                continue;
            }
            ("device", true) => {
                in_dev = false;
                continue;
            }
            ("def", false) => {
                let name = tag
                    .attr("name")
                    .ok_or_else(|| bad(T, "<def> without a name"))?;
                def = Some((name.to_string(), Vec::new()));
                continue;
            }
            ("def", true) => {
                if let Some((name, v)) = def.take() {
                    defs.insert(name, v);
                }
                continue;
            }
            ("ref", false) => {
                if in_dev {
                    let name = tag.attr("name").unwrap_or_default();
                    let shared = defs.get(name).ok_or_else(|| {
                        bad(
                            T,
                            format!("<ref> to an unknown def '{}'", crate::units::clip(name)),
                        )
                    })?;
                    runs.extend_from_slice(shared);
                }
                continue;
            }
            ("range_mapping", false) => Run {
                vblock: num(T, &tag, "origin_begin")?,
                dblock: num(T, &tag, "data_begin")?,
                len: num(T, &tag, "length")?,
                time: time(&tag)?,
            },
            ("single_mapping", false) => Run {
                vblock: num(T, &tag, "origin_block")?,
                dblock: num(T, &tag, "data_block")?,
                len: 1,
                time: time(&tag)?,
            },
            _ => continue,
        };
        let b = block.ok_or_else(|| bad(T, "a mapping before the superblock"))?;
        // Refuse ranges that would overflow as bytes, here where the input is.
        if !run.fits(b) {
            return Err(bad(T, "a range beyond 2^64 bytes"));
        }
        if let Some((_, v)) = def.as_mut() {
            v.push(run);
        } else if in_dev {
            runs.push(run);
        }
    }
    let block = block.ok_or_else(|| bad(T, "no superblock"))?;
    if !found {
        return Err(bad(T, format!("no device {dev_id} in the pool's metadata")));
    }
    BlockMap::of_runs(block, runs).map_err(|why| bad(T, why))
}

/// A mapping's time stamp: dm-thin keeps 24 bits of it.
fn time(tag: &Tag) -> Result<u32> {
    let t = num("thin_dump", tag, "time")?;
    u32::try_from(t).map_err(|_| bad("thin_dump", format!("time=\"{t}\" is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::extent::Extent;

    /// The block size and mapped ranges, as export reads them.
    fn parse_dump(xml: &str, dev_id: u32) -> Result<(u64, Vec<Extent>)> {
        parse_map(xml, dev_id).map(|m| (m.block, m.extents()))
    }

    const DUMP: &str = r#"<superblock uuid="" time="1" transaction="3" flags="0" version="2" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="5" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="10" length="3" time="0"/>
    <single_mapping origin_block="7" data_block="20" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="4" transaction="0" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="10" length="2" time="0"/>
    <single_mapping origin_block="7" data_block="30" time="1"/>
    <single_mapping origin_block="8" data_block="31" time="1"/>
  </device>
</superblock>"#;

    fn x(v: &[(u64, u64)]) -> Vec<Extent> {
        v.iter()
            .map(|&(s, l)| Extent::new(s * 65536, l * 65536))
            .collect()
    }

    #[test]
    fn parses_thin_dump() {
        assert_eq!(parse_dump(DUMP, 2).unwrap(), (65536, x(&[(0, 2), (7, 2)])));
        assert_eq!(parse_dump(DUMP, 1).unwrap().1, x(&[(0, 3), (7, 1)]));
        assert!(parse_dump(DUMP, 3).is_err());
        assert!(parse_dump("", 1).is_err());
        assert!(parse_dump("<superblock data_block_size=\"0\">", 1).is_err());
        assert!(parse_dump("<superblock data_block_size=\"128\"><device dev_id=\"1\"><single_mapping origin_block=\"x\"/>", 1).is_err());
        let huge = "<superblock data_block_size=\"128\"><device dev_id=\"1\"><range_mapping origin_begin=\"18446744073709551615\" data_begin=\"0\" length=\"2\" time=\"0\"/>";
        assert!(parse_dump(huge, 1).is_err());
    }

    /// A damaged dump that maps one block twice is refused here, where the input is:
    /// `block_map::diff` walks runs in order and would underflow on an overlap (found by
    /// fuzz_thin_xml).
    #[test]
    fn refuses_a_block_mapped_twice() {
        let xml = r#"<superblock data_block_size="128"><device dev_id="1">
  <range_mapping origin_begin="0" data_begin="10" length="10" time="0"/>
  <range_mapping origin_begin="2" data_begin="50" length="2" time="0"/>
</device></superblock>"#;
        let e = parse_dump(xml, 1).unwrap_err().to_string();
        assert!(e.contains("a block mapped twice"), "{e}");
    }

    #[test]
    fn parses_shared_subtrees() {
        let xml = r#"<superblock data_block_size="128">
  <def name="17"><range_mapping origin_begin="4" data_begin="1" length="2" time="0"/></def>
  <device dev_id="1"><ref name="17"/><single_mapping origin_block="0" data_block="9" time="0"/></device>
  <device dev_id="2"><ref name="17"/></device>
</superblock>"#;
        assert_eq!(parse_dump(xml, 1).unwrap().1, x(&[(0, 1), (4, 2)]));
        assert_eq!(parse_dump(xml, 2).unwrap().1, x(&[(4, 2)]));
        assert!(parse_dump(
            "<superblock data_block_size=\"128\"><device dev_id=\"1\"><ref name=\"9\"/>",
            1
        )
        .is_err());
    }
}
