//! `sr check [--repair]` after crashes injected into VDI commands (THINSR_CRASH_AT).

mod common;

use common::*;

const MIB: u64 = 1 << 20;

/// Runs thinsr with a crash injected at `point`; it must not succeed.
fn crash(point: &str, args: &[&str]) {
    let r = thinsr_cmd(args)
        .env("THINSR_CRASH_AT", point)
        .output()
        .unwrap();
    assert_ne!(r.status.code(), Some(0), "{args:?} survived {point}");
}

fn check(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["--json", "sr", "check", "local"];
    all.extend_from_slice(args);
    let r = thinsr(&all);
    (r.code, r.json())
}

fn kinds(report: &serde_json::Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn check_finds_and_repairs_what_crashed_commands_left() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    json(&["vdi", "create", "keep", "--size", "16M"]);
    let (code, r) = check(&[]);
    assert_eq!((code, kinds(&r).len()), (0, 0), "{r}");

    // Crashes after the LVM step and before the metadata write, one per command.
    crash(
        "vdi-create.after-lvcreate",
        &["vdi", "create", "orphan", "--size", "16M"],
    );
    json(&["vdi", "create", "doomed", "--size", "16M"]);
    crash(
        "vdi-destroy.after-lvremove",
        &["vdi", "destroy", "doomed", "--yes"],
    );
    crash(
        "vdi-rename.after-lvrename",
        &["vdi", "rename", "keep", "kept now"],
    );
    // A preallocation that dies before zeroing anything, on space that held data.
    sh(&["lvm", "lvcreate", "-y", "-n", "junk", "-L", "64m", "local"]);
    write_at("/dev/local/junk", 0, &noise(64 * MIB as usize, 9));
    sh(&["lvm", "lvremove", "-y", "local/junk"]);
    crash(
        "zero.step",
        &["vdi", "create", "fat", "--size", "64M", "--preallocate"],
    );
    fails(&["vdi", "attach", "fat"], "VDI_INCOMPLETE");
    // And one that dies before it is recorded at all.
    crash(
        "vdi-create.after-lvcreate",
        &["vdi", "create", "lost", "--size", "8M", "--preallocate"],
    );

    let before = state();
    let (code, r) = check(&[]);
    assert_eq!(code, 1, "{r}");
    let mut found = kinds(&r);
    found.sort();
    assert_eq!(
        found,
        [
            "incomplete_zeroing",
            "missing_lv",
            "orphan_lv",
            "orphan_thin_lv",
            "renamed_lv"
        ],
        "{r}"
    );
    assert_eq!(
        before,
        state(),
        "a check without --repair changed something"
    );

    // --repair without --yes: everything but the removal.
    let (code, r) = check(&["--repair"]);
    assert_eq!(code, 1, "{r}");
    let left: Vec<_> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["repaired"] == false)
        .collect();
    assert_eq!(left.len(), 1, "{r}");
    assert_eq!(left[0]["kind"], "orphan_lv");
    assert!(left[0]["repair"].as_str().unwrap().contains("--yes"));
    assert!(sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name", "local"]).contains("lost"));

    let (code, r) = check(&["--repair", "--yes"]);
    assert_eq!((code, kinds(&r)), (0, vec!["orphan_lv".to_string()]), "{r}");
    let (code, r) = check(&[]);
    assert_eq!((code, kinds(&r).len()), (0, 0), "{r}");

    // What the repairs left: the adopted orphan, the renamed VDI under its new LV name,
    // no trace of the destroyed one, and a preallocated VDI that reads zero.
    let list = json(&["vdi", "list"]);
    let lvs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["lv"].as_str().unwrap())
        .collect();
    assert_eq!(lvs.len(), 3, "{list}");
    for want in ["orphan", "kept_now", "fat"] {
        assert!(lvs.contains(&want), "{want} in {lvs:?}");
    }
    assert_eq!(json(&["vdi", "show", "orphan"])["name"], "orphan");
    let dev = ok(&["vdi", "attach", "fat"]).trim().to_string();
    assert!(
        read_at(&dev, 0, 64 << 20).iter().all(|b| *b == 0),
        "old data leaked"
    );
    ok(&["vdi", "detach", "fat"]);
    let all = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name", "local"]);
    assert!(!all.contains("lost") && !all.contains("doomed"), "{all}");
}

/// Runs `thinsr --json ARGS` until it succeeds, retrying only on SR_BUSY.
fn until_done(args: &[&str]) -> (serde_json::Value, u32) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    for busy in 0..30 {
        let r = thinsr(&all);
        if r.code == 0 {
            return (r.json(), busy);
        }
        let e = r.json();
        assert_eq!(e["code"], "SR_BUSY", "{args:?}: {e}");
    }
    panic!("{args:?} stayed busy 30 times");
}

#[test]
fn eight_processes_doing_ten_operations_each_leave_metadata_and_lvm_agreeing() {
    vm();
    json(&["sr", "create", DISKS[0], DISKS[1], "--name", "local"]);
    let workers: Vec<_> = (0..8)
        .map(|w| {
            std::thread::spawn(move || {
                let mut busy = 0;
                for j in 0..10 {
                    let name = format!("w{w}-{j}");
                    match j % 3 {
                        // create, snapshot it, destroy the snapshot: the VDI stays.
                        0 | 1 => {
                            let (v, b) = until_done(&["vdi", "create", &name, "--size", "8M"]);
                            busy += b;
                            assert_eq!(v["name"], name.as_str());
                        }
                        _ => {
                            let prev = format!("w{w}-{}", j - 1);
                            let (s, b) = until_done(&["vdi", "snapshot", &prev, "--name", &name]);
                            busy += b;
                            let uuid = s["uuid"].as_str().unwrap().to_string();
                            let (_, b) = until_done(&["vdi", "destroy", "--yes", &uuid]);
                            busy += b;
                        }
                    }
                }
                busy
            })
        })
        .collect();
    let busy: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    println!("SR_BUSY answers retried: {busy}");
    let list = json(&["vdi", "list"]);
    let names: std::collections::BTreeSet<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    // 8 workers x (7 creates kept; 3 snapshots made and destroyed).
    assert_eq!(names.len(), 56, "{names:?}");
    assert_eq!(list.as_array().unwrap().len(), 56);
    let tagged = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_tags", "local"])
        .lines()
        .filter(|l| l.contains("thinsr_vdi="))
        .count();
    assert_eq!(tagged, 56);
    let r = thinsr(&["--json", "sr", "check", "local"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["findings"], serde_json::json!([]));
}

/// Replaces the table of dm device `name` (suspend, reload, resume).
fn reload(name: &str, table: &str) {
    sh(&["dmsetup", "suspend", name]);
    sh(&["dmsetup", "reload", name, "--table", table]);
    sh(&["dmsetup", "resume", name]);
}

/// Writes to the metadata LV fail (dm-flakey with error_writes under it): the command that
/// needed the write reports the error, leaves no half-made VDI, and the metadata reads as
/// before, during the fault and after it.
#[test]
fn failing_metadata_writes_are_reported_and_lose_nothing() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    json(&["vdi", "create", "before", "--size", "8M"]);
    let dm = "local-thinsr_meta";
    let table = sh(&["dmsetup", "table", dm]).trim().to_string();
    // "0 <len> linear <dev> <offset>": the same extents, with every write failing.
    let f: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(f[2], "linear", "{table}");
    let faulty = format!("0 {} flakey {} {} 0 1 1 error_writes", f[1], f[3], f[4]);
    let lvs_before = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name", "local"]);

    reload(dm, &faulty);
    let tries: [&[&str]; 4] = [
        &["vdi", "create", "during", "--size", "8M"],
        &["vdi", "rename", "before", "renamed"],
        &["vdi", "set", "before", "k", "v"],
        &["sr", "rename", "local", "other"],
    ];
    for args in tries {
        let e = fails(args, "IO_ERROR");
        assert!(
            e["params"].to_string().contains("metadata"),
            "{args:?}: {e}"
        );
        // Still readable, and still the old state.
        let list = json(&["vdi", "list"]);
        assert_eq!(list.as_array().unwrap().len(), 1, "{args:?}: {list}");
        assert_eq!(list[0]["name"], "before");
        assert!(list[0].get("keys").unwrap().as_object().unwrap().is_empty());
    }
    // No LV of the failed create was left behind, and the rename was put back.
    assert_eq!(
        sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name", "local"]),
        lvs_before
    );

    reload(dm, &table);
    let list = json(&["vdi", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(json(&["sr", "show", "local"])["name"], "local");
    let (code, r) = check(&[]);
    assert_eq!((code, kinds(&r).len()), (0, 0), "{r}");
    // And it works again.
    json(&["vdi", "create", "after", "--size", "8M"]);
}

/// Findings of a plain `sr check` (exit 1 when there are any).
fn found(sr: &str) -> Vec<String> {
    let r = thinsr(&["--json", "sr", "check", sr]);
    let report = r.json();
    assert_eq!(r.code, i32::from(!kinds(&report).is_empty()), "{report}");
    kinds(&report)
}

fn repaired(sr: &str) {
    let r = thinsr(&["--json", "sr", "check", sr, "--repair", "--yes"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(found(sr).is_empty());
}

/// The crash points no other test walks, each followed by what brings the SR back: a
/// repair by `sr check` or running the command again. Data written before stays.
#[test]
fn the_other_crash_points_leave_what_check_or_a_rerun_repairs() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    json(&["vdi", "create", "base", "--size", "32M"]);
    let dev = ok(&["vdi", "attach", "base"]).trim().to_string();
    let data = noise(MIB as usize, 3);
    write_at(&dev, 5 * MIB, &data);
    ok(&["vdi", "detach", "base"]);

    // A thin create whose metadata was written: complete, nothing to repair.
    crash(
        "vdi-create.after-meta",
        &["vdi", "create", "t1", "--size", "16M"],
    );
    assert!(found("local").is_empty());
    json(&["vdi", "show", "t1"]);
    // A preallocated one, before or after zeroing: zeroing finished by the repair.
    for (point, name) in [
        ("vdi-create.after-meta", "p1"),
        ("vdi-create.after-zero", "p2"),
    ] {
        crash(
            point,
            &["vdi", "create", name, "--size", "16M", "--preallocate"],
        );
        fails(&["vdi", "attach", name], "VDI_INCOMPLETE");
        assert_eq!(found("local"), ["incomplete_zeroing"], "{point}");
        repaired("local");
        let dev = ok(&["vdi", "attach", name]).trim().to_string();
        assert!(
            read_at(&dev, 0, 16 << 20).iter().all(|b| *b == 0),
            "{point}"
        );
        ok(&["vdi", "detach", name]);
    }
    // A snapshot LVM made and the metadata never recorded: adopted, holding the data.
    crash(
        "vdi-snapshot.after-lvcreate",
        &["vdi", "snapshot", "base", "--name", "s1"],
    );
    assert_eq!(found("local"), ["orphan_thin_lv"]);
    repaired("local");
    let snap = json(&["vdi", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "snapshot")
        .cloned()
        .expect("the adopted snapshot");
    let uuid = snap["uuid"].as_str().unwrap();
    let dev = ok(&["vdi", "attach", uuid]).trim().to_string();
    assert_eq!(read_at(&dev, 5 * MIB, MIB as usize), data);
    ok(&["vdi", "detach", uuid]);
    // Imports cut short: marked incomplete, removed by the repair.
    sh(&["truncate", "-s", "8M", "/tmp/i.raw"]);
    write_at("/tmp/i.raw", 0, &noise(4096, 4));
    let before = state();
    for point in ["import.after-create", "import.after-deactivate"] {
        crash(point, &["vdi", "import", "/tmp/i.raw", "--name", "imp"]);
        fails(&["vdi", "attach", "imp"], "VDI_INCOMPLETE");
        assert_eq!(found("local"), ["incomplete_import"], "{point}");
        repaired("local");
        assert_eq!(state(), before, "{point}");
    }
    // A rename whose registry update never happened: copied from the metadata.
    crash("sr-meta.after-write", &["sr", "rename", "local", "fast"]);
    assert_eq!(found("local"), ["registry_stale"]);
    ok(&["sr", "check", "local", "--repair"]);
    assert!(found("fast").is_empty());
    assert_eq!(json(&["sr", "show", "fast"])["name"], "fast");
    let dev = ok(&["vdi", "attach", "base"]).trim().to_string();
    assert_eq!(read_at(&dev, 5 * MIB, MIB as usize), data);
    ok(&["vdi", "detach", "base"]);

    // A shared introduce that made its pool and died: the next one removes that pool.
    sh(&["lvm", "vgcreate", "-y", "vg0", DISKS[1]]);
    let mine = admin_lv("vg0", "home", 64);
    crash(
        "sr-introduce.after-pool",
        &["sr", "introduce", "vg0", "--pool-size", "512M"],
    );
    let pools = || {
        sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name,lv_attr", "vg0"])
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.starts_with('t'))
            })
            .count()
    };
    assert_eq!(pools(), 1, "the crash left its pool");
    json(&[
        "sr",
        "introduce",
        "vg0",
        "--pool-size",
        "512M",
        "--name",
        "shared",
    ]);
    assert_eq!(pools(), 1, "the leftover pool was removed, one made");
    assert!(found("shared").is_empty());
    assert_eq!(sha256("/dev/vg0/home"), mine);
}

#[test]
fn thin_devices_lvm_does_not_know_are_found_and_freed() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    json(&["vdi", "create", "a", "--size", "16M"]);
    json(&["vdi", "create", "b", "--size", "16M"]);
    let pool = sh(&["dmsetup", "ls"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .find(|n| n.ends_with("-tpool"))
        .expect("the pool is active");
    // What an lvcreate interrupted between the kernel and LVM's metadata leaves.
    sh(&["dmsetup", "message", &pool, "0", "create_thin", "77"]);
    let r = thinsr(&["--json", "sr", "check", "local", "--repair"]);
    let report = r.json();
    assert_eq!(kinds(&report), ["unknown_thin_device"], "{report}");
    assert_eq!(report["findings"][0]["repaired"], false, "--yes is needed");
    repaired("local");
    // And an LV whose thin device is gone: reported, never "repaired" by guessing.
    let id = sh(&["lvm", "lvs", "--noheadings", "-o", "thin_id", "local/b"])
        .trim()
        .to_string();
    sh(&["dmsetup", "message", &pool, "0", "delete", &id]);
    assert_eq!(found("local"), ["missing_thin_device"]);
    let r = thinsr(&["--json", "sr", "check", "local", "--repair", "--yes"]);
    assert_eq!(r.code, 1, "nothing can repair a lost device: {}", r.stdout);
    json(&["vdi", "show", "a"]);
}
