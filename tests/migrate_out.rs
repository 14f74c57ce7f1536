//! Disks moving OUT of thinsr live, as xapi 26.1 drives the source of a storage migration
//! (storage_smapiv3_migrate.ml `send_start` and `mirror_wait`, xapi-storage-script's
//! main.ml, xenopsd's deactivate), played through the installed method files: the
//! `u0_mirror_vbd_...` attach without activate, `Data.mirror` to a socket xapi's proxy
//! makes late and that takes one connection, `Data.stat` in a loop without sleeps, the
//! u0_mirror datapath torn down while the mirror runs, the VM's `Datapath.deactivate` as
//! the drain point. A VM writes known records all along; the destination is thinsr's own
//! export in a second SR (the other host) or a qemu-nbd.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::xapi::*;
use common::*;
use serde_json::{json, Value};

const SR_HERE: &str = "5a0c9e12-3b4d-4e6f-8a7b-9c0d1e2f3a4b";
const SR_THERE: &str = "6b1d0f23-4c5e-4f70-9b8c-0d1e2f3a4b5c";
const MIB: u64 = 1 << 20;
/// The running VM's domain, xapi's u0_mirror datapath for it, and the receiving domain.
const VM: &str = "5";
const U0: &str = "u0_mirror_vbd_5_51712";
const MIR: &str = "MIR7b2e41";
/// Where xapi's proxy listens: /var/run/nbdproxy/export/<mirror vm>.
const PROXY_DIR: &str = "/tmp/nbdproxy/export";

/// Data.mirror as xapi calls it, where the stand-in systemd-run is found (the mirror's
/// guard starts in a scope of its own).
fn mirror(args: Value) -> Value {
    let path = format!("{SPY}:{}", std::env::var("PATH").unwrap_or_default());
    let (code, r) = run_with(DATAPATH, "Data.mirror", args, &[("PATH", &path)]);
    assert_eq!(code, 0, "Data.mirror failed: {r}");
    r
}

/// The target of device `dev`'s table (`linear`, `mirror`, ...).
fn target(dev: &str) -> String {
    let name = Path::new(dev).file_name().unwrap().to_str().unwrap();
    sh(&["dmsetup", "table", name])
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

/// What a mirror leaves when it is gone: no leg device, no NBD device connected, no
/// loop device, no record.
fn nothing_of_a_mirror_left(sr: &str) {
    let legs: Vec<String> = our_dm_devices()
        .into_iter()
        .filter(|d| d.starts_with("thinsr-mirror-"))
        .collect();
    assert!(legs.is_empty(), "{legs:?}");
    for e in std::fs::read_dir("/sys/block").unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.starts_with("nbd") {
            let size = std::fs::read_to_string(format!("/sys/block/{name}/size")).unwrap();
            assert_eq!(size.trim(), "0", "{name} is still connected");
        }
    }
    assert_eq!(sh(&["losetup", "-a"]).trim(), "", "a loop device is left");
    let dir = Path::new("/run/thinsr/mirror").join(sr);
    let left: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{dir:?}: {left:?}");
}

/// A VM writing 4 KiB records (sequence number, offset, noise) with O_DIRECT at
/// pseudo-random places of its disk until stopped; every write must succeed.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<BTreeMap<u64, u32>>,
}

impl Writer {
    fn start(dev: &str, size: u64, seed: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let (dev, flag) = (dev.to_string(), stop.clone());
        let handle = std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_DIRECT)
                .open(&dev)
                .unwrap();
            let mut written = BTreeMap::new();
            let mut x = seed | 1;
            let mut seq = 0u64;
            while !flag.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let offset = (x % (size / 4096)) * 4096;
                let mut rec = noise(4096, seed ^ seq);
                rec[..8].copy_from_slice(&seq.to_le_bytes());
                rec[8..16].copy_from_slice(&offset.to_le_bytes());
                let buf = thinsr::aligned::AlignedBuf::copy_of(&rec);
                f.write_all_at(buf.as_slice(), offset)
                    .unwrap_or_else(|e| panic!("the VM's write {seq} at {offset} failed: {e}"));
                written.insert(offset, crc32fast::hash(&rec));
                seq += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            written
        });
        Writer { stop, handle }
    }

    /// Stops it; returns the last record's CRC at each offset written.
    fn stop(self) -> BTreeMap<u64, u32> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("every write of the VM succeeded")
    }
}

fn holds_records(dev: &str, records: &BTreeMap<u64, u32>) {
    for (offset, crc) in records {
        assert_eq!(
            crc_at(dev, *offset, 4096),
            *crc,
            "{dev}: the record at {offset}"
        );
    }
}

/// xapi's export_nbd_proxy: after `delay` (its thread races Data.mirror) it listens on
/// `listen`, accepts ONE connection and relays it to `to`; returns the bytes relayed
/// from the source to the destination.
fn proxy(listen: &str, to: &str, delay: Duration) -> JoinHandle<u64> {
    let (listen, to) = (listen.to_string(), to.to_string());
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let l = UnixListener::bind(&listen).unwrap();
        let (mut src, _) = l.accept().unwrap();
        drop(l);
        let _ = std::fs::remove_file(&listen);
        let mut dst = UnixStream::connect(&to).unwrap();
        let (mut src2, mut dst2) = (src.try_clone().unwrap(), dst.try_clone().unwrap());
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut dst2, &mut src2);
            let _ = src2.shutdown(std::net::Shutdown::Both);
        });
        let mut sent = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match src.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if dst.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    sent += n as u64;
                }
            }
        }
        let _ = dst.shutdown(std::net::Shutdown::Both);
        back.join().unwrap();
        sent
    })
}

/// A qemu-nbd serving raw file `file` on unix socket `socket` as `name`, one client (its
/// default), ended when that client leaves.
fn qemu_nbd(file: &str, mib: u64, socket: &str, name: &str) -> std::process::Child {
    sh(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "raw",
        file,
        &format!("{mib}M"),
    ]);
    let _ = std::fs::remove_file(socket);
    let child = host_command("qemu-nbd")
        .args(["-f", "raw", "-x", name, "-k", socket, file])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !Path::new(socket).exists() {
        assert!(Instant::now() < deadline, "qemu-nbd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Data.stat in a loop without sleeping, as mirror_wait does, until complete or failed;
/// returns (the last status, calls, seconds).
fn stat_loop(op: &Value) -> (Value, u32, f64) {
    let t = Instant::now();
    let mut calls = 0;
    loop {
        let s = call(DATAPATH, "Data.stat", json!({"operation": op}));
        calls += 1;
        let p = s["progress"].as_f64().unwrap_or(0.0);
        assert!((0.0..=1.0).contains(&p), "{s}");
        if s["complete"] == true || s["failed"] == true {
            return (s, calls, t.elapsed().as_secs_f64());
        }
        assert!(calls < 400, "no end after {calls} calls: {s}");
    }
}

/// A running VM's disk leaves through a kernel mirror: 64 MiB of data in a 256 MiB VDI
/// with the VM writing records all along, xapi's proxy listening late, the u0_mirror
/// datapath torn down mid-mirror, a paced stat loop, the drain at deactivate; the
/// destination (thinsr's export in a second SR) ends identical, having been sent what the
/// VDI holds and no more. Then a halted VM's disk (domain -1) copied to a qemu-nbd.
#[test]
fn a_running_vms_disk_leaves_through_a_kernel_mirror_and_a_halted_ones_is_copied() {
    vm();
    install();
    systemd_run_spy();
    let (here, _) = sr_create(DISKS[0], SR_HERE, "here");
    let (there, _) = sr_create(DISKS[1], SR_THERE, "there");
    for dir in [VOLUME, DATAPATH] {
        let q = call(dir, "Plugin.Query", json!({}));
        assert!(
            q["features"].to_string().contains("\"VDI_MIRROR\""),
            "{dir}: {q}"
        );
    }
    let src = create(&here, "web", 256 * MIB);
    let (uri, key) = uri_and_key(&src);
    let (dev, _, _) = attach_nbd(&uri, VM);
    dp("Datapath.activate", &uri, VM);
    assert!(
        dev.starts_with("/dev/mapper/thinsr-"),
        "{dev}: a device of ours"
    );
    assert_eq!(target(&dev), "linear");
    for i in (0..256).step_by(4) {
        write_at(&dev, i * MIB, &noise(MIB as usize, 100 + i));
    }
    let allocated = physical(&here, &key);
    assert!((64 * MIB..=66 * MIB).contains(&allocated), "{allocated}");

    // The other host: a blank leaf, attached and activated for the receiving domain.
    let dst = create(&there, "web", 256 * MIB);
    let duri = dst["uri"][0].as_str().unwrap().to_string();
    let (ddev, dsock, dexport) = attach_nbd(&duri, MIR);
    dp("Datapath.activate", &duri, MIR);

    // The source's part.
    attach_nbd(&uri, U0);
    let writer = Writer::start(&dev, 256 * MIB, 7);
    std::fs::create_dir_all(PROXY_DIR).unwrap();
    let listen = format!("{PROXY_DIR}/9e1c2a34-vm");
    let relay = proxy(&listen, &dsock, Duration::from_millis(700));
    let remote = format!("nbd+unix:///{dexport}?socket={listen}");
    let op = mirror(json!({"uri": uri, "domain": VM, "remote": remote}));
    assert_eq!(op[0], "MirrorV1", "{op}");
    assert_eq!(target(&dev), "mirror");
    // Its guard runs in a scope of its own, as the NBD exports do.
    let calls = std::fs::read_to_string("/tmp/spy/calls").unwrap();
    assert!(calls.contains("--scope --unit thinsr-mirror-"), "{calls}");
    // Before the memory moves xapi tears the u0_mirror datapath down: the mirror goes on.
    dp("Datapath.deactivate", &uri, U0);
    dp("Datapath.detach", &uri, U0);
    assert_eq!(target(&dev), "mirror");
    let (s, calls, secs) = stat_loop(&op);
    println!("Data.stat: {calls} calls in {secs:.1} s, last {s}");
    assert_eq!(s["complete"], true, "{s}");
    assert_eq!(s["failed"], false, "{s}");
    if calls > 1 {
        // Paced: each call that had no news waited about a second.
        assert!(secs / calls as f64 >= 0.5, "{calls} calls in {secs:.1} s");
    }
    // In sync: the VM's writes reach both; then xenopsd suspends it and deactivates.
    std::thread::sleep(Duration::from_secs(2));
    let records = writer.stop();
    dp("Datapath.deactivate", &uri, VM);
    assert_eq!(target(&dev), "linear", "the VDI's own table is back");
    let sent = relay.join().unwrap();
    nothing_of_a_mirror_left_but_the_record();
    assert_eq!(sha256(&dev), sha256(&ddev), "the destination is the source");
    holds_records(&ddev, &records);
    let written = records.len() as u64 * 4096;
    println!(
        "sent {sent} bytes for {allocated} allocated and {} records ({written} bytes)",
        records.len()
    );
    assert!(
        sent <= (allocated + written) * 11 / 10 + MIB,
        "{sent} bytes sent for {allocated} allocated and {written} written"
    );
    dp("Datapath.deactivate", &duri, MIR);
    dp("Datapath.detach", &duri, MIR);
    // Afterwards xapi destroys the source.
    dp("Datapath.detach", &uri, VM);
    assert_eq!(
        call(VOLUME, "Volume.destroy", json!({"sr": here, "key": key})),
        Value::Null
    );
    nothing_of_a_mirror_left(&here);

    // A halted VM's disk: the u0_mirror attach alone, domain -1, a qemu-nbd destination.
    let db = create(&here, "db", 64 * MIB);
    let (huri, hkey) = (
        db["uri"][0].as_str().unwrap().to_string(),
        db["key"].as_str().unwrap().to_string(),
    );
    let hdev = ok(&["vdi", "attach", &hkey]).trim().to_string();
    for i in (0..64).step_by(8) {
        write_at(&hdev, i * MIB + 4096, &noise(MIB as usize, 300 + i));
    }
    ok(&["vdi", "detach", &hkey]);
    let mut server = qemu_nbd("/tmp/db.raw", 64, "/tmp/db.sock", "db");
    let u0 = "u0_mirror_vbd_-1_51728";
    attach_nbd(&huri, u0);
    let op = mirror(
        json!({"uri": huri, "domain": "-1", "remote": "nbd+unix:///db?socket=/tmp/db.sock"}),
    );
    let (s, _, _) = stat_loop(&op);
    assert_eq!(s["complete"], true, "{s}");
    dp("Datapath.deactivate", &huri, u0);
    dp("Datapath.detach", &huri, u0);
    assert!(
        server.wait().unwrap().success(),
        "qemu-nbd ends with its one client"
    );
    let hdev = ok(&["vdi", "attach", &hkey]).trim().to_string();
    assert_eq!(sha256(&hdev), sha256("/tmp/db.raw"));
    ok(&["vdi", "detach", &hkey]);
    nothing_of_a_mirror_left(&here);
    for sr in ["here", "there"] {
        let f = json(&["sr", "check", sr])["findings"].clone();
        assert!(f.as_array().unwrap().is_empty(), "{sr}: {f}");
    }
}

/// Between the drain and the detach the record stays (a late Data.stat reads it); the rest
/// is gone.
fn nothing_of_a_mirror_left_but_the_record() {
    let legs: Vec<String> = our_dm_devices()
        .into_iter()
        .filter(|d| d.starts_with("thinsr-mirror-"))
        .collect();
    assert!(legs.is_empty(), "{legs:?}");
    assert_eq!(sh(&["losetup", "-a"]).trim(), "", "a loop device is left");
}

/// A destination that dies mid-mirror: every write of the VM succeeds, Data.stat says
/// failed (never complete), the VDI's own table is back at once, and the VM's later
/// deactivate and detach succeed with nothing of the mirror left. A start killed at each
/// of its steps leaves the VM writing; a drain killed mid-way is finished by the detach.
#[test]
fn a_destination_that_dies_fails_the_mirror_and_never_the_vm() {
    vm();
    install();
    systemd_run_spy();
    let (here, _) = sr_create(DISKS[0], SR_HERE, "here");
    let src = create(&here, "web", 256 * MIB);
    let (uri, key) = uri_and_key(&src);
    let (dev, _, _) = attach_nbd(&uri, VM);
    dp("Datapath.activate", &uri, VM);
    for i in (0..256).step_by(2) {
        write_at(&dev, i * MIB, &noise(MIB as usize, 500 + i));
    }
    attach_nbd(&uri, U0);
    let writer = Writer::start(&dev, 256 * MIB, 11);
    let mut server = qemu_nbd("/tmp/dst.raw", 256, "/tmp/dst.sock", "web");
    let remote = "nbd+unix:///web?socket=/tmp/dst.sock";
    let spy_path = format!("{SPY}:{}", std::env::var("PATH").unwrap_or_default());
    let op = mirror(json!({"uri": uri, "domain": VM, "remote": remote}));
    server.kill().unwrap();
    server.wait().unwrap();
    let (s, calls, secs) = stat_loop(&op);
    println!("Data.stat after the destination died: {calls} calls in {secs:.1} s: {s}");
    assert_eq!(
        (s["failed"].clone(), s["complete"].clone()),
        (json!(true), json!(false)),
        "{s}"
    );
    assert_eq!(
        target(&dev),
        "linear",
        "dropped at once, without the VM noticing"
    );
    nothing_of_a_mirror_left_but_the_record();
    std::thread::sleep(Duration::from_secs(1));
    let records = writer.stop();
    holds_records(&dev, &records);
    assert_eq!(
        call(DATAPATH, "Data.stat", json!({"operation": op}))["failed"],
        true
    );
    dp("Datapath.deactivate", &uri, U0);
    dp("Datapath.detach", &uri, U0);

    // A start killed at each step: the VM's writes go on, nothing is left but a record of
    // the failure, and a new mirror may start.
    for point in [
        "mirror.recorded",
        "mirror.connected",
        "mirror.suspended",
        "dm.replace-table.loaded",
    ] {
        let writer = Writer::start(&dev, 256 * MIB, 13);
        let mut server = qemu_nbd("/tmp/dst.raw", 256, "/tmp/dst.sock", "web");
        let args = json!({"uri": uri, "domain": VM, "remote": remote});
        let env = [("THINSR_CRASH_AT", point), ("PATH", spy_path.as_str())];
        let (code, err) = run_raw(DATAPATH, "Data.mirror", args, &env);
        assert_ne!(code, 0);
        assert!(
            err.contains(&format!("crash point {point}")),
            "{point}: {err}"
        );
        // The guard undoes it as the start dies.
        let deadline = Instant::now() + Duration::from_secs(20);
        while target(&dev) != "linear"
            || our_dm_devices()
                .iter()
                .any(|d| d.starts_with("thinsr-mirror-"))
        {
            assert!(
                Instant::now() < deadline,
                "{point}: {} {:?}",
                target(&dev),
                our_dm_devices()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        let records = writer.stop();
        holds_records(&dev, &records);
        nothing_of_a_mirror_left_but_the_record();
        if point == "mirror.recorded" {
            // Killed before its guard: only the record says it; sr check names it (the
            // next start ends it too).
            let found = thinsr(&["--json", "sr", "check", "here"]).json()["findings"].to_string();
            assert!(found.contains("stale_mirror"), "{found}");
        }
        let _ = server.kill();
        let _ = server.wait();
    }

    // A drain killed after its flush, then after the swap back: the detach ends it.
    for point in ["mirror.flushed", "mirror.swapped-back"] {
        let mut server = qemu_nbd("/tmp/dst.raw", 256, "/tmp/dst.sock", "web");
        let op = mirror(json!({"uri": uri, "domain": VM, "remote": remote}));
        let (s, _, _) = stat_loop(&op);
        assert_eq!(s["complete"], true, "{point}: {s}");
        let args = json!({"uri": uri, "domain": VM});
        let (code, err) = run_raw(
            DATAPATH,
            "Datapath.deactivate",
            args,
            &[("THINSR_CRASH_AT", point), ("PATH", &spy_path)],
        );
        assert_ne!(code, 0);
        assert!(
            err.contains(&format!("crash point {point}")),
            "{point}: {err}"
        );
        if point == "mirror.swapped-back" {
            // The VDI's own table is back, the rest is not: sr check names it.
            let found = thinsr(&["--json", "sr", "check", "here"]).json()["findings"].to_string();
            assert!(found.contains("stale_mirror"), "{found}");
            ok(&["sr", "check", "here", "--repair"]);
            nothing_of_a_mirror_left_but_the_record();
        }
        dp("Datapath.detach", &uri, VM);
        assert!(!Path::new(&dev).exists());
        nothing_of_a_mirror_left(&here);
        assert!(server.wait().unwrap().success());
        let hdev = ok(&["vdi", "attach", &key]).trim().to_string();
        assert_eq!(sha256(&hdev), sha256("/tmp/dst.raw"), "{point}");
        ok(&["vdi", "detach", &key]);
        let (d, _, _) = attach_nbd(&uri, VM);
        assert_eq!(d, dev);
        dp("Datapath.activate", &uri, VM);
    }
    dp("Datapath.deactivate", &uri, VM);
    dp("Datapath.detach", &uri, VM);
    nothing_of_a_mirror_left(&here);
    let f = json(&["sr", "check", "here"])["findings"].clone();
    assert!(f.as_array().unwrap().is_empty(), "{f}");
}

/// An admin's `vdi copy` into another SR and `vdi mirror` to a qemu-nbd, of a VDI in use
/// and of a detached one: the copies are the VDI, only its data travels, a destination
/// that is not there is named in bounded time, and nothing of a mirror is left.
#[test]
fn admins_copy_and_mirror_vdis_in_use_and_not() {
    vm();
    install();
    let (here, _) = sr_create(DISKS[0], SR_HERE, "here");
    sr_create(DISKS[1], SR_THERE, "there");
    json(&["vdi", "create", "web", "--size", "128M", "--sr", "here"]);
    let dev = ok(&["vdi", "attach", "web"]).trim().to_string();
    for i in (0..128).step_by(8) {
        write_at(&dev, i * MIB, &noise(MIB as usize, 700 + i));
    }
    let used = json(&["vdi", "show", "web"])["physical_utilisation"]
        .as_u64()
        .unwrap();

    // Into another SR while attached: the same bytes, thin.
    let copy = json(&["vdi", "copy", "web", "--to", "there", "--name", "web copy"]);
    assert_eq!(copy["sr_name"], "there", "{copy}");
    assert_eq!(copy["attached"], false, "{copy}");
    let copied = copy["physical_utilisation"].as_u64().unwrap();
    println!("vdi copy: {copied} bytes allocated for {used}");
    assert!(copied <= used * 11 / 10, "{copied} allocated for {used}");
    assert_eq!(target(&dev), "linear");
    let cdev = ok(&["vdi", "attach", "there/web copy"]).trim().to_string();
    assert_eq!(sha256(&cdev), sha256(&dev));
    ok(&["vdi", "detach", "there/web copy"]);

    // To a qemu-nbd: the VDI stays attached and in use.
    let mut server = qemu_nbd("/tmp/m.raw", 128, "/tmp/m.sock", "web");
    let m = json(&["vdi", "mirror", "web", "nbd+unix:///web?socket=/tmp/m.sock"]);
    assert_eq!(m["copied"].as_u64().unwrap(), 16 * MIB, "{m}");
    assert!(server.wait().unwrap().success());
    assert_eq!(sha256("/tmp/m.raw"), sha256(&dev));
    assert_eq!(target(&dev), "linear");

    // The swap fails and so does every resume this call tries (a device fault): both
    // causes are named, and the guard resumes the VM's device once the call is gone.
    let mut server = qemu_nbd("/tmp/m.raw", 128, "/tmp/m.sock", "web");
    let mut cmd = thinsr_cmd(&["vdi", "mirror", "web", "nbd+unix:///web?socket=/tmp/m.sock"]);
    cmd.env("THINSR_FAULT_AT", "mirror.swap,mirror.resume");
    let r = Run::from(cmd.output().unwrap());
    assert_ne!(r.code, 0, "{}", r.stdout);
    for cause in [
        "loading the mirror",
        "resuming",
        "(injected)",
        "guard tries again",
    ] {
        assert!(r.stderr.contains(cause), "{cause}: {}", r.stderr);
    }
    let top = Path::new(&dev)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sh(&["dmsetup", "info", &top]).contains("ACTIVE") {
        assert!(Instant::now() < deadline, "the VM's device stays suspended");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(target(&dev), "linear");
    write_at(&dev, 0, &noise(4096, 700));
    let _ = server.kill();
    let _ = server.wait();
    nothing_of_a_mirror_left_but_the_record();

    // A destination that is not there: named, in bounded time, nothing made.
    let t = Instant::now();
    let e = fails(
        &[
            "vdi",
            "mirror",
            "web",
            "nbd+unix:///web?socket=/tmp/nothing.sock",
        ],
        "COMMAND_FAILED",
    );
    assert!(e.to_string().contains("/tmp/nothing.sock"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    nothing_of_a_mirror_left_but_the_record();

    // A detached VDI is attached for the while and detached again.
    ok(&["vdi", "detach", "web"]);
    let again = json(&["vdi", "copy", "web", "--to", "there"]);
    assert_eq!(json(&["vdi", "show", "here/web"])["attached"], false);
    let a = ok(&["vdi", "attach", again["uuid"].as_str().unwrap()])
        .trim()
        .to_string();
    let b = ok(&["vdi", "attach", "here/web"]).trim().to_string();
    assert_eq!(sha256(&a), sha256(&b));
    ok(&["vdi", "detach", again["uuid"].as_str().unwrap()]);
    ok(&["vdi", "detach", "here/web"]);
    nothing_of_a_mirror_left(&here);
    for sr in ["here", "there"] {
        let f = json(&["sr", "check", sr])["findings"].clone();
        assert!(f.as_array().unwrap().is_empty(), "{sr}: {f}");
    }
}
