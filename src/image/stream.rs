//! The two ends of an image stream: `Out`, where an export writes (a file, where zero runs
//! become holes, or a pipe), and `Input`, what an import reads forward (stdin or a file).

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};

use crate::error::{Error, Result};

static ZEROS: [u8; 65536] = [0; 65536];

/// Where an image is written, strictly forward.
pub struct Out<'a> {
    sink: Sink<'a>,
    pos: u64,
    what: String,
}

enum Sink<'a> {
    File(BufWriter<&'a File>),
    Stream(&'a mut dyn Write),
}

impl<'a> Out<'a> {
    /// A regular file, written with holes where the image is zero.
    pub fn file(f: &'a File, what: &str) -> Out<'a> {
        Out {
            sink: Sink::File(BufWriter::with_capacity(1 << 20, f)),
            pos: 0,
            what: what.into(),
        }
    }

    /// A pipe or anything else that cannot seek: zeros are written out.
    pub fn stream(w: &'a mut dyn Write, what: &str) -> Out<'a> {
        Out {
            sink: Sink::Stream(w),
            pos: 0,
            what: what.into(),
        }
    }

    pub fn pos(&self) -> u64 {
        self.pos
    }

    pub fn write(&mut self, b: &[u8]) -> Result<()> {
        match &mut self.sink {
            Sink::File(w) => w.write_all(b),
            Sink::Stream(w) => w.write_all(b),
        }
        .map_err(|e| Error::io(self.what.as_str(), e))?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// `n` bytes of zeros: a hole in a file.
    pub fn zeros(&mut self, n: u64) -> Result<()> {
        match &mut self.sink {
            Sink::File(w) => {
                w.seek(SeekFrom::Current(n as i64))
                    .map_err(|e| Error::io(self.what.as_str(), e))?;
                self.pos += n;
            }
            Sink::Stream(_) => {
                let mut left = n;
                while left > 0 {
                    let k = left.min(ZEROS.len() as u64);
                    self.write(&ZEROS[..k as usize])?;
                    left -= k;
                }
            }
        }
        Ok(())
    }

    /// Flushes; a file ending in a hole gets its length. Returns the bytes of the image.
    pub fn finish(self) -> Result<u64> {
        let what = self.what;
        match self.sink {
            Sink::File(w) => {
                let f = w
                    .into_inner()
                    .map_err(|e| Error::io(what.as_str(), e.into_error()))?;
                f.set_len(self.pos)
                    .map_err(|e| Error::io(what.as_str(), e))?;
            }
            Sink::Stream(w) => w.flush().map_err(|e| Error::io(what.as_str(), e))?,
        }
        Ok(self.pos)
    }
}

/// An image read strictly forward (a pipe cannot go back), with the bytes already read to
/// recognise its format given back first.
pub struct Input<'a> {
    r: &'a mut dyn Read,
    head: Vec<u8>,
    pos: u64,
    pub what: String,
}

impl<'a> Input<'a> {
    pub fn new(r: &'a mut dyn Read, what: &str) -> Input<'a> {
        Input {
            r,
            head: Vec::new(),
            pos: 0,
            what: what.into(),
        }
    }

    /// Up to `n` bytes from the start, kept to be read again.
    pub fn peek(&mut self, n: usize) -> Result<&[u8]> {
        while self.head.len() < n {
            let mut buf = vec![0u8; n - self.head.len()];
            let k = self.read_raw(&mut buf)?;
            if k == 0 {
                break;
            }
            self.head.extend_from_slice(&buf[..k]);
        }
        Ok(&self.head[..n.min(self.head.len())])
    }

    fn read_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            match self.r.read(buf) {
                Ok(k) => return Ok(k),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    if crate::cancel::requested() {
                        return Err(Error::Cancelled);
                    }
                }
                Err(e) => return Err(Error::io(self.what.as_str(), e)),
            }
        }
    }

    /// Where the next byte comes from.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Reads as much as is there, up to `buf.len()`; 0 at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let at = self.pos as usize;
        let k = if at < self.head.len() {
            let k = buf.len().min(self.head.len() - at);
            buf[..k].copy_from_slice(&self.head[at..at + k]);
            k
        } else {
            self.read_raw(buf)?
        };
        self.pos += k as u64;
        Ok(k)
    }

    /// Fills `buf` from `offset`, which must not be behind what was read already.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if offset < self.pos {
            return Err(Error::ImageUnreadable {
                uri: self.what.clone(),
                why: format!(
                    "it needs a read at byte {offset} after byte {}: a stream is read forward \
                     only; import it from a file instead",
                    self.pos
                ),
            });
        }
        let mut scratch = [0u8; 65536];
        while self.pos < offset {
            let k = (offset - self.pos).min(scratch.len() as u64) as usize;
            if self.read(&mut scratch[..k])? == 0 {
                return Err(self.truncated());
            }
        }
        let mut got = 0;
        while got < buf.len() {
            let k = self.read(&mut buf[got..])?;
            if k == 0 {
                return Err(self.truncated());
            }
            got += k;
        }
        Ok(())
    }

    pub fn truncated(&self) -> Error {
        Error::ImageUnreadable {
            uri: self.what.clone(),
            why: format!("it ends early, at byte {}", self.pos),
        }
    }
}

/// True when every byte is zero (a fold the compiler vectorises).
pub fn is_zero(b: &[u8]) -> bool {
    b.chunks(128).all(|c| c.iter().fold(0u8, |a, x| a | x) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_replays_what_was_peeked_and_reads_forward_only() {
        let data: Vec<u8> = (0..200u8).collect();
        let mut r = &data[..];
        let mut i = Input::new(&mut r, "test");
        assert_eq!(i.peek(4).unwrap(), &[0, 1, 2, 3]);
        let mut b = [0u8; 3];
        i.read_at(2, &mut b).unwrap();
        assert_eq!(b, [2, 3, 4]);
        i.read_at(100, &mut b).unwrap();
        assert_eq!(b, [100, 101, 102]);
        assert!(i.read_at(50, &mut b).is_err());
        assert!(i.read_at(199, &mut b).is_err());
        assert!(is_zero(&[0; 1000]));
        assert!(!is_zero(&[&[0u8; 999][..], &[1]].concat()));
    }

    #[test]
    fn out_makes_holes_in_files_and_zeros_in_streams() {
        let mut v = Vec::new();
        let mut o = Out::stream(&mut v, "v");
        o.write(b"ab").unwrap();
        o.zeros(100_000).unwrap();
        o.write(b"c").unwrap();
        assert_eq!(o.finish().unwrap(), 100_003);
        assert_eq!(v.len(), 100_003);
        assert!(is_zero(&v[2..100_002]));
        let f = tempfile();
        let mut o = Out::file(&f, "f");
        o.write(b"ab").unwrap();
        o.zeros(1 << 20).unwrap();
        assert_eq!(o.finish().unwrap(), (1 << 20) + 2);
        assert_eq!(f.metadata().unwrap().len(), (1 << 20) + 2);
    }

    fn tempfile() -> File {
        let p = std::env::temp_dir().join(format!("thinsr-out-{}", std::process::id()));
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        std::fs::remove_file(&p).unwrap();
        f
    }
}
