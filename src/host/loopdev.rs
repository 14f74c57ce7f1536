//! Loop devices, through util-linux's losetup: the PVs of file-backed SRs, and raw template
//! images served to their clones in the kernel (read-only, with direct I/O).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::host::tool;
use crate::units::Bytes;

fn losetup(args: &[&std::ffi::OsStr]) -> Result<String> {
    tool::run("losetup", args)
}

/// Creates a new sparse file; refuses one that exists.
pub fn create_sparse(path: &Path, size: Bytes) -> Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::FileExists(path.display().to_string())
            } else {
                Error::io(format!("creating {}", path.display()), e)
            }
        })?;
    f.set_len(size.0).map_err(|e| {
        let _ = std::fs::remove_file(path);
        Error::io(format!("sizing {}", path.display()), e)
    })
}

/// Attaches `file` to a free loop device and returns the device.
pub fn attach(file: &Path) -> Result<PathBuf> {
    let out = losetup(&["--find".as_ref(), "--show".as_ref(), file.as_os_str()])?;
    Ok(PathBuf::from(out.trim()))
}

/// The loop devices currently backed by `file`.
pub fn find(file: &Path) -> Result<Vec<PathBuf>> {
    let out = losetup(&["--associated".as_ref(), file.as_os_str()])?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(PathBuf::from)
        .collect())
}

pub fn detach(dev: &Path) -> Result<()> {
    losetup(&["--detach".as_ref(), dev.as_os_str()]).map(drop)
}

/// A free loop device, not yet attached (the caller records it before attaching, so a
/// crash leaves a name it can find again).
pub fn pick_free() -> Result<PathBuf> {
    let out = losetup(&["--find".as_ref()])?;
    Ok(PathBuf::from(out.trim()))
}

/// Attaches `file` to `dev` read-only, with direct I/O where the file's filesystem can do
/// it: reads then go to the file's disk without a second copy in the page cache. Where it
/// cannot (tmpfs, some network filesystems), the kernel refuses the flag, and the device
/// reads through the page cache instead.
pub fn attach_read_only(dev: &Path, file: &Path) -> Result<()> {
    let (ro, direct) = ("--read-only".as_ref(), "--direct-io=on".as_ref());
    losetup(&[ro, direct, dev.as_os_str(), file.as_os_str()])
        .or_else(|_| losetup(&[ro, dev.as_os_str(), file.as_os_str()]))
        .map(drop)
}

/// The file loop device `dev` reads, from sysfs; None when it is not attached.
pub fn backing_file(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?.to_str()?;
    let text = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// Every attached loop device, with the file it reads.
pub fn attached() -> Vec<(PathBuf, PathBuf)> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, PathBuf)> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("loop"))
        .filter_map(|n| {
            let dev = PathBuf::from(format!("/dev/{n}"));
            backing_file(&dev).map(|f| (dev, f))
        })
        .collect();
    found.sort();
    found
}

/// True when something holds loop device `dev` open through the kernel (a dm table).
pub fn has_holders(dev: &Path) -> bool {
    let Some(name) = dev.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    std::fs::read_dir(format!("/sys/block/{name}/holders"))
        .map(|d| d.count() > 0)
        .unwrap_or(false)
}
