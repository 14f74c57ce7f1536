//! Network filesystems mounted read-only by the kernel's own clients (nfs, cifs), through
//! mount(2) itself: no mount helper runs, so a password handed to cifs travels in the
//! mount's data and never on a command line, and every wait is thinsr's to bound.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use nix::mount::{umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};

/// A kernel filesystem thinsr mounts: its type name for mount(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    Nfs,
    Cifs,
}

impl FsType {
    pub fn name(self) -> &'static str {
        match self {
            FsType::Nfs => "nfs",
            FsType::Cifs => "cifs",
        }
    }
}

/// What a failed mount says, with its errno kept for the caller's retry rules.
#[derive(Debug)]
pub struct MountError {
    pub errno: Option<nix::errno::Errno>,
    pub message: String,
}

/// The address of `host` (a name or a literal address) that answers TCP on `port` within
/// `within`, tried in the resolver's order, with this host's address on that connection.
pub fn answering(host: &str, port: u16, within: Duration) -> Result<(IpAddr, IpAddr)> {
    let unreachable = |why: String| Error::ServerUnreachable {
        server: format!("{host}:{port}"),
        why,
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve the name: {e}")))?
        .collect();
    let mut last = "the name has no address".to_string();
    for a in addrs {
        match TcpStream::connect_timeout(&a, within) {
            Ok(s) => {
                let ours = s.local_addr().map(|l| l.ip()).unwrap_or(a.ip());
                return Ok((a.ip(), ours));
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!("no answer within {} s", within.as_secs())
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(unreachable(last))
}

/// Mounts `source` on `target` read-only (and nosuid, nodev, noexec) with filesystem
/// options `data`, waiting at most `within`. A mount that has not returned by then is left
/// to finish or fail on its own (the kernel's client has its own timeouts, `soft` for
/// both); `sr check` finds a share nobody uses.
pub fn mount_read_only(
    fs: FsType,
    source: &str,
    target: &Path,
    data: &str,
    within: Duration,
) -> std::result::Result<(), MountError> {
    let (tx, rx) = mpsc::channel();
    let (source, target, data) = (source.to_string(), target.to_path_buf(), data.to_string());
    std::thread::spawn(move || {
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let r = nix::mount::mount(
            Some(source.as_str()),
            &target,
            Some(fs.name()),
            flags,
            Some(data.as_str()),
        );
        let _ = tx.send(r);
    });
    match rx.recv_timeout(within) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(errno)) => Err(MountError {
            errno: Some(errno),
            message: errno.desc().to_string(),
        }),
        Err(_) => Err(MountError {
            errno: None,
            message: format!("the mount did not finish within {} s", within.as_secs()),
        }),
    }
}

/// Unmounts `target`. A server that is gone cannot answer the unmount: then pending
/// requests are aborted (MNT_FORCE) and the mount is detached from the tree, to go when
/// its last user does.
pub fn unmount(target: &Path) -> Result<()> {
    if umount2(target, MntFlags::empty()).is_ok() {
        return Ok(());
    }
    let _ = umount2(target, MntFlags::MNT_FORCE);
    if mounted(target).is_none() {
        return Ok(());
    }
    umount2(target, MntFlags::MNT_DETACH)
        .map_err(|e| Error::io(format!("unmounting {}", target.display()), e.into()))
}

/// What is mounted at `target` (its filesystem type and source), from the mount table.
pub fn mounted(target: &Path) -> Option<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let want = target.to_str()?;
    text.lines().rev().find_map(|l| {
        let mut f = l.split(' ');
        let (source, at, fs) = (f.next()?, f.next()?, f.next()?);
        (unescape(at) == want).then(|| (fs.to_string(), unescape(source)))
    })
}

/// Every mount point under `dir`.
pub fn mounted_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|at| PathBuf::from(unescape(at)))
        .filter(|p| p.parent() == Some(dir))
        .collect()
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let n = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(n as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_table_escapes_are_read() {
        assert_eq!(unescape("/run/a\\040b"), "/run/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("\\134x"), "\\x");
    }
}
