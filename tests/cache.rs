//! Copy-on-read caches of remote templates, in the test VM: a template served over NBD on
//! loopback from a device whose reads are counted (block-layer stats of a dm-linear device
//! under the server). Each block crosses the "network" once per host.

mod common;

use common::*;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 64 * MIB;

/// A 64 MiB template of random data on a counted device, served by qemu-nbd with
/// O_DIRECT (so the server's own page cache cannot hide reads). Returns the dm name.
fn remote_template() -> &'static str {
    let img = "/tmp/src.raw";
    std::fs::write(img, noise(SIZE as usize, 77)).unwrap();
    dm_on_file("tsrc", img, "linear", "");
    serve_nbd("/dev/mapper/tsrc", "raw", 10811, "tpl", true);
    "tsrc"
}

fn attach(vdi: &str) -> String {
    json(&["vdi", "attach", vdi])["path"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Reads `[from, from+len)` of a device, checking it against the template's bytes.
fn read_checked(dev: &str, from: u64, len: u64) {
    let want = &noise(SIZE as usize, 77)[from as usize..(from + len) as usize];
    assert!(
        read_at(dev, from, len as usize) == want,
        "{dev} does not read the template"
    );
}

fn server_reads_during(dm: &str, f: impl FnOnce()) -> u64 {
    let before = dm_bytes_read(dm);
    f();
    dm_bytes_read(dm) - before
}

fn local_lv() -> String {
    json(&["template", "show", "remote"])["local"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn each_template_block_is_fetched_once_per_host() {
    vm();
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    let dm = remote_template();
    let t = json(&[
        "template",
        "introduce",
        "nbd://127.0.0.1:10811/tpl",
        "--name",
        "remote",
        "--cache",
    ]);
    assert!(t["cache"].is_string(), "{t}");
    assert_eq!(json(&["sr", "show", "local"])["caches"], 1);
    for c in ["c1", "c2", "c3", "c4"] {
        ok(&["vdi", "clone", "remote", "--name", c]);
    }

    // The first clone's read of 16 MiB reaches the server; the second's does not.
    let region = (16 * MIB, 16 * MIB);
    let c1 = attach("c1");
    let first = server_reads_during(dm, || read_checked(&c1, region.0, region.1));
    assert!(
        first >= region.1,
        "the server read {first} for the first 16 MiB"
    );
    let c2 = attach("c2");
    let second = server_reads_during(dm, || read_checked(&c2, region.0, region.1));
    assert!(
        second < MIB,
        "the server read {second} for a region already cached"
    );
    eprintln!("first read: {first} bytes from the server, second: {second}");

    // Clones' writes go to the clones, never to the cache.
    write_at(&c1, region.0, &vec![0xEE; MIB as usize]);
    read_checked(&c2, region.0, region.1);
    ok(&["vdi", "detach", "c1"]);
    ok(&["vdi", "detach", "c2"]);

    // The cache outlives detach and the SR's detach and attach.
    ok(&["sr", "detach", "local"]);
    ok(&["sr", "attach", "local"]);
    let c3 = attach("c3");
    let third = server_reads_during(dm, || read_checked(&c3, region.0, region.1));
    assert!(
        third < MIB,
        "the server read {third} after sr detach/attach"
    );
    ok(&["vdi", "detach", "c3"]);
    let shown = json(&["template", "show", "remote"]);
    assert!(shown["cached"].as_u64().unwrap() >= region.1, "{shown}");

    // Warm fetches the rest once, into a local copy that replaces the cache; a whole read
    // of a clone then costs the server nothing.
    let warm = server_reads_during(dm, || {
        ok(&["template", "warm", "remote"]);
    });
    assert!(
        warm <= SIZE - region.1 + MIB,
        "warm read {warm}: more than the missing part"
    );
    let shown = json(&["template", "show", "remote"]);
    assert!(shown.get("cache").is_none(), "{shown}");
    assert_eq!(shown["image_allocated"], SIZE, "{shown}");
    assert_eq!(shown["cached"], SIZE, "all of it is local: {shown}");
    assert!(
        !sh(&["lvm", "lvs", "--noheadings", "-o", "lv_tags", "local"]).contains("thinsr_cache")
    );
    let c4 = attach("c4");
    let whole = server_reads_during(dm, || read_checked(&c4, 0, SIZE));
    assert_eq!(whole, 0, "a full read after warm reached the server");
    // Clones write everywhere; the local copy still equals the template byte for byte.
    write_at(&c4, 0, &vec![0x11; SIZE as usize]);
    ok(&["vdi", "detach", "c4"]);
    let lv = format!("local/{}", local_lv());
    sh(&["lvm", "lvchange", "-ay", "-K", &lv]);
    sh(&[
        "qemu-img",
        "compare",
        "-U",
        "-f",
        "raw",
        "-F",
        "raw",
        &format!("/dev/{lv}"),
        "/tmp/src.raw",
    ]);
    sh(&["lvm", "lvchange", "-an", &lv]);

    // Off is refused while attached; then the local copy goes.
    attach("c3");
    fails(&["template", "cache", "remote", "off"], "TEMPLATE_IN_USE");
    ok(&["vdi", "detach", "c3"]);
    let t = json(&["template", "cache", "remote", "off"]);
    assert!(t.get("cache").is_none(), "{t}");
    assert!(t.get("local").is_none(), "{t}");
    let tags = sh(&["lvm", "lvs", "--noheadings", "-o", "lv_tags", "local"]);
    assert!(
        !tags.contains("thinsr_cache") && !tags.contains("thinsr_local"),
        "{tags}"
    );
    // Uncached, the clone reads from the server again.
    let c3 = attach("c3");
    let again = server_reads_during(dm, || read_checked(&c3, 40 * MIB, MIB));
    assert!(again >= MIB, "{again}");
    ok(&["vdi", "detach", "c3"]);
    let r = thinsr(&["--json", "sr", "check", "local"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn cache_crashes_leave_what_check_or_detach_clears() {
    vm();
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    let dm = remote_template();
    ok(&[
        "template",
        "introduce",
        "nbd://127.0.0.1:10811/tpl",
        "--name",
        "remote",
    ]);
    ok(&["vdi", "clone", "remote", "--name", "c"]);
    let before = state();
    // On: the LV made, the entry not written: an orphan cache, removed by the repair.
    crash_at(
        "cache.after-lvcreate",
        &["template", "cache", "remote", "on"],
    );
    let r = thinsr(&["--json", "sr", "check", "local", "--repair"]);
    assert!(r.stdout.contains("orphan_cache"), "{}", r.stdout);
    assert_eq!(state(), before);
    // Off: the entry written, the LV left: the same.
    ok(&["template", "cache", "remote", "on"]);
    crash_at("cache.after-meta", &["template", "cache", "remote", "off"]);
    let r = thinsr(&["--json", "sr", "check", "local", "--repair"]);
    assert!(r.stdout.contains("orphan_cache"), "{}", r.stdout);
    assert_eq!(state(), before);
    // Attach dying after activating the cache: the next attach starts over and works.
    ok(&["template", "cache", "remote", "on"]);
    crash_at("attach.after-cache-active", &["vdi", "attach", "c"]);
    let c = attach("c");
    let read = server_reads_during(dm, || read_checked(&c, 0, MIB));
    assert!(read >= MIB);
    ok(&["vdi", "detach", "c"]);
    let r = thinsr(&["--json", "sr", "check", "local"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // A script's template cannot be cached; nothing is registered.
    let before = state();
    fails(
        &["template", "introduce", "fake://x", "--cache"],
        "INVALID_ARGUMENT",
    );
    assert_eq!(state(), before);
}

#[test]
fn warming_an_nbd_template_works_with_a_server_that_takes_one_client() {
    vm();
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    let img = "/tmp/one.raw";
    std::fs::write(img, noise(SIZE as usize, 77)).unwrap();
    sh(&["ip", "link", "set", "lo", "up"]);
    // qemu-nbd's default: one client at a time (--shared=1); a second waits for the first.
    sh(&[
        "qemu-nbd",
        "--fork",
        "--persistent",
        "--read-only",
        "--format=raw",
        "--bind=127.0.0.1",
        "--port=10812",
        "--export-name=tpl",
        img,
    ]);
    ok(&[
        "template",
        "introduce",
        "nbd://127.0.0.1:10812/tpl",
        "--name",
        "remote",
        "--cache",
    ]);
    ok(&["vdi", "clone", "remote", "--name", "reader"]);
    // The clone's attachment holds the server's one connection, and reads through it.
    let dev = attach("reader");
    read_checked(&dev, 0, 4 * MIB);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, dev) = (stop.clone(), dev.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = (rounds * 3 * MIB) % (SIZE - MIB);
                read_checked(&dev, at, MIB);
                rounds += 1;
            }
            rounds
        })
    };
    let t = std::time::Instant::now();
    let mut warm = thinsr_cmd(&["--json", "template", "warm", "remote"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(s) = warm.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed().as_secs() < 300,
            "template warm waits on the one-client server"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let out = warm.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = reader.join().unwrap();
    println!(
        "warm took {:.1} s while the clone read {rounds} MiB",
        t.elapsed().as_secs_f64()
    );
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!local_lv().is_empty());
    // The attached clone moved onto the local copy, and a new clone reads it.
    read_checked(&dev, 0, SIZE);
    ok(&["vdi", "clone", "remote", "--name", "later"]);
    read_checked(&attach("later"), 0, SIZE);
    ok(&["vdi", "detach", "reader"]);
    ok(&["vdi", "detach", "later"]);
}
