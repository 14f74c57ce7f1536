//! `vdi send SNAPSHOT [--base OLDER] [--resume TOKEN]`: the stream of a snapshot.

use std::io::Write;
use std::time::Instant;

use serde::Serialize;

use super::Token;
use crate::aligned::AlignedBuf;
use crate::cancel;
use crate::engine::context::Ctx;
use crate::engine::export::{write_to, Target};
use crate::engine::meta::{VdiKind, VdiMeta};
use crate::error::{Error, Result};
use crate::image::block_map::CBT_BLOCK;
use crate::image::extent::{pieces, total, Extent};
use crate::image::send_stream::{Header, Writer};
use crate::image::{Device, ReadAt};
use crate::progress::Progress;
use crate::units::Bytes;

/// Data read for one record at most.
const PIECE: u64 = 1 << 20;

/// What a send did.
#[derive(Debug, Serialize)]
pub struct SendReport {
    pub snapshot: String,
    pub snapshot_name: String,
    pub vdi: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    pub virtual_size: Bytes,
    /// Data sent (read from the snapshot: only what changed).
    pub data: Bytes,
    /// Ranges the base held and the snapshot no longer does.
    pub holes: Bytes,
    /// Data a resumed stream did not send again.
    pub skipped: Bytes,
    pub records: u64,
    /// Bytes of the stream.
    pub written: Bytes,
    /// Where it went: a file, or - for stdout.
    pub output: String,
    pub seconds: f64,
}

impl Ctx {
    /// `vdi send`: writes snapshot `key` (what differs from `base`, with one; from the
    /// token's point, with `resume`) to `out`.
    pub fn vdi_send(
        &self,
        key: &str,
        sr: Option<&str>,
        base: Option<&str>,
        resume: Option<&str>,
        target: &Target,
        progress: &dyn Progress,
    ) -> Result<SendReport> {
        let mut r = write_to(target, |out| {
            self.send_into(key, sr, base, resume, out, progress)
        })?;
        if let Target::File { path, .. } = target {
            r.output = path.display().to_string();
        }
        Ok(r)
    }

    /// `vdi send` into `out` (reported as stdout, `-`).
    pub(crate) fn send_into(
        &self,
        key: &str,
        sr: Option<&str>,
        base: Option<&str>,
        resume: Option<&str>,
        out: &mut dyn Write,
        progress: &dyn Progress,
    ) -> Result<SendReport> {
        let start = Instant::now();
        let found = self.resolve(key, sr)?;
        let (sr_uuid, s) = self.readable_vdi(&found.uuid, Some(&found.entry.uuid))?;
        if s.kind != VdiKind::Snapshot {
            return Err(Error::InvalidArgument(format!(
                "'{}' is not a snapshot: a stream is taken of a snapshot, which cannot change \
                 while it is read ('thinsr vdi snapshot {0}' takes one)",
                s.name
            )));
        }
        let token = resume.map(Token::decode).transpose()?;
        if let Some(t) = &token {
            if t.sr != sr_uuid.as_str() || t.snapshot != s.uuid.as_str() {
                return Err(Error::InvalidArgument(format!(
                    "the resume token is for snapshot {} of SR {}, not '{}'",
                    t.snapshot, t.sr, s.name
                )));
            }
            if base.is_some_and(|b| Some(b) != t.base.as_deref()) {
                return Err(Error::Usage(
                    "--base is the token's: leave it out when resuming".into(),
                ));
            }
        }
        let base_key = token
            .as_ref()
            .map_or(base.map(str::to_string), |t| t.base.clone());
        let base = match &base_key {
            Some(b) => Some(self.send_base(&s, b, &sr_uuid)?),
            None => None,
        };
        let parent = s.parent.as_ref().and_then(|p| found.meta.vdi(p));
        let mut header = Header {
            sr: sr_uuid.to_string(),
            vdi: s.parent.as_ref().unwrap_or(&s.uuid).to_string(),
            label: parent.map_or(&s.name, |p| &p.name).clone(),
            snapshot: s.uuid.to_string(),
            name: s.name.clone(),
            base: base.as_ref().map(|b| b.uuid.to_string()),
            size: s.size.0,
            block: CBT_BLOCK,
            created: s.created,
            resume: token.map(|t| t.point),
        };
        cancel::watch();
        let base_uuid = base.as_ref().map(|b| b.uuid.to_string());
        let ((data, holes, skipped, records, written), _) =
            self.with_readable(&s, &sr_uuid, base_uuid.as_deref(), |src, _| {
                let (data, holes) = self.layout(src, CBT_BLOCK)?;
                header.size = src.size;
                let mut dev = Device::open(&src.path)?;
                let sent = stream(&header, &data, &holes, &mut dev, out, progress);
                progress.end();
                sent
            })?;
        Ok(SendReport {
            snapshot: s.uuid.to_string(),
            snapshot_name: s.name.clone(),
            vdi: header.vdi,
            base: base_uuid,
            virtual_size: Bytes(header.size),
            data: Bytes(data),
            holes: Bytes(holes),
            skipped: Bytes(skipped),
            records,
            written: Bytes(written),
            output: "-".into(),
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The older snapshot `key` a stream of `s` is relative to: another snapshot of the
    /// same VDI.
    fn send_base(&self, s: &VdiMeta, key: &str, sr: &str) -> Result<VdiMeta> {
        let found = self.resolve(key, Some(sr))?;
        let b = found.vdi()?;
        let why = if b.uuid == s.uuid {
            Some("it is the snapshot itself")
        } else if b.kind != VdiKind::Snapshot {
            Some("it is not a snapshot")
        } else if b.parent != s.parent || b.origin != s.origin {
            Some("it is not a snapshot of the same VDI")
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::InvalidArgument(format!(
                "'{}' cannot be the base of a stream of '{}': {why}",
                b.name, s.name
            ))),
            None => Ok(b),
        }
    }
}

/// Writes the stream: `data` read from `dev` in pieces and `holes`, in offset order, from
/// the header's resume point on. Returns (data bytes, hole bytes, data skipped, records,
/// stream bytes).
fn stream(
    header: &Header,
    data: &[Extent],
    holes: &[Extent],
    dev: &mut Device,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<(u64, u64, u64, u64, u64)> {
    let from = header.resume.as_ref().map_or(0, |r| r.offset);
    let mut ranges: Vec<(Extent, bool)> = pieces(data, PIECE)
        .map(|e| (e, true))
        .chain(holes.iter().map(|e| (*e, false)))
        .collect();
    ranges.sort_unstable_by_key(|(e, _)| e.start);
    let out = std::io::BufWriter::with_capacity(PIECE as usize, out);
    let mut w = Writer::new(out, header)?;
    progress.begin(&format!("sending {}", header.label), total(data));
    let mut buf = AlignedBuf::zeroed(PIECE as usize);
    let (mut sent, mut gone, mut skipped, mut records) = (0, 0, 0, 0);
    for (e, is_data) in ranges {
        if e.start < from {
            // Sent before the cut: the receiver has it (records never straddle the point,
            // as both streams cut the same extents into the same pieces).
            skipped += if is_data { e.len } else { 0 };
            continue;
        }
        if cancel::requested() {
            return Err(Error::Cancelled);
        }
        if is_data {
            let b = &mut buf.as_mut_slice()[..e.len as usize];
            dev.read_at(e.start, b)?;
            w.data(e.start, b)?;
            sent += e.len;
            progress.set(skipped + sent);
        } else {
            w.hole(e.start, e.len)?;
            gone += e.len;
        }
        records += 1;
        if records == 2 && crate::crash::torn("send.cut") {
            // A stream cut after two records as a dead sender leaves it: those delivered.
            w.flush()?;
            crate::crash::abort("send.cut");
        }
    }
    let (_, written) = w.finish()?;
    Ok((sent, gone, skipped, records, written))
}
