//! What `sr check` reports: each finding's kind, what is wrong, and what `--repair` does
//! about it (the host actions, carried for `apply`).

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::engine::registry::Entry;
use crate::ids::{LvName, LvPath, VdiUuid};
use crate::units::Bytes;

/// Every kind of finding, listed once: its name (snake_case) is stable, scripts read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A template's local copy LV is gone.
    MissingLocalCopy,
    /// A template's cache LV is gone.
    MissingCache,
    /// An entry whose LV is gone (a destroy interrupted after lvremove).
    MissingLv,
    /// An entry whose LV has another name (a rename interrupted after lvrename).
    RenamedLv,
    /// A preallocated VDI whose zeroing did not finish.
    IncompleteZeroing,
    /// A VDI whose import did not finish.
    IncompleteImport,
    /// A tagged thin LV with no entry (a create interrupted after lvcreate).
    OrphanThinLv,
    /// A tagged preallocated LV with no entry (never zeroed nor used).
    OrphanLv,
    /// A template cache LV no template uses.
    OrphanCache,
    /// A template local copy LV no template uses.
    OrphanLocalCopy,
    /// A device of thinsr's left suspended or without a table.
    StaleDevice,
    /// The device of a template's local copy that no clone reads.
    IdleDevice,
    /// A device of thinsr's serving a VDI the metadata does not know.
    OrphanDevice,
    /// A template attachment whose server is gone.
    DeadOrigin,
    /// A loop device over a template's image that no attachment names.
    StrayLoop,
    /// A revert interrupted between its steps.
    RevertUnfinished,
    /// A data-destroy interrupted after the map was saved.
    DataDestroyUnfinished,
    /// A compose interrupted between its steps.
    ComposeUnfinished,
    /// A compose's new LV that no compose under way names.
    OrphanComposeLv,
    /// A receive that stopped before its stream verified, its staging LV kept to resume.
    ReceiveInterrupted,
    /// A receive's staging LV that no receive names (a crash before it was recorded, or
    /// after it was tagged and before its entry was written).
    OrphanReceiveLv,
    /// An NBD export running for a volume that is not attached.
    StrayExport,
    /// A mirror whose start or end was interrupted, or its leg left behind.
    StaleMirror,
    /// A template share mounted with nobody holding it.
    UnusedShare,
    /// A template share whose server does not answer.
    UnreachableShare,
    /// A lazy template whose file on its server is no longer the version introduced.
    TemplateSourceChanged,
    /// A data-destroyed snapshot whose saved block map is gone.
    MissingBlockMap,
    /// A saved block map no entry names.
    OrphanBlockMap,
    /// A thin device in the pool that no LV names.
    UnknownThinDevice,
    /// An LV whose thin device the pool does not hold.
    MissingThinDevice,
    /// A pool that does not zero new blocks.
    UnzeroedPool,
    /// A pool in trouble (read-only, failed, needing a check).
    Pool,
    /// The host's registry disagrees with the SR's metadata.
    RegistryStale,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        use FindingKind::*;
        match self {
            MissingLocalCopy => "missing_local_copy",
            MissingCache => "missing_cache",
            MissingLv => "missing_lv",
            RenamedLv => "renamed_lv",
            IncompleteZeroing => "incomplete_zeroing",
            IncompleteImport => "incomplete_import",
            OrphanThinLv => "orphan_thin_lv",
            OrphanLv => "orphan_lv",
            OrphanCache => "orphan_cache",
            OrphanLocalCopy => "orphan_local_copy",
            StaleDevice => "stale_device",
            IdleDevice => "idle_device",
            OrphanDevice => "orphan_device",
            DeadOrigin => "dead_origin",
            StrayLoop => "stray_loop",
            RevertUnfinished => "revert_unfinished",
            DataDestroyUnfinished => "data_destroy_unfinished",
            ComposeUnfinished => "compose_unfinished",
            OrphanComposeLv => "orphan_compose_lv",
            ReceiveInterrupted => "receive_interrupted",
            OrphanReceiveLv => "orphan_receive_lv",
            StrayExport => "stray_export",
            StaleMirror => "stale_mirror",
            UnusedShare => "unused_share",
            UnreachableShare => "unreachable_share",
            TemplateSourceChanged => "template_source_changed",
            MissingBlockMap => "missing_block_map",
            OrphanBlockMap => "orphan_block_map",
            UnknownThinDevice => "unknown_thin_device",
            MissingThinDevice => "missing_thin_device",
            UnzeroedPool => "unzeroed_pool",
            Pool => "pool",
            RegistryStale => "registry_stale",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host action `--repair` takes, in the order the findings list them. Changes to the
/// metadata's entries are not here: the plan carries the entries as they will be.
#[derive(Debug, Clone, PartialEq)]
pub enum Fix {
    /// Zero `lv` (in the SR's VG) from `from` to `to`.
    Zero {
        lv: LvName,
        from: Bytes,
        to: Bytes,
        what: String,
    },
    RemoveLv(LvPath),
    /// Resume a device of thinsr's, or remove it when it has no table.
    ReviveOrRemove {
        device: String,
        vdi: String,
    },
    RemoveDevice {
        device: String,
        vdi: String,
    },
    /// Clear a template's attachment whose server is gone.
    ReleaseOrigin(VdiUuid),
    DetachLoop(PathBuf),
    /// Finish the recorded revert of this VDI.
    FinishRevert(VdiUuid),
    /// Finish the recorded compose of this VDI (`redo`: copy again if the copy was not
    /// recorded) or, without `redo` before the copy, undo it.
    FinishCompose {
        vdi: VdiUuid,
        redo: bool,
    },
    /// Forget the record of an interrupted receive (its staging LV removed before).
    ForgetReceive(VdiUuid),
    /// End the NBD export of this VDI.
    StopExport(VdiUuid),
    /// End what is left of this VDI's mirror: its own table back, leg, NBD, log removed.
    EndMirror(VdiUuid),
    /// Unmount this template share (its id under /run/thinsr/mnt) unless held again.
    Unmount(String),
    /// Delete this thin device id from the SR's pool.
    FreeThinDevice(u32),
    /// lvchange --zero y of the pool.
    TurnOnZeroing(LvPath),
    /// Replace the host's registry entry with the metadata's.
    CopyToRegistry(Entry),
}

#[derive(Debug, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub subject: String,
    pub problem: String,
    /// What --repair does about it (or "none": the admin must act).
    pub repair: String,
    pub repaired: bool,
    /// What `apply` does for it, in order.
    #[serde(skip)]
    pub fixes: Vec<Fix>,
}

impl Finding {
    pub(super) fn new(
        kind: FindingKind,
        subject: impl Into<String>,
        problem: impl Into<String>,
        repair: impl Into<String>,
    ) -> Finding {
        Finding {
            kind,
            subject: subject.into(),
            problem: problem.into(),
            repair: repair.into(),
            repaired: false,
            fixes: Vec::new(),
        }
    }

    /// Repaired when `now`, by these host actions (none: the metadata's change alone).
    pub(super) fn fixed_by(mut self, now: bool, fixes: Vec<Fix>) -> Finding {
        self.repaired = now;
        if now {
            self.fixes = fixes;
        }
        self
    }
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub sr: String,
    pub name: String,
    pub findings: Vec<Finding>,
    /// What the admin should change on the host; nothing thinsr repairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// True when nothing is left to repair.
    pub fn clean(&self) -> bool {
        self.findings.iter().all(|f| f.repaired)
    }
}
