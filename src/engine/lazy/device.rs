//! Reads of a lazy store's device (its thin LV) for the NBD server's readers, done by
//! threads of their own so that a reader can stop waiting.
//!
//! Why a reader may need to stop waiting: reading a block the LV has mapped is remapped by
//! dm-thin at once, unless the pool's metadata for it is no longer in memory (dm-bufio lets
//! it go after a few idle minutes). Then the read waits for the pool's one worker, and that
//! worker may itself be waiting for a free request of the NBD device this server answers,
//! the queue full of clones' origin reads. A reader that gives up on the device after a
//! while and asks the server for the same bytes (pinned to one version: the same bytes)
//! answers its request, the freed request lets the worker on, and the device read ends
//! too, its bytes dropped.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aligned::{around, AlignedBuf, Spare};

/// Threads reading for the NBD server's readers (as many as its workers).
const THREADS: usize = 8;

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
    spare: Spare,
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
            spare: Spare::new(THREADS),
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
        let (from, len) = around(offset, buf.len() as u64);
        let (reply, answer) = sync_channel(1);
        let job = Job {
            from,
            len: len as usize,
            buf: self.spare.take(len as usize),
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
        self.spare.give(aligned);
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
