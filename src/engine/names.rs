//! Friendly vfat-style LVM names made from labels: `Windows 10 (64-bit)` ->
//! `Windows_10_64-bit`, then `Windows_10_64-bit+1`. The rules are LVM's own (design brief).

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::units::clip;

/// LVM's limit for VG + LV name together.
pub const MAX_FULL: usize = 125;
pub use crate::ids::{is_valid_lvm_name, MAX_NAME};
use crate::ids::{lvm_char, RESERVED_PREFIXES, RESERVED_SUBSTRINGS};
/// Longest label thinsr accepts; the friendly name is shortened, the label kept whole.
pub const MAX_LABEL: usize = 1024;

/// Checks a label given by a user: printable, not absurdly long. Empty is allowed, as in
/// XenAPI (`xe vm-install` makes every disk with an empty label and renames it after);
/// the LV is then named `vdi`.
pub fn check_label(label: &str) -> Result<()> {
    let bad = |why: &str| Error::InvalidName {
        input: clip(label),
        why: why.into(),
    };
    if label.chars().count() > MAX_LABEL {
        return Err(bad(&format!("longer than {MAX_LABEL} characters")));
    }
    if label.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    Ok(())
}

/// Longest description thinsr keeps.
pub const MAX_DESCRIPTION: usize = MAX_LABEL * 4;

pub fn check_description(text: &str) -> Result<()> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(Error::InvalidArgument(format!(
            "a description holds at most {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

/// Checks a key of `vdi set`: what xapi stores there is short and printable.
pub fn check_key(key: &str) -> Result<()> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid key '{}': {why}", clip(key)));
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.chars().count() > 256 {
        return Err(bad("longer than 256 characters"));
    }
    if key.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    Ok(())
}

/// Longest value of a key, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;

pub fn check_value(value: &str) -> Result<()> {
    if value.len() > MAX_VALUE {
        return Err(Error::InvalidArgument(format!(
            "a key's value holds at most {MAX_VALUE} bytes"
        )));
    }
    Ok(())
}

/// The friendly base name of a label, at most `max` characters, before any `+N` suffix.
pub fn sanitize(label: &str, max: usize) -> String {
    let ascii = deunicode::deunicode(label);
    let mut out = String::with_capacity(ascii.len());
    let mut in_run = false;
    for c in ascii.chars() {
        if lvm_char(c) {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('_');
            in_run = true;
        }
    }
    let mut name = tidy(&out);
    // Reserved substrings start with '_': a '-' reads the same and is allowed.
    while let Some(s) = RESERVED_SUBSTRINGS.iter().find(|s| name.contains(*s)) {
        name = name.replacen(s, &format!("-{}", &s[1..]), 1);
    }
    if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        name = format!("vdi_{name}");
    }
    if name.len() > max {
        name.truncate(max);
        name = tidy(&name);
    }
    if name.is_empty() || name == "." || name == ".." {
        name = "vdi".into();
    }
    name
}

/// Trims what must not start or end a name.
fn tidy(s: &str) -> String {
    s.trim_start_matches(['_', '-'])
        .trim_end_matches('_')
        .to_string()
}

/// A name for `label` not yet used in the VG: `base`, `base+1`, `base+2`, ...
/// `vg` is the volume group's name, whose length counts against LVM's limit.
pub fn unique_name(label: &str, vg: &str, taken: &HashSet<String>) -> String {
    let max = MAX_NAME.min(MAX_FULL.saturating_sub(vg.len()));
    let base = sanitize(label, max);
    if !taken.contains(&base) {
        return base;
    }
    for n in 1u64.. {
        let suffix = format!("+{n}");
        let mut stem = base.clone();
        if stem.len() + suffix.len() > max {
            stem.truncate(max.saturating_sub(suffix.len()));
            stem = tidy(&stem);
        }
        let candidate = format!("{stem}{suffix}");
        if !taken.contains(&candidate) {
            return candidate;
        }
    }
    unreachable!("u64 suffixes run out")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(label: &str) -> String {
        sanitize(label, MAX_NAME)
    }

    #[test]
    fn windows_example() {
        assert_eq!(name("Windows 10 (64-bit)"), "Windows_10_64-bit");
        let mut taken = HashSet::new();
        for want in [
            "Windows_10_64-bit",
            "Windows_10_64-bit+1",
            "Windows_10_64-bit+2",
        ] {
            let got = unique_name("Windows 10 (64-bit)", "vg", &taken);
            assert_eq!(got, want);
            taken.insert(got);
        }
    }

    #[test]
    fn transliterates() {
        assert_eq!(name("Ünïcode"), "Unicode");
        assert_eq!(name("Crème brûlée"), "Creme_brulee");
        assert_eq!(name("Straße"), "Strasse");
    }

    #[test]
    fn runs_become_one_underscore_and_ends_are_trimmed() {
        assert_eq!(name("  a   b  "), "a_b");
        assert_eq!(name("a/\\:*?b"), "a_b");
        assert_eq!(name("(x)"), "x");
        assert_eq!(name("-leading-dash"), "leading-dash");
        assert_eq!(name("keep+plus.dot-dash_under"), "keep+plus.dot-dash_under");
    }

    #[test]
    fn empty_and_dot_names() {
        for l in ["", "   ", "!!!", "()", ".", "..", "___", "---"] {
            assert_eq!(name(l), "vdi", "{l:?}");
        }
    }

    #[test]
    fn reserved_prefixes() {
        assert_eq!(name("snapshot of db"), "vdi_snapshot_of_db");
        assert_eq!(name("pvmove"), "vdi_pvmove");
        assert!(is_valid_lvm_name(&name("snapshot")));
    }

    #[test]
    fn every_reserved_substring() {
        for s in RESERVED_SUBSTRINGS {
            let label = format!("disk{s}x");
            let got = name(&label);
            assert!(is_valid_lvm_name(&got), "{label} -> {got}");
            assert!(!got.contains(s), "{got}");
        }
        // Two in a row, and one that only appears after another is fixed.
        let got = name("a_tdata_tmeta");
        assert!(is_valid_lvm_name(&got), "{got}");
    }

    #[test]
    fn length_limits_count_the_vg() {
        let long = "x".repeat(10_000);
        let vg = "v".repeat(40);
        let got = unique_name(&long, &vg, &HashSet::new());
        assert_eq!(got.len() + vg.len(), MAX_FULL);
        let mut taken = HashSet::new();
        taken.insert(got.clone());
        let next = unique_name(&long, &vg, &taken);
        assert!(next.ends_with("+1"));
        assert_eq!(next.len() + vg.len(), MAX_FULL);
        assert!(is_valid_lvm_name(&next));
    }

    #[test]
    fn truncation_does_not_leave_trailing_underscore() {
        let label = format!("{}  tail", "a".repeat(MAX_NAME - 1));
        let got = name(&label);
        assert!(!got.ends_with('_'), "{got}");
        assert!(got.len() <= MAX_NAME);
    }

    #[test]
    fn everything_is_valid() {
        for l in [
            "Windows 10 (64-bit)",
            "Ünïcode",
            "日本語",
            "😀 emoji",
            "a~b",
            "x_cdata",
            "snapshot",
            ".hidden",
            "...",
        ] {
            let got = name(l);
            assert!(is_valid_lvm_name(&got), "{l} -> {got}");
        }
    }

    #[test]
    fn labels() {
        assert!(check_label("ok").is_ok());
        // XenAPI's labels may be empty; the LV is then "vdi".
        assert!(check_label("").is_ok() && check_label("  ").is_ok());
        assert_eq!(sanitize("", 64), "vdi");
        assert_eq!(
            check_label(&"x".repeat(10_000)).unwrap_err().code(),
            "INVALID_NAME"
        );
        assert_eq!(check_label("a\nb").unwrap_err().code(), "INVALID_NAME");
    }
}
