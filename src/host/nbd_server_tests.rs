//! Tests of `nbd_server.rs`: a client speaking the protocol by hand.
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
                direct: None,
                on_write: None,
                layered: None,
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
