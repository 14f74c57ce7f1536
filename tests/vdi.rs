//! VDIs end to end, in the test VM: names, snapshots and clones, preallocation, resize,
//! keys and bad input.

mod common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

fn owned_sr(name: &str) -> String {
    let d = json(&["sr", "create", DISKS[0], "--name", name]);
    d["uuid"].as_str().unwrap().to_string()
}

fn lv_field(vg_lv: &str, field: &str) -> String {
    sh(&[
        "lvm",
        "lvs",
        "--noheadings",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        field,
        vg_lv,
    ])
    .trim()
    .to_string()
}

fn pool_used(sr: &str) -> u64 {
    json(&["sr", "show", sr])["pool"]["data_used"]
        .as_u64()
        .unwrap()
}

#[test]
fn friendly_names_labels_keys_and_lookups() {
    vm();
    let sr = owned_sr("local");
    let mut uuids = Vec::new();
    for want in [
        "Windows_10_64-bit",
        "Windows_10_64-bit+1",
        "Windows_10_64-bit+2",
    ] {
        let v = json(&["vdi", "create", "Windows 10 (64-bit)", "--size", "100M"]);
        assert_eq!(v["lv"], want, "{v}");
        assert_eq!(v["name"], "Windows 10 (64-bit)");
        assert_eq!(v["kind"], "thin");
        // Sizes are whole extents, as LVM made them.
        assert_eq!(v["virtual_size"], 104857600);
        assert_eq!(lv_field(&format!("local/{want}"), "lv_size"), "104857600");
        uuids.push(v["uuid"].as_str().unwrap().to_string());
    }
    // xapi's volume record: every field, no nulls.
    let v = json(&["vdi", "show", &uuids[0]]);
    for f in thinsr::engine::vdi::VOLUME_FIELDS {
        assert!(v.get(f).is_some_and(|x| !x.is_null()), "{f} in {v}");
    }
    assert_eq!(v["key"], uuids[0].as_str());
    // Tags name SR and VDI; activation is skipped so the host leaves VDIs alone.
    let tags = lv_field("local/Windows_10_64-bit+1", "lv_tags");
    assert!(
        tags.contains(&format!("thinsr_sr={sr}"))
            && tags.contains(&format!("thinsr_vdi={}", uuids[1])),
        "{tags}"
    );
    assert!(lv_field("local/Windows_10_64-bit+1", "lv_attr").ends_with('k'));
    assert_eq!(lv_field("local/Windows_10_64-bit+1", "lv_active"), "");
    // Labels transliterate; what LVM cannot hold becomes '_', nothing at all becomes vdi.
    assert_eq!(
        json(&["vdi", "create", "Ünïcode disk", "--size", "8M"])["lv"],
        "Unicode_disk"
    );
    assert_eq!(json(&["vdi", "create", "???", "--size", "8M"])["lv"], "vdi");
    assert_eq!(
        json(&["vdi", "create", "snapshot of db", "--size", "8M"])["lv"],
        "vdi_snapshot_of_db"
    );
    // Lookups: LV name, uuid, prefix, SR/name; a shared label is ambiguous and says so.
    assert_eq!(
        json(&["vdi", "show", "Windows_10_64-bit+2"])["uuid"],
        uuids[2].as_str()
    );
    assert_eq!(
        json(&["vdi", "show", &uuids[1][..8]])["uuid"],
        uuids[1].as_str()
    );
    assert_eq!(
        json(&["vdi", "show", "local/Windows_10_64-bit"])["uuid"],
        uuids[0].as_str()
    );
    assert_eq!(json(&["vdi", "show", "Ünïcode disk"])["lv"], "Unicode_disk");
    let e = fails(&["vdi", "show", "Windows 10 (64-bit)"], "VDI_AMBIGUOUS");
    for u in &uuids {
        assert!(e["params"].to_string().contains(u.as_str()), "{e}");
    }
    fails(&["vdi", "show", "local/nothing"], "VDI_NOT_FOUND");
    // Rename: new label, new LV name, same uuid.
    let r = json(&["vdi", "rename", &uuids[2], "Debian 12 / web"]);
    assert_eq!(
        (r["uuid"].as_str(), r["lv"].as_str()),
        (Some(uuids[2].as_str()), Some("Debian_12_web"))
    );
    assert!(lv_field("local/Debian_12_web", "lv_tags").contains(&uuids[2]));
    // Keys and descriptions persist in the SR's metadata, across detach and attach.
    json(&["vdi", "set", "Debian_12_web", "vdi-type", "user"]);
    json(&["vdi", "set", "Debian_12_web", "snapshot_of", ""]);
    json(&[
        "vdi",
        "set-description",
        "Debian_12_web",
        "web server, ünïcode",
    ]);
    json(&["vdi", "unset", "Debian_12_web", "snapshot_of"]);
    json(&["vdi", "unset", "Debian_12_web", "never-set"]);
    ok(&["sr", "detach", "local"]);
    fails(&["vdi", "show", "Debian_12_web"], "VDI_NOT_FOUND");
    ok(&["sr", "attach", "local"]);
    let v = json(&["vdi", "show", "Debian_12_web"]);
    assert_eq!(v["keys"], serde_json::json!({"vdi-type": "user"}));
    assert_eq!(v["description"], "web server, ünïcode");
    assert_eq!(v["name"], "Debian 12 / web");
    // The friendly names are what lvs shows.
    let lvs = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name", "local"]);
    for n in [
        "Windows_10_64-bit",
        "Windows_10_64-bit+1",
        "Debian_12_web",
        "Unicode_disk",
        "vdi",
    ] {
        assert!(lvs.lines().any(|l| l.trim() == n), "{n} in {lvs}");
    }
    // lvm calls per command: create 1, snapshot 1, list 1, show 1.
    assert_eq!(lvm_calls(&["vdi", "create", "counted", "--size", "8M"]), 1);
    assert_eq!(lvm_calls(&["vdi", "snapshot", "counted"]), 1);
    assert_eq!(lvm_calls(&["vdi", "list"]), 1);
    assert_eq!(lvm_calls(&["vdi", "show", "counted"]), 1);
    let list = json(&["vdi", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 8, "{list}");
}

#[test]
fn snapshots_and_clones_keep_their_own_data() {
    vm();
    owned_sr("local");
    let used_empty = pool_used("local");
    let origin = json(&["vdi", "create", "web", "--size", "64M"]);
    assert_eq!(origin["attached"], false);
    let dev = ok(&["vdi", "attach", "web"]).trim().to_string();
    // A device of thinsr's over LVM's, whose table a mirror can swap under the VM.
    assert_eq!(dev, "/dev/mapper/thinsr-local-web");
    let first = noise(16 * MIB as usize, 1);
    write_at(&dev, 0, &first);
    let snap = json(&["vdi", "snapshot", "web", "--name", "web before upgrade"]);
    assert_eq!(snap["read_write"], false);
    assert_eq!(snap["kind"], "snapshot");
    assert_eq!(snap["parent"], origin["uuid"]);
    assert_eq!(snap["virtual_size"], origin["virtual_size"]);
    let clone = json(&["vdi", "clone", "web"]);
    assert_eq!(clone["read_write"], true);
    // A clone keeps the VDI's name, as xe does; its LV is the next free one.
    assert_eq!(clone["name"], "web");
    assert_eq!(clone["lv"], "web+1");
    // The origin changes after the snapshot; snapshot and clone keep the old data.
    let second = noise(16 * MIB as usize, 2);
    write_at(&dev, 0, &second);
    let snap_dev = ok(&["vdi", "attach", "web before upgrade"])
        .trim()
        .to_string();
    let clone_dev = ok(&["vdi", "attach", "web+1"]).trim().to_string();
    assert_eq!(crc_at(&snap_dev, 0, 16 << 20), crc32fast::hash(&first));
    assert_eq!(crc_at(&clone_dev, 0, 16 << 20), crc32fast::hash(&first));
    assert_eq!(crc_at(&dev, 0, 16 << 20), crc32fast::hash(&second));
    // A snapshot is read-only to whoever attaches it.
    let write = std::fs::OpenOptions::new()
        .write(true)
        .open(&snap_dev)
        .and_then(|f| {
            use std::os::unix::fs::FileExt;
            f.write_all_at(&[1u8; 4096], 0)?;
            f.sync_all()
        });
    assert!(write.is_err(), "a write to the snapshot went through");
    assert_eq!(crc_at(&snap_dev, 0, 16 << 20), crc32fast::hash(&first));
    // The clone diverges on its own.
    let third = noise(MIB as usize, 3);
    write_at(&clone_dev, 32 * MIB, &third);
    assert_eq!(
        crc_at(&clone_dev, 32 * MIB, MIB as usize),
        crc32fast::hash(&third)
    );
    assert_ne!(
        crc_at(&dev, 32 * MIB, MIB as usize),
        crc32fast::hash(&third)
    );
    assert_eq!(crc_at(&snap_dev, 0, 16 << 20), crc32fast::hash(&first));
    // Listing: kinds, parents, space used (read from the pool for inactive volumes).
    ok(&["vdi", "detach", "web+1"]);
    let list = json(&["vdi", "list"]);
    let by_lv = |lv: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|v| v["lv"] == lv)
            .unwrap()
            .clone()
    };
    assert_eq!(by_lv("web+1")["parent_name"], "web");
    assert_eq!(by_lv("web+1")["attached"], false);
    assert_eq!(by_lv("web+1")["physical_utilisation"], 17 * MIB);
    assert_eq!(by_lv("web")["physical_utilisation"], 16 * MIB);
    assert_eq!(by_lv("web_before_upgrade")["attached"], true);
    // Destroy: refused while attached, needs --yes off a terminal, frees thin space.
    let e = fails(&["vdi", "destroy", "web", "--yes"], "VDI_ATTACHED");
    assert!(e["params"].to_string().contains("web"), "{e}");
    ok(&["vdi", "detach", "web"]);
    ok(&["vdi", "detach", "web before upgrade"]);
    let before = state();
    fails(&["vdi", "destroy", "web"], "CONFIRMATION_REQUIRED");
    assert_eq!(before, state());
    let used = pool_used("local");
    assert!(used >= used_empty + 33 * MIB, "{used} {used_empty}");
    // Snapshots do not depend on their origin: destroying it leaves them readable.
    ok(&["vdi", "destroy", "web", "--yes"]);
    let snap_dev = ok(&["vdi", "attach", "web before upgrade"])
        .trim()
        .to_string();
    assert_eq!(crc_at(&snap_dev, 0, 16 << 20), crc32fast::hash(&first));
    ok(&["vdi", "detach", "web before upgrade"]);
    assert_eq!(
        json(&["vdi", "show", "web+1"])["parent_name"],
        "(destroyed)"
    );
    ok(&["vdi", "destroy", "web before upgrade", "--yes"]);
    ok(&["vdi", "destroy", "web+1", "--yes"]);
    assert_eq!(json(&["vdi", "list"]), serde_json::json!([]));
    let tags = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_tags", "local"]);
    assert!(!tags.contains("thinsr_vdi="), "{tags}");
    // Thin space went back to the pool.
    assert!(
        pool_used("local") <= used_empty + MIB,
        "{} vs {used_empty}",
        pool_used("local")
    );
}

#[test]
fn preallocation_zeroes_old_data_and_cancels_cleanly() {
    vm();
    owned_sr("local");
    // Fill the VG's free space where the VDI will go with non-zero data.
    sh(&["lvm", "lvcreate", "-y", "-n", "junk", "-L", "1g", "local"]);
    let junk_extents = lv_field("local/junk", "seg_pe_ranges");
    let pattern = noise(64 * MIB as usize, 7);
    for i in 0..16 {
        write_direct("/dev/local/junk", i * 64 * MIB, &pattern);
    }
    assert_ne!(read_at("/dev/local/junk", 512 * MIB, 4096), vec![0u8; 4096]);
    sh(&["lvm", "lvremove", "-y", "local/junk"]);

    let r = thinsr_cmd(&[
        "--json",
        "vdi",
        "create",
        "fat",
        "--size",
        "1G",
        "--preallocate",
    ])
    .env("THINSR_PROGRESS_INTERVAL", "0")
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["kind"], "preallocated");
    assert_eq!(v["physical_utilisation"], 1u64 << 30);
    // Plain progress lines when stderr is not a terminal.
    assert!(
        stderr.contains("thinsr: zeroing fat: 1.00 GiB\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("thinsr: zeroing fat: 1.00 GiB of 1.00 GiB in"),
        "{stderr}"
    );
    // The same extents the random data was on, now all zeros.
    assert_eq!(lv_field("local/fat", "seg_pe_ranges"), junk_extents);
    assert_eq!(json(&["vdi", "show", "fat"])["attached"], false);
    let dev = ok(&["vdi", "attach", "fat"]).trim().to_string();
    // Direct reads, compared whole: byte by byte through the page cache, a minute.
    let mut f = open_direct(&dev, false).unwrap();
    let mut buf = thinsr::aligned::AlignedBuf::zeroed(16 << 20);
    let zeros = vec![0u8; 16 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(buf.as_mut_slice()).unwrap();
        if n == 0 {
            break;
        }
        assert!(
            buf.as_slice()[..n] == zeros[..n],
            "non-zero byte near {total}"
        );
        total += n as u64;
    }
    drop(f);
    assert_eq!(total, 1 << 30);
    ok(&["vdi", "detach", "fat"]);

    // More than the VG has: refused, saying where the space went.
    let e = fails(
        &["vdi", "create", "huge", "--size", "100G", "--preallocate"],
        "NO_SPACE",
    );
    assert!(e["params"].to_string().contains("thin pool holds"), "{e}");

    // SIGINT half-way: the LV and the metadata entry are gone, exit code says cancelled.
    let before = state();
    let list_before = json(&["vdi", "list"]);
    for signal in ["-INT", "-TERM"] {
        let child = thinsr_cmd(&[
            "--json",
            "vdi",
            "create",
            "cancelled",
            "--size",
            "1G",
            "--preallocate",
        ])
        .env("THINSR_PAUSE_AT", "zero.step")
        .env("THINSR_PAUSE_MS", "400")
        .env("THINSR_PROGRESS_INTERVAL", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        // 16 steps of 64 MiB at 0.4 s each: well inside the zeroing after 2.5 s.
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            lv_field("local/cancelled", "lv_name") == "cancelled",
            "the LV exists while zeroing"
        );
        sh(&["kill", signal, &child.id().to_string()]);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "cancel took too long"
        );
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["code"], "CANCELLED");
        assert!(
            stderr.contains("MiB of 1.00 GiB ("),
            "progress lines before the cancel: {stderr}"
        );
        assert_eq!(before, state(), "{signal} left something behind");
        assert_eq!(list_before, json(&["vdi", "list"]));
    }
}

#[test]
fn grow_keeps_data_and_shrink_needs_allow_shrink() {
    vm();
    owned_sr("local");
    for (name, extra) in [("thin", None), ("fat", Some("--preallocate"))] {
        let mut args = vec!["vdi", "create", name, "--size", "64M"];
        args.extend(extra);
        json(&args);
        let dev = ok(&["vdi", "attach", name]).trim().to_string();
        let data = noise(64 * MIB as usize, 11);
        write_at(&dev, 0, &data);
        if extra.is_some() {
            // Growing a preallocated VDI zeroes the new part: not while a VM may read it.
            fails(&["vdi", "resize", name, "+64M"], "VDI_ATTACHED");
        }
        ok(&["vdi", "detach", name]);
        let v = json(&["vdi", "resize", name, "+64M"]);
        assert_eq!(v["virtual_size"], 128 * MIB, "{v}");
        assert_eq!(
            lv_field(&format!("local/{name}"), "lv_size"),
            (128 * MIB).to_string()
        );
        let dev = ok(&["vdi", "attach", name]).trim().to_string();
        assert_eq!(
            crc_at(&dev, 0, 64 << 20),
            crc32fast::hash(&data),
            "{name} kept its data"
        );
        assert!(
            read_at(&dev, 64 * MIB, 64 << 20).iter().all(|b| *b == 0),
            "{name}: new part reads zero"
        );
        ok(&["vdi", "detach", name]);
        let v = json(&["vdi", "resize", name, "192M"]);
        assert_eq!(v["virtual_size"], 192 * MIB);

        // Shrinking: refused without --allow-shrink, confirmation off a terminal.
        let before = state();
        let e = fails(&["vdi", "resize", name, "32M"], "SHRINK_REFUSED");
        assert!(e["params"].to_string().contains(name), "{e}");
        fails(
            &["vdi", "resize", name, "32M", "--allow-shrink"],
            "CONFIRMATION_REQUIRED",
        );
        assert_eq!(before, state());
        let v = json(&["vdi", "resize", name, "32M", "--allow-shrink", "--yes"]);
        assert_eq!(v["virtual_size"], 32 * MIB);
        let dev = ok(&["vdi", "attach", name]).trim().to_string();
        assert_eq!(
            crc_at(&dev, 0, 32 << 20),
            crc32fast::hash(&data[..32 << 20])
        );
        ok(&["vdi", "detach", name]);
    }
    // A snapshot is read-only: no resize.
    json(&["vdi", "snapshot", "thin", "--name", "snap"]);
    fails(&["vdi", "resize", "snap", "1G"], "VDI_READ_ONLY");
    // An interrupted grow of a preallocated VDI is finished by running it again.
    let r = thinsr_cmd(&["--json", "vdi", "resize", "fat", "+64M"])
        .env("THINSR_CRASH_AT", "vdi-resize.after-lvresize")
        .output()
        .unwrap();
    assert_ne!(r.status.code(), Some(0));
    let v = json(&["vdi", "show", "fat"]);
    assert!(v["pending"].is_object(), "{v}");
    fails(&["vdi", "attach", "fat"], "VDI_INCOMPLETE");
    let v = json(&["vdi", "resize", "fat", "96M"]);
    assert_eq!(v["virtual_size"], 96 * MIB);
    assert!(json(&["vdi", "show", "fat"]).get("pending").is_none());
    let dev = ok(&["vdi", "attach", "fat"]).trim().to_string();
    assert!(read_at(&dev, 32 * MIB, 64 << 20).iter().all(|b| *b == 0));
    ok(&["vdi", "detach", "fat"]);
}

#[test]
fn bad_vdi_input_gets_a_clear_error_and_changes_nothing() {
    vm();
    owned_sr("one");
    json(&["vdi", "create", "twin disk", "--size", "8M"]);
    json(&["vdi", "create", "twin disk", "--size", "8M"]);
    json(&["vdi", "create", "fat", "--size", "8M", "--preallocate"]);
    json(&["vdi", "create", "live", "--size", "8M"]);
    ok(&["vdi", "attach", "live"]);
    let long = "n".repeat(10_000);
    let long_key = "k".repeat(300);
    let long_text = "d".repeat(5000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["vdi", "create", "x", "--size", "0"], "INVALID_SIZE"),
        (vec!["vdi", "create", "x", "--size=-1G"], "INVALID_SIZE"),
        (vec!["vdi", "create", "x", "--size", "12XB"], "INVALID_SIZE"),
        (vec!["vdi", "create", "x", "--size", ""], "INVALID_SIZE"),
        (
            vec!["vdi", "create", "x", "--size", "10G", "--preallocate"],
            "NO_SPACE",
        ),
        (vec!["vdi", "create", &long, "--size", "1G"], "INVALID_NAME"),
        (
            vec!["vdi", "create", "tab\there", "--size", "1G"],
            "INVALID_NAME",
        ),
        (
            vec!["vdi", "create", "x", "--size", "1G", "--sr", "nope"],
            "SR_NOT_FOUND",
        ),
        (vec!["vdi", "create", "x"], "USAGE"),
        (vec!["vdi", "show", "nope"], "VDI_NOT_FOUND"),
        (vec!["vdi", "show", &long], "VDI_NOT_FOUND"),
        (vec!["vdi", "show", "twin disk"], "VDI_AMBIGUOUS"),
        (
            vec!["vdi", "destroy", "twin disk", "--yes"],
            "VDI_AMBIGUOUS",
        ),
        (vec!["vdi", "destroy", "nope", "--yes"], "VDI_NOT_FOUND"),
        (vec!["vdi", "destroy", "live", "--yes"], "VDI_ATTACHED"),
        (vec!["vdi", "snapshot", "fat"], "INVALID_ARGUMENT"),
        (
            vec!["vdi", "snapshot", "live", "--name", &long],
            "INVALID_NAME",
        ),
        (vec!["vdi", "resize", "live", "0"], "INVALID_SIZE"),
        (vec!["vdi", "resize", "live", "-5M"], "INVALID_SIZE"),
        (vec!["vdi", "resize", "live", "+0"], "INVALID_SIZE"),
        (vec!["vdi", "resize", "live", "4M"], "SHRINK_REFUSED"),
        (
            vec!["vdi", "resize", "live", "4M", "--allow-shrink", "--yes"],
            "VDI_ATTACHED",
        ),
        (vec!["vdi", "set", "live", "", "v"], "INVALID_ARGUMENT"),
        (
            vec!["vdi", "set", "live", &long_key, "v"],
            "INVALID_ARGUMENT",
        ),
        (
            vec!["vdi", "set-description", "live", &long_text],
            "INVALID_ARGUMENT",
        ),
        (vec!["vdi", "bogus"], "USAGE"),
    ];
    let before = state();
    for (args, code) in &cases {
        fails(args, code);
        assert_eq!(before, state(), "{args:?} changed something");
    }
    // A crash between lvcreate and the metadata write leaves a tagged LV that list reports.
    let r = thinsr_cmd(&["vdi", "create", "orphan", "--size", "8M"])
        .env("THINSR_CRASH_AT", "vdi-create.after-lvcreate")
        .output()
        .unwrap();
    assert_ne!(r.status.code(), Some(0));
    let r = thinsr(&["vdi", "list"]);
    assert!(
        r.stderr.contains("one/orphan carries VDI tag"),
        "{}",
        r.stderr
    );
    fails(&["vdi", "show", "orphan"], "VDI_NOT_FOUND");
}

#[test]
fn read_only_attach_of_thin_preallocated_and_snapshot_vdis() {
    vm();
    owned_sr("local");
    ok(&["vdi", "create", "thin", "--size", "64M"]);
    ok(&["vdi", "create", "fat", "--size", "16M", "--preallocate"]);
    let data = noise(4096, 5);
    for name in ["thin", "fat"] {
        let dev = json(&["vdi", "attach", name])["path"]
            .as_str()
            .unwrap()
            .to_string();
        write_at(&dev, 0, &data);
        ok(&["vdi", "detach", name]);
        let ro = json(&["vdi", "attach", name, "--read-only"]);
        assert_eq!(ro["read_write"], false, "{ro}");
        let dev = ro["path"].as_str().unwrap().to_string();
        assert_eq!(read_at(&dev, 0, 4096), data, "{name}");
        assert!(refuses_writes(&dev), "{name}: {dev} took a write");
        // The same mode gives the same device; the other mode waits for a detach.
        assert_eq!(
            json(&["vdi", "attach", name, "--read-only"])["path"],
            dev.as_str()
        );
        fails(&["vdi", "attach", name], "VDI_ATTACHED");
        if name == "thin" {
            // A thin VDI grows while attached (VDI_RESIZE_ONLINE), read-only too: the
            // device of thinsr's over it takes the new length.
            json(&["vdi", "resize", name, "+4M"]);
            use std::io::{Seek, SeekFrom};
            let size = std::fs::File::open(&dev)
                .unwrap()
                .seek(SeekFrom::End(0))
                .unwrap();
            assert_eq!(size, 68 << 20, "{dev}");
        } else {
            // A preallocated one grows detached: its new part is zeroed before use.
            fails(&["vdi", "resize", name, "+4M"], "VDI_ATTACHED");
        }
        ok(&["vdi", "detach", name]);
        // Read-only was for that attachment only.
        let dev = json(&["vdi", "attach", name])["path"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!refuses_writes(&dev), "{name} stayed read-only");
        ok(&["vdi", "detach", name]);
    }
    ok(&["vdi", "snapshot", "thin", "--name", "snap"]);
    let dev = json(&["vdi", "attach", "snap"])["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(refuses_writes(&dev), "the snapshot took a write");
    ok(&["vdi", "detach", "snap"]);
    let dm = sh(&["dmsetup", "ls"]);
    assert!(!dm.contains("thinsr-"), "{dm}");
}
