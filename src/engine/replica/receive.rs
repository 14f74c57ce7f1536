//! `vdi receive [-i FILE] --sr SR [--resumable]`: a stream applied as a replica's new
//! snapshot, visible only once all of it verified (see `mod.rs` for the steps).

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::time::Instant;

use serde::Serialize;

use super::{token_of, Token};
use crate::engine::context::{sr_tag, tagged_thin_lvcreate, Ctx, Locked};
use crate::engine::hooks::Hook;
use crate::engine::meta::{Receiving, Replica, VdiKind, VdiMeta};
use crate::engine::vdi::{free_lv_name, now, refuse_pending, vdi_tag, Volume};
use crate::error::{Error, Result};
use crate::host::lvm::cmd::{self, LvCreate};
use crate::host::lvm::{dev_path, TAG_RECEIVE};
use crate::host::{lock, zero};
use crate::ids::{LvName, LvPath, VdiUuid};
use crate::image::send_stream::{Header, Reader, Record, MAX_DATA};
use crate::progress::Progress;
use crate::units::Bytes;
use crate::{cancel, crash};

/// Data applied between two records of how far a receive verified.
const CHECKPOINT: u64 = 256 << 20;

/// What a receive did.
#[derive(Debug, Serialize)]
pub struct ReceiveReport {
    /// The replica VDI, its contents now the snapshot received.
    pub replica: Volume,
    /// The replica's new snapshot.
    pub snapshot: String,
    /// The source's identities.
    pub source_sr: String,
    pub source_vdi: String,
    pub source_snapshot: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Data written, and ranges unmapped.
    pub data: Bytes,
    pub holes: Bytes,
    pub records: u64,
    /// Bytes of the stream read.
    pub read: Bytes,
    /// Whether the stream continued an interrupted one.
    pub resumed: bool,
    /// Older snapshots of the replica destroyed (`--keep`).
    pub pruned: Vec<String>,
    pub seconds: f64,
}

/// Where a stream is written.
struct Stage {
    snapshot: VdiUuid,
    lv: LvPath,
    resumed: bool,
    /// The pool's allocation unit, holes' whole blocks are unmapped in.
    block: u64,
}

/// The header as recorded: without the point a resumed stream starts at.
fn plain(h: &Header) -> Header {
    Header {
        resume: None,
        ..h.clone()
    }
}

/// The pool's allocation unit, from the report the stage read.
fn pool_block(vg: &crate::host::lvm::Vg, e: &crate::engine::registry::Entry) -> u64 {
    vg.lv(&e.pool)
        .and_then(|l| l.chunk_size)
        .map_or(64 << 10, |c| c.0)
}

/// Whether `v` was received from the stream's source VDI (the replica or a snapshot of it).
fn of_source(v: &VdiMeta, h: &Header) -> bool {
    v.replica
        .as_ref()
        .is_some_and(|r| r.sr == h.sr && r.vdi == h.vdi)
}

/// The replica snapshots of the stream's source VDI on this SR, oldest first.
fn replica_snapshots(op: &Locked, h: &Header) -> Vec<String> {
    op.meta
        .vdis
        .iter()
        .filter(|v| v.kind == VdiKind::Snapshot && of_source(v, h))
        .map(|v| v.uuid.to_string())
        .collect()
}

fn is_replica_of(v: &VdiMeta, h: &Header, snapshot: &str) -> bool {
    of_source(v, h) && v.replica.as_ref().is_some_and(|r| r.snapshot == snapshot)
}

/// The identities and label a stream gives, checked before anything is made of them.
fn check_header(h: &Header) -> Result<()> {
    for id in [
        Some(&h.sr),
        Some(&h.vdi),
        Some(&h.snapshot),
        h.base.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        uuid::Uuid::parse_str(id).map_err(|_| {
            Error::InvalidArgument(format!(
                "the replication stream is invalid: '{}' is not a uuid",
                crate::units::clip(id)
            ))
        })?;
    }
    crate::engine::names::check_label(&h.label)?;
    crate::engine::names::check_label(&h.name)
}

impl Ctx {
    /// `vdi receive`: applies the stream read from `input` to SR `sr`. With `resumable`,
    /// a stream that stops early keeps what verified, and the error names the token to
    /// resume it with; without, nothing of it stays.
    pub fn vdi_receive(
        &self,
        sr: Option<&str>,
        input: &mut dyn Read,
        resumable: bool,
        keep: Option<usize>,
        progress: &dyn Progress,
    ) -> Result<ReceiveReport> {
        let start = Instant::now();
        let mut input = BufReader::with_capacity(MAX_DATA as usize + 64, input);
        let mut reader = Reader::new(&mut input)?;
        let h = reader.header.clone();
        check_header(&h)?;
        let entry = self.entry(sr)?;
        // One receive per source VDI at a time.
        let _one = lock::acquire(&format!("receive-{}", h.vdi), "a receive of this VDI")?;
        cancel::watch();
        let stage = {
            let mut op = self.lock_sr(&entry)?;
            self.stage(&mut op, &h, &reader)?
        };
        let dev = dev_path(&stage.lv.vg, &stage.lv.lv);
        let file = File::options()
            .read(true)
            .write(true)
            .open(&dev)
            .map_err(|e| Error::io(&dev, e));
        let applied = file.and_then(|f| {
            progress.begin(&format!("receiving {}", h.label), h.size);
            let done = self.apply_stream(&entry, &f, &mut reader, &stage, progress);
            progress.end();
            done.map(|d| (f, d))
        });
        let (file, (data, holes)) = match applied {
            Ok(x) => x,
            Err(e) => return Err(self.stopped(&entry, &stage, &h, &reader, resumable, e)),
        };
        let mut op = self.lock_sr(&entry)?;
        crash::point("receive.verified");
        if let Some(head) = self.replica_head(&op, &h) {
            if let Err(e) = self.refuse_in_use(&op, &head) {
                drop((op, file));
                return Err(self.stopped(&entry, &stage, &h, &reader, resumable, e));
            }
        }
        let mut replica = self.commit(&mut op, &h, &stage, file)?;
        let older = match keep {
            Some(n) => replica_snapshots(&op, &h)
                .into_iter()
                .rev()
                .skip(n.max(1))
                .collect(),
            None => vec![],
        };
        drop(op);
        self.after(Hook::PostReplicaReceive, &mut replica)?;
        let mut pruned = Vec::new();
        for old in older {
            self.vdi_destroy(&old, Some(&entry.uuid))?;
            pruned.push(old);
        }
        Ok(ReceiveReport {
            replica,
            snapshot: stage.snapshot.to_string(),
            source_sr: h.sr.clone(),
            source_vdi: h.vdi.clone(),
            source_snapshot: h.snapshot.clone(),
            base: h.base.clone(),
            data: Bytes(data),
            holes: Bytes(holes),
            records: reader.point().records,
            read: Bytes(reader.read),
            resumed: stage.resumed,
            pruned,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Under the SR's lock: checks what the stream needs (its base here, its snapshot not
    /// yet), and makes (or, resumed, finds) the staging LV, recorded in `receiving`.
    fn stage(&self, op: &mut Locked, h: &Header, reader: &Reader<impl Read>) -> Result<Stage> {
        if let Some(v) = op
            .meta
            .vdis
            .iter()
            .find(|v| v.kind == VdiKind::Snapshot && is_replica_of(v, h, &h.snapshot))
        {
            return Err(Error::InvalidArgument(format!(
                "this SR holds snapshot {} of '{}' already (as '{}', {}): nothing to receive",
                h.snapshot, h.label, v.name, v.uuid
            )));
        }
        if let Some(head) = self.replica_head(op, h) {
            refuse_pending(&head)?;
            self.refuse_in_use(op, &head)?;
        }
        let base = match &h.base {
            None => None,
            Some(b) => Some(
                op.meta
                    .vdis
                    .iter()
                    .find(|v| v.kind == VdiKind::Snapshot && is_replica_of(v, h, b))
                    .cloned()
                    .ok_or_else(|| Error::ReplicaBaseMissing {
                        vdi: h.label.clone(),
                        base: b.clone(),
                    })?,
            ),
        };
        let vg = self.lvm.report_vg(&op.entry.vg)?;
        // Interrupted receives of the same source VDI: the one a resumed stream continues,
        // or, for a stream sent whole, all superseded by it.
        let earlier: Vec<Receiving> = op
            .meta
            .receiving
            .iter()
            .filter(|r| r.header.sr == h.sr && r.header.vdi == h.vdi)
            .cloned()
            .collect();
        if let Some(point) = &h.resume {
            let r = earlier
                .into_iter()
                .find(|r| r.header.snapshot == h.snapshot)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                    "the stream resumes a receive of snapshot {} that this SR holds nothing of: \
                     send it from its beginning",
                    h.snapshot
                ))
                })?;
            if plain(h) != r.header || *point != r.point {
                let token = token_of(&r);
                return Err(Error::InvalidArgument(format!(
                    "the stream resumes at byte {} but this SR verified up to byte {} of it: \
                     resume with 'thinsr vdi send {} --resume {token}'",
                    point.offset, r.point.offset, h.snapshot
                )));
            }
            if vg.lv(&r.lv).is_none() {
                op.meta.receiving.retain(|x| x.snapshot != r.snapshot);
                op.save()?;
                return Err(Error::InvalidArgument(format!(
                    "the staging LV {} of the interrupted receive is gone: send it from its \
                     beginning",
                    r.lv
                )));
            }
            let lv = LvPath::new(&vg.name, &r.lv);
            self.set_active(&lv, true)?;
            return Ok(Stage {
                snapshot: r.snapshot,
                lv,
                resumed: true,
                block: pool_block(&vg, &op.entry),
            });
        }
        for r in earlier {
            // Sent again from its beginning, or superseded: what it left goes.
            if vg.lv(&r.lv).is_some() {
                self.remove_lv(&LvPath::new(&vg.name, &r.lv))?;
            }
            op.meta.receiving.retain(|x| x.snapshot != r.snapshot);
        }
        let snapshot = VdiUuid::random();
        let lv = free_lv_name(&vg, &h.name, None);
        let tag = format!("{TAG_RECEIVE}{snapshot}");
        match &base {
            None => {
                self.prepare_thin(&op.entry, &op.meta, &vg, Bytes(h.size))?;
                self.lvm.run(&tagged_thin_lvcreate(
                    &vg.name,
                    &op.entry.pool,
                    &lv,
                    Bytes(h.size),
                    &op.entry.uuid,
                    TAG_RECEIVE,
                    &snapshot,
                ))?;
            }
            Some(b) => {
                let blv = vg.vdi_lv(&b.uuid).ok_or_else(|| {
                    Error::LvNotFound(format!("{}/{} (of snapshot '{}')", vg.name, b.lv, b.name))
                })?;
                self.prepare_thin(&op.entry, &op.meta, &vg, Bytes(h.size))?;
                let args = LvCreate::new(&lv, &[sr_tag(&op.entry.uuid), tag])
                    .active()
                    .writable(true)
                    .snapshot(&LvPath::new(&vg.name, &blv.name));
                self.lvm.run(&args)?;
                if h.size > blv.size.0 {
                    // The source grew since the base.
                    let path = LvPath::new(&vg.name, &lv);
                    self.lvm.run(&cmd::resize(&path, Bytes(h.size), true))?;
                }
            }
        }
        crash::point("receive.staged");
        op.meta.receiving.push(Receiving {
            snapshot: snapshot.clone(),
            lv: lv.clone(),
            header: plain(h),
            point: reader.point(),
        });
        op.save()?;
        Ok(Stage {
            snapshot,
            lv: LvPath::new(&vg.name, &lv),
            resumed: false,
            block: pool_block(&vg, &op.entry),
        })
    }

    /// The replica VDI of the stream's source on this SR, if there is one.
    fn replica_head(&self, op: &Locked, h: &Header) -> Option<VdiMeta> {
        op.meta
            .vdis
            .iter()
            .find(|v| v.kind != VdiKind::Snapshot && of_source(v, h))
            .cloned()
    }

    /// Writes the stream's records onto `file` until its end verifies. Returns (data
    /// bytes, hole bytes).
    fn apply_stream(
        &self,
        entry: &crate::engine::registry::Entry,
        file: &File,
        reader: &mut Reader<impl Read>,
        stage: &Stage,
        progress: &dyn Progress,
    ) -> Result<(u64, u64)> {
        let block = stage.block;
        let (mut data, mut holes, mut since) = (0u64, 0u64, 0u64);
        let what = stage.lv.to_string();
        while let Some(r) = reader.next_record()? {
            if cancel::requested() {
                return Err(Error::Cancelled);
            }
            match &r {
                Record::Data { offset, data: d } => {
                    file.write_all_at(d, *offset)
                        .map_err(|e| Error::io(&what, e))?;
                    data += d.len() as u64;
                    since += d.len() as u64;
                }
                Record::Hole { offset, len } => {
                    // Whole pool blocks are unmapped; the edges of one written as zeros.
                    let (a, b) = zero::discard_blocks(file, *offset, *len, block)
                        .map_err(|e| Error::io(&what, e))?
                        .unwrap_or((*offset, *offset));
                    for (from, to) in [(*offset, a), (b.max(*offset), offset + len)] {
                        if to > from {
                            zero::write_zeros(file, from, to - from)
                                .map_err(|e| Error::io(&what, e))?;
                        }
                    }
                    holes += len;
                }
            }
            progress.set(r.end());
            crash::point("receive.record");
            if since >= CHECKPOINT {
                since = 0;
                self.checkpoint(entry, stage, file, reader)?;
            }
        }
        file.sync_all().map_err(|e| Error::io(&what, e))?;
        Ok((data, holes))
    }

    /// Makes what was applied durable and records the point it reached.
    fn checkpoint(
        &self,
        entry: &crate::engine::registry::Entry,
        stage: &Stage,
        file: &File,
        reader: &Reader<impl Read>,
    ) -> Result<()> {
        file.sync_all()
            .map_err(|e| Error::io(stage.lv.to_string(), e))?;
        let mut op = self.lock_sr(entry)?;
        if let Some(r) = op
            .meta
            .receiving
            .iter_mut()
            .find(|r| r.snapshot == stage.snapshot)
        {
            r.point = reader.point();
        }
        op.save()
    }

    /// A stream that stopped before its verified end (`cause`): with `resumable`, what
    /// verified is kept and the error says how to resume; without, the staging LV goes.
    fn stopped(
        &self,
        entry: &crate::engine::registry::Entry,
        stage: &Stage,
        h: &Header,
        reader: &Reader<impl Read>,
        resumable: bool,
        cause: Error,
    ) -> Error {
        if resumable {
            // What verified is made durable and recorded, the staging LV put away.
            let kept = File::options()
                .write(true)
                .open(dev_path(&stage.lv.vg, &stage.lv.lv))
                .map_err(|e| Error::io(stage.lv.to_string(), e))
                .and_then(|file| self.checkpoint(entry, stage, &file, reader))
                .and_then(|()| self.set_active(&stage.lv, false));
            if kept.is_ok() {
                let token = Token {
                    sr: h.sr.clone(),
                    snapshot: h.snapshot.clone(),
                    base: h.base.clone(),
                    point: reader.point(),
                }
                .encode();
                return Error::InvalidArgument(format!(
                    "{cause}; the replica is as it was, and the {} verified are kept: resume \
                     with 'thinsr vdi send {} --resume {token}'",
                    Bytes(reader.point().bytes),
                    h.snapshot
                ));
            }
        }
        cause.undo("removing what the stream had written", || {
            let mut op = self.lock_sr(entry)?;
            self.set_active(&stage.lv, false).ok();
            self.remove_lv(&stage.lv)?;
            op.meta.receiving.retain(|r| r.snapshot != stage.snapshot);
            op.save()
        })
    }

    /// The verified stream becomes the replica's newest snapshot and its head reads it.
    fn commit(&self, op: &mut Locked, h: &Header, stage: &Stage, file: File) -> Result<Volume> {
        let s = stage.snapshot.clone();
        drop(file);
        self.lvm
            .run(&cmd::add_tag_and_deactivate(&stage.lv, &vdi_tag(&s)))?;
        crash::point("receive.tagged");
        let replica = |snapshot: &str| Replica {
            sr: h.sr.clone(),
            vdi: h.vdi.clone(),
            snapshot: snapshot.to_string(),
            received: now(),
        };
        let head = match self.replica_head(op, h) {
            Some(head) => head.uuid,
            None => {
                let uuid = VdiUuid::random();
                // From the metadata: the revert below takes another name if LVM has this
                // one (the staging LV may), from the report it reads anyway.
                let lv: LvName = op.known_free_name(&h.label);
                let mut v = VdiMeta::new(&uuid, &h.label, VdiKind::Thin, &lv, Bytes(h.size));
                v.created = now();
                op.meta.vdis.push(v);
                uuid
            }
        };
        let mut snap = VdiMeta::new(&s, &h.name, VdiKind::Snapshot, &stage.lv.lv, Bytes(h.size));
        snap.parent = Some(head.clone());
        snap.created = now();
        snap.replica = Some(replica(&h.snapshot));
        op.meta.vdis.push(snap);
        {
            let e = op.vdi_mut(&head)?;
            e.replica = Some(replica(&h.snapshot));
            e.reverting = Some(s.clone());
        }
        op.meta.receiving.retain(|r| r.snapshot != s);
        op.save()?;
        crash::point("receive.recorded");
        self.finish_revert(op, &head)
    }
}
