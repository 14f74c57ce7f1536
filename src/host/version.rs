//! `thinsr --version`: thinsr's version and those of the tools it runs, or which are missing.

use crate::host::tool;

/// One tool: the command that prints its version, and how to pick the number out.
struct Probe {
    name: &'static str,
    args: &'static [&'static str],
    /// What thinsr needs it for, said when it is missing.
    needed_for: &'static str,
}

const PROBES: &[Probe] = &[
    Probe {
        name: "lvm",
        args: &["version"],
        needed_for: "everything",
    },
    Probe {
        name: "thin_check",
        args: &["--version"],
        needed_for: "pool checks and exports (thin-provisioning-tools)",
    },
    Probe {
        name: "qemu-nbd",
        args: &["--version"],
        needed_for: "templates (qemu-utils; qemu-dp on XCP-ng)",
    },
    Probe {
        name: "qemu-img",
        args: &["--version"],
        needed_for: "templates, import and export (qemu-utils; qemu-dp on XCP-ng)",
    },
];

/// The version line of a tool's output: lvm's "LVM version: 2.03.16(2) ...", thin_check's
/// bare "0.9.0", qemu-nbd's "qemu-nbd 7.2.x (...)".
pub fn version_in(output: &str) -> Option<String> {
    let line = output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("LVM version:"))
        .or_else(|| output.lines().map(str::trim).find(|l| !l.is_empty()))?;
    let v = line.trim_start_matches("LVM version:").trim();
    // qemu-nbd names itself as it was run: "qemu-nbd 7.2" or "/usr/lib64/.../qemu-nbd 7.0".
    let v = match v.split_once(' ') {
        Some((first, rest)) if first.ends_with("qemu-nbd") => rest.trim(),
        _ => v,
    };
    let v = v.strip_prefix("qemu-img version").unwrap_or(v).trim();
    Some(v.to_string())
}

pub fn long() -> String {
    let mut out = env!("CARGO_PKG_VERSION").to_string();
    for p in PROBES {
        let found = tool::output(p.name, p.args)
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| version_in(&String::from_utf8_lossy(&o.stdout)));
        let (path, how) = tool::locate(p.name);
        out.push_str(&match found {
            Some(v) => format!("\n{}: {v} ({}, from {how})", p.name, path.display()),
            None => format!("\n{}: not found (needed for {})", p.name, p.needed_for),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_version_line() {
        let lvm = "  LVM version:     2.03.16(2) (2022-05-18)\n  Library version: 1.02.185 (2022-05-18)\n  Driver version:  4.47.0\n";
        assert_eq!(version_in(lvm).unwrap(), "2.03.16(2) (2022-05-18)");
        assert_eq!(version_in("0.9.0\n").unwrap(), "0.9.0");
        let nbd = "qemu-nbd 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nWritten by Anthony Liguori.\n";
        assert_eq!(
            version_in(nbd).unwrap(),
            "7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"
        );
        let dp = "/usr/lib64/qemu-dp/bin/qemu-nbd 7.0.0\n";
        assert_eq!(version_in(dp).unwrap(), "7.0.0");
        assert_eq!(
            version_in("qemu-img version 7.2.22 (Debian)\n").unwrap(),
            "7.2.22 (Debian)"
        );
        assert_eq!(version_in(""), None);
    }
}
