//! `cargo xtask bench`: thinsr against the bare commands it wraps, measured side by side in
//! one VM run and reported as ratios. Not part of `cargo xtask test`: timings prove nothing
//! on a shared machine; ratios measured together are what to read.

mod common;

use std::time::Instant;

use common::*;

fn timed(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

/// Mean seconds of `n` runs of `f(i)`.
fn mean(n: usize, mut f: impl FnMut(usize)) -> f64 {
    (0..n).map(|i| timed(|| f(i))).sum::<f64>() / n as f64
}

struct Row {
    what: String,
    thinsr: String,
    bare: String,
    ratio: String,
}

fn row(rows: &mut Vec<Row>, what: &str, thinsr: f64, bare: f64, unit: &str) {
    rows.push(Row {
        what: what.into(),
        thinsr: format!("{thinsr:.3} {unit}"),
        bare: format!("{bare:.3} {unit}"),
        ratio: format!("{:.2}x", thinsr / bare),
    });
}

#[test]
fn bench() {
    vm();
    ok(&["sr", "create", DISKS[0], DISKS[1], "--name", "bench"]);
    let mut rows = Vec::new();

    // Preallocation throughput against dd of zeros, on an LV of the same size placed on the
    // same extents (each is removed before the next is made).
    let gib = 2u64;
    let size = format!("{gib}g");
    sh(&[
        "lvm", "lvcreate", "-y", "-Zn", "-Wn", "-n", "ddref", "-L", &size, "bench",
    ]);
    let dd = timed(|| {
        sh(&[
            "dd",
            "if=/dev/zero",
            "of=/dev/bench/ddref",
            "bs=4M",
            "oflag=direct",
            &format!("count={}", gib * 256),
        ]);
    });
    sh(&["lvm", "lvremove", "-y", "bench/ddref"]);
    let pre = timed(|| {
        ok(&[
            "vdi",
            "create",
            "prealloc",
            "--size",
            &size,
            "--preallocate",
        ]);
    });
    let mib = (gib * 1024) as f64;
    rows.push(Row {
        what: format!("preallocate {gib} GiB (whole command) vs dd oflag=direct bs=4M"),
        thinsr: format!("{:.0} MiB/s", mib / pre),
        bare: format!("{:.0} MiB/s", mib / dd),
        ratio: format!("{:.2}x faster", dd / pre),
    });

    // Latency of single operations against the lvm command each wraps (mean of 5).
    let n = 5;
    let t = mean(n, |i| {
        ok(&["vdi", "create", &format!("t{i}"), "--size", "1G"]);
    });
    let b = mean(n, |i| {
        sh(&[
            "lvm",
            "lvcreate",
            "-y",
            "-ky",
            "-V",
            "1g",
            "-T",
            "bench/thinsr_pool",
            "-n",
            &format!("bare{i}"),
        ]);
    });
    row(&mut rows, "vdi create (thin) vs lvcreate -V", t, b, "s");
    let t = mean(n, |i| {
        ok(&["vdi", "snapshot", &format!("t{i}")]);
    });
    let b = mean(n, |i| {
        sh(&[
            "lvm",
            "lvcreate",
            "-y",
            "-s",
            "-n",
            &format!("bare{i}_s"),
            &format!("bench/bare{i}"),
        ]);
    });
    row(&mut rows, "vdi snapshot vs lvcreate -s", t, b, "s");
    let t = mean(n, |_| {
        ok(&["--json", "vdi", "list"]);
    });
    let b = mean(n, |_| {
        sh(&["lvm", "lvs", "--reportformat", "json", "bench"]);
    });
    row(
        &mut rows,
        "vdi list --json (21 VDIs) vs lvs --reportformat json",
        t,
        b,
        "s",
    );
    let t = mean(n, |_| {
        ok(&["--json", "vdi", "show", "t0"]);
    });
    row(
        &mut rows,
        "vdi show --json vs lvs --reportformat json",
        t,
        b,
        "s",
    );
    let t = mean(n, |i| {
        ok(&["vdi", "destroy", "--yes", &format!("t{i}")]);
    });
    let b = mean(n, |i| {
        sh(&["lvm", "lvremove", "-y", &format!("bench/bare{i}")]);
    });
    row(&mut rows, "vdi destroy vs lvremove", t, b, "s");

    export_rows(&mut rows);
    cache_rows(&mut rows);

    // lvm invocations per command: a count that does not drift with load.
    let calls = [
        (
            "vdi create (thin)",
            lvm_calls(&["vdi", "create", "c", "--size", "1G"]),
        ),
        (
            "vdi create --preallocate",
            lvm_calls(&["vdi", "create", "p", "--size", "64M", "--preallocate"]),
        ),
        (
            "vdi snapshot",
            lvm_calls(&["vdi", "snapshot", "c", "--name", "cs"]),
        ),
        (
            "vdi clone",
            lvm_calls(&["vdi", "clone", "c", "--name", "cc"]),
        ),
        ("vdi list", lvm_calls(&["vdi", "list"])),
        ("vdi show", lvm_calls(&["vdi", "show", "c"])),
        ("vdi attach", lvm_calls(&["vdi", "attach", "c"])),
        ("vdi detach", lvm_calls(&["vdi", "detach", "c"])),
        (
            "vdi destroy --yes",
            lvm_calls(&["vdi", "destroy", "--yes", "cc"]),
        ),
    ];

    println!(
        "\nthinsr benchmark (one VM run, TCG, kernel {})",
        sh(&["uname", "-r"]).trim()
    );
    println!(
        "{:<60} {:>14} {:>14} {:>14}",
        "measure", "thinsr", "bare", "ratio"
    );
    for r in &rows {
        println!(
            "{:<60} {:>14} {:>14} {:>14}",
            r.what, r.thinsr, r.bare, r.ratio
        );
    }
    println!("\n{:<60} {:>14}", "lvm invocations per command", "calls");
    for (what, n) in calls {
        println!("{what:<60} {n:>14}");
    }
}

/// Drops the page cache, so that neither side reads what the other (or the writer) cached.
fn drop_caches() {
    sh(&["sync"]);
    std::fs::write("/proc/sys/vm/drop_caches", "3").unwrap();
}

/// Export against `qemu-img convert` of the same LV (activated by LVM), for VDIs with 3, 30
/// and 90 % of their blocks holding data; best of 2 each, caches dropped before every run.
fn export_rows(rows: &mut Vec<Row>) {
    const MIB: u64 = 1 << 20;
    let size = 512 * MIB;
    ok(&["pool", "extend", "bench", "+2G"]);
    let cases: &[(u64, &[&str])] = &[
        (3, &["qcow2", "vhd", "raw"]),
        (30, &["qcow2"]),
        (90, &["qcow2", "vhd"]),
    ];
    for (pct, formats) in cases {
        let name = format!("e{pct}");
        ok(&["vdi", "create", &name, "--size", "512M"]);
        let dev = json(&["vdi", "attach", &name])["path"]
            .as_str()
            .unwrap()
            .to_string();
        let pieces = size / MIB * pct / 100;
        let stride = size / MIB / pieces.max(1);
        for i in 0..pieces {
            write_at(&dev, i * stride * MIB, &noise(MIB as usize, 100 + i));
        }
        ok(&["vdi", "detach", &name]);
        let lv = format!(
            "bench/{}",
            json(&["vdi", "show", &name])["lv"].as_str().unwrap()
        );
        for format in *formats {
            let best = |f: &mut dyn FnMut()| {
                (0..2)
                    .map(|_| {
                        drop_caches();
                        let t = timed(&mut *f);
                        let _ = std::fs::remove_file("/tmp/bench.img");
                        t
                    })
                    .fold(f64::MAX, f64::min)
            };
            let t = best(&mut || {
                ok(&["export", &name, "--format", format, "-o", "/tmp/bench.img"]);
            });
            sh(&["lvm", "lvchange", "-ay", "-K", &lv]);
            let qfmt = if *format == "vhd" { "vpc" } else { format };
            let b = best(&mut || {
                sh(&[
                    "qemu-img",
                    "convert",
                    "-O",
                    qfmt,
                    &format!("/dev/{lv}"),
                    "/tmp/bench.img",
                ]);
            });
            sh(&["lvm", "lvchange", "-an", &lv]);
            rows.push(Row {
                what: format!("export {pct}% of 512 MiB as {format} vs qemu-img convert"),
                thinsr: format!("{t:.2} s"),
                bare: format!("{b:.2} s"),
                ratio: format!("{:.1}x faster", b / t),
            });
        }
    }
}

/// A template behind a slow server (dm-delay adds 20 ms to every read of its device): the
/// first clone's read of 16 MiB fetches it through the cache, a second clone's read of the
/// same region is served locally. Reads go one 64 KiB request at a time, as a VM's boot
/// reads: parallel reads would hide the server's latency.
fn cache_rows(rows: &mut Vec<Row>) {
    const MIB: u64 = 1 << 20;
    std::fs::write("/tmp/slow.raw", noise(64 * MIB as usize, 5)).unwrap();
    dm_on_file("slow", "/tmp/slow.raw", "delay", " 20");
    serve_nbd("/dev/mapper/slow", "raw", 10812, "slow", true);
    ok(&[
        "template",
        "introduce",
        "nbd://127.0.0.1:10812/slow",
        "--name",
        "slow",
        "--cache",
    ]);
    let read = |vm: &str| {
        ok(&["vdi", "clone", "slow", "--name", vm]);
        let dev = json(&["vdi", "attach", vm])["path"]
            .as_str()
            .unwrap()
            .to_string();
        drop_caches();
        // As a booting VM reads: one 64 KiB request at a time, bypassing the page cache.
        let t = timed(|| {
            use std::os::unix::fs::{FileExt, OpenOptionsExt};
            let f = std::fs::File::options()
                .read(true)
                .custom_flags(0o40000) // O_DIRECT
                .open(&dev)
                .unwrap();
            let mut buf = thinsr::aligned::AlignedBuf::zeroed(64 << 10);
            for i in 0..256u64 {
                f.read_exact_at(buf.as_mut_slice(), 16 * MIB + i * (64 << 10))
                    .unwrap();
            }
        });
        ok(&["vdi", "detach", vm]);
        t
    };
    let first = read("vm-a");
    let second = read("vm-b");
    rows.push(Row {
        what: "cached template: 2nd VM's 16 MiB read vs the 1st's (20 ms server)".into(),
        thinsr: format!("{second:.2} s"),
        bare: format!("{first:.2} s"),
        ratio: format!("{:.1}x faster", first / second),
    });
}
