//! Templates read lazily from a web server (dom0 profile, run in the test VM): an HTTPS
//! server of the test's own on the loopback (TLS checked against a CA put in the host's
//! store, ranges, ETags, keep-alive), counting what it sends.
//!
//! `template introduce https://...` asks only for the file's first bytes; clones read at
//! once, each piece fetched once per host into the template's store and read from there;
//! one version of the file ever; the server gone fails reads in bounded time; a warm makes
//! the store the local copy and moves the clones onto it, in the kernel.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::servers::*;
use common::*;

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
/// The pool's block (the SR's default chunk), the piece a lazy template fetches.
const BLOCK: u64 = 64 * KIB;
const WEB: &str = "/srv/web";

fn uuid(v: &serde_json::Value) -> String {
    v["uuid"].as_str().unwrap().to_string()
}

fn attach(vdi: &str) -> String {
    json(&["vdi", "attach", vdi])["path"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Reads `len` bytes at `offset` of `dev` with O_DIRECT (as a VM's disk is read: nothing
/// from the page cache, no readahead of the kernel's).
fn read_direct(dev: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = open_direct(dev, false)?;
    let mut buf = thinsr::aligned::AlignedBuf::zeroed(len);
    f.read_exact_at(&mut buf.as_mut_slice()[..len], offset)?;
    Ok(buf.as_slice()[..len].to_vec())
}

fn sha_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Processes of thinsr's lazy source, from /proc.
fn lazy_sources() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            cmd.split(|b| *b == 0)
                .any(|a| a == b"__lazy-origin")
                .then_some(pid)
        })
        .collect()
}

/// NBD devices connected now.
fn nbd_connected() -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let size = std::fs::read_to_string(format!("/sys/block/{name}/size")).ok()?;
            (name.starts_with("nbd") && size.trim() != "0").then_some(name)
        })
        .collect()
}

fn assert_check_clean(sr: &str) {
    let check = json(&["sr", "check", sr]);
    assert!(check["findings"].as_array().unwrap().is_empty(), "{check}");
}

#[test]
fn https_templates_are_read_lazily_each_piece_once_and_one_version_ever() {
    vm();
    sh(&["mkdir", "-p", WEB]);
    // 1 GiB, sparse: noise in its first MiB and in 64 regions of 256 KiB spread over it,
    // none aligned to the pool's block (each touches five blocks).
    let big = format!("{WEB}/big.raw");
    sh(&["truncate", "-s", "1G", &big]);
    write_at(&big, 0, &noise(MIB as usize, 1));
    let regions: Vec<u64> = (0..64u64)
        .map(|i| 8 * MIB + i * 15 * MIB + 4096 * (1 + i % 9))
        .collect();
    for (i, r) in regions.iter().enumerate() {
        write_at(&big, *r, &noise(256 * KIB as usize, 100 + i as u64));
    }
    // The image's bytes where the test reads them (the file is mostly holes: not read
    // whole into memory).
    let file = |at: u64, len: u64| read_at(&big, at, len as usize);
    let web = https_serve(WEB);
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    let uri = format!("https://127.0.0.1:{}/big.raw", web.port);

    // Introduce asks for the first bytes only, and returns at once.
    let began = Instant::now();
    let t = json(&[
        "template",
        "introduce",
        &uri,
        "--name",
        "big",
        "--timeout",
        "5",
    ]);
    let took = began.elapsed();
    let sent = web.sent.load(Ordering::SeqCst);
    println!("introduce of a 1 GiB https template: {took:?}, {sent} bytes from the server");
    assert!(sent <= MIB, "introduce fetched {sent} bytes");
    assert_eq!(t["format"], "raw", "{t}");
    assert_eq!(t["virtual_size"], 1u64 << 30, "{t}");
    let show = json(&["template", "show", "big"]);
    assert_eq!(show["lazy"]["verified"], false, "{show}");
    assert!(
        show["lazy"]["version"].as_str().unwrap().starts_with('"'),
        "{show}"
    );

    // A clone reads 16 MiB scattered over it: the server sends those blocks only.
    let c1 = uuid(&json(&["vdi", "clone", "big", "--name", "one"]));
    let c2 = uuid(&json(&["vdi", "clone", "big", "--name", "two"]));
    let d1 = attach(&c1);
    let before = web.sent.load(Ordering::SeqCst);
    let mut blocks = std::collections::BTreeSet::new();
    for r in &regions {
        let got = read_direct(&d1, *r, 256 * KIB as usize).unwrap();
        let want = file(*r, 256 * KIB);
        assert_eq!(
            sha_of(&got),
            sha_of(&want),
            "the clone reads the image at {r}"
        );
        for b in *r / BLOCK..=(*r + 256 * KIB - 1) / BLOCK {
            blocks.insert(b);
        }
    }
    let sent = web.sent.load(Ordering::SeqCst) - before;
    let rounded = blocks.len() as u64 * BLOCK;
    println!(
        "16 MiB read over 64 regions: {sent} bytes sent for {rounded} bytes of blocks ({:.3}x)",
        sent as f64 / rounded as f64
    );
    assert!(sent * 4 <= rounded * 5, "{sent} sent for {rounded}");
    assert!(
        sent >= rounded,
        "{sent} sent for {rounded}: the reads were not fetched"
    );

    // A second clone reading the same fetches nothing: each piece crosses once per host.
    let d2 = attach(&c2);
    let before = web.sent.load(Ordering::SeqCst);
    for r in &regions {
        let got = read_direct(&d2, *r, 256 * KIB as usize).unwrap();
        assert_eq!(got, file(*r, 256 * KIB));
    }
    assert_eq!(
        web.sent.load(Ordering::SeqCst),
        before,
        "the second clone fetched"
    );
    assert_eq!(
        lazy_sources().len(),
        1,
        "one lazy source serves both clones"
    );
    // The source says what it holds four times a second.
    std::thread::sleep(Duration::from_secs(1));
    let show = json(&["template", "show", "big"]);
    let on_host = show["lazy"]["on_host"].as_u64().unwrap();
    assert!(on_host >= rounded, "{show}");

    // The server hangs: a read of a piece not on the host fails within the bound (5 s
    // here), never hangs; pieces on the host still read. Back, reads work again.
    web.paused.store(true, Ordering::SeqCst);
    let began = Instant::now();
    let far = 1000 * MIB;
    assert!(
        read_direct(&d1, far, 4096).is_err(),
        "read without a server"
    );
    let waited = began.elapsed();
    println!("a read with the server hung failed after {waited:?}");
    assert!(waited < Duration::from_secs(5 + 20), "{waited:?}");
    assert!(
        waited >= Duration::from_secs(4),
        "{waited:?}: failed before its bound"
    );
    assert_eq!(
        read_direct(&d1, regions[3], 4096).unwrap(),
        file(regions[3], 4096)
    );
    std::thread::sleep(Duration::from_secs(1));
    let show = json(&["template", "show", "big"]);
    assert!(show["lazy"]["error"].is_string(), "{show}");
    web.paused.store(false, Ordering::SeqCst);
    assert_eq!(
        read_direct(&d1, far, 4096).unwrap(),
        file(far, 4096),
        "the server back, the read works without a re-attach"
    );

    // The file replaced on the server: no clone ever reads a byte of the new one. Pieces
    // not on the host fail; those on the host read as before; show names the change.
    let refused = web.refused.load(Ordering::SeqCst);
    let old = file(900 * MIB, 4096);
    write_at(&big, 900 * MIB, &noise(MIB as usize, 7777));
    assert!(
        read_direct(&d1, 900 * MIB, 4096).is_err(),
        "a piece of the new file was read"
    );
    assert!(
        web.refused.load(Ordering::SeqCst) > refused,
        "the server refused the pinned request (412)"
    );
    assert_ne!(file(900 * MIB, 4096), old);
    assert_eq!(
        read_direct(&d2, regions[5], 4096).unwrap(),
        file(regions[5], 4096)
    );
    std::thread::sleep(Duration::from_secs(1));
    let show = json(&["template", "show", "big"]);
    assert_eq!(show["lazy"]["source_changed"], true, "{show}");
    let human = ok(&["template", "show", "big"]);
    assert!(human.contains("CHANGED on the server"), "{human}");

    // Detached, nothing of the lazy source stays; attached again, what is on the host
    // reads (from the map the store kept) without the server.
    ok(&["vdi", "detach", &c1]);
    ok(&["vdi", "detach", &c2]);
    assert!(lazy_sources().is_empty(), "{:?}", lazy_sources());
    assert!(nbd_connected().is_empty(), "{:?}", nbd_connected());
    let before = web.sent.load(Ordering::SeqCst);
    let d1 = attach(&c1);
    for r in &regions[..8] {
        let got = read_direct(&d1, *r, 256 * KIB as usize).unwrap();
        assert_eq!(got, file(*r, 256 * KIB));
    }
    assert_eq!(
        web.sent.load(Ordering::SeqCst),
        before,
        "the store's map was kept"
    );
    ok(&["vdi", "detach", &c1]);
    assert_check_clean("local");
}

#[test]
fn a_warmed_lazy_template_becomes_a_local_copy_its_clones_read_in_the_kernel() {
    vm();
    sh(&["mkdir", "-p", WEB]);
    // 24 MiB of noise in a 32 MiB file, and the same as qcow2.
    let raw = format!("{WEB}/base.raw");
    sh(&["truncate", "-s", "32M", &raw]);
    for i in 0..24u64 {
        write_at(
            &raw,
            i * MIB + (i % 3) * 4096,
            &noise(MIB as usize, 300 + i),
        );
    }
    let sum = sha256(&raw);
    let qcow = format!("{WEB}/base.qcow2");
    sh(&[
        "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-c", &raw, &qcow,
    ]);
    let web = https_serve(WEB);
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    let base = format!("https://127.0.0.1:{}", web.port);

    // A crash right after the store's LV is made: sr check names an orphan copy and
    // removes it; introduce again works.
    crash_at(
        "lazy.after-lvcreate",
        &[
            "template",
            "introduce",
            &format!("{base}/base.raw"),
            "--name",
            "raw",
        ],
    );
    let check = thinsr(&["--json", "sr", "check", "local"]).json();
    assert_eq!(check["findings"][0]["kind"], "orphan_local_copy", "{check}");
    ok(&["sr", "check", "local", "--repair", "--yes"]);

    let t = json(&[
        "template",
        "introduce",
        &format!("{base}/base.raw"),
        "--name",
        "raw",
    ]);
    let c = uuid(&json(&["vdi", "clone", &uuid(&t), "--name", "from raw"]));
    let dev = attach(&c);
    // Some of it read lazily, the lazy source killed after it wrote a piece and before it
    // marked it: reads fail, sr check names the dead server; detach and attach bring a
    // new one whose map holds only what was marked, and every byte reads right.
    assert_eq!(read_direct(&dev, 0, 4096).unwrap(), read_at(&raw, 0, 4096));
    let pre = lazy_sources();
    assert_eq!(pre.len(), 1);
    sh(&["kill", "-9", &pre[0]]);
    assert!(
        read_direct(&dev, 30 * MIB, 4096).is_err(),
        "a read through a dead source"
    );
    let check = thinsr(&["--json", "sr", "check", "local"]).json();
    assert_eq!(finding_kinds(&check), ["dead_origin"], "{check}");
    ok(&["vdi", "detach", &c]);
    // What the kernel or udev may read at attach (the first and last blocks) is on the
    // host first, so that only the reads below fetch.
    let dev2 = attach(&c);
    read_direct(&dev2, 0, 64 * KIB as usize).unwrap();
    read_direct(&dev2, 32 * MIB - 64 * KIB, 64 * KIB as usize).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    ok(&["vdi", "detach", &c]);
    let points = ["lazy.fetched", "lazy.written", "lazy.synced", "lazy.marked"];
    for (i, point) in points.into_iter().enumerate() {
        let out = thinsr_cmd(&["vdi", "attach", &c])
            .env("THINSR_SERVER_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A block no read asked for before.
        let at = 20 * MIB + i as u64 * 3 * MIB;
        // The first fetch reaches the point; the source dies there.
        let _ = read_direct(&dev, at, 4096);
        let t0 = Instant::now();
        while !lazy_sources().is_empty() && t0.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            lazy_sources().is_empty(),
            "{point}: the source did not die there"
        );
        ok(&["vdi", "detach", &c]);
        let again = attach(&c);
        assert_eq!(again, dev);
        assert_eq!(
            read_direct(&dev, at, 64 * KIB as usize).unwrap(),
            read_at(&raw, at, 64 * KIB as usize),
            "{point}: the piece reads right after the crash"
        );
        ok(&["vdi", "detach", &c]);
    }
    let dev = attach(&c);

    // Warm: the rest fetched, the store becomes the local copy, the attached clone moves
    // onto it in the kernel, the lazy source ends. The server sent about the file once.
    let sent_before = web.sent.load(Ordering::SeqCst);
    let w = json(&["template", "warm", "raw"]);
    let sent = web.sent.load(Ordering::SeqCst) - sent_before;
    assert!(w["local"].is_string(), "{w}");
    assert!(w["lazy"].is_null(), "{w}");
    assert_eq!(w["sha256"], sum.as_str(), "{w}");
    let total = web.sent.load(Ordering::SeqCst);
    println!("the 32 MiB file took {total} bytes in all ({sent} in the warm)");
    assert!(
        total <= 32 * MIB + 32 * MIB / 10,
        "{total} bytes for a 32 MiB file"
    );
    assert!(lazy_sources().is_empty(), "{:?}", lazy_sources());
    assert!(nbd_connected().is_empty(), "{:?}", nbd_connected());
    assert_eq!(
        sha256(&dev),
        sum,
        "the clone reads the image after the move"
    );
    ok(&["vdi", "detach", &c]);
    // New clones are thin snapshots of the copy; the server is never asked again.
    web.paused.store(true, Ordering::SeqCst);
    let c2 = uuid(&json(&["vdi", "clone", "raw", "--name", "after warm"]));
    assert_eq!(sha256(&attach(&c2)), sum);
    ok(&["vdi", "detach", &c2]);
    web.paused.store(false, Ordering::SeqCst);

    // A compressed qcow2: read lazily through qemu-nbd over the lazy source, then warmed
    // into a raw copy.
    let q = json(&[
        "template",
        "introduce",
        &format!("{base}/base.qcow2"),
        "--name",
        "q",
    ]);
    assert_eq!(q["format"], "qcow2", "{q}");
    assert_eq!(q["virtual_size"], 32 * MIB, "{q}");
    let cq = uuid(&json(&["vdi", "clone", "q", "--name", "from qcow2"]));
    let dq = attach(&cq);
    assert_eq!(
        read_direct(&dq, 7 * MIB, 4096).unwrap(),
        read_at(&raw, 7 * MIB, 4096)
    );
    // A warm killed once everything is fetched, once the raw copy's LV is made, and once
    // the copy is recorded: each next warm finishes it; the clone reads the image
    // throughout, and sr check removes the copies left over.
    crash_at("lazy.warmed", &["template", "warm", "q"]);
    crash_at("lazy.after-convert-lvcreate", &["template", "warm", "q"]);
    assert_eq!(
        read_direct(&dq, 9 * MIB, 4096).unwrap(),
        read_at(&raw, 9 * MIB, 4096)
    );
    crash_at("lazy.recorded", &["template", "warm", "q"]);
    let w = json(&["template", "warm", "q"]);
    assert!(w["local"].is_string(), "{w}");
    assert!(w["lazy"].is_null(), "{w}");
    assert_eq!(sha256(&dq), sum, "the qcow2's clone reads the image");
    assert!(lazy_sources().is_empty(), "{:?}", lazy_sources());
    assert!(nbd_connected().is_empty(), "{:?}", nbd_connected());
    ok(&["vdi", "detach", &cq]);
    let check = thinsr(&["--json", "sr", "check", "local"]).json();
    let kinds = finding_kinds(&check);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "orphan_local_copy"),
        "{check}"
    );
    ok(&["sr", "check", "local", "--repair", "--yes"]);
    assert_check_clean("local");
    assert_eq!(sha256(&attach(&cq)), sum);
    ok(&["vdi", "detach", &cq]);

    // vhd and vmdk, read lazily through qemu-nbd as the qcow2 was.
    for (format, ext, opts) in [("vpc", "vhd", "force_size=on"), ("vmdk", "vmdk", "")] {
        let path = format!("{WEB}/base.{ext}");
        let mut args = vec!["qemu-img", "convert", "-q", "-f", "raw", "-O", format];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        args.extend([raw.as_str(), path.as_str()]);
        sh(&args);
        let t = json(&[
            "template",
            "introduce",
            &format!("{base}/base.{ext}"),
            "--name",
            ext,
        ]);
        assert_eq!(t["format"], format, "{t}");
        let c = uuid(&json(&[
            "vdi",
            "clone",
            ext,
            "--name",
            &format!("from {ext}"),
        ]));
        let dev = attach(&c);
        let got = read_direct(&dev, 0, 32 * MIB as usize).unwrap();
        assert_eq!(
            sha_of(&got),
            sum,
            "the {ext} template's clone reads the image"
        );
        ok(&["vdi", "detach", &c]);
    }
}

/// s3s-fs (built by xtask into target/s3s), an S3 server over a directory that checks
/// SigV4 signatures with the access and secret key it is given, on `port`; its pid. It
/// runs until the VM ends.
#[allow(clippy::zombie_processes)]
fn s3_serve(root: &str, port: u16, access: &str, secret: &str) -> u32 {
    sh(&["mkdir", "-p", root]);
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/target/s3s/bin/s3s-fs");
    let child = std::process::Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", access, "--secret-key", secret, root])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("s3s-fs starts");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "s3s-fs does not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.id()
}

/// Writes the s3 keys for `host` where thinsr reads them: root's, mode 0600.
fn s3_keys(host: &str, access: &str, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = "/etc/thinsr/credentials/s3";
    sh(&["mkdir", "-p", dir]);
    let path = format!("{dir}/{host}");
    std::fs::write(
        &path,
        format!("[default]\naws_access_key_id = {access}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The processes (but `except`, the test's S3 server, which is given the keys) whose
/// command line or environment holds `needle` now.
fn in_any_process(needle: &str, except: u32) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().into_string().unwrap_or_default();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == except.to_string() {
            continue;
        }
        for what in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
            if String::from_utf8_lossy(&bytes).contains(needle) {
                found.push(format!("{pid}/{what}"));
            }
        }
    }
    found
}

#[test]
fn s3_templates_are_read_lazily_with_signed_requests_and_keys_kept_secret() {
    vm();
    const ROOT: &str = "/srv/s3";
    const ACCESS: &str = "THINSRTESTACCESS";
    const SECRET: &str = "thinsr-test-secret-never-shown";
    // 8 MiB (s3s-fs hashes the whole object for every request's ETag), noise in most of
    // it, and the same image as a compressed qcow2.
    sh(&["mkdir", "-p", &format!("{ROOT}/images")]);
    let raw = format!("{ROOT}/images/disk.raw");
    sh(&["truncate", "-s", "8M", &raw]);
    for i in 0..6u64 {
        write_at(&raw, i * MIB + 512, &noise(MIB as usize, 900 + i));
    }
    let sum = sha256(&raw);
    sh(&[
        "qemu-img",
        "convert",
        "-q",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-c",
        &raw,
        &format!("{ROOT}/images/disk.qcow2"),
    ]);
    sh(&["ip", "link", "set", "lo", "up"]);
    let server = s3_serve(ROOT, 9000, ACCESS, SECRET);
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    let endpoint = "endpoint=http://127.0.0.1:9000";
    let raw_uri = format!("s3://images/disk.raw?{endpoint}");

    // Without keys the server refuses (it wants signatures); with a wrong secret it
    // refuses the signature itself, and thinsr says so naming the endpoint. Nothing is
    // left behind.
    let lvs_before = sh(&["lvs", "--noheadings", "-o", "lv_name"]);
    let e = fails(&["template", "introduce", &raw_uri], "IMAGE_UNREADABLE");
    assert!(e.to_string().contains("127.0.0.1:9000"), "{e}");
    assert!(e.to_string().contains("403"), "{e}");
    s3_keys("127.0.0.1", ACCESS, "not-the-secret");
    let e = fails(&["template", "introduce", &raw_uri], "IMAGE_UNREADABLE");
    let text = e.to_string();
    assert!(
        text.contains("127.0.0.1:9000"),
        "names the endpoint: {text}"
    );
    assert!(
        text.contains("SignatureDoesNotMatch"),
        "the server's refusal: {text}"
    );
    assert!(
        !text.contains("not-the-secret") && !text.contains(ACCESS),
        "{text}"
    );
    assert_eq!(sh(&["lvs", "--noheadings", "-o", "lv_name"]), lvs_before);
    // A keys file others may read is refused, its content unsaid.
    s3_keys("127.0.0.1", ACCESS, SECRET);
    sh(&["chmod", "644", "/etc/thinsr/credentials/s3/127.0.0.1"]);
    let e = fails(&["template", "introduce", &raw_uri], "UNSAFE_PATH");
    assert!(!e.to_string().contains(SECRET), "{e}");
    sh(&["chmod", "600", "/etc/thinsr/credentials/s3/127.0.0.1"]);

    // The right keys: raw and compressed qcow2 objects, read lazily through clones.
    let r = json(&["template", "introduce", &raw_uri, "--name", "s3raw"]);
    assert_eq!(r["format"], "raw", "{r}");
    let q = json(&[
        "template",
        "introduce",
        &format!("s3://images/disk.qcow2?{endpoint}"),
        "--name",
        "s3qcow",
    ]);
    assert_eq!(q["format"], "qcow2", "{q}");
    assert_eq!(q["virtual_size"], 8 * MIB, "{q}");
    let cr = uuid(&json(&["vdi", "clone", "s3raw", "--name", "from s3 raw"]));
    let cq = uuid(&json(&[
        "vdi",
        "clone",
        "s3qcow",
        "--name",
        "from s3 qcow2",
    ]));
    let dr = attach(&cr);
    let dq = attach(&cq);
    assert_eq!(
        read_direct(&dr, 3 * MIB, 4096).unwrap(),
        read_at(&raw, 3 * MIB, 4096)
    );
    assert_eq!(sha256(&dq), sum, "the qcow2 object's clone reads the image");
    assert_eq!(sha256(&dr), sum, "the raw object's clone reads the image");

    // The keys are nowhere to be seen: no process's argv or environment (the lazy sources
    // run now), no output, not the SR's metadata.
    assert_eq!(lazy_sources().len(), 2);
    let show = json(&["template", "show", "s3raw"]);
    assert_eq!(show["server"]["place"], "http://127.0.0.1:9000", "{show}");
    assert_eq!(show["server"]["reachable"], true, "{show}");
    for needle in [SECRET, ACCESS] {
        let seen = in_any_process(needle, server);
        assert!(seen.is_empty(), "{needle}: {seen:?}");
        for args in [
            vec!["--json", "template", "show", "s3raw"],
            vec!["template", "show", "s3qcow"],
            vec!["--json", "vdi", "list"],
            vec!["--json", "sr", "show", "local"],
        ] {
            assert!(!ok(&args).contains(needle), "{args:?} shows {needle}");
        }
    }
    let lvs = sh(&["lvs", "--noheadings", "-o", "lv_path,lv_tags"]);
    let meta = lvs
        .lines()
        .find(|l| l.contains("thinsr_meta"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the SR's metadata LV")
        .to_string();
    let bytes = read_at(&meta, 0, 4 * MIB as usize);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("s3://images/disk.raw"),
        "the metadata was read"
    );
    assert!(
        !text.contains(SECRET) && !text.contains(ACCESS),
        "the metadata holds a key"
    );

    // Warm: the raw object becomes the local copy, read in the kernel.
    let w = json(&["template", "warm", "s3raw"]);
    assert_eq!(w["sha256"], sum.as_str(), "{w}");
    assert_eq!(sha256(&dr), sum);
    ok(&["vdi", "detach", &cr]);
    ok(&["vdi", "detach", &cq]);
    assert!(lazy_sources().is_empty(), "{:?}", lazy_sources());
    assert_check_clean("local");
}
