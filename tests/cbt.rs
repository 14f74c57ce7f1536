//! Changed block tracking as Xen Orchestra's delta backups use it, through the xapi test
//! client (tests/common/xapi.rs) and the CLI: enable CBT, snapshot, write at known offsets,
//! snapshot, list the changed blocks; the same after SR detach/attach and after
//! data_destroy of the older snapshot; revert; pools of 64 KiB and 512 KiB units; clones
//! of templates; killed and crashed runs.

mod common;

use base64::Engine;
use common::xapi::*;
use common::*;
use serde_json::{json, Value};

const SR_UUID: &str = "0c4bd1f2-8a3e-4f5b-9c6d-7e8f9a0b1c2d";
const K: u64 = 65536;
const SIZE: u64 = 64 << 20;

fn volume(sr: &str, method: &str, args: Value) -> Value {
    let mut a = args;
    a["sr"] = json!(sr);
    a["dbg"] = json!("cbt test");
    call(VOLUME, method, a)
}

/// The set bits of a base64 bitmap, most significant first, and its length in bits.
fn bits(b64: &str) -> (Vec<u64>, u64) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut set = vec![];
    for (i, b) in bytes.iter().enumerate() {
        for k in 0..8 {
            if b & (0x80 >> k) != 0 {
                set.push((i * 8 + k) as u64);
            }
        }
    }
    (set, bytes.len() as u64 * 8)
}

/// The writes of every test: inside one block, across two, and the disk's last sector.
fn known_writes(dev: &str, seed: u64) -> Vec<u64> {
    write_at(dev, 5 * K + 4096, &noise(4096, seed));
    write_at(dev, 11 * K - 2048, &noise(4096, seed + 1));
    write_at(dev, SIZE - 512, &noise(512, seed + 2));
    vec![5, 10, 11, SIZE / K - 1]
}

/// Data everywhere the known writes go, before the first snapshot, so that they replace
/// blocks the snapshot holds (and data-destroy frees).
fn base_data(dev: &str) {
    for b in [0, 5, 10, 11, 200, SIZE / K - 1] {
        write_at(dev, b * K, &noise(K as usize, 100 + b));
    }
}

/// Writes `first` into `vdi`, snapshots it as `a`, makes the known writes, snapshots it as
/// `b`: returns the two snapshots' uuids and the blocks the known writes changed.
fn two_snapshots(vdi: &str, first: impl FnOnce(&str), seed: u64) -> (String, String, Vec<u64>) {
    let snapshot = |name: &str| {
        let v = json(&["vdi", "snapshot", vdi, "--name", name]);
        v["uuid"].as_str().unwrap().to_string()
    };
    let dev = ok(&["vdi", "attach", vdi]).trim().to_string();
    first(&dev);
    ok(&["vdi", "detach", vdi]);
    let a = snapshot("a");
    let dev = ok(&["vdi", "attach", vdi]).trim().to_string();
    let want = known_writes(&dev, seed);
    ok(&["vdi", "detach", vdi]);
    (a, snapshot("b"), want)
}

/// The checksum of a VDI's whole contents, attached read-only for the read.
fn sum_of(vdi: &str) -> String {
    let dev = ok(&["vdi", "attach", vdi, "--read-only"]);
    let sum = sha256(dev.trim());
    ok(&["vdi", "detach", vdi]);
    sum
}

fn changed(base: &str, new: &str) -> Value {
    json(&["vdi", "changed-blocks", base, new])
}

#[test]
fn changed_blocks_through_xapi_survive_detach_attach_data_destroy_and_revert() {
    vm();
    install();
    let (sr, config) = sr_create(DISKS[0], SR_UUID, "local");
    let q = call(VOLUME, "Plugin.Query", json!({}));
    for f in ["VDI_CONFIG_CBT", "VDI_REVERT"] {
        assert!(q["features"].as_array().unwrap().contains(&json!(f)), "{q}");
    }
    let v = volume(
        &sr,
        "Volume.create",
        json!({"name": "db", "description": "", "size": SIZE, "sharable": false}),
    );
    let key = v["key"].as_str().unwrap().to_string();
    let uri = v["uri"][0].as_str().unwrap().to_string();
    assert_eq!(v["cbt_enabled"], false, "{v}");
    volume(&sr, "Volume.enable_cbt", json!({"key": key}));
    assert_eq!(
        volume(&sr, "Volume.stat", json!({"key": key}))["cbt_enabled"],
        true
    );

    let dev = start(&uri);
    base_data(&dev);
    stop(&uri);
    let s1 = volume(&sr, "Volume.snapshot", json!({"key": key}));
    let s1 = s1["key"].as_str().unwrap().to_string();
    assert_eq!(
        volume(&sr, "Volume.stat", json!({"key": s1}))["cbt_enabled"],
        true
    );
    let dev = start(&uri);
    let want = known_writes(&dev, 1);
    stop(&uri);
    let s2 = volume(&sr, "Volume.snapshot", json!({"key": key}));
    let s2 = s2["key"].as_str().unwrap().to_string();
    let s2_sum = sum_of(&s2);

    let lcb = |a: &str, b: &str| {
        volume(
            &sr,
            "Volume.list_changed_blocks",
            json!({"key": a, "key2": b, "offset": 0, "length": -1}),
        )
    };
    let r = lcb(&s1, &s2);
    assert_eq!(r["granularity"], K, "{r}");
    let got = bits(r["bitmap"].as_str().unwrap());
    assert_eq!(got, (want.clone(), SIZE / K), "{r}");
    // The CLI says the same, with a summary.
    let c = changed(&s1, &s2);
    assert_eq!(c["bitmap"], r["bitmap"]);
    assert_eq!(c["changed"], 4 * K, "{c}");
    let human = ok(&["vdi", "changed-blocks", &s1, &s2]);
    assert!(human.contains("256.00 KiB of 64.00 MiB changed"), "{human}");
    // Part of the disk: blocks 10..=11 only, an offset off block boundaries widened.
    let part = volume(
        &sr,
        "Volume.list_changed_blocks",
        json!({"key": s1, "key2": s2, "offset": 10 * K + 1, "length": K}),
    );
    assert_eq!(bits(part["bitmap"].as_str().unwrap()), (vec![0, 1], 8));

    // Across SR detach and attach.
    call(VOLUME, "SR.detach", json!({"sr": sr}));
    call(VOLUME, "SR.attach", json!({"configuration": config}));
    assert_eq!(lcb(&s1, &s2)["bitmap"], r["bitmap"]);

    // data_destroy of the older snapshot keeps what the bitmap needs.
    volume(&sr, "Volume.data_destroy", json!({"key": s1}));
    let st = volume(&sr, "Volume.stat", json!({"key": s1}));
    assert_eq!(st["data_destroyed"], true, "{st}");
    assert_eq!(st["volume_type"], "CBT_Metadata", "{st}");
    let lvs = sh(&["lvs", "--noheadings", "-o", "lv_name,lv_tags", "local"]);
    assert!(!lvs.contains(&format!("thinsr_vdi={s1}")), "{lvs}");
    assert!(lvs.contains(&format!("thinsr_cbt={s1}")), "{lvs}");
    assert_eq!(lcb(&s1, &s2)["bitmap"], r["bitmap"]);
    let e = error(
        DATAPATH,
        "Datapath.attach",
        json!({"uri": format!("thinsr://{sr}/{s1}"), "domain": "0"}),
        "VDI_DATA_DESTROYED",
    );
    assert!(e.to_string().contains("destroyed"), "{e}");
    // The freed blocks go to other disks, and the VDI writes new blocks: none of that
    // may make a block look unchanged.
    let other = volume(
        &sr,
        "Volume.create",
        json!({"name": "other", "description": "", "size": SIZE, "sharable": false}),
    );
    let ouri = other["uri"][0].as_str().unwrap().to_string();
    let odev = start(&ouri);
    for b in 0..64 {
        write_at(&odev, b * K, &noise(K as usize, 500 + b));
    }
    stop(&ouri);
    let dev = start(&uri);
    write_at(&dev, 300 * K, &noise(4096, 9));
    // Block 200 discarded and rewritten: its new mapping may land on a freed block.
    sh(&[
        "blkdiscard",
        "-o",
        &(200 * K).to_string(),
        "-l",
        &K.to_string(),
        &dev,
    ]);
    write_at(&dev, 200 * K, &noise(K as usize, 300));
    stop(&uri);
    let s3 = volume(&sr, "Volume.snapshot", json!({"key": key}));
    let s3 = s3["key"].as_str().unwrap().to_string();
    let mut want3 = want.clone();
    want3.extend([200, 300]);
    want3.sort();
    assert_eq!(bits(lcb(&s1, &s3)["bitmap"].as_str().unwrap()).0, want3);
    assert_eq!(
        bits(lcb(&s2, &s3)["bitmap"].as_str().unwrap()).0,
        vec![200, 300]
    );
    // Again after detach/attach, the saved map read back from its LV.
    call(VOLUME, "SR.detach", json!({"sr": sr}));
    call(VOLUME, "SR.attach", json!({"configuration": config}));
    assert_eq!(bits(lcb(&s1, &s3)["bitmap"].as_str().unwrap()).0, want3);

    // Revert: refused while attached, then the disk equals the snapshot, identity kept.
    let dev = start(&uri);
    error(
        VOLUME,
        "Volume.revert",
        json!({"sr": sr, "key": key, "snapshot": s2}),
        "VDI_ATTACHED",
    );
    stop(&uri);
    let before = volume(&sr, "Volume.stat", json!({"key": key}));
    // The IDL's `returning unit`: ocaml-rpc reads only null as unit.
    let reverted = volume(&sr, "Volume.revert", json!({"key": key, "snapshot": s2}));
    assert_eq!(reverted, Value::Null);
    let after = volume(&sr, "Volume.stat", json!({"key": key}));
    assert_eq!(after["volume_type"], "Data");
    for f in ["key", "uuid", "uri", "name", "cbt_enabled", "lv"] {
        assert_eq!(after[f], before[f], "{f}: {after}");
    }
    let dev2 = start(&uri);
    assert_eq!(dev2, dev);
    assert_eq!(sha256(&dev2), s2_sum);
    stop(&uri);
    // Unrelated volumes: a clear error.
    let e = error(
        VOLUME,
        "Volume.list_changed_blocks",
        json!({"sr": sr, "key": s2, "key2": other["key"], "offset": 0, "length": -1}),
        "INVALID_ARGUMENT",
    );
    assert!(e.to_string().contains("not of one chain"), "{e}");
    let report = json(&["sr", "check", "local"]);
    assert_eq!(report["findings"], json!([]), "{report}");
    volume(&sr, "Volume.destroy", json!({"key": s1}));
    let lvs = sh(&["lvs", "--noheadings", "-o", "lv_tags", "local"]);
    assert!(!lvs.contains(&format!("thinsr_cbt={s1}")), "{lvs}");
}

#[test]
fn pools_of_64k_and_512k_units_give_one_bitmap_and_template_clones_count_their_own() {
    vm();
    install();
    json(&["sr", "create", DISKS[0], "--name", "small"]);
    sh(&["pvcreate", "-q", DISKS[1]]);
    sh(&["vgcreate", "-q", "big", DISKS[1]]);
    sh(&[
        "lvcreate",
        "-q",
        "--type",
        "thin-pool",
        "--chunksize",
        "512k",
        "-L",
        "1G",
        "-n",
        "vms",
        "big",
    ]);
    json(&["sr", "introduce", "big", "--pool", "vms"]);
    let mut maps = vec![];
    for sr in ["small", "big"] {
        json(&["vdi", "create", "d", "--size", "64M", "--sr", sr]);
        let d = format!("{sr}/d");
        json(&["vdi", "cbt", &d, "on"]);
        let (a, b, want) = two_snapshots(&d, base_data, 7);
        let c = changed(&a, &b);
        assert_eq!(
            bits(c["bitmap"].as_str().unwrap()),
            (want, SIZE / K),
            "{sr}: {c}"
        );
        // xapi's call gives the same bitmap.
        let uuid = json(&["sr", "show", sr])["uuid"].clone();
        let r = call(
            VOLUME,
            "Volume.list_changed_blocks",
            json!({"dbg": "", "sr": uuid, "key": a, "key2": b, "offset": 0, "length": -1}),
        );
        assert_eq!(r["bitmap"], c["bitmap"], "{sr}");
        maps.push(c);
    }
    assert_eq!(maps[0]["bitmap"], maps[1]["bitmap"]);
    assert_eq!(maps[0]["pool_block"], K);
    assert_eq!(maps[1]["pool_block"], 8 * K);
    // Three 512 KiB units changed (blocks 10 and 11 share one), read on both sides to find
    // the 64 KiB blocks.
    assert_eq!(maps[1]["compared"], 3 * 8 * K, "{}", maps[1]);

    // A template's clone: what it reads from the template never counts, its own writes do.
    std::fs::write("/tmp/t.raw", noise(4 << 20, 7)).unwrap();
    std::fs::File::options()
        .write(true)
        .open("/tmp/t.raw")
        .unwrap()
        .set_len(SIZE)
        .unwrap();
    sh(&[
        "qemu-img",
        "convert",
        "-O",
        "qcow2",
        "/tmp/t.raw",
        "/tmp/t.qcow2",
    ]);
    std::fs::remove_file("/tmp/t.raw").unwrap();
    json(&[
        "template",
        "introduce",
        "file:///tmp/t.qcow2",
        "--name",
        "tpl",
        "--sr",
        "small",
    ]);
    json(&["vdi", "clone", "tpl", "--name", "web"]);
    json(&["vdi", "cbt", "web", "on"]);
    let (a, b, want) = two_snapshots("web", |dev| write_at(dev, 2 * K, &noise(4096, 1)), 3);
    assert_eq!(bits(changed(&a, &b)["bitmap"].as_str().unwrap()).0, want);
    // An export against a data-destroyed base shares the core.
    json(&["--yes", "vdi", "data-destroy", &a]);
    ok(&[
        "export",
        &b,
        "--base",
        &a,
        "--format",
        "qcow2",
        "-o",
        "/tmp/delta.qcow2",
        "--backing-name",
        "base.qcow2",
    ]);
    // An empty stand-in for the base's own export, which the delta falls through to.
    sh(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "/tmp/base.qcow2",
        "64M",
    ]);
    let map = sh(&["qemu-img", "map", "--output=json", "/tmp/delta.qcow2"]);
    let data: u64 = serde_json::from_str::<Value>(&map)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"] == true && e["depth"] == 0)
        .map(|e| e["length"].as_u64().unwrap())
        .sum();
    assert_eq!(data, 4 * K, "{map}");
}

/// The pool's held metadata root in its status ("-" when none is reserved).
fn held_root() -> String {
    let pool = sh(&["dmsetup", "ls"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .find(|n| n.ends_with("-tpool"))
        .expect("the pool is active");
    let status = sh(&["dmsetup", "status", &pool]);
    status.split_whitespace().nth(6).unwrap().to_string()
}

#[test]
fn killed_and_crashed_runs_leave_nothing_held_and_are_finished() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    json(&["vdi", "create", "d", "--size", "64M"]);
    let (a, b, want) = two_snapshots("d", base_data, 4);

    // Killed while the pool's metadata snapshot is reserved: the next call releases it.
    assert_eq!(held_root(), "-");
    crash_at(
        "thin.metadata-snapshot-held",
        &["vdi", "changed-blocks", &a, &b],
    );
    assert_ne!(held_root(), "-", "the kill left the snapshot reserved");
    assert_eq!(bits(changed(&a, &b)["bitmap"].as_str().unwrap()).0, want);
    assert_eq!(held_root(), "-");

    // data-destroy stopped after writing its map: an orphan map, the data intact.
    crash_at(
        "data-destroy.map-written",
        &["--yes", "vdi", "data-destroy", &a],
    );
    let r = json(&["sr", "check", "local", "--repair", "--yes"]);
    assert_eq!(r["findings"][0]["kind"], "orphan_block_map", "{r}");
    let d = ok(&["vdi", "attach", &a, "--read-only"]);
    ok(&["vdi", "detach", &a]);
    assert!(d.contains("/dev/"), "{d}");
    // Stopped after recording it: the data LV is removed by the repair.
    crash_at(
        "data-destroy.recorded",
        &["--yes", "vdi", "data-destroy", &a],
    );
    fails(&["vdi", "attach", &a, "--read-only"], "VDI_DATA_DESTROYED");
    let r = json(&["sr", "check", "local", "--repair", "--yes"]);
    assert_eq!(r["findings"][0]["kind"], "data_destroy_unfinished", "{r}");
    assert_eq!(json(&["sr", "check", "local"])["findings"], json!([]));
    assert_eq!(bits(changed(&a, &b)["bitmap"].as_str().unwrap()).0, want);

    // A revert stopped at each step is finished by running it again or by the repair.
    let sum_b = sum_of(&b);
    let lv = json(&["vdi", "show", "d"])["lv"].clone();
    for (i, point) in ["revert.recorded", "revert.old-removed", "revert.created"]
        .iter()
        .enumerate()
    {
        let dev = ok(&["vdi", "attach", "d"]).trim().to_string();
        write_at(&dev, 0, &noise(4096, 40 + i as u64));
        ok(&["vdi", "detach", "d"]);
        crash_at(point, &["--yes", "vdi", "revert", "d", &b]);
        fails(&["vdi", "attach", "d"], "VDI_INCOMPLETE");
        if i == 1 {
            json(&["--yes", "vdi", "revert", "d", &b]);
        } else {
            let r = json(&["sr", "check", "local", "--repair", "--yes"]);
            assert_eq!(
                r["findings"][0]["kind"], "revert_unfinished",
                "{point}: {r}"
            );
        }
        assert_eq!(json(&["vdi", "show", "d"])["lv"], lv, "{point}");
        let dev = ok(&["vdi", "attach", "d"]).trim().to_string();
        assert_eq!(sha256(&dev), sum_b, "{point}");
        ok(&["vdi", "detach", "d"]);
    }
    assert_eq!(json(&["sr", "check", "local"])["findings"], json!([]));
}
