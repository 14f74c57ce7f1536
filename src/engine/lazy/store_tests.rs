use super::*;
use crate::engine::lazy::map::present_in;
use std::sync::atomic::AtomicBool;

/// A server in memory: the file, the ranges asked for, and a switch that makes it fail.
struct Fake {
    data: Vec<u8>,
    asked: Mutex<Vec<(u64, u64)>>,
    down: AtomicBool,
    slow: Duration,
}

impl Source for Fake {
    fn read(&self, start: u64, buf: &mut [u8]) -> Result<(), RangeError> {
        std::thread::sleep(self.slow);
        if self.down.load(Ordering::SeqCst) {
            return Err(RangeError::Unreachable("down".into()));
        }
        self.asked.lock().unwrap().push((start, buf.len() as u64));
        buf.copy_from_slice(&self.data[start as usize..start as usize + buf.len()]);
        Ok(())
    }
}

impl Fake {
    fn new(len: usize) -> Fake {
        let data = (0..len).map(|i| (i * 7 + i / 4096) as u8).collect();
        Fake {
            data,
            asked: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            slow: Duration::ZERO,
        }
    }
    fn sent(&self) -> u64 {
        self.asked.lock().unwrap().iter().map(|(_, n)| n).sum()
    }
}

const PIECE: u64 = 64 << 10;

fn device(layout: &Layout) -> (tempfile_like::Dir, File) {
    let dir = tempfile_like::Dir::new();
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path.join("lv"))
        .unwrap();
    f.set_len(layout.store_size()).unwrap();
    (dir, f)
}

mod tempfile_like {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "thinsr-lazy-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            std::fs::remove_dir_all(&self.path).ok();
        }
    }
}

/// The device opened O_DIRECT too, where the file system takes it (as a thin LV does).
fn direct(d: &tempfile_like::Dir) -> Option<File> {
    crate::host::nbd_server::direct_handle(&d.path.join("lv"))
}

/// A fresh device for a store of `src` (kept while the directory lives).
fn device_for(src: &Fake) -> (tempfile_like::Dir, Layout, File) {
    let layout = Layout {
        length: src.data.len() as u64,
        piece: PIECE,
    };
    let (d, f) = device(&layout);
    (d, layout, f)
}

/// A new store over `src` on a fresh device.
fn opened(src: &Fake) -> (tempfile_like::Dir, Store<'_>) {
    let (d, layout, f) = device_for(src);
    let s = Store::open(f, direct(&d), layout, "\"v1\"", src, Duration::from_secs(5)).unwrap();
    (d, s)
}

/// Runs `f` while the store's writer runs, as the server does; the writer has written
/// everything when it returns.
fn writing<R>(s: &Store, f: impl FnOnce() -> R) -> R {
    // Told to stop even when `f` panics, or the scope would wait for it forever.
    struct Stop<'a, 'b>(&'a Store<'b>);
    impl Drop for Stop<'_, '_> {
        fn drop(&mut self) {
            self.0.stop();
        }
    }
    std::thread::scope(|sc| {
        let w = sc.spawn(|| s.writer());
        let stop = Stop(s);
        let r = f();
        s.drain();
        drop(stop);
        w.join().unwrap();
        r
    })
}

fn reopen(f: &File) -> File {
    f.try_clone().unwrap()
}

#[test]
fn reads_are_the_files_bytes_and_fetched_once() {
    let src = Fake::new(5 * PIECE as usize + 1000);
    let (_d, s) = opened(&src);
    writing(&s, || {
        let layout = s.layout;
        let mut buf = vec![0u8; 10_000];
        s.read_at(&mut buf, 70_000).unwrap();
        assert_eq!(buf, src.data[70_000..80_000]);
        assert_eq!(src.sent(), PIECE, "one piece fetched for a read inside it");
        s.read_at(&mut buf, 65_536).unwrap();
        assert_eq!(
            src.sent(),
            PIECE,
            "a piece on the host is not fetched again"
        );
        // The last, short piece, and zeros past the file's end.
        let mut tail = vec![9u8; 4096];
        s.read_at(&mut tail, layout.length - 1000).unwrap();
        assert_eq!(&tail[..1000], &src.data[src.data.len() - 1000..]);
        assert!(tail[1000..].iter().all(|b| *b == 0));
        assert_eq!(src.asked.lock().unwrap().last(), Some(&(5 * PIECE, 1000)));
    });
}

#[test]
fn two_readers_of_one_piece_fetch_it_once() {
    let mut src = Fake::new(4 * PIECE as usize);
    src.slow = Duration::from_millis(200);
    let (_d, s) = opened(&src);
    writing(&s, || {
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    let mut buf = vec![0u8; 4096];
                    s.read_at(&mut buf, PIECE + 4096).unwrap();
                    assert_eq!(buf, src.data[PIECE as usize + 4096..PIECE as usize + 8192]);
                });
            }
        })
    });
    let asked = src.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
}

#[test]
fn sequential_reads_read_ahead_and_scattered_ones_do_not() {
    let src = Fake::new(64 * PIECE as usize);
    let (_d, s) = opened(&src);
    writing(&s, || {
        let mut buf = vec![0u8; 4096];
        for i in [3u64, 17, 9, 40, 33] {
            s.read_at(&mut buf, i * PIECE + 100).unwrap();
        }
        assert_eq!(
            src.sent(),
            5 * PIECE,
            "scattered reads fetch their pieces only"
        );
        let before = src.asked.lock().unwrap().len();
        let mut big = vec![0u8; PIECE as usize];
        for i in 44..56u64 {
            s.read_at(&mut big, i * PIECE).unwrap();
            assert_eq!(
                big,
                src.data[(i * PIECE) as usize..((i + 1) * PIECE) as usize]
            );
        }
        let asked = src.asked.lock().unwrap().len() - before;
        assert!(
            asked < 12,
            "sequential reads ask in fewer, longer requests: {asked}"
        );
    });
}

#[test]
fn only_committed_pieces_survive_a_crash() {
    let src = Fake::new(8 * PIECE as usize);
    let (d, layout, f) = device_for(&src);
    let keep = reopen(&f);
    let open = |f: File, version: &str| {
        Store::open(f, direct(&d), layout, version, &src, Duration::from_secs(5))
    };
    {
        let s = open(f, "\"v1\"").unwrap();
        writing(&s, || {
            let mut buf = vec![0u8; 4096];
            s.read_at(&mut buf, 0).unwrap();
            s.read_at(&mut buf, 5 * PIECE).unwrap();
            s.drain();
            assert_eq!(s.mark_written().unwrap(), 2);
            s.read_at(&mut buf, 7 * PIECE).unwrap();
        });
        // Written, not marked: as if the process died here.
        assert_eq!(s.counts().present, 3);
    }
    assert_eq!(present_in(&keep, &layout).unwrap(), 2);
    let s = open(reopen(&keep), "\"v1\"").unwrap();
    assert_eq!(s.counts().present, 2);
    let before = src.sent();
    let mut buf = vec![0u8; 4096];
    s.read_at(&mut buf, 7 * PIECE).unwrap();
    assert_eq!(
        src.sent() - before,
        PIECE,
        "the unmarked piece is fetched again"
    );
    s.read_at(&mut buf, 5 * PIECE).unwrap();
    assert_eq!(src.sent() - before, PIECE, "the marked ones are not");
    assert_eq!(buf, src.data[5 * PIECE as usize..5 * PIECE as usize + 4096]);
    // Another version of the file: the store is refused.
    assert!(open(reopen(&keep), "\"v2\"").is_err());
}

#[test]
fn a_failed_fetch_fails_the_read_and_a_later_one_works() {
    let src = Fake::new(4 * PIECE as usize);
    let (_d, s) = opened(&src);
    writing(&s, || {
        let mut buf = vec![0u8; 4096];
        s.read_at(&mut buf, 0).unwrap();
        src.down.store(true, Ordering::SeqCst);
        assert!(matches!(
            s.read_at(&mut buf, 2 * PIECE),
            Err(RangeError::Unreachable(_))
        ));
        s.read_at(&mut buf, 0)
            .expect("a piece on the host reads while the server is down");
        src.down.store(false, Ordering::SeqCst);
        s.read_at(&mut buf, 2 * PIECE).unwrap();
        assert_eq!(buf, src.data[2 * PIECE as usize..2 * PIECE as usize + 4096]);
    });
}

#[test]
fn fill_fetches_the_rest_and_its_hash_is_the_files() {
    let src = Fake::new(100 * PIECE as usize + 12345);
    let (_d, s) = opened(&src);
    writing(&s, || {
        let layout = s.layout;
        let mut buf = vec![0u8; 4096];
        s.read_at(&mut buf, 50 * PIECE).unwrap();
        let mut seen = 0;
        assert!(s
            .fill(0, &mut |c| {
                seen = c.present;
                true
            })
            .unwrap());
        assert_eq!(seen, layout.pieces());
        assert_eq!(src.sent(), layout.length, "every byte once");
        let want: String = Sha256::digest(&src.data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(s.sha256().unwrap(), want);
    });
}

#[test]
fn a_sequential_reader_whose_requests_arrive_out_of_order_still_reads_ahead() {
    let src = Fake::new(64 * PIECE as usize);
    let (_d, s) = opened(&src);
    writing(&s, || {
        let mut buf = vec![0u8; PIECE as usize];
        // 1 MiB reads split into 64 KiB requests, a few of them taken out of order, as the
        // server's workers may take a kernel's queue.
        for w in 0..4u64 {
            for k in [2u64, 0, 1, 3, 6, 4, 5, 7, 9, 8, 11, 10, 14, 12, 13, 15] {
                let p = w * 16 + k;
                s.read_at(&mut buf, p * PIECE).unwrap();
                assert_eq!(
                    buf,
                    src.data[(p * PIECE) as usize..((p + 1) * PIECE) as usize]
                );
            }
        }
        let asked = src.asked.lock().unwrap().len();
        assert!(asked < 32, "64 pieces read in {asked} requests");
        assert!(src.sent() <= 64 * PIECE, "nothing past the file");
    });
}

#[test]
fn reads_never_wait_for_the_writer_and_what_it_cannot_take_is_fetched_again() {
    // No writer runs, as when it waits on a pool whose worker waits on this server.
    let src = Fake::new(48 << 20);
    let (_d, s) = opened(&src);
    let mut buf = vec![0u8; 1 << 20];
    let t0 = Instant::now();
    for i in 0..48u64 {
        // 1 MiB reads, every other MiB first (no readahead), then the rest.
        let mib = if i < 24 { 2 * i } else { 2 * (i - 24) + 1 };
        s.read_at(&mut buf, mib << 20).unwrap();
        assert_eq!(
            buf,
            src.data[(mib << 20) as usize..((mib + 1) << 20) as usize]
        );
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(src.sent(), 48 << 20, "each byte fetched once so far");
    {
        let st = s.state.lock().unwrap();
        assert!(st.unwritten <= UNWRITTEN_MAX, "{}", st.unwritten);
        assert_eq!(st.present, 0);
    }
    // Held runs read from memory; a dropped one is fetched again.
    s.read_at(&mut buf, 0).unwrap();
    assert_eq!(src.sent(), 48 << 20, "a held run is not fetched again");
    s.read_at(&mut buf, 47 << 20).unwrap();
    assert_eq!(buf, src.data[47 << 20..48 << 20]);
    assert_eq!(src.sent(), 49 << 20, "a dropped run is fetched again");
    // Once the writer runs, what it held is on the device, and reads of it, let go from
    // memory, come from there.
    writing(&s, || {});
    let present = s.counts().present;
    assert_eq!(present * PIECE, UNWRITTEN_MAX, "{present} pieces written");
    let mut big = vec![0u8; 3 << 20];
    s.read_at(&mut big, (1 << 20) + 4095).unwrap();
    assert_eq!(big, src.data[(1 << 20) + 4095..(4 << 20) + 4095]);
    assert_eq!(
        src.sent(),
        49 << 20,
        "nothing fetched for pieces on the device"
    );
}

#[test]
fn a_device_too_slow_for_a_reader_is_passed_by_and_the_server_answers() {
    let src = Fake::new(8 * PIECE as usize);
    let (d, layout, f) = device_for(&src);
    let keep = reopen(&f);
    let open = |f: File| {
        Store::open(
            f,
            direct(&d),
            layout,
            "\"v1\"",
            &src,
            Duration::from_secs(5),
        )
    };
    {
        let s = open(f).unwrap();
        writing(&s, || s.read_at(&mut [0u8; 4096], 2 * PIECE).unwrap());
        assert_eq!(s.mark_written().unwrap(), 1);
    }
    // Piece 2 is on the device alone now; the device stalls (as a read waiting for the
    // pool's worker would).
    let mut s = open(reopen(&keep)).unwrap();
    s.patience = Duration::from_millis(100);
    s.reads.stall.store(3000, Ordering::SeqCst);
    let before = src.sent();
    let mut buf = vec![0u8; 5000];
    let t0 = Instant::now();
    s.read_at(&mut buf, 2 * PIECE + 100).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(
        buf,
        src.data[2 * PIECE as usize + 100..2 * PIECE as usize + 5100]
    );
    assert_eq!(
        src.sent() - before,
        5000,
        "the bytes asked for, from the server"
    );
    assert_eq!(s.counts().slow_reads, 1);
    assert_eq!(s.counts().present, 1, "nothing rewritten or unmarked");
    // A device that answers again is read again.
    s.reads.stall.store(0, Ordering::SeqCst);
    s.patience = Duration::from_secs(5);
    s.read_at(&mut buf, 2 * PIECE + 100).unwrap();
    assert_eq!(
        buf,
        src.data[2 * PIECE as usize + 100..2 * PIECE as usize + 5100]
    );
    assert_eq!(src.sent() - before, 5000, "nothing more from the server");
}
