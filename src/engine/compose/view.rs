//! The view a migration's leaf gives its VM until `Volume.compose` (issue 42): the
//! parent's data, the mirrored writes over it, the VM's own writes over those, to the
//! byte. xenopsd activates the leaf for the VM and unpauses it before the source's
//! teardown calls compose, and the leaf's thin LV knows only which 64 KiB blocks were
//! written, not which bytes: a 4 KiB write into a new block reads back with 60 KiB of
//! zeros where the parent has data. So the volume's NBD server (`datapath_nbd`) serves
//! this view to a kernel NBD device under the VM's device, keeping the byte ranges
//! written (the import's log, then every write through here) and reading:
//!
//! - written ranges from the leaf's own LV;
//! - the rest from the parent, which thinsr learns only when compose names it: such a
//!   read waits for it (`WAIT`, then EIO), never answering zeros.
//!
//! Compose makes a thin snapshot of the parent and hands it here (`switch`): the written
//! ranges are copied onto it while the VM goes on (the writes meanwhile noted), then,
//! with requests held for the copy of those last writes, the snapshot becomes the whole
//! disk: it is recorded as landed (`landed` file: from here on the compose only goes
//! forward) and every request goes to it. Compose then points the VM's device at the
//! snapshot's own device, and the VM's I/O is in the kernel again: the user-space hop
//! lasts from the VM's start on this host to the end of compose.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::aligned::AlignedBuf;
use crate::host::nbd_server::Layered;
use crate::host::rundir;
use crate::image::extent::{self, Extent, ExtentSet};

/// The message a connection for the view is passed with, before the leaf's device path.
pub const LANDING: &[u8] = b"thinsr-landing\0";
/// The message compose's control connection is passed with, before the snapshot's path.
pub const SWITCH: &[u8] = b"thinsr-compose\0";
/// The message that arms the view (its reads of the parent's data wait from then on).
pub const ARM: &[u8] = b"thinsr-arm\0";
/// How long a read of the parent's data waits for compose to name the parent.
pub const WAIT: Duration = Duration::from_secs(120);
/// The largest piece copied at once.
const PIECE: u64 = 1 << 20;

#[derive(Default)]
struct State {
    /// The compose's snapshot of the parent, once compose named it.
    parent: Option<(PathBuf, Arc<Disk>)>,
    /// Ranges written while the first copy runs.
    dirty: Option<ExtentSet>,
    switching: bool,
    /// The snapshot holds everything: every request goes to it.
    direct: bool,
}

pub struct View {
    lower: Disk,
    /// The leaf's device as an export names it (not read through).
    lower_file: File,
    /// The log of written ranges (the import's, appended to): what an offline compose
    /// reads if this process is gone.
    log: File,
    written: Mutex<ExtentSet>,
    state: Mutex<State>,
    changed: Condvar,
    /// Requests hold it shared; the switch holds it alone for its last copy.
    gate: RwLock<()>,
    landed: PathBuf,
    wait: Duration,
    /// Until armed, a read of the parent's data fails at once instead of waiting: the
    /// kernel reads a new NBD device's partition table when it is first opened, and that
    /// open is thinsr's own (`live::land`) or device-mapper's table load in the VM's
    /// activate, which must not wait for a compose that comes only after the VM runs.
    armed: std::sync::atomic::AtomicBool,
    pub size: u64,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// A device read and written around the page cache (O_DIRECT): the leaf and the
/// snapshot are also reached through device-mapper by other paths (the import through the
/// VM's device, the VM itself once compose points its device at the snapshot), and a page
/// cached or left dirty here would be read stale, or written back over newer data.
/// Ranges off the 4 KiB grid are read and written as whole blocks around them.
struct Disk {
    file: File,
}

impl Disk {
    fn open(path: &Path) -> io::Result<Disk> {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = File::options()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_DIRECT)
            .open(path);
        // A file system without O_DIRECT (the unit tests' tmpfs) has no other path either.
        let file = match direct {
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => rw(path)?,
            other => other?,
        };
        Ok(Disk { file })
    }

    /// Reads whole blocks: `len` bytes from `offset`, both on the grid.
    fn read_blocks(&self, offset: u64, len: u64) -> io::Result<AlignedBuf> {
        let mut b = AlignedBuf::zeroed(len as usize);
        self.file.read_exact_at(b.as_mut_slice(), offset)?;
        Ok(b)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let (start, len) = crate::aligned::around(offset, buf.len() as u64);
        let b = self.read_blocks(start, len)?;
        let at = (offset - start) as usize;
        buf.copy_from_slice(&b.as_slice()[at..at + buf.len()]);
        Ok(())
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let (start, len) = crate::aligned::around(offset, data.len() as u64);
        let mut b = if (start, len) == (offset, data.len() as u64) {
            AlignedBuf::zeroed(len as usize)
        } else {
            // Off the grid (the kernel sends 512-byte sectors): the blocks around it as
            // they are, so nothing but `data` changes. Two such writes into one block at
            // once could undo each other; a block device's client never sends them.
            self.read_blocks(start, len)?
        };
        let at = (offset - start) as usize;
        b.as_mut_slice()[at..at + data.len()].copy_from_slice(data);
        self.file.write_all_at(&b.as_slice()[..len as usize], start)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn rw(path: &Path) -> io::Result<File> {
    File::options().read(true).write(true).open(path)
}

impl View {
    /// The view of leaf device `lower`, whose writes so far are `written` (read from the
    /// log at `log`); `landed` is where the switch records the snapshot it completed.
    pub fn open(lower: &Path, log: &Path, landed: &Path, written: &[Extent]) -> io::Result<View> {
        let lower_file = File::open(lower)?;
        let size = io::Seek::seek(&mut &lower_file, io::SeekFrom::End(0))?;
        let log = rundir::append(log).map_err(other)?;
        Ok(View {
            lower: Disk::open(lower)?,
            lower_file,
            log,
            written: Mutex::new(ExtentSet::from_extents(written)),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            gate: RwLock::new(()),
            landed: landed.to_path_buf(),
            wait: WAIT,
            armed: std::sync::atomic::AtomicBool::new(false),
            size,
        })
    }

    /// The file of the leaf's own device (an `Export` names one).
    pub fn lower(&self) -> &File {
        &self.lower_file
    }

    /// From now on reads of the parent's data wait for it.
    pub fn arm(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// Makes snapshot `snapshot` (the parent's data) the disk: the written ranges
    /// copied onto it, then every request sent there. Run again, or while another call
    /// runs it, it waits and answers the same.
    pub fn switch(&self, snapshot: &Path) -> io::Result<()> {
        {
            let mut st = self.state();
            while st.switching {
                st = self.changed.wait(st).expect("not poisoned");
            }
            if st.direct {
                return match st.parent.as_ref() {
                    Some((p, _)) if p == snapshot => Ok(()),
                    Some((p, _)) => Err(other(format!(
                        "the view was composed onto {} already",
                        p.display()
                    ))),
                    None => unreachable!("direct without a parent"),
                };
            }
            if st.parent.as_ref().is_none_or(|(p, _)| p != snapshot) {
                st.parent = Some((snapshot.to_path_buf(), Arc::new(Disk::open(snapshot)?)));
            }
            st.switching = true;
            // Readers waiting for the parent go on now.
            self.changed.notify_all();
        }
        let done = self.switch_steps(snapshot);
        let mut st = self.state();
        st.switching = false;
        st.dirty = None;
        self.changed.notify_all();
        done
    }

    fn switch_steps(&self, snapshot: &Path) -> io::Result<()> {
        let parent = self.state().parent.clone().expect("set above").1;
        {
            // No write in flight: each one after this is noted as dirty.
            let _quiet = self.gate.write().expect("not poisoned");
            self.state().dirty = Some(ExtentSet::default());
        }
        let first = self.written.lock().expect("not poisoned").extents();
        copy(&self.lower, &parent, &first)?;
        let _quiet = self.gate.write().expect("not poisoned");
        let dirty = self.state().dirty.take().unwrap_or_default().extents();
        copy(&self.lower, &parent, &dirty)?;
        parent.sync_data()?;
        rundir::write(&self.landed, snapshot.as_os_str().as_encoded_bytes()).map_err(other)?;
        self.state().direct = true;
        Ok(())
    }
}

/// `ranges` copied from `from` to `to`, to the byte.
fn copy(from: &Disk, to: &Disk, ranges: &[Extent]) -> io::Result<()> {
    let mut buf = vec![0u8; PIECE as usize];
    for p in extent::pieces(ranges, PIECE) {
        let b = &mut buf[..p.len as usize];
        from.read_exact_at(b, p.start)?;
        to.write_all_at(b, p.start)?;
    }
    Ok(())
}

impl Layered for View {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let deadline = Instant::now() + self.wait;
        loop {
            let held = self.gate.read().expect("not poisoned");
            let (parent, direct) = {
                let st = self.state();
                (st.parent.as_ref().map(|(_, f)| f.clone()), st.direct)
            };
            if direct {
                let p = parent.expect("direct has a parent");
                return p.read_exact_at(buf, offset);
            }
            let pieces = self
                .written
                .lock()
                .expect("not poisoned")
                .split(offset, buf.len() as u64);
            let needs_parent = pieces.iter().any(|(_, held)| !held);
            match parent {
                None if needs_parent && !self.armed.load(std::sync::atomic::Ordering::SeqCst) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "the parent's data is not known yet, and the view is not armed",
                    ));
                }
                None if needs_parent => {
                    drop(held);
                    let st = self.state();
                    let left = deadline.saturating_duration_since(Instant::now());
                    let (st, _) = self
                        .changed
                        .wait_timeout_while(st, left, |s| s.parent.is_none())
                        .expect("not poisoned");
                    if st.parent.is_none() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the parent's data is not known yet (no compose)",
                        ));
                    }
                }
                parent => {
                    for (e, written) in pieces {
                        let at = (e.start - offset) as usize;
                        let b = &mut buf[at..at + e.len as usize];
                        match (written, &parent) {
                            (true, _) => self.lower.read_exact_at(b, e.start)?,
                            (false, Some(p)) => p.read_exact_at(b, e.start)?,
                            (false, None) => unreachable!("waited for above"),
                        }
                    }
                    return Ok(());
                }
            }
        }
    }

    fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let _held = self.gate.read().expect("not poisoned");
        let len = data.len() as u64;
        let direct = {
            let mut st = self.state();
            if let Some(d) = st.dirty.as_mut() {
                d.insert(offset, len);
            }
            st.direct
                .then(|| st.parent.as_ref().expect("direct has a parent").1.clone())
        };
        if let Some(p) = direct {
            return p.write_all_at(data, offset);
        }
        // Logged before it is written, as the import's writes are; marked written for
        // reads only once the leaf holds it (a read meanwhile gets the parent's bytes,
        // the old ones, never the leaf's zeros).
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&offset.to_be_bytes());
        rec[8..].copy_from_slice(&len.to_be_bytes());
        (&self.log).write_all(&rec)?;
        self.lower.write_all_at(data, offset)?;
        self.written
            .lock()
            .expect("not poisoned")
            .insert(offset, len);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let _held = self.gate.read().expect("not poisoned");
        let direct = {
            let st = self.state();
            st.direct
                .then(|| st.parent.as_ref().expect("direct has a parent").1.clone())
        };
        match direct {
            Some(p) => p.sync_data(),
            None => self.lower.sync_data(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 64 << 10;

    /// A leaf (zeros but for what the import wrote), a parent snapshot (noise), and a view
    /// over them in a directory of its own.
    struct Bed {
        dir: PathBuf,
        parent: Vec<u8>,
        view: View,
    }

    fn bed(name: &str, imported: &[(u64, &[u8])], wait: Duration) -> Bed {
        let dir = std::env::temp_dir().join(format!("thinsr-view-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&dir).ok();
        rundir::private_dir(&dir).unwrap();
        // A thin block holds a write and zeros around it, as dm-thin provisions it.
        let mut leaf = vec![0u8; 4 * BLOCK];
        let mut log = Vec::new();
        for (at, data) in imported {
            leaf[*at as usize..*at as usize + data.len()].copy_from_slice(data);
            log.extend_from_slice(&at.to_be_bytes());
            log.extend_from_slice(&(data.len() as u64).to_be_bytes());
        }
        std::fs::write(dir.join("leaf"), &leaf).unwrap();
        std::fs::write(dir.join("log"), &log).unwrap();
        let parent: Vec<u8> = (0..4 * BLOCK).map(|i| (i % 251) as u8 | 1).collect();
        std::fs::write(dir.join("parent"), &parent).unwrap();
        let written: Vec<Extent> = imported
            .iter()
            .map(|(at, d)| Extent::new(*at, d.len() as u64))
            .collect();
        let mut view = View::open(
            &dir.join("leaf"),
            &dir.join("log"),
            &dir.join("landed"),
            &written,
        )
        .unwrap();
        view.wait = wait;
        Bed { dir, parent, view }
    }

    #[test]
    fn an_unarmed_view_fails_a_read_of_the_parent_at_once() {
        let b = bed("unarmed", &[(100, b"mirror")], Duration::from_secs(30));
        assert_eq!(read(&b.view, 100, 6).unwrap(), b"mirror");
        let started = Instant::now();
        assert_eq!(
            read(&b.view, 0, 512).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        std::fs::remove_dir_all(&b.dir).ok();
    }

    fn read(v: &View, at: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut b = vec![0u8; len];
        v.read_at(&mut b, at).map(|_| b)
    }

    #[test]
    fn written_bytes_are_read_at_once_and_the_rest_waits_for_the_parent_then_fails() {
        let b = bed("wait", &[(100, b"mirror")], Duration::from_millis(200));
        b.view.arm();
        assert_eq!(read(&b.view, 100, 6).unwrap(), b"mirror");
        b.view.write_at(b"vm", 4096).unwrap();
        assert_eq!(read(&b.view, 4096, 2).unwrap(), b"vm");
        // Zeros of the leaf's block are not the parent's data: no answer but an error.
        let started = Instant::now();
        let e = read(&b.view, 0, 200).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
        std::fs::remove_dir_all(&b.dir).ok();
    }

    #[test]
    fn a_read_waiting_for_the_parent_gets_its_bytes_under_the_writes() {
        let b = bed("switch", &[(100, b"mirror")], Duration::from_secs(30));
        b.view.arm();
        b.view.write_at(b"vm", 104).unwrap(); // over the mirror's write
        b.view.write_at(&[0u8; 4], 3 * BLOCK as u64).unwrap(); // zeros are data too
        let mut want = b.parent.clone();
        want[100..106].copy_from_slice(b"mirrvm");
        want[3 * BLOCK..3 * BLOCK + 4].fill(0);
        std::thread::scope(|s| {
            let reader = s.spawn(|| read(&b.view, 0, 2 * BLOCK).unwrap());
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                !reader.is_finished(),
                "answered before the parent was known"
            );
            b.view.switch(&b.dir.join("parent")).unwrap();
            assert!(reader.join().unwrap() == want[..2 * BLOCK]);
        });
        // The snapshot holds the whole disk, is recorded as landed, and takes the writes.
        assert!(std::fs::read(b.dir.join("parent")).unwrap() == want);
        let landed = std::fs::read(b.dir.join("landed")).unwrap();
        assert_eq!(landed, b.dir.join("parent").as_os_str().as_encoded_bytes());
        b.view.write_at(b"after", 200).unwrap();
        want[200..205].copy_from_slice(b"after");
        assert!(read(&b.view, 0, 4 * BLOCK).unwrap() == want);
        assert!(std::fs::read(b.dir.join("parent")).unwrap() == want);
        assert_eq!(
            &std::fs::read(b.dir.join("leaf")).unwrap()[200..205],
            &[0u8; 5]
        );
        // Asked again (a compose run again): the same answer, nothing copied over it.
        b.view.switch(&b.dir.join("parent")).unwrap();
        assert!(b.view.switch(&b.dir.join("leaf")).is_err());
        assert!(std::fs::read(b.dir.join("parent")).unwrap() == want);
        std::fs::remove_dir_all(&b.dir).ok();
    }

    #[test]
    fn writes_during_the_switch_reach_the_snapshot() {
        let b = bed("busy", &[(0, &[7u8; 3000])], Duration::from_secs(30));
        let mut want = b.parent.clone();
        want[..3000].fill(7);
        std::thread::scope(|s| {
            let writer = s.spawn(|| {
                let mut wrote = Vec::new();
                for i in 0..2000u64 {
                    let at = (i * 4099) % (4 * BLOCK as u64 - 8);
                    b.view.write_at(&i.to_le_bytes(), at).unwrap();
                    wrote.push((at, i));
                }
                wrote
            });
            std::thread::sleep(Duration::from_millis(5));
            b.view.switch(&b.dir.join("parent")).unwrap();
            for (at, i) in writer.join().unwrap() {
                want[at as usize..at as usize + 8].copy_from_slice(&i.to_le_bytes());
            }
        });
        assert!(read(&b.view, 0, 4 * BLOCK).unwrap() == want);
        assert!(std::fs::read(b.dir.join("parent")).unwrap() == want);
        std::fs::remove_dir_all(&b.dir).ok();
    }
}
