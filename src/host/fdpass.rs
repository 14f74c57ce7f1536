//! Descriptors passed over a unix socket (SCM_RIGHTS): how xapi hands a connection it
//! accepted to the storage plugin (`Datapath.import_activate`, xapi's storage_migrate.ml
//! `nbd_handler`: one message, the datapath's name, carrying the connected descriptor).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// How long a connected control socket may take to send its descriptor.
const WAIT: Duration = Duration::from_secs(10);

/// Receives one descriptor and the message it came with (at most 4 KiB) from `control`.
/// Extra descriptors in the same message are closed.
pub fn receive(control: &UnixStream) -> io::Result<(OwnedFd, Vec<u8>)> {
    control.set_read_timeout(Some(WAIT))?;
    let mut buf = vec![0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        control.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let len = msg.bytes;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(rights) = c {
            // Ours from here on: the kernel made them for this process.
            fds.extend(
                rights
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let mut fds = fds.into_iter();
    let fd = fds.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "a message without a descriptor (SCM_RIGHTS)",
        )
    })?;
    buf.truncate(len);
    Ok((fd, buf))
}

/// Sends `fd` with `message` over `control`, as xapi does.
pub fn send(control: &UnixStream, fd: BorrowedFd, message: &[u8]) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(
        control.as_raw_fd(),
        &[IoSlice::new(message)],
        &cmsg,
        MsgFlags::empty(),
        None,
    )
    .map(drop)
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    #[test]
    fn a_passed_descriptor_arrives_with_its_message() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        send(&a, theirs.as_fd(), b"dp-1").unwrap();
        drop(theirs);
        let (fd, msg) = receive(&b).unwrap();
        assert_eq!(msg, b"dp-1");
        let mut got = UnixStream::from(fd);
        got.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        mine.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        // A message without a descriptor is refused.
        a.try_clone().unwrap().write_all(b"x").unwrap();
        assert!(receive(&b).is_err());
    }
}
