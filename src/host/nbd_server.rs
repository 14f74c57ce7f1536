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

use crate::host::zero;
use crate::image::be;

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
const FLAG_NO_ZEROES: u16 = 1 << 1;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const REP_ERR_INVALID: u32 = (1 << 31) | 3;

const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;

const TFLAG_HAS_FLAGS: u16 = 1 << 0;
const TFLAG_READ_ONLY: u16 = 1 << 1;
const TFLAG_SEND_FLUSH: u16 = 1 << 2;
const TFLAG_SEND_FUA: u16 = 1 << 3;
const TFLAG_SEND_TRIM: u16 = 1 << 5;
const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;

const CMD_FLAG_FUA: u16 = 1 << 0;
const CMD_FLAG_NO_HOLE: u16 = 1 << 1;

const EPERM: u32 = 1;
const EIO: u32 = 5;
const EINVAL: u32 = 22;

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
    /// Told of every range a client changes (offset, length), before it is changed: a
    /// write it fails is refused with EIO.
    pub on_write: Option<&'a (dyn Fn(u64, u64) -> io::Result<()> + Sync)>,
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
        if self.writable {
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

/// Serves one client on `s` until it disconnects (or the stream fails or closes).
pub fn serve<S: Read + Write>(s: &mut S, export: &Export) -> io::Result<Served> {
    let mut served = Served::default();
    if let Negotiated::Aborted = handshake(s, export)? {
        return Ok(served);
    }
    let mut buf = Vec::new();
    loop {
        let mut req = [0u8; 28];
        match s.read_exact(&mut req) {
            // A client may close without NBD_CMD_DISC.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(served),
            r => r?,
        }
        if be::get32(&req, 0) != REQUEST_MAGIC {
            return Err(protocol("a request without the request magic"));
        }
        let (flags, kind, handle) = (be::get16(&req, 4), be::get16(&req, 6), &req[8..16]);
        let (offset, len) = (be::get64(&req, 16), be::get32(&req, 24));
        served.requests += 1;
        let in_bounds = offset
            .checked_add(u64::from(len))
            .is_some_and(|end| end <= export.size);
        let file = export.file;
        let error = |r: io::Result<()>| if r.is_ok() { 0 } else { EIO };
        match kind {
            CMD_READ if in_bounds && len <= MAX_REQUEST => {
                buf.resize(len as usize, 0);
                match file.read_exact_at(&mut buf, offset) {
                    Ok(()) => {
                        simple_reply(s, 0, handle)?;
                        s.write_all(&buf)?;
                        served.bytes_read += u64::from(len);
                    }
                    Err(_) => simple_reply(s, EIO, handle)?,
                }
            }
            CMD_WRITE => {
                // The payload follows the request whatever the answer; one too long to
                // take ends the session.
                if len > MAX_REQUEST {
                    return Err(protocol(format!("a write of {len} bytes")));
                }
                buf.resize(len as usize, 0);
                s.read_exact(&mut buf)?;
                let answer = if !export.writable {
                    EPERM
                } else if !in_bounds {
                    EINVAL
                } else if export.told(offset, len).is_err() {
                    EIO
                } else {
                    let written = if buf.iter().all(|b| *b == 0) {
                        zero::zero_range(file, offset, u64::from(len), export.unmap_block)
                    } else {
                        file.write_all_at(&buf, offset)
                    };
                    served.bytes_written += u64::from(len);
                    error(written.and_then(|_| fua(file, flags)))
                };
                simple_reply(s, answer, handle)?;
            }
            CMD_WRITE_ZEROES | CMD_TRIM => {
                let answer = if !export.writable {
                    EPERM
                } else if !in_bounds {
                    EINVAL
                } else if export.told(offset, len).is_err() {
                    EIO
                } else if kind == CMD_TRIM {
                    // Advisory: unmap whole blocks where that reads as zeros, else nothing.
                    if let Some(block) = export.unmap_block {
                        zero::discard_blocks(file, offset, u64::from(len), block).ok();
                    }
                    0
                } else {
                    let unmap = export.unmap_block.filter(|_| flags & CMD_FLAG_NO_HOLE == 0);
                    let zeroed = zero::zero_range(file, offset, u64::from(len), unmap);
                    error(zeroed.and_then(|_| fua(file, flags)))
                };
                simple_reply(s, answer, handle)?;
            }
            CMD_FLUSH => {
                let synced = if export.writable {
                    file.sync_data()
                } else {
                    Ok(())
                };
                simple_reply(s, error(synced), handle)?;
            }
            CMD_DISC => return Ok(served),
            _ => simple_reply(s, EINVAL, handle)?,
        }
        s.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A client speaking the protocol by hand, as qemu's does: fixed newstyle, NO_ZEROES,
    /// LIST, then GO (or EXPORT_NAME, as tapdisk's client does).
    struct Client(UnixStream);

    impl Client {
        fn start(go: bool) -> (Client, std::thread::JoinHandle<io::Result<Served>>) {
            Client::start_with(go, false)
        }

        fn start_with(
            go: bool,
            writable: bool,
        ) -> (Client, std::thread::JoinHandle<io::Result<Served>>) {
            let (mut srv, cli) = UnixStream::pair().unwrap();
            // One file per session: the tests run side by side in one process.
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("thinsr-nbd-{}-{n}", std::process::id()));
            let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
            std::fs::write(&path, &data).unwrap();
            let server = std::thread::spawn(move || {
                let file = File::options()
                    .read(true)
                    .write(writable)
                    .open(&path)
                    .unwrap();
                let export = Export {
                    name: "disk",
                    file: &file,
                    size: 1 << 20,
                    writable,
                    // A regular file cannot discard: zeros are written instead.
                    unmap_block: Some(65536),
                    on_write: None,
                };
                let r = serve(&mut srv, &export);
                std::fs::remove_file(&path).ok();
                r
            });
            let mut c = Client(cli);
            let mut hello = [0u8; 18];
            c.0.read_exact(&mut hello).unwrap();
            assert_eq!(be::get64(&hello, 0), NBDMAGIC);
            assert_eq!(be::get64(&hello, 8), IHAVEOPT);
            assert_eq!(be::get16(&hello, 16), FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES);
            c.0.write_all(&3u32.to_be_bytes()).unwrap();
            if go {
                c.option(OPT_LIST, &[]);
                let (kind, data) = c.reply(OPT_LIST);
                assert_eq!((kind, &data[4..]), (REP_SERVER, &b"disk"[..]));
                assert_eq!(c.reply(OPT_LIST).0, REP_ACK);
                c.option(99, &[]);
                assert_eq!(c.reply(99).0, REP_ERR_UNSUP);
                let mut go = 4u32.to_be_bytes().to_vec();
                go.extend_from_slice(b"disk");
                go.extend_from_slice(&0u16.to_be_bytes());
                c.option(OPT_GO, &go);
                let (kind, info) = c.reply(OPT_GO);
                assert_eq!(kind, REP_INFO);
                assert_eq!(be::get16(&info, 0), INFO_EXPORT);
                assert_eq!(be::get64(&info, 2), 1 << 20);
                assert_eq!(be::get16(&info, 10) & TFLAG_READ_ONLY == 0, writable);
                assert_eq!(c.reply(OPT_GO).0, REP_INFO);
                assert_eq!(c.reply(OPT_GO).0, REP_ACK);
            } else {
                c.option(OPT_EXPORT_NAME, b"tapdisk_client\0");
                let mut b = [0u8; 10];
                c.0.read_exact(&mut b).unwrap();
                assert_eq!(be::get64(&b, 0), 1 << 20);
            }
            (c, server)
        }

        fn option(&mut self, option: u32, data: &[u8]) {
            let mut b = IHAVEOPT.to_be_bytes().to_vec();
            b.extend_from_slice(&option.to_be_bytes());
            b.extend_from_slice(&(data.len() as u32).to_be_bytes());
            b.extend_from_slice(data);
            self.0.write_all(&b).unwrap();
        }

        fn reply(&mut self, option: u32) -> (u32, Vec<u8>) {
            let mut h = [0u8; 20];
            self.0.read_exact(&mut h).unwrap();
            assert_eq!((be::get64(&h, 0), be::get32(&h, 8)), (REPLY_MAGIC, option));
            let mut data = vec![0u8; be::get32(&h, 16) as usize];
            self.0.read_exact(&mut data).unwrap();
            (be::get32(&h, 12), data)
        }

        fn request(&mut self, kind: u16, handle: u64, offset: u64, len: u32) {
            let mut b = REQUEST_MAGIC.to_be_bytes().to_vec();
            b.extend_from_slice(&0u16.to_be_bytes());
            b.extend_from_slice(&kind.to_be_bytes());
            b.extend_from_slice(&handle.to_be_bytes());
            b.extend_from_slice(&offset.to_be_bytes());
            b.extend_from_slice(&len.to_be_bytes());
            self.0.write_all(&b).unwrap();
        }

        fn answer(&mut self, handle: u64) -> u32 {
            let mut r = [0u8; 16];
            self.0.read_exact(&mut r).unwrap();
            assert_eq!(be::get32(&r, 0), SIMPLE_REPLY_MAGIC);
            assert_eq!(be::get64(&r, 8), handle);
            be::get32(&r, 4)
        }
    }

    #[test]
    fn reads_what_the_export_holds_after_either_handshake() {
        for go in [true, false] {
            let (mut c, server) = Client::start(go);
            c.request(CMD_READ, 7, 1000, 4096);
            assert_eq!(c.answer(7), 0);
            let mut got = vec![0u8; 4096];
            c.0.read_exact(&mut got).unwrap();
            let want: Vec<u8> = (1000..5096).map(|i: u32| (i % 251) as u8).collect();
            assert_eq!(got, want);
            // Past the end, and a write to a read-only export: refused, payload consumed.
            c.request(CMD_READ, 8, (1 << 20) - 10, 20);
            assert_eq!(c.answer(8), EINVAL);
            c.request(CMD_WRITE, 9, 0, 3);
            c.0.write_all(b"abc").unwrap();
            assert_eq!(c.answer(9), EPERM);
            c.request(CMD_FLUSH, 10, 0, 0);
            assert_eq!(c.answer(10), 0);
            c.request(CMD_DISC, 11, 0, 0);
            let served = server.join().unwrap().unwrap();
            assert_eq!(served.bytes_read, 4096);
            assert_eq!(served.requests, 5);
        }
    }

    fn read(c: &mut Client, handle: u64, offset: u64, len: u32) -> Vec<u8> {
        c.request(CMD_READ, handle, offset, len);
        assert_eq!(c.answer(handle), 0);
        let mut got = vec![0u8; len as usize];
        c.0.read_exact(&mut got).unwrap();
        got
    }

    #[test]
    fn a_writable_export_takes_writes_zeros_and_trims() {
        let (mut c, server) = Client::start_with(true, true);
        c.request(CMD_WRITE, 1, 4096, 5);
        c.0.write_all(b"hello").unwrap();
        assert_eq!(c.answer(1), 0);
        assert_eq!(read(&mut c, 2, 4096, 5), b"hello");
        // All-zero data, and WRITE_ZEROES across a 64 KiB block and its edges.
        c.request(CMD_WRITE, 3, 4096, 3);
        c.0.write_all(&[0, 0, 0]).unwrap();
        assert_eq!(c.answer(3), 0);
        assert_eq!(read(&mut c, 4, 4096, 5), b"\0\0\0lo");
        c.request(CMD_WRITE_ZEROES, 5, 60000, 140000);
        assert_eq!(c.answer(5), 0);
        assert!(read(&mut c, 6, 60000, 140000).iter().all(|b| *b == 0));
        assert_eq!(read(&mut c, 7, 59999, 1), [(59999 % 251) as u8]);
        assert_eq!(read(&mut c, 8, 200000, 1), [(200000 % 251) as u8]);
        // FUA, TRIM (advisory) and FLUSH are answered; a write past the end is not done.
        let mut fua = REQUEST_MAGIC.to_be_bytes().to_vec();
        fua.extend_from_slice(&CMD_FLAG_FUA.to_be_bytes());
        fua.extend_from_slice(&CMD_WRITE.to_be_bytes());
        fua.extend_from_slice(&9u64.to_be_bytes());
        fua.extend_from_slice(&0u64.to_be_bytes());
        fua.extend_from_slice(&2u32.to_be_bytes());
        fua.extend_from_slice(b"ok");
        c.0.write_all(&fua).unwrap();
        assert_eq!(c.answer(9), 0);
        c.request(CMD_TRIM, 10, 0, 4096);
        assert_eq!(c.answer(10), 0);
        c.request(CMD_FLUSH, 11, 0, 0);
        assert_eq!(c.answer(11), 0);
        c.request(CMD_WRITE, 12, (1 << 20) - 1, 2);
        c.0.write_all(b"xx").unwrap();
        assert_eq!(c.answer(12), EINVAL);
        c.request(CMD_DISC, 13, 0, 0);
        let served = server.join().unwrap().unwrap();
        assert_eq!(served.bytes_written, 5 + 3 + 2);
    }

    #[test]
    fn a_client_that_hangs_up_ends_its_session_cleanly() {
        let (c, server) = Client::start(true);
        drop(c);
        assert_eq!(server.join().unwrap().unwrap().requests, 0);
    }

    #[test]
    fn info_requests_must_add_up() {
        assert!(info_request_is_whole(&[0, 0, 0, 1, b'x', 0, 0]));
        assert!(info_request_is_whole(&[0, 0, 0, 0, 0, 1, 0, 3]));
        assert!(!info_request_is_whole(&[0, 0, 0, 9, b'x', 0, 0]));
        assert!(!info_request_is_whole(&[0, 0, 0, 0, 0, 2, 0, 3]));
        assert!(!info_request_is_whole(&[0xff, 0xff, 0xff, 0xff, 0, 0]));
    }
}
