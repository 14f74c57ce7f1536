//! The pool's device-details tree, read by thinsr itself from a metadata snapshot: each thin
//! device's mapped block count as the kernel keeps it. `thin_ls` gives the same numbers for
//! a process start and a walk of every mapping; this reads a few 4 KiB blocks, so listing a
//! thousand VDIs costs next to nothing beyond the lvm report.
//!
//! On-disk layout (linux drivers/md/dm-thin-metadata.c, persistent-data/dm-btree-internal.h):
//! the superblock at block 0 names the snapshot's copy of itself (`held_root`), whose
//! `device_details_root` is a btree keyed by device id; a leaf value (24 bytes) starts with
//! the mapped block count. Every block carries a crc32c of the rest of it, checked here: what does not check
//! out is refused, never guessed at.

use crate::image::le::{get32 as u32_at, get64 as u64_at};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::aligned::AlignedBuf;
use crate::error::{Error, Result};
use crate::units::Bytes;

pub const BLOCK: usize = 4096;
const SB_MAGIC: u64 = 27_022_010;
const SB_CSUM_XOR: u32 = 160_774;
const NODE_CSUM_XOR: u32 = 121_107;
pub(super) const NODE_HEADER: usize = 32;
pub(super) const INTERNAL_NODE: u32 = 1;
pub(super) const LEAF_NODE: u32 = 2;
const DETAILS_VALUE: usize = 24;
/// Far deeper than a tree of 2^24 devices can be.
const MAX_DEPTH: usize = 16;

/// What the snapshot says of the pool's devices.
#[derive(Debug, PartialEq)]
pub struct Details {
    pub data_block_size: Bytes,
    /// Mapped data blocks per thin device id.
    pub mapped_blocks: BTreeMap<u32, u64>,
}

impl Details {
    pub fn mapped_bytes(&self) -> BTreeMap<u32, u64> {
        let block = self.data_block_size.0;
        self.mapped_blocks
            .iter()
            .map(|(&id, &n)| (id, n.saturating_mul(block)))
            .collect()
    }
}

/// Reads the details of the metadata snapshot held on the pool's metadata device `tmeta`
/// (reserved by the caller). O_DIRECT: the kernel writes that device past the page cache.
pub fn read(tmeta: &Path) -> Result<Details> {
    let file = open(tmeta)?;
    let mut buf = AlignedBuf::zeroed(BLOCK);
    let read_block =
        |n: u64| -> std::result::Result<Vec<u8>, String> { read_at(&file, &mut buf, n) };
    parse(read_block).map_err(|why| {
        Error::DmFailed(format!(
            "the pool's metadata snapshot on {} is unreadable: {why}",
            tmeta.display()
        ))
    })
}

/// The pool's metadata device, opened O_DIRECT.
pub(super) fn open(tmeta: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(tmeta)
        .map_err(|e| Error::io(format!("opening {}", tmeta.display()), e))
}

pub(super) fn read_at(
    file: &File,
    buf: &mut AlignedBuf,
    n: u64,
) -> std::result::Result<Vec<u8>, String> {
    let at = n
        .checked_mul(BLOCK as u64)
        .ok_or_else(|| format!("block {n} is out of range"))?;
    file.read_exact_at(buf.as_mut_slice(), at)
        .map_err(|e| format!("reading block {n}: {e}"))?;
    Ok(buf.as_slice().to_vec())
}

/// Walks the snapshot's details tree through `read_block` (block number to 4 KiB).
pub fn parse(
    mut read_block: impl FnMut(u64) -> std::result::Result<Vec<u8>, String>,
) -> std::result::Result<Details, String> {
    let snap = held_superblock(&mut read_block)?;
    let nr_blocks = u64_at(&snap, 344);
    let mut details = Details {
        data_block_size: Bytes(u64::from(u32_at(&snap, 336)) * 512),
        mapped_blocks: BTreeMap::new(),
    };
    // A tree meets each block once: a block seen twice is a loop or a shared subtree,
    // neither of which this tree may have.
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![(u64_at(&snap, 328), 0usize)];
    while let Some((at, depth)) = stack.pop() {
        if depth > MAX_DEPTH || at >= nr_blocks || !seen.insert(at) {
            return Err(format!("the details tree is malformed at block {at}"));
        }
        let node = read_block(at)?;
        let (flags, entries, value_size) = node_header(&node, at, DETAILS_VALUE)?;
        let max = u32_at(&node, 20) as usize;
        let values = NODE_HEADER + 8 * max;
        for i in 0..entries {
            let key = u64_at(&node, NODE_HEADER + 8 * i);
            let value = values + value_size * i;
            match flags {
                INTERNAL_NODE => stack.push((u64_at(&node, value), depth + 1)),
                _ => {
                    let id = u32::try_from(key)
                        .map_err(|_| format!("device id {key} is out of range"))?;
                    details.mapped_blocks.insert(id, u64_at(&node, value));
                }
            }
        }
    }
    Ok(details)
}

/// The superblock of the metadata snapshot the live superblock (block 0) names.
pub(super) fn held_superblock(
    read_block: &mut impl FnMut(u64) -> std::result::Result<Vec<u8>, String>,
) -> std::result::Result<Vec<u8>, String> {
    let live = superblock(&read_block(0)?, 0)?;
    let held = u64_at(&live, 56);
    if held == 0 {
        return Err("no metadata snapshot is held".into());
    }
    superblock(&read_block(held)?, held)
}

/// Checks a superblock read from block `at`; returns it.
fn superblock(b: &[u8], at: u64) -> std::result::Result<Vec<u8>, String> {
    if b.len() < BLOCK || u64_at(b, 32) != SB_MAGIC {
        return Err(format!("block {at} is not a thin-pool superblock"));
    }
    if u32_at(b, 0) != checksum(&b[4..BLOCK], SB_CSUM_XOR) || u64_at(b, 8) != at {
        return Err(format!("the superblock at block {at} fails its checksum"));
    }
    Ok(b.to_vec())
}

/// Checks a btree node read from block `at` whose leaves hold values of `leaf_value` bytes
/// (internal nodes: 8, a child's block): (flags, entries, value size).
pub(super) fn node_header(
    b: &[u8],
    at: u64,
    leaf_value: usize,
) -> std::result::Result<(u32, usize, usize), String> {
    let bad = |what: &str| format!("btree node {at}: {what}");
    if b.len() < BLOCK || u32_at(b, 0) != checksum(&b[4..BLOCK], NODE_CSUM_XOR) {
        return Err(bad("fails its checksum"));
    }
    if u64_at(b, 8) != at {
        return Err(bad("names another block"));
    }
    let flags = u32_at(b, 4);
    let (entries, max, value_size) = (
        u32_at(b, 16) as usize,
        u32_at(b, 20) as usize,
        u32_at(b, 24) as usize,
    );
    let wanted = match flags {
        INTERNAL_NODE => 8,
        LEAF_NODE => leaf_value,
        _ => return Err(bad("is neither internal nor leaf")),
    };
    if value_size != wanted || entries > max || NODE_HEADER + max * (8 + value_size) > BLOCK {
        return Err(bad("has an impossible shape"));
    }
    Ok((flags, entries, value_size))
}

/// dm-persistent-data's block checksum: crc32c seeded with all ones, not inverted at the
/// end, xored with a constant per block type.
fn checksum(data: &[u8], xor: u32) -> u32 {
    crc32c_update(!0, data) ^ xor
}

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Builds blocks as the kernel writes them, for the tests and the fuzz corpus.
#[cfg(test)]
pub(crate) mod image {
    use super::*;

    pub fn superblock(at: u64, held: u64, details_root: u64, nr_blocks: u64) -> Vec<u8> {
        superblock_with(at, held, details_root, 0, nr_blocks)
    }

    /// As `superblock`, with the data mapping tree's root.
    pub fn superblock_with(
        at: u64,
        held: u64,
        details_root: u64,
        mapping_root: u64,
        nr_blocks: u64,
    ) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK];
        b[320..328].copy_from_slice(&mapping_root.to_le_bytes());
        b[8..16].copy_from_slice(&at.to_le_bytes());
        b[32..40].copy_from_slice(&SB_MAGIC.to_le_bytes());
        b[56..64].copy_from_slice(&held.to_le_bytes());
        b[328..336].copy_from_slice(&details_root.to_le_bytes());
        b[336..340].copy_from_slice(&128u32.to_le_bytes()); // 64 KiB data blocks
        b[344..352].copy_from_slice(&nr_blocks.to_le_bytes());
        let c = checksum(&b[4..BLOCK], SB_CSUM_XOR);
        b[0..4].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// A node at block `at`: leaf entries are (device id, mapped blocks), internal ones
    /// (lowest key, child block).
    pub fn node(at: u64, leaf: bool, entries: &[(u64, u64)]) -> Vec<u8> {
        node_of(at, leaf, entries, DETAILS_VALUE)
    }

    /// As `node`, for leaves of `leaf_value` bytes (the mapping trees': 8).
    pub fn node_of(at: u64, leaf: bool, entries: &[(u64, u64)], leaf_value: usize) -> Vec<u8> {
        let value_size = if leaf { leaf_value } else { 8 };
        let max = (BLOCK - NODE_HEADER) / (8 + value_size);
        let mut b = vec![0u8; BLOCK];
        let flags = if leaf { LEAF_NODE } else { INTERNAL_NODE };
        b[4..8].copy_from_slice(&flags.to_le_bytes());
        b[8..16].copy_from_slice(&at.to_le_bytes());
        b[16..20].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        b[20..24].copy_from_slice(&(max as u32).to_le_bytes());
        b[24..28].copy_from_slice(&(value_size as u32).to_le_bytes());
        for (i, (k, v)) in entries.iter().enumerate() {
            let ko = NODE_HEADER + 8 * i;
            b[ko..ko + 8].copy_from_slice(&k.to_le_bytes());
            let vo = NODE_HEADER + 8 * max + value_size * i;
            b[vo..vo + 8].copy_from_slice(&v.to_le_bytes());
        }
        let c = checksum(&b[4..BLOCK], NODE_CSUM_XOR);
        b[0..4].copy_from_slice(&c.to_le_bytes());
        b
    }

    /// Recomputes a block's checksum, as a superblock when it has the magic, else as a node:
    /// fuzzed blocks then reach the parser's other checks.
    pub fn reseal(b: &mut [u8]) {
        if b.len() < BLOCK {
            return;
        }
        let c = if u64_at(b, 32) == SB_MAGIC {
            checksum(&b[4..BLOCK], SB_CSUM_XOR)
        } else {
            checksum(&b[4..BLOCK], NODE_CSUM_XOR)
        };
        b[0..4].copy_from_slice(&c.to_le_bytes());
    }

    /// A small pool's metadata: superblock, held copy at 5, a two-level details tree.
    pub fn sample() -> Vec<Vec<u8>> {
        let mut blocks = vec![vec![0u8; BLOCK]; 10];
        blocks[0] = superblock(0, 5, 9, 10);
        blocks[5] = superblock(5, 0, 6, 10);
        blocks[6] = node(6, false, &[(1, 7), (40, 8)]);
        blocks[7] = node(7, true, &[(1, 16), (2, 0), (3, 1)]);
        blocks[8] = node(8, true, &[(40, 100)]);
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_blocks(blocks: &[Vec<u8>]) -> std::result::Result<Details, String> {
        parse(|n| {
            blocks
                .get(n as usize)
                .cloned()
                .ok_or_else(|| format!("block {n} past the end"))
        })
    }

    #[test]
    fn crc32c_is_the_castagnoli_crc() {
        // The standard check value: inverted at both ends.
        assert_eq!(!crc32c_update(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn reads_the_snapshot_not_the_live_tree() {
        let d = parse_blocks(&image::sample()).unwrap();
        assert_eq!(d.data_block_size, Bytes(65536));
        let want: BTreeMap<u32, u64> = [(1, 16), (2, 0), (3, 1), (40, 100)].into();
        assert_eq!(d.mapped_blocks, want);
        assert_eq!(d.mapped_bytes()[&1], 16 * 65536);
    }

    #[test]
    fn refuses_what_does_not_check_out() {
        let good = image::sample();
        let mut no_snap = good.clone();
        no_snap[0] = image::superblock(0, 0, 9, 10);
        assert!(parse_blocks(&no_snap)
            .unwrap_err()
            .contains("no metadata snapshot"));
        for (block, byte) in [(0, 60), (5, 330), (6, 40), (7, 3000)] {
            let mut bad = good.clone();
            bad[block][byte] ^= 1;
            assert!(parse_blocks(&bad).is_err(), "block {block} byte {byte}");
        }
        // A node that points at itself, or past the device.
        let mut looped = good.clone();
        looped[6] = image::node(6, false, &[(1, 6)]);
        assert!(parse_blocks(&looped).is_err());
        let mut past = good.clone();
        past[6] = image::node(6, false, &[(1, 99)]);
        assert!(parse_blocks(&past).is_err());
        let mut moved = good;
        moved[8] = image::node(7, true, &[(40, 100)]);
        assert!(parse_blocks(&moved)
            .unwrap_err()
            .contains("names another block"));
    }
}
