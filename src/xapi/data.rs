//! The `Data` interface's mirror (xapi-storage's data.ml): a storage migration leaving this
//! host. `Data.mirror` starts the kernel mirror of a volume in use, `Data.stat` says where
//! it stands (xapi calls it in a loop without sleeping: it waits for news), and the VM's
//! `Datapath.deactivate` is the drain point. xapi never calls Data.cancel, destroy or ls:
//! a mirror whose destination dies is ended by thinsr itself (engine/mirror.rs).

use serde_json::{json, Value};

use super::{parse_volume_uri, to_value, Args};
use crate::engine::context::Ctx;
use crate::engine::mirror;
use crate::engine::vdi::Found;
use crate::error::{Error, Result};
use crate::ids::VdiUuid;

pub(super) fn call(ctx: &Ctx, method: &str, a: &Args) -> Result<Value> {
    match method {
        // Every write the VM makes reaches both from the return on; the u0_mirror datapath
        // xapi attached first may go meanwhile (its domain is not the writer).
        "Data.mirror" => {
            let (sr, vdi) = parse_volume_uri(a.str("uri")?)?;
            let m = ctx.mirror_start(&vdi, Some(&sr), a.str("remote")?)?;
            Ok(json!(["MirrorV1", m.key()]))
        }
        _ => {
            let key = match a
                .0
                .get("operation")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                Some([kind, key]) if kind == "MirrorV1" => key.as_str().unwrap_or_default(),
                _ => {
                    return Err(Error::InvalidArgument(
                        "operation is not [\"MirrorV1\", KEY]: thinsr runs no copy operations"
                            .into(),
                    ))
                }
            };
            to_value(&mirror::stat(key)?)
        }
    }
}

/// The VM's writer domain deactivated: it is suspended and its backend gone, so every
/// write it made must be on the destination when this returns. An error only when a
/// mirror ran and the destination did not get them all; a mirror that failed before (the
/// migration given up, the VM running on here since) is no error now.
pub(super) fn drain(found: &Found, vdi: &str) -> Result<()> {
    let uuid = VdiUuid::from(found.uuid.as_str());
    let sr = &found.entry.uuid;
    if !mirror::load(sr, &uuid).is_some_and(|m| m.running()) {
        return Ok(());
    }
    match mirror::finish(sr, &uuid)? {
        Some(mirror::Mirror {
            phase: mirror::Phase::Failed { why },
            ..
        }) => Err(Error::MirrorFailed {
            vdi: vdi.to_string(),
            why,
        }),
        _ => Ok(()),
    }
}
