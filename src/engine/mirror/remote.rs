//! Where a mirror's destination is (`nbd+unix:///EXPORT?socket=PATH`, as xapi's proxy
//! is named, or `nbd://HOST[:PORT]/EXPORT`), and the connection to it: negotiated by
//! thinsr up to the transmission phase, then handed to the kernel's NBD driver.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::host::nbd_client;

/// How long a start waits for the destination's socket (xapi's proxy makes it in a thread
/// that races `Data.mirror`) and for its handshake.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Where the destination is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Remote {
    Unix { socket: PathBuf, export: String },
    Tcp { address: String, export: String },
}

pub(super) fn parse_remote(uri: &str) -> Result<Remote> {
    let uri = crate::engine::template::nbd_uri(uri)?;
    if let Some(rest) = uri.strip_prefix("nbd+unix:///") {
        let (export, query) = rest.split_once('?').expect("checked by nbd_uri");
        let socket = query.strip_prefix("socket=").expect("checked by nbd_uri");
        return Ok(Remote::Unix {
            socket: socket.into(),
            export: export.into(),
        });
    }
    let rest = uri.strip_prefix("nbd://").expect("checked by nbd_uri");
    let (host, export) = rest.split_once('/').unwrap_or((rest, ""));
    let address = match host.rsplit_once(':') {
        Some((_, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.ends_with(']') => {
            host.to_string()
        }
        _ => format!("{host}:10809"),
    };
    Ok(Remote::Tcp {
        address,
        export: export.into(),
    })
}

pub(super) fn unreachable(remote: &str, why: impl std::fmt::Display) -> Error {
    Error::CommandFailed {
        tool: "nbd".into(),
        message: format!("cannot reach the destination {remote}: {why}"),
    }
}

/// A connection to the destination, negotiated up to the transmission phase, with no
/// timeouts left on it (the kernel's socket reads would obey them).
pub(super) fn connect(uri: &str, remote: &Remote) -> Result<(OwnedFd, nbd_client::Negotiated)> {
    let deadline = Instant::now() + CONNECT_WAIT;
    let wait = Some(CONNECT_WAIT);
    let (fd, negotiated) = match remote {
        Remote::Unix { socket, export } => {
            let mut s = loop {
                match std::os::unix::net::UnixStream::connect(socket) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => return Err(unreachable(uri, e)),
                }
            };
            s.set_read_timeout(wait)
                .and_then(|_| s.set_write_timeout(wait))
                .map_err(|e| unreachable(uri, e))?;
            let n = nbd_client::negotiate(&mut s, export).map_err(|e| unreachable(uri, e))?;
            s.set_read_timeout(None)
                .and_then(|_| s.set_write_timeout(None))
                .map_err(|e| unreachable(uri, e))?;
            (OwnedFd::from(s), n)
        }
        Remote::Tcp { address, export } => {
            use std::net::ToSocketAddrs;
            let addr = address
                .to_socket_addrs()
                .map_err(|e| unreachable(uri, e))?
                .next()
                .ok_or_else(|| unreachable(uri, "no address"))?;
            let mut s = std::net::TcpStream::connect_timeout(&addr, CONNECT_WAIT)
                .map_err(|e| unreachable(uri, e))?;
            s.set_read_timeout(wait)
                .and_then(|_| s.set_write_timeout(wait))
                .map_err(|e| unreachable(uri, e))?;
            let _ = s.set_nodelay(true);
            let n = nbd_client::negotiate(&mut s, export).map_err(|e| unreachable(uri, e))?;
            s.set_read_timeout(None)
                .and_then(|_| s.set_write_timeout(None))
                .map_err(|e| unreachable(uri, e))?;
            (OwnedFd::from(s), n)
        }
    };
    Ok((fd, negotiated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_are_unix_sockets_or_tcp_with_nbds_port() {
        assert_eq!(
            parse_remote("nbd+unix:///abc-1?socket=/var/run/nbdproxy/export/9f").unwrap(),
            Remote::Unix {
                socket: "/var/run/nbdproxy/export/9f".into(),
                export: "abc-1".into()
            }
        );
        assert_eq!(
            parse_remote("nbd://10.0.0.2/disk").unwrap(),
            Remote::Tcp {
                address: "10.0.0.2:10809".into(),
                export: "disk".into()
            }
        );
        assert_eq!(
            parse_remote("nbd://host:10900/disk").unwrap(),
            Remote::Tcp {
                address: "host:10900".into(),
                export: "disk".into()
            }
        );
        assert!(parse_remote("nbd+unix:///x?socket=rel").is_err());
        assert!(parse_remote("http://x/y").is_err());
    }
}
