//! Templates where they live, end to end in the test VM: an NFSv4 export of the kernel's
//! nfsd and an SMB share of Samba's on the loopback, mounted by thinsr itself (no mount
//! helper), shared by the templates on them and gone with their last user, and servers
//! that stop; and images on an HTTPS server, fetched once, resumed, checked.

mod common;

use std::time::{Duration, Instant};

use common::servers::*;
use common::*;

const MIB: u64 = 1 << 20;
const EXPORT: &str = "/srv/tpl";
/// Offsets of the known blocks in the template image.
const MARKS: [u64; 4] = [0, 5 * MIB + 17, 40 * MIB, 64 * MIB - 4096];

/// A 64 MiB raw image with noise at MARKS, the rest sparse; and its qcow2 twin.
fn images() -> String {
    let raw = format!("{EXPORT}/base.raw");
    sh(&["truncate", "-s", "64M", &raw]);
    for (i, off) in MARKS.iter().enumerate() {
        write_at(&raw, *off, &noise(4096, 50 + i as u64));
    }
    qcow2_of(&raw, &format!("{EXPORT}/base.qcow2"));
    sha256(&raw)
}

fn qcow2_of(raw: &str, qcow2: &str) {
    sh(&["qemu-img", "convert", "-O", "qcow2", raw, qcow2]);
}

fn uuid(v: &serde_json::Value) -> String {
    v["uuid"].as_str().unwrap().to_string()
}

fn attach(vdi: &str) -> String {
    let v = json(&["vdi", "attach", vdi]);
    v["path"].as_str().unwrap().to_string()
}

/// The loop devices reading a file under /run/thinsr/mnt.
fn share_loops() -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let f = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
            f.starts_with("/run/thinsr/mnt/")
                .then(|| format!("{name} {}", f.trim()))
        })
        .collect()
}

fn records() -> Vec<String> {
    std::fs::read_dir("/run/thinsr/mnt")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn templates_on_an_nfs_export_share_one_mount_and_a_stopped_server_fails_in_bounded_time() {
    vm();
    nfs_serve(EXPORT);
    let sum = images();
    ok(&["sr", "create", DISKS[0], "--name", "local"]);

    // Introduced: format and size read through a mount that goes with the command.
    let raw = json(&[
        "template",
        "introduce",
        "nfs://127.0.0.1/srv/tpl/base.raw",
        "--name",
        "nraw",
    ]);
    assert_eq!(raw["format"], "raw", "{raw}");
    assert_eq!(raw["virtual_size"], 64 * MIB);
    let qcow = json(&[
        "template",
        "introduce",
        "nfs://127.0.0.1/srv/tpl/base.qcow2",
        "--name",
        "nqcow",
    ]);
    assert_eq!(qcow["format"], "qcow2", "{qcow}");
    assert!(share_mounts().is_empty(), "{:?}", share_mounts());
    assert!(records().is_empty(), "{:?}", records());

    // Two clones of two templates on one export: one mount, held twice.
    let c1 = uuid(&json(&["vdi", "clone", "nraw", "--name", "from raw"]));
    let c2 = uuid(&json(&["vdi", "clone", "nqcow", "--name", "from qcow2"]));
    let (d1, d2) = (attach(&c1), attach(&c2));
    let mounts = share_mounts();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].1, "nfs4", "{mounts:?}");
    let options = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = options.lines().find(|l| l.contains(&mounts[0].0)).unwrap();
    for o in ["ro,", "nosuid", "nodev", "noexec", "soft"] {
        assert!(line.contains(o), "{o} missing: {line}");
    }
    // The raw image is read by a loop device over its file in the mount; the qcow2 by
    // qemu-nbd.
    let loops = share_loops();
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert!(loops[0].ends_with("/base.raw"), "{loops:?}");
    assert_eq!(sha256(&d1), sum, "the raw template's clone reads its image");
    assert_eq!(
        sha256(&d2),
        sum,
        "the qcow2 template's clone reads its image"
    );
    // Writes land in the clone.
    let mine = noise(4096, 9);
    write_at(&d1, MARKS[2], &mine);
    assert_eq!(read_at(&d1, MARKS[2], 4096), mine);
    assert_eq!(sha256(&format!("{EXPORT}/base.raw")), sum);

    let text = ok(&["template", "show", "nraw"]);
    assert!(
        text.contains("Server       nfs://127.0.0.1/srv/tpl (127.0.0.1:2049): answering; mounted"),
        "{text}"
    );
    let show = json(&["template", "show", "nraw"]);
    assert_eq!(show["server"]["place"], "nfs://127.0.0.1/srv/tpl", "{show}");
    assert_eq!(show["server"]["reachable"], true, "{show}");
    assert_eq!(show["server"]["mounted"], true, "{show}");

    // NFS 3 (rpcbind, the MOUNT protocol, no lock manager) for a template that asks.
    let v3 = json(&[
        "template",
        "introduce",
        "nfs://127.0.0.1/srv/tpl/base.raw?vers=3",
        "--name",
        "nv3",
    ]);
    let c4 = uuid(&json(&["vdi", "clone", &uuid(&v3), "--name", "from v3"]));
    let d4 = attach(&c4);
    let mounts = share_mounts();
    assert_eq!(mounts.len(), 2, "another place, another mount: {mounts:?}");
    let table = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        table.contains("vers=3") && table.contains("nolock"),
        "{table}"
    );
    assert_eq!(sha256(&d4), sum);
    ok(&["vdi", "detach", &c4]);
    assert_eq!(share_mounts().len(), 1);

    // The last detach unmounts.
    ok(&["vdi", "detach", &c1]);
    assert_eq!(share_mounts().len(), 1, "the qcow2 clone still reads it");
    ok(&["vdi", "detach", &c2]);
    assert!(share_mounts().is_empty(), "{:?}", share_mounts());
    assert!(records().is_empty(), "{:?}", records());
    assert!(share_loops().is_empty());
    let check = json(&["sr", "check", "local"]);
    assert!(check["findings"].as_array().unwrap().is_empty(), "{check}");

    // A command that dies holding a mount: the mount stays, its holder is dead; sr check
    // names it and --repair unmounts it.
    crash_at("share.after-mount", &["vdi", "attach", &c1]);
    assert_eq!(share_mounts().len(), 1, "{:?}", share_mounts());
    let check = thinsr(&["--json", "sr", "check", "local"]).json();
    assert_eq!(check["findings"][0]["kind"], "unused_share", "{check}");
    ok(&["sr", "check", "local", "--repair"]);
    assert!(share_mounts().is_empty(), "{:?}", share_mounts());
    assert!(records().is_empty(), "{:?}", records());
    // The attach the crash stopped leaves nothing that keeps the clone from attaching.
    let d1 = attach(&c1);
    assert_eq!(
        read_at(&d1, MARKS[2], 4096),
        mine,
        "the clone's own write is kept"
    );
    ok(&["vdi", "detach", &c1]);
    assert!(share_mounts().is_empty(), "{:?}", share_mounts());

    // An admin's own script for nfs replaces thinsr's handler: it is asked, nothing is
    // mounted.
    sh(&["mkdir", "-p", "/root/schemes"]);
    std::fs::write(
        "/root/schemes/nfs",
        format!("#!/bin/sh\n[ \"$1\" = attach ] && echo {EXPORT}/base.raw\nexit 0\n"),
    )
    .unwrap();
    sh(&["chmod", "755", "/root/schemes/nfs"]);
    let r = thinsr_cmd(&[
        "--json",
        "template",
        "introduce",
        "nfs://elsewhere.invalid/x/own.raw",
        "--name",
        "own",
    ])
    .env("THINSR_SCHEME_DIR", "/root/schemes")
    .output()
    .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(share_mounts().is_empty(), "{:?}", share_mounts());
    ok(&["template", "forget", "own"]);

    // A server that stops: a clone's reads fail (soft), never hang; a new attach and
    // `template show` say so in bounded time; the detach still works.
    let fast = json(&[
        "template",
        "introduce",
        "nfs://127.0.0.1/srv/tpl/base.qcow2?timeo=20&retrans=1",
        "--name",
        "nfast",
    ]);
    let c3 = uuid(&json(&[
        "vdi",
        "clone",
        &uuid(&fast),
        "--name",
        "short wait",
    ]));
    let d3 = attach(&c3);
    assert_eq!(read_at(&d3, MARKS[0], 4096), noise(4096, 50));
    nfs_stop();
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let dev = d3.clone();
    std::thread::spawn(move || {
        // A block nothing has read yet: the page cache cannot answer for the server.
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&dev).unwrap();
        let mut buf = vec![0u8; 4096];
        let _ = tx.send(f.read_exact_at(&mut buf, MARKS[3]).is_err());
    });
    let failed = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("a read of a stopped server's template returns within 120 s");
    assert!(failed, "the read failed rather than returned bytes");
    println!(
        "a read with the server stopped failed after {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let show = json(&["template", "show", "nraw"]);
    assert_eq!(show["server"]["reachable"], false, "{show}");
    assert!(
        show["server"]["error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:2049"),
        "{show}"
    );
    let e = fails(&["vdi", "attach", &c1], "SERVER_UNREACHABLE");
    assert!(e.to_string().contains("127.0.0.1:2049"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(40), "{:?}", t.elapsed());
    let check = thinsr(&["--json", "sr", "check", "local"]).json();
    assert_eq!(finding_kinds(&check), ["unreachable_share"], "{check}");
    let t = Instant::now();
    ok(&["vdi", "detach", &c3]);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    assert!(share_mounts().is_empty(), "{:?}", share_mounts());
    assert!(records().is_empty(), "{:?}", records());
    nfs_start();
}

/// Every process's command line and environment, for a secret to be looked for in.
fn process_texts() -> String {
    let mut all = String::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.chars().all(|c| c.is_ascii_digit()) {
            for f in ["cmdline", "environ"] {
                if let Ok(b) = std::fs::read(format!("/proc/{name}/{f}")) {
                    all.push_str(&String::from_utf8_lossy(&b));
                }
            }
        }
    }
    all
}

#[test]
fn templates_on_an_smb_share_mount_with_credentials_no_one_else_sees() {
    vm();
    const SECRET: &str = "s3cr,et-Pw";
    smb_serve(EXPORT, "tester", SECRET);
    let sum = images();
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    let uri = "smb://tester@127.0.0.1/tpl/base.raw";

    // A password in the URI would be stored in the metadata: refused.
    fails(
        &[
            "template",
            "introduce",
            "smb://tester:x@127.0.0.1/tpl/base.raw",
        ],
        "INVALID_URI",
    );
    // No credentials file yet, then one others may read: refused, naming the file.
    let e = fails(&["template", "introduce", uri], "INVALID_ARGUMENT");
    assert!(
        e.to_string()
            .contains("/etc/thinsr/credentials/tester@127.0.0.1"),
        "{e}"
    );
    let creds = "/etc/thinsr/credentials/tester@127.0.0.1";
    sh(&["mkdir", "-p", "/etc/thinsr/credentials"]);
    sh(&["chmod", "700", "/etc/thinsr/credentials"]);
    std::fs::write(creds, format!("username=tester\npassword={SECRET}\n")).unwrap();
    sh(&["chmod", "644", creds]);
    fails(&["template", "introduce", uri], "UNSAFE_PATH");
    sh(&["chmod", "600", creds]);

    // Watch every process while thinsr mounts: the password is on no command line and
    // in no environment.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut looks = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert!(
                    !process_texts().contains(SECRET),
                    "the password shows in /proc"
                );
                looks += 1;
            }
            looks
        })
    };
    let raw = json(&["template", "introduce", uri, "--name", "sraw"]);
    assert_eq!(raw["format"], "raw", "{raw}");
    let qcow = json(&[
        "template",
        "introduce",
        "smb://tester@127.0.0.1/tpl/base.qcow2",
        "--name",
        "sqcow",
    ]);
    assert_eq!(qcow["format"], "qcow2", "{qcow}");
    let c1 = uuid(&json(&["vdi", "clone", "sraw", "--name", "smb raw"]));
    let c2 = uuid(&json(&["vdi", "clone", "sqcow", "--name", "smb qcow2"]));
    let (d1, d2) = (attach(&c1), attach(&c2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let looks = watcher.join().unwrap();
    println!("/proc looked through {looks} times while thinsr mounted");
    assert!(looks > 0);

    let mounts = share_mounts();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].1, "cifs", "{mounts:?}");
    let table = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!table.contains(SECRET), "{table}");
    assert_eq!(sha256(&d1), sum, "the raw template's clone reads its image");
    assert_eq!(
        sha256(&d2),
        sum,
        "the qcow2 template's clone reads its image"
    );
    assert_eq!(
        share_loops().len(),
        1,
        "the raw image is read through a loop device"
    );
    // Nothing thinsr keeps or says holds the password.
    for args in [
        vec!["template", "show", "sraw"],
        vec!["vdi", "list"],
        vec!["sr", "show", "local"],
    ] {
        let out = ok(&[&["--json", "-v"][..], &args[..]].concat());
        assert!(!out.contains(SECRET), "{args:?}: {out}");
    }
    let r = thinsr(&["-v", "template", "show", "sraw"]);
    assert!(!r.stdout.contains(SECRET) && !r.stderr.contains(SECRET));
    let show = json(&["template", "show", "sraw"]);
    assert_eq!(
        show["server"]["place"], "smb://tester@127.0.0.1/tpl",
        "{show}"
    );
    assert_eq!(show["server"]["reachable"], true, "{show}");

    ok(&["vdi", "detach", &c1]);
    assert_eq!(share_mounts().len(), 1);
    ok(&["vdi", "detach", &c2]);
    assert!(share_mounts().is_empty(), "{:?}", share_mounts());
    assert!(records().is_empty(), "{:?}", records());

    // A template on the share with a copy-on-read cache (its overlay's backing file is the
    // image's path in the mount), then warmed into a local copy through it.
    let cached = json(&[
        "template",
        "introduce",
        "smb://tester@127.0.0.1/tpl/base.qcow2?vers=3.0",
        "--name",
        "scached",
        "--cache",
    ]);
    assert!(cached["cache"].is_string(), "{cached}");
    let c3 = uuid(&json(&["vdi", "clone", "scached", "--name", "smb cached"]));
    let d3 = attach(&c3);
    assert_eq!(sha256(&d3), sum, "read through the cache");
    assert_eq!(share_mounts().len(), 1, "{:?}", share_mounts());
    let warmed = json(&["template", "warm", "scached"]);
    assert!(warmed["local"].is_string(), "{warmed}");
    assert_eq!(sha256(&d3), sum, "read from the local copy");
    assert!(
        share_mounts().is_empty(),
        "nothing reads the share any more: {:?}",
        share_mounts()
    );
    ok(&["vdi", "detach", &c3]);

    // A stopped server: a clear error in bounded time.
    smb_stop();
    let t = Instant::now();
    let e = fails(&["vdi", "attach", &c1], "SERVER_UNREACHABLE");
    assert!(e.to_string().contains("127.0.0.1:445"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    assert!(share_mounts().is_empty(), "{:?}", share_mounts());
    assert!(records().is_empty(), "{:?}", records());
    assert_eq!(
        json(&["template", "show", "sqcow"])["server"]["reachable"],
        false
    );
}

#[test]
fn https_templates_are_fetched_once_resumed_after_a_drop_and_checked() {
    vm();
    const WEB: &str = "/srv/web";
    sh(&["mkdir", "-p", WEB]);
    // 64 MiB holding 40 MiB of noise (so the download takes a while), the rest zeros.
    let raw = format!("{WEB}/base.raw");
    sh(&["truncate", "-s", "64M", &raw]);
    for i in 0..40u64 {
        write_at(&raw, i * MIB, &noise(MIB as usize, 900 + i));
    }
    qcow2_of(&raw, &format!("{WEB}/base.qcow2"));
    let sum = sha256(&raw);
    let qcow_sum = sha256(&format!("{WEB}/base.qcow2"));
    let web = https_serve(WEB);
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    let base = format!("https://127.0.0.1:{}", web.port);
    let lvs_before = sh(&["lvs", "--noheadings", "-o", "lv_name"]);

    // Credentials in a URI are refused; a wrong --sha256 leaves nothing behind.
    fails(
        &["template", "introduce", "https://u:p@127.0.0.1/x.raw"],
        "INVALID_URI",
    );
    let wrong = "0".repeat(64);
    let e = fails(
        &[
            "template",
            "introduce",
            &format!("{base}/base.raw"),
            "--sha256",
            &wrong,
        ],
        "IMAGE_UNREADABLE",
    );
    assert!(
        e.to_string().contains(&sum),
        "names the SHA-256 it found: {e}"
    );
    assert_eq!(sh(&["lvs", "--noheadings", "-o", "lv_name"]), lvs_before);
    assert!(json(&["template", "list"]).as_array().unwrap().is_empty());
    let sent_first = web.sent.load(std::sync::atomic::Ordering::SeqCst);

    // A download dropped at 24 MiB: the command fails naming the server; the template is
    // listed but refuses clones; run again, it asks only for the rest.
    web.cut_after
        .store(24 * MIB, std::sync::atomic::Ordering::SeqCst);
    let qcow_uri = format!("{base}/base.qcow2");
    // With --sha256 a file is fetched whole first (without, it would be read lazily).
    let e = fails(
        &[
            "template",
            "introduce",
            &qcow_uri,
            "--name",
            "web",
            "--sha256",
            &qcow_sum,
        ],
        "SERVER_UNREACHABLE",
    );
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{}", web.port)),
        "{e}"
    );
    fails(
        &["vdi", "clone", "web", "--name", "early"],
        "VDI_INCOMPLETE",
    );
    // A crash once the download is whole, with the converted copy's LV just made: the next
    // run converts again; the LV left over is an orphan copy sr check removes.
    crash_at(
        "fetch.after-convert-lvcreate",
        &[
            "template",
            "introduce",
            &qcow_uri,
            "--name",
            "web",
            "--sha256",
            &qcow_sum,
        ],
    );
    let t = json(&[
        "template",
        "introduce",
        &qcow_uri,
        "--name",
        "web",
        "--sha256",
        &qcow_sum,
    ]);
    assert_eq!(t["format"], "qcow2", "{t}");
    assert_eq!(t["virtual_size"], 64 * MIB, "{t}");
    let ranges = web.ranges.lock().unwrap().clone();
    assert!(
        ranges.last().unwrap().starts_with("bytes=") && ranges.last().unwrap() != "bytes=0-",
        "the second run resumed: {ranges:?}"
    );
    let qcow_len = std::fs::metadata(format!("{WEB}/base.qcow2"))
        .unwrap()
        .len();
    let sent = web.sent.load(std::sync::atomic::Ordering::SeqCst) - sent_first;
    println!("the qcow2 of {qcow_len} bytes took {sent} bytes over two runs");
    assert!(
        sent < qcow_len + qcow_len / 10,
        "{sent} of {qcow_len}: the resume sent it again"
    );
    let c = uuid(&json(&["vdi", "clone", "web", "--name", "from web"]));
    let dev = attach(&c);
    assert_eq!(sha256(&dev), sum, "the clone reads the image's data");
    ok(&["vdi", "detach", &c]);

    // A raw image, its download dropped, and the file replaced on the server before the
    // second run: that run finds another ETag, starts over from the first byte on a fresh
    // LV, and the template holds the new file exactly. The download is its local copy.
    let raw_uri = format!("{base}/base.raw");
    web.cut_after
        .store(24 * MIB, std::sync::atomic::Ordering::SeqCst);
    fails(
        &["template", "introduce", &raw_uri, "--sha256", &sum],
        "SERVER_UNREACHABLE",
    );
    write_at(&raw, 0, &noise(MIB as usize, 4242));
    let new_sum = sha256(&raw);
    let r = json(&["template", "introduce", &raw_uri, "--sha256", &new_sum]);
    assert_eq!(r["format"], "raw", "{r}");
    let c = uuid(&json(&["vdi", "clone", &uuid(&r), "--name", "from raw"]));
    assert_eq!(
        sha256(&attach(&c)),
        new_sum,
        "the new file, not a mix of both"
    );
    ok(&["vdi", "detach", &c]);
    let show = json(&["template", "show", "web"]);
    assert_eq!(show["server"]["place"], base.as_str(), "{show}");
    assert_eq!(show["server"]["reachable"], true, "{show}");
    let check = thinsr(&["--json", "sr", "check", "local"]).json();
    assert_eq!(finding_kinds(&check), ["orphan_local_copy"], "{check}");

    // A crash right after the download's LV is made, before the template names it.
    let again = format!("{base}/base.raw?again");
    crash_at(
        "fetch.after-lvcreate",
        &["template", "introduce", &again, "--sha256", &new_sum],
    );
    assert!(json(&["template", "list"]).as_array().unwrap().len() == 2);
    let check = thinsr(&["--json", "sr", "check", "local"]).json();
    assert_eq!(
        finding_kinds(&check),
        ["orphan_local_copy", "orphan_local_copy"],
        "{check}"
    );
    ok(&["sr", "check", "local", "--repair", "--yes"]);
    let check = json(&["sr", "check", "local"]);
    assert!(check["findings"].as_array().unwrap().is_empty(), "{check}");
    // The template still reads after the repair.
    let c = uuid(&json(&["vdi", "clone", "web", "--name", "after repair"]));
    assert_eq!(sha256(&attach(&c)), sum);
    ok(&["vdi", "detach", &c]);
}
