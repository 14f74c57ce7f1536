//! The host's list of known SRs: `<config dir>/srs.yaml` (default /etc/thinsr). A cache of
//! what each SR's own metadata says, so listing SRs needs no metadata reads; `sr introduce`
//! rebuilds an entry from the disk.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::{LvName, SrUuid, VgName};

use crate::engine::meta::{MetaStore, Mode, SrMeta};
use crate::error::{Error, Result};

pub const DEFAULT_CONFIG_DIR: &str = "/etc/thinsr";

/// `$THINSR_CONFIG` or the default, for entry points that run without clap (completion,
/// the xapi plugin); the CLI's `--config` reads the same variable.
pub fn config_dir_from_env() -> PathBuf {
    std::env::var_os("THINSR_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR))
}

/// A registry larger than this is not one thinsr wrote.
const MAX_SIZE: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub uuid: SrUuid,
    pub name: String,
    pub vg: VgName,
    pub mode: Mode,
    pub pool: LvName,
    /// thinsr's metadata LV in the VG.
    pub meta_lv: LvName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl Entry {
    /// The SR's metadata volume.
    pub fn meta_store(&self) -> MetaStore {
        MetaStore::new(meta_path(&self.vg, &self.meta_lv), &self.name)
    }

    pub fn from_meta(meta: &SrMeta, vg: &VgName, meta_lv: &LvName) -> Entry {
        Entry {
            uuid: meta.uuid.clone(),
            name: meta.name.clone(),
            vg: vg.clone(),
            mode: meta.mode,
            pool: meta.pool.clone(),
            meta_lv: meta_lv.clone(),
            file: meta.file.clone(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    #[serde(default)]
    pub srs: Vec<Entry>,
}

pub struct RegistryFile {
    pub path: PathBuf,
}

impl RegistryFile {
    pub fn in_dir(dir: &Path) -> RegistryFile {
        RegistryFile {
            path: dir.join("srs.yaml"),
        }
    }

    fn invalid(&self, why: impl Into<String>) -> Error {
        Error::ConfigInvalid {
            path: self.path.display().to_string(),
            why: why.into(),
        }
    }

    pub fn load(&self) -> Result<Registry> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
            Err(e) => return Err(Error::io(format!("reading {}", self.path.display()), e)),
        };
        // It names the volume groups root acts on: root's alone, or not read at all.
        if nix::unistd::geteuid().is_root() {
            let path = std::path::absolute(&self.path)
                .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
            crate::host::trust::root_only(&path, "configuration file")?;
        }
        if meta.len() > MAX_SIZE {
            return Err(self.invalid(format!("{} bytes is larger than any registry", meta.len())));
        }
        let text = fs::read_to_string(&self.path)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        if text.trim().is_empty() {
            return Ok(Registry::default());
        }
        serde_yaml::from_str(&text).map_err(|e| self.invalid(e.to_string()))
    }

    /// Replaces the file atomically: a crash leaves the old or the new list, never half.
    pub fn save(&self, reg: &Registry) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let io = |e| Error::io(format!("writing {}", self.path.display()), e);
        fs::create_dir_all(dir).map_err(io)?;
        let text = serde_yaml::to_string(reg).map_err(|e| self.invalid(e.to_string()))?;
        let tmp = dir.join(format!(".srs.yaml.{}", std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(io)?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }
}

impl Registry {
    /// Finds an SR by uuid, volume group, name or unique uuid prefix, in that order.
    pub fn find(&self, key: &str) -> Result<&Entry> {
        let exact: Vec<&Entry> = self
            .srs
            .iter()
            .filter(|e| e.uuid == key || e.vg == key || e.name == key)
            .collect();
        let found = if exact.is_empty() && key.len() >= 4 {
            self.srs
                .iter()
                .filter(|e| e.uuid.starts_with(key))
                .collect()
        } else {
            exact
        };
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::SrNotFound(crate::units::clip(key))),
            many => Err(Error::SrAmbiguous {
                name: key.into(),
                candidates: many
                    .iter()
                    .map(|e| format!("{} ({})", e.name, e.uuid))
                    .collect(),
            }),
        }
    }

    /// The SR named by `--sr`, or the only one registered.
    pub fn pick(&self, key: Option<&str>) -> Result<&Entry> {
        match (key, self.srs.as_slice()) {
            (Some(k), _) => self.find(k),
            (None, [one]) => Ok(one),
            (None, []) => Err(Error::NoSr),
            (None, many) => Err(Error::SrRequired(
                many.iter().map(|e| e.name.clone()).collect(),
            )),
        }
    }
}

pub(crate) fn meta_path(vg: &VgName, lv: &LvName) -> PathBuf {
    PathBuf::from(crate::host::lvm::dev_path(vg, lv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(uuid: &str, name: &str, vg: &str) -> Entry {
        Entry {
            uuid: uuid.into(),
            name: name.into(),
            vg: vg.into(),
            mode: Mode::Owned,
            pool: "p".into(),
            meta_lv: "m".into(),
            file: None,
        }
    }

    #[test]
    fn finds_by_every_key() {
        let reg = Registry {
            srs: vec![
                entry("aaaa1111", "fast", "vg1"),
                entry("aaaa2222", "slow", "vg2"),
            ],
        };
        assert_eq!(reg.find("fast").unwrap().uuid, "aaaa1111");
        assert_eq!(reg.find("vg2").unwrap().uuid, "aaaa2222");
        assert_eq!(reg.find("aaaa2222").unwrap().name, "slow");
        assert_eq!(reg.find("aaaa2").unwrap().name, "slow");
        assert_eq!(reg.find("aaaa").unwrap_err().code(), "SR_AMBIGUOUS");
        assert_eq!(reg.find("nope").unwrap_err().code(), "SR_NOT_FOUND");
        assert_eq!(reg.find("aa").unwrap_err().code(), "SR_NOT_FOUND");
        assert_eq!(reg.pick(None).unwrap_err().code(), "SR_REQUIRED");
        assert_eq!(
            Registry::default().pick(None).unwrap_err().code(),
            "SR_NOT_FOUND"
        );
    }

    #[test]
    fn save_and_load() {
        let dir = std::env::temp_dir().join(format!("thinsr-reg-{}", uuid::Uuid::new_v4()));
        let f = RegistryFile::in_dir(&dir);
        assert!(f.load().unwrap().srs.is_empty());
        let reg = Registry {
            srs: vec![entry("u", "n", "v")],
        };
        f.save(&reg).unwrap();
        assert_eq!(f.load().unwrap().srs, reg.srs);
        fs::write(&f.path, "srs: [ {bogus: 1} ]").unwrap();
        assert_eq!(f.load().unwrap_err().code(), "CONFIG_INVALID");
        fs::remove_dir_all(&dir).unwrap();
    }
}
