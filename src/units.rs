//! Sizes. `Bytes` is what thinsr reasons in; `Sectors` is what device-mapper's tables
//! speak, `DataBlocks` what a thin pool's status and low-water mark count.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const SECTOR: u64 = 512;
pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bytes(pub u64);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sectors(pub u64);

/// A count of a thin pool's data blocks. Their size is the pool's chunk size, which the
/// kernel's status line does not carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct DataBlocks(pub u64);

impl DataBlocks {
    pub fn bytes(self, block: Bytes) -> Bytes {
        Bytes(self.0 * block.0)
    }
}

impl Bytes {
    pub fn sectors(self) -> Sectors {
        Sectors(self.0.div_ceil(SECTOR))
    }
    /// Rounded up to a multiple of `unit` (an extent, a chunk).
    pub fn round_up(self, unit: u64) -> Bytes {
        Bytes(self.0.div_ceil(unit) * unit)
    }
    pub fn round_down(self, unit: u64) -> Bytes {
        Bytes(self.0 / unit * unit)
    }
}

impl Sectors {
    pub fn bytes(self) -> Bytes {
        Bytes(self.0 * SECTOR)
    }
}

impl fmt::Display for Bytes {
    /// Human form, binary units, like lvm's: `4.00 GiB`, `512 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let mut v = self.0 as f64;
        let mut i = 0;
        while v >= 1024.0 && i + 1 < UNITS.len() {
            v /= 1024.0;
            i += 1;
        }
        if i == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.2} {}", UNITS[i])
        }
    }
}

/// Parses `512M`, `20G`, `1.5T`, `20GiB`, `4096` (bytes). Binary units, case-insensitive.
pub fn parse_size(input: &str) -> Result<Bytes> {
    let bad = |why: &str| Error::InvalidSize {
        input: clip(input),
        why: why.into(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.starts_with('-') {
        return Err(bad("a size cannot be negative"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => KIB,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => TIB,
        "p" | "pb" | "pib" => TIB * 1024,
        other => return Err(bad(&format!("unknown unit '{}'", clip(other)))),
    };
    let bytes = if let Some((int, frac)) = num.split_once('.') {
        if frac.contains('.') || (int.is_empty() && frac.is_empty()) {
            return Err(bad("not a number"));
        }
        let v: f64 = num.parse().map_err(|_| bad("not a number"))?;
        let b = v * mult as f64;
        if !b.is_finite() || b >= u64::MAX as f64 {
            return Err(bad("too large"));
        }
        b.round() as u64
    } else {
        let v: u64 = num.parse().map_err(|_| bad("too large"))?;
        v.checked_mul(mult).ok_or_else(|| bad("too large"))?
    };
    Ok(Bytes(bytes))
}

/// A size that must be positive.
pub fn parse_positive_size(input: &str) -> Result<Bytes> {
    let b = parse_size(input)?;
    if b.0 == 0 {
        return Err(Error::InvalidSize {
            input: clip(input),
            why: "it must be larger than zero".into(),
        });
    }
    Ok(b)
}

/// A new size given as `SIZE` or `+SIZE` (`vdi resize`, `pool extend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewSize {
    To(Bytes),
    Grow(Bytes),
}

impl NewSize {
    /// The size it names for something now `current` bytes, rounded up to `unit`.
    pub fn from(self, current: Bytes, unit: u64) -> Result<Bytes> {
        let b = match self {
            NewSize::To(b) => b,
            NewSize::Grow(g) => {
                Bytes(
                    current
                        .0
                        .checked_add(g.0)
                        .ok_or_else(|| Error::InvalidSize {
                            input: g.to_string(),
                            why: "too large".into(),
                        })?,
                )
            }
        };
        Ok(b.round_up(unit))
    }
}

/// `SIZE` or `+SIZE`, positive either way.
pub fn parse_new_size(input: &str) -> Result<NewSize> {
    match input.strip_prefix('+') {
        Some(rest) => Ok(NewSize::Grow(parse_positive_size(rest)?)),
        None => Ok(NewSize::To(parse_positive_size(input)?)),
    }
}

/// A pool size: absolute, or a percentage of the volume group's free space (`50%`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolSize {
    Absolute(Bytes),
    PercentOfFree(u8),
}

pub fn parse_pool_size(input: &str) -> Result<PoolSize> {
    if let Some(pct) = input.trim().strip_suffix('%') {
        let p: u8 = pct
            .trim()
            .parse()
            .ok()
            .filter(|p| (1..=100).contains(p))
            .ok_or_else(|| Error::InvalidSize {
                input: clip(input),
                why: "a percentage runs from 1% to 100%".into(),
            })?;
        return Ok(PoolSize::PercentOfFree(p));
    }
    Ok(PoolSize::Absolute(parse_positive_size(input)?))
}

/// Keeps user input in messages readable: a 10,000-character argument is cut.
pub fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}... ({} characters)", s.chars().count())
    }
}

/// Unix time `secs` as `YYYY-MM-DD HH:MM:SS UTC` (Howard Hinnant's days-to-civil).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Seconds since the epoch, now (what entries record as times).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_times_read_as_utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_601_599), "2026-12-06 23:59:59 UTC");
    }

    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("4096").unwrap(), Bytes(4096));
        assert_eq!(parse_size("512M").unwrap(), Bytes(512 * MIB));
        assert_eq!(parse_size("20g").unwrap(), Bytes(20 * GIB));
        assert_eq!(parse_size("20GiB").unwrap(), Bytes(20 * GIB));
        assert_eq!(parse_size("1.5T").unwrap(), Bytes(3 * TIB / 2));
        assert_eq!(parse_size(" 2K ").unwrap(), Bytes(2048));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "-1",
            "-5G",
            "12XB",
            "G",
            "1.2.3G",
            ".G",
            "99999999999999999999",
            "20000000P",
            "1e5",
            "abc",
            "1 G G",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_SIZE", "{bad}");
        }
        assert_eq!(parse_positive_size("0").unwrap_err().code(), "INVALID_SIZE");
    }

    #[test]
    fn pool_sizes() {
        assert_eq!(parse_pool_size("50%").unwrap(), PoolSize::PercentOfFree(50));
        assert_eq!(
            parse_pool_size("2G").unwrap(),
            PoolSize::Absolute(Bytes(2 * GIB))
        );
        for bad in ["0%", "101%", "%", "-3%", "0"] {
            assert!(parse_pool_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_binary_units() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(4 * GIB).to_string(), "4.00 GiB");
        assert_eq!(Bytes(1536 * KIB).to_string(), "1.50 MiB");
    }

    #[test]
    fn clips_long_input() {
        let long = "x".repeat(10_000);
        assert!(clip(&long).len() < 100);
        assert!(clip(&long).ends_with("(10000 characters)"));
    }

    #[test]
    fn rounding() {
        assert_eq!(Bytes(5).round_up(4), Bytes(8));
        assert_eq!(Bytes(8).round_up(4), Bytes(8));
        assert_eq!(Bytes(7).round_down(4), Bytes(4));
        assert_eq!(Bytes(1000).sectors(), Sectors(2));
    }
}
