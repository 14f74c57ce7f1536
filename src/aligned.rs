//! Buffers aligned for O_DIRECT, which bypasses the page cache.

use std::sync::Mutex;

const ALIGN: usize = 4096;

/// The whole 4 KiB blocks around `len` bytes at `offset`: their start and length (what an
/// O_DIRECT read or write of that range must cover).
pub fn around(offset: u64, len: u64) -> (u64, u64) {
    let a = ALIGN as u64;
    let start = offset / a * a;
    (start, (offset + len).div_ceil(a) * a - start)
}

/// Buffers kept for the next user, at most `keep` of them (a fresh buffer costs a page
/// fault per 4 KiB).
pub struct Spare {
    bufs: Mutex<Vec<AlignedBuf>>,
    keep: usize,
}

impl Spare {
    pub fn new(keep: usize) -> Spare {
        Spare {
            bufs: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A buffer of at least `len` bytes: a kept one, or a new one.
    pub fn take(&self, len: usize) -> AlignedBuf {
        let mut bufs = self.bufs.lock().expect("not poisoned");
        match bufs.iter().position(|b| b.as_slice().len() >= len) {
            Some(i) => bufs.swap_remove(i),
            None => AlignedBuf::zeroed(len),
        }
    }

    /// `b` kept for the next `take`, unless enough are.
    pub fn give(&self, b: AlignedBuf) {
        let mut bufs = self.bufs.lock().expect("not poisoned");
        if bufs.len() < self.keep {
            bufs.push(b);
        }
    }
}

/// `len` bytes (a multiple of 4096) starting on a 4096-byte boundary.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes rounded up to whole 4 KiB blocks.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let len = len.div_ceil(ALIGN) * ALIGN;
        let raw = vec![0u8; len + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        AlignedBuf { raw, start, len }
    }

    /// A copy of `data`, zero-padded to whole blocks.
    pub fn copy_of(data: &[u8]) -> AlignedBuf {
        let mut b = AlignedBuf::zeroed(data.len());
        b.as_mut_slice()[..data.len()].copy_from_slice(data);
        b
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_on_a_block_and_fill_whole_blocks() {
        let b = AlignedBuf::copy_of(b"abc");
        assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.as_slice().len(), 4096);
        assert_eq!(&b.as_slice()[..4], b"abc\0");
        assert_eq!(AlignedBuf::zeroed(8192).as_slice().len(), 8192);
    }

    #[test]
    fn the_blocks_around_a_range_cover_it_whole() {
        assert_eq!(around(4096, 8192), (4096, 8192));
        assert_eq!(around(4095, 2), (0, 8192));
        assert_eq!(around(5000, 100), (4096, 4096));
    }

    #[test]
    fn spare_buffers_are_taken_again_up_to_the_kept_number() {
        let s = Spare::new(1);
        let b = s.take(8192);
        let at = b.as_slice().as_ptr();
        s.give(b);
        s.give(AlignedBuf::zeroed(4096));
        assert_eq!(
            s.take(4096).as_slice().as_ptr(),
            at,
            "the kept one, large enough"
        );
        assert_eq!(s.take(4096).as_slice().len(), 4096, "none left: a new one");
    }
}
