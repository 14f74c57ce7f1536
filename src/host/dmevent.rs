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
    pub fn low_water(&self, vg: &str, pool: &str) -> Option<u64> {
        pool_table(&self.dm, vg, pool).and_then(|(_, params)| low_water_of(&params))
    }
}

/// A thin-pool table line: `<metadata dev> <data dev> <block size> <low water mark> ...`.
fn low_water_of(params: &str) -> Option<u64> {
    params.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_low_water_mark_of_a_pool_table() {
        assert_eq!(super::low_water_of("254:0 254:1 128 6553 0"), Some(6553));
        assert_eq!(
            super::low_water_of("254:0 254:1 128 0 1 skip_block_zeroing"),
            Some(0)
        );
        assert_eq!(super::low_water_of("254:0 254:1"), None);
    }
}
