//! `vdi serve` in the test VM: qemu's NBD client reads a VDI byte-identical through
//! thinsr's own NBD server, several times and from a snapshot while the VDI is attached
//! read-write; SIGTERM ends it and leaves nothing attached, served or bound.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

/// Attaches VDI `name` and returns its device.
fn attach(name: &str, read_only: bool) -> String {
    let mut args = vec!["vdi", "attach", name];
    if read_only {
        args.push("--read-only");
    }
    json(&args)["path"].as_str().unwrap().to_string()
}

/// `vdi serve VDI --json` running, and the JSON line it printed when ready.
fn serve(args: &[&str]) -> (Child, serde_json::Value) {
    let mut cmd = thinsr_cmd(&[&["--json", "vdi", "serve"], args].concat());
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("thinsr runs");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("a ready line");
    let ready: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
    // The rest (the line at the end) is read after the stop.
    child.stdout = Some(out.into_inner());
    (child, ready)
}

/// SIGTERM, then the end within `limit`; returns its exit code and last JSON line.
fn stop(mut child: Child, limit: Duration) -> (i32, serde_json::Value) {
    sh(&["kill", "-TERM", &child.id().to_string()]);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < limit,
            "vdi serve did not stop within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    let last = rest.lines().last().unwrap_or("null").to_string();
    (
        status.code().unwrap_or(-1),
        serde_json::from_str(&last).unwrap(),
    )
}

#[test]
fn qemu_reads_a_served_vdi_identical_and_a_stop_leaves_nothing() {
    vm();
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    ok(&["vdi", "create", "web", "--size", "64M"]);
    let dev = attach("web", false);
    for (i, at) in [0, 5 * MIB + 4096, 63 * MIB].iter().enumerate() {
        write_at(&dev, *at, &noise(MIB as usize, 40 + i as u64));
    }
    let want = sha256(&dev);
    ok(&["vdi", "detach", "web"]);

    // Detached: served from a read-only device of thinsr's, on its default socket.
    let (child, ready) = serve(&["web"]);
    let socket = ready["socket"].as_str().unwrap().to_string();
    assert!(socket.starts_with("/run/thinsr/serve/"), "{ready}");
    assert_eq!(ready["size"], 64 * MIB);
    assert_eq!(ready["read_only"], true);
    assert_eq!(ready["from_snapshot"], false);
    let mode = sh(&["stat", "-c", "%a %U", &socket]);
    assert_eq!(mode.trim(), "600 root");
    let uri = ready["uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("nbd+unix:///"), "{uri}");
    // Connections one after another: each reads the whole disk identical.
    for round in 0..2 {
        let out = format!("/tmp/served{round}.raw");
        sh(&["qemu-img", "convert", "-f", "raw", "-O", "raw", &uri, &out]);
        assert_eq!(sha256(&out), want, "round {round}");
        std::fs::remove_file(&out).unwrap();
    }
    // An import reads the export into a new VDI, identical and thin.
    let imported = json(&["vdi", "import", &uri, "--name", "copy"]);
    assert_eq!(imported["virtual_size"], 64 * MIB, "{imported}");
    let copy = attach("copy", true);
    assert_eq!(sha256(&copy), want);
    ok(&["vdi", "detach", "copy"]);
    let used = json(&["vdi", "show", "copy"])["physical_utilisation"]
        .as_u64()
        .unwrap();
    assert!(used <= 4 * MIB, "{used} bytes allocated for 3 MiB of data");
    // A third client asks only for the export's size.
    let info = sh(&["qemu-img", "info", "--output=json", &uri]);
    assert!(info.contains(&(64 * MIB).to_string()), "{info}");
    let (code, end) = stop(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{end}");
    assert!(end["connections"].as_u64().unwrap() >= 3, "{end}");
    assert!(end["bytes_read"].as_u64().unwrap() >= 2 * 64 * MIB, "{end}");
    assert!(
        !std::path::Path::new(&socket).exists(),
        "the socket stays after the stop"
    );
    assert!(our_dm_devices().is_empty(), "{:?}", our_dm_devices());
    assert_eq!(json(&["vdi", "show", "web"])["attached"], false);

    // Attached read-write (a VM running on it): a snapshot is served, and goes afterwards.
    let dev = attach("web", false);
    let vdis = json(&["vdi", "list"]).as_array().unwrap().len();
    let (child, ready) = serve(&["web", "--socket", "/tmp/web.sock"]);
    assert_eq!(ready["from_snapshot"], true, "{ready}");
    assert_eq!(json(&["vdi", "list"]).as_array().unwrap().len(), vdis + 1);
    // The VM writes on; the export shows the disk as it was when the serve began.
    write_at(&dev, 0, &noise(MIB as usize, 99));
    let uri = ready["uri"].as_str().unwrap().to_string();
    assert!(uri.ends_with("?socket=/tmp/web.sock"), "{uri}");
    sh(&[
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &uri,
        "/tmp/snap.raw",
    ]);
    assert_eq!(sha256("/tmp/snap.raw"), want);
    // A second serve on the same socket path is refused, and changes nothing.
    fails(
        &["vdi", "serve", "web", "--socket", "/tmp/web.sock"],
        "FILE_EXISTS",
    );
    let (code, _) = stop(child, Duration::from_secs(20));
    assert_eq!(code, 0);
    assert!(!std::path::Path::new("/tmp/web.sock").exists());
    assert_eq!(json(&["vdi", "list"]).as_array().unwrap().len(), vdis);
    assert_eq!(json(&["vdi", "show", "web"])["attached"], true);
    ok(&["vdi", "detach", "web"]);
    assert!(our_dm_devices().is_empty(), "{:?}", our_dm_devices());
}

#[test]
fn a_writable_export_takes_an_image_and_keeps_the_vdi_thin() {
    vm();
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
    ok(&["vdi", "create", "dest", "--size", "256M"]);
    // Old bytes where the image has zeros: they must read as zeros afterwards.
    let dev = attach("dest", false);
    write_at(&dev, 4 * MIB, &noise(8 * MIB as usize, 7));
    ok(&["vdi", "detach", "dest"]);
    // The image: 256 MiB, 64 MiB of it data (4 MiB every 16 MiB), the rest zeros.
    let image = "/tmp/src.raw";
    std::fs::File::create(image)
        .unwrap()
        .set_len(256 * MIB)
        .unwrap();
    for i in 0..16u64 {
        write_at(image, i * 16 * MIB, &noise(4 * MIB as usize, 100 + i));
    }
    let want = sha256(image);

    // Attached read-write elsewhere: refused, nothing served.
    ok(&["vdi", "attach", "dest"]);
    fails(&["vdi", "serve", "dest", "--writable"], "VDI_ATTACHED");
    ok(&["vdi", "detach", "dest"]);

    let (child, ready) = serve(&["dest", "--writable"]);
    assert_eq!(ready["read_only"], false, "{ready}");
    let uri = ready["uri"].as_str().unwrap().to_string();
    // As xapi's mirror or a migration would: every byte of the image, zeros included.
    sh(&[
        "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", image, &uri,
    ]);
    let (code, end) = stop(child, Duration::from_secs(20));
    assert_eq!(code, 0, "{end}");
    assert_eq!(json(&["vdi", "show", "dest"])["attached"], false);
    assert!(our_dm_devices().is_empty(), "{:?}", our_dm_devices());

    // Byte-identical, and thin: what the pool holds is the image's data, within 10 %.
    let dev = attach("dest", true);
    assert_eq!(sha256(&dev), want);
    ok(&["vdi", "detach", "dest"]);
    let used = json(&["vdi", "show", "dest"])["physical_utilisation"]
        .as_u64()
        .unwrap();
    println!("256 MiB VDI, 64 MiB of data written over NBD: {used} bytes allocated");
    assert!(
        (64 * MIB..=64 * MIB * 11 / 10).contains(&used),
        "{used} bytes allocated for 64 MiB of data"
    );
}
