//! A thin device's block map (which pool block holds each of its blocks, and when that
//! mapping was made), what differs between two maps, and the changed-block bitmap xapi
//! asks for. Pure: the maps come from `thin_dump` or from a map saved by `data-destroy`.
//!
//! Why the mapping's time matters: between two live thin devices a pool block they both
//! map is held by both, so equal block numbers mean equal data (what `thin_delta` checks).
//! A map saved before its device was deleted holds no block: a block freed with it may be
//! handed out again and mapped at the very same place. dm-thin stamps every mapping with
//! the pool's snapshot counter, which grew when that snapshot was taken, so a mapping made
//! since never carries the stamp of one the saved map holds: (block, time) pairs compare
//! exactly, saved or live.

use super::extent::{normalize, Extent};
use crate::error::{Error, Result};

/// Blocks `[vblock, vblock+len)` of the device map to pool blocks `[dblock, dblock+len)`,
/// all stamped `time`. Units are the pool's data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Run {
    pub vblock: u64,
    pub dblock: u64,
    pub len: u64,
    pub time: u32,
}

/// One thin device's map: the pool's block size in bytes and sorted, disjoint runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BlockMap {
    pub block: u64,
    pub runs: Vec<Run>,
}

/// Between two maps (left: older, right: newer), in bytes: what the right one maps
/// differently (changed or new), and what only the left one maps (discarded since).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub block: u64,
    pub changed: Vec<Extent>,
    pub removed: Vec<Extent>,
}

/// The granularity of xapi's changed-block bitmaps: Xen Orchestra assumes 64 KiB per bit
/// and xapi passes on only the bitmap.
pub const CBT_BLOCK: u64 = 64 << 10;

const MAGIC: &[u8; 8] = b"THINSRBM";
const VERSION: u32 = 1;
const RUN_BYTES: usize = 28;

impl Run {
    /// Whether both its ranges end within 2^64 bytes with pool blocks of `block` bytes
    /// (so every byte offset computed from it is exact).
    pub fn fits(&self, block: u64) -> bool {
        let end = |start: u64| start.checked_add(self.len)?.checked_mul(block);
        end(self.vblock).and(end(self.dblock)).is_some()
    }
}

impl BlockMap {
    /// Sorts the runs and merges the ones that continue each other.
    pub fn normalized(mut self) -> BlockMap {
        self.runs.retain(|r| r.len > 0);
        self.runs.sort_unstable();
        let mut out: Vec<Run> = Vec::with_capacity(self.runs.len());
        for r in self.runs {
            match out.last_mut() {
                Some(l)
                    if l.vblock + l.len == r.vblock
                        && l.dblock + l.len == r.dblock
                        && l.time == r.time =>
                {
                    l.len += r.len
                }
                _ => out.push(r),
            }
        }
        self.runs = out;
        self
    }

    /// The map of `runs`, normalized, or why it cannot be one device's: a block mapped by
    /// two runs (damaged input; `diff` walks runs in order and needs them disjoint).
    pub fn of_runs(block: u64, runs: Vec<Run>) -> std::result::Result<BlockMap, &'static str> {
        let m = BlockMap { block, runs }.normalized();
        if m.runs
            .windows(2)
            .any(|w| w[0].vblock + w[0].len > w[1].vblock)
        {
            return Err("a block mapped twice");
        }
        Ok(m)
    }

    /// The mapped ranges in bytes, normalized.
    pub fn extents(&self) -> Vec<Extent> {
        let e = self.runs.iter();
        normalize(
            e.map(|r| Extent::new(r.vblock * self.block, r.len * self.block))
                .collect(),
        )
    }

    /// The map as saved on disk: magic, version, block size, run count, runs (little
    /// endian), and a CRC-32 of all that, so that a torn or foreign LV is never read as one.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + self.runs.len() * RUN_BYTES);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.block.to_le_bytes());
        b.extend_from_slice(&(self.runs.len() as u64).to_le_bytes());
        for r in &self.runs {
            b.extend_from_slice(&r.vblock.to_le_bytes());
            b.extend_from_slice(&r.dblock.to_le_bytes());
            b.extend_from_slice(&r.len.to_le_bytes());
            b.extend_from_slice(&r.time.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads what `encode` wrote (trailing bytes, the rest of the LV, are ignored).
    pub fn decode(b: &[u8]) -> std::result::Result<BlockMap, String> {
        let bad = |why: &str| why.to_string();
        if b.len() < 28 || &b[..8] != MAGIC {
            return Err(bad("no map here"));
        }
        let u64_at = |i: usize| super::le::get64(b, i);
        let u32_at = |i: usize| super::le::get32(b, i);
        if u32_at(8) != VERSION {
            return Err(bad("a version this thinsr does not know"));
        }
        let count = usize::try_from(u64_at(20)).map_err(|_| bad("too many runs"))?;
        let end = count
            .checked_mul(RUN_BYTES)
            .and_then(|n| n.checked_add(28))
            .filter(|&n| n + 4 <= b.len())
            .ok_or_else(|| bad("shorter than its run count says"))?;
        if u32_at(end) != crc32fast::hash(&b[..end]) {
            return Err(bad("its checksum does not match"));
        }
        let runs: Vec<Run> = (0..count)
            .map(|i| {
                let at = 28 + i * RUN_BYTES;
                Run {
                    vblock: u64_at(at),
                    dblock: u64_at(at + 8),
                    len: u64_at(at + 16),
                    time: u32_at(at + 24),
                }
            })
            .collect();
        let block = u64_at(12);
        if block == 0 {
            return Err(bad("a block size of 0"));
        }
        if !runs.iter().all(|r| r.fits(block)) {
            return Err(bad("a run beyond 2^64 bytes"));
        }
        BlockMap::of_runs(block, runs).map_err(bad)
    }
}

/// What differs between `left` and `right` (same pool, so the same block size): a block
/// differs when one maps it and the other does not, or both map it to different
/// (pool block, time) pairs.
pub fn diff(left: &BlockMap, right: &BlockMap) -> Result<Delta> {
    if left.block != right.block {
        return Err(Error::InvalidArgument(format!(
            "the two maps have different block sizes ({} and {} bytes): they are not of one pool",
            left.block, right.block
        )));
    }
    let block = left.block;
    let (a, b) = (&left.runs, &right.runs);
    let (mut i, mut j, mut pos) = (0usize, 0usize, 0u64);
    let mut d = Delta {
        block,
        ..Delta::default()
    };
    // At `pos`: the mapping of each side there, and where that stops being true.
    let at = |runs: &[Run], k: usize, pos: u64| -> (Option<(u64, u32)>, u64) {
        match runs.get(k) {
            None => (None, u64::MAX),
            Some(r) if r.vblock <= pos => (
                Some((r.dblock + (pos - r.vblock), r.time)),
                r.vblock + r.len,
            ),
            Some(r) => (None, r.vblock),
        }
    };
    while i < a.len() || j < b.len() {
        let (ma, ea) = at(a, i, pos);
        let (mb, eb) = at(b, j, pos);
        let next = ea.min(eb);
        let e = || Extent::new(pos * block, (next - pos) * block);
        match (ma, mb) {
            (Some(x), Some(y)) if x != y => d.changed.push(e()),
            (None, Some(_)) => d.changed.push(e()),
            (Some(_), None) => d.removed.push(e()),
            _ => {}
        }
        pos = next;
        if a.get(i).is_some_and(|r| r.vblock + r.len <= pos) {
            i += 1;
        }
        if b.get(j).is_some_and(|r| r.vblock + r.len <= pos) {
            j += 1;
        }
    }
    d.changed = normalize(d.changed);
    d.removed = normalize(d.removed);
    Ok(d)
}

/// The bitmap of `changed` over the extent `[offset, offset+length)` of a disk of `size`
/// bytes, widened to whole 64 KiB blocks and cut at the disk's end (`length` None: to the
/// end). Bit i stands for block first+i, where first is the extent's first block; bits go
/// most significant first within each byte (byte i/8, mask 0x80 >> i%8), as XenServer's
/// CBT bitmaps (Python's bitarray and bitstring read them so). Returns (first block,
/// bitmap).
pub fn bitmap(changed: &[Extent], size: u64, offset: u64, length: Option<u64>) -> (u64, Vec<u8>) {
    if offset >= size {
        return (offset / CBT_BLOCK, vec![]);
    }
    let end = length.map_or(size, |l| offset.saturating_add(l).min(size));
    let first = offset / CBT_BLOCK;
    let last = end.div_ceil(CBT_BLOCK).max(first);
    let n = last - first;
    let mut bits = vec![0u8; n.div_ceil(8) as usize];
    for e in changed {
        let lo = (e.start / CBT_BLOCK).max(first);
        let hi = e.end().div_ceil(CBT_BLOCK).min(last);
        for k in lo..hi {
            let i = (k - first) as usize;
            bits[i / 8] |= 0x80 >> (i % 8);
        }
    }
    (first, bits)
}

/// The changed extents a bitmap stands for (whole 64 KiB blocks, cut at `size`).
pub fn bitmap_extents(first: u64, bits: &[u8], size: u64) -> Vec<Extent> {
    let mut v = Vec::new();
    for (i, byte) in bits.iter().enumerate() {
        for k in 0..8 {
            if byte & (0x80 >> k) != 0 {
                let start = (first + (i * 8 + k) as u64) * CBT_BLOCK;
                if start < size {
                    v.push(Extent::new(start, CBT_BLOCK.min(size - start)));
                }
            }
        }
    }
    normalize(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(block: u64, runs: &[(u64, u64, u64, u32)]) -> BlockMap {
        BlockMap {
            block,
            runs: runs
                .iter()
                .map(|&(vblock, dblock, len, time)| Run {
                    vblock,
                    dblock,
                    len,
                    time,
                })
                .collect(),
        }
        .normalized()
    }

    fn x(block: u64, v: &[(u64, u64)]) -> Vec<Extent> {
        v.iter()
            .map(|&(s, l)| Extent::new(s * block, l * block))
            .collect()
    }

    #[test]
    fn diff_sees_changed_new_and_discarded_blocks() {
        let k = 65536;
        let left = map(k, &[(0, 10, 4, 0), (8, 20, 2, 0)]);
        // Block 1 rewritten, 3 discarded, 5 new, 8-9 untouched.
        let right = map(
            k,
            &[
                (0, 10, 1, 0),
                (1, 30, 1, 1),
                (2, 12, 1, 0),
                (5, 31, 1, 1),
                (8, 20, 2, 0),
            ],
        );
        let d = diff(&left, &right).unwrap();
        assert_eq!(d.changed, x(k, &[(1, 1), (5, 1)]));
        assert_eq!(d.removed, x(k, &[(3, 1)]));
        assert_eq!(
            diff(&right, &right).unwrap(),
            Delta {
                block: k,
                ..Delta::default()
            }
        );
        assert!(diff(&left, &map(2 * k, &[])).is_err());
    }

    #[test]
    fn a_block_mapped_again_at_the_same_place_is_still_changed() {
        // The saved map's block 7 was freed with its snapshot and handed out again to the
        // same place: only its time tells them apart.
        let saved = map(65536, &[(7, 40, 1, 2)]);
        let now = map(65536, &[(7, 40, 1, 5)]);
        assert_eq!(diff(&saved, &now).unwrap().changed, x(65536, &[(7, 1)]));
    }

    #[test]
    fn maps_merge_their_runs_and_survive_encoding() {
        let m = map(
            524288,
            &[(3, 9, 1, 1), (0, 5, 2, 0), (2, 7, 1, 0), (4, 10, 2, 1)],
        );
        assert_eq!(m.runs.len(), 2, "{m:?}");
        assert_eq!(crate::image::extent::total(&m.extents()), 6 * 524288);
        let mut bytes = m.encode();
        assert_eq!(BlockMap::decode(&bytes).unwrap(), m);
        bytes.extend_from_slice(&[0; 4096]);
        assert_eq!(BlockMap::decode(&bytes).unwrap(), m);
        bytes[30] ^= 1;
        assert!(BlockMap::decode(&bytes).is_err());
        assert!(BlockMap::decode(&[0; 64]).is_err());
        assert!(BlockMap::decode(b"THINSRBM").is_err());
        let mut short = m.encode();
        short.truncate(40);
        assert!(BlockMap::decode(&short).is_err());
    }

    #[test]
    fn bitmaps_are_64k_per_bit_most_significant_first() {
        let size = 20 * CBT_BLOCK + 512;
        // Inside block 0, across blocks 2-3, the last sector (block 20).
        let changed = [
            Extent::new(4096, 4096),
            Extent::new(3 * CBT_BLOCK - 512, 1024),
            Extent::new(size - 512, 512),
        ];
        let (first, bits) = bitmap(&changed, size, 0, None);
        assert_eq!(first, 0);
        assert_eq!(bits, vec![0b1011_0000, 0, 0b0000_1000]);
        assert_eq!(
            bitmap_extents(first, &bits, size),
            vec![
                Extent::new(0, CBT_BLOCK),
                Extent::new(2 * CBT_BLOCK, 2 * CBT_BLOCK),
                Extent::new(20 * CBT_BLOCK, 512)
            ]
        );
        // An extent off block boundaries is widened: bytes 65537..131073 cover blocks 1-2.
        let (first, bits) = bitmap(&changed, size, CBT_BLOCK + 1, Some(CBT_BLOCK));
        assert_eq!((first, bits), (1, vec![0b0100_0000]));
        // Past the end: nothing.
        assert_eq!(bitmap(&changed, size, size + 1, None).1, Vec::<u8>::new());
    }
}
