//! device-mapper, through the `devicemapper` crate: what LVM does not tell us exactly.

use std::str::FromStr;

use devicemapper::{DevId, DmFlags, DmName, DmOptions, ThinPoolStatus, ThinPoolStatusSummary, DM};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::units::Bytes;

/// The dm name LVM gives `vg/lv`: dashes doubled, joined by one dash.
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// The kernel's view of a thin pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    /// rw, ro, out_of_data_space, error or fail.
    pub state: String,
    pub needs_check: bool,
    pub data_used: Bytes,
    pub data_total: Bytes,
    pub metadata_used: Bytes,
    pub metadata_total: Bytes,
    pub transaction_id: u64,
    pub when_full: String,
}

pub fn open() -> Result<DM> {
    DM::new().map_err(|e| Error::DmFailed(format!("cannot open /dev/mapper/control: {e}")))
}

/// The dm device carrying the thin-pool target of `vg/pool` and its status line, or None
/// when the pool is not active. With thin volumes LVM stacks the target under `-tpool`; an
/// unused pool may carry it itself.
pub fn pool_target(dm: &DM, vg: &str, pool: &str) -> Option<(String, String)> {
    [format!("{}-tpool", dm_name(vg, pool)), dm_name(vg, pool)]
        .into_iter()
        .find_map(|name| {
            let (_, table) = dm
                .table_status(
                    &DevId::Name(DmName::new(&name).ok()?),
                    DmOptions::default().set_flags(DmFlags::DM_NOFLUSH),
                )
                .ok()?;
            let (_, _, target, params) = table.into_iter().next()?;
            (target == "thin-pool").then_some((name, params))
        })
}

/// Status of the pool `vg/pool`, or None when it is not active.
pub fn pool_status(vg: &str, pool: &str) -> Result<Option<PoolStatus>> {
    pool_target(&open()?, vg, pool)
        .map(|(_, params)| parse_pool_status(&params))
        .transpose()
}

fn parse_pool_status(params: &str) -> Result<PoolStatus> {
    let status = ThinPoolStatus::from_str(params)
        .map_err(|e| Error::DmFailed(format!("unreadable thin-pool status '{params}': {e}")))?;
    // Data counts stay in data blocks here: the block size is not in the status line
    // (`with_block_size` scales them). Metadata blocks are always 4 KiB.
    Ok(match status {
        ThinPoolStatus::Working(w) => {
            let meta_block = 4096u64;
            PoolStatus {
                state: match w.summary {
                    ThinPoolStatusSummary::Good => "rw",
                    ThinPoolStatusSummary::ReadOnly => "ro",
                    ThinPoolStatusSummary::OutOfSpace => "out_of_data_space",
                }
                .into(),
                needs_check: w.needs_check,
                data_used: Bytes(*w.usage.used_data),
                data_total: Bytes(*w.usage.total_data),
                metadata_used: Bytes(*w.usage.used_meta * meta_block),
                metadata_total: Bytes(*w.usage.total_meta * meta_block),
                transaction_id: w.transaction_id,
                when_full: match w.no_space_policy {
                    devicemapper::ThinPoolNoSpacePolicy::Error => "error",
                    devicemapper::ThinPoolNoSpacePolicy::Queue => "queue",
                }
                .into(),
            }
        }
        ThinPoolStatus::Error => failed("error"),
        ThinPoolStatus::Fail => failed("fail"),
    })
}

fn failed(state: &str) -> PoolStatus {
    PoolStatus {
        state: state.into(),
        needs_check: false,
        data_used: Bytes(0),
        data_total: Bytes(0),
        metadata_used: Bytes(0),
        metadata_total: Bytes(0),
        transaction_id: 0,
        when_full: String::new(),
    }
}

impl PoolStatus {
    /// What is wrong with the pool, as "out_of_data_space, needs_check"; None when it is a
    /// healthy read-write pool.
    pub fn trouble(&self) -> Option<String> {
        (self.state != "rw" || self.needs_check).then(|| {
            format!(
                "{}{}",
                self.state,
                if self.needs_check {
                    ", needs_check"
                } else {
                    ""
                }
            )
        })
    }

    /// Data counts come in blocks; scale them to bytes once the block size is known.
    pub fn with_block_size(mut self, block: Bytes) -> PoolStatus {
        self.data_used = Bytes(self.data_used.0 * block.0);
        self.data_total = Bytes(self.data_total.0 * block.0);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_dashes() {
        assert_eq!(dm_name("vg", "pool"), "vg-pool");
        assert_eq!(dm_name("my-vg", "thin-pool"), "my--vg-thin--pool");
    }

    #[test]
    fn parses_status_line() {
        let s =
            parse_pool_status("1 113/1024 10/16384 - rw discard_passdown queue_if_no_space - 256")
                .unwrap()
                .with_block_size(Bytes(65536));
        assert_eq!(s.state, "rw");
        assert_eq!(s.data_used, Bytes(10 * 65536));
        assert_eq!(s.data_total, Bytes(16384 * 65536));
        assert_eq!(s.metadata_used, Bytes(113 * 4096));
        assert_eq!(s.when_full, "queue");
        assert!(!s.needs_check);
        let s = parse_pool_status("2 1/1024 16384/16384 - out_of_data_space discard_passdown error_if_no_space needs_check 256").unwrap();
        assert_eq!(s.state, "out_of_data_space");
        assert!(s.needs_check);
        assert_eq!(s.when_full, "error");
        assert_eq!(parse_pool_status("Fail").unwrap().state, "fail");
        assert!(parse_pool_status("garbage here").is_err());
    }
}
