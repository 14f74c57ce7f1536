//! What differs between two thin devices of a pool, read by thinsr itself from the metadata
//! snapshot's mapping trees, entering no subtree the two devices share.
//!
//! Why: `thin_dump` of both devices costs every mapping of both (a 16 GiB disk holds
//! 262,144), whatever changed. A snapshot and its origin share every subtree neither has
//! written since the snapshot, so a walk of the two trees side by side that skips a subtree
//! both hold reads only what changed and the paths to it: its cost follows the change, not
//! the disk (as `thin_delta` does; dom0's thin tools 0.7.3 have none that reads a snapshot
//! of live metadata).
//!
//! Layout (linux drivers/md/dm-thin-metadata.c): the superblock's `data_mapping_root`
//! (offset 320) is a btree keyed by device id whose values are the roots of each device's
//! own btree, keyed by virtual block, with values `pool block << 24 | time`. In an internal
//! node, key i is at most the lowest key under child i, and every key under child i is
//! below key i+1 (persistent-data's btree keeps key 0 lowered on insert). Every block is
//! checksummed (`details::node_header`); a tree that breaks these rules is refused.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use super::details::{self, LEAF_NODE, NODE_HEADER};
use crate::aligned::AlignedBuf;
use crate::error::{Error, Result};
use crate::image::block_map::Delta;
use crate::image::extent::{normalize, Extent};
use crate::image::le::{get32 as u32_at, get64 as u64_at};

type Read<'a> = dyn FnMut(u64) -> std::result::Result<Vec<u8>, String> + 'a;

/// Far deeper than a tree of 2^64 keys can be.
const MAX_HEIGHT: u32 = 32;

/// The difference between devices `base` and `new` on the metadata device `tmeta` (its
/// snapshot reserved by the caller), in bytes, and the tree nodes read to find it.
pub fn read_delta(tmeta: &Path, base: u32, new: u32) -> Result<(Delta, u64)> {
    let file = details::open(tmeta)?;
    let mut buf = AlignedBuf::zeroed(details::BLOCK);
    let mut read_block = |n: u64| details::read_at(&file, &mut buf, n);
    delta(&mut read_block, base, new).map_err(|why| {
        Error::DmFailed(format!(
            "the pool's metadata snapshot on {} is unreadable: {why}",
            tmeta.display()
        ))
    })
}

/// As `read_delta`, through `read_block` (block number to 4 KiB).
pub fn delta(
    read_block: &mut Read,
    base: u32,
    new: u32,
) -> std::result::Result<(Delta, u64), String> {
    let snap = details::held_superblock(&mut |n| read_block(n))?;
    let block = u64::from(u32_at(&snap, 336)) * 512;
    if block == 0 {
        return Err("the superblock gives a data block size of 0".into());
    }
    let mut walk = Walk {
        read_block,
        nr_blocks: u64_at(&snap, 344),
        cache: HashMap::new(),
        reads: 0,
    };
    let top = u64_at(&snap, 320);
    let device_root = |w: &mut Walk, id: u32| -> std::result::Result<u64, String> {
        w.lookup(top, u64::from(id))?
            .ok_or_else(|| format!("the pool has no thin device {id}"))
    };
    let (a, b) = (device_root(&mut walk, base)?, device_root(&mut walk, new)?);
    let (changed, removed) = walk.diff(a, b)?;
    let bytes = |blocks: Vec<u64>| -> std::result::Result<Vec<Extent>, String> {
        let v = blocks
            .into_iter()
            .map(|b| {
                b.checked_mul(block)
                    .map(|at| Extent::new(at, block))
                    .ok_or_else(|| format!("virtual block {b} is beyond 2^64 bytes"))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        Ok(normalize(v))
    };
    let delta = Delta {
        block,
        changed: bytes(changed)?,
        removed: bytes(removed)?,
    };
    Ok((delta, walk.reads))
}

/// One side of the walk, in key order: a subtree not yet read, or one mapping.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// The node at `block`, holding keys in `[lo, hi)`, `height` levels above its
    /// mappings (a leaf is 1).
    Sub {
        block: u64,
        lo: u64,
        hi: u64,
        height: u32,
    },
    Map {
        key: u64,
        value: u64,
    },
}

impl Item {
    fn range(&self) -> (u64, u64) {
        match *self {
            Item::Sub { lo, hi, .. } => (lo, hi),
            Item::Map { key, .. } => (key, key.saturating_add(1)),
        }
    }
    fn height(&self) -> u32 {
        match *self {
            Item::Sub { height, .. } => height,
            Item::Map { .. } => 0,
        }
    }
}

struct Walk<'a, 'b> {
    read_block: &'b mut Read<'a>,
    nr_blocks: u64,
    /// Nodes read while measuring a tree's height, used again when expanded.
    cache: HashMap<u64, Node>,
    reads: u64,
}

/// A checked node: whether it is a leaf, and its keys and values.
#[derive(Clone)]
struct Node {
    leaf: bool,
    keys: Vec<u64>,
    values: Vec<u64>,
}

impl Walk<'_, '_> {
    fn node(&mut self, at: u64) -> std::result::Result<Node, String> {
        if let Some(n) = self.cache.get(&at) {
            return Ok(n.clone());
        }
        if at >= self.nr_blocks {
            return Err(format!("a tree points past the device, at block {at}"));
        }
        self.reads += 1;
        let b = (self.read_block)(at)?;
        let (flags, entries, _) = details::node_header(&b, at, 8)?;
        let max = u32_at(&b, 20) as usize;
        let keys: Vec<u64> = (0..entries)
            .map(|i| u64_at(&b, NODE_HEADER + 8 * i))
            .collect();
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("btree node {at}: its keys are out of order"));
        }
        let values = (0..entries)
            .map(|i| u64_at(&b, NODE_HEADER + 8 * max + 8 * i))
            .collect();
        Ok(Node {
            leaf: flags == LEAF_NODE,
            keys,
            values,
        })
    }

    /// The value of `key` in the tree at `root`, if any (the top-level tree's lookup).
    fn lookup(&mut self, root: u64, key: u64) -> std::result::Result<Option<u64>, String> {
        let mut at = root;
        for _ in 0..MAX_HEIGHT {
            let n = self.node(at)?;
            if n.leaf {
                return Ok(n.keys.iter().position(|&k| k == key).map(|i| n.values[i]));
            }
            match n.keys.iter().rposition(|&k| k <= key) {
                Some(i) => at = n.values[i],
                None => return Ok(None),
            }
        }
        Err(format!(
            "the tree at block {root} is deeper than any can be"
        ))
    }

    /// Levels from the node at `root` down to its mappings, along its first children; the
    /// nodes read are kept for the walk.
    fn height(&mut self, root: u64) -> std::result::Result<u32, String> {
        let mut at = root;
        for h in 1..=MAX_HEIGHT {
            let n = self.node(at)?;
            let (leaf, first) = (n.leaf, n.values.first().copied());
            self.cache.insert(at, n);
            if leaf {
                return Ok(h);
            }
            at = first.ok_or_else(|| format!("btree node {at} is internal and empty"))?;
        }
        Err(format!(
            "the tree at block {root} is deeper than any can be"
        ))
    }

    /// Replaces the subtree at the front of `side` with its children (or mappings).
    fn expand(&mut self, side: &mut VecDeque<Item>) -> std::result::Result<(), String> {
        let Some(Item::Sub {
            block,
            lo,
            hi,
            height,
        }) = side.pop_front()
        else {
            unreachable!("only subtrees are expanded");
        };
        let n = self.node(block)?;
        if n.leaf != (height == 1) {
            return Err(format!(
                "btree node {block} is not at the depth its tree's other nodes are"
            ));
        }
        if n.keys.first().is_some_and(|&k| k < lo) || n.keys.last().is_some_and(|&k| k >= hi) {
            return Err(format!(
                "btree node {block} holds keys outside the range its parent gives it"
            ));
        }
        let items = n.keys.iter().enumerate().map(|(i, &key)| {
            if n.leaf {
                Item::Map {
                    key,
                    value: n.values[i],
                }
            } else {
                Item::Sub {
                    block: n.values[i],
                    lo: key,
                    hi: n.keys.get(i + 1).copied().unwrap_or(hi),
                    height: height - 1,
                }
            }
        });
        for item in items.rev() {
            side.push_front(item);
        }
        Ok(())
    }

    /// Virtual blocks `b` maps differently from `a` (or that only `b` maps), and those
    /// only `a` maps: (changed, removed).
    fn diff(&mut self, a: u64, b: u64) -> std::result::Result<(Vec<u64>, Vec<u64>), String> {
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        let root = |block, height| Item::Sub {
            block,
            lo: 0,
            hi: u64::MAX,
            height,
        };
        let (ha, hb) = (self.height(a)?, self.height(b)?);
        let mut left = VecDeque::from([root(a, ha)]);
        let mut right = VecDeque::from([root(b, hb)]);
        loop {
            match (left.front().copied(), right.front().copied()) {
                (None, None) => break,
                (Some(x), None) => self.alone(&mut left, x, &mut removed)?,
                (None, Some(y)) => self.alone(&mut right, y, &mut changed)?,
                (Some(x), Some(y)) => {
                    let ((xl, xh), (yl, yh)) = (x.range(), y.range());
                    if xh <= yl {
                        // Nothing on the right is below yl: x is the left's alone.
                        self.alone(&mut left, x, &mut removed)?;
                        continue;
                    }
                    if yh <= xl {
                        self.alone(&mut right, y, &mut changed)?;
                        continue;
                    }
                    match (x, y) {
                        // One node, held by both: the same mappings on both sides.
                        (Item::Sub { block: p, .. }, Item::Sub { block: q, .. }) if p == q => {
                            left.pop_front();
                            right.pop_front();
                        }
                        (Item::Map { key, value: v }, Item::Map { value: w, .. }) => {
                            // Overlapping single keys are the same key.
                            if v != w {
                                changed.push(key);
                            }
                            left.pop_front();
                            right.pop_front();
                        }
                        _ => {
                            // Open the taller first: a node the other side shares sits
                            // at its own height on both sides.
                            let (hx, hy) = (x.height(), y.height());
                            if hx >= hy {
                                self.expand(&mut left)?;
                            }
                            if hy >= hx {
                                self.expand(&mut right)?;
                            }
                        }
                    }
                }
            }
        }
        Ok((changed, removed))
    }

    /// The front of `side` has nothing opposite it: its mappings go to `out`.
    fn alone(
        &mut self,
        side: &mut VecDeque<Item>,
        front: Item,
        out: &mut Vec<u64>,
    ) -> std::result::Result<(), String> {
        match front {
            Item::Map { key, .. } => {
                out.push(key);
                side.pop_front();
                Ok(())
            }
            Item::Sub { .. } => self.expand(side),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::details::image::{node_of, superblock_with};
    use super::*;

    const SIZE: usize = 64;

    /// A mapping value: pool block and time.
    fn v(pool: u64, time: u64) -> u64 {
        pool << 24 | time
    }

    /// Metadata of a pool with devices 1 (the older) and 2: the top-level tree at 3,
    /// `nodes` from block 4 on as given.
    struct Pool {
        blocks: Vec<Vec<u8>>,
    }

    impl Pool {
        fn new(top: &[(u64, u64)]) -> Pool {
            let mut blocks = vec![vec![0u8; details::BLOCK]; SIZE];
            blocks[0] = superblock_with(0, 1, 0, 0, SIZE as u64);
            blocks[1] = superblock_with(1, 0, 2, 3, SIZE as u64);
            blocks[2] = node_of(2, true, &[], 24);
            blocks[3] = node_of(3, true, top, 8);
            Pool { blocks }
        }
        fn put(&mut self, at: u64, leaf: bool, entries: &[(u64, u64)]) {
            self.blocks[at as usize] = node_of(at, leaf, entries, 8);
        }
        fn delta(&self, a: u32, b: u32) -> std::result::Result<(Delta, u64), String> {
            let mut read = |n: u64| {
                self.blocks
                    .get(n as usize)
                    .cloned()
                    .ok_or_else(|| format!("block {n} past the end"))
            };
            delta(&mut read, a, b)
        }
    }

    fn blocks(e: &[Extent]) -> Vec<(u64, u64)> {
        e.iter().map(|e| (e.start / 65536, e.len / 65536)).collect()
    }

    /// A snapshot (1) and its origin (2) sharing leaf 10, each with its own copy of the
    /// other leaf: only those two leaves (and the roots) are read.
    #[test]
    fn a_shared_subtree_is_not_entered() {
        let mut p = Pool::new(&[(1, 4), (2, 5)]);
        p.put(4, false, &[(0, 11), (100, 10)]);
        p.put(5, false, &[(0, 12), (100, 10)]);
        p.put(10, true, &[(100, v(500, 0)), (101, v(501, 0))]);
        p.put(11, true, &[(0, v(600, 0)), (1, v(601, 0)), (2, v(602, 0))]);
        // Block 0 rewritten, 1 kept, 2 discarded, 3 new.
        p.put(12, true, &[(0, v(700, 1)), (1, v(601, 0)), (3, v(703, 1))]);
        let (d, reads) = p.delta(1, 2).unwrap();
        assert_eq!(blocks(&d.changed), [(0, 1), (3, 1)]);
        assert_eq!(blocks(&d.removed), [(2, 1)]);
        assert_eq!(d.block, 65536);
        // The top-level tree (once per device), both roots, the two unshared leaves.
        assert_eq!(reads, 2 + 2 + 2);
        // Leaf 10 was never read: break it and the answer stands.
        p.blocks[10] = vec![0; details::BLOCK];
        assert_eq!(p.delta(1, 2).unwrap().0, d);
        // The other way round: what was changed is still changed, new and removed swap.
        let (d, _) = p.delta(2, 1).unwrap();
        assert_eq!(blocks(&d.changed), [(0, 1), (2, 1)]);
        assert_eq!(blocks(&d.removed), [(3, 1)]);
        // A device against itself: nothing, and nothing read below its first leaf.
        let (d, reads) = p.delta(2, 2).unwrap();
        assert!(d.changed.is_empty() && d.removed.is_empty());
        assert_eq!(reads, 2 + 2);
    }

    /// Trees of different heights: the taller is opened until the shared leaf lines up.
    #[test]
    fn trees_of_different_heights_still_share() {
        let mut p = Pool::new(&[(1, 4), (2, 5)]);
        // Device 1: a root over leaves 10 and 11. Device 2 grew a level: root 5 over
        // internal 6 (over its own 14 and the shared 11) and internal 7 (over 13).
        p.put(4, false, &[(0, 10), (100, 11)]);
        p.put(5, false, &[(0, 6), (1000, 7)]);
        p.put(6, false, &[(0, 14), (100, 11)]);
        p.put(7, false, &[(1000, 13)]);
        p.put(10, true, &[(0, v(500, 0))]);
        p.put(14, true, &[(0, v(500, 0)), (50, v(550, 2))]);
        p.put(11, true, &[(100, v(600, 0))]);
        p.put(13, true, &[(1000, v(900, 2)), (1001, v(901, 2))]);
        let (d, reads) = p.delta(1, 2).unwrap();
        assert_eq!(blocks(&d.changed), [(50, 1), (1000, 2)]);
        assert!(d.removed.is_empty());
        // Top-level twice; 4, 10; 5, 6, 14; then 7 and 13.
        assert_eq!(reads, 2 + 2 + 3 + 2);
        p.blocks[11] = vec![0; details::BLOCK];
        assert_eq!(p.delta(1, 2).unwrap().0, d);
    }

    #[test]
    fn malformed_trees_are_refused() {
        let mut p = Pool::new(&[(1, 4), (2, 5)]);
        p.put(4, true, &[(0, v(1, 0))]);
        p.put(5, true, &[(0, v(2, 0))]);
        assert!(p.delta(1, 2).is_ok());
        assert!(p.delta(1, 9).unwrap_err().contains("no thin device 9"));
        // A child holding keys below its parent's bound.
        let mut q = Pool::new(&[(1, 4), (2, 5)]);
        q.put(4, true, &[(0, v(1, 0))]);
        q.put(5, false, &[(10, 6)]);
        q.put(6, true, &[(3, v(2, 0))]);
        assert!(q.delta(1, 2).unwrap_err().contains("outside the range"));
        // A loop: a node that is its own child.
        let mut r = Pool::new(&[(1, 4), (2, 5)]);
        r.put(4, true, &[(0, v(1, 0))]);
        r.put(5, false, &[(0, 5)]);
        assert!(r.delta(1, 2).is_err());
        // A flipped bit.
        let mut s = Pool::new(&[(1, 4), (2, 5)]);
        s.put(4, true, &[(0, v(1, 0))]);
        s.put(5, true, &[(0, v(2, 0))]);
        s.blocks[5][100] ^= 1;
        assert!(s.delta(1, 2).unwrap_err().contains("checksum"));
    }

    /// Against the plain diff of the two full maps, on random trees sharing random leaves.
    #[test]
    fn agrees_with_the_full_maps() {
        use crate::image::block_map::{diff, BlockMap, Run};
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200 {
            let mut p = Pool::new(&[(1, 4), (2, 5)]);
            let mut next = 8u64;
            let mut maps: [Vec<(u64, u64)>; 2] = [vec![], vec![]];
            let mut children: [Vec<(u64, u64)>; 2] = [vec![], vec![]];
            // Eight key ranges of 16 blocks; each side's leaf for a range is shared,
            // its own, or absent.
            for r in 0..8u64 {
                let mut leaf = |p: &mut Pool, rnd: &mut dyn FnMut(u64) -> u64| {
                    let mut entries = Vec::new();
                    for k in 0..16 {
                        if rnd(3) > 0 {
                            entries.push((r * 16 + k, v(rnd(4), rnd(2))));
                        }
                    }
                    let at = next;
                    next += 1;
                    p.put(at, true, &entries);
                    (at, entries)
                };
                let shared = (rnd(3) == 0).then(|| leaf(&mut p, &mut rnd));
                for side in 0..2 {
                    let own = match &shared {
                        Some(s) if rnd(2) == 0 => Some(s.clone()),
                        _ if rnd(4) == 0 => None,
                        _ => Some(leaf(&mut p, &mut rnd)),
                    };
                    if let Some((at, entries)) = own {
                        if let Some(&(k, _)) = entries.first() {
                            children[side].push((k, at));
                            maps[side].extend(entries);
                        }
                    }
                }
            }
            for (at, kids) in (4u64..).zip(&children) {
                // An empty device's root is an empty leaf.
                p.put(at, kids.is_empty(), kids);
            }
            let full = |m: &[(u64, u64)]| BlockMap {
                block: 65536,
                runs: m
                    .iter()
                    .map(|&(k, val)| Run {
                        vblock: k,
                        dblock: val >> 24,
                        len: 1,
                        time: (val & 0xff_ffff) as u32,
                    })
                    .collect(),
            };
            let want = diff(&full(&maps[0]), &full(&maps[1])).unwrap();
            let (got, _) = p.delta(1, 2).unwrap();
            assert_eq!(got, want);
        }
    }
}
