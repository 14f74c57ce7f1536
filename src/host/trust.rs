//! What thinsr runs or reads as root must not be writable by anyone but root: a scheme
//! script, a method file, a configuration file, and every directory above each. Otherwise
//! whoever can write any of them can make root run their code, or read their settings.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Why `meta` (of `path`) could be changed by someone other than root, if it could.
fn writable_by_others(meta: &std::fs::Metadata) -> Option<String> {
    if meta.file_type().is_symlink() {
        // A link's own mode means nothing; who may replace it is its directory's business,
        // and where it points is checked on the resolved path.
        return None;
    }
    let mode = meta.permissions().mode();
    if meta.uid() != 0 {
        return Some(format!("it is owned by uid {}, not root", meta.uid()));
    }
    if mode & 0o022 == 0 {
        return None;
    }
    // A root-owned directory with the sticky bit (as /tmp) lets others add entries but not
    // rename or remove root's: what thinsr reads below it stays root's.
    if meta.is_dir() && mode & 0o1000 != 0 {
        return None;
    }
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and everyone",
        (true, false) => "its group",
        _ => "everyone",
    };
    Some(format!("{who} may write it (mode {:04o})", mode & 0o7777))
}

/// `path` and each directory above it, as written (lexically): a link planted in a
/// writable directory is found there, before it is followed.
fn chain(path: &Path) -> Vec<PathBuf> {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .collect()
}

fn check_chain(path: &Path, what: &str, original: &Path) -> Result<()> {
    for p in chain(path) {
        let meta = std::fs::symlink_metadata(&p)
            .map_err(|e| Error::io(format!("checking {}", p.display()), e))?;
        if let Some(why) = writable_by_others(&meta) {
            let at = if p == original {
                String::new()
            } else {
                format!(" (in {})", p.display())
            };
            return Err(Error::UnsafePath {
                what: what.into(),
                path: p.clone(),
                why: format!("{why}{at}"),
            });
        }
    }
    Ok(())
}

/// Refuses `path` (`what`: "scheme script", "configuration file"...) unless it and every
/// directory above it, both as named and as resolved through links, are owned by root and
/// writable by no one else.
pub fn root_only(path: &Path, what: &str) -> Result<()> {
    if !path.is_absolute() {
        return Err(Error::UnsafePath {
            what: what.into(),
            path: path.into(),
            why: "it is not an absolute path".into(),
        });
    }
    check_chain(path, what, path)?;
    let real = std::fs::canonicalize(path)
        .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
    if real != path {
        check_chain(&real, what, &real)?;
    }
    Ok(())
}

/// The text of a file of secrets (credentials): root's, and every directory above it,
/// readable by no one else, not a link.
pub fn read_secret(path: &Path) -> Result<String> {
    root_only(path, "credentials file")?;
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0 {
        return Err(Error::UnsafePath {
            what: "credentials file".into(),
            path: path.to_path_buf(),
            why: "others may read it: chmod 600 it".into(),
        });
    }
    crate::host::rundir::read(path, 64 << 10).ok_or_else(|| {
        Error::InvalidArgument(format!("{} cannot be read (or is a link)", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("thinsr-trust-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn file(d: &Path, name: &str, mode: u32) -> PathBuf {
        let p = d.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn only_what_root_alone_can_write_is_trusted() {
        if !nix::unistd::geteuid().is_root() {
            return; // ownership is root's to give; the VM tests cover this as root too
        }
        let d = dir();
        let good = file(&d, "good", 0o755);
        root_only(&good, "scheme script").unwrap();
        for (name, mode, why) in [
            (
                "world",
                0o777,
                "its group and everyone may write it (mode 0777)",
            ),
            ("group", 0o775, "its group may write it (mode 0775)"),
            ("other", 0o757, "everyone may write it (mode 0757)"),
        ] {
            let p = file(&d, name, mode);
            let e = root_only(&p, "scheme script").unwrap_err();
            assert_eq!(e.code(), "UNSAFE_PATH");
            assert!(e.to_string().contains(why), "{e}");
            assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        }
        let foreign = file(&d, "foreign", 0o755);
        std::os::unix::fs::chown(&foreign, Some(1000), None).unwrap();
        let e = root_only(&foreign, "scheme script").unwrap_err();
        assert!(e.to_string().contains("owned by uid 1000"), "{e}");
        // A link to a good file is as good; a link to a bad one is bad.
        symlink(&good, d.join("to-good")).unwrap();
        root_only(&d.join("to-good"), "scheme script").unwrap();
        symlink(d.join("world"), d.join("to-world")).unwrap();
        assert!(root_only(&d.join("to-world"), "scheme script").is_err());
        // A writable directory above spoils a good file.
        let sub = d.join("open");
        std::fs::create_dir(&sub).unwrap();
        let inner = file(&sub, "s", 0o755);
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = root_only(&inner, "scheme script").unwrap_err();
        assert!(
            e.to_string().contains(&format!("(in {})", sub.display())),
            "{e}"
        );
        // ... but a sticky one (as /tmp) does not.
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o1777)).unwrap();
        root_only(&inner, "scheme script").unwrap();
        assert!(root_only(Path::new("relative/s"), "scheme script").is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
