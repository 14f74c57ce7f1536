//! Reads of a lazy store's device (its thin LV): aligned for O_DIRECT, and, for the NBD
//! server's readers, done by threads of their own so that a reader can stop waiting.
//!
//! Why a reader may need to stop waiting: reading a block the LV has mapped is remapped by
//! dm-thin at once, unless the pool's metadata for it is no longer in memory (dm-bufio lets
//! it go after a few idle minutes). Then the read waits for the pool's one worker, and that
//! worker may itself be waiting for a free request of the NBD device this server answers,
//! the queue full of clones' origin reads. A reader that gives up on the device after a
//! while and asks the server for the same bytes (pinned to one version: the same bytes)
//! answers its request, the freed request lets the worker on, and the device read ends
//! too, its bytes dropped.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aligned::AlignedBuf;

/// O_DIRECT wants buffers, offsets and lengths in whole blocks of this.
const BLOCK: u64 = 4096;
/// Threads reading for the NBD server's readers (as many as its workers).
const THREADS: usize = 8;

/// The block-aligned span around `len` bytes at `offset`: its start and length.
fn span(offset: u64, len: usize) -> (u64, usize) {
    let from = offset / BLOCK * BLOCK;
    let to = (offset + len as u64).div_ceil(BLOCK) * BLOCK;
    (from, (to - from) as usize)
}

/// Reads `buf.len()` bytes at `offset` of `file` (O_DIRECT or not) through a block-aligned
/// buffer of the calling thread's.
pub fn read_aligned(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    thread_local! {
        static ALIGNED: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
    }
    let (from, len) = span(offset, buf.len());
    ALIGNED.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|b| b.as_slice().len() < len) {
            *slot = Some(AlignedBuf::zeroed(len));
        }
        let aligned = slot.as_mut().expect("just made").as_mut_slice();
        file.read_exact_at(&mut aligned[..len], from)?;
        let at = (offset - from) as usize;
        buf.copy_from_slice(&aligned[at..at + buf.len()]);
        Ok(())
    })
}

struct Job {
    from: u64,
    len: usize,
    buf: AlignedBuf,
    reply: SyncSender<(AlignedBuf, io::Result<()>)>,
}

/// Threads reading the device for others; they end when this is dropped (a read stuck in
/// the kernel ends first), and are waited for, so that the device is closed then.
pub struct Reads {
    jobs: Mutex<Option<Sender<Job>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    /// Buffers back from finished reads, for the next.
    spare: Mutex<Vec<AlignedBuf>>,
    /// For tests: how long a thread sleeps before each read (ms).
    #[cfg(test)]
    pub stall: Arc<std::sync::atomic::AtomicU64>,
}

impl Reads {
    pub fn start(file: &File) -> io::Result<Reads> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut reads = Reads {
            jobs: Mutex::new(Some(tx)),
            threads: Vec::with_capacity(THREADS),
            spare: Mutex::new(Vec::new()),
            #[cfg(test)]
            stall: Arc::default(),
        };
        for _ in 0..THREADS {
            let file = file.try_clone()?;
            let rx = rx.clone();
            #[cfg(test)]
            let stall = reads.stall.clone();
            reads.threads.push(std::thread::spawn(move || {
                serve(&file, &rx, || {
                    #[cfg(test)]
                    std::thread::sleep(Duration::from_millis(
                        stall.load(std::sync::atomic::Ordering::SeqCst),
                    ));
                })
            }));
        }
        Ok(reads)
    }

    /// Reads `buf.len()` bytes at `offset`: Some once the device answered within
    /// `patience`, None when it did not (the read goes on, its bytes dropped).
    pub fn read(&self, buf: &mut [u8], offset: u64, patience: Duration) -> Option<io::Result<()>> {
        let (from, len) = span(offset, buf.len());
        let aligned = {
            let mut spare = self.spare.lock().expect("not poisoned");
            match spare.iter().position(|b| b.as_slice().len() >= len) {
                Some(i) => spare.swap_remove(i),
                None => AlignedBuf::zeroed(len),
            }
        };
        let (reply, answer) = sync_channel(1);
        let job = Job {
            from,
            len,
            buf: aligned,
            reply,
        };
        let sent = match &*self.jobs.lock().expect("not poisoned") {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Some(Err(io::Error::other("the device's readers ended")));
        }
        let (aligned, read) = match answer.recv_timeout(patience) {
            Ok(got) => got,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => {
                return Some(Err(io::Error::other("a device reader ended")))
            }
        };
        if read.is_ok() {
            let at = (offset - from) as usize;
            buf.copy_from_slice(&aligned.as_slice()[at..at + buf.len()]);
        }
        let mut spare = self.spare.lock().expect("not poisoned");
        if spare.len() < THREADS {
            spare.push(aligned);
        }
        Some(read)
    }
}

impl Drop for Reads {
    fn drop(&mut self) {
        self.jobs.lock().expect("not poisoned").take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(file: &File, jobs: &Mutex<Receiver<Job>>, before: impl Fn()) {
    loop {
        let next = jobs.lock().expect("not poisoned").recv();
        let Ok(mut job) = next else {
            return;
        };
        before();
        let read = file.read_exact_at(&mut job.buf.as_mut_slice()[..job.len], job.from);
        // The reader may have stopped waiting: then the bytes go.
        let _ = job.reply.send((job.buf, read));
    }
}
