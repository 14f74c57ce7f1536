//! Buffers aligned for O_DIRECT, which bypasses the page cache.

const ALIGN: usize = 4096;

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
}
