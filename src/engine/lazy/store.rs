//! A lazy template's store: the file's bytes on this host as far as they were fetched, in a
//! thin LV of the pool, and at the LV's end a map of the pieces that are there.
//!
//! ```text
//! [ the file's bytes, piece by piece, zeros where not fetched ][ header 4 KiB ][ bitmap ]
//!   0                                                   map_at   map_at+4096
//! ```
//!
//! A read of pieces not on the host fetches them (one ranged request per run of missing
//! pieces, extended ahead on sequential reads), writes them into the LV and answers from
//! there; a piece asked for twice at once is fetched once (the second reader waits for the
//! first). The map on disk only ever says what is on disk: a committer syncs the data
//! written, then sets its bits and writes the bitmap blocks they are in, then syncs again.
//! A crash loses at most the marks of the last pieces, which are then fetched again (the
//! same bytes: every request is pinned to one version of the file).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::host::http::RangeError;

const MAGIC: &[u8; 8] = b"THINSRLZ";
const VERSION: u32 = 1;
const HEADER: u64 = 4096;
const MAP_BLOCK: u64 = 4096;
/// The longest run fetched in one request, readahead included.
pub const MAX_RUN: u64 = 4 << 20;
/// Readahead on sequential reads grows to this many bytes,
const MAX_AHEAD: u64 = 2 << 20;
/// once they have read this much in a row (a scattered read of a few blocks never does).
const STREAK: u64 = 512 << 10;

/// Where the bytes come from (an http(s) or s3 server), pinned to one version.
pub trait Source: Sync {
    fn read(&self, start: u64, buf: &mut [u8]) -> Result<(), RangeError>;
}

impl Source for crate::host::http::Ranged {
    fn read(&self, start: u64, buf: &mut [u8]) -> Result<(), RangeError> {
        crate::host::http::Ranged::read(self, start, buf)
    }
}

/// The store's geometry: the file's length and the piece (the pool's block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub length: u64,
    pub piece: u64,
}

impl Layout {
    pub fn pieces(&self) -> u64 {
        self.length.div_ceil(self.piece)
    }
    /// Where the header is: after the last piece.
    pub fn map_at(&self) -> u64 {
        self.pieces() * self.piece
    }
    fn bitmap_at(&self) -> u64 {
        self.map_at() + HEADER
    }
    fn bitmap_len(&self) -> u64 {
        self.pieces().div_ceil(8).div_ceil(MAP_BLOCK).max(1) * MAP_BLOCK
    }
    /// The LV's least size.
    pub fn store_size(&self) -> u64 {
        self.bitmap_at() + self.bitmap_len()
    }
}

fn header(layout: &Layout, pinned: &str) -> Vec<u8> {
    let mut h = vec![0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&layout.piece.to_le_bytes());
    h[24..32].copy_from_slice(&layout.length.to_le_bytes());
    h[32..64].copy_from_slice(&Sha256::digest(pinned.as_bytes()));
    h
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
}

fn bit(v: &[u64], i: u64) -> bool {
    v[(i / 64) as usize] & (1 << (i % 64)) != 0
}

fn set(v: &mut [u64], i: u64) {
    v[(i / 64) as usize] |= 1 << (i % 64);
}

pub struct Store<'s> {
    dev: File,
    pub layout: Layout,
    source: &'s dyn Source,
    state: Mutex<State>,
    changed: Condvar,
    /// The longest a read waits for its pieces before it fails.
    bound: Duration,
    fetched: AtomicU64,
    requests: AtomicU64,
    /// Serialises commits (the committer's and a final one).
    commit: Mutex<()>,
    stop: AtomicBool,
    /// The last fetch's failure, until a fetch succeeds.
    last_error: Mutex<Option<RangeError>>,
}

impl<'s> Store<'s> {
    /// Opens the store on `dev` (the LV, at least `layout.store_size()` long): reads its map,
    /// or writes a new header and an empty map on a new LV (which reads zeros). A header
    /// for another file or version is refused.
    pub fn open(
        dev: File,
        layout: Layout,
        pinned: &str,
        source: &'s dyn Source,
        bound: Duration,
    ) -> io::Result<Store<'s>> {
        let want = header(&layout, pinned);
        let mut got = vec![0u8; HEADER as usize];
        dev.read_exact_at(&mut got, layout.map_at())?;
        let words = layout.pieces().div_ceil(64) as usize;
        let mut have = vec![0u64; words];
        if got.iter().all(|b| *b == 0) {
            dev.write_all_at(&want, layout.map_at())?;
            dev.sync_data()?;
        } else if got != want {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the store's header is for another file, version or piece size",
            ));
        } else {
            let mut map = vec![0u8; layout.bitmap_len() as usize];
            dev.read_exact_at(&mut map, layout.bitmap_at())?;
            for (i, w) in have.iter_mut().enumerate() {
                let mut b = [0u8; 8];
                for (j, byte) in b.iter_mut().enumerate() {
                    *byte = map.get(i * 8 + j).copied().unwrap_or(0);
                }
                *w = u64::from_le_bytes(b);
            }
            // Bits past the last piece mean nothing.
            let n = layout.pieces();
            if !n.is_multiple_of(64) {
                if let Some(last) = have.last_mut() {
                    *last &= (1u64 << (n % 64)) - 1;
                }
            }
        }
        let present = have.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(Store {
            dev,
            layout,
            source,
            state: Mutex::new(State {
                durable: have.clone(),
                have,
                pending: Vec::new(),
                flying: HashSet::new(),
                failed: HashMap::new(),
                present,
            }),
            changed: Condvar::new(),
            bound,
            fetched: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            commit: Mutex::new(()),
            stop: AtomicBool::new(false),
            last_error: Mutex::new(None),
        })
    }

    pub fn counts(&self) -> Counts {
        let st = self.state.lock().expect("not poisoned");
        Counts {
            present: st.present,
            pieces: self.layout.pieces(),
            fetched: self.fetched.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
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
        // Answered from what this read fetched when that covers it (no read back).
        if let Some((from, data)) = self.ensure(first, last, true)? {
            let at = (offset - from) as usize;
            if let Some(mine) = data.get(at..at + inside) {
                buf[..inside].copy_from_slice(mine);
                return Ok(());
            }
        }
        self.dev
            .read_exact_at(&mut buf[..inside], offset)
            .map_err(|e| RangeError::Refused(format!("reading the local store: {e}")))
    }

    /// Makes pieces `first..=last` present: fetches the missing ones nobody fetches (in
    /// runs, extended ahead when sequential reads continue), waits for the others.
    /// Returns the last run this call fetched (its first byte, its bytes).
    fn ensure(
        &self,
        first: u64,
        last: u64,
        reader: bool,
    ) -> Result<Option<(u64, Vec<u8>)>, RangeError> {
        let mut fetched = None;
        let began = Instant::now();
        let piece = self.layout.piece;
        // Whether this read was counted in the sequential streak (once, not per pass).
        let mut counted = false;
        loop {
            let mut st = self.state.lock().expect("not poisoned");
            let mut claimed: Vec<(u64, u64)> = Vec::new();
            let mut waiting = false;
            for p in first..=last {
                if bit(&st.have, p) {
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
                            bit(&st.have, p) || st.flying.contains(&p)
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
                    {
                        st.flying.insert(p);
                        *n += 1;
                        p += 1;
                        extra -= 1;
                    }
                }
            }
            if claimed.is_empty() && !waiting {
                return Ok(fetched);
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
                match self.fetch_run(start, n) {
                    Ok(data) => fetched = Some((start * piece, data)),
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

    /// Fetches pieces `start..start+n` (claimed by the caller), writes them, and tells
    /// the waiters; returns their bytes.
    fn fetch_run(&self, start: u64, n: u64) -> Result<Vec<u8>, RangeError> {
        let piece = self.layout.piece;
        let from = start * piece;
        let len = ((start + n) * piece).min(self.layout.length) - from;
        let mut buf = vec![0u8; len as usize];
        self.requests.fetch_add(1, Ordering::Relaxed);
        let got = self.source.read(from, &mut buf).and_then(|_| {
            self.fetched.fetch_add(len, Ordering::Relaxed);
            crate::crash::point("lazy.fetched");
            self.dev
                .write_all_at(&buf, from)
                .map_err(|e| RangeError::Refused(format!("writing the local store: {e}")))
        });
        crate::crash::point("lazy.written");
        let mut st = self.state.lock().expect("not poisoned");
        for p in start..start + n {
            st.flying.remove(&p);
            match &got {
                Ok(()) => {
                    st.failed.remove(&p);
                    if !bit(&st.have, p) {
                        set(&mut st.have, p);
                        st.present += 1;
                        st.pending.push(p);
                    }
                }
                Err(e) => {
                    st.failed.insert(p, (Instant::now(), e.clone()));
                }
            }
        }
        drop(st);
        self.changed.notify_all();
        *self.last_error.lock().expect("not poisoned") = got.as_ref().err().cloned();
        got.map(|()| buf)
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
        let (blocks, durable) = {
            let mut st = self.state.lock().expect("not poisoned");
            let mut blocks: Vec<u64> = pending.iter().map(|p| p / 8 / MAP_BLOCK).collect();
            blocks.sort_unstable();
            blocks.dedup();
            for p in &pending {
                set(&mut st.durable, *p);
            }
            (blocks, st.durable.clone())
        };
        let bytes: Vec<u8> = durable.iter().flat_map(|w| w.to_le_bytes()).collect();
        for b in blocks {
            let mut block = vec![0u8; MAP_BLOCK as usize];
            let from = (b * MAP_BLOCK) as usize;
            let to = (from + MAP_BLOCK as usize).min(bytes.len());
            block[..to - from].copy_from_slice(&bytes[from..to]);
            self.dev
                .write_all_at(&block, self.layout.bitmap_at() + b * MAP_BLOCK)?;
        }
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
    /// (Ok(false)) when `go_on` says so. Ok(true) once everything is here and marked.
    pub fn fill(
        &self,
        rate: u64,
        told: &mut dyn FnMut(Counts) -> bool,
    ) -> Result<bool, RangeError> {
        let began = Instant::now();
        let mut sent = 0u64;
        let per_run = (MAX_RUN / self.layout.piece).max(1);
        let pieces = self.layout.pieces();
        let mut p = 0;
        while p < pieces {
            let last = (p + per_run - 1).min(pieces - 1);
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
        self.mark_written()
            .map_err(|e| RangeError::Refused(format!("marking the local store: {e}")))?;
        Ok(self.complete())
    }

    /// The SHA-256 of the file's bytes as the store holds them (all present).
    pub fn sha256(&self) -> io::Result<String> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 4 << 20];
        let mut at = 0;
        while at < self.layout.length {
            let n = (self.layout.length - at).min(buf.len() as u64) as usize;
            self.dev.read_exact_at(&mut buf[..n], at)?;
            h.update(&buf[..n]);
            at += n as u64;
        }
        Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// The pieces a store's map on `dev` marks present, read without opening the store.
#[cfg(test)]
pub fn present_in(dev: &File, layout: &Layout) -> io::Result<u64> {
    let mut map = vec![0u8; layout.bitmap_len() as usize];
    dev.read_exact_at(&mut map, layout.bitmap_at())?;
    let mut n: u64 = map.iter().map(|b| u64::from(b.count_ones())).sum();
    // Bits past the last piece mean nothing (a store never sets them).
    n = n.min(layout.pieces());
    Ok(n)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
