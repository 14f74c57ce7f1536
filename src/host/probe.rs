//! Checks on raw devices before thinsr writes to them: does it exist, is it a block device,
//! does anything hold it, what signatures does it carry.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::tool;
use crate::units::{clip, Bytes};

/// A device that passed the checks.
#[derive(Debug, Clone)]
pub struct Device {
    pub path: PathBuf,
    pub size: Bytes,
}

/// Signatures `blkid -p` reports: `TYPE=ext4` or `PTTYPE=gpt`, as "an ext4 filesystem".
pub fn describe_signatures(export: &str) -> Option<String> {
    let mut found = Vec::new();
    for line in export.lines() {
        if let Some(t) = line.strip_prefix("TYPE=") {
            found.push(match t {
                "LVM2_member" => "an LVM physical volume".to_string(),
                "linux_raid_member" => "a RAID member".to_string(),
                "swap" => "swap space".to_string(),
                "crypto_LUKS" => "a LUKS container".to_string(),
                t => format!("{} {t} filesystem", article(t)),
            });
        } else if let Some(t) = line.strip_prefix("PTTYPE=") {
            found.push(format!("{} {t} partition table", article(t)));
        }
    }
    (!found.is_empty()).then(|| found.join(" and "))
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

fn blkid(path: &Path) -> Result<Option<String>> {
    let out = tool::output(
        "blkid",
        &[
            OsStr::new("-p"),
            OsStr::new("-o"),
            OsStr::new("export"),
            path.as_os_str(),
        ],
    )?;
    match out.status.code() {
        Some(0) => Ok(describe_signatures(&String::from_utf8_lossy(&out.stdout))
            .or_else(|| Some("an unknown signature".into()))),
        Some(2) => Ok(None),
        _ => Err(tool::failed("blkid", &out)),
    }
}

fn device_size(path: &Path) -> Result<Bytes> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    f.seek(SeekFrom::End(0))
        .map(Bytes)
        .map_err(|e| Error::io(format!("sizing {}", path.display()), e))
}

/// Checks every device for `sr create`. With `force`, signatures are allowed (LVM wipes
/// them); a device in use (mounted, held by device-mapper) is refused regardless.
/// A block device's identity, its device number (major:minor), whatever it is called:
/// LVM may report a PV by a `/dev/disk/by-id` link (XenServer's newer lvm2 scans only
/// there), a `/dev/mapper` name or `/dev/dm-N`, and an admin may name it any of those.
pub fn device_id(path: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    m.file_type().is_block_device().then(|| m.rdev())
}

/// The device numbers of `paths` that are block devices.
pub fn device_ids<'a>(paths: impl IntoIterator<Item = &'a str>) -> HashSet<u64> {
    paths.into_iter().filter_map(device_id).collect()
}

/// Whether `path` is one of the devices `ids` (or, not being a device, one of `names`).
pub fn is_one_of(path: &str, ids: &HashSet<u64>, names: &HashSet<String>) -> bool {
    names.contains(path) || device_id(path).is_some_and(|id| ids.contains(&id))
}

pub fn check_devices(inputs: &[String], force: bool) -> Result<Vec<Device>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for input in inputs {
        let path = std::fs::canonicalize(input).map_err(|_| Error::DeviceNotFound(clip(input)))?;
        let meta = std::fs::metadata(&path).map_err(|_| Error::DeviceNotFound(clip(input)))?;
        if !meta.file_type().is_block_device() {
            return Err(Error::NotABlockDevice(clip(input)));
        }
        if !seen.insert(path.clone()) {
            return Err(Error::DeviceRepeated(clip(input)));
        }
        // O_EXCL on a block device fails with EBUSY while it is mounted or held.
        if let Err(e) = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_EXCL)
            .open(&path)
        {
            return Err(match e.raw_os_error() {
                Some(nix::libc::EBUSY) => Error::DeviceInUse {
                    device: input.clone(),
                    found: "something that is using it (mounted, or held by device-mapper)".into(),
                },
                _ => Error::io(format!("opening {input}"), e),
            });
        }
        if let Some(found) = blkid(&path)? {
            if !force {
                return Err(Error::DeviceInUse {
                    device: input.clone(),
                    found,
                });
            }
        }
        out.push(Device {
            size: device_size(&path)?,
            path,
        });
    }
    Ok(out)
}

/// True when `path` is a block device (a scheme may hand one over).
pub fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Makes the kernel refuse (`on`) or allow writes to a block device (BLKROSET): for every
/// opener, whatever mode it opened with.
pub fn set_read_only(device: &Path, on: bool) -> Result<()> {
    use std::os::fd::AsRawFd;
    nix::ioctl_write_ptr_bad!(blkroset, 0x125d, nix::libc::c_int);
    let f = std::fs::File::open(device)
        .map_err(|e| Error::io(format!("opening {}", device.display()), e))?;
    let flag: nix::libc::c_int = on.into();
    // SAFETY: BLKROSET reads one int from the pointer, which outlives the call.
    unsafe { blkroset(f.as_raw_fd(), &flag) }
        .map(drop)
        .map_err(|e| {
            Error::io(
                format!("setting {} read-only={on}", device.display()),
                e.into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_blkid_output() {
        let ext4 = "DEVNAME=/dev/vdc\nUUID=x\nTYPE=ext4\nUSAGE=filesystem\n";
        assert_eq!(describe_signatures(ext4).unwrap(), "an ext4 filesystem");
        assert_eq!(
            describe_signatures("TYPE=LVM2_member\n").unwrap(),
            "an LVM physical volume"
        );
        assert_eq!(
            describe_signatures("PTTYPE=gpt\n").unwrap(),
            "a gpt partition table"
        );
        assert_eq!(describe_signatures("DEVNAME=/dev/x\n"), None);
    }
}
