//! Little-endian fields of on-disk structures (thinsr's metadata slots and saved block
//! maps, dm-thin's metadata), beside `be.rs` for VHD and qcow2.

/// The u32 at `at`; the caller has checked that `b` holds it.
pub fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The u64 at `at`; the caller has checked that `b` holds it.
pub fn get64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
