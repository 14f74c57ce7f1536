//! Waiting for device-mapper events. dm-thin raises one when a pool's free data falls to
//! its low-water mark, and when it runs out of space; the kernel also counts every device
//! created, resumed or removed. Since dm ioctl 4.37 (Linux 4.13) the control device can be
//! polled for any of them, so one wait covers every pool, with no thread per device.

use std::os::fd::AsFd;
use std::time::Duration;

use devicemapper::DM;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::error::{Error, Result};
use crate::host::dm::{open, pool_table};
use crate::ids::{LvName, VgName};
use crate::units::DataBlocks;

pub struct Events {
    dm: DM,
}

impl Events {
    pub fn open() -> Result<Events> {
        Ok(Events { dm: open()? })
    }

    /// Events from now on wake `wait`. Arm before looking at the pools, so that nothing
    /// that happens while they are looked at is missed.
    pub fn arm(&self) -> Result<()> {
        self.dm.arm_poll().map(drop).map_err(|e| {
            Error::DmFailed(format!(
                "cannot wait for device-mapper events (needs Linux 4.13 or later): {e}"
            ))
        })
    }

    /// Waits for an event since the last `arm`, at most `timeout`. True on an event.
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(self.dm.file().as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(n) => Ok(n > 0),
            // A signal (SIGTERM): the caller looks at its cancel flag.
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(Error::DmFailed(format!("polling /dev/mapper/control: {e}"))),
        }
    }

    /// The low-water mark (in data blocks) of the live table of pool `vg/pool`, None when
    /// the pool is not active. LVM sets it at each table load from its threshold; a table
    /// loaded by someone else (boot-time activation) has 0, which raises no event.
    pub fn low_water(&self, vg: &VgName, pool: &LvName) -> Option<DataBlocks> {
        pool_table(&self.dm, vg, pool).and_then(|(_, params)| low_water_of(&params))
    }
}

/// The live low-water mark of pool `vg/pool` (data blocks), None when it is not active.
pub fn pool_low_water(vg: &VgName, pool: &LvName) -> Option<DataBlocks> {
    Events::open().ok()?.low_water(vg, pool)
}

/// The low-water mark (data blocks) LVM gives a pool of `blocks` data blocks for
/// threshold `t` (lvm2 lib/thin/thin.c: thresholds below 50 count as 50, 100 means none).
pub fn lvm_mark(blocks: DataBlocks, t: u8) -> DataBlocks {
    if t >= 100 {
        DataBlocks(0)
    } else {
        DataBlocks(blocks.0 * (100 - u64::from(t.max(50))) / 100)
    }
}

/// The threshold to pass LVM so that it computes the mark the live table already has:
/// a thin volume's lvcreate or lvremove reloads the pool's table, and a table that differs
/// from the live one only in its mark is loaded but, on that path, left unresumed (seen
/// with lvm2 2.03.16: the pool's next lvextend then fails to resume). `wanted` when the
/// live table has its mark, 100 for a table without one.
pub fn threshold_for(blocks: DataBlocks, mark: DataBlocks, wanted: u8) -> u8 {
    if lvm_mark(blocks, wanted) == mark {
        return wanted;
    }
    if mark.0 == 0 {
        return 100;
    }
    (50..100)
        .find(|&t| lvm_mark(blocks, t) == mark)
        .unwrap_or(wanted)
}

/// A thin-pool table line: `<metadata dev> <data dev> <block size> <low water mark> ...`.
fn low_water_of(params: &str) -> Option<DataBlocks> {
    params
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
        .map(DataBlocks)
}

#[cfg(test)]
mod tests {
    #[test]
    fn thresholds_reproduce_the_live_mark() {
        use super::{lvm_mark, threshold_for};
        use crate::units::DataBlocks as B;
        assert_eq!(lvm_mark(B(32768), 80), B(6553)); // as seen in `dmsetup table`
        assert_eq!(lvm_mark(B(32768), 100), B(0));
        assert_eq!(lvm_mark(B(32768), 10), lvm_mark(B(32768), 50));
        assert_eq!(threshold_for(B(32768), B(6553), 80), 80);
        assert_eq!(threshold_for(B(32768), B(0), 80), 100);
        assert_eq!(threshold_for(B(32768), lvm_mark(B(32768), 70), 80), 70);
        assert_eq!(threshold_for(B(32768), B(12345), 80), 80);
    }

    #[test]
    fn reads_the_low_water_mark_of_a_pool_table() {
        assert_eq!(
            super::low_water_of("254:0 254:1 128 6553 0"),
            Some(crate::units::DataBlocks(6553))
        );
        assert_eq!(
            super::low_water_of("254:0 254:1 128 0 1 skip_block_zeroing"),
            Some(crate::units::DataBlocks(0))
        );
        assert_eq!(super::low_water_of("254:0 254:1"), None);
    }
}
