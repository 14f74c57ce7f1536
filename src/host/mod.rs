//! Host adapters: thin, typed wrappers over what thinsr runs or opens on the host. Each
//! knows one tool or kernel interface and nothing of SRs or VDIs; the engine composes them.

pub mod daemon;
pub mod dm;
pub mod dmevent;
pub mod fdpass;
pub mod http;
pub mod listener;
pub mod lock;
pub mod loopdev;
pub mod lvm;
pub mod mirror;
pub mod mount;
pub mod nbd;
pub mod nbd_client;
pub mod nbd_netlink;
mod nbd_proto;
pub mod nbd_server;
pub mod probe;
pub mod qemu;
pub mod rundir;
pub mod s3;
pub mod ssh;
pub mod syslog;
pub mod thin;
pub mod tool;
pub mod trust;
pub mod version;
pub mod zero;
