//! The one-lvm-call paths (issue: scale) and what happens when what thinsr knows without a
//! report is wrong: a name taken by the admin's LV, an LV renamed behind thinsr's back, an
//! LV activated outside thinsr. Each falls back to a report and never touches the admin's LV.

mod common;

use common::*;

const MIB: u64 = 1 << 20;

fn lv_of(vdi: &str) -> String {
    json(&["vdi", "show", vdi])["lv"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn vdi_commands_make_one_lvm_call_and_fall_back_to_a_report_when_lvm_disagrees() {
    vm();
    sh(&["lvm", "vgcreate", "-y", "vg0", DISKS[0], DISKS[1]]);
    let web = admin_lv("vg0", "web", 8);
    json(&["sr", "introduce", "vg0", "--pool-size", "1G"]);

    // The first create learns the SR's geometry; from then on one call each.
    ok(&["vdi", "create", "first", "--size", "64M"]);
    assert_eq!(lvm_calls(&["vdi", "create", "disk", "--size", "64M"]), 1);
    assert_eq!(lvm_calls(&["vdi", "snapshot", "disk", "--name", "snap"]), 1);
    assert_eq!(lvm_calls(&["vdi", "clone", "disk", "--name", "copy"]), 1);
    assert_eq!(lvm_calls(&["vdi", "list"]), 1);
    assert_eq!(lvm_calls(&["vdi", "show", "snap"]), 1);
    assert_eq!(lvm_calls(&["vdi", "destroy", "--yes", "copy"]), 1);
    assert_eq!(
        lvm_calls(&["vdi", "create", "pre", "--size", "8M", "--preallocate"]),
        2
    );
    let snap = json(&["vdi", "show", "snap"]);
    assert_eq!(snap["read_write"], false);
    assert_eq!(snap["virtual_size"].as_u64().unwrap(), 64 * MIB);

    // The admin's LV holds the name the label makes: LVM refuses it, a report finds another.
    let before = state();
    assert_eq!(lvm_calls(&["vdi", "create", "web", "--size", "64M"]), 3);
    assert_eq!(lv_of("web"), "web+1");
    assert_eq!(sha256("/dev/vg0/web"), web);
    assert!(before.contains("web"));

    // Renamed behind thinsr's back: the snapshot finds the LV by its tag (and the metadata
    // learns the new name); the destroy of a VDI whose recorded name an LV of the admin's
    // now has removes thinsr's LV, found by tag, and not the admin's.
    let old = lv_of("disk");
    sh(&["lvm", "lvrename", "vg0", &old, "moved"]);
    assert_eq!(
        lvm_calls(&["vdi", "snapshot", "disk", "--name", "later"]),
        3
    );
    assert_eq!(lv_of("disk"), "moved");
    let old = lv_of("later");
    sh(&["lvm", "lvrename", "vg0", &old, "moved2"]);
    let decoy = admin_lv("vg0", &old, 4);
    ok(&["vdi", "destroy", "--yes", "later"]);
    ok(&["vdi", "destroy", "--yes", "disk"]);
    let names = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name", "vg0"]);
    assert!(
        !names
            .split_whitespace()
            .any(|n| n == "moved" || n == "moved2"),
        "{names}"
    );
    assert_eq!(
        sha256(&format!("/dev/vg0/{old}")),
        decoy,
        "the admin's LV was touched"
    );
    assert_eq!(sha256("/dev/vg0/web"), web);

    // Active through LVM, outside thinsr: destroy refuses and changes nothing.
    let lv = lv_of("snap");
    sh(&["lvm", "lvchange", "-ay", "-K", &format!("vg0/{lv}")]);
    let before = state();
    fails(&["vdi", "destroy", "--yes", "snap"], "VDI_ATTACHED");
    assert_eq!(state(), before);
    sh(&["lvm", "lvchange", "-an", &format!("vg0/{lv}")]);
    ok(&["vdi", "destroy", "--yes", "snap"]);
    let r = thinsr(&["sr", "check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn usage_of_inactive_vdis_is_read_from_the_pools_metadata() {
    vm();
    ok(&["sr", "create", DISKS[0], "--name", "s"]);
    ok(&["vdi", "create", "a", "--size", "256M"]);
    let dev = json(&["vdi", "attach", "a"])["path"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..5u64 {
        write_at(&dev, i * 32 * MIB, &noise(MIB as usize, i));
    }
    ok(&["vdi", "detach", "a"]);
    ok(&["vdi", "snapshot", "a", "--name", "b"]);
    ok(&["vdi", "create", "empty", "--size", "64M"]);
    // thin_ls on a metadata snapshot, as an admin would check it.
    sh(&[
        "dmsetup",
        "message",
        "s-thinsr_pool-tpool",
        "0",
        "reserve_metadata_snap",
    ]);
    let listed = sh(&[
        "thin_ls",
        "-m",
        "--no-headers",
        "-o",
        "DEV,MAPPED_BYTES",
        "/dev/mapper/s-thinsr_pool_tmeta",
    ]);
    sh(&[
        "dmsetup",
        "message",
        "s-thinsr_pool-tpool",
        "0",
        "release_metadata_snap",
    ]);
    let thin_ls: std::collections::HashMap<u64, u64> = listed
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
        })
        .collect();
    for (name, want) in [("a", 5 * MIB), ("b", 5 * MIB), ("empty", 0)] {
        let v = json(&["vdi", "show", name]);
        let id: u64 = sh(&[
            "lvm",
            "lvs",
            "--noheadings",
            "-o",
            "thin_id",
            &format!("s/{}", v["lv"].as_str().unwrap()),
        ])
        .trim()
        .parse()
        .unwrap();
        let got = v["physical_utilisation"].as_u64().unwrap();
        assert_eq!(got, want, "{name}");
        assert_eq!(Some(&got), thin_ls.get(&id), "{name} against thin_ls");
    }
    let r = thinsr(&["sr", "check"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
