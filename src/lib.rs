//! thinsr: thin-provisioned local VM-disk storage on LVM and dm-thin.

pub mod aligned;
pub mod cache;
pub mod cancel;
pub mod check;
pub mod cli;
pub mod cmd;
pub mod complete;
pub mod crash;
pub mod datapath;
pub mod dm;
pub mod docs;
pub mod error;
pub mod export;
#[cfg(test)]
mod fuzz;
pub mod known;
pub mod lock;
pub mod loopdev;
pub mod lvm;
pub mod meta;
pub mod names;
pub mod nbd;
pub mod pool;
pub mod probe;
pub mod progress;
pub mod registry;
pub mod sr;
pub mod stats;
pub mod template;
pub mod thin;
pub mod tool;
pub mod units;
pub mod vdi;
pub mod version;
pub mod xapi;
pub mod zero;
