//! A lazy template's store on disk: the file's bytes, then a header naming the file's
//! version, then a bitmap of the pieces present, in one thin LV.
//!
//! ```text
//! [ the file's bytes, piece by piece, zeros where not fetched ][ header 4 KiB ][ bitmap ]
//!   0                                                   map_at   map_at+4096
//! ```
//!
//! The header: magic `THINSRLZ`, version 1 (le32 at 8), the piece (le64 at 16), the file's
//! length (le64 at 24), the SHA-256 of the pinned version (32 bytes at 32). The bitmap: bit
//! `p % 8` of byte `p / 8` is set once piece `p` is on disk, written in whole 4 KiB blocks.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"THINSRLZ";
const VERSION: u32 = 1;
const HEADER: u64 = 4096;
const MAP_BLOCK: u64 = 4096;

/// The store's geometry: the file's length and the piece (the pool's block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub length: u64,
    pub piece: u64,
}

impl Layout {
    pub fn pieces(&self) -> u64 {
        self.length.div_ceil(self.piece)
    }
    /// Where the header is: after the last piece.
    pub fn map_at(&self) -> u64 {
        self.pieces() * self.piece
    }
    fn bitmap_at(&self) -> u64 {
        self.map_at() + HEADER
    }
    fn bitmap_len(&self) -> u64 {
        self.pieces().div_ceil(8).div_ceil(MAP_BLOCK).max(1) * MAP_BLOCK
    }
    /// The LV's least size.
    pub fn store_size(&self) -> u64 {
        self.bitmap_at() + self.bitmap_len()
    }
}

fn header(layout: &Layout, pinned: &str) -> Vec<u8> {
    let mut h = vec![0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&layout.piece.to_le_bytes());
    h[24..32].copy_from_slice(&layout.length.to_le_bytes());
    h[32..64].copy_from_slice(&Sha256::digest(pinned.as_bytes()));
    h
}

pub fn bit(v: &[u64], i: u64) -> bool {
    v[(i / 64) as usize] & (1 << (i % 64)) != 0
}

pub fn set(v: &mut [u64], i: u64) {
    v[(i / 64) as usize] |= 1 << (i % 64);
}

/// The pieces marked on `dev`, one bit each in words of 64: an LV that reads zeros gets a
/// new header (synced) and an empty map. A header for another file, version or piece is
/// refused.
pub fn open(dev: &File, layout: &Layout, pinned: &str) -> io::Result<Vec<u64>> {
    let want = header(layout, pinned);
    let mut got = vec![0u8; HEADER as usize];
    dev.read_exact_at(&mut got, layout.map_at())?;
    let words = layout.pieces().div_ceil(64) as usize;
    let mut have = vec![0u64; words];
    if got.iter().all(|b| *b == 0) {
        dev.write_all_at(&want, layout.map_at())?;
        dev.sync_data()?;
        return Ok(have);
    }
    if got != want {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the store's header is for another file, version or piece size",
        ));
    }
    let mut map = vec![0u8; layout.bitmap_len() as usize];
    dev.read_exact_at(&mut map, layout.bitmap_at())?;
    for (i, w) in have.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        for (j, byte) in b.iter_mut().enumerate() {
            *byte = map.get(i * 8 + j).copied().unwrap_or(0);
        }
        *w = u64::from_le_bytes(b);
    }
    // Bits past the last piece mean nothing.
    let n = layout.pieces();
    if !n.is_multiple_of(64) {
        if let Some(last) = have.last_mut() {
            *last &= (1u64 << (n % 64)) - 1;
        }
    }
    Ok(have)
}

/// Writes the map blocks that hold the bits of `changed`, from `marked` (not synced).
pub fn write_bits(dev: &File, layout: &Layout, marked: &[u64], changed: &[u64]) -> io::Result<()> {
    let mut blocks: Vec<u64> = changed.iter().map(|p| p / 8 / MAP_BLOCK).collect();
    blocks.sort_unstable();
    blocks.dedup();
    let bytes: Vec<u8> = marked.iter().flat_map(|w| w.to_le_bytes()).collect();
    for b in blocks {
        let mut block = vec![0u8; MAP_BLOCK as usize];
        let from = (b * MAP_BLOCK) as usize;
        let to = (from + MAP_BLOCK as usize).min(bytes.len());
        block[..to - from].copy_from_slice(&bytes[from..to]);
        dev.write_all_at(&block, layout.bitmap_at() + b * MAP_BLOCK)?;
    }
    Ok(())
}

/// The pieces a store's map on `dev` marks present, read without opening the store.
#[cfg(test)]
pub fn present_in(dev: &File, layout: &Layout) -> io::Result<u64> {
    let mut map = vec![0u8; layout.bitmap_len() as usize];
    dev.read_exact_at(&mut map, layout.bitmap_at())?;
    let n: u64 = map.iter().map(|b| u64::from(b.count_ones())).sum();
    // Bits past the last piece mean nothing (a store never sets them).
    Ok(n.min(layout.pieces()))
}
