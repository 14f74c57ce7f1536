//! What an entry of the SR's metadata records of an operation under way, so that the next
//! run (or `sr check`) can finish it: a compose (engine/compose.rs), a download
//! (engine/fetch.rs) and a receive (engine/replica/); where a replica came from; and a
//! template's image, and how a lazy one is read.

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

/// A template read lazily from its server (engine/lazy/): clones read it through thinsr's
/// lazy source, which fetches each piece once into `lv` (tagged `thinsr_local=<template>`,
/// the pieces present mapped at its end). When every piece is there, `lv` becomes the
/// template's local copy and this record goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lazy {
    pub lv: LvName,
    /// The file's length (not the image's virtual size, for a qcow2, vhd or vmdk).
    pub length: Bytes,
    /// The version read, ever (`host::http::Pinned`'s record: an ETag, or
    /// `modified:DATE`).
    pub version: String,
    /// The piece fetched and marked at once: the pool's block.
    pub piece: Bytes,
    /// How long a clone's read of a piece not on the host may wait for the server.
    pub timeout_s: u64,
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

/// Where a replica's data came from: the sending SR's VDI and which of its snapshots this
/// holds (for the replica VDI itself: the newest received). Found by these identities,
/// never by name, when the next incremental stream names its base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replica {
    pub sr: String,
    pub vdi: String,
    pub snapshot: String,
    /// Unix time it was received.
    pub received: u64,
}

/// A receive under way or interrupted: the stream's header, the snapshot the staging LV
/// (tagged `thinsr_receive=<snapshot>`) becomes once verified, and the last point verified
/// with its data durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiving {
    pub snapshot: VdiUuid,
    pub lv: LvName,
    pub header: crate::image::send_stream::Header,
    pub point: crate::image::send_stream::Resume,
}

/// A template image, as found when it was introduced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The URI as given (`file:///...`, `nbd://...`, `<scheme>://...`).
    pub uri: String,
    /// qemu's name for its format: raw, qcow2, vpc, vmdk.
    pub format: String,
    /// The file's SHA-256, computed by the full warm of a lazy template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Image {
    /// An image as introduced: nothing checked yet.
    pub fn new(uri: &str, format: &str) -> Image {
        Image {
            uri: uri.into(),
            format: format.into(),
            sha256: None,
        }
    }
}
