//! Typed names: what identifies an SR, a VDI, a volume group and a logical volume. Each is
//! a string underneath (and serialises as one, so metadata and JSON are unchanged), but a
//! signature taking `(&VgName, &LvName)` cannot be called with the two swapped, which a
//! `(&str, &str)` one can. They read as `&str` (`Deref`) wherever text is wanted.
//!
//! Names are checked where they enter thinsr (`parse`: the CLI, xapi's arguments); names
//! read back from LVM or thinsr's own metadata are taken as they are (`from`).

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

macro_rules! name_type {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $t(String);

        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $t {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::ffi::OsStr> for $t {
            fn as_ref(&self) -> &std::ffi::OsStr {
                self.0.as_ref()
            }
        }

        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// A name thinsr read from LVM or its own metadata, taken as it is.
        impl From<&str> for $t {
            fn from(s: &str) -> $t {
                $t(s.to_string())
            }
        }

        impl From<String> for $t {
            fn from(s: String) -> $t {
                $t(s)
            }
        }

        impl From<&String> for $t {
            fn from(s: &String) -> $t {
                $t(s.clone())
            }
        }

        impl From<$t> for String {
            fn from(n: $t) -> String {
                n.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, o: &str) -> bool {
                self.0 == o
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, o: &&str) -> bool {
                self.0 == *o
            }
        }

        impl PartialEq<String> for $t {
            fn eq(&self, o: &String) -> bool {
                &self.0 == o
            }
        }

        impl PartialEq<$t> for String {
            fn eq(&self, o: &$t) -> bool {
                *self == o.0
            }
        }

        impl PartialEq<$t> for str {
            fn eq(&self, o: &$t) -> bool {
                self == o.0
            }
        }

        impl PartialEq<$t> for &str {
            fn eq(&self, o: &$t) -> bool {
                *self == o.0
            }
        }
    };
}

name_type!(
    /// A storage repository's uuid.
    SrUuid
);
name_type!(
    /// A VDI's (or template's) uuid.
    VdiUuid
);
name_type!(
    /// A volume group's name.
    VgName
);
name_type!(
    /// A logical volume's name inside its VG (a thin pool's too).
    LvName
);

/// An LV with its VG: what lvm commands name as `vg/lv`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LvPath {
    pub vg: VgName,
    pub lv: LvName,
}

impl LvPath {
    pub fn new(vg: &VgName, lv: &LvName) -> LvPath {
        LvPath {
            vg: vg.clone(),
            lv: lv.clone(),
        }
    }
}

impl LvPath {
    /// `vg/lv` as thinsr wrote it into its own state.
    pub fn split(vg_lv: &str) -> Option<LvPath> {
        let (vg, lv) = vg_lv.split_once('/')?;
        Some(LvPath::new(&vg.into(), &lv.into()))
    }
}

impl fmt::Display for LvPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vg, self.lv)
    }
}

pub const MAX_NAME: usize = 127;

pub const RESERVED_PREFIXES: &[&str] = &["snapshot", "pvmove"];
pub const RESERVED_SUBSTRINGS: &[&str] = &[
    "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_wcorig", "_mimage", "_mlog", "_rimage",
    "_rmeta", "_tdata", "_tmeta", "_vdata", "_imeta", "_iorig", "_pmspare", "_vorigin",
];

/// A character LVM allows in a VG or LV name.
pub fn lvm_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-')
}

/// True when LVM accepts `name` as an LV (or VG) name (lvm2 lib/misc/lvm-string.c).
pub fn is_valid_lvm_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.chars().all(lvm_char)
        && !name.starts_with('-')
        && name != "."
        && name != ".."
        && !RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        && !RESERVED_SUBSTRINGS.iter().any(|s| name.contains(s))
}

fn lvm_name(what: &str, s: &str) -> Result<String> {
    if is_valid_lvm_name(s) {
        return Ok(s.to_string());
    }
    Err(Error::InvalidName {
        input: crate::units::clip(s),
        why: format!(
            "not a {what}: LVM takes 1 to {MAX_NAME} letters, digits and + _ . -, not starting with '-'"
        ),
    })
}

impl SrUuid {
    /// A new random (v4) uuid.
    pub fn random() -> SrUuid {
        SrUuid(uuid::Uuid::new_v4().to_string())
    }

    /// A uuid given to thinsr (xapi's `SR.create`), in its hyphenated lower-case form.
    pub fn parse(s: &str) -> Result<SrUuid> {
        uuid::Uuid::parse_str(s)
            .map(|u| SrUuid(u.hyphenated().to_string()))
            .map_err(|e| {
                Error::InvalidArgument(format!("SR uuid '{}': {e}", crate::units::clip(s)))
            })
    }
}

impl VdiUuid {
    /// A new random (v4) uuid.
    pub fn random() -> VdiUuid {
        VdiUuid(uuid::Uuid::new_v4().to_string())
    }
}

impl VgName {
    /// A VG name given to thinsr, checked against LVM's rules.
    pub fn parse(s: &str) -> Result<VgName> {
        lvm_name("volume group name", s).map(VgName)
    }
}

impl LvName {
    /// An LV name given to thinsr, checked against LVM's rules.
    pub fn parse(s: &str) -> Result<LvName> {
        lvm_name("logical volume name", s).map(LvName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvm_names_are_checked_where_they_enter() {
        assert_eq!(VgName::parse("vg_01.x+y-z").unwrap(), "vg_01.x+y-z");
        for bad in [
            "",
            "-vg",
            "a b",
            "vg/lv",
            "..",
            "é",
            "x_tmeta",
            "snapshot1",
            &"x".repeat(128),
        ] {
            assert!(VgName::parse(bad).is_err(), "{bad:?}");
            assert!(LvName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sr_uuids_are_checked_and_normalised() {
        let u = SrUuid::parse("0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0").unwrap();
        assert_eq!(u, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert!(SrUuid::parse("not-a-uuid").is_err());
    }

    #[test]
    fn names_serialise_as_plain_strings() {
        let v = VdiUuid::from("u1");
        assert_eq!(serde_json::to_value(&v).unwrap(), "u1");
        let back: VdiUuid = serde_json::from_str("\"u1\"").unwrap();
        assert_eq!(back, v);
        assert_eq!(
            format!("{}/{}", VgName::from("vg"), LvName::from("lv")),
            "vg/lv"
        );
    }
}
