//! Export and import end to end, in the test VM: images that qemu reads identical to the
//! VDI, reads limited to the data (block-layer counters of the pool's data device), deltas
//! over a base, template clones, imports that stay thin, and failures that leave nothing.

mod common;

use std::fs::File;
use std::process::Stdio;

use common::*;

const MIB: u64 = 1 << 20;

fn owned_sr() {
    ok(&["sr", "create", DISKS[0], "--name", "local"]);
}

fn attach(vdi: &str, read_only: bool) -> String {
    let mut args = vec!["vdi", "attach", vdi];
    if read_only {
        args.push("--read-only");
    }
    let v = json(&args);
    v["path"].as_str().unwrap().to_string()
}

/// Bytes read so far from the pool's data device (every read of VDI data lands there).
fn pool_data_read() -> u64 {
    let name = sh(&["dmsetup", "ls"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .find(|n| n.ends_with("_tdata"))
        .expect("the pool's data device");
    dm_bytes_read(&name)
}

/// Writes about `percent` % of a `size` disk: 1 MiB pieces at scattered MiB offsets, plus
/// a few 4 KiB writes at odd places. Returns the bytes written.
fn scatter(dev: &str, size: u64, percent: u64, seed: u64) -> u64 {
    let pieces = size / MIB * percent / 100;
    let mut x = seed;
    let mut used = std::collections::HashSet::new();
    while (used.len() as u64) < pieces {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        used.insert((x >> 33) % (size / MIB));
    }
    for (i, mib) in used.iter().enumerate() {
        write_at(dev, mib * MIB, &noise(MIB as usize, seed + i as u64));
    }
    for (i, off) in [3 * MIB + 512, size / 2 + 77 * 512, size - 4096]
        .iter()
        .enumerate()
    {
        write_at(dev, *off, &noise(4096, seed + 1000 + i as u64));
    }
    pieces * MIB + 3 * 4096
}

fn compare(dev: &str, image: &str, format: &str) {
    sh(&["qemu-img", "compare", "-f", "raw", "-F", format, dev, image]);
}

fn qcow2_clean(image: &str) {
    let out = sh(&["qemu-img", "check", "-f", "qcow2", image]);
    assert!(out.contains("No errors were found"), "{out}");
}

fn mapped(vdi: &str) -> u64 {
    json(&["vdi", "show", vdi])["physical_utilisation"]
        .as_u64()
        .unwrap()
}

#[test]
fn exports_read_only_the_data_and_qemu_reads_them_identical() {
    vm();
    owned_sr();
    ok(&["vdi", "create", "d", "--size", "1G"]);
    let dev = attach("d", false);
    let written = scatter(&dev, 1 << 30, 3, 7);
    ok(&["vdi", "detach", "d"]);
    let data = mapped("d");
    assert!(
        data >= written && data < written + 8 * MIB,
        "{data} vs {written}"
    );

    let before = state();
    for (format, file) in [
        ("raw", "/tmp/d.raw"),
        ("vhd", "/tmp/d.vhd"),
        ("qcow2", "/tmp/d.qcow2"),
    ] {
        let read0 = pool_data_read();
        let r = json(&["export", "d", "-o", file]);
        let read = pool_data_read() - read0;
        assert_eq!(r["format"], format, "{r}");
        assert_eq!(r["from_snapshot"], false);
        assert_eq!(r["read"].as_u64().unwrap(), data, "{r}");
        // The data, plus at most 1 MiB of anything else (the pool's own reads).
        assert!(
            read >= data && read <= data + MIB,
            "{format}: read {read} for {data} of data"
        );
        eprintln!("{format}: {read} bytes read from the pool for {data} of data, {r}");
    }
    assert_eq!(
        state(),
        before,
        "an export of a detached VDI leaves nothing attached"
    );
    // A raw file is sparse: its blocks are about the data.
    let blocks = sh(&["du", "-k", "/tmp/d.raw"]);
    let kib: u64 = blocks.split_whitespace().next().unwrap().parse().unwrap();
    assert!(kib * 1024 < data + 8 * MIB, "raw export uses {kib} KiB");

    let dev = attach("d", true);
    compare(&dev, "/tmp/d.raw", "raw");
    compare(&dev, "/tmp/d.vhd", "vpc");
    compare(&dev, "/tmp/d.qcow2", "qcow2");
    qcow2_clean("/tmp/d.qcow2");
    // Attached read-only: exported from that device, no snapshot.
    let r = json(&["export", "d", "-o", "/tmp/d2.qcow2"]);
    assert_eq!(r["from_snapshot"], false);
    compare(&dev, "/tmp/d2.qcow2", "qcow2");
    ok(&["vdi", "detach", "d"]);
    for f in ["/tmp/d.raw", "/tmp/d2.qcow2"] {
        std::fs::remove_file(f).unwrap();
    }

    // Attached read-write: a temporary snapshot is exported, then removed.
    let dev = attach("d", false);
    let vdis = json(&["vdi", "list"]).as_array().unwrap().len();
    let r = json(&["export", "d", "-o", "/tmp/live.qcow2"]);
    assert_eq!(r["from_snapshot"], true, "{r}");
    assert_eq!(json(&["vdi", "list"]).as_array().unwrap().len(), vdis);
    compare(&dev, "/tmp/live.qcow2", "qcow2");
    std::fs::remove_file("/tmp/live.qcow2").unwrap();

    // To a pipe (stdout): the same image; the report goes to stderr.
    let out = File::create("/tmp/pipe.vhd").unwrap();
    let run = thinsr_cmd(&["--json", "export", "d", "--format", "vhd"])
        .stdout(Stdio::from(out))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&run.stderr).unwrap();
    assert_eq!(report["output"], "-");
    compare(&dev, "/tmp/pipe.vhd", "vpc");
    ok(&["vdi", "detach", "d"]);

    // Refusals change nothing and leave no file behind.
    let before = state();
    fails(&["export", "d", "-o", "/tmp/d.vhd"], "FILE_EXISTS");
    fails(
        &[
            "export",
            "d",
            "-o",
            "/tmp/x.raw",
            "--format",
            "vhd",
            "--base",
            "d",
        ],
        "USAGE",
    );
    fails(
        &["export", "d", "-o", "/tmp/x.qcow2", "--base", "d"],
        "INVALID_ARGUMENT",
    );
    fails(&["export", "nope", "-o", "/tmp/x.qcow2"], "VDI_NOT_FOUND");
    assert!(!std::path::Path::new("/tmp/x.qcow2").exists());
    assert_eq!(state(), before);
    assert!(our_dm_devices().is_empty());
}

#[test]
fn a_delta_over_its_base_rebuilds_the_vdi() {
    vm();
    owned_sr();
    ok(&["vdi", "create", "v", "--size", "256M"]);
    let dev = attach("v", false);
    scatter(&dev, 256 << 20, 10, 3);
    write_at(&dev, 100 * MIB, &noise(4 * MIB as usize, 99));
    ok(&["vdi", "detach", "v"]);
    ok(&["vdi", "snapshot", "v", "--name", "monday"]);
    std::fs::create_dir_all("/tmp/backup").unwrap();
    ok(&["export", "monday", "-o", "/tmp/backup/monday.qcow2"]);

    // Tuesday: new data, rewritten data, and a discarded range.
    let dev = attach("v", false);
    write_at(&dev, 7 * MIB, &noise(MIB as usize, 5));
    write_at(&dev, 200 * MIB, &noise(2 * MIB as usize, 6));
    sh(&[
        "blkdiscard",
        "-o",
        &(100 * MIB).to_string(),
        "-l",
        &(4 * MIB).to_string(),
        &dev,
    ]);
    ok(&["vdi", "detach", "v"]);
    ok(&["vdi", "snapshot", "v", "--name", "tuesday"]);
    let r = json(&[
        "export",
        "tuesday",
        "--base",
        "monday",
        "-o",
        "/tmp/backup/tuesday.qcow2",
        "--backing-name",
        "monday.qcow2",
    ]);
    assert_eq!(r["format"], "qcow2");
    // Only what changed is read: about 3 MiB, not the 10 % of the disk the base holds.
    assert!(r["read"].as_u64().unwrap() <= 4 * MIB, "{r}");
    qcow2_clean("/tmp/backup/tuesday.qcow2");
    let info = sh(&["qemu-img", "info", "/tmp/backup/tuesday.qcow2"]);
    assert!(info.contains("backing file: monday.qcow2"), "{info}");
    let dev = attach("tuesday", true);
    compare(&dev, "/tmp/backup/tuesday.qcow2", "qcow2");
    // The pair flattened by qemu-img is the VDI.
    sh(&[
        "qemu-img",
        "convert",
        "-O",
        "raw",
        "/tmp/backup/tuesday.qcow2",
        "/tmp/flat.raw",
    ]);
    compare(&dev, "/tmp/flat.raw", "raw");
    ok(&["vdi", "detach", "tuesday"]);

    // A delta of the live VDI against monday, from its temporary snapshot.
    let dev = attach("v", false);
    write_at(&dev, 50 * MIB, &noise(MIB as usize, 8));
    let r = json(&[
        "export",
        "v",
        "--base",
        "monday",
        "-o",
        "/tmp/backup/now.qcow2",
    ]);
    assert_eq!(r["from_snapshot"], true);
    compare(&dev, "/tmp/backup/now.qcow2", "qcow2");
    ok(&["vdi", "detach", "v"]);
    assert!(our_dm_devices().is_empty());
}

#[test]
fn a_template_clone_exports_template_data_and_its_writes() {
    vm();
    owned_sr();
    let raw = "/tmp/t.raw";
    sh(&["truncate", "-s", "128M", raw]);
    for (i, off) in [0, 33 * MIB + 512, 127 * MIB].iter().enumerate() {
        write_at(raw, *off, &noise(MIB as usize, 40 + i as u64));
    }
    sh(&["qemu-img", "convert", "-O", "qcow2", raw, "/tmp/t.qcow2"]);
    std::fs::remove_file(raw).unwrap();
    ok(&["template", "introduce", "file:///tmp/t.qcow2"]);
    ok(&["vdi", "clone", "t", "--name", "c"]);
    let dev = attach("c", false);
    write_at(&dev, 33 * MIB, &noise(2 * MIB as usize, 50));
    write_at(&dev, 90 * MIB, &noise(MIB as usize, 51));
    ok(&["vdi", "detach", "c"]);
    let r = json(&["export", "c", "-o", "/tmp/c.qcow2"]);
    // Template data (3 MiB, partly overwritten) and the clone's 3 MiB, not 128 MiB.
    let read = r["read"].as_u64().unwrap();
    assert!((5 * MIB..=8 * MIB).contains(&read), "{r}");
    qcow2_clean("/tmp/c.qcow2");
    let dev = attach("c", true);
    compare(&dev, "/tmp/c.qcow2", "qcow2");
    assert_eq!(read_at("/tmp/t.qcow2", 0, 4).as_slice(), b"QFI\xfb");
    ok(&["vdi", "detach", "c"]);
    assert!(our_dm_devices().is_empty());
}

fn import_file(path: &str, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["vdi", "import", path, "--name", name];
    args.extend_from_slice(extra);
    json(&args)
}

fn import_stdin(path: &str, name: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "vdi", "import", "-", "--name", name];
    args.extend_from_slice(extra);
    let run = thinsr_cmd(&args)
        .stdin(Stdio::from(File::open(path).unwrap()))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).unwrap()
}

#[test]
fn imports_stay_thin_and_equal_their_source() {
    vm();
    owned_sr();
    let src = "/tmp/src.raw";
    sh(&["truncate", "-s", "200M", src]);
    scatter(src, 200 << 20, 5, 11);
    // Zeros written as data must not be allocated either.
    write_at(src, 150 * MIB, &vec![0u8; 4 * MIB as usize]);
    // What a thin import must allocate: the 64 KiB pieces (the pool's chunk) not all zero.
    let nonzero = std::fs::read(src)
        .unwrap()
        .chunks(64 << 10)
        .filter(|c| c.iter().any(|b| *b != 0))
        .count() as u64
        * (64 << 10);
    for (fmt, opts) in [
        ("qcow2", ""),
        ("vpc", "subformat=dynamic,force_size=on"),
        ("vmdk", ""),
    ] {
        let mut args = vec!["qemu-img", "convert", "-O", fmt];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        let out = format!("/tmp/src.{fmt}");
        args.extend([src, out.as_str()]);
        sh(&args);
    }
    let mut imported = Vec::new();
    for (path, name, how) in [
        ("/tmp/src.raw", "from-raw", "file"),
        ("/tmp/src.qcow2", "from-qcow2", "file"),
        ("/tmp/src.vpc", "from-vhd", "file"),
        ("/tmp/src.vmdk", "from-vmdk", "file"),
        ("/tmp/src.raw", "raw-stream", "stdin"),
        ("/tmp/src.qcow2", "qcow2-stream", "stdin"),
        ("/tmp/src.vpc", "vhd-stream", "stdin"),
    ] {
        let v = if how == "file" {
            import_file(path, name, &[])
        } else {
            import_stdin(path, name, &["--size", "200M"])
        };
        assert!(v["virtual_size"].as_u64().unwrap() >= 200 * MIB, "{v}");
        let used = mapped(name);
        // The non-zero chunks, never the zeros.
        assert!(
            used >= nonzero && used <= nonzero + MIB,
            "{name}: {used} allocated for {nonzero}"
        );
        imported.push(name);
    }
    for name in &imported {
        let dev = attach(name, true);
        compare(&dev, src, "raw");
        ok(&["vdi", "detach", name]);
    }
    // thinsr's own export round-trips through a stream.
    ok(&["export", "from-raw", "-o", "/tmp/mine.vhd"]);
    import_stdin("/tmp/mine.vhd", "mine", &[]);
    let dev = attach("mine", true);
    compare(&dev, src, "raw");
    ok(&["vdi", "detach", "mine"]);

    // Failures leave no VDI and no LV.
    let before = state();
    let vdis = json(&["vdi", "list"]).as_array().unwrap().len();
    let bytes = std::fs::read("/tmp/src.qcow2").unwrap();
    std::fs::write("/tmp/cut.qcow2", &bytes[..bytes.len() / 2]).unwrap();
    let run = thinsr_cmd(&["--json", "vdi", "import", "-", "--name", "cut"])
        .stdin(Stdio::from(File::open("/tmp/cut.qcow2").unwrap()))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(err["code"], "IMAGE_UNREADABLE", "{err}");
    fails(
        &["vdi", "import", "/tmp/nothing.qcow2", "--name", "x"],
        "IMAGE_UNREADABLE",
    );
    let run = thinsr_cmd(&["--json", "vdi", "import", "-", "--name", "x"])
        .stdin(Stdio::from(File::open("/tmp/src.raw").unwrap()))
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2), "a raw stream without --size");
    let run = thinsr_cmd(&[
        "--json", "vdi", "import", "-", "--name", "x", "--size", "100M",
    ])
    .stdin(Stdio::from(File::open("/tmp/src.raw").unwrap()))
    .output()
    .unwrap();
    assert_eq!(
        run.status.code(),
        Some(2),
        "a raw stream longer than --size"
    );
    assert_eq!(state(), before);
    assert_eq!(json(&["vdi", "list"]).as_array().unwrap().len(), vdis);

    // A crash in the middle leaves a VDI marked incomplete: not attachable, found by
    // sr check, removed by --repair --yes.
    crash_at(
        "import.after-write",
        &["vdi", "import", "/tmp/src.qcow2", "--name", "half"],
    );
    fails(&["vdi", "attach", "half"], "VDI_INCOMPLETE");
    let run = thinsr(&["--json", "sr", "check", "local"]);
    assert_eq!(run.code, 1, "findings make sr check exit 1");
    let report = run.json();
    let kinds: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["incomplete_import"], "{report}");
    ok(&["sr", "check", "local", "--repair", "--yes"]);
    assert_eq!(state(), before);
    assert_eq!(json(&["vdi", "list"]).as_array().unwrap().len(), vdis);
}

#[test]
fn crashes_during_export_leave_what_detach_and_destroy_clear() {
    vm();
    owned_sr();
    ok(&["vdi", "create", "d", "--size", "64M"]);
    let dev = attach("d", false);
    write_at(&dev, MIB, &noise(MIB as usize, 1));
    ok(&["vdi", "detach", "d"]);
    let before = state();
    // Detached: the crash leaves it attached read-only, which detach undoes.
    crash_at("export.after-attach", &["export", "d", "-o", "/tmp/x.raw"]);
    assert_eq!(json(&["vdi", "show", "d"])["attached"], true);
    ok(&["vdi", "detach", "d"]);
    assert_eq!(state(), before);
    // Live: the crash leaves the temporary snapshot, an ordinary VDI the admin destroys.
    attach("d", false);
    let attached = state();
    crash_at(
        "export.after-snapshot",
        &["export", "d", "-o", "/tmp/y.raw"],
    );
    let list = json(&["vdi", "list"]);
    let snap = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"].as_str().unwrap().starts_with("export of "))
        .expect("the temporary snapshot is listed");
    ok(&["-y", "vdi", "destroy", snap["uuid"].as_str().unwrap()]);
    assert_eq!(state(), attached);
    let report = json(&["sr", "check", "local"]);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0, "{report}");
    ok(&["vdi", "detach", "d"]);
}
