//! The kernel's NBD driver configured through generic netlink (drivers/block/nbd.c,
//! include/uapi/linux/nbd-netlink.h): a connected socket handed to the kernel, which keeps
//! it, so no process has to sit in NBD_DO_IT for the connection's life (a mirror outlives
//! the plugin call that starts it). No reconnect: xapi's proxy accepts one connection, so
//! a dead connection fails the device's I/O, which is what a mirror leg must do.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

use crate::error::{Error, Result};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const NBD_CMD_CONNECT: u8 = 1;
const NBD_CMD_DISCONNECT: u8 = 2;
const NBD_ATTR_INDEX: u16 = 1;
const NBD_ATTR_SIZE_BYTES: u16 = 2;
const NBD_ATTR_BLOCK_SIZE_BYTES: u16 = 3;
const NBD_ATTR_TIMEOUT: u16 = 4;
const NBD_ATTR_SERVER_FLAGS: u16 = 5;
const NBD_ATTR_SOCKETS: u16 = 7;
const NBD_SOCK_ITEM: u16 = 1;
const NBD_SOCK_FD: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

fn failed(what: &str, why: impl std::fmt::Display) -> Error {
    Error::CommandFailed {
        tool: "nbd (netlink)".into(),
        message: format!("{what}: {why}"),
    }
}

/// One netlink attribute: header, payload, padding to 4 bytes.
fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut a = Vec::with_capacity(len + 3);
    a.extend_from_slice(&(len as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize(len.next_multiple_of(4), 0);
    a
}

/// The attributes of a message: (type without flags, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        b = &b[len.next_multiple_of(4).min(b.len())..];
    }
    out
}

struct Genl {
    fd: OwnedFd,
    seq: u32,
}

impl Genl {
    fn open() -> Result<Genl> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkGeneric,
        )
        .map_err(|e| failed("opening a generic netlink socket", e))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| failed("binding the netlink socket", e))?;
        // Replies come at once; a kernel that never answers must not hang thinsr.
        let wait = nix::sys::time::TimeVal::new(10, 0);
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &wait)
            .map_err(|e| failed("setting the netlink timeout", e))?;
        Ok(Genl { fd, seq: 1 })
    }

    /// Sends command `cmd` of family `family` and returns the attributes of its replies
    /// once the kernel acknowledges it; the kernel's refusal as an error naming `what`.
    fn call(&mut self, family: u16, cmd: u8, body: &[u8], what: &str) -> Result<Vec<u8>> {
        self.seq += 1;
        let len = 16 + 4 + body.len();
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&family.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[cmd, 1, 0, 0]);
        m.extend_from_slice(body);
        sendto(
            self.fd.as_raw_fd(),
            &m,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(|e| failed(what, e))?;
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 16384];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(|e| failed(what, format!("no answer from the kernel: {e}")))?;
            let mut b = &buf[..n];
            while b.len() >= 16 {
                let mlen = (u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize).min(b.len());
                let kind = u16::from_ne_bytes([b[4], b[5]]);
                let seq = u32::from_ne_bytes(b[8..12].try_into().unwrap());
                if mlen < 16 {
                    return Err(failed(what, "a malformed netlink message"));
                }
                let payload = &b[16..mlen];
                if seq == self.seq {
                    match kind {
                        NLMSG_ERROR => {
                            let errno = i32::from_ne_bytes(payload[..4].try_into().unwrap());
                            if errno == 0 {
                                return Ok(replies);
                            }
                            let e = nix::errno::Errno::from_raw(-errno);
                            return Err(failed(what, e.desc()));
                        }
                        NLMSG_DONE => return Ok(replies),
                        _ if payload.len() >= 4 => replies.extend_from_slice(&payload[4..]),
                        _ => {}
                    }
                }
                b = &b[mlen.next_multiple_of(4).min(b.len())..];
            }
        }
    }

    fn family(&mut self, name: &str) -> Result<u16> {
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        let reply = self.call(
            GENL_ID_CTRL,
            CTRL_CMD_GETFAMILY,
            &attr(CTRL_ATTR_FAMILY_NAME, &n),
            "finding the kernel's NBD netlink family (is the nbd module loaded? 'modprobe nbd')",
        )?;
        attrs(&reply)
            .into_iter()
            .find(|(k, v)| *k == CTRL_ATTR_FAMILY_ID && v.len() >= 2)
            .map(|(_, v)| u16::from_ne_bytes([v[0], v[1]]))
            .ok_or_else(|| {
                failed(
                    "finding the NBD netlink family",
                    "no family id in the reply",
                )
            })
    }
}

/// What the kernel is told of a connection.
pub struct Connect<'a> {
    pub socket: &'a OwnedFd,
    pub size: u64,
    /// The server's transmission flags (read-only, flush, FUA, trim).
    pub flags: u16,
    /// Seconds a request may wait for its reply before the connection is declared dead.
    pub timeout_s: u64,
}

/// Hands a negotiated connection to the kernel on a free NBD device of its choosing;
/// returns the device's index (`/dev/nbdN`). The kernel holds the socket from here on.
pub fn connect(c: &Connect) -> Result<u32> {
    let mut g = Genl::open()?;
    let family = g.family("nbd")?;
    let fd = (c.socket.as_raw_fd() as u32).to_ne_bytes();
    let item = attr(NBD_SOCK_ITEM | NLA_F_NESTED, &attr(NBD_SOCK_FD, &fd));
    let mut body = Vec::new();
    body.extend(attr(NBD_ATTR_SIZE_BYTES, &c.size.to_ne_bytes()));
    body.extend(attr(NBD_ATTR_BLOCK_SIZE_BYTES, &512u64.to_ne_bytes()));
    body.extend(attr(NBD_ATTR_TIMEOUT, &c.timeout_s.to_ne_bytes()));
    body.extend(attr(
        NBD_ATTR_SERVER_FLAGS,
        &u64::from(c.flags).to_ne_bytes(),
    ));
    body.extend(attr(NBD_ATTR_SOCKETS | NLA_F_NESTED, &item));
    let reply = g.call(
        family,
        NBD_CMD_CONNECT,
        &body,
        "connecting a kernel NBD device",
    )?;
    attrs(&reply)
        .into_iter()
        .find(|(k, v)| *k == NBD_ATTR_INDEX && v.len() >= 4)
        .map(|(_, v)| u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
        .ok_or_else(|| {
            failed(
                "connecting a kernel NBD device",
                "the kernel named no device",
            )
        })
}

/// Disconnects `/dev/nbd<index>`: its socket is shut down and queued requests fail. A
/// device already disconnected is no error.
pub fn disconnect(index: u32) -> Result<()> {
    let mut g = Genl::open()?;
    let family = g.family("nbd")?;
    let body = attr(NBD_ATTR_INDEX, &index.to_ne_bytes());
    match g.call(family, NBD_CMD_DISCONNECT, &body, "disconnecting") {
        Ok(_) => Ok(()),
        Err(_) if !connected(index) => Ok(()),
        Err(e) => Err(e),
    }
}

/// True while `/dev/nbd<index>` has a connection configured (it has a size). A configured
/// device whose socket died still is: only I/O tells that (`probe`).
pub fn connected(index: u32) -> bool {
    std::fs::read_to_string(format!("/sys/block/nbd{index}/size"))
        .is_ok_and(|s| !matches!(s.trim(), "0" | ""))
}

/// Reads the first sector of `/dev/nbd<index>` with O_DIRECT: Ok while its server answers.
/// A read changes nothing on the server, and one whose socket died fails at once.
pub fn probe(index: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(format!("/dev/nbd{index}"))?;
    let mut buf = crate::aligned::AlignedBuf::zeroed(4096);
    f.read_exact_at(buf.as_mut_slice(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_round_trip_with_padding() {
        let inner = attr(NBD_SOCK_FD, &7u32.to_ne_bytes());
        let outer = attr(
            NBD_ATTR_SOCKETS | NLA_F_NESTED,
            &attr(NBD_SOCK_ITEM, &inner),
        );
        let mut b = attr(CTRL_ATTR_FAMILY_NAME, b"nbd\0\0");
        assert_eq!(b.len(), 12, "9 bytes padded to 12");
        b.extend(outer);
        let found = attrs(&b);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0], (CTRL_ATTR_FAMILY_NAME, &b"nbd\0\0"[..]));
        assert_eq!(found[1].0, NBD_ATTR_SOCKETS, "the nested flag is masked");
        let item = attrs(found[1].1);
        let fd = attrs(item[0].1);
        assert_eq!(fd, vec![(NBD_SOCK_FD, &7u32.to_ne_bytes()[..])]);
    }
}
