//! `thinsr xapi install|uninstall`: the plugin's method files, put where
//! xapi-storage-script looks so that it never sees a plugin half-made.

use std::path::{Path, PathBuf};

use super::{DATAPATH_METHODS, SCHEME, VOLUME_METHODS, VOLUME_PLUGIN};
use crate::error::{Error, Result};

/// The two plugin directories under `root`.
fn plugin_dirs(root: &Path) -> [(PathBuf, &'static [&'static str]); 2] {
    [
        (root.join("volume").join(VOLUME_PLUGIN), &VOLUME_METHODS),
        (root.join("datapath").join(SCHEME), &DATAPATH_METHODS),
    ]
}

/// A method file: a small Python 3 program that runs `binary` under the method's name
/// with the same arguments and stdin. Python, not a link to the binary: with SMAPI tracing
/// on, xapi-storage-script runs `python3 -m observer FILE --json`, which loads the file
/// with `runpy.run_path(FILE, run_name="__main__")`; a binary fails there. It waits for
/// thinsr (rather than exec) so that the observer's span closes around the call.
fn method_file(binary: &Path, method: &str) -> Result<String> {
    let bin = binary
        .to_str()
        .filter(|b| !b.chars().any(|c| c == '\'' || c == '\\' || c.is_control()));
    let bin = bin.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "the thinsr binary's path {} cannot be written into a method file",
            binary.display()
        ))
    })?;
    Ok(format!(
        "#!/usr/bin/env python3\n\
         # {method} of thinsr's xapi storage plugin (written by 'thinsr xapi install').\n\
         # Runs thinsr under the method's name with the same arguments and stdin; a Python\n\
         # file so that SMAPI tracing (runpy.run_path) can load it.\n\
         import subprocess\n\
         import sys\n\
         \n\
         THINSR = '{bin}'\n\
         \n\
         if __name__ == '__main__':\n\
         \x20   sys.exit(subprocess.call(['{method}'] + sys.argv[1:], executable=THINSR))\n"
    ))
}

/// `thinsr xapi install`: one method file per method, in both plugin directories, each
/// running `binary`. xapi-storage-script watches `<root>/volume` and `<root>/datapath`
/// with inotify and calls `Plugin.Query` the moment a plugin directory appears, never
/// again: a directory seen half-written would leave the plugin broken until the toolstack
/// restarts. So each directory is written whole under a temporary name in `<root>` (which
/// is not watched) and renamed into place; an existing one (an upgrade) is exchanged with
/// the new one in one step (RENAME_EXCHANGE), then removed.
pub fn install(root: &Path, binary: &Path) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    // xapi runs it as root. (A package names the path it will have on the host.)
    if binary.exists() && nix::unistd::geteuid().is_root() {
        let path = std::path::absolute(binary).map_err(|e| Error::io("resolving the binary", e))?;
        crate::host::trust::root_only(&path, "binary for the method files")?;
    }
    let mut made = Vec::new();
    for (dir, methods) in plugin_dirs(root) {
        let parent = dir.parent().unwrap_or(root);
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("plugin");
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        let fresh = root.join(format!(".{name}.new.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&fresh);
        let io = |what: &Path| {
            let what = what.display().to_string();
            move |e| Error::io(format!("writing {what}"), e)
        };
        std::fs::DirBuilder::new()
            .mode(0o755)
            .create(&fresh)
            .map_err(io(&fresh))?;
        for m in methods {
            let file = fresh.join(m);
            std::fs::write(&file, method_file(binary, m)?)
                .and_then(|_| {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                })
                .map_err(io(&file))?;
            made.push(dir.join(m));
        }
        if let Err(e) = swap_in(&fresh, &dir) {
            let _ = std::fs::remove_dir_all(&fresh);
            return Err(e);
        }
    }
    Ok(made)
}

/// Puts directory `fresh` where `dir` is, in one step whether `dir` exists or not.
fn swap_in(fresh: &Path, dir: &Path) -> Result<()> {
    let io = |e: nix::Error| Error::io(format!("moving {} into place", dir.display()), e.into());
    if std::fs::symlink_metadata(dir).is_err() {
        return std::fs::rename(fresh, dir)
            .map_err(|e| Error::io(format!("moving {} into place", dir.display()), e));
    }
    match exchange(fresh, dir) {
        Ok(()) => {}
        // A filesystem without exchange: the old one moves aside first.
        Err(nix::Error::EINVAL) => {
            let aside = fresh.with_extension("old");
            std::fs::rename(dir, &aside)
                .and_then(|_| std::fs::rename(fresh, dir))
                .map_err(|e| Error::io(format!("moving {} into place", dir.display()), e))?;
            let _ = std::fs::remove_dir_all(&aside);
            return Ok(());
        }
        Err(e) => return Err(io(e)),
    }
    // `fresh` now holds the old plugin.
    std::fs::remove_dir_all(fresh)
        .map_err(|e| Error::io(format!("removing the old {}", dir.display()), e))
}

/// `thinsr xapi uninstall`: removes the plugin directories whole (each moved aside first,
/// so xapi never sees one half-emptied); returns how many method files they held.
pub fn uninstall(root: &Path) -> Result<usize> {
    let mut removed = 0;
    for (dir, _) in plugin_dirs(root) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let count = entries.count();
        let aside = root.join(format!(
            ".{}.gone.{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("plugin"),
            std::process::id()
        ));
        std::fs::rename(&dir, &aside)
            .and_then(|_| std::fs::remove_dir_all(&aside))
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        removed += count;
    }
    Ok(removed)
}

/// renameat2(RENAME_EXCHANGE): the two paths trade places atomically (Linux 3.15; nix and
/// libc wrap it for glibc only, and the static binary is musl's, so the system call).
fn exchange(a: &Path, b: &Path) -> nix::Result<()> {
    use nix::libc;
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    const RENAME_EXCHANGE: libc::c_uint = 1 << 1;
    // SAFETY: two NUL-terminated paths that outlive the call; no memory is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}
