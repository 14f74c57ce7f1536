//! Which Xen domains use a volume through the datapath, counted as the IDL asks ("every
//! function takes a domain parameter which allows the implementation to track how many
//! domains are currently using the volume"): the device stays while any domain has it
//! attached, goes with the last one's detach, and a volume is active read-write for one
//! domain at a time, or read-only for any number, never both (`activate_readonly`).
//!
//! Kept per volume under /run/thinsr/domains (a reboot forgets every attachment, as it
//! should), changed under a lock of the volume's own so that xapi's concurrent method
//! calls for one volume take turns.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::host::{lock, rundir};

const DIR: &str = "/run/thinsr/domains";

/// What one domain does with the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Use {
    Attached,
    ReadWrite,
    ReadOnly,
}

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Domains {
    pub domains: BTreeMap<String, Use>,
}

/// What a change asks of the device.
#[derive(Debug, PartialEq, Eq)]
pub enum Device {
    /// Nothing to do.
    Keep,
    /// The last domain let go: detach it.
    Release,
    /// Read-only activations begin (true) or end (false).
    ReadOnly(bool),
}

fn path(sr: &str, vdi: &str) -> Result<PathBuf> {
    if !rundir::safe_name(sr) || !rundir::safe_name(vdi) {
        return Err(Error::InvalidArgument(format!(
            "volume {sr}/{vdi} cannot name a datapath record"
        )));
    }
    Ok(PathBuf::from(DIR).join(sr).join(format!("{vdi}.json")))
}

/// A storage migration's receiving end: xapi names it "MIR" and 6 hex digits
/// (xapi_vm_migrate.ml `mirror_vm`). It writes the volume while the VM's domain on this
/// host comes up on it (attach, activate) and leaves with its own detach, so it never
/// clashes with the VM's writer, nor the VM's with it.
pub fn mirror_receiver(domain: &str) -> bool {
    domain.len() == 9
        && domain.starts_with("MIR")
        && domain[3..].chars().all(|c| c.is_ascii_hexdigit())
}

impl Domains {
    fn active(&self, except: &str, mode: Use) -> Option<&str> {
        let mirror = mirror_receiver(except);
        self.domains
            .iter()
            .find(|(d, u)| d.as_str() != except && **u == mode && !(mirror || mirror_receiver(d)))
            .map(|(d, _)| d.as_str())
    }

    pub fn attach(&mut self, domain: &str) -> Device {
        self.domains.entry(domain.into()).or_insert(Use::Attached);
        Device::Keep
    }

    /// `activate` (read-write) or `activate_readonly`.
    pub fn activate(&mut self, domain: &str, mode: Use, volume: &str) -> Result<Device> {
        let clash = match mode {
            Use::ReadWrite => self
                .active(domain, Use::ReadWrite)
                .or(self.active(domain, Use::ReadOnly)),
            _ => self.active(domain, Use::ReadWrite),
        };
        if let Some(other) = clash {
            return Err(Error::VdiAttached {
                vdi: volume.into(),
                device: format!(
                    "active {} for domain {other}; a volume is active read-write for one domain at a time, or read-only for any number",
                    match self.domains[other] {
                        Use::ReadOnly => "read-only",
                        _ => "read-write",
                    }
                ),
            });
        }
        let was_ro = self.any(Use::ReadOnly);
        self.domains.insert(domain.into(), mode);
        Ok(match (was_ro, self.any(Use::ReadOnly)) {
            (false, true) => Device::ReadOnly(true),
            _ => Device::Keep,
        })
    }

    pub fn deactivate(&mut self, domain: &str) -> Device {
        let was_ro = self.any(Use::ReadOnly);
        if let Some(u) = self.domains.get_mut(domain) {
            *u = Use::Attached;
        }
        match (was_ro, self.any(Use::ReadOnly)) {
            (true, false) => Device::ReadOnly(false),
            _ => Device::Keep,
        }
    }

    /// The domain lets go. With no record at all (thinsr restarted, or a detach xapi
    /// repeats), the device goes: detach must clean up whatever is left.
    pub fn detach(&mut self, domain: &str) -> Device {
        let was_ro = self.any(Use::ReadOnly);
        self.domains.remove(domain);
        if self.domains.is_empty() {
            Device::Release
        } else if was_ro && !self.any(Use::ReadOnly) {
            Device::ReadOnly(false)
        } else {
            Device::Keep
        }
    }

    /// Some domain has the volume active read-only: its device is read-only meanwhile.
    pub fn read_only_active(&self) -> bool {
        self.any(Use::ReadOnly)
    }

    fn any(&self, mode: Use) -> bool {
        self.domains.values().any(|u| *u == mode)
    }
}

/// Runs `f` on the volume's record under its lock, then saves it (or removes it when no
/// domain is left).
pub fn with<T>(sr: &str, vdi: &str, f: impl FnOnce(&mut Domains) -> Result<T>) -> Result<T> {
    let path = path(sr, vdi)?;
    let _held = lock::acquire(&format!("{sr}.{vdi}.datapath"), "the volume's datapath")?;
    let mut d: Domains = rundir::read(&path, 64 << 10)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let out = f(&mut d)?;
    if d.domains.is_empty() {
        let _ = std::fs::remove_file(&path);
    } else {
        let text = serde_json::to_vec(&d).map_err(|e| {
            Error::InvalidArgument(format!("cannot encode {}: {e}", path.display()))
        })?;
        rundir::write(&path, &text)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_goes_with_the_last_domain_and_modes_never_mix() {
        let mut d = Domains::default();
        assert_eq!(d.attach("1"), Device::Keep);
        assert_eq!(d.attach("2"), Device::Keep);
        assert_eq!(
            d.activate("1", Use::ReadOnly, "v").unwrap(),
            Device::ReadOnly(true)
        );
        assert_eq!(d.activate("2", Use::ReadOnly, "v").unwrap(), Device::Keep);
        // Read-write while others read: refused, naming who.
        d.attach("3");
        let e = d.activate("3", Use::ReadWrite, "v").unwrap_err();
        assert_eq!(e.code(), "VDI_ATTACHED");
        assert!(e.to_string().contains("read-only"), "{e}");
        assert_eq!(d.detach("1"), Device::Keep);
        assert_eq!(d.deactivate("2"), Device::ReadOnly(false));
        assert_eq!(d.activate("3", Use::ReadWrite, "v").unwrap(), Device::Keep);
        // A second writer is refused; the same domain again is fine (idempotent).
        assert!(d.activate("2", Use::ReadWrite, "v").is_err());
        assert!(d.activate("2", Use::ReadOnly, "v").is_err());
        assert_eq!(d.activate("3", Use::ReadWrite, "v").unwrap(), Device::Keep);
        assert_eq!(d.detach("2"), Device::Keep);
        assert_eq!(d.detach("3"), Device::Release);
        // A detach with no record releases (cleanup after a restart).
        assert_eq!(Domains::default().detach("7"), Device::Release);
        assert!(path("sr", "../x").is_err() && path("s r", "x").is_err());
    }

    #[test]
    fn a_mirror_receiver_and_the_vms_domain_write_one_volume_in_turn() {
        let mut d = Domains::default();
        // The migration's MIR domain attaches and activates the blank leaf ...
        assert_eq!(d.attach("MIR0a1b2c"), Device::Keep);
        d.activate("MIR0a1b2c", Use::ReadWrite, "v").unwrap();
        // ... the VM's domain on this host comes up on it before MIR lets go ...
        d.attach("7");
        d.activate("7", Use::ReadWrite, "v").unwrap();
        // ... but a second VM is still refused, and so is a name that only looks alike.
        d.attach("8");
        assert!(d.activate("8", Use::ReadWrite, "v").is_err());
        assert!(!mirror_receiver("MIRROR") && !mirror_receiver("MIR0a1b2g"));
        assert_eq!(d.detach("8"), Device::Keep);
        // Each leaves with its own detach; the device goes with the last.
        assert_eq!(d.deactivate("MIR0a1b2c"), Device::Keep);
        assert_eq!(d.detach("MIR0a1b2c"), Device::Keep);
        assert_eq!(d.detach("7"), Device::Release);
    }
}
