//! device-mapper's `mirror` target (drivers/md/dm-raid1.c, dm-log.c): the table line, its
//! status, and the on-disk dirty log that says which regions it must copy.
//!
//! Writes go to every leg; the kernel copies each region its log marks out of sync from
//! the first leg to the others, one region at a time under its own region locking (a
//! write to a region being copied waits). Reads go to the first leg. Without
//! `handle_errors` a failed leg only stops being written: the VM's writes still succeed.

use crate::error::{Error, Result};

/// dm-log.c's MIRROR_MAGIC, MIRROR_DISK_VERSION, and where its bitmap starts (LOG_OFFSET
/// sectors).
const MAGIC: u32 = 0x4D69_5272;
const VERSION: u32 = 2;
const BITMAP_AT: usize = 1024;

/// The bytes of a `disk` log for `regions` regions in which region `i` is in sync (need
/// not be copied) when `in_sync(i)`. dm-log reads the header and, when its region count
/// matches the table's, takes these bits as they are.
pub fn dirty_log(regions: u64, in_sync: impl Fn(u64) -> bool) -> Vec<u8> {
    // The kernel's bitmap is a whole number of longs, set and tested little-endian.
    let bitmap = regions.next_multiple_of(64) as usize / 8;
    let mut b = vec![0u8; (BITMAP_AT + bitmap).next_multiple_of(4096)];
    b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    b[4..8].copy_from_slice(&VERSION.to_le_bytes());
    b[8..16].copy_from_slice(&regions.to_le_bytes());
    for i in 0..regions {
        if in_sync(i) {
            b[BITMAP_AT + (i / 8) as usize] |= 1 << (i % 8);
        }
    }
    b
}

/// The region size (sectors) for a source whose data comes in `block` bytes: a power of
/// two (dm-raid1's rule) no smaller than 4 KiB, covering one block where it can.
pub fn region_sectors(block: u64) -> u64 {
    (block / 512).next_power_of_two().max(8)
}

/// The largest region the kernel copies at a time: it copies one region after another,
/// so a region holds a round trip's worth; a VM's write to a region being copied waits.
pub const MAX_REGION_SECTORS: u64 = 4096;

/// The region size (sectors) for a mirror whose data lies in `data` (byte ranges, sorted,
/// of whole blocks of `block` bytes; None: all of it): the largest power of two from the
/// block's up to 2 MiB whose regions cover at most 5 % more bytes than the data, so that
/// clustered data travels in few round trips and scattered blocks are not padded.
pub fn choose_region(data: Option<&[(u64, u64)]>, block: u64) -> u64 {
    let smallest = region_sectors(block);
    let Some(data) = data else {
        return MAX_REGION_SECTORS.max(smallest);
    };
    let bytes: u64 = data.iter().map(|(_, len)| len).sum();
    let mut best = smallest;
    let mut r = smallest * 2;
    while r <= MAX_REGION_SECTORS {
        let covered = covered_bytes(data, r * 512);
        if covered * 100 > bytes * 105 {
            break;
        }
        best = r;
        r *= 2;
    }
    best
}

/// Bytes of the regions of `region` bytes that ranges `data` touch.
fn covered_bytes(data: &[(u64, u64)], region: u64) -> u64 {
    let mut total = 0;
    let mut last_end = 0; // end (exclusive, in regions) of what was counted
    for (start, len) in data.iter().filter(|(_, len)| *len > 0) {
        let first = (start / region).max(last_end);
        let end = (start + len).div_ceil(region);
        if end > first {
            total += (end - first) * region;
            last_end = end;
        }
    }
    total
}

/// The parameters of a mirror of `legs[0]` onto `legs[1]` (`major:minor` or paths) whose
/// dirty log is device `log`.
pub fn table(log: &str, region: u64, legs: [&str; 2]) -> String {
    format!("disk 2 {log} {region} 2 {} 0 {} 0", legs[0], legs[1])
}

/// What the kernel says of a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub in_sync: u64,
    pub regions: u64,
    /// One letter per leg: 'A' alive; 'D' a write failed, 'S' a copy failed, 'R' a read
    /// failed, 'F' a flush failed, 'U' otherwise unhealthy.
    pub health: String,
}

impl Status {
    pub fn synced(&self) -> bool {
        self.in_sync == self.regions
    }

    /// True while leg `i` has seen no error.
    pub fn leg_alive(&self, i: usize) -> bool {
        self.health.as_bytes().get(i) == Some(&b'A')
    }

    pub fn progress(&self) -> f64 {
        match self.regions {
            0 => 1.0,
            n => self.in_sync as f64 / n as f64,
        }
    }
}

/// Parses a mirror's status line: `2 253:4 43:0 123/16384 1 AA 3 disk 7:0 A`.
pub fn parse_status(line: &str) -> Result<Status> {
    let bad = || Error::DmFailed(format!("unreadable mirror status '{line}'"));
    let f: Vec<&str> = line.split_whitespace().collect();
    let legs: usize = f.first().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let (done, total) = f
        .get(1 + legs)
        .and_then(|s| s.split_once('/'))
        .ok_or_else(bad)?;
    let health = f.get(3 + legs).ok_or_else(bad)?;
    Ok(Status {
        in_sync: done.parse().map_err(|_| bad())?,
        regions: total.parse().map_err(|_| bad())?,
        health: health.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_marks_in_sync_regions_little_endian_after_its_header() {
        let b = dirty_log(70, |i| i % 2 == 1 || i == 64);
        assert_eq!(b.len(), 4096);
        assert_eq!(
            &b[0..4],
            &[0x72, 0x52, 0x69, 0x4d],
            "'rRiM' as dm-log writes it"
        );
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 70);
        assert_eq!(b[BITMAP_AT], 0b1010_1010);
        assert_eq!(b[BITMAP_AT + 8], 0b0010_1011, "64, 65, 67, 69");
        assert_eq!(b[BITMAP_AT + 9], 0, "nothing past region 69");
        let big = dirty_log(64 * 1024 * 8, |_| false);
        assert_eq!(big.len(), 1024 + 64 * 1024 + 3072);
    }

    #[test]
    fn regions_are_powers_of_two_covering_a_block() {
        assert_eq!(region_sectors(64 * 1024), 128);
        assert_eq!(region_sectors(192 * 1024), 512);
        assert_eq!(region_sectors(512), 8);
    }

    #[test]
    fn regions_grow_while_they_pad_the_data_by_at_most_five_percent() {
        const K: u64 = 1024;
        // 24 extents of 4 MiB, 4 MiB aligned: 2 MiB regions pad nothing.
        let clustered: Vec<(u64, u64)> = (0..24).map(|i| ((i * 40) << 20, 4 << 20)).collect();
        assert_eq!(choose_region(Some(&clustered), 64 * K), 4096);
        // Single 64 KiB blocks 1 MiB apart: any larger region doubles what travels.
        let scattered: Vec<(u64, u64)> = (0..100).map(|i| (i << 20, 64 * K)).collect();
        assert_eq!(choose_region(Some(&scattered), 64 * K), 128);
        // 256 KiB runs: 256 KiB regions, not 512.
        let runs: Vec<(u64, u64)> = (0..50).map(|i| (i << 22, 256 * K)).collect();
        assert_eq!(choose_region(Some(&runs), 64 * K), 512);
        assert_eq!(choose_region(None, 64 * K), 4096);
        assert_eq!(choose_region(Some(&[]), 64 * K), 4096, "nothing to copy");
        assert_eq!(
            covered_bytes(&[(0, 10), (5, 10)], 8),
            16,
            "a region counted once"
        );
    }

    #[test]
    fn reads_the_kernels_status_line() {
        let s = parse_status("2 253:4 43:0 123/16384 1 AD 3 disk 7:0 A").unwrap();
        assert_eq!((s.in_sync, s.regions), (123, 16384));
        assert!(s.leg_alive(0) && !s.leg_alive(1) && !s.synced());
        let done = parse_status("2 253:4 43:0 16/16 1 AA 3 disk 7:0 A").unwrap();
        assert!(done.synced() && done.leg_alive(1));
        assert!(parse_status("2 253:4").is_err());
        assert_eq!(
            table("7:0", 128, ["253:3", "43:0"]),
            "disk 2 7:0 128 2 253:3 0 43:0 0"
        );
    }
}
