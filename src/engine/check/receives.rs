//! The rules for `vdi receive` (engine/replica/): a staging LV whose stream stopped (kept,
//! with how far it verified, for the sender to resume from), and one no receive names
//! any more (a crash before it was recorded, or after it was tagged as its snapshot and
//! before that snapshot's entry was written). Either way the replica is at its last
//! snapshot received; a repair removes what the stream had written.

use super::facts::Facts;
use super::finding::{Finding, FindingKind as K, Fix};
use crate::engine::context::ours;
use crate::engine::replica::token_of;
use crate::host::lvm::{TAG_RECEIVE, TAG_VDI};
use crate::ids::LvPath;
use crate::units::Bytes;

pub(super) fn receives(f: &Facts, repair: bool, out: &mut Vec<Finding>) {
    for lv in ours(&f.vg, &f.entry.uuid) {
        let Some(snapshot) = lv.tag_value(TAG_RECEIVE) else {
            continue;
        };
        if f.meta.vdi(snapshot).is_some() || lv.open {
            // Received, or being written now.
            continue;
        }
        let subject = format!("LV {}/{}", f.vg.name, lv.name);
        let path = LvPath::new(&f.vg.name, &lv.name);
        let record = f
            .meta
            .receiving
            .iter()
            .find(|r| r.snapshot.as_str() == snapshot && r.lv == lv.name);
        let mut fixes = vec![Fix::RemoveLv(path)];
        fixes.extend(record.map(|r| Fix::ForgetReceive(r.snapshot.clone())));
        let finding = match record {
            Some(r) if lv.tag_value(TAG_VDI).is_none() => Finding::new(
                K::ReceiveInterrupted,
                subject,
                format!(
                    "a receive of snapshot {} of '{}' stopped after {} verified; the sender \
                     resumes it with 'thinsr vdi send {} --resume {}'",
                    r.header.snapshot,
                    r.header.label,
                    Bytes(r.point.bytes),
                    r.header.snapshot,
                    token_of(r)
                ),
                "remove what it wrote (the replica stays at its last snapshot)",
            ),
            _ => Finding::new(
                K::OrphanReceiveLv,
                subject,
                "written by a receive that no longer runs, and never made a snapshot",
                "remove it (the replica stays at its last snapshot)",
            ),
        };
        out.push(finding.fixed_by(repair, fixes));
    }
    for r in &f.meta.receiving {
        let staged =
            f.vg.lv(&r.lv)
                .is_some_and(|l| l.tag_value(TAG_RECEIVE) == Some(r.snapshot.as_str()));
        if !staged {
            out.push(
                Finding::new(
                    K::ReceiveInterrupted,
                    format!("the receive of snapshot {}", r.header.snapshot),
                    format!("its staging LV {} is gone", r.lv),
                    "forget it (the sender sends the snapshot whole again)",
                )
                .fixed_by(repair, vec![Fix::ForgetReceive(r.snapshot.clone())]),
            );
        }
    }
}
