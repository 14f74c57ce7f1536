//! Every lvm command thinsr runs, as a typed function returning its argument vector: the
//! engine says what it wants (`remove(&[path])`, `LvCreate::new(..).thin(..)`), the flags
//! are chosen here, once. Pure: `Lvm::run` runs what these return.

use crate::ids::{LvName, LvPath, VgName};
use crate::units::Bytes;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

fn bytes(size: Bytes) -> String {
    format!("{}b", size.0)
}

/// `--addtag T` for each tag.
pub fn tag_args(tags: &[String]) -> Vec<String> {
    tags.iter()
        .flat_map(|t| ["--addtag".to_string(), t.clone()])
        .collect()
}

/// An `lvcreate` of an LV thinsr owns: tagged, and skipped by activation
/// (`--setactivationskip y`): nothing but thinsr activates it.
pub struct LvCreate {
    args: Vec<String>,
}

impl LvCreate {
    pub fn new(lv: &LvName, tags: &[String]) -> LvCreate {
        let mut args = argv(&["lvcreate", "-y", "-n", lv, "--setactivationskip", "y"]);
        args.extend(tag_args(tags));
        LvCreate { args }
    }

    /// Active once made, its activation skip ignored (`-K`).
    pub fn active(mut self) -> LvCreate {
        self.args.push("-K".into());
        self
    }

    /// Read-only or read-write (`-p r|rw`), as a snapshot or clone asks.
    pub fn writable(mut self, rw: bool) -> LvCreate {
        self.args.extend(argv(&["-p", if rw { "rw" } else { "r" }]));
        self
    }

    /// A thin volume of `size` in `vg/pool`.
    pub fn thin(mut self, vg: &VgName, pool: &LvName, size: Bytes) -> Vec<String> {
        self.args.extend(["-V".into(), bytes(size), "-T".into()]);
        self.args.push(LvPath::new(vg, pool).to_string());
        self.args
    }

    /// A thin snapshot of `origin`.
    pub fn snapshot(mut self, origin: &LvPath) -> Vec<String> {
        self.args.extend(["-s".into(), origin.to_string()]);
        self.args
    }

    /// A preallocated LV of `size` in `vg`, active, left unzeroed and unwiped: thinsr
    /// zeroes it all (LVM's own zeroing covers only the first 4 KiB).
    pub fn preallocated(mut self, vg: &VgName, size: Bytes) -> Vec<String> {
        self.args.extend(argv(&["-K", "-Zn", "-Wn", "-L"]));
        self.args.extend([bytes(size), vg.to_string()]);
        self.args
    }
}

/// A thin pool `vg/lv` of `size` data and `metadata`, in `chunk` units. New blocks read as
/// zeros (`--zero y`) whatever lvm.conf says (`thin_pool_zero = 0` is a common tuning): no
/// VDI may show the disk's old bytes or a destroyed VDI's.
pub fn create_pool(
    path: &LvPath,
    size: Bytes,
    metadata: Bytes,
    chunk: Bytes,
    tags: &[String],
) -> Vec<String> {
    let mut args = argv(&["lvcreate", "-y", "--type", "thin-pool", "-n", &path.lv]);
    args.extend(["-L".into(), bytes(size)]);
    args.extend(["--poolmetadatasize".into(), bytes(metadata)]);
    args.extend(["--chunksize".into(), bytes(chunk)]);
    args.extend(argv(&["--zero", "y"]));
    args.extend(tag_args(tags));
    args.push(path.vg.to_string());
    args
}

/// A plain LV `vg/lv` of `size` (thinsr's metadata LV), its old bytes wiped (`-Wy`).
pub fn create_plain(path: &LvPath, size: Bytes, tags: &[String]) -> Vec<String> {
    let mut args = argv(&["lvcreate", "-y", "-Wy", "-n", &path.lv]);
    args.extend(["-L".into(), bytes(size)]);
    args.extend(tag_args(tags));
    args.push(path.vg.to_string());
    args
}

/// A VG on `pvs` (first given, first filled) with `extent`-sized extents.
pub fn create_vg(vg: &VgName, extent: Bytes, tags: &[String], pvs: &[String]) -> Vec<String> {
    let mut args = argv(&["vgcreate", "-y"]);
    args.extend(["-s".into(), format!("{}k", extent.0 / 1024)]);
    args.extend(tag_args(tags));
    args.push(vg.to_string());
    args.extend(pvs.iter().cloned());
    args
}

/// `lvremove -f` of these LVs.
pub fn remove(lvs: &[LvPath]) -> Vec<String> {
    let mut args = argv(&["lvremove", "-f"]);
    args.extend(lvs.iter().map(LvPath::to_string));
    args
}

/// `lvremove` of what in `target` (a VG, or one LV) carries `tag`: the tag, not the name,
/// decides. `force` skips lvm's question for an active LV.
pub fn remove_tagged(target: &str, tag: &str, force: bool) -> Vec<String> {
    let mut args = argv(&["lvremove"]);
    if force {
        args.push("-f".into());
    }
    args.extend(["-S".into(), format!("lv_tags={tag}")]);
    args.push(target.to_string());
    args
}

/// Removes VG `vg` (its LVs with it).
pub fn remove_vg(vg: &VgName) -> Vec<String> {
    argv(&["vgremove", "-f", vg])
}

/// Removes the PV labels of these devices.
pub fn remove_pv_labels(pvs: &[String]) -> Vec<String> {
    let mut args = argv(&["pvremove", "-y"]);
    args.extend(pvs.iter().cloned());
    args
}

/// How an LV is activated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activate {
    /// Active, its activation skip ignored (`-ay -K`): a VDI's or a copy's LV.
    Ours,
    /// Active, read-only in the kernel though writable in LVM: a VDI attached for reading.
    ReadOnly,
    /// Active, answering yes (`-ay -y`): an SR's own LVs (pool, metadata).
    Sr,
    Off,
}

/// `lvchange` activating or deactivating these LVs.
pub fn activate(lvs: &[LvPath], how: Activate) -> Vec<String> {
    let mut args = match how {
        Activate::Ours | Activate::ReadOnly => argv(&["lvchange", "-ay", "-K"]),
        Activate::Sr => argv(&["lvchange", "-ay", "-y"]),
        Activate::Off => argv(&["lvchange", "-an"]),
    };
    if how == Activate::ReadOnly {
        let names: Vec<String> = lvs.iter().map(|l| format!("\"{l}\"")).collect();
        args.push("--config".into());
        args.push(format!(
            "activation {{ read_only_volume_list = [ {} ] }}",
            names.join(", ")
        ));
    }
    args.extend(lvs.iter().map(LvPath::to_string));
    args
}

/// Reloads the table of `path` (a pool: LVM sets its low-water mark at each load).
pub fn refresh(path: &LvPath) -> Vec<String> {
    argv(&["lvchange", "--refresh", &path.to_string()])
}

/// Whether the pool `path` fails writes when full (`y`) or queues them (`n`).
pub fn error_when_full(path: &LvPath, error: bool) -> Vec<String> {
    let yn = if error { "y" } else { "n" };
    argv(&["lvchange", "--errorwhenfull", yn, &path.to_string()])
}

/// New blocks of the pool `path` read as zeros from now on.
pub fn zero_new_blocks(path: &LvPath) -> Vec<String> {
    argv(&["lvchange", "--zero", "y", &path.to_string()])
}

pub fn rename(vg: &VgName, from: &LvName, to: &LvName) -> Vec<String> {
    argv(&["lvrename", vg, from, to])
}

/// Adds tag `add` to `path` and removes `remove`, in one change of the VG's metadata.
pub fn retag(path: &LvPath, add: &str, remove: &str) -> Vec<String> {
    argv(&[
        "lvchange",
        "--addtag",
        add,
        "--deltag",
        remove,
        &path.to_string(),
    ])
}

/// Adds `tag` to `path` and deactivates it, in one call: lvchange takes `--activate`
/// beside metadata changes and applies it after them (lvm2's command-lines.in), so a
/// failure leaves the tag without the deactivation, never the reverse.
pub fn add_tag_and_deactivate(path: &LvPath, tag: &str) -> Vec<String> {
    argv(&["lvchange", "--addtag", tag, "-an", &path.to_string()])
}

/// Resizes `path` to `size`; `force` (`-f`) asks no question, even to make it smaller.
pub fn resize(path: &LvPath, size: Bytes, force: bool) -> Vec<String> {
    let mut args = argv(&["lvresize", "-y"]);
    if force {
        args.push("-f".into());
    }
    args.extend(["-L".into(), bytes(size), path.to_string()]);
    args
}

/// Grows the pool `path`: its data to `data`, its metadata to `metadata` (None: as it is).
pub fn extend_pool(path: &LvPath, data: Option<Bytes>, metadata: Option<Bytes>) -> Vec<String> {
    let mut args = argv(&["lvextend", "-y"]);
    if let Some(d) = data {
        args.extend(["-L".into(), bytes(d)]);
    }
    if let Some(m) = metadata {
        args.extend(["--poolmetadatasize".into(), bytes(m)]);
    }
    args.push(path.to_string());
    args
}

/// The value of one setting as lvm would use it (`lvmconfig --typeconfig full KEY`).
pub fn config(key: &str) -> Vec<String> {
    argv(&["lvmconfig", "--typeconfig", "full", key])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An argument vector from words (none holding a space).
    fn w(words: &str) -> Vec<String> {
        words.split_whitespace().map(String::from).collect()
    }

    fn p(vg: &str, lv: &str) -> LvPath {
        LvPath::new(&vg.into(), &lv.into())
    }

    #[test]
    fn creates_say_what_they_make() {
        let tags = ["thinsr_sr=s".to_string(), "thinsr_vdi=v".to_string()];
        let lv = LvName::from("web");
        assert_eq!(
            LvCreate::new(&lv, &tags).thin(&"vg".into(), &"pool".into(), Bytes(1 << 30)),
            w("lvcreate -y -n web --setactivationskip y --addtag thinsr_sr=s --addtag thinsr_vdi=v -V 1073741824b -T vg/pool")
        );
        assert_eq!(
            LvCreate::new(&lv, &[])
                .writable(false)
                .snapshot(&p("vg", "base")),
            w("lvcreate -y -n web --setactivationskip y -p r -s vg/base")
        );
        assert_eq!(
            LvCreate::new(&lv, &[]).preallocated(&"vg".into(), Bytes(4096)),
            w("lvcreate -y -n web --setactivationskip y -K -Zn -Wn -L 4096b vg")
        );
        let pool = create_pool(
            &p("vg", "pool"),
            Bytes(1 << 30),
            Bytes(8 << 20),
            Bytes(65536),
            &[],
        );
        assert!(pool.windows(2).any(|w| w == ["--zero", "y"]), "{pool:?}");
        assert_eq!(pool.last().unwrap(), "vg");
    }

    #[test]
    fn changes_name_their_lvs() {
        assert_eq!(
            remove(&[p("vg", "a"), p("vg", "b")]),
            w("lvremove -f vg/a vg/b")
        );
        assert_eq!(
            activate(&[p("vg", "a")], Activate::ReadOnly),
            argv(&[
                "lvchange",
                "-ay",
                "-K",
                "--config",
                "activation { read_only_volume_list = [ \"vg/a\" ] }",
                "vg/a"
            ])
        );
        assert_eq!(
            activate(&[p("vg", "a")], Activate::Off),
            w("lvchange -an vg/a")
        );
        assert_eq!(
            resize(&p("vg", "a"), Bytes(512), true),
            w("lvresize -y -f -L 512b vg/a")
        );
        assert_eq!(
            extend_pool(&p("vg", "pool"), None, Some(Bytes(1024))),
            w("lvextend -y --poolmetadatasize 1024b vg/pool")
        );
        assert_eq!(
            remove_tagged("vg", "thinsr_cbt=u", true),
            w("lvremove -f -S lv_tags=thinsr_cbt=u vg")
        );
    }
}
