//! A lazy template's store: the file's bytes on this host as far as they were fetched, in a
//! thin LV of the pool, and at the LV's end a map of the pieces that are there (`map.rs`).
//!
//! A read of pieces not on the host fetches them (one ranged request per run of missing
//! pieces, extended ahead on sequential reads) and answers from the bytes fetched; a piece
//! asked for twice at once is fetched once (the second reader waits for the first). The
//! run is handed to a writer thread, which writes it into the LV (O_DIRECT where the
//! device takes it); until written, and a while after, reads of its pieces are answered
//! from memory.
//!
//! Why a reader never waits for the writer: the LV is a thin volume of the pool whose
//! clones read this server through their external origin. Writing a new block of the LV
//! needs the pool's one worker thread, and that worker, submitting a clone's origin read,
//! waits for a free request of the NBD device, which only this server's answers free. A
//! reader that waited for its write would close the circle (seen: every NBD worker in an
//! O_DIRECT write, the pool's worker waiting for an NBD tag, the device's queue full). So
//! the writer's queue is bounded, and a run that does not fit is answered and dropped (its
//! pieces fetched again when read again), never waited for. Reads of pieces already on
//! the host are of mapped blocks, which dm-thin remaps without its worker while their
//! metadata is in memory; `device.rs` keeps a reader from waiting on them for long when
//! it is not.
//!
//! The map on disk only ever says what is on disk: a committer syncs the data written,
//! then sets its bits and writes the bitmap blocks they are in, then syncs again. A crash
//! loses at most the marks of the last pieces, which are then fetched again (the same
//! bytes: every request is pinned to one version of the file).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::device::Reads;
use super::map::{self, bit, set, Layout};
use crate::aligned::AlignedBuf;
use crate::host::http::RangeError;

/// The longest run fetched in one request, readahead included.
pub const MAX_RUN: u64 = 4 << 20;
/// Readahead on sequential reads grows to this many bytes,
const MAX_AHEAD: u64 = 2 << 20;
/// once they have read this much in a row (a scattered read of a few blocks never does).
const STREAK: u64 = 512 << 10;
/// Fetched bytes waiting for the writer, at most: a reader's run past it is not kept.
const UNWRITTEN_MAX: u64 = 32 << 20;
/// Written runs kept in memory for the reads that follow a readahead, at most.
const RECENT_MAX: u64 = 16 << 20;
/// How long a reader waits for the device before it asks the server (`device.rs`).
const PATIENCE: Duration = Duration::from_secs(5);

/// Where the bytes come from (an http(s) or s3 server), pinned to one version.
pub trait Source: Sync {
    fn read(&self, start: u64, buf: &mut [u8]) -> Result<(), RangeError>;
}

impl Source for crate::host::http::Ranged {
    fn read(&self, start: u64, buf: &mut [u8]) -> Result<(), RangeError> {
        crate::host::http::Ranged::read(self, start, buf)
    }
}

/// What the store did, for `template show`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Pieces on the host (written, whether or not marked yet).
    pub present: u64,
    pub pieces: u64,
    /// Bytes received from the server since the store was opened.
    pub fetched: u64,
    pub requests: u64,
    /// Reads of pieces on the host answered from the server, the device too slow.
    #[serde(default)]
    pub slow_reads: u64,
}

/// The bytes of one fetched run of pieces, in memory while the writer has them and a
/// while after.
struct Run {
    first: u64,
    n: u64,
    /// Whole blocks; zeros past the file's end.
    data: AlignedBuf,
}

impl Run {
    fn covers(&self, p: u64) -> bool {
        (self.first..self.first + self.n).contains(&p)
    }
    fn bytes(&self) -> u64 {
        self.data.as_slice().len() as u64
    }
}

struct State {
    /// Written into the LV (readable from it).
    have: Vec<u64>,
    /// Marked in the map on disk.
    durable: Vec<u64>,
    /// Written, not yet marked.
    pending: Vec<u64>,
    /// Being fetched by some reader.
    flying: HashSet<u64>,
    /// The last failure of a piece, and when: a reader that waited on it fails with it.
    failed: HashMap<u64, (Instant, RangeError)>,
    present: u64,
    /// Pieces whose bytes are in memory (being written, or written lately).
    held: HashMap<u64, Arc<Run>>,
    /// Runs for the writer, oldest first, and the bytes of those it has not written.
    queue: VecDeque<Arc<Run>>,
    unwritten: u64,
    /// Written runs still held, oldest first, and their bytes.
    recent: VecDeque<Arc<Run>>,
    recent_bytes: u64,
}

impl State {
    /// The run holding `p`'s bytes stops doing so (if it still does).
    fn let_go(&mut self, run: &Arc<Run>) {
        for p in run.first..run.first + run.n {
            if self.held.get(&p).is_some_and(|r| Arc::ptr_eq(r, run)) {
                self.held.remove(&p);
            }
        }
    }
}

pub struct Store<'s> {
    dev: File,
    /// The same device opened O_DIRECT, for the file's bytes (the map goes through `dev`).
    direct: Option<File>,
    pub layout: Layout,
    source: &'s dyn Source,
    state: Mutex<State>,
    /// Pieces became present, held or failed.
    changed: Condvar,
    /// The writer has work.
    work: Condvar,
    /// The writer wrote a run.
    written: Condvar,
    /// The longest a read waits for its pieces before it fails.
    bound: Duration,
    fetched: AtomicU64,
    requests: AtomicU64,
    /// Serialises commits (the committer's and a final one).
    commit: Mutex<()>,
    stop: AtomicBool,
    /// The last fetch's failure, until a fetch succeeds.
    last_error: Mutex<Option<RangeError>>,
    /// Reads of the device for readers, and how long a reader waits for one.
    reads: Reads,
    patience: Duration,
    /// Reads of pieces on the host answered from the server: the device was too slow.
    slow_reads: AtomicU64,
}

impl<'s> Store<'s> {
    /// Opens the store on `dev` (the LV, at least `layout.store_size()` long; `direct`, the
    /// same opened O_DIRECT, when it takes that): reads its map, or writes a new header and
    /// an empty map on a new LV (which reads zeros). A header for another file or version
    /// is refused. Fetched runs reach the LV only while `writer` runs.
    pub fn open(
        dev: File,
        direct: Option<File>,
        layout: Layout,
        pinned: &str,
        source: &'s dyn Source,
        bound: Duration,
    ) -> io::Result<Store<'s>> {
        let have = map::open(&dev, &layout, pinned)?;
        let reads = Reads::start(direct.as_ref().unwrap_or(&dev))?;
        let present = have.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(Store {
            dev,
            direct,
            layout,
            source,
            state: Mutex::new(State {
                durable: have.clone(),
                have,
                pending: Vec::new(),
                flying: HashSet::new(),
                failed: HashMap::new(),
                present,
                held: HashMap::new(),
                queue: VecDeque::new(),
                unwritten: 0,
                recent: VecDeque::new(),
                recent_bytes: 0,
            }),
            changed: Condvar::new(),
            work: Condvar::new(),
            written: Condvar::new(),
            bound,
            fetched: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            commit: Mutex::new(()),
            stop: AtomicBool::new(false),
            last_error: Mutex::new(None),
            reads,
            patience: PATIENCE,
            slow_reads: AtomicU64::new(0),
        })
    }

    pub fn counts(&self) -> Counts {
        let st = self.state.lock().expect("not poisoned");
        Counts {
            present: st.present,
            pieces: self.layout.pieces(),
            fetched: self.fetched.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            slow_reads: self.slow_reads.load(Ordering::Relaxed),
        }
    }

    pub fn complete(&self) -> bool {
        let st = self.state.lock().expect("not poisoned");
        st.present == self.layout.pieces()
    }

    /// Reads `buf.len()` bytes at `offset` of the file (zeros past its end), fetching the
    /// pieces not on the host first. Fails when they cannot be had within the bound.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), RangeError> {
        let end = offset + buf.len() as u64;
        let inside = end.min(self.layout.length).saturating_sub(offset) as usize;
        buf[inside..].fill(0);
        if inside == 0 {
            return Ok(());
        }
        let first = offset / self.layout.piece;
        let last = (offset + inside as u64 - 1) / self.layout.piece;
        loop {
            let mine = self.ensure(first, last, true)?;
            // None only when a held run's write failed meanwhile: its pieces are missing
            // again, and the next pass fetches them.
            if let Some(parts) = self.parts(first, last, &mine) {
                return self.copy_out(&mut buf[..inside], offset, first, &parts);
            }
        }
    }

    /// Where each of pieces `first..=last` is read from: a run in memory (this reader's
    /// own first), or the LV (None). None at all when one is in neither.
    fn parts(&self, first: u64, last: u64, mine: &[Arc<Run>]) -> Option<Vec<Option<Arc<Run>>>> {
        let st = self.state.lock().expect("not poisoned");
        (first..=last)
            .map(
                |p| match mine.iter().find(|r| r.covers(p)).or(st.held.get(&p)) {
                    Some(run) => Some(Some(run.clone())),
                    None if bit(&st.have, p) => Some(None),
                    None => None,
                },
            )
            .collect()
    }

    /// Fills `buf` (the file's bytes at `offset`, within pieces `first..`) from `parts`:
    /// memory copied, the LV's runs of pieces read in one read each.
    fn copy_out(
        &self,
        buf: &mut [u8],
        offset: u64,
        first: u64,
        parts: &[Option<Arc<Run>>],
    ) -> Result<(), RangeError> {
        let piece = self.layout.piece;
        let end = offset + buf.len() as u64;
        let mut i = 0;
        while i < parts.len() {
            let p = first + i as u64;
            let from = offset.max(p * piece);
            match &parts[i] {
                Some(run) => {
                    let to = end.min((p + 1) * piece);
                    let at = (from - run.first * piece) as usize;
                    buf[(from - offset) as usize..(to - offset) as usize]
                        .copy_from_slice(&run.data.as_slice()[at..at + (to - from) as usize]);
                    i += 1;
                }
                None => {
                    let mut j = i + 1;
                    while j < parts.len() && parts[j].is_none() {
                        j += 1;
                    }
                    let to = end.min((first + j as u64) * piece);
                    self.read_present(
                        &mut buf[(from - offset) as usize..(to - offset) as usize],
                        from,
                    )?;
                    i = j;
                }
            }
        }
        Ok(())
    }

    /// Reads the LV's bytes at `offset` (pieces on the host) for a reader: from the device
    /// when it answers within `PATIENCE`, else from the server (`device.rs` says why).
    fn read_present(&self, buf: &mut [u8], offset: u64) -> Result<(), RangeError> {
        let local = |e: io::Error| RangeError::Refused(format!("reading the local store: {e}"));
        if let Some(read) = self.reads.read(buf, offset, self.patience) {
            return read.map_err(local);
        }
        self.slow_reads.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.source.read(offset, buf)?;
        self.fetched.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Makes pieces `first..=last` readable (on the host, or in memory): fetches the
    /// missing ones nobody fetches (in runs, extended ahead when sequential reads
    /// continue), waits for the others. Returns the runs this call fetched.
    fn ensure(&self, first: u64, last: u64, reader: bool) -> Result<Vec<Arc<Run>>, RangeError> {
        let mut mine: Vec<Arc<Run>> = Vec::new();
        let began = Instant::now();
        let piece = self.layout.piece;
        // Whether this read was counted in the sequential streak (once, not per pass).
        let mut counted = false;
        loop {
            let mut st = self.state.lock().expect("not poisoned");
            let mut claimed: Vec<(u64, u64)> = Vec::new();
            let mut waiting = false;
            for p in first..=last {
                if bit(&st.have, p) || st.held.contains_key(&p) || mine.iter().any(|r| r.covers(p))
                {
                    continue;
                }
                if let Some((at, e)) = st.failed.get(&p) {
                    if *at >= began {
                        return Err(e.clone());
                    }
                }
                if st.flying.contains(&p) {
                    waiting = true;
                    continue;
                }
                st.flying.insert(p);
                match claimed.last_mut() {
                    Some((s, n)) if p == *s + *n && (*n + 1) * piece <= MAX_RUN => *n += 1,
                    _ => claimed.push((p, 1)),
                }
            }
            if reader && !counted {
                counted = true;
                // A read that continues a run of pieces on the host or on their way (a
                // sequential reader's, whatever order the requests of one of its reads
                // arrive in) reads ahead as far as that run goes back, once it is long
                // enough not to be one scattered read's few blocks.
                let behind = (1..=MAX_AHEAD / piece)
                    .take_while(|k| {
                        first >= *k && {
                            let p = first - k;
                            bit(&st.have, p) || st.flying.contains(&p) || st.held.contains_key(&p)
                        }
                    })
                    .count() as u64
                    * piece;
                let ahead = if behind >= STREAK { behind } else { 0 };
                let reaches_end = claimed.last().is_some_and(|(s, n)| s + n == last + 1);
                if let Some((start, n)) = claimed.last_mut().filter(|_| ahead > 0 && reaches_end) {
                    let mut extra = ahead / piece;
                    let mut p = *start + *n;
                    while extra > 0
                        && p < self.layout.pieces()
                        && (*n + 1) * piece <= MAX_RUN
                        && !bit(&st.have, p)
                        && !st.flying.contains(&p)
                        && !st.held.contains_key(&p)
                    {
                        st.flying.insert(p);
                        *n += 1;
                        p += 1;
                        extra -= 1;
                    }
                }
            }
            if claimed.is_empty() && !waiting {
                return Ok(mine);
            }
            if claimed.is_empty() {
                let left = (began + self.bound).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(RangeError::Unreachable(format!(
                        "no answer within {} s",
                        self.bound.as_secs()
                    )));
                }
                let _ = self
                    .changed
                    .wait_timeout(st, left.min(Duration::from_millis(500)))
                    .expect("not poisoned");
                continue;
            }
            drop(st);
            let mut failure = None;
            for (start, n) in claimed {
                match self.fetch_run(start, n, reader) {
                    Ok(run) => mine.push(run),
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
    }

    /// Fetches pieces `start..start+n` (claimed by the caller), hands them to the writer
    /// (a reader's only when the writer's queue has room), and tells the waiters; returns
    /// their bytes.
    fn fetch_run(&self, start: u64, n: u64, reader: bool) -> Result<Arc<Run>, RangeError> {
        let piece = self.layout.piece;
        let from = start * piece;
        let len = ((start + n) * piece).min(self.layout.length) - from;
        let mut data = AlignedBuf::zeroed(len as usize);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let got = self
            .source
            .read(from, &mut data.as_mut_slice()[..len as usize]);
        if got.is_ok() {
            self.fetched.fetch_add(len, Ordering::Relaxed);
            crate::crash::point("lazy.fetched");
        }
        let run = Arc::new(Run {
            first: start,
            n,
            data,
        });
        let mut st = self.state.lock().expect("not poisoned");
        for p in start..start + n {
            st.flying.remove(&p);
            match &got {
                Ok(()) => st.failed.remove(&p),
                Err(e) => st.failed.insert(p, (Instant::now(), e.clone())),
            };
        }
        let room = st.unwritten == 0 || st.unwritten + run.bytes() <= UNWRITTEN_MAX;
        if got.is_ok() && (room || !reader) {
            for p in start..start + n {
                if !bit(&st.have, p) {
                    st.held.insert(p, run.clone());
                }
            }
            st.unwritten += run.bytes();
            st.queue.push_back(run.clone());
            self.work.notify_one();
        }
        drop(st);
        self.changed.notify_all();
        *self.last_error.lock().expect("not poisoned") = got.as_ref().err().cloned();
        got.map(|()| run)
    }

    /// Writes the runs fetched into the LV, oldest first, until `stop` is called and none
    /// is left; run in a thread of its own. A written run's pieces are present (and marked
    /// by the next commit); a failed write's are missing again.
    pub fn writer(&self) {
        let dev = self.direct.as_ref().unwrap_or(&self.dev);
        loop {
            let run = {
                let mut st = self.state.lock().expect("not poisoned");
                loop {
                    if let Some(run) = st.queue.pop_front() {
                        break run;
                    }
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    st = self
                        .work
                        .wait_timeout(st, Duration::from_millis(200))
                        .expect("not poisoned")
                        .0;
                }
            };
            let wrote = dev.write_all_at(run.data.as_slice(), run.first * self.layout.piece);
            if wrote.is_ok() {
                crate::crash::point("lazy.written");
            }
            let mut st = self.state.lock().expect("not poisoned");
            st.unwritten -= run.bytes();
            match &wrote {
                Ok(()) => {
                    for p in run.first..run.first + run.n {
                        if !bit(&st.have, p) {
                            set(&mut st.have, p);
                            st.present += 1;
                            st.pending.push(p);
                        }
                    }
                    st.recent_bytes += run.bytes();
                    st.recent.push_back(run);
                    while st.recent_bytes > RECENT_MAX {
                        let Some(old) = st.recent.pop_front() else {
                            break;
                        };
                        st.recent_bytes -= old.bytes();
                        st.let_go(&old);
                    }
                }
                Err(_) => st.let_go(&run),
            }
            drop(st);
            if let Err(e) = wrote {
                *self.last_error.lock().expect("not poisoned") =
                    Some(RangeError::Refused(format!("writing the local store: {e}")));
            }
            self.written.notify_all();
            self.changed.notify_all();
        }
    }

    /// Waits until the writer's queue has room for `bytes` more (or the store stops).
    fn wait_room(&self, bytes: u64) {
        let mut st = self.state.lock().expect("not poisoned");
        while st.unwritten > 0
            && st.unwritten + bytes > UNWRITTEN_MAX
            && !self.stop.load(Ordering::Relaxed)
        {
            st = self
                .written
                .wait_timeout(st, Duration::from_millis(200))
                .expect("not poisoned")
                .0;
        }
    }

    /// Waits until the writer wrote every run handed to it (or the store stops).
    pub fn drain(&self) {
        self.wait_room(UNWRITTEN_MAX + 1);
    }

    /// The last fetch's failure, while no fetch has succeeded since.
    pub fn last_error(&self) -> Option<RangeError> {
        self.last_error.lock().expect("not poisoned").clone()
    }

    /// Marks what was written since the last commit: the data synced first, then the map
    /// blocks holding their bits, synced. Returns how many pieces it marked.
    pub fn mark_written(&self) -> io::Result<usize> {
        let _one = self.commit.lock().expect("not poisoned");
        let pending = std::mem::take(&mut self.state.lock().expect("not poisoned").pending);
        if pending.is_empty() {
            return Ok(0);
        }
        let undo = |e: io::Error| {
            self.state
                .lock()
                .expect("not poisoned")
                .pending
                .extend_from_slice(&pending);
            e
        };
        self.dev.sync_data().map_err(undo)?;
        crate::crash::point("lazy.synced");
        let durable = {
            let mut st = self.state.lock().expect("not poisoned");
            for p in &pending {
                set(&mut st.durable, *p);
            }
            st.durable.clone()
        };
        map::write_bits(&self.dev, &self.layout, &durable, &pending)?;
        self.dev.sync_data()?;
        crate::crash::point("lazy.marked");
        Ok(pending.len())
    }

    /// Commits every `every` until `stop` is called; run in a thread of its own.
    pub fn committer(&self, every: Duration) {
        while !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(every);
            let _ = self.mark_written();
        }
        let _ = self.mark_written();
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Fetches every piece not on the host, in runs of `MAX_RUN`, at most `rate` bytes a
    /// second (0: unbounded), telling `told` the bytes present after each run; stops
    /// (Ok(false)) when `go_on` says so. Ok(true) once everything is written and marked.
    /// Waits for the writer (a reader never does; the warm holds no NBD request).
    pub fn fill(
        &self,
        rate: u64,
        told: &mut dyn FnMut(Counts) -> bool,
    ) -> Result<bool, RangeError> {
        let began = Instant::now();
        let mut sent = 0u64;
        let per_run = (MAX_RUN / self.layout.piece).max(1);
        let pieces = self.layout.pieces();
        // A reader's run dropped while the writer was behind is missing again: a second
        // pass fetches what the first one found held and later lost.
        for _pass in 0..3 {
            let mut p = 0;
            while p < pieces {
                let last = (p + per_run - 1).min(pieces - 1);
                self.wait_room(MAX_RUN);
                self.ensure(p, last, false)?;
                sent += (last + 1 - p) * self.layout.piece;
                p = last + 1;
                if !told(self.counts()) {
                    return Ok(false);
                }
                if rate > 0 {
                    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(began.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            self.drain();
            if !told(self.counts()) {
                return Ok(false);
            }
            if self.complete() {
                break;
            }
        }
        if !self.complete() {
            return Err(self.last_error().unwrap_or_else(|| {
                RangeError::Refused("pieces still missing after three passes".into())
            }));
        }
        self.mark_written()
            .map_err(|e| RangeError::Refused(format!("marking the local store: {e}")))?;
        Ok(self.complete())
    }

    /// The SHA-256 of the file's bytes as the store holds them (all present), read from
    /// the device (O_DIRECT: whole blocks, the last piece's zeros past the file included).
    pub fn sha256(&self) -> io::Result<String> {
        let mut h = Sha256::new();
        let mut buf = AlignedBuf::zeroed(MAX_RUN as usize);
        let dev = self.direct.as_ref().unwrap_or(&self.dev);
        let mut at = 0;
        while at < self.layout.length {
            let n = (self.layout.length - at).min(MAX_RUN);
            let (_, whole) = crate::aligned::around(at, n);
            dev.read_exact_at(&mut buf.as_mut_slice()[..whole as usize], at)?;
            h.update(&buf.as_slice()[..n as usize]);
            at += n;
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
