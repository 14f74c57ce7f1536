//! Disk image formats: raw, VHD and qcow2 writers and stream readers, thin_dump XML,
//! thin devices' block maps and their differences, extent maps. Pure byte work: nothing here knows about LVM or an SR; the
//! engine hands these a source to read and the ranges that hold data.

pub mod be;
pub mod block_map;
pub mod extent;
pub mod le;
pub mod qcow2;
pub mod send_stream;
pub mod stream;
pub mod thin_xml;
pub mod vhd;

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::aligned::AlignedBuf;
use crate::cancel;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::units::clip;
use extent::{normalize, Extent};
use stream::Out;

/// Reads are at most this large (and aligned for O_DIRECT).
const PIECE: u64 = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Raw,
    Vhd,
    Qcow2,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "raw" => Ok(Format::Raw),
            "vhd" | "vpc" => Ok(Format::Vhd),
            "qcow2" => Ok(Format::Qcow2),
            _ => Err(Error::Usage(format!(
                "unknown format '{}': raw, vhd or qcow2",
                clip(s)
            ))),
        }
    }

    /// The format a file name's extension asks for, if any.
    pub fn of_path(p: &Path) -> Option<Format> {
        match p.extension()?.to_str()? {
            "raw" | "img" => Some(Format::Raw),
            "vhd" => Some(Format::Vhd),
            "qcow2" => Some(Format::Qcow2),
            _ => None,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::Vhd => "vhd",
            Format::Qcow2 => "qcow2",
        })
    }
}

/// Something an image's data is read from, at byte offsets.
pub trait ReadAt {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

/// A block device read with O_DIRECT: each piece comes from the disk once, and a whole
/// disk read leaves the page cache alone.
pub struct Device {
    file: File,
    what: String,
}

impl Device {
    pub fn open(path: &Path) -> Result<Device> {
        let what = path.display().to_string();
        let file = File::options()
            .read(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path)
            .map_err(|e| Error::io(what.as_str(), e))?;
        Ok(Device { file, what })
    }
}

impl ReadAt for Device {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| Error::io(format!("{} at byte {offset}", self.what), e))
    }
}

/// Copies source ranges to the output in bounded pieces, counting them for progress and
/// stopping at a cancel.
pub struct Feed<'a> {
    src: &'a mut dyn ReadAt,
    buf: AlignedBuf,
    pub read: u64,
    progress: &'a dyn Progress,
}

impl<'a> Feed<'a> {
    pub fn new(src: &'a mut dyn ReadAt, progress: &'a dyn Progress) -> Feed<'a> {
        Feed {
            src,
            buf: AlignedBuf::zeroed(PIECE as usize),
            read: 0,
            progress,
        }
    }

    pub fn copy(&mut self, e: Extent, out: &mut Out) -> Result<()> {
        for p in extent::pieces(&[e], PIECE) {
            if cancel::requested() {
                return Err(Error::Cancelled);
            }
            let buf = &mut self.buf.as_mut_slice()[..p.len as usize];
            self.src.read_at(p.start, buf)?;
            out.write(buf)?;
            self.read += p.len;
            self.progress.set(self.read);
        }
        Ok(())
    }
}

/// Writes what is not zero, in 64 KiB pieces, at its offsets of a device that reads zeros
/// already (a new thin LV): what is zero stays unallocated.
pub struct SparseWriter {
    dev: File,
    what: String,
    /// Bytes written.
    pub written: u64,
    reached: u64,
}

impl SparseWriter {
    pub fn open(path: &Path) -> Result<SparseWriter> {
        let what = path.display().to_string();
        let dev = File::options()
            .write(true)
            .open(path)
            .map_err(|e| Error::io(what.as_str(), e))?;
        Ok(SparseWriter {
            dev,
            what,
            written: 0,
            reached: 0,
        })
    }

    pub fn put(&mut self, at: u64, data: &[u8], progress: &dyn Progress) -> Result<()> {
        if cancel::requested() {
            return Err(Error::Cancelled);
        }
        let piece_len = qcow2::CLUSTER as usize;
        for (i, piece) in data.chunks(piece_len).enumerate() {
            if stream::is_zero(piece) {
                continue;
            }
            let off = at + (i * piece_len) as u64;
            self.dev
                .write_all_at(piece, off)
                .map_err(|e| Error::io(format!("{} at byte {off}", self.what), e))?;
            self.written += piece.len() as u64;
        }
        self.reached = self.reached.max(at + data.len() as u64);
        progress.set(self.reached);
        Ok(())
    }

    /// Flushes what was written to the device.
    pub fn finish(&self) -> Result<()> {
        self.dev
            .sync_all()
            .map_err(|e| Error::io(self.what.as_str(), e))
    }
}

/// Writes a raw image: the data ranges, zeros (holes in a file) elsewhere.
pub fn write_raw(size: u64, data: &[Extent], feed: &mut Feed, out: &mut Out) -> Result<()> {
    for e in data {
        out.zeros(e.start - out.pos())?;
        feed.copy(*e, out)?;
    }
    out.zeros(size - out.pos())
}

/// One range of `qemu-img map --output=json`.
#[derive(Deserialize)]
pub struct MapEntry {
    start: u64,
    length: u64,
    data: bool,
}

/// The ranges of a `qemu-img map` that hold data.
pub fn data_of(map: Vec<MapEntry>) -> Vec<Extent> {
    normalize(
        map.into_iter()
            .filter(|e| e.data)
            .map(|e| Extent::new(e.start, e.length))
            .collect(),
    )
}

/// The ranges `qemu-img map --output=json` says hold data: what the engine decodes for a
/// template, for the unit and fuzz tests.
#[cfg(test)]
pub fn parse_qemu_map(json: &[u8]) -> std::result::Result<Vec<Extent>, String> {
    let map: Vec<MapEntry> = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    Ok(data_of(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_map() {
        let json = br#"[{ "start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true, "offset": 327680},
{ "start": 65536, "length": 1048576, "depth": 0, "present": false, "zero": true, "data": false},
{ "start": 1114112, "length": 4096, "depth": 0, "present": true, "zero": false, "data": true, "offset": 393216}]"#;
        assert_eq!(
            parse_qemu_map(json).unwrap(),
            vec![Extent::new(0, 65536), Extent::new(1114112, 4096)]
        );
        assert!(parse_qemu_map(b"[{}]").is_err());
        assert_eq!(Format::of_path(Path::new("/x/a.vhd")), Some(Format::Vhd));
        assert_eq!(Format::of_path(Path::new("a")), None);
        assert!(Format::parse("vmdk").is_err());
    }
}

#[cfg(test)]
mod roundtrip_tests;
