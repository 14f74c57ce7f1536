//! Templates and the datapath end to end, in the test VM: clones of qcow2, raw and vhd
//! images over dm-thin external origins, scheme scripts, a dead qemu-nbd, and data that
//! survives detach and SR reattach.

mod common;

use std::time::Instant;

use common::*;

const MIB: u64 = 1 << 20;
/// Offsets of the known blocks written into every template image.
const MARKS: [u64; 5] = [0, MIB + 17, 100 * MIB, 200 * MIB + 4095, 256 * MIB - 4096];

fn owned_sr(name: &str) -> String {
    let d = json(&["sr", "create", DISKS[0], "--name", name]);
    d["uuid"].as_str().unwrap().to_string()
}

fn mark(i: usize) -> Vec<u8> {
    noise(4096, 1000 + i as u64)
}

/// A 256 MiB image in `format` holding `mark(i)` at `MARKS[i]`, the rest zero (sparse).
fn template_image(path: &str, format: &str) -> String {
    let raw = format!("{path}.src.raw");
    sh(&["truncate", "-s", "256M", &raw]);
    for (i, off) in MARKS.iter().enumerate() {
        write_at(&raw, *off, &mark(i));
    }
    match format {
        "raw" => sh(&["mv", &raw, path]),
        "vpc" => sh(&[
            "qemu-img",
            "convert",
            "-O",
            "vpc",
            "-o",
            "subformat=dynamic,force_size=on",
            &raw,
            path,
        ]),
        f => sh(&["qemu-img", "convert", "-O", f, &raw, path]),
    };
    let _ = std::fs::remove_file(&raw);
    sha256(path)
}

/// Read-only loop devices (templates' origins; a file-backed SR's loop is writable), with
/// the file each reads.
fn template_loops() -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let file =
                std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
            let ro = std::fs::read_to_string(format!("/sys/block/{name}/ro")).ok()?;
            (ro.trim() == "1").then(|| format!("{name} {}", file.trim()))
        })
        .collect()
}

/// True when reading a block the template holds (and nothing has read yet) fails.
fn read_at_fails(dev: &str) -> bool {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(dev).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, MARKS[3] & !4095).is_err()
}

/// Running qemu-nbd processes, from /proc.
fn qemu_nbd_pids() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "qemu-nbd").then_some(pid)
        })
        .collect()
}

/// Our dm devices and connected NBD devices: both empty once everything is detached.
fn datapath_leftovers() -> (Vec<String>, Vec<String>) {
    let dm = our_dm_devices();
    let nbd = std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let pid = std::fs::read_to_string(format!("/sys/block/{name}/pid")).ok()?;
            Some(format!("{name} pid {}", pid.trim()))
        })
        .collect();
    (dm, nbd)
}

/// `sr check local` finds nothing (its exit status is 0 only then).
fn assert_check_clean() {
    let r = json(&["sr", "check", "local"]);
    assert!(r["findings"].as_array().unwrap().is_empty(), "{r}");
}

fn assert_clean() {
    let (dm, nbd) = datapath_leftovers();
    assert!(dm.is_empty(), "dm devices left: {dm:?}");
    assert!(nbd.is_empty(), "nbd connections left: {nbd:?}");
    let loops = template_loops();
    assert!(loops.is_empty(), "template loop devices left: {loops:?}");
}

/// An SR with a qcow2 template `t` and its clone `vm1`, attached; returns the device.
fn attached_clone_of_a_template() -> String {
    owned_sr("local");
    template_image("/tmp/t.qcow2", "qcow2");
    ok(&["template", "introduce", "file:///tmp/t.qcow2"]);
    ok(&["vdi", "clone", "t", "--name", "vm1"]);
    attach("vm1")
}

fn attach(vdi: &str) -> String {
    let v = json(&["vdi", "attach", vdi]);
    assert_eq!(v["attached"], true, "{v}");
    v["path"].as_str().unwrap().to_string()
}

fn reads_template(dev: &str, skip: Option<usize>) {
    for (i, off) in MARKS.iter().enumerate() {
        if Some(i) != skip {
            assert_eq!(
                read_at(dev, *off, 4096),
                mark(i),
                "mark {i} at {off} on {dev}"
            );
        }
    }
}

#[test]
fn clones_read_qcow2_raw_and_vhd_templates() {
    vm();
    owned_sr("local");
    for (format, file) in [("qcow2", "t.qcow2"), ("raw", "t.raw"), ("vpc", "t.vhd")] {
        let path = format!("/tmp/{file}");
        let sum = template_image(&path, format);
        let uri = format!("file://{path}");
        let t = json(&["template", "introduce", &uri]);
        assert_eq!(t["kind"], "template", "{t}");
        assert_eq!(t["format"], format, "{t}");
        assert_eq!(t["read_write"], false);
        assert_eq!(t["virtual_size"], 256 * MIB);
        assert_eq!(t["name"], "t", "named after the file");
        let tid = t["uuid"].as_str().unwrap().to_string();

        let c1 = json(&["vdi", "clone", &tid, "--name", &format!("{format} one")]);
        assert_eq!(c1["origin"], tid.as_str(), "{c1}");
        assert_eq!(c1["kind"], "clone");
        assert_eq!(c1["virtual_size"], 256 * MIB);
        let c1 = c1["uuid"].as_str().unwrap().to_string();
        let dev1 = attach(&c1);
        assert!(dev1.starts_with("/dev/mapper/thinsr-local-"), "{dev1}");
        // Attaching again gives the same device.
        assert_eq!(attach(&c1), dev1);
        reads_template(&dev1, None);

        // A write lands in the clone only.
        let mine = noise(4096, 7);
        write_at(&dev1, MARKS[2], &mine);
        assert_eq!(read_at(&dev1, MARKS[2], 4096), mine);
        let c2 = json(&["vdi", "clone", &tid, "--name", &format!("{format} two")]);
        let c2 = c2["uuid"].as_str().unwrap().to_string();
        let dev2 = attach(&c2);
        reads_template(&dev2, None);
        // Both clones share one attachment of the template: a read-only loop device for
        // a raw image (no qemu-nbd at all), one qemu-nbd for the others.
        let (nbd, loops) = (datapath_leftovers().1, template_loops());
        if format == "raw" {
            assert!(nbd.is_empty(), "{nbd:?}");
            assert_eq!(loops.len(), 1, "{loops:?}");
            assert!(loops[0].ends_with(&path), "{loops:?}");
            assert!(qemu_nbd_pids().is_empty(), "{:?}", qemu_nbd_pids());
        } else {
            assert_eq!(nbd.len(), 1, "{nbd:?}");
            assert!(loops.is_empty(), "{loops:?}");
        }

        let listed = json(&["vdi", "list"]);
        let row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["uuid"] == tid.as_str())
            .unwrap()
            .clone();
        assert_eq!(row["kind"], "template");
        assert_eq!(row["read_write"], false);

        ok(&["vdi", "detach", &c1]);
        // The template stays attached for the other clone.
        reads_template(&dev2, None);
        ok(&["vdi", "detach", &c2]);
        // Idempotent.
        ok(&["vdi", "detach", &c2]);
        assert_clean();

        // Detached and attached again, the clone still holds its write.
        let dev1 = attach(&c1);
        assert_eq!(read_at(&dev1, MARKS[2], 4096), mine);
        reads_template(&dev1, Some(2));
        ok(&["vdi", "detach", &c1]);
        assert_clean();
        assert_eq!(sha256(&path), sum, "the template image changed");

        for c in [&c1, &c2] {
            ok(&["--yes", "vdi", "destroy", c]);
        }
        ok(&["template", "forget", &tid]);
    }
    ok(&["sr", "check", "local"]);
}

#[test]
fn cloning_copies_nothing() {
    vm();
    owned_sr("local");
    for (name, size) in [("small", "64M"), ("big", "2G")] {
        let path = format!("/tmp/{name}.qcow2");
        sh(&["qemu-img", "create", "-f", "qcow2", &path, size]);
        ok(&["template", "introduce", &format!("file://{path}")]);
    }
    // The best of three for each, measured in one run: no copy means no difference.
    let best = |t: &str| {
        (0..3)
            .map(|i| {
                let start = Instant::now();
                ok(&["vdi", "clone", t, "--name", &format!("{t} {i}")]);
                start.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let small = best("small");
    let big = best("big");
    let ratio = big / small;
    eprintln!(
        "clone of a 64 MiB template {small:.3} s, of a 2 GiB one {big:.3} s: ratio {ratio:.2}"
    );
    assert!(
        ratio < 2.0,
        "cloning the 2 GiB template took {ratio:.2}x as long"
    );
    let used = json(&["sr", "show", "local"])["pool"]["data_used"]
        .as_u64()
        .unwrap();
    assert!(used < 16 * MIB, "clones allocated {used} bytes");
}

#[test]
fn templates_refuse_what_would_change_them() {
    vm();
    owned_sr("local");
    let path = "/tmp/t.qcow2";
    let sum = template_image(path, "qcow2");
    let t = json(&[
        "template",
        "introduce",
        "file:///tmp/t.qcow2",
        "--name",
        "Debian 12",
    ]);
    let tid = t["uuid"].as_str().unwrap().to_string();
    // Registered once per URI; unreadable or missing images register nothing.
    fails(
        &["template", "introduce", "file:///tmp/t.qcow2"],
        "TEMPLATE_EXISTS",
    );
    std::fs::write("/tmp/empty.raw", b"").unwrap();
    let before = state();
    fails(
        &["template", "introduce", "file:///tmp/nothing.qcow2"],
        "IMAGE_UNREADABLE",
    );
    fails(
        &["template", "introduce", "file:///tmp/empty.raw"],
        "IMAGE_UNREADABLE",
    );
    fails(
        &["template", "introduce", "nbd://127.0.0.1:1/x"],
        "IMAGE_UNREADABLE",
    );
    fails(&["template", "introduce", "tmp/t.qcow2"], "INVALID_URI");
    // A server that takes the connection and never answers (down, or busy with its one
    // client): refused in bounded time, naming why, instead of hanging a shell or cron.
    sh(&["ip", "link", "set", "lo", "up"]);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("nbd://127.0.0.1:{}/x", silent.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().collect();
        std::thread::sleep(std::time::Duration::from_secs(600));
        drop(held);
    });
    let start = std::time::Instant::now();
    let mut child = thinsr_cmd(&["--json", "template", "introduce", &uri])
        .env("THINSR_SERVER_WAIT", "3")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() > 30 {
            child.kill().unwrap();
            panic!("template introduce of a silent server still waits after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["code"], "IMAGE_UNREADABLE", "{e}");
    assert!(e.to_string().contains("no answer within 3 s"), "{e}");
    println!("a silent NBD server refused after {:?}", start.elapsed());
    assert_eq!(state(), before);
    assert_eq!(json(&["template", "list"]).as_array().unwrap().len(), 1);

    let before = state();
    for args in [
        vec!["vdi", "resize", "Debian 12", "+1G"],
        vec!["--yes", "vdi", "destroy", "Debian 12"],
    ] {
        fails(&args, "VDI_IS_TEMPLATE");
    }
    let tmeta = json(&["template", "show", "Debian 12"]);
    assert_eq!(tmeta["source"], "file:///tmp/t.qcow2");
    fails(&["template", "show", "nothing"], "VDI_NOT_FOUND");
    assert_eq!(state(), before);

    // Read-only, a template attaches as itself.
    let ro = json(&["vdi", "attach", "Debian 12", "--read-only"]);
    let dev = ro["path"].as_str().unwrap().to_string();
    assert_eq!(ro["read_write"], false);
    reads_template(&dev, None);
    assert!(refuses_writes(&dev), "{dev} took a write");
    fails(&["template", "forget", "Debian 12"], "TEMPLATE_IN_USE");
    ok(&["vdi", "detach", "Debian 12"]);
    assert_clean();

    // Snapshots and clones of a clone keep reading the template.
    let c = json(&["vdi", "clone", "Debian 12", "--name", "web"]);
    assert_eq!(c["origin_name"], "Debian 12");
    let dev = attach("web");
    let mine = noise(8192, 3);
    write_at(&dev, MARKS[1], &mine);
    // Taken while the clone is attached: its device is suspended for the instant.
    let s = json(&["vdi", "snapshot", "web", "--name", "web snap"]);
    assert_eq!(s["origin"], tid.as_str(), "{s}");
    assert_eq!(s["read_write"], false);
    let cc = json(&["vdi", "clone", "web", "--name", "web copy"]);
    assert_eq!(cc["origin"], tid.as_str(), "{cc}");
    write_at(&dev, MARKS[3], &noise(4096, 4));
    for name in ["web snap", "web copy"] {
        let d = attach(name);
        assert_eq!(read_at(&d, MARKS[1], 8192), mine, "{name}");
        reads_template(&d, Some(1));
        ok(&["vdi", "detach", name]);
    }
    // The snapshot is read-only on its device too.
    let d = attach("web snap");
    assert!(refuses_writes(&d), "{d} took a write");
    ok(&["vdi", "detach", "web snap"]);

    let err = fails(&["template", "forget", "Debian 12"], "TEMPLATE_IN_USE");
    assert!(err["params"].to_string().contains("web"), "{err}");
    fails(&["--yes", "vdi", "destroy", "web"], "VDI_ATTACHED");
    fails(&["sr", "detach", "local"], "SR_HAS_ATTACHED_VDIS");
    ok(&["vdi", "detach", "web"]);
    for v in ["web", "web snap", "web copy"] {
        ok(&["--yes", "vdi", "destroy", v]);
    }
    ok(&["template", "forget", "Debian 12"]);
    assert!(json(&["template", "list"]).as_array().unwrap().is_empty());
    assert_eq!(sha256(path), sum);
    assert_clean();
}

#[test]
fn scheme_scripts_serve_templates() {
    vm();
    owned_sr("local");
    let dir = "/tmp/schemes";
    std::fs::create_dir_all(dir).unwrap();
    template_image("/tmp/img.raw", "raw");
    // The fixture: attach puts the image on a loop device and prints it (a raw block
    // device, used as the origin directly); detach lets it go. Every call is logged.
    let script = r#"#!/bin/sh
echo "$*" >> /tmp/scheme.log
case "$1" in
attach) /usr/sbin/losetup -f --show -r /tmp/img.raw ;;
detach) for d in $(/usr/sbin/losetup -j /tmp/img.raw | cut -d: -f1); do /usr/sbin/losetup -d "$d"; done ;;
*) exit 1 ;;
esac
"#;
    std::fs::write(format!("{dir}/fake"), script).unwrap();
    // A script outside the directory that must never run.
    std::fs::write("/tmp/x", script).unwrap();
    sh(&["chmod", "+x", &format!("{dir}/fake"), "/tmp/x"]);
    // Passed on as --scheme-dir's environment variable.
    std::env::set_var("THINSR_SCHEME_DIR", dir);

    let before = state();
    for uri in ["../x://img", "a/b://img", "A B://img", "X://img"] {
        fails(&["template", "introduce", uri], "INVALID_URI");
    }
    fails(
        &["template", "introduce", "nothing://img"],
        "INVALID_ARGUMENT",
    );
    assert_eq!(state(), before);
    assert!(
        !std::path::Path::new("/tmp/scheme.log").exists(),
        "a script ran"
    );

    let t = json(&["template", "introduce", "fake://img", "--name", "img"]);
    assert_eq!(t["format"], "raw");
    assert_eq!(t["virtual_size"], 256 * MIB);
    let log = std::fs::read_to_string("/tmp/scheme.log").unwrap();
    assert_eq!(
        log, "attach fake://img\ndetach fake://img\n",
        "introduce probes and lets go"
    );

    ok(&["vdi", "clone", "img", "--name", "c"]);
    let dev = json(&["vdi", "attach", "c"])["path"]
        .as_str()
        .unwrap()
        .to_string();
    reads_template(&dev, None);
    // The loop device is the origin itself: no qemu-nbd in between.
    assert!(datapath_leftovers().1.is_empty());
    assert!(sh(&["/usr/sbin/losetup", "-a"]).contains("/tmp/img.raw"));
    ok(&["vdi", "detach", "c"]);
    assert!(!sh(&["/usr/sbin/losetup", "-a"]).contains("/tmp/img.raw"));
    let log = std::fs::read_to_string("/tmp/scheme.log").unwrap();
    assert_eq!(log.lines().count(), 4, "{log}");
    assert!(
        log.ends_with("attach fake://img\ndetach fake://img\n"),
        "{log}"
    );
    assert_clean();

    // An NBD export, served on loopback as a remote image server would.
    template_image("/tmp/remote.qcow2", "qcow2");
    serve_nbd("/tmp/remote.qcow2", "qcow2", 10809, "debian", false);
    let t = json(&["template", "introduce", "nbd://127.0.0.1:10809/debian"]);
    assert_eq!(
        (t["format"].as_str(), t["name"].as_str()),
        (Some("raw"), Some("debian"))
    );
    assert_eq!(t["virtual_size"], 256 * MIB);
    ok(&["vdi", "clone", "debian", "--name", "n1"]);
    let dev = attach("n1");
    reads_template(&dev, None);
    ok(&["vdi", "detach", "n1"]);
    assert_clean();

    // With the filter README asks for (the VM's lvm.conf has it), sr check is quiet; on a
    // host without it, sr check says so.
    assert!(json(&["sr", "check", "local"]).get("warnings").is_none());
    std::fs::create_dir_all("/tmp/lvmconf").unwrap();
    let conf = std::fs::read_to_string("/etc/lvm/lvm.conf").unwrap();
    let unfiltered: String = conf
        .lines()
        .filter(|l| !l.contains("global_filter"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(unfiltered, conf);
    std::fs::write("/tmp/lvmconf/lvm.conf", unfiltered).unwrap();
    let out = thinsr_cmd(&["--json", "sr", "check", "local"])
        .env("LVM_SYSTEM_DIR", "/tmp/lvmconf")
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warning = report["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("global_filter"), "{report}");
}

#[test]
fn detach_survives_a_dead_qemu_nbd_and_data_survives_sr_reattach() {
    vm();
    let dev = attached_clone_of_a_template();
    let mine = noise(MIB as usize, 9);
    write_at(&dev, 50 * MIB, &mine);

    // Kill the server under the attached clone.
    let (_, nbd) = datapath_leftovers();
    assert_eq!(nbd.len(), 1, "{nbd:?}");
    let pid = nbd[0].rsplit(' ').next().unwrap().to_string();
    sh(&["kill", "-9", &pid]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let shown = json(&["vdi", "show", "vm1"]);
    assert_eq!(shown["attached"], true);
    // sr check names it; the clone reading it must be attached again to read it.
    let r = thinsr(&["--json", "sr", "check", "local", "--repair"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let findings = r.json()["findings"].clone();
    assert_eq!(findings[0]["kind"], "dead_origin", "{findings}");
    assert_eq!(findings[0]["repaired"], false, "{findings}");
    // A clone attached meanwhile gets a live server of its own.
    ok(&["vdi", "clone", "t", "--name", "vm2"]);
    let dev2 = attach("vm2");
    reads_template(&dev2, None);
    ok(&["vdi", "detach", "vm1"]);
    ok(&["vdi", "detach", "vm2"]);
    assert_clean();
    ok(&["vdi", "detach", "vm1"]);

    // A template attachment left by a crash before its server started: sr check clears it.
    let out = thinsr_cmd(&["vdi", "attach", "vm2"])
        .env("THINSR_CRASH_AT", "attach.after-origin-state")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let r = json(&["sr", "check", "local", "--repair"]);
    assert_eq!(r["findings"][0]["kind"], "dead_origin", "{r}");
    assert_eq!(r["findings"][0]["repaired"], true, "{r}");
    assert_check_clean();
    assert_clean();

    // Everything comes back after detach, and after the SR is detached and attached.
    let same_data = || {
        let dev = attach("vm1");
        assert_eq!(read_at(&dev, 50 * MIB, MIB as usize), mine);
        reads_template(&dev, None);
        ok(&["vdi", "detach", "vm1"]);
    };
    same_data();
    ok(&["sr", "detach", "local"]);
    assert_clean();
    ok(&["sr", "attach", "local"]);
    same_data();
    assert_check_clean();
    assert_clean();
}

/// A crash at each step of attach (and while a snapshot holds a clone's device suspended)
/// leaves what the next detach or attach cleans up, and the clone's data is intact.
#[test]
fn crashes_during_attach_leave_nothing_behind() {
    vm();
    let dev = attached_clone_of_a_template();
    let mine = noise(4096, 11);
    write_at(&dev, MARKS[4], &mine);
    ok(&["vdi", "detach", "vm1"]);

    let points = [
        "attach.after-origin-state",
        "vdi-attach.after-origin",
        "dm.after-table-load",
    ];
    for point in points {
        // Found by sr check, cleaned by detach...
        crash_at(point, &["vdi", "attach", "vm1"]);
        if point == "dm.after-table-load" {
            let r = thinsr(&["--json", "sr", "check", "local"]);
            assert_eq!(
                r.json()["findings"][0]["kind"],
                "stale_device",
                "{}",
                r.stdout
            );
            let problems = json(&["vdi", "show", "vm1"])["problems"].to_string();
            assert!(problems.contains("half-made"), "{problems}");
        }
        ok(&["vdi", "detach", "vm1"]);
        assert_clean();
        // ...or finished by the next attach.
        crash_at(point, &["vdi", "attach", "vm1"]);
        let dev = attach("vm1");
        assert_eq!(read_at(&dev, MARKS[4], 4096), mine, "after {point}");
        reads_template(&dev, Some(4));
        ok(&["vdi", "detach", "vm1"]);
        assert_clean();
    }

    // A snapshot that dies while the clone's device is suspended (before LVM took it): the
    // next attach resumes the device, and nothing is left for sr check to find.
    let dev = attach("vm1");
    crash_at("vdi-snapshot.while-suspended", &["vdi", "snapshot", "vm1"]);
    assert_eq!(attach("vm1"), dev);
    assert_eq!(read_at(&dev, MARKS[4], 4096), mine);
    ok(&["vdi", "detach", "vm1"]);
    assert_clean();
    assert_check_clean();
    eprintln!("crash points walked: {}", points.len() * 2 + 1);
}

/// A raw template's clones read it through a loop device in the kernel: no qemu-nbd runs,
/// killing every qemu-nbd changes nothing for them, a crash while attaching leaves what
/// detach clears, and a loop device whose attachment was lost is found by sr check.
#[test]
fn raw_templates_are_read_in_the_kernel() {
    vm();
    owned_sr("local");
    // On ext4, as on a host, the loop device reads the image with direct I/O (tmpfs, where
    // the other tests keep their images, cannot).
    sh(&["mkfs.ext4", "-q", DISKS[1]]);
    sh(&["mkdir", "-p", "/mnt/images"]);
    sh(&["mount", "-t", "ext4", DISKS[1], "/mnt/images"]);
    let sum = template_image("/mnt/images/r.raw", "raw");
    template_image("/tmp/q.qcow2", "qcow2");
    ok(&["template", "introduce", "file:///mnt/images/r.raw"]);
    ok(&["template", "introduce", "file:///tmp/q.qcow2"]);
    ok(&["vdi", "clone", "r", "--name", "raw1"]);
    ok(&["vdi", "clone", "r", "--name", "raw2"]);
    ok(&["vdi", "clone", "q", "--name", "qcow1"]);
    let (raw1, raw2) = (attach("raw1"), attach("raw2"));
    assert!(qemu_nbd_pids().is_empty(), "{:?}", qemu_nbd_pids());
    let loops = template_loops();
    assert_eq!(loops.len(), 1, "one loop device for both clones: {loops:?}");
    let name = loops[0].split(' ').next().unwrap();
    let dio = std::fs::read_to_string(format!("/sys/block/{name}/loop/dio")).unwrap();
    assert_eq!(dio.trim(), "1", "direct I/O on {name}");
    let qcow1 = attach("qcow1");
    assert_eq!(
        qemu_nbd_pids().len(),
        1,
        "the qcow2 template needs its server"
    );

    // Every qemu-nbd dies: the raw template's clones read on, and keep their writes.
    for pid in qemu_nbd_pids() {
        sh(&["kill", "-9", &pid]);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mine = noise(64 << 10, 21);
    write_at(&raw1, MARKS[1], &mine);
    reads_template(&raw2, None);
    reads_template(&raw1, Some(1));
    assert_eq!(read_at(&raw1, MARKS[1], mine.len()), mine);
    // The qcow2 clone's server is gone, as sr check says.
    let r = thinsr(&["--json", "sr", "check", "local"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let r = r.json();
    let kinds: Vec<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["dead_origin"], "{r}");
    assert!(
        read_at_fails(&qcow1),
        "the qcow2 clone cannot read its template now"
    );
    for v in ["raw1", "raw2", "qcow1"] {
        ok(&["vdi", "detach", v]);
    }
    assert_clean();

    // A crash after the state names the loop device, before it is attached: the next
    // detach clears it, or the next attach finishes.
    crash_at("attach.after-origin-state", &["vdi", "attach", "raw1"]);
    ok(&["vdi", "detach", "raw1"]);
    assert_clean();
    crash_at("attach.after-origin-state", &["vdi", "attach", "raw1"]);
    let dev = attach("raw1");
    assert_eq!(read_at(&dev, MARKS[1], mine.len()), mine);
    ok(&["vdi", "detach", "raw1"]);
    assert_clean();

    // The attachment's state lost (as a crash of /run would) while the loop device stays:
    // sr check names it, and detaches it once nothing reads it.
    let dev = attach("raw2");
    let tid = json(&["vdi", "show", "r"])["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(format!("/run/thinsr/origins/{tid}.yaml")).unwrap();
    reads_template(&dev, None);
    let r = thinsr(&["--json", "sr", "check", "local", "--repair", "--yes"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let r = r.json();
    assert_eq!(r["findings"][0]["kind"], "stray_loop", "{r}");
    assert_eq!(
        r["findings"][0]["repaired"], false,
        "held by the clone: {r}"
    );
    ok(&["vdi", "detach", "raw2"]);
    assert_eq!(template_loops().len(), 1, "{:?}", template_loops());
    let r = json(&["sr", "check", "local", "--repair", "--yes"]);
    assert_eq!(r["findings"][0]["kind"], "stray_loop", "{r}");
    assert_eq!(r["findings"][0]["repaired"], true, "{r}");
    assert_check_clean();
    assert_clean();
    assert_eq!(
        sha256("/mnt/images/r.raw"),
        sum,
        "the template image changed"
    );
}

/// The LVs of the SR's VG with their tags, one `name tags` line each.
fn lvs_with_tags() -> Vec<String> {
    sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name,lv_tags"])
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A vhd template made local while a clone reads it through qemu-nbd: the clone moves onto
/// the copy live (a device of ours swaps its origin) and the server ends; new clones are
/// thin snapshots of the copy (LVM's own devices). A cached qcow2 template warmed while
/// its clone reads through the cache becomes local the same way and drops its cache; its
/// new clones run with no qemu-nbd, even once the copy is gone. Crashes at each step leave what
/// sr check repairs, 'template cache off' goes back to the image, and the images never
/// change.
#[test]
fn localized_templates_are_read_in_the_kernel() {
    vm();
    owned_sr("local");
    let qsum = template_image("/tmp/q.vhd", "vpc");
    let vsum = template_image("/tmp/v.qcow2", "qcow2");
    ok(&["template", "introduce", "file:///tmp/q.vhd"]);
    ok(&["vdi", "clone", "q", "--name", "c1"]);
    let c1 = attach("c1");
    let mine = noise(4096, 31);
    write_at(&c1, MARKS[1] & !4095, &mine);
    assert_eq!(qemu_nbd_pids().len(), 1);

    let t = json(&["template", "localize", "q"]);
    let local = t["local"].as_str().expect("a local copy LV").to_string();
    assert_eq!(local, "q_local", "{t}");
    assert!(t["cached"].as_u64().unwrap() >= 5 * 4096, "{t}");
    let shown = json(&["template", "show", "q"]);
    assert!(
        shown["image_allocated"].as_u64().unwrap() >= 5 * 4096,
        "{shown}"
    );
    assert!(
        lvs_with_tags()
            .iter()
            .any(|l| l.starts_with("q_local") && l.contains("thinsr_local=")),
        "{:?}",
        lvs_with_tags()
    );
    // Idempotent.
    assert_eq!(json(&["template", "localize", "q"])["local"], "q_local");
    // c1 moved onto the copy while attached: its server is gone, its data is not.
    assert!(qemu_nbd_pids().is_empty(), "{:?}", qemu_nbd_pids());
    assert_eq!(read_at(&c1, MARKS[1] & !4095, 4096), mine);
    reads_template(&c1, Some(1));
    assert_eq!(attach("c1"), c1, "the same device");

    // A new clone is a thin snapshot of the local copy; the old one keeps its server until
    // it detaches.
    let made = json(&["vdi", "clone", "q", "--name", "c2"]);
    assert!(made.get("origin").is_none(), "{made}");
    assert_eq!(made["parent"], t["uuid"], "{made}");
    let c2 = attach("c2");
    assert_eq!(c2, "/dev/mapper/thinsr-local-c2");
    let table = sh(&["dmsetup", "table", "thinsr-local-c2"]);
    assert!(
        table.contains(" linear "),
        "over LVM's own device, no template under it: {table}"
    );
    reads_template(&c2, None);
    assert!(qemu_nbd_pids().is_empty(), "{:?}", qemu_nbd_pids());
    ok(&["vdi", "detach", "c1"]);
    assert!(qemu_nbd_pids().is_empty(), "{:?}", qemu_nbd_pids());
    let c1 = attach("c1");
    assert!(qemu_nbd_pids().is_empty(), "c1 moved to the local copy");
    assert_eq!(read_at(&c1, MARKS[1] & !4095, 4096), mine);
    reads_template(&c1, Some(1));
    reads_template(&c2, None);
    // One device of ours serves the copy to the old clone.
    let devices = our_dm_devices();
    assert_eq!(
        devices.iter().filter(|d| d.contains("q_local")).count(),
        1,
        "{devices:?}"
    );
    assert_check_clean();
    // The SR cannot be detached under them, and comes back whole.
    fails(&["sr", "detach", "local"], "SR_HAS_ATTACHED_VDIS");
    ok(&["vdi", "detach", "c1"]);
    ok(&["vdi", "detach", "c2"]);
    assert_clean();
    ok(&["sr", "detach", "local"]);
    ok(&["sr", "attach", "local"]);
    let c1 = attach("c1");
    assert_eq!(read_at(&c1, MARKS[1] & !4095, 4096), mine);
    ok(&["vdi", "detach", "c1"]);
    assert_clean();

    // A cached template, warmed, becomes local and its cache goes.
    ok(&["template", "introduce", "file:///tmp/v.qcow2", "--cache"]);
    let cache = json(&["template", "show", "v"])["cache"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&["vdi", "clone", "v", "--name", "d0"]);
    let d0 = attach("d0");
    reads_template(&d0, None);
    assert_eq!(qemu_nbd_pids().len(), 1, "d0 reads through the cache");
    let w = json(&["template", "warm", "v"]);
    assert!(qemu_nbd_pids().is_empty(), "{:?}", qemu_nbd_pids());
    reads_template(&d0, None);
    ok(&["vdi", "detach", "d0"]);
    ok(&["--yes", "vdi", "destroy", "d0"]);
    assert_eq!(w["local"], "v_local", "{w}");
    assert!(w.get("cache").is_none(), "{w}");
    assert!(
        !lvs_with_tags().iter().any(|l| l.starts_with(&cache)),
        "{:?}",
        lvs_with_tags()
    );
    ok(&["vdi", "clone", "v", "--name", "d1"]);
    let d1 = attach("d1");
    assert!(qemu_nbd_pids().is_empty(), "{:?}", qemu_nbd_pids());
    reads_template(&d1, None);
    let mine = noise(4096, 33);
    write_at(&d1, MARKS[0], &mine);
    ok(&["vdi", "detach", "d1"]);

    // A crash after the local copy is recorded, before the cache it replaces is removed:
    // an orphan cache, which sr check removes.
    ok(&["template", "cache", "v", "off"]);
    ok(&["template", "cache", "v", "on"]);
    crash_at("localize.after-meta", &["template", "warm", "v"]);
    assert_eq!(json(&["template", "show", "v"])["local"], "v_local");
    let r = json(&["sr", "check", "local", "--repair"]);
    assert_eq!(r["findings"][0]["kind"], "orphan_cache", "{r}");
    assert_eq!(r["findings"][0]["repaired"], true, "{r}");

    // Crashes while localizing: a tagged LV no template names, which sr check removes.
    ok(&["template", "cache", "v", "off"]);
    assert!(json(&["template", "show", "v"]).get("local").is_none());
    for point in ["localize.after-lvcreate", "localize.after-copy"] {
        crash_at(point, &["template", "localize", "v"]);
        let r = thinsr(&["--json", "sr", "check", "local"]);
        assert_eq!(r.code, 1, "{}", r.stdout);
        assert_eq!(
            r.json()["findings"][0]["kind"],
            "orphan_local_copy",
            "{}",
            r.stdout
        );
        let r = json(&["sr", "check", "local", "--repair"]);
        assert_eq!(r["findings"][0]["repaired"], true, "{r}");
        assert!(json(&["template", "show", "v"]).get("local").is_none());
        assert!(
            !lvs_with_tags()
                .iter()
                .any(|l| l.contains("thinsr_local=") && !l.starts_with("q_local")),
            "{:?}",
            lvs_with_tags()
        );
    }
    // With the copy gone, d1 still holds all it read from it; a new clone reads the image
    // again, through qemu-nbd.
    let d1 = attach("d1");
    assert!(qemu_nbd_pids().is_empty(), "{:?}", qemu_nbd_pids());
    assert_eq!(read_at(&d1, MARKS[0], 4096), mine);
    reads_template(&d1, Some(0));
    ok(&["vdi", "clone", "v", "--name", "d2"]);
    let d2 = attach("d2");
    assert_eq!(qemu_nbd_pids().len(), 1);
    reads_template(&d2, None);
    ok(&["vdi", "detach", "d1"]);
    ok(&["vdi", "detach", "d2"]);
    assert_clean();
    // Forgetting a template removes its local copy.
    ok(&["--yes", "vdi", "destroy", "d2"]);
    ok(&["template", "localize", "v"]);
    ok(&["template", "forget", "v"]);
    assert!(
        !lvs_with_tags().iter().any(|l| l.starts_with("v_local")),
        "{:?}",
        lvs_with_tags()
    );
    assert_check_clean();
    assert_eq!(sha256("/tmp/q.vhd"), qsum, "the vhd image changed");
    assert_eq!(sha256("/tmp/v.qcow2"), vsum, "the qcow2 image changed");
}
