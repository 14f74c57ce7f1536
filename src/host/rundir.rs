//! thinsr's state under /run (attachments, the detach queue, the watcher's pid, locks):
//! directories of root's alone (0700), made one component at a time and never reached
//! through a link, and files written and read without following one. /run/lock is
//! writable by everyone on most hosts: whoever planted /run/lock/thinsr, or a link there,
//! would otherwise have root write where they chose.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::libc;

use crate::error::{Error, Result};

/// The directories thinsr owns: each is made 0700 by root, and found so or refused.
const OURS: &[&str] = &["/run/thinsr", "/run/lock/thinsr"];

fn unsafe_dir(path: &Path, why: impl Into<String>) -> Error {
    Error::UnsafePath {
        what: "state directory".into(),
        path: path.into(),
        why: why.into(),
    }
}

/// Makes `dir` (one of thinsr's: under /run/thinsr or /run/lock/thinsr, or any path when
/// the tests point it elsewhere) and each of its missing parents from thinsr's own on:
/// 0700, root's, no link anywhere on the way. An existing one must already be so.
pub fn private_dir(dir: &Path) -> Result<()> {
    let start = match OURS.iter().map(Path::new).find(|o| dir.starts_with(o)) {
        Some(ours) => ours.to_path_buf(),
        // Elsewhere (the unit tests): from the first directory that does not exist yet.
        None => {
            let mut s = dir.to_path_buf();
            while let Some(p) = s.parent() {
                if std::fs::symlink_metadata(p).is_ok() {
                    break;
                }
                s = p.to_path_buf();
            }
            s
        }
    };
    // The directory holding thinsr's own must be a real one, not a link to elsewhere.
    if let Some(parent) = start.parent() {
        real_dir(parent)?;
    }
    let mut at = start.clone();
    let rest: Vec<_> = dir
        .strip_prefix(&start)
        .map(|r| r.components().collect())
        .unwrap_or_default();
    ensure_one(&at)?;
    for c in rest {
        at.push(c);
        ensure_one(&at)?;
    }
    Ok(())
}

/// `dir`'s own metadata, refused unless it is a directory (a link to one is refused).
fn real_dir(dir: &Path) -> Result<std::fs::Metadata> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| Error::io(format!("checking {}", dir.display()), e))?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir(
            dir,
            "it is a symbolic link; thinsr does not follow one here: remove it",
        ));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir(dir, "it is not a directory: remove it"));
    }
    Ok(meta)
}

fn ensure_one(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        // mkdir never follows a link: an existing name, link or not, is checked below.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    let meta = real_dir(dir)?;
    if meta.uid() != 0 && nix::unistd::geteuid().is_root() {
        return Err(unsafe_dir(
            dir,
            format!("it is owned by uid {}, not root: remove it", meta.uid()),
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        // Ours, from an older thinsr or a umask: made private now.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("restricting {}", dir.display()), e))?;
    }
    Ok(())
}

/// Whether `s` may name a file of thinsr's state (a uuid, a domain, a key): letters,
/// digits, '-', '_' and '.', not first, at most 128 bytes.
pub fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Writes `path` (in a private directory) whole: a new file beside it, opened so that an
/// existing name of any kind fails rather than is followed, then renamed over it (rename
/// replaces a link, never writes through it).
pub fn write(path: &Path, text: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text))
        .and_then(|_| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Reads `path` unless it is a link (or missing), at most `max` bytes.
pub fn read(path: &Path, max: u64) -> Option<String> {
    String::from_utf8(read_bytes(path, max)?).ok()
}

/// Opens `path` (in a private directory) for appending, made 0600 if missing, never
/// through a link.
pub fn append(path: &Path) -> Result<File> {
    private_dir(path.parent().unwrap_or(Path::new("/")))?;
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// Reads `path` as bytes unless it is a link (or missing), at most `max` bytes.
pub fn read_bytes(path: &Path, max: u64) -> Option<Vec<u8>> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= max).then_some(bytes)
}

/// Opens (creating) a lock file in a private directory, never through a link.
pub fn open_lock(path: &Path) -> Result<File> {
    private_dir(path.parent().unwrap_or(Path::new("/")))?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    fn base() -> PathBuf {
        let d = std::env::temp_dir().join(format!("thinsr-run-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn state_is_private_and_never_reached_through_a_link() {
        let b = base();
        let dir = b.join("state/origins");
        private_dir(&dir).unwrap();
        for d in [b.join("state"), dir.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        let f = dir.join("a.yaml");
        write(&f, b"one").unwrap();
        write(&f, b"two").unwrap();
        assert_eq!(read(&f, 64).as_deref(), Some("two"));
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read(&f, 2), None, "over the limit");
        // A link planted where a file goes: read refuses it; write replaces the link and
        // leaves its target alone.
        let target = b.join("target");
        std::fs::write(&target, "victim").unwrap();
        let planted = dir.join("b.yaml");
        symlink(&target, &planted).unwrap();
        assert_eq!(read(&planted, 64), None);
        write(&planted, b"state").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "victim");
        assert!(!std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink());
        // A link planted where a directory goes is refused, and nothing is made through it.
        let elsewhere = b.join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, b.join("linked")).unwrap();
        let e = private_dir(&b.join("linked/origins")).unwrap_err();
        assert_eq!(e.code(), "UNSAFE_PATH");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(std::fs::read_dir(&elsewhere).unwrap().next().is_none());
        let e = write(&b.join("linked/x"), b"x").unwrap_err();
        assert_eq!(e.code(), "UNSAFE_PATH");
        assert!(open_lock(&b.join("linked/x.lock")).is_err());
        // A lock file that is a link is not opened.
        symlink(&target, dir.join("c.lock")).unwrap();
        assert!(open_lock(&dir.join("c.lock")).is_err());
        std::fs::remove_dir_all(&b).unwrap();
    }
}
