//! How full a pool is, as `sr show` and `pool show` report it: from the kernel while the
//! pool is active (its status counts data blocks, scaled here by the pool's own chunk
//! size), from LVM's percentages otherwise.

use serde::Serialize;

use crate::engine::registry::Entry;
use crate::error::Result;
use crate::host::dm::{self, PoolState, PoolStatus};
use crate::host::lvm::{Lv, Vg, TAG_POOL};
use crate::units::Bytes;

/// The chunk size thinsr gives the pools it makes (and assumes of a pool whose chunk size
/// LVM has not reported).
pub const CHUNK: Bytes = Bytes(64 * 1024);

/// Use of the pool as a fraction, from the kernel when active, else from LVM.
pub(crate) fn usage(lv: &Lv, kernel: Option<&PoolStatus>) -> (f64, f64) {
    match kernel.and_then(kernel_usage) {
        Some(u) => u,
        None => (
            lv.data_percent.unwrap_or(0.0),
            lv.metadata_percent.unwrap_or(0.0),
        ),
    }
}

/// Data and metadata use in percent, as the kernel counts them.
pub(crate) fn kernel_usage(k: &PoolStatus) -> Option<(f64, f64)> {
    k.percent_used()
}

/// The kernel's view of the pool as `sr show` and `pool show` report it: data in bytes.
#[derive(Debug, Clone, Serialize)]
pub struct KernelPool {
    pub state: PoolState,
    pub needs_check: bool,
    pub data_used: Bytes,
    pub data_total: Bytes,
    pub metadata_used: Bytes,
    pub metadata_total: Bytes,
    pub transaction_id: u64,
    pub when_full: String,
}

impl KernelPool {
    /// `k` with its data blocks of `block` bytes each (the pool's chunk size).
    pub(crate) fn of(k: &PoolStatus, block: Bytes) -> KernelPool {
        KernelPool {
            state: k.state,
            needs_check: k.needs_check,
            data_used: k.data_used.bytes(block),
            data_total: k.data_total.bytes(block),
            metadata_used: k.metadata_used,
            metadata_total: k.metadata_total,
            transaction_id: k.transaction_id,
            when_full: k.when_full.clone(),
        }
    }

    pub fn trouble(&self) -> Option<String> {
        dm::trouble(self.state, self.needs_check)
    }
}

/// The pool as `sr show` and `pool show` report it: use from the kernel while the pool is
/// active, from LVM otherwise; an absent pool reads as empty.
pub(crate) fn pool_info(vg: &Vg, e: &Entry) -> Result<PoolInfo> {
    let lv = vg.lv(&e.pool);
    let status = match lv {
        Some(l) if l.active => dm::pool_status(&vg.name, &e.pool)?,
        _ => None,
    };
    let size = lv.map(|l| l.size).unwrap_or_default();
    let metadata_size = lv.and_then(|l| l.metadata_size).unwrap_or_default();
    let (data_percent, metadata_percent) =
        lv.map(|l| usage(l, status.as_ref())).unwrap_or_default();
    // The pool's own chunk size: an adopted pool's need not be thinsr's.
    let block = lv.and_then(|l| l.chunk_size).unwrap_or(CHUNK);
    let kernel = status.map(|k| KernelPool::of(&k, block));
    let (data_used, metadata_used) = match &kernel {
        Some(k) => (k.data_used, k.metadata_used),
        None => (
            Bytes((size.0 as f64 * data_percent / 100.0) as u64),
            Bytes((metadata_size.0 as f64 * metadata_percent / 100.0) as u64),
        ),
    };
    let thin: Vec<&Lv> = vg.lvs.iter().filter(|l| l.pool == e.pool).collect();
    Ok(PoolInfo {
        lv: e.pool.to_string(),
        owned: lv.is_some_and(|l| l.has_tag(TAG_POOL)),
        size,
        data_used,
        data_percent,
        metadata_size,
        metadata_used,
        metadata_percent,
        thin_volumes: thin.len(),
        virtual_total: Bytes(thin.iter().map(|l| l.size.0).sum()),
        zeroes_new_blocks: lv.is_some_and(Lv::zeroes_new_blocks),
        kernel,
    })
}

#[derive(Debug, Serialize)]
pub struct PoolInfo {
    pub lv: String,
    /// False when the admin's own pool was adopted.
    pub owned: bool,
    pub size: Bytes,
    pub data_used: Bytes,
    pub data_percent: f64,
    pub metadata_size: Bytes,
    pub metadata_used: Bytes,
    pub metadata_percent: f64,
    pub thin_volumes: usize,
    pub virtual_total: Bytes,
    /// New blocks read as zeros: no VDI sees another's old bytes.
    pub zeroes_new_blocks: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelPool>,
}

impl PoolInfo {
    /// Virtual size of all thin volumes over the pool's size.
    pub fn overcommit(&self) -> f64 {
        if self.size.0 > 0 {
            self.virtual_total.0 as f64 / self.size.0 as f64
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{DataBlocks, GIB};

    fn lv(size: u64) -> Lv {
        Lv {
            data_percent: Some(50.0),
            metadata_percent: Some(10.0),
            ..crate::engine::fixtures::lv("pool", size, &[], "")
        }
    }

    #[test]
    fn usage_prefers_the_kernel() {
        let pool = lv(GIB);
        assert_eq!(usage(&pool, None), (50.0, 10.0));
        let k = PoolStatus {
            state: PoolState::ReadWrite,
            needs_check: false,
            data_used: DataBlocks(900),
            data_total: DataBlocks(1000),
            metadata_used: Bytes(1),
            metadata_total: Bytes(4),
            transaction_id: 1,
            when_full: "queue".into(),
        };
        assert_eq!(usage(&pool, Some(&k)), (90.0, 25.0));
    }
}
