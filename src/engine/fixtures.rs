//! Fixtures for the engine's unit tests: SR metadata, VDI entries and LVM reports as the
//! host would give them, without a host.

use crate::engine::meta::{Mode, SrMeta, VdiKind, VdiMeta, FORMAT};
use crate::engine::registry::Entry;
use crate::host::lvm::{Lv, Vg};
use crate::units::Bytes;

/// A 1 GiB thin VDI.
pub fn vdi(uuid: &str, name: &str, lv: &str) -> VdiMeta {
    VdiMeta::new(
        &uuid.into(),
        name,
        VdiKind::Thin,
        &lv.into(),
        Bytes(1 << 30),
    )
}

/// An owned SR with pool `thinsr_pool` in VG `name`, and its registry entry.
pub fn sr(uuid: &str, name: &str, vdis: Vec<VdiMeta>) -> (Entry, SrMeta) {
    let meta = SrMeta {
        format: FORMAT,
        uuid: uuid.into(),
        name: name.into(),
        description: String::new(),
        mode: Mode::Owned,
        pool: "thinsr_pool".into(),
        pool_owned: true,
        file: None,
        vdis,
        policy: Default::default(),
        geometry: None,
        receiving: vec![],
    };
    (
        Entry::from_meta(&meta, &name.into(), &"thinsr_meta".into()),
        meta,
    )
}

/// An 8 GiB VG named `name` with 1 GiB free.
pub fn vg(name: &str, lvs: Vec<Lv>) -> Vg {
    Vg {
        name: name.into(),
        uuid: String::new(),
        size: Bytes(8 << 30),
        free: Bytes(1 << 30),
        extent_size: Bytes(4 << 20),
        tags: vec![],
        pvs: vec![],
        lvs,
        vdi_index: Default::default(),
    }
}

/// An inactive LV with these tags, in `pool` ("" for none).
pub fn lv(name: &str, size: u64, tags: &[&str], pool: &str) -> Lv {
    Lv {
        name: name.into(),
        uuid: String::new(),
        size: Bytes(size),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        attr: String::new(),
        layout: String::new(),
        pool: pool.into(),
        origin: String::new(),
        data_percent: None,
        metadata_percent: None,
        metadata_size: None,
        active: false,
        open: false,
        thin_id: None,
        chunk_size: None,
        zero: None,
    }
}
