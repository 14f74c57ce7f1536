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

/// Medians of `n` runs each of `ours(i)` and `bare(i)`, run in turn: what disturbs the
/// machine for a while falls on both sides, and an outlier on neither.
fn paired_medians(
    n: usize,
    ours: &mut dyn FnMut(usize),
    bare: &mut dyn FnMut(usize),
) -> (f64, f64) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..n {
        a.push(timed(|| ours(i)));
        b.push(timed(|| bare(i)));
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(a), median(b))
}

struct Row {
    what: String,
    thinsr: String,
    bare: String,
    ratio: String,
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

    export_rows(&mut rows);
    cache_rows(&mut rows);
    burst_rows(&mut rows);
    origin_rows(&mut rows);
    cbt_rows(&mut rows);
    zeroing_rows(&mut rows);

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
    print_rows(&rows);
    println!("\n{:<60} {:>14}", "lvm invocations per command", "calls");
    for (what, n) in calls {
        println!("{what:<60} {n:>14}");
    }
}

/// `vdi list`, `vdi show` and `sr show` of one SR as it grows to 10, 200 and 1,000 VDIs,
/// against a bare `lvs` in the same run (`cargo xtask bench bench_scale`).
#[test]
fn bench_scale() {
    vm();
    let scale = scale_rows();
    println!(
        "\nthinsr scale benchmark (one VM run, TCG, kernel {})",
        sh(&["uname", "-r"]).trim()
    );
    print_scale(&scale);
}

/// The figures of one scale step.
struct Step {
    vdis: usize,
    /// (what, thinsr seconds, bare seconds)
    times: Vec<(&'static str, f64, f64)>,
    calls: Vec<(&'static str, u32)>,
    meta: Cost,
    /// ioctls of one `vdi list` (thinsr's and its lvm call's), and how many failed.
    ioctls: (usize, usize),
}

const SCALE_SR: &str = "scale";

/// An SR grown to 10, 200 and 1,000 VDIs, a quarter of them snapshots, measured at each
/// step against the bare lvm commands, in the same run. The VDIs are bare LVs carrying
/// thinsr's tags, made through one `lvm` shell (as fast as LVM makes them) and adopted by
/// `sr check --repair`: making 1,000 through thinsr would measure nothing more, in an hour.
fn scale_rows() -> Vec<Step> {
    ok(&["sr", "create", DISKS[2], DISKS[3], "--name", SCALE_SR]);
    let sr_uuid = json(&["sr", "show", SCALE_SR])["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut made = 0;
    let mut steps = Vec::new();
    for n in [10, 200, 1000] {
        grow(&sr_uuid, &mut made, n);
        steps.push(measure(n));
    }
    steps
}

fn grow(sr_uuid: &str, made: &mut usize, n: usize) {
    let mut script = String::new();
    while *made < n {
        let i = *made;
        let tags = format!(
            "--setactivationskip y --addtag thinsr_sr={sr_uuid} --addtag thinsr_vdi={}",
            uuid::Uuid::new_v4()
        );
        if i % 4 == 3 {
            script += &format!(
                "lvcreate -q -y -n v{i} {tags} -p r -s {SCALE_SR}/v{}\n",
                i - 1
            );
        } else {
            script += &format!("lvcreate -q -y -n v{i} {tags} -V 64m -T {SCALE_SR}/thinsr_pool\n");
        }
        *made += 1;
    }
    let mut lvm = std::process::Command::new("lvm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    lvm.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(lvm.wait().unwrap().success());
    let _ = thinsr(&["sr", "check", SCALE_SR, "--repair"]);
    let listed = json(&["vdi", "list", "--sr", SCALE_SR]);
    // The adopted LVs, and what the earlier steps' measurements made.
    let listed = listed.as_array().unwrap().len();
    assert!(listed >= n, "{listed} VDIs after adoption, {n} made");
}

fn measure(n: usize) -> Step {
    let runs = 5;
    let lvs = || {
        sh(&["lvm", "lvs", "--reportformat", "json", SCALE_SR]);
    };
    let mut times = Vec::new();
    let mut timed_pair = |what, ours: &mut dyn FnMut(usize), bare: &mut dyn FnMut(usize)| {
        let (t, b) = paired_medians(runs, &mut *ours, &mut *bare);
        times.push((what, t, b));
    };
    timed_pair(
        "vdi list --json / lvs --reportformat json",
        &mut |_| {
            ok(&["--json", "vdi", "list", "--sr", SCALE_SR]);
        },
        &mut |_| lvs(),
    );
    timed_pair(
        "sr show --json / lvs --reportformat json",
        &mut |_| {
            ok(&["--json", "sr", "show", SCALE_SR]);
        },
        &mut |_| lvs(),
    );
    timed_pair(
        "vdi show --json / lvs --reportformat json",
        &mut |_| {
            ok(&["--json", "vdi", "show", "v5"]);
        },
        &mut |_| lvs(),
    );
    // The bare commands as thinsr runs them (less its `--config`).
    let lvcreate = |args: &[&str]| {
        let mut all = vec!["lvm", "lvcreate", "-q", "-y"];
        all.extend_from_slice(args);
        sh(&all);
    };
    let bare_create = |i: usize| {
        let name = format!("b{n}_{i}");
        lvcreate(&[
            "-n",
            &name,
            "--setactivationskip",
            "y",
            "--addtag",
            "bench",
            "-V",
            "64m",
            "-T",
            "scale/thinsr_pool",
        ]);
    };
    if n != 200 {
        timed_pair(
            "vdi create / lvcreate -V",
            &mut |i| {
                ok(&[
                    "vdi",
                    "create",
                    &format!("c{n}_{i}"),
                    "--size",
                    "64M",
                    "--sr",
                    SCALE_SR,
                ]);
            },
            &mut |i| bare_create(i),
        );
        timed_pair(
            "vdi snapshot / lvcreate -s",
            &mut |i| {
                ok(&[
                    "vdi",
                    "snapshot",
                    &format!("c{n}_{i}"),
                    "--name",
                    &format!("c{n}_{i}s"),
                ]);
            },
            &mut |i| {
                lvcreate(&[
                    "-p",
                    "r",
                    "-n",
                    &format!("b{n}_{i}s"),
                    "-s",
                    &format!("scale/b{n}_{i}"),
                ]);
            },
        );
        timed_pair(
            "vdi clone / lvcreate -s",
            &mut |i| {
                ok(&[
                    "vdi",
                    "clone",
                    &format!("c{n}_{i}"),
                    "--name",
                    &format!("c{n}_{i}c"),
                ]);
            },
            &mut |i| {
                lvcreate(&[
                    "-n",
                    &format!("b{n}_{i}c"),
                    "-s",
                    &format!("scale/b{n}_{i}"),
                ]);
            },
        );
        timed_pair(
            "vdi destroy --yes / lvremove",
            &mut |i| {
                ok(&["vdi", "destroy", "--yes", &format!("c{n}_{i}c")]);
            },
            &mut |i| {
                sh(&["lvm", "lvremove", "-q", "-y", &format!("scale/b{n}_{i}c")]);
            },
        );
    }
    let calls = vec![
        (
            "vdi create",
            lvm_calls(&[
                "vdi",
                "create",
                &format!("k{n}"),
                "--size",
                "64M",
                "--sr",
                SCALE_SR,
            ]),
        ),
        (
            "vdi snapshot",
            lvm_calls(&[
                "vdi",
                "snapshot",
                &format!("k{n}"),
                "--name",
                &format!("k{n}s"),
            ]),
        ),
        (
            "vdi clone",
            lvm_calls(&[
                "vdi",
                "clone",
                &format!("k{n}"),
                "--name",
                &format!("k{n}c"),
            ]),
        ),
        ("vdi list", lvm_calls(&["vdi", "list", "--sr", SCALE_SR])),
        ("vdi show", lvm_calls(&["vdi", "show", "v5"])),
        ("sr show", lvm_calls(&["sr", "show", SCALE_SR])),
        (
            "vdi destroy --yes",
            lvm_calls(&["vdi", "destroy", "--yes", &format!("k{n}c")]),
        ),
    ];
    // A metadata read and write: renaming the description of one VDI.
    let meta = cost(&["vdi", "set-description", "v5", &format!("step {n}")]);
    let vdis = json(&["vdi", "list", "--sr", SCALE_SR])
        .as_array()
        .unwrap()
        .len();
    Step {
        vdis,
        times,
        calls,
        meta,
        ioctls: list_ioctls(),
    }
}

/// The ioctls one `vdi list` makes, its lvm call's included, and how many of them fail
/// (strace, which the test VM carries for this).
fn list_ioctls() -> (usize, usize) {
    let out = "/tmp/list.strace";
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=ioctl", "-o", out, &thinsr_bin()]);
    cmd.args(["--json", "vdi", "list", "--sr", SCALE_SR]);
    assert!(cmd.output().unwrap().status.success());
    let trace = std::fs::read_to_string(out).unwrap();
    let calls: Vec<&str> = trace.lines().filter(|l| l.contains("ioctl(")).collect();
    let failed = calls.iter().filter(|l| l.contains(" = -1 ")).count();
    (calls.len(), failed)
}

fn print_scale(steps: &[Step]) {
    // One line: a label, then a cell per step.
    let row = |what: &str, cell: &dyn Fn(&Step) -> String| {
        let cells: Vec<String> = steps.iter().map(cell).collect();
        println!(
            "{what:<44} {:>22} {:>22} {:>22}",
            cells[0], cells[1], cells[2]
        );
    };
    println!();
    row("scale: thinsr / bare (median of 5, in turn)", &|s| {
        format!("{} VDIs", s.vdis)
    });
    for (what, _, _) in &steps.last().unwrap().times {
        row(what, &|s| match s.times.iter().find(|t| t.0 == *what) {
            Some((_, t, b)) => format!("{t:.2}/{b:.2} s {:.2}x", t / b),
            None => "-".into(),
        });
    }
    for (what, _) in &steps[0].calls {
        row(&format!("lvm calls: {what}"), &|s| {
            s.calls
                .iter()
                .find(|c| c.0 == *what)
                .map(|c| c.1.to_string())
                .unwrap_or_default()
        });
    }
    row("ioctls of one vdi list (failed)", &|s| {
        format!("{} ({})", s.ioctls.0, s.ioctls.1)
    });
    row("metadata size", &|s| {
        format!("{} KiB", s.meta.meta_written_bytes / 1024)
    });
    row("metadata read + write, CPU", &|s| {
        format!("{:.1} ms", s.meta.meta_read_ms + s.meta.meta_write_ms)
    });
    row("thinsr's own CPU for that command", &|s| {
        format!("{:.1} ms", s.meta.own_cpu_ms)
    });
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

/// One bench part on a fresh VM with an SR named `bench`: its rows, then the table.
fn on_bench_sr(rows_of: impl FnOnce(&mut Vec<Row>)) {
    vm();
    ok(&["sr", "create", DISKS[0], DISKS[1], "--name", "bench"]);
    let mut rows = Vec::new();
    rows_of(&mut rows);
    print_rows(&rows);
}

/// `cargo xtask bench bench_origins`: the template clones' read speed alone.
#[test]
fn bench_origins() {
    on_bench_sr(origin_rows);
}

/// `cargo xtask bench bench_burst`: a VM's burst of writes into a fresh pool alone.
#[test]
fn bench_burst() {
    vm();
    let mut rows = Vec::new();
    burst_rows(&mut rows);
    print_rows(&rows);
}

/// `cargo xtask bench bench_cbt`: changed blocks against a full read, alone.
#[test]
fn bench_cbt() {
    on_bench_sr(cbt_rows);
}

/// `cargo xtask bench bench_lazy`: lazy https templates, in one run: the time to a clone's
/// first 16 MiB against the image's size and against fetching it whole, a first
/// sequential read against nbdkit's curl plugin with its cache filter over the same
/// server, and the bytes fetched against the bytes read.
#[test]
fn bench_lazy() {
    on_bench_sr(|rows| lazy_rows(rows, false));
}

/// Images on the test's HTTPS server: 256 MiB and 2 GiB, the first 64 MiB noise (as an
/// image's boot files are), the rest holes. Each measure introduces its own template (a
/// URI of its own, so nothing is on the host before).
fn lazy_rows(rows: &mut Vec<Row>, seq_only: bool) {
    use common::servers::https_serve;
    use std::sync::atomic::Ordering;
    const MIB: u64 = 1 << 20;
    let web_dir = "/srv/web";
    sh(&["mkdir", "-p", web_dir]);
    for (name, size) in [("small.raw", "256M"), ("big.raw", "2G")] {
        let path = format!("{web_dir}/{name}");
        sh(&["truncate", "-s", size, &path]);
        for i in 0..64u64 {
            write_at(&path, i * MIB, &noise(MIB as usize, 500 + i));
        }
    }
    let big_sum = sha256(&format!("{web_dir}/big.raw"));
    let web = https_serve(web_dir);
    let base = format!("https://127.0.0.1:{}", web.port);
    // Introduce, clone, attach, and read the first `mib` MiB in 1 MiB direct reads.
    let first = |name: &str, uri: &str, extra: &[&str], mib: u64| -> (f64, f64, u64) {
        let sent = web.sent.load(Ordering::SeqCst);
        let mut read = 0.0;
        let total = timed(|| {
            let mut args = vec!["template", "introduce", uri, "--name", name];
            args.extend_from_slice(extra);
            ok(&args);
            let c = json(&["vdi", "clone", name, "--name", &format!("{name}-clone")]);
            let dev = ok(&["vdi", "attach", c["uuid"].as_str().unwrap()])
                .trim()
                .to_string();
            read = direct_read(&dev, MIB as usize, mib * MIB);
        });
        (total, read, web.sent.load(Ordering::SeqCst) - sent)
    };
    if seq_only {
        return lazy_seq_rows(rows, &first, &base, &web);
    }
    let (small, _, _) = first("small", &format!("{base}/small.raw"), &[], 16);
    let (big, _, fetched) = first("big", &format!("{base}/big.raw"), &[], 16);
    rows.push(Row {
        what: "introduce to a clone's first 16 MiB: 2 GiB image vs 256 MiB".into(),
        thinsr: format!("{big:.1} s"),
        bare: format!("{small:.1} s"),
        ratio: format!("{:.2}x the time", big / small),
    });
    rows.push(Row {
        what: "  bytes fetched for the 16 MiB read (2 GiB image, with introduce)".into(),
        thinsr: format!("{:.1} MiB", fetched as f64 / MIB as f64),
        bare: "16.0 MiB".into(),
        ratio: format!("{:.3}x read", fetched as f64 / (16 * MIB) as f64),
    });
    let (whole, _, _) = first(
        "whole",
        &format!("{base}/big.raw?whole"),
        &["--sha256", &big_sum],
        16,
    );
    rows.push(Row {
        what: "introduce to first 16 MiB, 2 GiB: lazy vs fetched whole (--sha256)".into(),
        thinsr: format!("{big:.1} s"),
        bare: format!("{whole:.1} s"),
        ratio: format!("{:.1}x faster", whole / big),
    });
    lazy_seq_rows(rows, &first, &base, &web);
}

/// `cargo xtask bench bench_lazy_seq`: the sequential read against nbdkit alone.
#[test]
fn bench_lazy_seq() {
    on_bench_sr(|rows| lazy_rows(rows, true));
}

/// Introduces URI as NAME (with more arguments), clones, attaches and reads its first MiB
/// count: (seconds in all, seconds reading, bytes the server sent).
type First<'a> = dyn Fn(&str, &str, &[&str], u64) -> (f64, f64, u64) + 'a;

/// A first sequential read of 64 MiB through a fresh clone, against nbdkit's curl plugin
/// with its cache filter on a kernel NBD device (nbd-client), in `ROUNDS` alternating
/// rounds.
fn lazy_seq_rows(rows: &mut Vec<Row>, first: &First<'_>, base: &str, web: &common::servers::Https) {
    use std::sync::atomic::Ordering;
    const MIB: u64 = 1 << 20;
    let counts = || {
        (
            web.ranges.lock().unwrap().len(),
            web.connections.load(Ordering::SeqCst),
        )
    };
    // Each round one of thinsr's then one of nbdkit's, over a URL of its own (nothing
    // cached), so that a change in the machine's speed during the run weighs on both alike.
    const ROUNDS: u32 = 3;
    let (mut ours, mut theirs, mut fetched) = (0.0, 0.0, 0);
    let mut each = Vec::new();
    for round in 0..ROUNDS {
        let before = counts();
        let profile = if round == 0 { perf_start() } else { None };
        let name = format!("seq{round}");
        let (_, t, f) = first(&name, &format!("{base}/big.raw?{name}"), &[], 64);
        perf_report(profile);
        let mid = counts();
        let (sock, pidfile) = (
            &format!("/tmp/nbdkit{round}.sock"),
            &format!("/tmp/nbdkit{round}.pid"),
        );
        sh(&[
            "nbdkit",
            "-U",
            sock,
            "-P",
            pidfile,
            "--filter=cache",
            "curl",
            &format!("url={base}/big.raw?nbdkit{round}"),
        ]);
        sh(&[
            "nbd-client",
            "-u",
            sock,
            "/dev/nbd15",
            "-b",
            "512",
            "-N",
            "",
        ]);
        let profile = if round == 0 { perf_start() } else { None };
        let n = direct_read("/dev/nbd15", MIB as usize, 64 * MIB);
        perf_report(profile);
        sh(&["nbd-client", "-d", "/dev/nbd15"]);
        let pid = std::fs::read_to_string(pidfile).unwrap();
        sh(&["kill", pid.trim()]);
        let after = counts();
        println!(
            "round {round}: thinsr {t:.1} s ({} requests over {} connections), nbdkit {n:.1} s ({} requests over {} connections)",
            mid.0 - before.0,
            mid.1 - before.1,
            after.0 - mid.0,
            after.1 - mid.1
        );
        each.push(format!("{:.2}x", n / t));
        ours += t;
        theirs += n;
        fetched = f;
    }
    println!("rounds: {}", each.join(", "));
    let (ours, theirs) = (ours / f64::from(ROUNDS), theirs / f64::from(ROUNDS));
    rows.push(Row {
        what: format!(
            "first sequential read, 64 MiB ({ROUNDS} rounds): thinsr clone vs nbdkit curl+cache"
        ),
        thinsr: format!("{:.1} MiB/s", 64.0 / ours),
        bare: format!("{:.1} MiB/s", 64.0 / theirs),
        ratio: format!("{:.2}x their speed", theirs / ours),
    });
    rows.push(Row {
        what: "  bytes fetched for the 64 MiB sequential read".into(),
        thinsr: format!("{:.1} MiB", fetched as f64 / MIB as f64),
        bare: "64.0 MiB".into(),
        ratio: format!("{:.3}x read", fetched as f64 / (64 * MIB) as f64),
    });
}

/// `cargo xtask bench bench_replicate`: a replica kept current by incremental streams
/// against sending the whole disk, in one run.
#[test]
fn bench_replicate() {
    vm();
    ok(&["sr", "create", DISKS[0], DISKS[1], "--name", "bench"]);
    ok(&["sr", "create", DISKS[2], DISKS[3], "--name", "dr"]);
    let mut rows = Vec::new();
    replicate_rows(&mut rows);
    print_rows(&rows);
}

/// A 3 GiB VDI written whole, snapshotted;
/// a 4 KiB write into every hundredth 64 KiB block (1 % of the disk changed); snapshotted
/// again. `vdi send | vdi receive` of the first snapshot whole into another SR, against the
/// same pipe of the second relative to the first: the bytes each carried and the time; then
/// LINBIT's thin_send | thin_recv (built by `cargo xtask bench`) of the same two snapshots
/// into a thin LV of dr's pool, which has room for both copies. Caches are dropped before
/// each pipe.
fn replicate_rows(rows: &mut Vec<Row>) {
    use std::os::unix::fs::FileExt;
    const K: u64 = 64 << 10;
    const SIZE: u64 = 3 << 30;
    ok(&["pool", "extend", "bench", "+4G"]);
    ok(&["pool", "extend", "dr", "7G"]);
    ok(&["vdi", "create", "rep", "--size", "3G", "--sr", "bench"]);
    let dev = ok(&["vdi", "attach", "bench/rep"]).trim().to_string();
    sh(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={dev}"),
        "bs=4M",
        &format!("count={}", SIZE >> 22),
        "oflag=direct",
        "status=none",
    ]);
    let a = json(&["vdi", "snapshot", "bench/rep", "--name", "rep-a"])["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let f = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
    let piece = noise(4096, 78);
    let mut n = 0u64;
    for blk in (0..SIZE / K).step_by(100) {
        f.write_all_at(&piece, blk * K + 8192).unwrap();
        n += 1;
    }
    f.sync_all().unwrap();
    drop(f);
    let b = json(&["vdi", "snapshot", "bench/rep", "--name", "rep-b"])["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let bin = thinsr_bin();
    let pipe = |send: String| -> (f64, u64) {
        let report = "/tmp/send.json";
        let script = format!(
            "{bin} --json --quiet vdi send {send} 2>{report} | {bin} --json --quiet vdi receive --sr dr >/dev/null"
        );
        let secs = timed(|| {
            sh(&["sh", "-c", &script]);
        });
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
        (secs, r["written"].as_u64().unwrap())
    };
    drop_caches();
    let (full, full_bytes) = pipe(a.clone());
    drop_caches();
    let (inc, inc_bytes) = pipe(format!("{b} --base {a}"));
    assert!(inc_bytes >= n * K, "{inc_bytes} for {n} blocks");
    rows.push(Row {
        what: format!("send|receive: 1 % changed ({n} blocks of 3 GiB) vs whole"),
        thinsr: format!("{inc:.1} s"),
        bare: format!("{full:.1} s"),
        ratio: format!("{:.0}x faster", full / inc),
    });
    // LINBIT's thin_send | thin_recv on the same two snapshots, into an LV of dr's pool.
    let linbit = concat!(env!("CARGO_MANIFEST_DIR"), "/target/linbit/thin_send_recv");
    let lv = |uuid: &str| {
        json(&["vdi", "show", uuid])["lv"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (la, lb) = (format!("bench/{}", lv(&a)), format!("bench/{}", lv(&b)));
    // thin_send of a whole volume reads it where it is and never activates it: the older
    // snapshot is made active for that. The newer one stays as thinsr found it (thin
    // snapshots skip activation), so thin_send's incremental activates and deactivates it
    // itself, as thinsr's send does, inside the time measured.
    sh(&["lvm", "lvchange", "-ay", "-K", &la]);
    sh(&["mkdir", "-p", "/var/run"]); // its lock file's place
    print_rows(rows);
    sh(&[
        "lvm",
        "lvcreate",
        "-y",
        "-n",
        "linbit",
        "-V",
        "3g",
        "-T",
        "dr/thinsr_pool",
    ]);
    let theirs = |send: &str| {
        drop_caches();
        timed(|| {
            sh(&[
                "sh",
                "-c",
                &format!("{linbit} --send {send} | {linbit} --receive dr/linbit"),
            ]);
        })
    };
    let their_full = theirs(&la);
    let their_inc = theirs(&format!("{la} {lb}"));
    rows.push(Row {
        what: "send|receive, 1 % changed: thinsr vs LINBIT thin_send|thin_recv".into(),
        thinsr: format!("{inc:.1} s"),
        bare: format!("{their_inc:.1} s"),
        ratio: format!("{:.2}x their speed", their_inc / inc),
    });
    rows.push(Row {
        what: "send|receive, whole 3 GiB: thinsr vs LINBIT".into(),
        thinsr: format!("{full:.1} s"),
        bare: format!("{their_full:.1} s"),
        ratio: format!("{:.2}x their speed", their_full / full),
    });
    rows.push(Row {
        what: "  bytes on the wire: incremental vs whole".into(),
        thinsr: format!("{:.0} MiB", inc_bytes as f64 / (1 << 20) as f64),
        bare: format!("{:.0} MiB", full_bytes as f64 / (1 << 20) as f64),
        ratio: format!("{:.3}x changed bytes", inc_bytes as f64 / (n * K) as f64),
    });
}

/// `cargo xtask bench bench_zeroing`: what zeroing new blocks costs, alone.
#[test]
fn bench_zeroing() {
    on_bench_sr(zeroing_rows);
}

/// `cargo xtask bench bench_nbd`: an image written over thinsr's NBD export, alone.
#[test]
fn bench_nbd() {
    on_bench_sr(nbd_rows);
}

/// Writing a disk into thinsr over NBD, as a migration's copy does: a 1 GiB raw image with
/// 25 % data (4 MiB of noise every 16 MiB), `qemu-img convert -n` into `vdi serve
/// --writable` (every byte crosses the socket; zeros come as WRITE_ZEROES and unmap), against
/// `qemu-img convert -n --target-is-zero` into a thin LV of the same pool made by hand.
/// Reports the time ratio and the bytes each destination allocated.
fn nbd_rows(rows: &mut Vec<Row>) {
    use std::io::{BufRead, BufReader};
    const MIB: u64 = 1 << 20;
    let image = "/tmp/nbd-src.raw";
    let f = std::fs::File::create(image).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    for i in 0..64u64 {
        sh(&[
            "dd",
            "if=/dev/urandom",
            &format!("of={image}"),
            "bs=4M",
            "count=1",
            &format!("seek={}", i * 4),
            "conv=notrunc",
            "status=none",
        ]);
    }
    // By hand: a thin LV in the same pool, qemu-img told it reads zeros already.
    sh(&[
        "lvm",
        "lvcreate",
        "-y",
        "-n",
        "nbdref",
        "-V",
        "1g",
        "-T",
        "bench/thinsr_pool",
    ]);
    let bare = timed(|| {
        sh(&[
            "qemu-img",
            "convert",
            "-n",
            "--target-is-zero",
            "-t",
            "none",
            "-f",
            "raw",
            "-O",
            "raw",
            image,
            "/dev/bench/nbdref",
        ]);
    });
    let lvs = sh(&[
        "lvm",
        "lvs",
        "--noheadings",
        "-o",
        "data_percent",
        "bench/nbdref",
    ]);
    let bare_used = lvs.trim().parse::<f64>().unwrap() / 100.0 * (1u64 << 30) as f64;
    // A reference for what any NBD server costs here: qemu-nbd over the same LV, direct
    // I/O, the same convert (only the data crosses).
    let mut qemu_nbd = std::process::Command::new(if dom0() {
        "/usr/lib64/qemu-dp/bin/qemu-nbd"
    } else {
        "qemu-nbd"
    })
    .args([
        "-k",
        "/tmp/ref.sock",
        "-f",
        "raw",
        "--cache=none",
        "--aio=threads",
        "-e",
        "8",
        "/dev/bench/nbdref",
    ])
    .spawn()
    .unwrap();
    while !std::path::Path::new("/tmp/ref.sock").exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let reference = timed(|| {
        sh(&[
            "qemu-img",
            "convert",
            "-n",
            "--target-is-zero",
            "-f",
            "raw",
            "-O",
            "raw",
            image,
            "nbd+unix:///?socket=/tmp/ref.sock",
        ]);
    });
    qemu_nbd.kill().unwrap();
    qemu_nbd.wait().unwrap();
    sh(&["lvm", "lvremove", "-y", "bench/nbdref"]);
    // thinsr: the same image into a VDI over its writable NBD export.
    ok(&["vdi", "create", "nbddest", "--size", "1G", "--sr", "bench"]);
    let mut child = thinsr_cmd(&[
        "--json",
        "vdi",
        "serve",
        "nbddest",
        "--sr",
        "bench",
        "--writable",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let uri = ready["uri"].as_str().unwrap().to_string();
    let ours = timed(|| {
        sh(&[
            "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", image, &uri,
        ]);
    });
    // The same told the destination reads zeros (a new VDI does): only the data crosses.
    let ours_data = timed(|| {
        sh(&[
            "qemu-img",
            "convert",
            "-n",
            "--target-is-zero",
            "-f",
            "raw",
            "-O",
            "raw",
            image,
            &uri,
        ]);
    });
    sh(&["kill", "-TERM", &child.id().to_string()]);
    assert!(child.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    let end: serde_json::Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    let sent = end["bytes_written"].as_u64().unwrap();
    let used = json(&["vdi", "show", "nbddest", "--sr", "bench"])["physical_utilisation"]
        .as_u64()
        .unwrap();
    ok(&["--yes", "vdi", "destroy", "nbddest", "--sr", "bench"]);
    std::fs::remove_file(image).unwrap();
    rows.push(Row {
        what: "1 GiB image, 25 % data, written over NBD (vdi serve --writable) vs qemu-img into a thin LV".into(),
        thinsr: format!("{:.1} s", ours),
        bare: format!("{:.1} s", bare),
        ratio: format!("{:.2}x the speed", bare / ours),
    });
    rows.push(Row {
        what: "  the same with --target-is-zero (only the data crosses the socket)".into(),
        thinsr: format!("{:.1} s", ours_data),
        bare: format!("{:.1} s", bare),
        ratio: format!("{:.2}x the speed", bare / ours_data),
    });
    rows.push(Row {
        what: "  qemu-nbd as the server instead (reference: only the data crosses)".into(),
        thinsr: format!("{:.1} s", reference),
        bare: format!("{:.1} s", bare),
        ratio: format!("{:.2}x the speed", bare / reference),
    });
    rows.push(Row {
        what: "  bytes the two converts sent as WRITE data (the rest as WRITE_ZEROES)".into(),
        thinsr: format!("{:.0} MiB", sent as f64 / MIB as f64),
        bare: "-".into(),
        ratio: "-".into(),
    });
    rows.push(Row {
        what: "  bytes the destination allocated for its 256 MiB of data".into(),
        thinsr: format!("{:.0} MiB", used as f64 / MIB as f64),
        bare: format!("{:.0} MiB", bare_used / MIB as f64),
        ratio: format!("{:.2}x", used as f64 / bare_used),
    });
}

/// Seconds to write `count` O_DIRECT writes of `bs` bytes, one every `stride` bytes, into
/// a new VDI `name` of the bench SR (every write lands in blocks the pool provisions now).
fn first_writes(name: &str, bs: usize, stride: u64, count: u64) -> f64 {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let size = format!("{}", stride * count);
    ok(&["vdi", "create", name, "--size", &size, "--sr", "bench"]);
    let dev = ok(&["vdi", "attach", name, "--sr", "bench"])
        .trim()
        .to_string();
    let f = std::fs::File::options()
        .write(true)
        .custom_flags(0o40000) // O_DIRECT
        .open(&dev)
        .unwrap();
    let mut buf = thinsr::aligned::AlignedBuf::zeroed(bs);
    buf.as_mut_slice().fill(0x5a);
    let secs = timed(|| {
        for i in 0..count {
            f.write_all_at(buf.as_mut_slice(), i * stride).unwrap();
        }
        f.sync_all().unwrap();
    });
    drop(f);
    ok(&["vdi", "detach", name, "--sr", "bench"]);
    ok(&["--yes", "vdi", "destroy", name, "--sr", "bench"]);
    secs
}

/// What isolation costs: the pool zeroes each block it provisions unless the write fills
/// it. First 4 KiB writes, one into each new 64 KiB block (the worst case: 60 KiB of zeros
/// per write), and first 1 MiB writes (whole blocks: nothing to zero), with the pool's
/// zeroing on (thinsr's pools) against off (`lvchange --zero n`, what thinsr refuses).
fn zeroing_rows(rows: &mut Vec<Row>) {
    const K64: u64 = 64 << 10;
    const MIB: u64 = 1 << 20;
    let pool = "bench/thinsr_pool";
    let measure = |zero: &str| {
        sh(&["lvm", "lvchange", "--zero", zero, pool]);
        let small = first_writes(&format!("z{zero}4k"), 4096, K64, 4096);
        let large = first_writes(&format!("z{zero}1m"), MIB as usize, MIB, 512);
        (small, large)
    };
    let (off_small, off_large) = measure("n");
    let (on_small, on_large) = measure("y");
    rows.push(Row {
        what: "first 4 KiB writes into new 64 KiB blocks (4096, direct): zeroing on vs off".into(),
        thinsr: format!("{:.0} writes/s", 4096.0 / on_small),
        bare: format!("{:.0} writes/s", 4096.0 / off_small),
        ratio: format!("{:.2}x the time", on_small / off_small),
    });
    rows.push(Row {
        what: "first 1 MiB writes (512 MiB, direct): zeroing on vs off".into(),
        thinsr: format!("{:.0} MiB/s", 512.0 / on_large),
        bare: format!("{:.0} MiB/s", 512.0 / off_large),
        ratio: format!("{:.2}x the time", on_large / off_large),
    });
}

/// What a delta backup reads first: `vdi changed-blocks` (xapi's list_changed_blocks)
/// between two snapshots of a 16 GiB VDI with 1 % of its 64 KiB blocks changed in between
/// (a 4 KiB write into every hundredth block, over the whole disk), against a full read of
/// the newer snapshot (4 MiB direct reads), what a backup without CBT does. The VDI holds
/// 1 GiB of data besides. Then the same 2,622 changed blocks in a 64 GiB VDI holding 4 GiB
/// (four times the mappings): the query's cost should follow the change, not the disk.
fn cbt_rows(rows: &mut Vec<Row>) {
    // Room for 5 GiB of data in the pool (the VG has 8 GiB).
    ok(&["pool", "extend", "bench", "+4G"]);
    let (small, n, blocks) = cbt_case("cbt", 16, 1);
    let dev = ok(&["vdi", "attach", "bench/cbt-b", "--read-only"])
        .trim()
        .to_string();
    let full = direct_read(&dev, 4 << 20, 16 << 30);
    ok(&["vdi", "detach", "bench/cbt-b"]);
    rows.push(Row {
        what: format!("changed blocks, 16 GiB VDI, {n} of {blocks} blocks changed, vs full read"),
        thinsr: format!("{small:.2} s"),
        bare: format!("{full:.1} s"),
        ratio: format!("{:.0}x faster", full / small),
    });
    let (large, n64, _) = cbt_case("cbt64", 64, 4);
    assert_eq!(n64, n);
    rows.push(Row {
        what: format!(
            "changed blocks, {n} changed: 64 GiB VDI with 4 GiB of data vs 16 GiB with 1 GiB"
        ),
        thinsr: format!("{large:.2} s"),
        bare: format!("{small:.2} s"),
        ratio: format!("{:.2}x the time", large / small),
    });
}

/// A VDI `name` of `gib` GiB holding `data_gib` GiB, snapshotted as NAME-a; a 4 KiB write
/// into every hundredth 64 KiB block of its first 16 GiB; snapshotted as NAME-b. Returns
/// the mean seconds of three `vdi changed-blocks NAME-a NAME-b` (each answer checked), the
/// blocks changed and the blocks of 16 GiB.
fn cbt_case(name: &str, gib: u64, data_gib: u64) -> (f64, u64, u64) {
    use std::os::unix::fs::FileExt;
    const K: u64 = 64 << 10;
    let span: u64 = 16 << 30;
    ok(&[
        "vdi",
        "create",
        name,
        "--size",
        &format!("{gib}G"),
        "--sr",
        "bench",
    ]);
    let dev = ok(&["vdi", "attach", name, "--sr", "bench"])
        .trim()
        .to_string();
    sh(&[
        "dd",
        "if=/dev/zero",
        &format!("of={dev}"),
        "bs=4M",
        &format!("count={}", data_gib * 256),
        "oflag=direct",
    ]);
    ok(&["vdi", "detach", name, "--sr", "bench"]);
    let (a, b) = (format!("{name}-a"), format!("{name}-b"));
    ok(&["vdi", "snapshot", name, "--name", &a, "--sr", "bench"]);
    let dev = ok(&["vdi", "attach", name, "--sr", "bench"])
        .trim()
        .to_string();
    let f = std::fs::OpenOptions::new().write(true).open(&dev).unwrap();
    let blocks = span / K;
    let piece = noise(4096, 77);
    let mut n = 0u64;
    for blk in (0..blocks).step_by(100) {
        f.write_all_at(&piece, blk * K + 8192).unwrap();
        n += 1;
    }
    f.sync_all().unwrap();
    drop(f);
    ok(&["vdi", "detach", name, "--sr", "bench"]);
    ok(&["vdi", "snapshot", name, "--name", &b, "--sr", "bench"]);
    let secs = mean(3, |_| {
        let out = ok(&[
            "--json",
            "vdi",
            "changed-blocks",
            &format!("bench/{a}"),
            &format!("bench/{b}"),
        ]);
        let c: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(c["changed"].as_u64(), Some(n * K), "{c}");
    });
    (secs, n, blocks)
}

/// 2.5 GiB written at full speed (4 MiB direct writes) into a thin VDI of a fresh owned SR
/// on two 4 GiB disks, grown by `pool watch` as it fills, against the same write into the
/// same SR made again with its pool already 4 GiB. On disks 2 and 3, which it frees.
fn burst_rows(rows: &mut Vec<Row>) {
    let run = |pregrow: bool| -> Burst {
        ok(&["sr", "create", DISKS[2], DISKS[3], "--name", "burst"]);
        if pregrow {
            ok(&["pool", "extend", "burst", "4G"]);
        }
        let watcher = Watcher::start("burst");
        ok(&["vdi", "create", "b", "--size", "3G", "--sr", "burst"]);
        let dev = ok(&["vdi", "attach", "b", "--sr", "burst"])
            .trim()
            .to_string();
        let b = burst_write(&dev, 2560, 3, |_| {});
        ok(&["vdi", "detach", "b", "--sr", "burst"]);
        drop(watcher);
        ok(&["sr", "destroy", "burst", "--yes"]);
        b
    };
    let grown = run(true);
    let fresh = run(false);
    let (f, g) = (fresh.total.as_secs_f64(), grown.total.as_secs_f64());
    rows.push(Row {
        what: "burst 2.5 GiB direct writes: fresh 2 GiB pool vs pre-grown".into(),
        thinsr: format!("{f:.1} s"),
        bare: format!("{g:.1} s"),
        ratio: format!("{:.2}x the time", f / g),
    });
    rows.push(Row {
        what: "  longest single 4 MiB write in that burst".into(),
        thinsr: format!("{:.0} ms", fresh.longest.as_secs_f64() * 1000.0),
        bare: format!("{:.0} ms", grown.longest.as_secs_f64() * 1000.0),
        ratio: String::new(),
    });
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<60} {:>14} {:>14} {:>14}",
        "measure", "thinsr", "bare", "ratio"
    );
    for r in rows {
        println!(
            "{:<60} {:>14} {:>14} {:>14}",
            r.what, r.thinsr, r.bare, r.ratio
        );
    }
}

/// Seconds to read `total` bytes of `dev` in `bs` requests, one at a time, with O_DIRECT
/// (as a VM reads its disk), the page cache dropped first.
fn direct_read(dev: &str, bs: usize, total: u64) -> f64 {
    direct_read_at(dev, bs, (0..total / bs as u64).map(|i| i * bs as u64))
}

/// As `direct_read`, of `bs` bytes at each of `offsets`.
fn direct_read_at(dev: &str, bs: usize, offsets: impl Iterator<Item = u64>) -> f64 {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    drop_caches();
    let f = std::fs::File::options()
        .read(true)
        .custom_flags(0o40000) // O_DIRECT
        .open(dev)
        .unwrap();
    let mut buf = thinsr::aligned::AlignedBuf::zeroed(bs);
    timed(|| {
        for at in offsets {
            f.read_exact_at(buf.as_mut_slice(), at).unwrap();
        }
    })
}

/// Template clones against a thin VDI holding the same bytes: a raw template (a loop device
/// in the kernel) and a qcow2 template once warmed (its local copy), both images on ext4 on
/// a disk of their own, as on a host. The ratio is the clone's speed over the thin VDI's.
fn origin_rows(rows: &mut Vec<Row>) {
    const MIB: u64 = 1 << 20;
    let size = 128 * MIB;
    sh(&["mkfs.ext4", "-q", DISKS[2]]);
    sh(&["mkdir", "-p", "/mnt/images"]);
    sh(&["mount", "-t", "ext4", DISKS[2], "/mnt/images"]);
    std::fs::write("/mnt/images/o.raw", noise(size as usize, 9)).unwrap();
    sh(&[
        "qemu-img",
        "convert",
        "-O",
        "qcow2",
        "/mnt/images/o.raw",
        "/mnt/images/o.qcow2",
    ]);
    ok(&["vdi", "import", "/mnt/images/o.raw", "--name", "same-bytes"]);
    ok(&[
        "template",
        "introduce",
        "file:///mnt/images/o.raw",
        "--name",
        "oraw",
    ]);
    ok(&[
        "template",
        "introduce",
        "file:///mnt/images/o.qcow2",
        "--name",
        "oqcow",
        "--cache",
    ]);
    ok(&["template", "warm", "oqcow"]);
    ok(&["vdi", "clone", "oraw", "--name", "raw-clone"]);
    ok(&["vdi", "clone", "oqcow", "--name", "qcow-clone"]);
    let attach = |v: &str| {
        json(&["vdi", "attach", v])["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (thin, raw, qcow) = (
        attach("same-bytes"),
        attach("raw-clone"),
        attach("qcow-clone"),
    );
    for (bs, label, total) in [
        (MIB as usize, "1 MiB", size),
        (64 << 10, "64 KiB", 32 * MIB),
    ] {
        let base = direct_read(&thin, bs, total);
        for (what, dev) in [("raw template", &raw), ("warmed qcow2 template", &qcow)] {
            let t = direct_read(dev, bs, total);
            rows.push(Row {
                what: format!("{label} direct reads: clone of a {what} vs thin VDI"),
                thinsr: format!("{:.0} MiB/s", total as f64 / MIB as f64 / t),
                bare: format!("{:.0} MiB/s", total as f64 / MIB as f64 / base),
                ratio: format!("{:.2}x its speed", base / t),
            });
        }
    }
    for v in ["same-bytes", "raw-clone", "qcow-clone"] {
        ok(&["vdi", "detach", v]);
    }
}

#[test]
fn bench_mirror() {
    on_bench_sr(mirror_rows);
}

/// A relay like xapi's nbd proxy: accepts one connection on `listen` and relays it to
/// `to`; returns the bytes it carried from the client to the server.
fn relay(listen: &str, to: &str) -> std::thread::JoinHandle<u64> {
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    let _ = std::fs::remove_file(listen);
    let l = UnixListener::bind(listen).unwrap();
    let to = to.to_string();
    std::thread::spawn(move || {
        let (mut a, _) = l.accept().unwrap();
        let mut b = UnixStream::connect(&to).unwrap();
        let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut b2, &mut a2);
            let _ = a2.shutdown(std::net::Shutdown::Both);
        });
        let (mut sent, mut buf) = (0u64, vec![0u8; 1 << 20]);
        while let Ok(n) = a.read(&mut buf) {
            if n == 0 || b.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
        }
        let _ = b.shutdown(std::net::Shutdown::Both);
        back.join().unwrap();
        sent
    })
}

/// Mean seconds of `n` 4 KiB O_DIRECT writes at pseudo-random places of `dev` inside its
/// data (4 MiB at every 40 MiB, the first 24), one at a time: a VM rewriting its files.
fn write_latency(dev: &str, n: u64, seed: u64) -> f64 {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let f = std::fs::File::options()
        .write(true)
        .custom_flags(0o40000) // O_DIRECT
        .open(dev)
        .unwrap();
    let buf = thinsr::aligned::AlignedBuf::copy_of(&noise(4096, seed));
    let mut x = seed | 1;
    timed(|| {
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x % 24) * (40 << 20) + (x >> 8) % 1024 * 4096;
            f.write_all_at(buf.as_slice(), at).unwrap();
        }
    }) / n as f64
}

/// Seconds to read the 24 extents of 4 MiB at every 40 MiB of `dev` in 64 KiB O_DIRECT
/// requests, one at a time, the page cache dropped first.
fn read_data(dev: &str) -> f64 {
    let offsets = (0..24u64).flat_map(|i| (0..64u64).map(move |j| i * (40 << 20) + j * (64 << 10)));
    direct_read_at(dev, 64 << 10, offsets)
}

/// The source side of a migration, by `vdi mirror` (the path `Data.mirror` takes): a
/// 1 GiB VDI holding 96 MiB mirrored to a qemu-nbd over a thin LV, through a relay like
/// xapi's proxy, against `dd` of those 96 MiB to the same export through the same relay
/// (the kernel's NBD device, as the mirror uses); the bytes the relay carried against the
/// bytes allocated; a VM's 4 KiB direct writes during the mirror against before it; and
/// reads of the device a VM is given (a linear device of thinsr's over LVM's) against
/// LVM's own device of the same LV.
fn mirror_rows(rows: &mut Vec<Row>) {
    const MIB: u64 = 1 << 20;
    ok(&["vdi", "create", "src", "--size", "1G", "--sr", "bench"]);
    let dev = ok(&["vdi", "attach", "src", "--sr", "bench"])
        .trim()
        .to_string();
    for i in 0..24u64 {
        sh(&[
            "dd",
            "if=/dev/urandom",
            &format!("of={dev}"),
            "bs=4M",
            "count=1",
            &format!("seek={}", i * 10),
            "oflag=direct",
            "status=none",
        ]);
    }
    // Reads: the VM's device against LVM's own of the same LV.
    let lv = json(&["vdi", "show", "src", "--sr", "bench"])["lv"]
        .as_str()
        .unwrap()
        .to_string();
    let lvm_dev = format!("/dev/bench/{lv}");
    // The 96 MiB of data, as a VM reads its files; best of three each, taken in turns.
    let (mut ours_read, mut bare_read) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        ours_read = ours_read.min(read_data(&dev));
        bare_read = bare_read.min(read_data(&lvm_dev));
    }
    let before = write_latency(&dev, 300, 3);

    // The destination: a qemu-nbd over a thin LV of the same pool, direct I/O.
    sh(&[
        "lvm",
        "lvcreate",
        "-y",
        "-n",
        "mdest",
        "-V",
        "1g",
        "-T",
        "bench/thinsr_pool",
    ]);
    let mut server = std::process::Command::new(if dom0() {
        "/usr/lib64/qemu-dp/bin/qemu-nbd"
    } else {
        "qemu-nbd"
    })
    .args([
        "-t",
        "-k",
        "/tmp/mdest.sock",
        "-f",
        "raw",
        "--cache=none",
        "-x",
        "d",
        "/dev/bench/mdest",
    ])
    .spawn()
    .unwrap();
    while !std::path::Path::new("/tmp/mdest.sock").exists() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // dd of the 96 MiB through the kernel's NBD device, over the relay.
    let r = relay("/tmp/relay.sock", "/tmp/mdest.sock");
    let mut s = std::os::unix::net::UnixStream::connect("/tmp/relay.sock").unwrap();
    let n = thinsr::host::nbd_client::negotiate(&mut s, "d").unwrap();
    let fd = std::os::fd::OwnedFd::from(s);
    let index = thinsr::host::nbd_netlink::connect(&thinsr::host::nbd_netlink::Connect {
        socket: &fd,
        size: n.size,
        flags: n.flags,
        timeout_s: 30,
    })
    .unwrap();
    drop(fd);
    let nbd = format!("/dev/nbd{index}");
    let dd = timed(|| {
        for i in 0..24u64 {
            sh(&[
                "dd",
                &format!("if={dev}"),
                &format!("of={nbd}"),
                "bs=1M",
                "count=4",
                &format!("skip={}", i * 40),
                &format!("seek={}", i * 40),
                "iflag=direct",
                "oflag=direct",
                "status=none",
            ]);
        }
        sh(&["sync"]);
    });
    thinsr::host::nbd_netlink::disconnect(index).unwrap();
    let dd_sent = r.join().unwrap();

    let allocated = json(&["vdi", "show", "src", "--sr", "bench"])["physical_utilisation"]
        .as_u64()
        .unwrap();
    // The mirror, the VM writing meanwhile.
    let r = relay("/tmp/relay.sock", "/tmp/mdest.sock");
    let mirror = thinsr_cmd(&[
        "--json",
        "vdi",
        "mirror",
        "src",
        "--sr",
        "bench",
        "nbd+unix:///d?socket=/tmp/relay.sock",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let t = Instant::now();
    let name = std::path::Path::new(&dev)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    while !sh(&["dmsetup", "table", &name]).contains(" mirror ") {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let during = write_latency(&dev, 100, 5);
    let out = mirror.wait_with_output().unwrap();
    let mirrored = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let sent = r.join().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    sh(&["lvm", "lvremove", "-y", "bench/mdest"]);
    ok(&["vdi", "detach", "src", "--sr", "bench"]);
    rows.push(Row {
        what: "mirror a 1 GiB VDI holding 96 MiB (vdi mirror) vs dd of the 96 MiB".into(),
        thinsr: format!("{mirrored:.1} s"),
        bare: format!("{dd:.1} s"),
        ratio: format!("{:.2}x the time", mirrored / dd),
    });
    rows.push(Row {
        what: "  bytes sent (the VM's 400 KiB of writes included) vs allocated".into(),
        thinsr: format!("{:.1} MiB", sent as f64 / MIB as f64),
        bare: format!("{:.1} MiB", allocated as f64 / MIB as f64),
        ratio: format!("{:.2}x", sent as f64 / allocated as f64),
    });
    rows.push(Row {
        what: "  bytes dd sent for the same data (protocol included)".into(),
        thinsr: "-".into(),
        bare: format!("{:.1} MiB", dd_sent as f64 / MIB as f64),
        ratio: "-".into(),
    });
    rows.push(Row {
        what: "a VM's 4 KiB direct write during the mirror vs before it".into(),
        thinsr: format!("{:.2} ms", during * 1e3),
        bare: format!("{:.2} ms", before * 1e3),
        ratio: format!("{:.2}x the latency", during / before),
    });
    rows.push(Row {
        what: "reading the 96 MiB through the VM's device (linear over LVM's) vs LVM's".into(),
        thinsr: format!("{:.1} s", ours_read),
        bare: format!("{:.1} s", bare_read),
        ratio: format!("{:.2}x the speed", bare_read / ours_read),
    });
}

/// `cargo xtask bench bench_nfs`: a clone's first read of a template on NFS, alone.
#[test]
fn bench_nfs() {
    on_bench_sr(nfs_rows);
}

/// A clone's first read of a template on an NFS export (the kernel's nfsd on the loopback,
/// the image on ext4 on a disk of its own), through thinsr's mount: a raw template (a loop
/// device over the file) and a qcow2 one (qemu-nbd over the file), each against `dd`-like
/// O_DIRECT reads of the same file through the same mount, caches dropped before each.
fn nfs_rows(rows: &mut Vec<Row>) {
    const MIB: u64 = 1 << 20;
    let size = 128 * MIB;
    sh(&["mkfs.ext4", "-q", DISKS[2]]);
    sh(&["mkdir", "-p", "/srv/images"]);
    sh(&["mount", "-t", "ext4", DISKS[2], "/srv/images"]);
    std::fs::write("/srv/images/n.raw", noise(size as usize, 11)).unwrap();
    sh(&[
        "qemu-img",
        "convert",
        "-O",
        "qcow2",
        "/srv/images/n.raw",
        "/srv/images/n.qcow2",
    ]);
    common::servers::nfs_serve("/srv/images");
    for (name, file) in [("nraw", "n.raw"), ("nqcow", "n.qcow2")] {
        let uri = format!("nfs://127.0.0.1/srv/images/{file}");
        ok(&["template", "introduce", &uri, "--name", name]);
        ok(&["vdi", "clone", name, "--name", &format!("{name}-clone")]);
    }
    let attach = |v: &str| {
        json(&["vdi", "attach", v])["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (raw, qcow) = (attach("nraw-clone"), attach("nqcow-clone"));
    let mounts = common::servers::share_mounts();
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    let through_mount = format!("{}/n.raw", mounts[0].0);
    for (label, dev) in [("raw", &raw), ("qcow2", &qcow)] {
        let clone = direct_read(dev, MIB as usize, size);
        let dd = direct_read(&through_mount, MIB as usize, size);
        rows.push(Row {
            what: format!("first read of a clone of a {label} template on NFS, 1 MiB"),
            thinsr: format!("{:.0} MiB/s", size as f64 / MIB as f64 / clone),
            bare: format!("{:.0} MiB/s", size as f64 / MIB as f64 / dd),
            ratio: format!("{:.2}x dd's speed", dd / clone),
        });
    }
    ok(&["vdi", "detach", "nraw-clone"]);
    ok(&["vdi", "detach", "nqcow-clone"]);
}

/// With perf in the VM (`THINSR_BENCH_PERF=1 cargo xtask bench PART`): a system-wide
/// profile of what runs until `perf_report`.
fn perf_start() -> Option<std::process::Child> {
    std::path::Path::new("/usr/bin/perf").exists().then(|| {
        std::process::Command::new("/usr/bin/perf")
            .args(["record", "-a", "-F", "499", "-o", "/tmp/perf.data"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    })
}

fn perf_report(child: Option<std::process::Child>) {
    let Some(mut child) = child else { return };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = child.wait();
    for sort in ["comm,dso", "comm,sym"] {
        let out = std::process::Command::new("/usr/bin/perf")
            .args([
                "report",
                "-i",
                "/tmp/perf.data",
                "--stdio",
                "--no-children",
                "--percent-limit",
                "0.7",
                "--sort",
                sort,
            ])
            .output()
            .unwrap();
        println!("{}", String::from_utf8_lossy(&out.stdout));
    }
}
