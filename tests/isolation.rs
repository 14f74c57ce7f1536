//! No disk ever shows another's old bytes, and nothing thinsr runs or reads as root can
//! have been written by someone else (README, "What thinsr guarantees").

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::*;

const MIB: u64 = 1 << 20;
/// What the disks held before thinsr: 16 recognisable bytes, over and over.
const MARKER: &[u8; 16] = b"OLD-TENANT-DATA!";

/// Fills the first `mib` MiB of `dev` with the marker. O_DIRECT: through the page cache
/// the same writes take minutes under TCG.
fn prefill(dev: &str, mib: u64) {
    use std::os::unix::fs::FileExt;
    const STEP: u64 = 16 * MIB;
    let marks: Vec<u8> = MARKER.iter().copied().cycle().take(STEP as usize).collect();
    let chunk = thinsr::aligned::AlignedBuf::copy_of(&marks);
    let f = open_direct(dev, true).unwrap();
    for i in 0..mib * MIB / STEP {
        f.write_all_at(chunk.as_slice(), i * STEP).unwrap();
    }
    f.sync_all().unwrap();
}

/// Writes 4 KiB at the start of each MiB of `dev` (as a VM's first writes would: each
/// provisions a pool block it only partly fills), then reads the whole device back and
/// counts the bytes of marker it shows.
fn old_bytes_seen(dev: &str, size_mib: u64) -> usize {
    let page = vec![0x5au8; 4096];
    for i in 0..size_mib {
        write_at(dev, i * MIB, &page);
    }
    let data = std::fs::read(dev).unwrap();
    data.chunks(16).filter(|c| *c == MARKER).count() * 16
}

/// Turns `thin_pool_zero` off in the lvm.conf thinsr and the tests run with (the master
/// copy in the dom0 profile), as a host tuned for speed would.
fn lvm_conf_without_zeroing() {
    for conf in ["/etc/lvm/lvm.conf", "/etc/lvm/master/lvm.conf"] {
        if let Ok(mut text) = std::fs::read_to_string(conf) {
            text.push_str("allocation {\n    thin_pool_zero = 0\n}\n");
            std::fs::write(conf, text).unwrap();
        }
    }
}

fn pool_attr(vg_pool: &str) -> String {
    sh(&["lvm", "lvs", "--noheadings", "-o", "lv_attr", vg_pool])
        .trim()
        .to_string()
}

#[test]
fn new_vdis_never_show_old_bytes_even_where_lvm_would_not_zero() {
    vm();
    prefill(DISKS[0], 640);
    prefill(DISKS[1], 640);
    lvm_conf_without_zeroing();

    // The control: a pool made by hand under this lvm.conf does leak, so the checks
    // below can fail.
    admin_pool("admin", DISKS[1], "vms", &[]);
    assert_eq!(
        pool_attr("admin/vms").as_bytes()[7],
        b'-',
        "the control pool zeroes"
    );
    sh(&[
        "lvm",
        "lvcreate",
        "-y",
        "-V",
        "64m",
        "-T",
        "admin/vms",
        "-n",
        "control",
    ]);
    let leaked = old_bytes_seen("/dev/admin/control", 64);
    println!("control thin LV of an unzeroed pool: {leaked} bytes of old data");
    assert!(leaked > MIB as usize, "the control did not leak: {leaked}");
    sh(&["lvm", "lvremove", "-y", "admin/control"]);

    // An owned SR: its pool zeroes whatever lvm.conf says.
    let sr = json(&["sr", "create", DISKS[0], "--name", "owned"]);
    assert_eq!(sr["pool"]["zeroes_new_blocks"], true, "{sr}");
    json(&["vdi", "create", "a", "--size", "64M"]);
    let dev = ok(&["vdi", "attach", "a"]).trim().to_string();
    assert_eq!(old_bytes_seen(&dev, 64), 0, "an owned SR's new VDI");
    // A destroyed VDI's blocks, handed to the next one, read as zeros too.
    ok(&["vdi", "detach", "a"]);
    ok(&["--yes", "vdi", "destroy", "a"]);
    json(&["vdi", "create", "b", "--size", "64M"]);
    let dev = ok(&["vdi", "attach", "b"]).trim().to_string();
    assert_eq!(
        old_bytes_seen(&dev, 64),
        0,
        "a VDI on a destroyed one's blocks"
    );
    ok(&["vdi", "detach", "b"]);

    // The admin's unzeroed pool: refused, naming the pool and the fix; nothing changes.
    let before = state();
    let e = fails(
        &["sr", "introduce", "admin", "--pool", "vms"],
        "POOL_NOT_ZEROING",
    );
    let text = e.to_string();
    assert!(
        text.contains("admin/vms") && text.contains("lvchange --zero y"),
        "{e}"
    );
    assert_eq!(state(), before);
    // With --yes, zeroing is turned on and the pool adopted.
    let d = json(&[
        "--yes",
        "sr",
        "introduce",
        "admin",
        "--pool",
        "vms",
        "--name",
        "shared",
    ]);
    assert_eq!(d["pool"]["zeroes_new_blocks"], true, "{d}");
    assert_eq!(pool_attr("admin/vms").as_bytes()[7], b'z');
    json(&["vdi", "create", "c", "--size", "64M", "--sr", "shared"]);
    let dev = ok(&["vdi", "attach", "c"]).trim().to_string();
    assert_eq!(old_bytes_seen(&dev, 64), 0, "an adopted pool's new VDI");
    ok(&["vdi", "detach", "c"]);

    // Zeroing turned off behind thinsr's back: sr check finds it, --repair turns it on.
    sh(&["lvm", "lvchange", "--zero", "n", "owned/thinsr_pool"]);
    let r = thinsr(&["--json", "sr", "check", "owned"]);
    let kinds: Vec<String> = r.json()["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["unzeroed_pool"], "{}", r.stdout);
    assert_eq!(
        json(&["sr", "show", "owned"])["pool"]["zeroes_new_blocks"],
        false
    );
    assert!(ok(&["sr", "show", "owned"]).contains("does NOT zero new blocks"));
    let r = thinsr(&["--json", "sr", "check", "owned", "--repair"]).json();
    assert_eq!(r["findings"][0]["repaired"], true, "{r}");
    assert_eq!(pool_attr("owned/thinsr_pool").as_bytes()[7], b'z');
    assert!(json(&["sr", "check", "owned"])["findings"]
        .as_array()
        .unwrap()
        .is_empty());
    // The admin's pool turned off again: its repair needs --yes.
    sh(&["lvm", "lvchange", "--zero", "n", "admin/vms"]);
    let r = thinsr(&["--json", "sr", "check", "shared", "--repair"]).json();
    assert_eq!(r["findings"][0]["kind"], "unzeroed_pool", "{r}");
    assert_eq!(r["findings"][0]["repaired"], false, "{r}");
    assert_eq!(pool_attr("admin/vms").as_bytes()[7], b'-');
    json(&["--yes", "sr", "check", "shared", "--repair"]);
    assert_eq!(pool_attr("admin/vms").as_bytes()[7], b'z');
}

/// A scheme script that records each run in /tmp/ran.
const SCRIPT: &str = "#!/bin/sh\necho \"$*\" >> /tmp/ran\nexit 1\n";

fn script(dir: &str, mode: u32) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = format!("{dir}/evil");
    std::fs::write(&path, SCRIPT).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn refused(dir: &str, named: &str) {
    let r = thinsr_cmd(&["--json", "template", "introduce", "evil://img"])
        .env("THINSR_SCHEME_DIR", dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.stderr)));
    assert_eq!(v["code"], "UNSAFE_PATH", "{v}");
    assert!(v.to_string().contains(named), "{v}");
    assert!(
        !std::path::Path::new("/tmp/ran").exists(),
        "the script ran: {}",
        std::fs::read_to_string("/tmp/ran").unwrap_or_default()
    );
}

#[test]
fn nothing_run_or_read_as_root_could_have_been_written_by_another_user() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);

    // Scheme scripts: world-, group-writable, another user's, or in a writable directory.
    let world = script("/srv/world", 0o777);
    refused("/srv/world", &world);
    let group = script("/srv/group", 0o775);
    refused("/srv/group", &group);
    let foreign = script("/srv/foreign", 0o755);
    std::os::unix::fs::chown(&foreign, Some(1000), Some(1000)).unwrap();
    refused("/srv/foreign", "owned by uid 1000");
    script("/srv/open/schemes", 0o755);
    std::fs::set_permissions("/srv/open", std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("/srv/open/schemes", "(in /srv/open)");
    // The same script, root's alone, runs (and fails, as it is written to).
    script("/srv/good", 0o755);
    let r = thinsr_cmd(&["--json", "template", "introduce", "evil://img"])
        .env("THINSR_SCHEME_DIR", "/srv/good")
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert_eq!(
        std::fs::read_to_string("/tmp/ran").unwrap(),
        "attach evil://img\n"
    );
    std::fs::remove_file("/tmp/ran").unwrap();

    // The registry of SRs another user could write is not read.
    std::fs::create_dir_all("/srv/conf").unwrap();
    std::fs::copy("/etc/thinsr/srs.yaml", "/srv/conf/srs.yaml").unwrap();
    std::fs::set_permissions("/srv/conf/srs.yaml", std::fs::Permissions::from_mode(0o666)).unwrap();
    let r = thinsr(&["--json", "--config", "/srv/conf", "sr", "list"]);
    assert_eq!(r.json()["code"], "UNSAFE_PATH", "{}", r.stdout);
    std::fs::set_permissions("/srv/conf/srs.yaml", std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&["--config", "/srv/conf", "sr", "list"]);

    // Method files: root's, 0755.
    ok(&["xapi", "install", "--root", "/srv/plugins"]);
    for dir in ["volume/org.xen.xapi.storage.thinsr", "datapath/thinsr"] {
        for f in std::fs::read_dir(format!("/srv/plugins/{dir}")).unwrap() {
            let m = f.unwrap().metadata().unwrap();
            assert_eq!((m.uid(), m.permissions().mode() & 0o7777), (0, 0o755));
        }
    }

    // State: a link planted where thinsr keeps it is refused, never followed.
    std::fs::create_dir_all("/srv/target").unwrap();
    let _ = std::fs::remove_dir_all("/run/thinsr");
    std::os::unix::fs::symlink("/srv/target", "/run/thinsr").unwrap();
    let mut watch = thinsr_cmd(&["pool", "watch"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waited = std::time::Instant::now();
    let status = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break s;
        }
        if waited.elapsed().as_secs() > 20 {
            let _ = watch.kill();
            panic!("pool watch ran with /run/thinsr a link");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(watch.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("/run/thinsr") && err.contains("symbolic link"),
        "{err}"
    );
    assert!(std::fs::read_dir("/srv/target").unwrap().next().is_none());
    std::fs::remove_file("/run/thinsr").unwrap();
    // And where its locks live (/run/lock is everyone's on most hosts).
    let _ = std::fs::remove_dir_all("/run/lock/thinsr");
    std::os::unix::fs::symlink("/srv/target", "/run/lock/thinsr").unwrap();
    let r = thinsr(&["--json", "vdi", "create", "d", "--size", "64M"]);
    assert_eq!(r.json()["code"], "UNSAFE_PATH", "{}", r.stdout);
    assert!(std::fs::read_dir("/srv/target").unwrap().next().is_none());
    std::fs::remove_file("/run/lock/thinsr").unwrap();
    json(&["vdi", "create", "d", "--size", "64M"]);
    let m = std::fs::symlink_metadata("/run/lock/thinsr").unwrap();
    assert!(m.is_dir());
    assert_eq!(m.permissions().mode() & 0o777, 0o700);
}
