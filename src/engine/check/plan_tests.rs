//! Every rule of `sr check`, on the leftovers of each crash point the VM tests stop at
//! (tests/check.rs, tests/cbt.rs), without a host: what is found, what `--repair` writes
//! into the metadata's entries, and which host actions it takes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use super::facts::{Device, Facts, StrayLoop};
use super::finding::{FindingKind as K, Fix};
use super::plan::{plan, Mode, Plan};
use crate::engine::fixtures::{lv, sr, vdi, vg};
use crate::engine::meta::{Composing, Pending, VdiKind, VdiMeta};
use crate::host::dm::OurDevice;
use crate::host::lvm::Lv;
use crate::ids::{LvName, LvPath};
use crate::units::Bytes;

const SR: &str = "s1";
const A: &str = "aaaa0000-0000-0000-0000-000000000001";
const B: &str = "bbbb0000-0000-0000-0000-000000000002";
const T: &str = "tttt0000-0000-0000-0000-000000000003";

const LOOK: Mode = Mode {
    repair: false,
    yes: false,
};
const REPAIR: Mode = Mode {
    repair: true,
    yes: false,
};
const YES: Mode = Mode {
    repair: true,
    yes: true,
};

/// The SR's pool, zeroing new blocks, as thinsr makes it.
fn pool() -> Lv {
    Lv {
        attr: "twi-aotz--".into(),
        layout: "pool,thin".into(),
        ..lv("thinsr_pool", 4 << 30, &["thinsr_sr=s1"], "")
    }
}

/// A thin LV of the SR, tagged as VDI `uuid`'s.
fn thin(name: &str, uuid: &str, id: u32) -> Lv {
    Lv {
        attr: "Vwi-a-tz--".into(),
        thin_id: Some(id),
        ..lv(
            name,
            1 << 30,
            &["thinsr_sr=s1", &format!("thinsr_vdi={uuid}")],
            "thinsr_pool",
        )
    }
}

/// Facts of SR `s1` (VG `vg`) with these entries and LVs besides its pool; the kernel's
/// thin devices are the LVs' own.
fn facts(vdis: Vec<VdiMeta>, lvs: Vec<Lv>) -> Facts {
    let (entry, meta) = sr(SR, "vg", vdis);
    let mut all = vec![pool()];
    all.extend(lvs);
    let thin_devices: HashMap<u32, u64> =
        all.iter().filter_map(|l| Some((l.thin_id?, 0))).collect();
    Facts {
        entry,
        meta,
        vg: vg("vg", all),
        devices: vec![],
        dead_origins: BTreeMap::new(),
        sources_changed: BTreeMap::new(),
        stray_loops: vec![],
        thin_devices: Some(thin_devices),
        pool_trouble: None,
        compose_logs: HashSet::new(),
        exports: vec![],
        mirrors: vec![],
        shares: vec![],
    }
}

/// `vg/lv` of the fixtures' VG.
fn at(lv: &str) -> LvPath {
    LvPath::new(&"vg".into(), &lv.into())
}

/// Template T, 1 GiB, no cache or local copy.
fn template_t() -> VdiMeta {
    VdiMeta::new(
        &T.into(),
        "t",
        VdiKind::Template,
        &LvName::default(),
        Bytes(1 << 30),
    )
}

fn kinds(p: &Plan) -> Vec<K> {
    p.findings.iter().map(|f| f.kind).collect()
}

fn fixes(p: &Plan) -> Vec<Fix> {
    p.findings.iter().flat_map(|f| f.fixes.clone()).collect()
}

fn device(name: &str, vdi: &str, live: bool, open: i32, readers: usize) -> Device {
    Device {
        dev: OurDevice {
            name: name.into(),
            vdi: vdi.into(),
            open_count: open,
            origin: None,
            read_only: false,
            live,
        },
        readers,
    }
}

#[test]
fn a_consistent_sr_has_no_findings() {
    let f = facts(vec![vdi(A, "a", "a")], vec![thin("a", A, 1)]);
    for m in [LOOK, REPAIR, YES] {
        let p = plan(&f, m);
        assert!(p.findings.is_empty(), "{:?}", p.findings);
        assert!(p.vdis.is_none());
    }
}

#[test]
fn an_entry_whose_lv_is_gone_is_forgotten() {
    // vdi-destroy.after-lvremove: the LV went, the entry stayed.
    let f = facts(
        vec![vdi(A, "a", "a"), vdi(B, "b", "b")],
        vec![thin("b", B, 2)],
    );
    let p = plan(&f, LOOK);
    assert_eq!(kinds(&p), [K::MissingLv]);
    assert!(!p.findings[0].repaired && p.vdis.is_none());
    let p = plan(&f, REPAIR);
    assert!(p.findings[0].repaired && fixes(&p).is_empty());
    let left: Vec<&str> = p
        .vdis
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.uuid.as_str())
        .collect();
    assert_eq!(left, [B]);
}

#[test]
fn a_renamed_lv_is_recorded() {
    // vdi-rename.after-lvrename: the LV has its new name, the metadata the old one.
    let f = facts(
        vec![vdi(A, "new name", "old_name")],
        vec![thin("new_name", A, 1)],
    );
    let p = plan(&f, REPAIR);
    assert_eq!(kinds(&p), [K::RenamedLv]);
    assert_eq!(p.vdis.unwrap()[0].lv, "new_name");
}

#[test]
fn unfinished_zeroing_is_finished_unless_open() {
    // vdi-create.zeroing: a preallocated VDI zeroed up to 1 GiB of 4.
    let v = VdiMeta {
        pending: Some(Pending::Zeroing {
            from: Bytes(1 << 30),
        }),
        ..VdiMeta::new(
            &A.into(),
            "fat",
            VdiKind::Preallocated,
            &"fat".into(),
            Bytes(4 << 30),
        )
    };
    let fat = || {
        lv(
            "fat",
            4 << 30,
            &["thinsr_sr=s1", &format!("thinsr_vdi={A}")],
            "",
        )
    };
    let p = plan(&facts(vec![v.clone()], vec![fat()]), REPAIR);
    assert_eq!(kinds(&p), [K::IncompleteZeroing]);
    assert!(
        p.findings[0].problem.contains("3.00 GiB of 4.00 GiB"),
        "{}",
        p.findings[0].problem
    );
    assert_eq!(
        fixes(&p),
        [Fix::Zero {
            lv: "fat".into(),
            from: Bytes(1 << 30),
            to: Bytes(4 << 30),
            what: "zeroing fat".into()
        }]
    );
    assert_eq!(p.vdis.unwrap()[0].pending, None);
    // Open: perhaps another thinsr is still zeroing it.
    let open = Lv {
        open: true,
        ..fat()
    };
    let p = plan(&facts(vec![v], vec![open]), YES);
    assert!(!p.findings[0].repaired && fixes(&p).is_empty() && p.vdis.is_none());
    assert!(p.findings[0].repair.starts_with("none now"));
}

#[test]
fn an_unfinished_import_is_removed_with_yes_only() {
    let v = VdiMeta {
        pending: Some(Pending::Importing),
        ..vdi(A, "imp", "imp")
    };
    let f = facts(vec![v], vec![thin("imp", A, 1)]);
    let p = plan(&f, REPAIR);
    assert_eq!(kinds(&p), [K::IncompleteImport]);
    assert!(p.findings[0].repair.contains("(needs --yes)") && !p.findings[0].repaired);
    assert!(p.vdis.is_none());
    let p = plan(&f, YES);
    // Removed and forgotten, and not found again as an orphan LV.
    assert_eq!(kinds(&p), [K::IncompleteImport]);
    assert_eq!(fixes(&p), [Fix::RemoveLv(at("imp"))]);
    assert!(p.vdis.unwrap().is_empty());
}

#[test]
fn a_tagged_thin_lv_without_entry_is_adopted() {
    // vdi-create.after-lvcreate, vdi-snapshot.after-lvcreate: nothing a VM wrote is lost.
    let snap = Lv {
        attr: "Vri---tz-k".into(),
        tags: vec![
            "thinsr_sr=s1".into(),
            format!("thinsr_vdi={B}"),
            format!("thinsr_origin={T}"),
        ],
        ..thin("snap", B, 2)
    };
    let f = facts(vec![], vec![thin("disk", A, 1), snap]);
    let p = plan(&f, LOOK);
    assert_eq!(kinds(&p), [K::OrphanThinLv, K::OrphanThinLv]);
    let vdis = plan(&f, REPAIR).vdis.unwrap();
    assert_eq!((vdis[0].uuid.as_str(), vdis[0].kind), (A, VdiKind::Thin));
    assert_eq!(
        (vdis[1].uuid.as_str(), vdis[1].kind),
        (B, VdiKind::Snapshot)
    );
    assert_eq!(vdis[1].origin.as_deref(), Some(T));
    assert_eq!(vdis[1].name, "snap");
}

#[test]
fn a_tagged_preallocated_lv_without_entry_is_removed_with_yes() {
    let fat = lv(
        "fat",
        1 << 30,
        &["thinsr_sr=s1", &format!("thinsr_vdi={A}")],
        "",
    );
    let f = facts(vec![], vec![fat]);
    let p = plan(&f, REPAIR);
    assert_eq!(kinds(&p), [K::OrphanLv]);
    assert!(fixes(&p).is_empty() && p.findings[0].repair.contains("needs --yes"));
    assert_eq!(fixes(&plan(&f, YES)), [Fix::RemoveLv(at("fat"))]);
}

#[test]
fn caches_and_local_copies_no_template_uses_are_removed() {
    let t = VdiMeta {
        cache: Some("t_cache".into()),
        ..template_t()
    };
    let tagged = |name: &str, tag: &str| lv(name, 1 << 30, &["thinsr_sr=s1", tag], "thinsr_pool");
    let f = facts(
        vec![t],
        vec![
            tagged("t_cache", &format!("thinsr_cache={T}")),
            tagged("t_old_cache", &format!("thinsr_cache={T}")),
            tagged("t_local", &format!("thinsr_local={T}")),
            Lv {
                open: true,
                ..tagged("t_busy", &format!("thinsr_local={T}"))
            },
        ],
    );
    let p = plan(&f, REPAIR);
    assert_eq!(kinds(&p), [K::OrphanCache, K::OrphanLocalCopy]);
    assert_eq!(
        fixes(&p),
        [
            Fix::RemoveLv(at("t_old_cache")),
            Fix::RemoveLv(at("t_local"))
        ]
    );
}

#[test]
fn a_template_whose_cache_or_copy_is_gone_is_served_from_its_image() {
    let t = VdiMeta {
        cache: Some("gone_cache".into()),
        local: Some("gone_local".into()),
        ..template_t()
    };
    let p = plan(&facts(vec![t], vec![]), REPAIR);
    assert_eq!(kinds(&p), [K::MissingLocalCopy, K::MissingCache]);
    let t = &p.vdis.unwrap()[0];
    assert!(t.cache.is_none() && t.local.is_none());
}

#[test]
fn devices_left_by_a_crash() {
    let t = template_t();
    let mut f = facts(vec![vdi(A, "a", "a"), t], vec![thin("a", A, 1)]);
    f.devices = vec![
        // vdi-attach.after-create: created, never resumed.
        device("thinsr-a", A, false, 0, 0),
        // A local copy's device that no clone reads any more.
        device("thinsr-local", &format!("local-{T}"), true, 0, 0),
        // A device of a VDI the metadata forgot, idle and open.
        device("thinsr-x", B, true, 0, 0),
        device(
            "thinsr-y",
            "cccc0000-0000-0000-0000-000000000004",
            true,
            1,
            0,
        ),
        // Not this SR's: never touched.
        device(
            "thinsr-other",
            "dddd0000-0000-0000-0000-000000000005",
            true,
            0,
            0,
        ),
    ];
    // B and C are tagged LVs of the SR whose entries are gone; here only their devices
    // matter, so they are preallocated LVs (reported, not adopted, without --yes).
    let tag = |u: &str| format!("thinsr_vdi={u}");
    f.vg.lvs
        .push(lv("b", 1 << 20, &["thinsr_sr=s1", &tag(B)], ""));
    f.vg.lvs.push(lv(
        "c",
        1 << 20,
        &["thinsr_sr=s1", &tag("cccc0000-0000-0000-0000-000000000004")],
        "",
    ));
    let p = plan(&f, REPAIR);
    let devs: Vec<K> = kinds(&p)
        .into_iter()
        .filter(|k| *k != K::OrphanLv)
        .collect();
    assert_eq!(
        devs,
        [
            K::StaleDevice,
            K::IdleDevice,
            K::OrphanDevice,
            K::OrphanDevice
        ]
    );
    assert_eq!(
        fixes(&p),
        [
            Fix::ReviveOrRemove {
                device: "thinsr-a".into(),
                vdi: A.into()
            },
            Fix::RemoveDevice {
                device: "thinsr-local".into(),
                vdi: format!("local-{T}")
            },
        ]
    );
    // With --yes the idle orphan goes; the open one stays, with the reason.
    let p = plan(&f, YES);
    assert!(fixes(&p).contains(&Fix::RemoveDevice {
        device: "thinsr-x".into(),
        vdi: B.into()
    }));
    let open = p
        .findings
        .iter()
        .find(|x| x.subject.contains("thinsr-y"))
        .unwrap();
    assert!(!open.repaired && open.repair.starts_with("none now"));
    // A local copy a clone still reads is in use, not idle.
    f.devices = vec![device("thinsr-local", &format!("local-{T}"), true, 0, 1)];
    assert!(!kinds(&plan(&f, YES)).contains(&K::IdleDevice));
}

#[test]
fn dead_template_servers_and_stray_loops() {
    let t = template_t();
    let mut f = facts(vec![t], vec![]);
    f.dead_origins.insert(T.into(), 0);
    f.stray_loops = vec![
        StrayLoop {
            device: PathBuf::from("/dev/loop3"),
            file: PathBuf::from("/srv/t.raw"),
            held: false,
        },
        StrayLoop {
            device: PathBuf::from("/dev/loop4"),
            file: PathBuf::from("/srv/t.raw"),
            held: true,
        },
    ];
    let p = plan(&f, YES);
    assert_eq!(kinds(&p), [K::DeadOrigin, K::StrayLoop, K::StrayLoop]);
    assert_eq!(
        fixes(&p),
        [
            Fix::ReleaseOrigin(T.into()),
            Fix::DetachLoop(PathBuf::from("/dev/loop3"))
        ]
    );
    // Clones still reading a dead server: the admin must reattach them.
    f.dead_origins.insert(T.into(), 2);
    let p = plan(&f, YES);
    assert!(!p.findings[0].repaired && p.findings[0].problem.contains("2 attached clone(s)"));
}

/// Snapshot B, its data destroyed, its block map saved in LV `b_map`.
fn data_destroyed_b() -> VdiMeta {
    VdiMeta {
        cbt_map: Some("b_map".into()),
        ..VdiMeta::new(
            &B.into(),
            "b",
            VdiKind::Snapshot,
            &"b".into(),
            Bytes(1 << 30),
        )
    }
}

#[test]
fn interrupted_reverts_and_data_destroys() {
    // revert.old-removed: the entry says reverting, its LV is gone.
    let reverting = VdiMeta {
        reverting: Some(B.into()),
        ..vdi(A, "a", "a")
    };
    // data-destroy after the map was saved: the data LV still there.
    let destroyed = data_destroyed_b();
    let map = |name: &str, of: &str| {
        lv(
            name,
            4 << 20,
            &["thinsr_sr=s1", &format!("thinsr_cbt={of}")],
            "thinsr_pool",
        )
    };
    let f = facts(
        vec![reverting, destroyed],
        vec![thin("b", B, 2), map("b_map", B), map("old_map", A)],
    );
    let p = plan(&f, REPAIR);
    assert_eq!(
        kinds(&p),
        [
            K::RevertUnfinished,
            K::DataDestroyUnfinished,
            K::OrphanBlockMap
        ]
    );
    assert_eq!(
        fixes(&p),
        [
            Fix::FinishRevert(A.into()),
            Fix::RemoveLv(at("b")),
            Fix::RemoveLv(at("old_map"))
        ]
    );
    // Neither is a missing LV, nor does their state change in the metadata here.
    assert!(p.vdis.is_none());
    // A saved map that is gone: only the admin can decide.
    let f = facts(vec![data_destroyed_b()], vec![]);
    let p = plan(&f, YES);
    assert_eq!(kinds(&p), [K::MissingBlockMap]);
    assert!(!p.findings[0].repaired);
}

#[test]
fn thin_devices_lvm_does_not_know_are_freed_in_owned_pools_only() {
    let mut f = facts(
        vec![vdi(A, "a", "a")],
        vec![thin("a", A, 1), thin("lost", B, 7)],
    );
    let kernel = f.thin_devices.as_mut().unwrap();
    kernel.insert(9, 64 << 20);
    kernel.remove(&7);
    let p = plan(&f, YES);
    // B's LV without its entry is adopted; its data is gone from the pool.
    assert_eq!(
        kinds(&p),
        [K::OrphanThinLv, K::UnknownThinDevice, K::MissingThinDevice]
    );
    assert!(p.findings[1].problem.contains("64.00 MiB"));
    assert_eq!(fixes(&p), [Fix::FreeThinDevice(9)]);
    assert!(fixes(&plan(&f, REPAIR)).is_empty());
    f.meta.pool_owned = false;
    let p = plan(&f, YES);
    assert!(
        fixes(&p).is_empty()
            && p.findings[1]
                .repair
                .starts_with("none: the pool is the admin's")
    );
    // An inactive pool's metadata was not read: nothing to say about thin ids.
    f.thin_devices = None;
    assert_eq!(kinds(&plan(&f, LOOK)), [K::OrphanThinLv]);
}

#[test]
fn a_pool_that_stopped_zeroing_or_is_in_trouble() {
    let mut f = facts(vec![], vec![]);
    f.vg.lvs[0].attr = "twi-aot---".into();
    f.pool_trouble = Some("read-only".into());
    let p = plan(&f, REPAIR);
    assert_eq!(kinds(&p), [K::UnzeroedPool, K::Pool]);
    assert_eq!(fixes(&p), [Fix::TurnOnZeroing(at("thinsr_pool"))]);
    assert!(!p.findings[1].repaired);
    // The admin's own pool: only with --yes.
    f.meta.pool_owned = false;
    assert!(fixes(&plan(&f, REPAIR)).is_empty());
    assert_eq!(
        fixes(&plan(&f, YES)),
        [Fix::TurnOnZeroing(at("thinsr_pool"))]
    );
}

#[test]
fn a_stale_registry_entry_is_replaced_by_the_metadata() {
    // sr-rename after the metadata write, before the registry's.
    let mut f = facts(vec![], vec![]);
    f.meta.name = "renamed".into();
    let p = plan(&f, REPAIR);
    assert_eq!(kinds(&p), [K::RegistryStale]);
    match &fixes(&p)[..] {
        [Fix::CopyToRegistry(e)] => assert_eq!(e.name, "renamed"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_kind_has_one_stable_name() {
    use std::collections::HashSet;
    let all = [
        K::MissingLocalCopy,
        K::MissingCache,
        K::MissingLv,
        K::RenamedLv,
        K::IncompleteZeroing,
        K::IncompleteImport,
        K::OrphanThinLv,
        K::OrphanLv,
        K::OrphanCache,
        K::OrphanLocalCopy,
        K::StaleDevice,
        K::IdleDevice,
        K::OrphanDevice,
        K::DeadOrigin,
        K::StrayLoop,
        K::RevertUnfinished,
        K::DataDestroyUnfinished,
        K::MissingBlockMap,
        K::OrphanBlockMap,
        K::UnknownThinDevice,
        K::MissingThinDevice,
        K::UnzeroedPool,
        K::Pool,
        K::RegistryStale,
    ];
    let names: HashSet<&str> = all.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), all.len());
    for k in all {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
}

#[test]
fn an_interrupted_compose_goes_forward_while_its_log_lives_and_is_undone_without() {
    // compose.created: A (the leaf) composing onto B, the new LV made; B's LV removed
    // meanwhile is no missing LV (compose.parent-removed).
    let composing = |copied: bool| VdiMeta {
        composing: Some(Composing {
            parent: B.into(),
            lv: "a.composed".into(),
            copied,
        }),
        ..vdi(A, "a", "a")
    };
    let new_lv = |name: &str, of: &str| Lv {
        thin_id: Some(9),
        ..lv(
            name,
            1 << 30,
            &["thinsr_sr=s1", &format!("thinsr_compose={of}")],
            "thinsr_pool",
        )
    };
    let lvs = vec![thin("a", A, 1), new_lv("a.composed", A)];
    let mut f = facts(vec![composing(false), vdi(B, "b", "b")], lvs.clone());
    assert_eq!(kinds(&plan(&f, LOOK)), [K::ComposeUnfinished]);
    let undo = plan(&f, REPAIR);
    assert_eq!(
        fixes(&undo),
        [Fix::FinishCompose {
            vdi: A.into(),
            redo: false
        }]
    );
    assert!(
        undo.findings[0].repair.starts_with("undo"),
        "{:?}",
        undo.findings
    );
    f.compose_logs.insert(A.into());
    assert_eq!(
        fixes(&plan(&f, REPAIR)),
        [Fix::FinishCompose {
            vdi: A.into(),
            redo: true
        }]
    );
    // After the copy: forward, log or not; the parent's LV already gone is no finding.
    let f = facts(vec![composing(true), vdi(B, "b", "b")], lvs);
    let p = plan(&f, REPAIR);
    assert_eq!(kinds(&p), [K::ComposeUnfinished]);
    assert_eq!(
        fixes(&p),
        [Fix::FinishCompose {
            vdi: A.into(),
            redo: true
        }]
    );
    assert!(p.vdis.is_none());
    // A compose LV nobody's compose names (the intent undone, its removal interrupted).
    let f = facts(
        vec![vdi(A, "a", "a")],
        vec![thin("a", A, 1), new_lv("a.composed", A)],
    );
    let p = plan(&f, REPAIR);
    assert_eq!(kinds(&p), [K::OrphanComposeLv]);
    assert_eq!(fixes(&p), [Fix::RemoveLv(at("a.composed"))]);
}

#[test]
fn an_export_of_a_volume_no_longer_attached_is_stopped() {
    // A runs an export and is attached (its LV active): nothing to say. B's export runs
    // though its LV is inactive; C's VDI is gone altogether.
    let inactive = |name: &str, uuid: &str, id: u32| Lv {
        attr: "Vwi---tz--".into(),
        active: false,
        ..thin(name, uuid, id)
    };
    let c = "cccc0000-0000-0000-0000-000000000004";
    let mut f = facts(
        vec![vdi(A, "a", "a"), vdi(B, "b", "b")],
        vec![
            Lv {
                active: true,
                ..thin("a", A, 1)
            },
            inactive("b", B, 2),
        ],
    );
    f.exports = vec![A.into(), B.into(), c.into()];
    assert_eq!(kinds(&plan(&f, LOOK)), [K::StrayExport, K::StrayExport]);
    let p = plan(&f, REPAIR);
    assert_eq!(
        fixes(&p),
        [Fix::StopExport(B.into()), Fix::StopExport(c.into())]
    );
    assert!(
        p.findings[1].subject.contains("an unknown VDI"),
        "{:?}",
        p.findings
    );
}
