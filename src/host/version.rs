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
        needed_for: "templates (qemu-utils)",
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
    let v = v.strip_prefix("qemu-nbd").unwrap_or(v).trim();
    Some(v.to_string())
}

pub fn long() -> String {
    let mut out = env!("CARGO_PKG_VERSION").to_string();
    for p in PROBES {
        let found = tool::output(p.name, p.args)
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| version_in(&String::from_utf8_lossy(&o.stdout)));
        out.push_str(&match found {
            Some(v) => format!("\n{}: {v}", p.name),
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
        assert_eq!(version_in(""), None);
    }
}
