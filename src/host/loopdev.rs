//! Loop devices for file-backed SRs, through util-linux's losetup.

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
