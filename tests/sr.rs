//! Storage repositories end to end, through the thinsr binary, on a real kernel.

mod common;

use std::process::Command;

use common::*;

#[test]
fn owned_create_show_destroy_leaves_clean_disks() {
    vm();
    let d = json(&["sr", "create", DISKS[0], DISKS[1], "--name", "Fast local"]);
    assert_eq!(d["name"], "Fast local");
    assert_eq!(d["vg"], "Fast_local");
    assert_eq!(d["mode"], "owned");
    assert_eq!(d["attached"], true);
    assert_eq!(d["pvs"].as_array().unwrap().len(), 2);
    // Pools cannot shrink: they start at a quarter of the VG (at least 1 GiB) and grow.
    let pool = d["pool"]["size"].as_u64().unwrap();
    let quarter = d["vg_size"].as_u64().unwrap() / 4 / (4 << 20) * (4 << 20);
    assert_eq!(pool, quarter, "{d}");
    assert!(d["vg_free"].as_u64().unwrap() > 5 << 30, "{d}");
    assert_eq!(d["pool"]["kernel"]["state"], "rw", "{d}");
    // Metadata sized for the whole VG: 64 bytes per 64 KiB chunk of 8 GiB = 8 MiB.
    assert!(
        d["pool"]["metadata_size"].as_u64().unwrap() >= 8 << 20,
        "{d}"
    );
    // xapi sr_stat fields
    for f in [
        "sr",
        "uuid",
        "description",
        "free_space",
        "total_space",
        "datasources",
        "clustered",
        "health",
    ] {
        assert!(d.get(f).is_some(), "sr_stat field {f} missing: {d}");
    }
    let tags = sh(&["lvm", "vgs", "--noheadings", "-o", "vg_tags", "Fast_local"]);
    assert!(
        tags.contains("thinsr_owned") && tags.contains(d["uuid"].as_str().unwrap()),
        "{tags}"
    );

    let human = ok(&["sr", "show", "Fast local"]);
    for want in [
        "Fast local",
        "owned",
        "thinsr_pool",
        "thinsr_meta",
        "/dev/vda",
        "/dev/vdb",
        "attached",
    ] {
        assert!(human.contains(want), "'{want}' missing from:\n{human}");
    }
    let list = json(&["sr", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["state"], "attached");

    // Off a terminal, destroy needs --yes and changes nothing without it.
    let before = state();
    fails(&["sr", "destroy", "Fast local"], "CONFIRMATION_REQUIRED");
    assert_eq!(before, state());

    let r = json(&["sr", "destroy", "Fast local", "--yes"]);
    assert!(r.is_null());
    for disk in &DISKS[..2] {
        assert_eq!(
            sh_code(&["blkid", "-p", disk]),
            2,
            "{disk} still carries a signature"
        );
    }
    assert_eq!(sh(&["lvm", "vgs", "--noheadings"]).trim(), "");
    assert_eq!(sh(&["lvm", "pvs", "--noheadings"]).trim(), "");
    let dm = sh(&["dmsetup", "ls"]);
    assert!(dm.contains("No devices found"), "leftover devices: {dm}");
    assert_eq!(json(&["sr", "list"]), serde_json::json!([]));
}

#[test]
fn shared_introduce_and_destroy_leave_the_admins_lvs_byte_identical() {
    vm();
    sh(&["lvm", "vgcreate", "-y", "vg0", DISKS[0], DISKS[1]]);
    let root = admin_lv("vg0", "root", 96);
    let home = admin_lv("vg0", "home", 64);
    let d = json(&["sr", "introduce", "vg0", "--pool-size", "1G"]);
    assert_eq!(d["mode"], "shared");
    assert_eq!(d["name"], "vg0");
    assert_eq!(d["pool"]["size"].as_u64().unwrap(), 1 << 30);
    let mut foreign: Vec<&str> = d["foreign_lvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    foreign.sort();
    assert_eq!(foreign, ["home", "root"]);
    let human = ok(&["sr", "show", "vg0"]);
    assert!(human.contains("foreign"), "{human}");
    // The VG itself is the admin's: thinsr adds no tag to it.
    assert_eq!(
        sh(&["lvm", "vgs", "--noheadings", "-o", "vg_tags", "vg0"]).trim(),
        ""
    );

    // Work in the SR: metadata writes, detach, attach.
    ok(&["sr", "rename", "vg0", "VM disks"]);
    ok(&["sr", "set-description", "VM disks", "beside the OS"]);
    ok(&["sr", "detach", "VM disks"]);
    assert_eq!(json(&["sr", "show", "VM disks"])["attached"], false);
    ok(&["sr", "attach", "VM disks"]);
    let d = json(&["sr", "show", "VM disks"]);
    assert_eq!(d["description"], "beside the OS");
    assert_eq!(d["attached"], true);

    ok(&["sr", "destroy", "VM disks", "--yes"]);
    assert_eq!(sha256("/dev/vg0/root"), root);
    assert_eq!(sha256("/dev/vg0/home"), home);
    let lvs = sh(&["lvm", "lvs", "-a", "--noheadings", "-o", "lv_name", "vg0"]);
    let mut left: Vec<&str> = lvs.split_whitespace().collect();
    left.sort();
    assert_eq!(left, ["home", "root"], "only the admin's LVs may remain");
    assert!(sh(&["lvm", "vgs", "--noheadings", "-o", "vg_name"]).contains("vg0"));
}

#[test]
fn shared_adopts_an_existing_pool_and_never_removes_it() {
    vm();
    admin_pool("vg0", DISKS[0], "vms", &[]);
    sh(&[
        "lvm",
        "lvcreate",
        "-y",
        "-V",
        "100m",
        "-T",
        "vg0/vms",
        "-n",
        "admins_thin",
    ]);
    let plain = admin_lv("vg0", "plain", 8);
    fails(
        &["sr", "introduce", "vg0", "--pool", "plain"],
        "NOT_A_THIN_POOL",
    );
    fails(
        &["sr", "introduce", "vg0", "--pool", "nope"],
        "LV_NOT_FOUND",
    );
    let d = json(&[
        "sr",
        "introduce",
        "vg0",
        "--pool",
        "vms",
        "--name",
        "adopted",
    ]);
    assert_eq!(d["pool"]["lv"], "vms");
    assert_eq!(d["pool"]["owned"], false);
    assert_eq!(d["pool"]["thin_volumes"], 1);
    // Detach leaves the admin's pool (and the admin's thin LV) active.
    ok(&["sr", "detach", "adopted"]);
    let active = sh(&[
        "lvm",
        "lvs",
        "--noheadings",
        "-o",
        "lv_name,lv_active",
        "vg0",
    ]);
    assert!(
        active
            .lines()
            .any(|l| l.contains("admins_thin") && l.contains("active")),
        "{active}"
    );
    ok(&["sr", "attach", "adopted"]);
    ok(&["sr", "destroy", "adopted", "--yes"]);
    let lvs = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name", "vg0"]);
    let mut left: Vec<&str> = lvs.split_whitespace().collect();
    left.sort();
    assert_eq!(left, ["admins_thin", "plain", "vms"]);
    assert_eq!(sha256("/dev/vg0/plain"), plain);
}

#[test]
fn a_disk_holding_ext4_is_refused_without_force_and_unchanged() {
    vm();
    sh(&["mkfs.ext4", "-q", DISKS[2]]);
    let before = fingerprint(DISKS[2]);
    let lvm_before = state();
    let e = fails(&["sr", "create", DISKS[2]], "DEVICE_IN_USE");
    assert!(e["params"].to_string().contains("ext4"), "{e}");
    // Human form names the disk, what is on it, and what to do.
    let r = thinsr(&["sr", "create", DISKS[2], "--name", "x"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("'/dev/vdc' holds an ext4 filesystem") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert_eq!(fingerprint(DISKS[2]), before);
    assert_eq!(lvm_before, state());
    // The other disks are checked first too: one bad disk among good ones changes nothing.
    fails(&["sr", "create", DISKS[0], DISKS[2]], "DEVICE_IN_USE");
    assert_eq!(sh_code(&["blkid", "-p", DISKS[0]]), 2);
    assert_eq!(lvm_before, state());

    let d = json(&["sr", "create", DISKS[2], "--force"]);
    assert_eq!(d["name"], "Local storage");
    assert!(sh(&["blkid", "-p", DISKS[2]]).contains("LVM2_member"));
}

#[test]
fn forget_then_introduce_brings_back_the_same_sr() {
    vm();
    let d = json(&["sr", "create", DISKS[0], "--name", "Keep me"]);
    let uuid = d["uuid"].as_str().unwrap().to_string();
    ok(&["sr", "set-description", "Keep me", "survives a reinstall"]);
    let lvm_before = sh(&[
        "lvm",
        "lvs",
        "-a",
        "--noheadings",
        "-o",
        "lv_name,lv_size,lv_tags",
    ]);
    let r = json(&["sr", "forget", "Keep me"]);
    assert!(r.is_null());
    assert_eq!(json(&["sr", "list"]), serde_json::json!([]));
    assert_eq!(
        lvm_before,
        sh(&[
            "lvm",
            "lvs",
            "-a",
            "--noheadings",
            "-o",
            "lv_name,lv_size,lv_tags"
        ])
    );
    // A reinstalled host: no registry at all, metadata LV inactive.
    std::fs::remove_file("/etc/thinsr/srs.yaml").unwrap();
    sh(&["lvm", "vgchange", "-an", "Keep_me"]);
    let d = json(&["sr", "introduce", "Keep_me"]);
    assert_eq!(d["uuid"], uuid.as_str());
    assert_eq!(d["name"], "Keep me");
    assert_eq!(d["mode"], "owned");
    assert_eq!(d["description"], "survives a reinstall");
    fails(&["sr", "introduce", "Keep_me"], "SR_EXISTS");
    ok(&["sr", "attach", "Keep me"]);
    assert_eq!(json(&["sr", "show"])["attached"], true);
}

#[test]
fn a_crash_during_a_metadata_write_leaves_readable_metadata() {
    vm();
    let d = json(&["sr", "create", DISKS[0], "--name", "gen0"]);
    let uuid = d["uuid"].as_str().unwrap().to_string();
    // A torn write or a crash before writing keeps the old state; a crash between write and
    // flush may keep either; a crash after the flush shows the new one.
    let cases: [(&str, &str, &[bool]); 4] = [
        ("meta.before-write", "gen1", &[false]),
        ("meta.torn-write", "gen2", &[false]),
        ("meta.before-flush", "gen3", &[false, true]),
        ("meta.after-flush", "gen4", &[true]),
    ];
    let mut current = "gen0".to_string();
    for (point, new, allowed) in cases {
        let out = thinsr_cmd(&["sr", "rename", &uuid, new])
            .env("THINSR_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(
            out.status.code().is_none(),
            "{point}: the process should have been killed"
        );
        let name = json(&["sr", "show", &uuid])["name"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            name == current || name == new,
            "{point}: metadata reads '{name}'"
        );
        assert!(
            allowed.contains(&(name == new)),
            "{point}: metadata reads '{name}'"
        );
        // The next command works normally on top of whatever survived.
        let next = format!("{new}-after");
        ok(&["sr", "rename", &uuid, &next]);
        assert_eq!(json(&["sr", "show", &uuid])["name"], next.as_str());
        current = next;
    }
    // The registry caught up too: the SR is found by its latest name.
    assert_eq!(json(&["sr", "show", &current])["uuid"], uuid.as_str());
}

#[test]
fn two_processes_on_one_sr_take_turns_or_one_is_busy() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "shared"]);
    let uuid = json(&["sr", "list"])[0]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    // Both wait long enough: both succeed, one after the other.
    let spawn = |name: &str, timeout: &str| {
        thinsr_cmd(&["--json", "sr", "rename", &uuid, name])
            .env("THINSR_PAUSE_AT", "meta.before-write")
            .env("THINSR_PAUSE_MS", "1500")
            .env("THINSR_LOCK_TIMEOUT", timeout)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let start = std::time::Instant::now();
    let a = spawn("alpha", "20");
    let b = spawn("beta", "20");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    assert!(
        start.elapsed().as_millis() >= 3000,
        "the two renames overlapped"
    );
    let name = json(&["sr", "show", &uuid])["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name == "alpha" || name == "beta");

    // One waits too little: it says SR_BUSY and changes nothing; the other succeeds.
    let a = spawn("gamma", "20");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let b = spawn("delta", "0.2");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success());
    assert_eq!(b.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_eq!(err["code"], "SR_BUSY");
    assert_eq!(json(&["sr", "show", &uuid])["name"], "gamma");
}

#[test]
fn file_sr_attach_detach_destroy() {
    vm();
    let r = thinsr(&[
        "--json",
        "sr",
        "create",
        "--file",
        "/var/tmp/sr.img",
        "--size",
        "1G",
        "--name",
        "trial",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("only as safe as the filesystem"),
        "{}",
        r.stderr
    );
    let d = r.json();
    assert_eq!(d["file"], "/var/tmp/sr.img");
    assert!(sh(&["losetup", "-a"]).contains("/var/tmp/sr.img"));
    fails(
        &[
            "sr",
            "create",
            "--file",
            "/var/tmp/sr.img",
            "--size",
            "1G",
            "--name",
            "again",
        ],
        "FILE_EXISTS",
    );
    ok(&["sr", "detach", "trial"]);
    ok(&["sr", "detach", "trial"]);
    assert!(!sh(&["losetup", "-a"]).contains("/var/tmp/sr.img"));
    assert_eq!(json(&["sr", "list"])[0]["state"], "missing");
    ok(&["sr", "attach", "trial"]);
    ok(&["sr", "attach", "trial"]);
    assert_eq!(json(&["sr", "show", "trial"])["attached"], true);
    ok(&["sr", "destroy", "trial", "--yes"]);
    assert!(!std::path::Path::new("/var/tmp/sr.img").exists());
    assert!(!sh(&["losetup", "-a"]).contains("sr.img"));
}

#[test]
fn destroy_and_detach_refuse_while_a_disk_is_attached() {
    vm();
    let d = json(&["sr", "create", DISKS[0], "--name", "busy"]);
    let uuid = d["uuid"].as_str().unwrap();
    // An attached VDI as later issues make them: a thin LV tagged with the SR and a VDI uuid.
    sh(&[
        "lvm",
        "lvcreate",
        "-y",
        "-V",
        "64m",
        "-T",
        "busy/thinsr_pool",
        "-n",
        "disk",
        "--addtag",
        &format!("thinsr_sr={uuid}"),
        "--addtag",
        "thinsr_vdi=1234",
    ]);
    let before = state();
    let e = fails(&["sr", "destroy", "busy", "--yes"], "SR_HAS_ATTACHED_VDIS");
    assert!(e["params"].to_string().contains("disk"), "{e}");
    fails(&["sr", "detach", "busy"], "SR_HAS_ATTACHED_VDIS");
    assert_eq!(before, state());
    sh(&["lvm", "lvchange", "-an", "busy/disk"]);
    ok(&["sr", "destroy", "busy", "--yes"]);
    assert_eq!(sh(&["lvm", "vgs", "--noheadings"]).trim(), "");
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    vm();
    sh(&["lvm", "vgcreate", "-y", "vg0", DISKS[3]]);
    json(&["sr", "create", DISKS[0], "--name", "one"]);
    std::fs::write("/var/tmp/plain-file", b"x").unwrap();
    let long = "n".repeat(10_000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["sr", "show", "no-such-sr"], "SR_NOT_FOUND"),
        (vec!["sr", "destroy", "no-such-sr", "--yes"], "SR_NOT_FOUND"),
        (vec!["sr", "show", &long], "SR_NOT_FOUND"),
        (vec!["sr", "create", "/dev/nope"], "DEVICE_NOT_FOUND"),
        (
            vec!["sr", "create", "/var/tmp/plain-file"],
            "NOT_A_BLOCK_DEVICE",
        ),
        (vec!["sr", "create", DISKS[1], DISKS[1]], "INVALID_ARGUMENT"),
        (vec!["sr", "create", DISKS[0], "--force"], "DEVICE_IN_USE"),
        (
            vec!["sr", "create", DISKS[1], "--name", &long],
            "INVALID_NAME",
        ),
        (
            vec!["sr", "create", DISKS[1], "--name", "one"],
            "INVALID_NAME",
        ),
        (
            vec!["sr", "create", "--file", "/var/tmp/f.img", "--size", "12XB"],
            "INVALID_SIZE",
        ),
        (
            vec!["sr", "create", "--file", "/var/tmp/f.img", "--size=-1G"],
            "INVALID_SIZE",
        ),
        (
            vec!["sr", "create", "--file", "/var/tmp/f.img", "--size", "-1G"],
            "USAGE",
        ),
        (
            vec!["sr", "create", "--file", "/var/tmp/f.img", "--size", "0"],
            "INVALID_SIZE",
        ),
        (
            vec!["sr", "create", "--file", "/var/tmp/f.img", "--size", "1M"],
            "INVALID_SIZE",
        ),
        (
            vec![
                "sr",
                "create",
                "--file",
                "/no/such/dir/f.img",
                "--size",
                "1G",
            ],
            "INVALID_ARGUMENT",
        ),
        (
            vec!["sr", "introduce", "no_such_vg", "--pool-size", "1G"],
            "VG_NOT_FOUND",
        ),
        (
            vec!["sr", "introduce", "bad/vg", "--pool-size", "1G"],
            "VG_NOT_FOUND",
        ),
        (vec!["sr", "introduce", "vg0"], "USAGE"),
        (
            vec!["sr", "introduce", "vg0", "--pool-size", "100T"],
            "NO_SPACE",
        ),
        (
            vec!["sr", "introduce", "vg0", "--pool-size", "150%"],
            "INVALID_SIZE",
        ),
        (
            vec!["sr", "introduce", "vg0", "--pool-size", "1G", "--pool", "x"],
            "USAGE",
        ),
        (vec!["sr", "bogus"], "USAGE"),
        (vec!["sr", "create"], "USAGE"),
    ];
    let before = state();
    for (args, code) in &cases {
        fails(args, code);
        assert_eq!(before, state(), "{args:?} changed something");
    }
    assert!(!std::path::Path::new("/var/tmp/f.img").exists());
    // Usage errors exit 2, other failures 1.
    assert_eq!(
        thinsr(&[
            "--json",
            "sr",
            "create",
            "--file",
            "/var/tmp/f.img",
            "--size",
            "12XB"
        ])
        .code,
        2
    );
    assert_eq!(thinsr(&["--json", "sr", "show", "nope"]).code, 1);
    // Not root: said plainly, before anything is looked at.
    let out = {
        use std::os::unix::process::CommandExt;
        thinsr_cmd(&["--json", "sr", "list"])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    };
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["code"], "NOT_ROOT");
    // Humans get the message and a hint on stderr.
    let r = thinsr(&["sr", "show", "nope"]);
    assert!(
        r.stderr
            .starts_with("thinsr: error: storage repository 'nope' not found\nhint:"),
        "{}",
        r.stderr
    );
}

/// A crash at every step of `sr create` and `sr destroy` leaves what running the command
/// again (or `sr introduce`, for an SR complete but unregistered) finishes, in both modes.
#[test]
fn sr_create_and_destroy_survive_a_crash_at_every_step() {
    vm();
    let pvs = || sh(&["lvm", "pvs", "--noheadings", "-o", "pv_name"]);
    for point in ["sr-create.after-vgcreate", "sr-create.after-pool"] {
        crash_at(point, &["sr", "create", DISKS[0], "--name", "half"]);
        assert!(json(&["sr", "list"]).as_array().unwrap().is_empty());
        // Created again on the same disk, without --force: the half-made VG held nothing.
        let d = json(&["sr", "create", DISKS[0], "--name", "half"]);
        assert_eq!(d["vg"], "half", "{point}: {d}");
        ok(&["--yes", "sr", "destroy", "half"]);
        assert!(!pvs().contains(DISKS[0]), "{point}: {}", pvs());
    }

    // Complete but not registered: create refuses and names the way back.
    crash_at(
        "sr-create.after-meta",
        &["sr", "create", DISKS[0], "--name", "whole"],
    );
    let e = fails(
        &["sr", "create", DISKS[0], "--name", "whole"],
        "DEVICE_IN_USE",
    );
    assert!(
        e["params"].to_string().contains("sr introduce whole"),
        "{e}"
    );
    ok(&["sr", "introduce", "whole"]);
    json(&["vdi", "create", "d", "--size", "8M"]);

    // An owned destroy that crashed after vgremove: running it again forgets the entry.
    crash_at(
        "sr-destroy.after-vgremove",
        &["--yes", "sr", "destroy", "whole"],
    );
    ok(&["--yes", "sr", "destroy", "whole"]);
    assert!(json(&["sr", "list"]).as_array().unwrap().is_empty());
    // The PV label that crash left is refused like any signature, and --force takes it.
    fails(
        &["sr", "create", DISKS[0], "--name", "again"],
        "DEVICE_IN_USE",
    );
    ok(&["sr", "create", DISKS[0], "--name", "again", "--force"]);

    // Shared: a destroy that crashed before removing the metadata LV.
    sh(&["lvm", "vgcreate", "-y", "vg0", DISKS[1]]);
    let home = admin_lv("vg0", "home", 16);
    ok(&[
        "sr",
        "introduce",
        "vg0",
        "--name",
        "beside",
        "--pool-size",
        "256M",
    ]);
    json(&["vdi", "create", "d2", "--size", "8M", "--sr", "beside"]);
    crash_at(
        "sr-destroy.before-meta",
        &["--yes", "sr", "destroy", "beside"],
    );
    ok(&["--yes", "sr", "destroy", "beside"]);
    let lvs = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name", "vg0"]);
    assert_eq!(
        lvs.split_whitespace().collect::<Vec<_>>(),
        ["home"],
        "{lvs}"
    );
    assert_eq!(sha256("/dev/vg0/home"), home);
    eprintln!("sr crash points walked: 5");
}

/// The host thinsr runs on, as each profile sets it up: in the dom0 profile, XCP-ng 8.3's own
/// lvm 2.02.180, dmsetup 1.02.149 and thin tools 0.7.3 (../shared/dom0-tools), lvm.conf
/// read-only for metadata, qemu's tools only in qemu-dp's directory, and thinsr the static
/// binary; it makes and removes an SR all the same.
#[test]
fn thinsr_runs_on_the_host_as_it_is_set_up() {
    vm();
    let v = ok(&["--version"]);
    let bin = std::fs::read(thinsr_bin()).unwrap();
    let dynamic = bin.windows(10).any(|w| w == b"ld-linux-x");
    if dom0() {
        // No glibc of ours: the binary has no dynamic loader to ask for.
        assert!(!dynamic, "{} is dynamically linked", thinsr_bin());
        assert!(
            v.contains("(/usr/lib64/qemu-dp/bin/qemu-nbd, from qemu-dp)"),
            "{v}"
        );
        // dom0's real tools, not stand-ins.
        let lvm = sh(&["lvm", "version"]);
        assert!(lvm.contains("LVM version:     2.02.180(2)"), "{lvm}");
        assert!(lvm.contains("Library version: 1.02.149"), "{lvm}");
        assert_eq!(sh(&["thin_check", "--version"]).trim(), "0.7.3");
        assert!(sh(&["dmsetup", "--version"]).contains("1.02.149"));
        assert!(v.contains("lvm: 2.02.180(2)"), "{v}");
        assert!(v.contains("thin_check: 0.7.3"), "{v}");
        // dom0's lvm.conf makes 2.02.180 refuse metadata writes *and exit 0*.
        let out = Command::new("lvm")
            .args(["vgcreate", "probe", DISKS[3]])
            .env_remove("LVM_SYSTEM_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(
            stderr.contains("Command not permitted while global/metadata_read_only is set"),
            "{stderr}"
        );
        assert!(!sh(&["lvm", "vgs", "-o", "vg_name"]).contains("probe"));
        // thinsr's own --config overrides it even where an admin points LVM at the
        // read-only file: the SR is really made, not "made" with exit 0.
        let out = thinsr_cmd(&["--json", "sr", "create", DISKS[3], "--name", "ro"])
            .env("LVM_SYSTEM_DIR", "/etc/lvm")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            sh(&["lvm", "vgs", "--noheadings", "-o", "vg_name"]).trim(),
            "ro"
        );
        let out = thinsr_cmd(&["sr", "destroy", "ro", "--yes"])
            .env("LVM_SYSTEM_DIR", "/etc/lvm")
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(sh(&["lvm", "vgs", "--noheadings", "-o", "vg_name"])
            .trim()
            .is_empty());
    } else {
        assert!(
            v.contains("qemu-nbd: 7.2") && v.contains("from PATH)"),
            "{v}"
        );
        assert!(v.contains("lvm: 2.03"), "{v}");
    }
    let d = json(&["sr", "create", DISKS[0], "--name", "host"]);
    assert_eq!(d["attached"], true);
    json(&["vdi", "create", "disk", "--size", "64M"]);
    ok(&["pool", "check", "host"]);
    ok(&["--yes", "vdi", "destroy", "disk"]);
    ok(&["sr", "destroy", "host", "--yes"]);
    assert!(sh(&["lvm", "vgs", "--noheadings", "-o", "vg_name"])
        .trim()
        .is_empty());
}
