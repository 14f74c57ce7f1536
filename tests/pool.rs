//! The pool in the VM: growth by `pool maintain`, limits, a full pool, over-commitment.

mod common;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

fn pool(sr: &str) -> serde_json::Value {
    json(&["pool", "show", sr])
}

/// Writes `mib` MiB of noise from the start of a device in 32 MiB steps, each flushed.
/// Returns the first error, with how long the step that failed took.
fn fill(dev: &str, mib: u64) -> Result<(), (std::io::Error, Duration)> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(|e| (e, Duration::ZERO))?;
    let chunk = noise(32 * MIB as usize, mib);
    let mut off = 0;
    while off < mib * MIB {
        let len = (mib * MIB - off).min(chunk.len() as u64) as usize;
        let step = Instant::now();
        f.write_all_at(&chunk[..len], off)
            .and_then(|_| f.sync_data())
            .map_err(|e| (e, step.elapsed()))?;
        off += len as u64;
    }
    Ok(())
}

fn maintain(args: &[&str]) -> Run {
    let mut all = vec!["pool", "maintain"];
    all.extend_from_slice(args);
    thinsr(&all)
}

#[test]
fn maintain_grows_a_pool_past_its_threshold_and_is_quiet_otherwise() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    let r = maintain(&[]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    let before = pool("local");
    assert_eq!(before["size"], 1u64 << 30);
    assert_eq!(before["policy"]["threshold"], 80);
    json(&["vdi", "create", "big", "--size", "2G"]);
    let dev = ok(&["vdi", "attach", "big"]).trim().to_string();
    fill(&dev, 850).unwrap();
    assert!(pool("local")["data_percent"].as_f64().unwrap() > 80.0);
    let r = maintain(&[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("grew thin pool local/thinsr_pool: data 1.00 GiB -> 1.20 GiB"),
        "{}",
        r.stdout
    );
    let after = pool("local");
    assert_eq!(after["size"], 1232 * MIB); // +20%, whole extents
    let r = maintain(&[]);
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
    // Over the threshold again: a new thin VDI grows the pool before it is made.
    let more = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
    more.write_all_at(&noise(160 * MIB as usize, 5), 850 * MIB)
        .unwrap();
    more.sync_data().unwrap();
    assert!(pool("local")["data_percent"].as_f64().unwrap() > 80.0);
    json(&["vdi", "create", "small", "--size", "8M"]);
    let after = pool("local");
    assert_eq!(after["size"], 1480 * MIB); // 1232 MiB + 20%, whole extents
                                           // Metadata over the threshold: the metadata grows.
    let meta_before = after["metadata_size"].as_u64().unwrap();
    assert!(
        after["metadata_percent"].as_f64().unwrap() >= 1.0,
        "{after}"
    );
    json(&["pool", "set", "local", "--threshold", "1"]);
    let r = maintain(&["local"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("metadata 4.00 MiB -> 8.00 MiB"),
        "{}",
        r.stdout
    );
    assert!(pool("local")["metadata_size"].as_u64().unwrap() > meta_before);
    // The data written is intact.
    assert_eq!(
        crc_at(&dev, 0, 32 << 20),
        crc32fast::hash(&noise(32 * MIB as usize, 850))
    );
}

#[test]
fn a_shared_pool_at_its_maximum_warns_and_leaves_the_admin_alone() {
    vm();
    sh(&["lvm", "vgcreate", "-y", "vg0", DISKS[1]]);
    let home = admin_lv("vg0", "home", 64);
    json(&["sr", "introduce", "vg0", "--pool-size", "512M"]);
    json(&["vdi", "create", "disk", "--size", "1G"]);
    let dev = ok(&["vdi", "attach", "disk"]).trim().to_string();
    fill(&dev, 440).unwrap();
    let r = maintain(&[]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains(
            "warning: SR 'vg0': thin pool data is 86% full and cannot grow: it is at its maximum"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(pool("vg0")["size"], 512 * MIB);
    assert_eq!(sha256("/dev/vg0/home"), home);
    // The admin gives it more room: an explicit extend raises the maximum.
    let p = json(&["pool", "extend", "vg0", "+256M"]);
    assert_eq!(p["size"], 768 * MIB);
    assert_eq!(p["max_size"], 768 * MIB);
    let r = maintain(&[]);
    assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{}", r.stderr);
    // Shrinking is refused; so is growing past the VG.
    fails(&["pool", "extend", "vg0", "256M"], "INVALID_SIZE");
    fails(&["pool", "extend", "vg0", "+100G"], "NO_SPACE");
    assert_eq!(sha256("/dev/vg0/home"), home);
    let lvs = sh(&[
        "lvm",
        "lvs",
        "--noheadings",
        "-o",
        "lv_name,lv_size",
        "--units",
        "m",
        "vg0/home",
    ]);
    assert!(lvs.contains("64.00m"), "{lvs}");
}

#[test]
fn when_full_error_fails_writes_at_once_and_extend_recovers() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    let p = json(&["pool", "set", "local", "--when-full", "error"]);
    assert_eq!(p["when_full"], "error");
    json(&["vdi", "create", "big", "--size", "2G"]);
    let dev = ok(&["vdi", "attach", "big"]).trim().to_string();
    let (e, took) = fill(&dev, 1200).expect_err("a write past the full pool must fail");
    // Queueing would have hung for 60 s before failing; the 32 MiB step fails at once.
    assert!(took < Duration::from_secs(10), "{took:?}: {e}");
    let p = pool("local");
    assert_eq!(p["kernel"]["state"], "out_of_data_space", "{p}");
    // maintain reports it as critical (and, in owned mode, grows the pool).
    let r = maintain(&[]);
    assert_eq!(r.code, 2, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("CRITICAL"), "{}", r.stderr);
    json(&["pool", "extend", "local", "+1G"]);
    fill(&dev, 1200).expect("writes succeed after the extend");
    assert_eq!(pool("local")["kernel"]["state"], "rw");
    ok(&["pool", "check", "local"]);
}

#[test]
fn max_overcommit_refuses_the_thin_vdi_that_would_pass_it() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    fails(
        &["pool", "set", "local", "--max-overcommit", "0.5"],
        "INVALID_ARGUMENT",
    );
    fails(
        &["pool", "set", "local", "--threshold", "0"],
        "INVALID_ARGUMENT",
    );
    fails(
        &["pool", "set", "local", "--max-size", "10M"],
        "INVALID_SIZE",
    );
    json(&["pool", "set", "local", "--max-overcommit", "2"]);
    json(&["vdi", "create", "a", "--size", "1G"]);
    json(&["vdi", "create", "b", "--size", "1G"]);
    let before = state();
    let e = fails(
        &["vdi", "create", "c", "--size", "8M"],
        "POOL_OVERCOMMITTED",
    );
    assert!(e["params"].to_string().contains("limit 2x"), "{e}");
    fails(&["vdi", "snapshot", "a"], "POOL_OVERCOMMITTED");
    assert_eq!(before, state());
    // A preallocated VDI does not count: it has its own space.
    json(&["vdi", "create", "fat", "--size", "64M", "--preallocate"]);
    // The policy survives detach and attach (it lives in the SR's metadata).
    ok(&["sr", "detach", "local"]);
    ok(&["sr", "attach", "local"]);
    assert_eq!(pool("local")["policy"]["max_overcommit"], 2.0);
    // Check of a live pool and of an inactive one.
    ok(&["pool", "check", "local"]);
    ok(&["sr", "detach", "local"]);
    let r = thinsr(&["pool", "check", "local"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("consistent"), "{}", r.stdout);
}
