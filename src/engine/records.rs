//! What an entry of the SR's metadata records of an operation under way, so that the next
//! run (or `sr check`) can finish it: a compose (engine/compose.rs) and a download
//! (engine/fetch.rs).

use serde::{Deserialize, Serialize};

use crate::ids::{LvName, VdiUuid};
use crate::units::Bytes;

/// A compose under way (the intent, recorded before any LV changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Composing {
    /// The VDI whose data goes under this one's writes; it is gone once compose ends.
    pub parent: VdiUuid,
    /// The new LV: a thin snapshot of the parent, tagged `thinsr_compose=<this VDI>`.
    pub lv: LvName,
    /// The written ranges are on the new LV: from here on the compose only goes forward.
    #[serde(default)]
    pub copied: bool,
}

/// A download under way (engine/fetch.rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    /// The file's length.
    pub length: Bytes,
    /// Bytes from the start known written to the LV (synced), where a resume starts.
    pub fetched: Bytes,
    /// The version of the file those bytes are of (ETag or Last-Modified): a resume asks
    /// for the rest of that version only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<String>,
}
