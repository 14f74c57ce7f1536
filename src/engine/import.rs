//! `vdi import`: a new thin VDI filled from an image, writing only what is not zero so it
//! stays thin. Files and NBD exports (`nbd://HOST[:PORT]/EXPORT`,
//! `nbd+unix:///EXPORT?socket=PATH`) are converted by qemu-img (every format it reads; an
//! export is raw); a stream on stdin is decoded here (raw, VHD dynamic, qcow2), forward only.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::engine::context::Ctx;
use crate::engine::vdi::Volume;
use crate::error::{Error, Result};
use crate::host::lvm::dev_path;
use crate::host::qemu::probe;
use crate::ids::LvPath;
use crate::image::qcow2;
use crate::image::stream::Input;
use crate::image::{vhd, SparseWriter};
use crate::progress::Progress;
use crate::units::{clip, Bytes};
use crate::{cancel, crash};

#[derive(Debug, Clone)]
pub enum ImportSource {
    File(PathBuf),
    /// An NBD export, as qemu names it (checked by `nbd_uri`).
    Nbd(String),
    Stdin,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOpts {
    /// raw, vhd, qcow2, vmdk, vhdx; None detects it.
    pub format: Option<String>,
    /// The size of a raw stream, which does not say (the stream must be exactly this long).
    pub size: Option<Bytes>,
    pub description: String,
}

#[derive(Debug, Serialize)]
pub struct Imported {
    #[serde(flatten)]
    pub volume: Volume,
    /// The image's format, as read.
    pub format: String,
    /// Bytes written to the new VDI: the image's non-zero data (for a stream; qemu-img
    /// does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<u64>,
}

/// A stream's format, from its first bytes.
fn detect(head: &[u8]) -> &'static str {
    if head.starts_with(qcow2::MAGIC) {
        "qcow2"
    } else if head.starts_with(vhd::COOKIE) {
        "vhd"
    } else if head.starts_with(b"KDMV") || head.starts_with(b"# Disk DescriptorFile") {
        "vmdk"
    } else if head.starts_with(b"vhdxfile") {
        "vhdx"
    } else {
        "raw"
    }
}

/// qemu's name for a format the admin named.
fn qemu_format(f: &str) -> Result<&str> {
    match f {
        "raw" | "qcow2" | "vmdk" | "vhdx" => Ok(f),
        "vhd" | "vpc" => Ok("vpc"),
        _ => Err(Error::Usage(format!(
            "unknown format '{}': auto, raw, vhd, qcow2, vmdk or vhdx",
            clip(f)
        ))),
    }
}

/// thinsr's name for a format qemu calls by another (its `vpc` is VHD).
fn our_format(f: &str) -> &str {
    if f == "vpc" {
        "vhd"
    } else {
        f
    }
}

/// Decodes a stream into `w`; the format and header were read already.
enum Decoder {
    Raw,
    Vhd(vhd::Header),
    Qcow2(qcow2::Header),
}

fn decode(
    input: &mut Input,
    d: &Decoder,
    size: u64,
    w: &mut SparseWriter,
    progress: &dyn Progress,
) -> Result<()> {
    let mut sink = |at: u64, data: &[u8]| w.put(at, data, progress);
    match d {
        Decoder::Vhd(h) => vhd::decode(input, h, &mut sink),
        Decoder::Qcow2(h) => qcow2::decode(input, h, &mut sink),
        Decoder::Raw => {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let mut got = 0;
                while got < buf.len() {
                    let k = input.read(&mut buf[got..])?;
                    if k == 0 {
                        break;
                    }
                    got += k;
                }
                if got == 0 {
                    // A pipe whose writer died ends like a complete one: only the length
                    // tells them apart.
                    if input.pos() != size {
                        return Err(Error::ImageUnreadable {
                            uri: input.what.clone(),
                            why: format!(
                                "the raw stream ended after {} bytes, and --size says {}",
                                input.pos(),
                                size
                            ),
                        });
                    }
                    return Ok(());
                }
                let at = input.pos() - got as u64;
                if at + got as u64 > size {
                    return Err(Error::InvalidSize {
                        input: format!("{}", Bytes(size)),
                        why: "the raw stream is longer than --size".into(),
                    });
                }
                sink(at, &buf[..got])?;
            }
        }
    }
}

impl Ctx {
    /// `vdi import`: reads the image's size, makes a thin VDI of it (marked incomplete
    /// until the end, so a crash leaves nothing that looks whole), writes the image's
    /// non-zero data, and removes the VDI again if anything fails.
    pub fn vdi_import(
        &self,
        src: &ImportSource,
        sr: Option<&str>,
        label: &str,
        opts: &ImportOpts,
        progress: &dyn Progress,
    ) -> Result<Imported> {
        crate::engine::names::check_label(label)?;
        crate::engine::names::check_description(&opts.description)?;
        let wanted = opts.format.as_deref().filter(|f| *f != "auto");
        if let Some(f) = wanted {
            qemu_format(f)?;
        }
        cancel::watch();
        match src {
            ImportSource::File(path) => {
                if !path.is_file() {
                    return Err(Error::ImageUnreadable {
                        uri: path.display().to_string(),
                        why: "no such file".into(),
                    });
                }
                let image = path.to_string_lossy().to_string();
                let (format, size) = probe(&image, wanted.map(qemu_format).transpose()?)?;
                self.import_into(sr, label, opts, size, &format, progress, |dev, _| {
                    convert(&image, &format, dev, size, progress)
                })
            }
            ImportSource::Nbd(uri) => {
                let uri = crate::engine::template::nbd_uri(uri)?;
                if wanted.is_some_and(|f| f != "raw") {
                    return Err(Error::Usage("an NBD export is read as raw".into()));
                }
                let (format, size) = probe(&uri, Some("raw"))?;
                self.import_into(sr, label, opts, size, &format, progress, |dev, _| {
                    convert(&uri, &format, dev, size, progress)
                })
            }
            ImportSource::Stdin => {
                let mut stdin = std::io::stdin().lock();
                let mut input = Input::new(&mut stdin, "stdin");
                let found = detect(input.peek(512)?);
                let format = wanted.map(our_format).unwrap_or(found);
                let (decoder, size) = match format {
                    "qcow2" => {
                        let h = qcow2::read_header(&mut input)?;
                        let size = h.size;
                        (Decoder::Qcow2(h), size)
                    }
                    "vhd" => {
                        let h = vhd::read_header(&mut input)?;
                        let size = h.size;
                        (Decoder::Vhd(h), size)
                    }
                    "raw" => {
                        let size = opts.size.ok_or_else(|| {
                            Error::Usage("a raw stream does not say its size: give --size".into())
                        })?;
                        (Decoder::Raw, size.0)
                    }
                    other => {
                        return Err(Error::Usage(format!(
                            "{other} is read from a file only (qemu-img needs to seek in it): \
                             give the file's path instead of -"
                        )))
                    }
                };
                if size == 0 {
                    return Err(Error::InvalidSize {
                        input: "0".into(),
                        why: "a disk must be larger than zero".into(),
                    });
                }
                let size = Bytes(size);
                self.import_into(sr, label, opts, size, format, progress, |dev, w| {
                    let mut writer = SparseWriter::open(Path::new(dev))?;
                    decode(&mut input, &decoder, size.0, &mut writer, progress)?;
                    *w = Some(writer.written);
                    writer.finish()
                })
            }
        }
    }

    /// Makes the VDI, runs `fill(device, &mut written)`, and finishes or undoes it.
    #[allow(clippy::too_many_arguments)]
    fn import_into(
        &self,
        sr: Option<&str>,
        label: &str,
        opts: &ImportOpts,
        size: Bytes,
        format: &str,
        progress: &dyn Progress,
        fill: impl FnOnce(&str, &mut Option<u64>) -> Result<()>,
    ) -> Result<Imported> {
        let v = self.create(sr, label, size, &opts.description, false, true, progress)?;
        crash::point("import.after-create");
        let dev = dev_path(&v.vg, &v.lv);
        let mut written = None;
        progress.begin(&format!("importing {label}"), size.0);
        let filled = fill(&dev, &mut written).and_then(|_| {
            // Ctrl-C also ends the stream's writer: what looked like its end may not be.
            if cancel::requested() {
                return Err(Error::Cancelled);
            }
            Ok(())
        });
        progress.end();
        crash::point("import.after-write");
        let lv = LvPath::new(&v.vg, &v.lv);
        let finished = filled
            .and_then(|_| self.set_active(&lv, false))
            .and_then(|_| {
                crash::point("import.after-deactivate");
                let entry = self.entry(Some(&v.sr))?;
                let op = self.lock_sr(&entry)?;
                self.finish_import(op, &v.uuid)
            });
        match finished {
            Ok(()) => {
                let mut volume = v;
                volume.pending = None;
                if let Some(w) = written {
                    volume.physical_utilisation = Bytes(w);
                }
                // Once its data is in, as `vdi copy` does.
                self.after(crate::engine::hooks::Hook::PostVdiCreate, &mut volume)?;
                Ok(Imported {
                    volume,
                    format: our_format(format).into(),
                    written,
                })
            }
            Err(e) => Err(e.undo("destroying the half-imported VDI", || {
                // Deactivating first is a courtesy: the destroy is what must work.
                self.set_active(&lv, false).ok();
                self.destroy_quietly(&v.uuid, Some(&v.sr))
            })),
        }
    }
}

/// `qemu-img convert` of a file onto the new VDI, skipping zeros (the VDI reads zeros
/// already), its progress passed on; killed at a cancel.
/// Converts `image` (of `format`) into raw device `dev`, which reads zeros already,
/// writing only data (qemu-img), with progress and cancellation.
pub(crate) fn convert(
    image: &str,
    format: &str,
    dev: &str,
    size: Bytes,
    progress: &dyn Progress,
) -> Result<()> {
    let mut child = Command::new(crate::host::tool::program("qemu-img"))
        .args([
            "convert",
            "-p",
            "-n",
            "--target-is-zero",
            "-W",
            "-t",
            "none",
            "-f",
            format,
            "-O",
            "raw",
            "--",
            image,
            dev,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::CommandFailed {
            tool: "qemu-img".into(),
            message: e.to_string(),
        })?;
    let mut out = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = read_until_any(&mut out, &mut line)?;
        if cancel::requested() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Cancelled);
        }
        if n == 0 {
            break;
        }
        // "    (12.34/100%)"
        let text = String::from_utf8_lossy(&line);
        if let Some(pct) = text
            .trim()
            .strip_prefix('(')
            .and_then(|t| t.split('/').next())
        {
            if let Ok(p) = pct.parse::<f64>() {
                progress.set((size.0 as f64 * p / 100.0) as u64);
            }
        }
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().map_err(|e| Error::CommandFailed {
        tool: "qemu-img".into(),
        message: e.to_string(),
    })?;
    if cancel::requested() {
        return Err(Error::Cancelled);
    }
    if !status.success() {
        return Err(Error::CommandFailed {
            tool: "qemu-img convert".into(),
            message: err.trim().to_string(),
        });
    }
    Ok(())
}

/// Reads up to a '\r' or '\n' (qemu-img redraws its progress with '\r').
fn read_until_any(r: &mut impl BufRead, out: &mut Vec<u8>) -> Result<usize> {
    let mut n = 0;
    loop {
        let buf = r
            .fill_buf()
            .map_err(|e| Error::io("qemu-img's output", e))?;
        if buf.is_empty() {
            return Ok(n);
        }
        match buf.iter().position(|b| *b == b'\r' || *b == b'\n') {
            Some(i) => {
                out.extend_from_slice(&buf[..i]);
                r.consume(i + 1);
                return Ok(n + i + 1);
            }
            None => {
                let k = buf.len();
                out.extend_from_slice(buf);
                r.consume(k);
                n += k;
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn detects_formats() {
        assert_eq!(detect(b"QFI\xfb\0\0\0\x03"), "qcow2");
        assert_eq!(detect(b"conectix"), "vhd");
        assert_eq!(detect(b"KDMV"), "vmdk");
        assert_eq!(detect(b"\0\0\0\0"), "raw");
        assert_eq!(detect(b""), "raw");
        assert_eq!(qemu_format("vhd").unwrap(), "vpc");
        assert!(qemu_format("iso").is_err());
    }

    #[test]
    fn splits_qemu_progress() {
        let mut r = &b"    (0.00/100%)\r    (50.00/100%)\r\n"[..];
        let mut line = Vec::new();
        read_until_any(&mut r, &mut line).unwrap();
        assert_eq!(line, b"    (0.00/100%)");
    }
}
