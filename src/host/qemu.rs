//! qemu-img: what an image is (format, virtual size) and its JSON reports (`info`, `map`).
//! Any failure is IMAGE_UNREADABLE with qemu's own words.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::host::tool;
use crate::units::{clip, Bytes};

/// Formats thinsr serves as origins (qemu's names: `vpc` is VHD).
const FORMATS: [&str; 5] = ["raw", "qcow2", "vpc", "vmdk", "vhdx"];

#[derive(Deserialize)]
struct QemuInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
}

/// Format and virtual size of an image, as qemu reads it. `format` forces one (NBD exports
/// are raw disks); otherwise qemu detects it.
pub fn probe(image: &str, format: Option<&str>) -> Result<(String, Bytes)> {
    let mut args = vec!["--output=json"];
    if let Some(f) = format {
        args.extend(["-f", f]);
    }
    args.extend(["--", image]);
    let info: QemuInfo = qemu_img_json("info", &args, image)?;
    if !FORMATS.contains(&info.format.as_str()) {
        return Err(Error::ImageUnreadable {
            uri: clip(image),
            why: format!(
                "format '{}' is not served (thinsr serves {})",
                info.format,
                FORMATS.join(", ")
            ),
        });
    }
    if info.virtual_size == 0 {
        return Err(Error::ImageUnreadable {
            uri: clip(image),
            why: "the image is empty".into(),
        });
    }
    Ok((info.format, Bytes(info.virtual_size)))
}

/// How long a report on an image may take: long enough for any image thinsr reads locally,
/// bounded for one behind a server (`THINSR_SERVER_WAIT` seconds, default 60).
fn server_wait() -> std::time::Duration {
    let secs = std::env::var("THINSR_SERVER_WAIT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(60);
    std::time::Duration::from_secs(secs)
}

/// Runs `qemu-img VERB ARGS --output=json` and decodes what it printed; any failure is
/// IMAGE_UNREADABLE for `uri`, with qemu's own words.
pub fn qemu_img_json<T: serde::de::DeserializeOwned>(
    verb: &str,
    args: &[&str],
    uri: &str,
) -> Result<T> {
    let unreadable = |why: String| Error::ImageUnreadable {
        uri: clip(uri),
        why,
    };
    let mut all = vec![verb];
    all.extend_from_slice(args);
    let limit = server_wait();
    let Some(out) = tool::output_within("qemu-img", &all, limit)? else {
        return Err(unreadable(format!(
            "qemu-img {verb} had no answer within {} s (a server that is down or busy: \
             qemu-nbd serves one client at a time unless started with --shared); \
             THINSR_SERVER_WAIT sets the wait in seconds",
            limit.as_secs()
        )));
    };
    if !out.status.success() {
        return Err(unreadable(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| unreadable(format!("qemu-img {verb} printed something unexpected: {e}")))
}
