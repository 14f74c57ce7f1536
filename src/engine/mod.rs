//! The engine: everything thinsr does to SRs, VDIs, templates and pools. It acts through
//! the host adapters and returns data; printing is the CLI's and the xapi plugin's.

pub mod cache;
pub mod cbt;
pub mod changes;
pub mod check;
pub mod compose;
pub mod context;
pub mod datapath;
pub mod datapath_nbd;
pub mod export;
pub mod fetch;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod growth;
pub mod hooks;
pub mod import;
pub mod known;
pub mod lazy;
pub mod meta;
pub mod mirror;
pub mod names;
pub mod pool;
pub mod records;
pub mod registry;
pub mod replica;
pub mod serve;
pub mod share;
pub mod sr;
pub mod template;
pub mod usage;
pub mod vdi;
pub mod watch;
