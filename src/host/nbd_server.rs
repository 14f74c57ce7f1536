//! An NBD server of thinsr's own (the protocol of NetworkBlockDevice/nbd doc/proto.md):
//! the fixed-newstyle handshake with the options qemu's and the kernel's clients
//! negotiate (EXPORT_NAME, GO, INFO, LIST, ABORT; the rest refused as unsupported), then
//! simple replies to READ, FLUSH and DISC over one export. Any byte stream will do: a
//! unix socket accepted here, or one passed in by another process. A writable export
//! takes WRITE (FUA honoured), WRITE_ZEROES and TRIM, and keeps a thin volume thin: zeros,
//! written or asked for, unmap whole blocks rather than allocate them.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Condvar, Mutex};

use crate::aligned::{AlignedBuf, Spare};
use crate::host::zero;
use crate::image::be;

use super::nbd_proto::*;

/// The longest option payload accepted (the protocol's longest string is 4 KiB).
const MAX_OPTION: u32 = 64 * 1024;
/// The longest read served in one request: qemu's and the kernel's clients ask for at most
/// 32 MiB.
pub const MAX_REQUEST: u32 = 32 << 20;

/// What one client did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub requests: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// One export: `size` bytes of `file`, named `name` in LIST replies (a client may ask for
/// any name: there is only this one).
pub struct Export<'a> {
    pub name: &'a str,
    pub file: &'a File,
    pub size: u64,
    pub writable: bool,
    /// Blocks of this size read as zeros once discarded (a thin volume without an origin):
    /// zeros are then unmapped, not written.
    pub unmap_block: Option<u64>,
    /// The same file opened O_DIRECT: writes of whole 4 KiB blocks go around the page
    /// cache (one copy less, and no flush of a page cache full of them at FLUSH).
    pub direct: Option<&'a File>,
    /// Told of every range a client changes (offset, length), before it is changed: a
    /// write it fails is refused with EIO.
    pub on_write: Option<&'a (dyn Fn(u64, u64) -> io::Result<()> + Sync)>,
    /// Where reads and writes really go when the export is a view built of several
    /// devices (a migration's leaf over its parent): `file` is then not used. Such an
    /// export takes no TRIM or WRITE_ZEROES (a zero written is a write like any other).
    pub layered: Option<&'a dyn Layered>,
}

/// An export's bytes kept by someone else than one file.
pub trait Layered: Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Everything written so far is on stable storage.
    fn flush(&self) -> io::Result<()>;
}

impl Export<'_> {
    fn told(&self, offset: u64, len: u32) -> io::Result<()> {
        match self.on_write {
            Some(f) if len > 0 => f(offset, u64::from(len)),
            _ => Ok(()),
        }
    }

    fn flags(&self) -> u16 {
        let base = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_CAN_MULTI_CONN;
        if self.layered.is_some() && self.writable {
            base | TFLAG_SEND_FUA
        } else if self.writable && self.layered.is_none() {
            base | TFLAG_SEND_FUA | TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES
        } else {
            base | TFLAG_READ_ONLY
        }
    }
}

fn protocol(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

fn option_reply<W: Write>(w: &mut W, option: u32, kind: u32, data: &[u8]) -> io::Result<()> {
    let mut b = Vec::with_capacity(20 + data.len());
    b.extend_from_slice(&REPLY_MAGIC.to_be_bytes());
    b.extend_from_slice(&option.to_be_bytes());
    b.extend_from_slice(&kind.to_be_bytes());
    b.extend_from_slice(&(data.len() as u32).to_be_bytes());
    b.extend_from_slice(data);
    w.write_all(&b)
}

/// How the handshake ended.
enum Negotiated {
    Transmission,
    Aborted,
}

/// The handshake, up to the transmission phase or the client's abort.
fn handshake<S: Read + Write>(s: &mut S, export: &Export) -> io::Result<Negotiated> {
    let tflags = export.flags();
    let mut hello = Vec::with_capacity(18);
    hello.extend_from_slice(&NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    let mut cflags = [0u8; 4];
    s.read_exact(&mut cflags)?;
    let no_zeroes = be::get32(&cflags, 0) & u32::from(FLAG_NO_ZEROES) != 0;
    loop {
        let mut head = [0u8; 16];
        s.read_exact(&mut head)?;
        if be::get64(&head, 0) != IHAVEOPT {
            return Err(protocol("an option without the IHAVEOPT magic"));
        }
        let (option, len) = (be::get32(&head, 8), be::get32(&head, 12));
        if len > MAX_OPTION {
            return Err(protocol(format!("an option of {len} bytes")));
        }
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        match option {
            OPT_EXPORT_NAME => {
                let mut b = Vec::with_capacity(134);
                b.extend_from_slice(&export.size.to_be_bytes());
                b.extend_from_slice(&tflags.to_be_bytes());
                if !no_zeroes {
                    b.extend_from_slice(&[0u8; 124]);
                }
                s.write_all(&b)?;
                return Ok(Negotiated::Transmission);
            }
            OPT_ABORT => {
                option_reply(s, option, REP_ACK, &[])?;
                return Ok(Negotiated::Aborted);
            }
            OPT_LIST if data.is_empty() => {
                let name = export.name.as_bytes();
                let mut b = (name.len() as u32).to_be_bytes().to_vec();
                b.extend_from_slice(name);
                option_reply(s, option, REP_SERVER, &b)?;
                option_reply(s, option, REP_ACK, &[])?;
            }
            OPT_INFO | OPT_GO if info_request_is_whole(&data) => {
                let mut info = INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&export.size.to_be_bytes());
                info.extend_from_slice(&tflags.to_be_bytes());
                option_reply(s, option, REP_INFO, &info)?;
                // Any size works; 4 KiB is what the devices behind prefer.
                let mut sizes = INFO_BLOCK_SIZE.to_be_bytes().to_vec();
                for v in [1u32, 4096, MAX_REQUEST] {
                    sizes.extend_from_slice(&v.to_be_bytes());
                }
                option_reply(s, option, REP_INFO, &sizes)?;
                option_reply(s, option, REP_ACK, &[])?;
                if option == OPT_GO {
                    return Ok(Negotiated::Transmission);
                }
            }
            OPT_LIST | OPT_INFO | OPT_GO => option_reply(s, option, REP_ERR_INVALID, &[])?,
            _ => option_reply(s, option, REP_ERR_UNSUP, &[])?,
        }
    }
}

/// INFO and GO carry a name and a list of info requests: the lengths must add up.
fn info_request_is_whole(data: &[u8]) -> bool {
    if data.len() < 6 {
        return false;
    }
    let name = be::get32(data, 0) as usize;
    let Some(rest) = data.len().checked_sub(4 + name + 2) else {
        return false;
    };
    let requests = be::get16(data, 4 + name) as usize;
    rest == requests * 2
}

/// A write with FUA is on stable storage before its reply.
fn fua(file: &File, flags: u16) -> io::Result<()> {
    if flags & CMD_FLAG_FUA != 0 {
        file.sync_data()
    } else {
        Ok(())
    }
}

fn simple_reply<W: Write>(w: &mut W, error: u32, handle: &[u8]) -> io::Result<()> {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..].copy_from_slice(handle);
    w.write_all(&b)
}

/// `path` opened read-write with O_DIRECT, for `Export::direct`; None where the file
/// system or device does not take it.
pub fn direct_handle(path: &std::path::Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_DIRECT)
        .open(path)
        .ok()
}

/// Requests carried out at once. qemu's client keeps several in flight (a convert 8 or
/// more): served one at a time, the socket idles while the device writes and the device
/// while the next payload arrives.
const WORKERS: usize = 8;
/// Payload bytes read ahead of the workers, at most (a request's own may exceed it alone).
const READ_AHEAD: u64 = 64 << 20;
/// Writes of whole 4 KiB blocks at 4 KiB offsets go around the page cache (O_DIRECT).
const DIRECT: u64 = 4096;

/// One request, read whole (a WRITE with its payload).
struct Request {
    flags: u16,
    kind: u16,
    handle: [u8; 8],
    offset: u64,
    len: u32,
    data: Option<AlignedBuf>,
}

/// The payload bytes held by requests read and not yet answered, and the buffers they
/// came in, kept for the next (a fresh buffer costs a page fault per 4 KiB).
struct Budget {
    used: Mutex<u64>,
    freed: Condvar,
    spare: Spare,
}

impl Budget {
    fn take(&self, n: u64) {
        let mut used = self.used.lock().expect("not poisoned");
        while *used > 0 && *used + n > READ_AHEAD {
            used = self.freed.wait(used).expect("not poisoned");
        }
        *used += n;
    }

    fn give(&self, n: u64) {
        *self.used.lock().expect("not poisoned") -= n;
        self.freed.notify_all();
    }
}

/// Serves one client on `s` until it disconnects (or the stream fails or closes): the
/// handshake, then requests read in order by this thread and carried out by `WORKERS`
/// threads, each answering as it finishes (the protocol matches replies by handle).
pub fn serve(s: &mut UnixStream, export: &Export) -> io::Result<Served> {
    if let Negotiated::Aborted = handshake(s, export)? {
        return Ok(Served::default());
    }
    let replies = Mutex::new(s.try_clone()?);
    let budget = Budget {
        used: Mutex::new(0),
        freed: Condvar::new(),
        spare: Spare::new(2 * WORKERS + 2),
    };
    let (tx, rx) = sync_channel::<Request>(WORKERS);
    let rx = Mutex::new(rx);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| scope.spawn(|| work(&rx, &replies, export, &budget)))
            .collect();
        let read = read_requests(s, &tx, &budget);
        drop(tx);
        let mut served = Served::default();
        let mut failed = None;
        for w in workers {
            match w.join().expect("a worker does not panic") {
                Ok(done) => {
                    served.bytes_read += done.bytes_read;
                    served.bytes_written += done.bytes_written;
                }
                Err(e) => failed = Some(e),
            }
        }
        served.requests = read?;
        failed.map_or(Ok(served), Err)
    })
}

/// Reads requests until DISC or the end of the stream; returns how many.
fn read_requests(s: &mut UnixStream, tx: &SyncSender<Request>, budget: &Budget) -> io::Result<u64> {
    let mut n = 0;
    loop {
        let mut req = [0u8; 28];
        match s.read_exact(&mut req) {
            // A client may close without NBD_CMD_DISC.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(n),
            r => r?,
        }
        if be::get32(&req, 0) != REQUEST_MAGIC {
            return Err(protocol("a request without the request magic"));
        }
        n += 1;
        let mut r = Request {
            flags: be::get16(&req, 4),
            kind: be::get16(&req, 6),
            handle: req[8..16].try_into().expect("8 bytes"),
            offset: be::get64(&req, 16),
            len: be::get32(&req, 24),
            data: None,
        };
        match r.kind {
            CMD_DISC => return Ok(n),
            CMD_WRITE => {
                // The payload follows the request whatever the answer; one too long to
                // take ends the session.
                if r.len > MAX_REQUEST {
                    return Err(protocol(format!("a write of {} bytes", r.len)));
                }
                budget.take(u64::from(r.len));
                let mut data = budget.spare.take(r.len as usize);
                let read = s.read_exact(&mut data.as_mut_slice()[..r.len as usize]);
                if let Err(e) = read {
                    budget.give(u64::from(r.len));
                    return Err(e);
                }
                r.data = Some(data);
            }
            CMD_READ if r.len <= MAX_REQUEST => budget.take(u64::from(r.len)),
            _ => {}
        }
        if tx.send(r).is_err() {
            return Ok(n); // every worker stopped: the client is gone
        }
    }
}

/// Carries out requests until the reader stops; returns what they moved.
fn work(
    rx: &Mutex<Receiver<Request>>,
    replies: &Mutex<UnixStream>,
    export: &Export,
    budget: &Budget,
) -> io::Result<Served> {
    let mut served = Served::default();
    let mut buf = Vec::new();
    loop {
        let next = rx.lock().expect("not poisoned").recv();
        let Ok(mut r) = next else {
            return Ok(served);
        };
        let held = match r.kind {
            CMD_WRITE => u64::from(r.len),
            CMD_READ if r.len <= MAX_REQUEST => u64::from(r.len),
            _ => 0,
        };
        let answer = carry_out(&r, export, &mut buf, &mut served);
        let mut out = replies.lock().expect("not poisoned");
        let sent = simple_reply(&mut *out, answer, &r.handle).and_then(|_| {
            if answer == 0 && r.kind == CMD_READ {
                out.write_all(&buf)
            } else {
                Ok(())
            }
        });
        drop(out);
        if let Some(b) = r.data.take() {
            budget.spare.give(b);
        }
        budget.give(held);
        sent?;
    }
}

/// Does what `r` asks; returns the NBD error (0: done; a READ's data is in `buf`).
fn carry_out(r: &Request, export: &Export, buf: &mut Vec<u8>, served: &mut Served) -> u32 {
    let (offset, len) = (r.offset, r.len);
    let in_bounds = offset
        .checked_add(u64::from(len))
        .is_some_and(|end| end <= export.size);
    let file = export.file;
    let error = |r: io::Result<()>| if r.is_ok() { 0 } else { EIO };
    if let Some(l) = export.layered {
        if !export.writable && matches!(r.kind, CMD_WRITE | CMD_WRITE_ZEROES | CMD_TRIM) {
            return EPERM;
        }
        return carry_out_layered(r, l, in_bounds, buf, served);
    }
    match r.kind {
        CMD_READ if in_bounds && len <= MAX_REQUEST => {
            buf.resize(len as usize, 0);
            match file.read_exact_at(buf, offset) {
                Ok(()) => {
                    served.bytes_read += u64::from(len);
                    0
                }
                Err(_) => EIO,
            }
        }
        CMD_WRITE if !export.writable => EPERM,
        CMD_WRITE if !in_bounds => EINVAL,
        CMD_WRITE => {
            if export.told(offset, len).is_err() {
                return EIO;
            }
            let data = &r.data.as_ref().expect("read with its payload").as_slice()[..len as usize];
            let written = if is_zero(data) {
                zero::zero_range(file, offset, u64::from(len), export.unmap_block)
            } else {
                match export.direct {
                    Some(d) if offset % DIRECT == 0 && u64::from(len) % DIRECT == 0 => {
                        d.write_all_at(data, offset)
                    }
                    _ => file.write_all_at(data, offset),
                }
            };
            served.bytes_written += u64::from(len);
            error(written.and_then(|_| fua(file, r.flags)))
        }
        CMD_WRITE_ZEROES | CMD_TRIM if !export.writable => EPERM,
        CMD_WRITE_ZEROES | CMD_TRIM if !in_bounds => EINVAL,
        CMD_WRITE_ZEROES | CMD_TRIM if export.told(offset, len).is_err() => EIO,
        CMD_TRIM => {
            // Advisory: unmap whole blocks where that reads as zeros, else nothing.
            if let Some(block) = export.unmap_block {
                zero::discard_blocks(file, offset, u64::from(len), block).ok();
            }
            0
        }
        CMD_WRITE_ZEROES => {
            let unmap = export
                .unmap_block
                .filter(|_| r.flags & CMD_FLAG_NO_HOLE == 0);
            let zeroed = zero::zero_range(file, offset, u64::from(len), unmap);
            error(zeroed.and_then(|_| fua(file, r.flags)))
        }
        CMD_FLUSH if export.writable => error(file.sync_data()),
        CMD_FLUSH => 0,
        _ => EINVAL,
    }
}

/// `carry_out` for a layered export: reads and writes through it, zeros written as data,
/// TRIM ignored (it is advisory, and a view must not lose what lies under a block).
fn carry_out_layered(
    r: &Request,
    l: &dyn Layered,
    in_bounds: bool,
    buf: &mut Vec<u8>,
    served: &mut Served,
) -> u32 {
    let (offset, len) = (r.offset, r.len as usize);
    let error = |r: io::Result<()>| if r.is_ok() { 0 } else { EIO };
    let durable = |done: io::Result<()>| {
        done.and_then(|_| match r.flags & CMD_FLAG_FUA != 0 {
            true => l.flush(),
            false => Ok(()),
        })
    };
    match r.kind {
        CMD_READ | CMD_WRITE | CMD_WRITE_ZEROES | CMD_TRIM if !in_bounds => EINVAL,
        CMD_READ if r.len <= MAX_REQUEST => {
            buf.resize(len, 0);
            let read = l.read_at(buf, offset);
            if read.is_ok() {
                served.bytes_read += len as u64;
            }
            error(read)
        }
        CMD_WRITE => {
            let data = &r.data.as_ref().expect("read with its payload").as_slice()[..len];
            served.bytes_written += len as u64;
            error(durable(l.write_at(data, offset)))
        }
        CMD_WRITE_ZEROES if r.len <= MAX_REQUEST => {
            error(durable(l.write_at(&vec![0u8; len], offset)))
        }
        CMD_TRIM => 0,
        CMD_FLUSH => error(l.flush()),
        _ => EINVAL,
    }
}

/// True when every byte of `data` is zero (compared a word at a time).
fn is_zero(data: &[u8]) -> bool {
    let (head, words, tail) = unsafe { data.align_to::<u64>() };
    head.iter().all(|b| *b == 0) && words.iter().all(|w| *w == 0) && tail.iter().all(|b| *b == 0)
}

#[cfg(test)]
#[path = "nbd_server_tests.rs"]
mod tests;
