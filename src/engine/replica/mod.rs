//! Replicas of VDIs in another SR, on this host or another: `vdi send` writes a snapshot
//! (or what changed since an older one) as a self-checking stream
//! (`image/send_stream.rs`, docs/send-stream.md), reading only the changed blocks;
//! `vdi receive` applies it (`receive.rs`).
//!
//! On the receiving side a replica is a VDI (its head, whose contents are the newest
//! snapshot received) and its snapshots, each recording which of the source's snapshots it
//! equals (`VdiMeta::replica`). An incremental stream names its base by the source's
//! identities, never by name, and is written onto a thin snapshot of the replica's copy of
//! that base: a staging LV tagged `thinsr_receive=<new snapshot>` that nothing else reads.
//! Only once the end of the stream verifies does it become a snapshot of the replica (its
//! tag joined by `thinsr_vdi=`, then its entry written with the head's revert onto it
//! recorded, then the head reverted as `vdi revert` does): a cut, corrupt or reordered
//! stream leaves the replica as it was. A cut stream leaves its staging LV and how far it
//! verified (`SrMeta::receiving`), and the token printed then lets the sender resume from
//! there (`vdi send --resume TOKEN`).

mod receive;
mod replicate;
mod send;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub use receive::ReceiveReport;
pub use replicate::{Destination, ReplicateOpts, ReplicateReport, REPLICATION_KEY};
pub use send::SendReport;

use crate::error::{Error, Result};
use crate::image::send_stream::Resume;

/// What a receiver verified of a stream, for its sender to continue from: the stream's
/// identities and the point (`vdi send --resume TOKEN`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub sr: String,
    pub snapshot: String,
    pub base: Option<String>,
    pub point: Resume,
}

impl Token {
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token serialises");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    pub fn decode(s: &str) -> Result<Token> {
        let bad = |why: String| Error::InvalidArgument(format!("invalid resume token: {why}"));
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(|e| bad(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))
    }
}

/// The token a sender resumes record `r`'s stream with.
pub(crate) fn token_of(r: &crate::engine::meta::Receiving) -> String {
    Token {
        sr: r.header.sr.clone(),
        snapshot: r.header.snapshot.clone(),
        base: r.header.base.clone(),
        point: r.point.clone(),
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let t = Token {
            sr: "a".into(),
            snapshot: "b".into(),
            base: None,
            point: Resume {
                records: 3,
                bytes: 4,
                offset: 5,
                chain: "00".repeat(16),
            },
        };
        assert_eq!(Token::decode(&t.encode()).unwrap(), t);
        assert!(Token::decode("not a token").is_err());
        assert!(Token::decode(&t.encode()[1..]).is_err());
    }
}
