//! Templates on file servers: `nfs://HOST[:PORT]/EXPORT/FILE` and
//! `smb://[USER@]HOST/SHARE/PATH`, read through a read-only mount of the kernel's own client.
//!
//! A mount serves every template on its export or share: it lives at
//! /run/thinsr/mnt/ID (root's, out of the way), and a record beside it
//! (/run/thinsr/mnt/ID.json) lists who holds it. A holder is a template's attachment (alive
//! while its attachment's state file exists) or a command reading an image for a moment
//! (alive while its process is). The last holder to leave unmounts; holders that died
//! (a crash) are dropped by whoever looks next, and `sr check` names a mount nobody holds.
//! Counting in a file is safe here because every holder says what keeps it alive, so the
//! count is checked against the world, never trusted.
//!
//! Order: a holder is recorded before the mount is made and the mount goes before the
//! record does, so a crash leaves a mount with a record (which the next look settles),
//! never a mount nobody knows of.
//!
//! Nothing waits on a server without bound: its port must answer within seconds before
//! anything mounts, mount(2) is given a deadline, and the mounts are `soft` (reads of a
//! read-only image fail with EIO when the server is gone, rather than hang the clone).

pub mod holders;
pub mod mounting;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::host::mount;
use crate::units::clip;

pub const MNT_DIR: &str = "/run/thinsr/mnt";
/// How long a server's port has to answer.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// A file server's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Nfs,
    Smb,
}

impl Protocol {
    fn scheme(self) -> &'static str {
        match self {
            Protocol::Nfs => "nfs",
            Protocol::Smb => "smb",
        }
    }
    fn port(self) -> u16 {
        match self {
            Protocol::Nfs => 2049,
            Protocol::Smb => 445,
        }
    }
}

/// A template's place on a file server, parsed from its URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub protocol: Protocol,
    pub host: String,
    pub port: Option<u16>,
    /// NFS: the exported directory (`/srv/templates`); SMB: the share's name.
    pub export: String,
    /// The image's path inside the mount (no leading '/').
    pub file: String,
    /// SMB: the user whose credentials file is read.
    pub user: Option<String>,
    /// Mount options from the URI's query, checked against the protocol's list.
    pub options: Vec<(String, String)>,
}

fn bad(uri: &str, why: impl Into<String>) -> Error {
    Error::InvalidUri {
        uri: clip(uri),
        why: why.into(),
    }
}

/// Options a URI may carry, with the values each takes.
fn allowed(protocol: Protocol, key: &str, value: &str) -> bool {
    let number =
        || !value.is_empty() && value.len() <= 7 && value.chars().all(|c| c.is_ascii_digit());
    match (protocol, key) {
        (Protocol::Nfs, "vers") => ["3", "4", "4.0", "4.1", "4.2"].contains(&value),
        (Protocol::Nfs, "sec") => ["sys", "krb5", "krb5i", "krb5p"].contains(&value),
        (Protocol::Nfs, "timeo" | "retrans" | "rsize" | "nconnect") => number(),
        (Protocol::Smb, "vers") => {
            ["2.0", "2.1", "3", "3.0", "3.02", "3.1.1", "default"].contains(&value)
        }
        (Protocol::Smb, "sec") => ["ntlmssp", "krb5", "krb5i"].contains(&value),
        (Protocol::Smb, "domain") => {
            !value.is_empty()
                && value.len() <= 64
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        }
        (Protocol::Smb, "echo_interval") => number(),
        _ => false,
    }
}

/// Parses `nfs://` and `smb://` URIs; None for any other scheme.
pub fn parse(uri: &str) -> Result<Option<Share>> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Ok(None);
    };
    let protocol = match scheme {
        "nfs" => Protocol::Nfs,
        "smb" | "cifs" => Protocol::Smb,
        _ => return Ok(None),
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| bad(uri, "it names no file: write {scheme}://HOST/.../FILE"))?;
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(u) = user {
        if u.contains(':') {
            return Err(bad(
                uri,
                "a password never goes in a URI (it would be stored in the SR's metadata): put it in /etc/thinsr/credentials/USER@HOST",
            ));
        }
        let ok = protocol == Protocol::Smb
            && !u.is_empty()
            && u.len() <= 64
            && u.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(bad(
                uri,
                "a user name (smb:// only) holds letters, digits, '-', '_' and '.'",
            ));
        }
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let p = p
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(uri, "the port must be a number from 1 to 65535"))?;
            (h, Some(p))
        }
        _ => (hostport, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 255
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !host_ok {
        return Err(bad(uri, "it needs a server's host name or address"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    let safe = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "+_.,-~ ".contains(ch))
    };
    if !parts.iter().all(|c| safe(c)) {
        return Err(bad(
            uri,
            "each part of the path holds letters, digits, spaces and + _ . , - ~, and none is empty, '.' or '..'",
        ));
    }
    let (export, file) = match protocol {
        // The directory holding the image is the export (NFS mounts any directory of one).
        Protocol::Nfs => match parts.split_last() {
            Some((file, dirs)) => (format!("/{}", dirs.join("/")), file.to_string()),
            None => unreachable!("split yields one part at least"),
        },
        Protocol::Smb if parts.len() >= 2 => (parts[0].to_string(), parts[1..].join("/")),
        Protocol::Smb => return Err(bad(uri, "write smb://[USER@]HOST/SHARE/PATH")),
    };
    let mut options = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !allowed(protocol, k, v) || options.iter().any(|(o, _): &(String, String)| o == k) {
            return Err(bad(
                uri,
                format!("'{}' is not a mount option thinsr passes for {scheme}:// (or not with that value)", clip(pair)),
            ));
        }
        options.push((k.to_string(), v.to_string()));
    }
    Ok(Some(Share {
        protocol,
        host: host.to_string(),
        port,
        export,
        file,
        user: user.map(str::to_string),
        options,
    }))
}

impl Share {
    /// The export or share, as a URI without the file: what one mount serves.
    pub fn place(&self) -> String {
        let user = self
            .user
            .as_ref()
            .map_or(String::new(), |u| format!("{u}@"));
        let port = self.port.map_or(String::new(), |p| format!(":{p}"));
        let query: Vec<String> = self
            .options
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let sep = if self.export.starts_with('/') {
            ""
        } else {
            "/"
        };
        let mut s = format!(
            "{}://{user}{}{port}{sep}{}",
            self.protocol.scheme(),
            self.host,
            self.export
        );
        if !query.is_empty() {
            s = format!("{s}?{}", query.join("&"));
        }
        s
    }

    /// The server as `host:port`.
    pub fn server(&self) -> String {
        format!(
            "{}:{}",
            self.host,
            self.port.unwrap_or(self.protocol.port())
        )
    }

    /// The name of its mount under /run/thinsr/mnt: readable, and unique by a checksum of
    /// the whole place (two places that read alike stay apart).
    pub fn id(&self) -> String {
        let place = self.place();
        let readable: String = format!("{}-{}{}", self.protocol.scheme(), self.host, self.export)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        format!("{readable}-{:08x}", crc32fast::hash(place.as_bytes()))
    }

    /// Checks the server answers on its port within seconds (a share that is not there
    /// fails here, in bounded time, rather than in the mount). Returns (its address, ours).
    pub fn reachable(&self) -> Result<(std::net::IpAddr, std::net::IpAddr)> {
        mount::answering(
            &self.host,
            self.port.unwrap_or(self.protocol.port()),
            CONNECT_WAIT,
        )
    }

    fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfs_and_smb_uris_name_a_place_and_a_file() {
        let s = parse("nfs://nas/srv/templates/debian.qcow2")
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.export.as_str(), s.file.as_str()),
            ("/srv/templates", "debian.qcow2")
        );
        assert_eq!(s.place(), "nfs://nas/srv/templates");
        assert_eq!(s.server(), "nas:2049");
        let t = parse("nfs://nas/srv/templates/other.raw").unwrap().unwrap();
        assert_eq!(s.id(), t.id(), "one export, one mount");
        let v3 = parse("nfs://nas:2050/srv/templates/x.raw?vers=3")
            .unwrap()
            .unwrap();
        assert_ne!(s.id(), v3.id());
        let m = parse("smb://ops@files.lan/isos/linux/deb.vhd?vers=3.0")
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.export.as_str(), m.file.as_str()),
            ("isos", "linux/deb.vhd")
        );
        assert_eq!(m.user.as_deref(), Some("ops"));
        assert_eq!(m.place(), "smb://ops@files.lan/isos?vers=3.0");
        assert!(parse("file:///x").unwrap().is_none());
        assert!(parse("nbd://h/x").unwrap().is_none());
    }

    #[test]
    fn passwords_paths_and_options_outside_the_rules_are_refused() {
        for bad in [
            "smb://ops:secret@files/isos/a.vhd",
            "nfs://ops@nas/srv/a.raw",
            "nfs://nas",
            "nfs://nas/",
            "nfs://nas/srv/../etc/shadow",
            "nfs://nas/srv//a.raw",
            "nfs://-o/srv/a.raw",
            "nfs://nas:0/srv/a.raw",
            "nfs://nas/srv/a.raw?vers=5",
            "nfs://nas/srv/a.raw?rw=1",
            "nfs://nas/srv/a.raw?timeo=1,rw",
            "nfs://nas/srv/a.raw?vers=3&vers=4",
            "smb://files/onlyshare",
            "smb://files/isos/a.vhd?password=x",
            "smb://files/isos/a.vhd?domain=a,b",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.code(), "INVALID_URI", "{bad}");
        }
    }
}
