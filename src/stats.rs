//! What a command cost, printed by `-v` and read by the benchmarks: thinsr's own CPU time,
//! and the bytes and CPU time of its metadata reads and writes. Process-wide counters, as
//! the metadata store is used from everywhere and a command is one process.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use nix::sys::resource::{getrusage, UsageWho};
use nix::time::{clock_gettime, ClockId};

static META_READ_BYTES: AtomicU64 = AtomicU64::new(0);
static META_READ_NS: AtomicU64 = AtomicU64::new(0);
static META_WRITE_BYTES: AtomicU64 = AtomicU64::new(0);
static META_WRITE_NS: AtomicU64 = AtomicU64::new(0);

/// CPU time of the calling thread so far.
pub fn thread_cpu() -> Duration {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Counts a metadata read or write of `bytes` that began at thread CPU time `since`.
pub fn metadata(write: bool, bytes: u64, since: Duration) {
    let (b, ns) = if write {
        (&META_WRITE_BYTES, &META_WRITE_NS)
    } else {
        (&META_READ_BYTES, &META_READ_NS)
    };
    b.fetch_add(bytes, Relaxed);
    let spent = thread_cpu().saturating_sub(since);
    ns.fetch_add(u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX), Relaxed);
}

/// User and system CPU time of this process (its children, lvm among them, excluded).
pub fn process_cpu() -> Duration {
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let d = |t: nix::sys::time::TimeVal| {
                Duration::from_micros(t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64)
            };
            d(u.user_time()) + d(u.system_time())
        })
        .unwrap_or_default()
}

/// The `-v` summary line, after the lvm call count.
pub fn summary() -> String {
    let ms = |ns: &AtomicU64| ns.load(Relaxed) as f64 / 1e6;
    format!(
        "metadata read {} B in {:.1} ms CPU, written {} B in {:.1} ms CPU; thinsr's own CPU {:.1} ms",
        META_READ_BYTES.load(Relaxed),
        ms(&META_READ_NS),
        META_WRITE_BYTES.load(Relaxed),
        ms(&META_WRITE_NS),
        process_cpu().as_secs_f64() * 1e3
    )
}
