//! VHD dynamic disks (the format XenServer and blktap use), written in one forward pass:
//! footer copy, dynamic header, BAT, each allocated 2 MiB block (sector bitmap, data), footer.
//! Read forward from a stream for import.

use super::be::{get32, get64, put32, put64};
use super::extent::Extent;
use super::stream::{is_zero, Input, Out};
use super::Feed;
use crate::error::{Error, Result};

pub const BLOCK: u64 = 2 << 20;
/// The VHD limit blktap and XenServer keep to.
pub const MAX_SIZE: u64 = 2040 << 30;
const SECTOR: u64 = 512;
const BITMAP: u64 = 512; // one bit per sector of a 2 MiB block
const UNUSED: u32 = 0xFFFF_FFFF;
pub const COOKIE: &[u8; 8] = b"conectix";
/// Seconds from the Unix epoch to 2000-01-01, where VHD time starts.
const EPOCH_2000: u64 = 946_684_800;

/// One's complement of the byte sum, the checksum field (at `at`) counted as zero.
fn checksum(b: &[u8], at: usize) -> u32 {
    let sum = b
        .iter()
        .enumerate()
        .filter(|(i, _)| !(at..at + 4).contains(i))
        .fold(0u32, |s, (_, x)| s.wrapping_add(u32::from(*x)));
    !sum
}

/// Cylinders, heads, sectors per track, as the VHD specification's appendix computes them.
pub fn geometry(size: u64) -> (u16, u8, u8) {
    let mut total = size / SECTOR;
    total = total.min(65535 * 16 * 255);
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255;
        heads = 16;
        cth = total / spt;
    } else {
        let mut s = 17;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        (spt, heads, cth) = (s, h, c);
    }
    ((cth / heads) as u16, heads as u8, spt as u8)
}

fn footer(size: u64, data_offset: u64, id: &[u8; 16], now: u64) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[..8].copy_from_slice(COOKIE);
    put32(&mut f, 8, 2); // features: reserved bit, always set
    put32(&mut f, 12, 0x0001_0000);
    put64(&mut f, 16, data_offset);
    put32(&mut f, 24, now.saturating_sub(EPOCH_2000) as u32);
    f[28..32].copy_from_slice(b"tap\0");
    // Creator version below 1.2, from which blktap expects a batmap after the BAT.
    put32(&mut f, 32, 0x0000_0001);
    f[36..40].copy_from_slice(b"Lnux");
    put64(&mut f, 40, size);
    put64(&mut f, 48, size);
    let (c, h, s) = geometry(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    put32(&mut f, 60, 3); // dynamic
    f[68..84].copy_from_slice(id);
    let sum = checksum(&f, 64);
    put32(&mut f, 64, sum);
    f
}

fn dynamic_header(entries: u32) -> [u8; 1024] {
    let mut d = [0u8; 1024];
    d[..8].copy_from_slice(b"cxsparse");
    put64(&mut d, 8, u64::MAX);
    put64(&mut d, 16, 512 + 1024);
    put32(&mut d, 24, 0x0001_0000);
    put32(&mut d, 28, entries);
    put32(&mut d, 32, BLOCK as u32);
    let sum = checksum(&d, 36);
    put32(&mut d, 36, sum);
    d
}

/// Writes a dynamic VHD of `size` bytes whose `data` ranges are read through `feed`.
/// Returns the blocks written.
pub fn write(
    size: u64,
    data: &[Extent],
    id: &[u8; 16],
    feed: &mut Feed,
    out: &mut Out,
) -> Result<u64> {
    if size > MAX_SIZE {
        return Err(Error::InvalidArgument(format!(
            "a VHD holds at most 2040 GiB and this disk is {}: export it as qcow2 or raw",
            crate::units::Bytes(size)
        )));
    }
    let entries = size.div_ceil(BLOCK);
    let mut blocks: Vec<u64> = data
        .iter()
        .flat_map(|e| e.start / BLOCK..e.end().div_ceil(BLOCK))
        .collect();
    blocks.dedup();
    let bat_bytes = (entries * 4).div_ceil(SECTOR) * SECTOR;
    let first = 512 + 1024 + bat_bytes;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(EPOCH_2000);
    let foot = footer(size, 512, id, now);
    out.write(&foot)?;
    out.write(&dynamic_header(entries as u32))?;
    let mut bat = vec![0xFFu8; bat_bytes as usize];
    for (k, b) in blocks.iter().enumerate() {
        let at = first + k as u64 * (BITMAP + BLOCK);
        put32(&mut bat, (*b * 4) as usize, (at / SECTOR) as u32);
    }
    debug_assert!(blocks
        .iter()
        .all(|b| get32(&bat, (*b * 4) as usize) != UNUSED));
    out.write(&bat)?;
    let bitmap = [0xFFu8; BITMAP as usize];
    let mut i = 0;
    for b in &blocks {
        let (start, end) = (b * BLOCK, (b + 1) * BLOCK);
        out.write(&bitmap)?;
        let mut at = start;
        while i < data.len() && data[i].start < end {
            let s = data[i].start.max(at);
            let e = data[i].end().min(end);
            out.zeros(s - at)?;
            feed.copy(Extent::new(s, e - s), out)?;
            at = e;
            if data[i].end() <= end {
                i += 1;
            } else {
                break;
            }
        }
        out.zeros(end - at)?;
    }
    out.write(&foot)?;
    Ok(blocks.len() as u64)
}

/// A dynamic VHD's layout, as an import needs it.
#[derive(Debug)]
pub struct Header {
    pub size: u64,
    block: u64,
    bat_offset: u64,
    entries: u64,
}

fn unreadable(what: &str, why: impl Into<String>) -> Error {
    Error::ImageUnreadable {
        uri: what.into(),
        why: why.into(),
    }
}

/// Reads the footer copy and dynamic header at the start of `input`.
pub fn read_header(input: &mut Input) -> Result<Header> {
    let what = input.what.clone();
    let f = input.peek(512)?.to_vec();
    if f.len() < 512 || &f[..8] != COOKIE {
        return Err(unreadable(&what, "not a VHD with a footer copy at its start (a fixed VHD is a raw disk with a footer: import it from a file)"));
    }
    if checksum(&f, 64) != get32(&f, 64) {
        return Err(unreadable(&what, "the VHD footer's checksum is wrong"));
    }
    match get32(&f, 60) {
        3 => {}
        4 => {
            return Err(unreadable(
                &what,
                "a differencing VHD needs its parent: import the chain from a file with qemu-img",
            ))
        }
        t => {
            return Err(unreadable(
                &what,
                format!("VHD disk type {t} is not a dynamic disk"),
            ))
        }
    }
    let size = get64(&f, 48);
    if size == 0 || size > MAX_SIZE {
        return Err(unreadable(
            &what,
            format!("virtual size {size} is out of range"),
        ));
    }
    let dyn_at = get64(&f, 16);
    let mut d = [0u8; 1024];
    input.read_at(dyn_at, &mut d)?;
    if &d[..8] != b"cxsparse" || checksum(&d, 36) != get32(&d, 36) {
        return Err(unreadable(
            &what,
            "the VHD dynamic header is missing or its checksum is wrong",
        ));
    }
    let block = u64::from(get32(&d, 32));
    if !block.is_power_of_two() || !(SECTOR * 8..=32 << 20).contains(&block) {
        return Err(unreadable(
            &what,
            format!("block size {block} is out of range"),
        ));
    }
    let entries = u64::from(get32(&d, 28));
    if entries < size.div_ceil(block) || entries > size.div_ceil(block) + 1 || entries > 16 << 20 {
        return Err(unreadable(
            &what,
            format!("{entries} BAT entries do not fit the virtual size"),
        ));
    }
    Ok(Header {
        size,
        block,
        bat_offset: get64(&d, 16),
        entries,
    })
}

/// Reads the blocks forward (they must follow the BAT, in any order), handing each
/// non-zero piece to `sink` with its guest offset. Like qemu, reads the data of an
/// allocated block whatever its sector bitmap says.
pub fn decode(
    input: &mut Input,
    h: &Header,
    sink: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let what = input.what.clone();
    let mut bat = vec![0u8; (h.entries * 4) as usize];
    input.read_at(h.bat_offset, &mut bat)?;
    let bitmap = (h.block / SECTOR / 8).div_ceil(SECTOR) * SECTOR;
    let mut blocks: Vec<(u64, u64)> = (0..h.entries)
        .map(|i| (u64::from(get32(&bat, (i * 4) as usize)), i))
        .filter(|(s, _)| *s != u64::from(UNUSED))
        .map(|(s, i)| (s * SECTOR, i))
        .collect();
    blocks.sort_unstable();
    if blocks
        .windows(2)
        .any(|w| w[1].0 < w[0].0 + bitmap + h.block)
    {
        return Err(unreadable(&what, "two VHD blocks overlap"));
    }
    let mut buf = vec![0u8; h.block as usize];
    for (at, i) in blocks {
        let guest = i * h.block;
        if guest >= h.size {
            continue;
        }
        input.read_at(at + bitmap, &mut buf)?;
        let len = h.block.min(h.size - guest) as usize;
        if !is_zero(&buf[..len]) {
            sink(guest, &buf[..len])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_follows_the_appendix() {
        // The appendix truncates (qemu instead grows the disk to a whole geometry, giving
        // 302/4/17, 2081/16/63 and 65279/16/255 for these; its VHDs from "tap" use the size
        // field, so the geometry does not decide the size).
        assert_eq!(geometry(10 << 20), (301, 4, 17));
        assert_eq!(geometry(1 << 30), (2080, 16, 63));
        assert_eq!(geometry(127 << 30), (65278, 16, 255));
        assert_eq!(geometry(3000 << 30), (65535, 16, 255));
    }

    #[test]
    fn footer_and_header_checksums() {
        let f = footer(1 << 30, 512, &[7; 16], EPOCH_2000 + 100);
        assert_eq!(checksum(&f, 64), get32(&f, 64));
        assert_eq!(get32(&f, 24), 100);
        assert_eq!(get64(&f, 48), 1 << 30);
        assert_eq!(&f[28..32], b"tap\0");
        let d = dynamic_header(512);
        assert_eq!(checksum(&d, 36), get32(&d, 36));
        assert_eq!(get32(&d, 28), 512);
        assert_eq!(get64(&d, 16), 1536);
    }
}
