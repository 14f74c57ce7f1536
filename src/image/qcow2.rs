//! qcow2 version 3, written in one forward pass once the map is known (header, refcount
//! table and blocks, L1, L2s, then the data clusters in guest order), and read forward from
//! a stream for import.

use std::collections::BTreeMap;

use super::be::{get32, get64, put32, put64};
use super::extent::{total, Extent};
use super::stream::{Input, Out};
use super::Feed;
use crate::error::{Error, Result};

pub const CLUSTER_BITS: u32 = 16;
pub const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// Entries of one L2 table (and of one L1 cluster).
const ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts (refcount_order 4) in one refcount block.
const REFCOUNTS: u64 = CLUSTER / 2;
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
const ZERO: u64 = 1;
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const HEADER_LEN: u32 = 104;
pub const MAGIC: &[u8; 4] = b"QFI\xfb";
/// qemu's limit on a backing file name.
pub const MAX_BACKING_NAME: usize = 1023;

/// What to write: a disk of `size` bytes whose `data` ranges (whole clusters, except at the
/// end of the disk) are read from the source; `zero` ranges read as zero; the rest reads
/// from `backing` if there is one, else as zero.
pub struct Image<'a> {
    pub size: u64,
    pub data: &'a [Extent],
    pub zero: &'a [Extent],
    pub backing: Option<&'a str>,
}

/// Where each structure goes, in clusters from the start of the file.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    l1_entries: u64,
    refcount_table: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    l1: u64,
    l1_clusters: u64,
    /// L1 indices that have an L2 table, in order.
    l2s: Vec<u64>,
    data: u64,
    data_clusters: u64,
    total: u64,
}

fn clusters_of(v: &[Extent]) -> impl Iterator<Item = u64> + '_ {
    v.iter()
        .flat_map(|e| e.start / CLUSTER..e.end().div_ceil(CLUSTER))
}

fn layout(img: &Image) -> Layout {
    let guest = img.size.div_ceil(CLUSTER);
    let l1_entries = guest.div_ceil(ENTRIES).max(1);
    let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER);
    let mut l2s: Vec<u64> = clusters_of(img.data)
        .chain(clusters_of(img.zero))
        .map(|c| c / ENTRIES)
        .collect();
    l2s.sort_unstable();
    l2s.dedup();
    let data_clusters: u64 = img
        .data
        .iter()
        .map(|e| e.end().div_ceil(CLUSTER) - e.start / CLUSTER)
        .sum();
    let fixed = 1 + l1_clusters + l2s.len() as u64 + data_clusters;
    // The refcount structures count themselves: grow them to a fixed point.
    let (mut rb, mut rt) = (0u64, 0u64);
    loop {
        let all = fixed + rb + rt;
        let (nrb, nrt) = (
            all.div_ceil(REFCOUNTS),
            (all.div_ceil(REFCOUNTS) * 8).div_ceil(CLUSTER),
        );
        if (nrb, nrt) == (rb, rt) {
            break;
        }
        (rb, rt) = (nrb, nrt);
    }
    let refcount_table = 1;
    let l1 = refcount_table + rt + rb;
    let data = l1 + l1_clusters + l2s.len() as u64;
    Layout {
        l1_entries,
        refcount_table,
        refcount_table_clusters: rt,
        refcount_blocks: rb,
        l1,
        l1_clusters,
        l2s,
        data,
        data_clusters,
        total: data + data_clusters,
    }
}

fn header(img: &Image, l: &Layout) -> Vec<u8> {
    let mut h = vec![0u8; CLUSTER as usize];
    h[..4].copy_from_slice(MAGIC);
    put32(&mut h, 4, 3);
    put32(&mut h, 20, CLUSTER_BITS);
    put64(&mut h, 24, img.size);
    put32(&mut h, 36, l.l1_entries as u32);
    put64(&mut h, 40, l.l1 * CLUSTER);
    put64(&mut h, 48, l.refcount_table * CLUSTER);
    put32(&mut h, 56, l.refcount_table_clusters as u32);
    put32(&mut h, 96, 4); // refcount_order: 16-bit refcounts
    put32(&mut h, 100, HEADER_LEN);
    // Header extensions end at once (8 zero bytes at 104); the backing name follows.
    if let Some(name) = img.backing {
        let at = HEADER_LEN as usize + 8;
        put64(&mut h, 8, at as u64);
        put32(&mut h, 16, name.len() as u32);
        h[at..at + name.len()].copy_from_slice(name.as_bytes());
    }
    h
}

/// Writes `img` to `out`, its data read through `feed`. Returns the clusters of data.
pub fn write(img: &Image, feed: &mut Feed, out: &mut Out) -> Result<u64> {
    if img.backing.is_some_and(|n| n.len() > MAX_BACKING_NAME) {
        return Err(Error::InvalidArgument(format!(
            "a backing file name is at most {MAX_BACKING_NAME} bytes"
        )));
    }
    let l = layout(img);
    out.write(&header(img, &l))?;

    let mut table = vec![0u8; (l.refcount_table_clusters * CLUSTER) as usize];
    let first_block = l.refcount_table + l.refcount_table_clusters;
    for i in 0..l.refcount_blocks {
        put64(&mut table, (i * 8) as usize, (first_block + i) * CLUSTER);
    }
    out.write(&table)?;
    let mut block = vec![0u8; CLUSTER as usize];
    for i in 0..l.refcount_blocks {
        let used = l.total.saturating_sub(i * REFCOUNTS).min(REFCOUNTS);
        block.fill(0);
        for k in 0..used as usize {
            block[2 * k + 1] = 1;
        }
        out.write(&block)?;
    }

    let mut l1 = vec![0u8; (l.l1_clusters * CLUSTER) as usize];
    for (k, idx) in l.l2s.iter().enumerate() {
        put64(
            &mut l1,
            (*idx * 8) as usize,
            ((l.l1 + l.l1_clusters + k as u64) * CLUSTER) | COPIED,
        );
    }
    out.write(&l1)?;

    // L2 entries: data clusters get host clusters in guest order.
    let mut l2 = vec![0u8; CLUSTER as usize];
    let mut data = clusters_of(img.data).peekable();
    let mut zero = clusters_of(img.zero).peekable();
    let mut host = l.data;
    for idx in &l.l2s {
        l2.fill(0);
        let range = idx * ENTRIES..(idx + 1) * ENTRIES;
        while let Some(c) = data.next_if(|c| range.contains(c)) {
            put64(
                &mut l2,
                ((c - range.start) * 8) as usize,
                (host * CLUSTER) | COPIED,
            );
            host += 1;
        }
        while let Some(c) = zero.next_if(|c| range.contains(c)) {
            let at = ((c - range.start) * 8) as usize;
            if get64(&l2, at) == 0 {
                put64(&mut l2, at, ZERO);
            }
        }
        out.write(&l2)?;
    }

    for e in img.data {
        feed.copy(*e, out)?;
    }
    // The disk's last cluster may be partial: pad the file to whole clusters.
    let pad = l.data_clusters * CLUSTER - total(img.data);
    out.write(&vec![0u8; pad as usize])?;
    Ok(l.data_clusters)
}

/// A qcow2 header, as an import needs it.
#[derive(Debug)]
pub struct Header {
    pub size: u64,
    cluster_bits: u32,
    l1_size: u64,
    l1_offset: u64,
}

fn unreadable(what: &str, why: impl Into<String>) -> Error {
    Error::ImageUnreadable {
        uri: what.into(),
        why: why.into(),
    }
}

/// The largest disk thinsr imports (LVM's thin LVs stop at 16 TiB with 64 KiB chunks).
pub const MAX_SIZE: u64 = 1 << 50;

/// Parses and checks the header at the start of `input`.
pub fn read_header(input: &mut Input) -> Result<Header> {
    let what = input.what.clone();
    let h = input.peek(HEADER_LEN as usize)?.to_vec();
    if h.len() < 72 || &h[..4] != MAGIC {
        return Err(unreadable(&what, "not a qcow2 image"));
    }
    let version = get32(&h, 4);
    if version != 2 && version != 3 {
        return Err(unreadable(
            &what,
            format!("qcow2 version {version} is not known"),
        ));
    }
    if version == 3 && h.len() < 104 {
        return Err(unreadable(&what, "the qcow2 v3 header is cut short"));
    }
    let cluster_bits = get32(&h, 20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(unreadable(
            &what,
            format!("cluster_bits {cluster_bits} is out of range"),
        ));
    }
    if get64(&h, 8) != 0 {
        return Err(unreadable(
            &what,
            "it has a backing file: import the whole chain from a file with qemu-img",
        ));
    }
    if get32(&h, 32) != 0 {
        return Err(unreadable(&what, "it is encrypted"));
    }
    if version == 3 && get64(&h, 72) != 0 {
        return Err(unreadable(&what, format!("incompatible features {:#x} (external data, compression type or extended L2) are not read from a stream", get64(&h, 72))));
    }
    let size = get64(&h, 24);
    if size == 0 || size > MAX_SIZE {
        return Err(unreadable(
            &what,
            format!("virtual size {size} is out of range"),
        ));
    }
    let cluster = 1u64 << cluster_bits;
    let per_l2 = cluster / 8;
    let needed = size.div_ceil(cluster).div_ceil(per_l2);
    let l1_size = u64::from(get32(&h, 36));
    let l1_offset = get64(&h, 40);
    // qemu's own bound on the L1 table (32 MiB), so a header cannot make us allocate more.
    if l1_size < needed || l1_size > needed + per_l2 || l1_size * 8 > 32 << 20 {
        return Err(unreadable(
            &what,
            format!("l1_size {l1_size} does not fit the virtual size (needs {needed})"),
        ));
    }
    if l1_offset == 0 || !l1_offset.is_multiple_of(cluster) {
        return Err(unreadable(
            &what,
            format!("l1_table_offset {l1_offset} is not a cluster"),
        ));
    }
    Ok(Header {
        size,
        cluster_bits,
        l1_size,
        l1_offset,
    })
}

enum Next {
    L2,
    Data(u64),
}

/// Reads the image forward, handing each data cluster that is not all zeros to `sink` with
/// its guest offset. Tables must come before what they point to (as qemu writes them);
/// otherwise the stream cannot be decoded and an error says to import from a file.
pub fn decode(
    input: &mut Input,
    h: &Header,
    sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let what = input.what.clone();
    let cluster = 1u64 << h.cluster_bits;
    let per_l2 = cluster / 8;
    let mut l1 = vec![0u8; (h.l1_size * 8) as usize];
    input.read_at(h.l1_offset, &mut l1)?;
    let mut next: BTreeMap<u64, Next> = BTreeMap::new();
    let check = |entry: u64, reserved: u64, kind: &str| -> Result<u64> {
        let off = entry & OFFSET_MASK;
        if entry & reserved != 0 || !off.is_multiple_of(cluster) {
            return Err(unreadable(&what, format!("a bad {kind} entry {entry:#x}")));
        }
        Ok(off)
    };
    let mut l1_of = BTreeMap::new();
    for i in 0..h.l1_size {
        let off = check(get64(&l1, (i * 8) as usize), !(OFFSET_MASK | COPIED), "L1")?;
        if off != 0 {
            if next.insert(off, Next::L2).is_some() {
                return Err(unreadable(&what, format!("two L1 entries point at {off}")));
            }
            l1_of.insert(off, i);
        }
    }
    let mut buf = vec![0u8; cluster as usize];
    while let Some((off, item)) = next.pop_first() {
        input.read_at(off, &mut buf)?;
        match item {
            Next::L2 => {
                let i = l1_of[&off];
                for k in 0..per_l2 {
                    let entry = get64(&buf, (k * 8) as usize);
                    if entry & COMPRESSED != 0 {
                        return Err(unreadable(
                            &what,
                            "it has compressed clusters: import it from a file with qemu-img",
                        ));
                    }
                    let guest = (i * per_l2 + k) * cluster;
                    let data = check(entry, !(OFFSET_MASK | COPIED | ZERO), "L2")?;
                    if data == 0 || entry & ZERO != 0 {
                        continue; // unallocated or zero: the new VDI reads zeros there
                    }
                    if guest >= h.size {
                        return Err(unreadable(
                            &what,
                            "an L2 entry maps beyond the virtual size",
                        ));
                    }
                    if next.insert(data, Next::Data(guest)).is_some() {
                        return Err(unreadable(&what, format!("two entries point at {data}")));
                    }
                }
            }
            Next::Data(guest) => {
                let len = cluster.min(h.size - guest) as usize;
                sink(guest, &buf[..len])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(v: &[(u64, u64)]) -> Vec<Extent> {
        v.iter().map(|&(s, l)| Extent::new(s, l)).collect()
    }

    #[test]
    fn layout_counts_every_structure() {
        let data = x(&[(0, CLUSTER), (600 << 20, 2 * CLUSTER)]);
        let zero = x(&[(2 << 30, CLUSTER)]);
        let img = Image {
            size: 4 << 30,
            data: &data,
            zero: &zero,
            backing: None,
        };
        let l = layout(&img);
        assert_eq!(l.l1_entries, 8);
        assert_eq!(l.l2s, vec![0, 1, 4]);
        assert_eq!((l.refcount_table_clusters, l.refcount_blocks), (1, 1));
        assert_eq!(l.l1, 3);
        assert_eq!(l.data, 3 + 1 + 3);
        assert_eq!(l.total, 7 + 3);
        // Enough clusters that the refcount blocks must count themselves.
        let big = x(&[(0, REFCOUNTS * CLUSTER)]);
        let l = layout(&Image {
            size: REFCOUNTS * CLUSTER,
            data: &big,
            zero: &[],
            backing: None,
        });
        assert_eq!(l.refcount_blocks, l.total.div_ceil(REFCOUNTS));
        assert_eq!(l.refcount_blocks, 2);
    }

    #[test]
    fn header_fields() {
        let data = x(&[(0, CLUSTER)]);
        let img = Image {
            size: 10 << 20,
            data: &data,
            zero: &[],
            backing: Some("base.qcow2"),
        };
        let h = header(&img, &layout(&img));
        assert_eq!(&h[..4], MAGIC);
        assert_eq!(get32(&h, 4), 3);
        assert_eq!(get64(&h, 24), 10 << 20);
        assert_eq!(get32(&h, 96), 4);
        assert_eq!(get32(&h, 100), 104);
        let (at, len) = (get64(&h, 8) as usize, get32(&h, 16) as usize);
        assert_eq!(&h[at..at + len], b"base.qcow2");
        assert_eq!(&h[104..112], &[0; 8]);
    }
}
