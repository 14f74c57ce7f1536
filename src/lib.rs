//! thinsr: thin-provisioned local VM-disk storage on LVM and dm-thin.
//!
//! The layers, each a folder (ARCHITECTURE.md is the map):
//! - `cli`: parses the command line and renders what the engine returns;
//! - `xapi`: the SMAPIv3 plugin, the engine's other client;
//! - `engine`: acts on SRs, VDIs, templates and pools and returns data, never printing;
//! - `host`: thin typed adapters to what the host runs (lvm, device-mapper, nbd, loop
//!   devices, qemu-img, the pool-metadata reader, locks);
//! - `image`: raw, VHD and qcow2 bytes, and extent maps.
//!
//! The modules beside them are small and shared by all: the error type, units, crash points,
//! cancellation, progress and cost counters.

pub mod aligned;
pub mod cancel;
pub mod cli;
pub mod crash;
pub mod engine;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod host;
pub mod ids;
pub mod image;
pub mod progress;
pub mod stats;
pub mod units;
pub mod xapi;
