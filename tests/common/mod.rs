//! Helpers for the integration tests. They run inside the test VM (`cargo xtask test`), each
//! test in a fresh VM with four empty 4 GiB disks, /dev/vda to /dev/vdd.
#![allow(dead_code)]

pub mod hooks;
pub mod idl;
pub mod servers;
pub mod xapi;

use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const DISKS: [&str; 4] = ["/dev/vda", "/dev/vdb", "/dev/vdc", "/dev/vdd"];

/// Fails loudly outside the VM rather than running against the host's storage.
pub fn vm() {
    assert!(
        std::env::var("THINSR_VM").is_ok(),
        "integration tests run inside the test VM: use 'cargo xtask test'"
    );
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\nstderr: {}", self.stdout, self.stderr))
    }
}

/// True in the VM's dom0 profile (`cargo xtask test` runs sr, vdi, template, export and
/// pool there too): XCP-ng 8.3's setup, with thinsr's static binary.
pub fn dom0() -> bool {
    std::env::var("THINSR_PROFILE").is_ok_and(|p| p == "dom0")
}

/// The thinsr under test: the static binary in the dom0 profile.
pub fn thinsr_bin() -> String {
    std::env::var("THINSR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_thinsr").to_string())
}

/// A host tool as the tests run it. In the dom0 profile, as an admin there would: qemu's
/// tools from qemu-dp's directory (they are not on PATH), lvm (by any name) with the
/// writable copy of the configuration in /etc/lvm/master (the host's refuses metadata
/// writes).
pub fn host_command(tool: &str) -> Command {
    if dom0() && tool.starts_with("qemu-") {
        return Command::new(format!("/usr/lib64/qemu-dp/bin/{tool}"));
    }
    let mut c = Command::new(tool);
    // lvm by any of its names: dom0's refuses metadata writes with the host's lvm.conf
    // (and exits 0), as XCP-ng's own storage code knows.
    let lvm =
        tool == "lvm" || tool.starts_with("pv") || tool.starts_with("vg") || tool.starts_with("lv");
    if dom0() && lvm {
        c.env("LVM_SYSTEM_DIR", "/etc/lvm/master");
    }
    c
}

pub fn thinsr_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(thinsr_bin());
    c.args(args).stdin(Stdio::null());
    c
}

pub fn thinsr(args: &[&str]) -> Run {
    Run::from(thinsr_cmd(args).output().expect("thinsr runs"))
}

/// Runs thinsr and expects success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let r = thinsr(args);
    assert_eq!(
        r.code, 0,
        "thinsr {args:?} failed:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r.stdout
}

/// Runs `thinsr --json ARGS` and expects success.
pub fn json(args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let r = thinsr(&all);
    assert_eq!(
        r.code, 0,
        "thinsr {all:?} failed:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r.json()
}

/// Runs `thinsr --json ARGS`, expects failure with `code`; checks the xapi error shape.
pub fn fails(args: &[&str], code: &str) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let r = thinsr(&all);
    assert_ne!(
        r.code, 0,
        "thinsr {all:?} should have failed:\n{}",
        r.stdout
    );
    let v = r.json();
    assert_eq!(v["code"], code, "thinsr {all:?}: {v}");
    assert!(
        v["params"].is_array() && v["backtrace"]["error"].is_string(),
        "{v}"
    );
    assert!(
        v["backtrace"]["files"].is_array() && v["backtrace"]["lines"].is_array(),
        "{v}"
    );
    v
}

/// Runs a host tool and returns stdout; panics with its stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let out = host_command(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("tool runs");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit code of a host tool.
pub fn sh_code(args: &[&str]) -> i32 {
    host_command(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("tool runs")
        .status
        .code()
        .unwrap_or(-1)
}

/// sha256 of a device or file.
pub fn sha256(path: &str) -> String {
    sh(&["sha256sum", path])
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Checksums of the regions of a disk that a PV label, VG metadata or a partition table
/// (at either end) would occupy: the first 128 MiB and the last 1 MiB. Hashing a whole
/// 4 GiB disk takes over a minute under TCG.
pub fn fingerprint(path: &str) -> (u32, u32) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    let size = f.seek(SeekFrom::End(0)).unwrap();
    let mut crc = |start: u64, len: u64| {
        f.seek(SeekFrom::Start(start)).unwrap();
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).unwrap();
        crc32fast::hash(&buf)
    };
    (crc(0, 128 << 20), crc(size - (1 << 20), 1 << 20))
}

/// What LVM and device-mapper hold, plus thinsr's registry: equal before and after a
/// command that must change nothing.
pub fn state() -> String {
    let lvs = sh(&[
        "lvm",
        "lvs",
        "-a",
        "--noheadings",
        "-o",
        "vg_name,lv_name,lv_size,lv_attr,lv_tags",
    ]);
    let pvs = sh(&[
        "lvm",
        "pvs",
        "--noheadings",
        "-o",
        "pv_name,vg_name,pv_size",
    ]);
    let dm = Command::new("dmsetup").arg("ls").output().unwrap();
    let reg = std::fs::read_to_string("/etc/thinsr/srs.yaml").unwrap_or_default();
    format!(
        "{lvs}\n{pvs}\n{}\n{reg}",
        String::from_utf8_lossy(&dm.stdout)
    )
}

/// The admin's own volume group on `disk` with a 512 MiB thin pool `vg/pool` made by hand
/// (`extra`: lvcreate options such as `--chunksize 512k`).
pub fn admin_pool(vg: &str, disk: &str, pool: &str, extra: &[&str]) {
    sh(&["lvm", "vgcreate", "-y", vg, disk]);
    let mut args = vec![
        "lvm",
        "lvcreate",
        "-y",
        "--type",
        "thin-pool",
        "-L",
        "512m",
        "-n",
        pool,
    ];
    args.extend_from_slice(extra);
    args.push(vg);
    sh(&args);
}

/// Creates the admin's own LV filled with random data; returns its checksum.
pub fn admin_lv(vg: &str, name: &str, mib: u32) -> String {
    sh(&[
        "lvm",
        "lvcreate",
        "-y",
        "-n",
        name,
        "-L",
        &format!("{mib}m"),
        vg,
    ]);
    let dev = format!("/dev/{vg}/{name}");
    sh(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={dev}"),
        "bs=1M",
        &format!("count={mib}"),
        "conv=fsync",
    ]);
    sha256(&dev)
}

/// Pseudo-random bytes, cheap to make under TCG (xorshift), different for each seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `data` at `offset` of a device and flushes it.
pub fn write_at(path: &str, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(data, offset).unwrap();
    f.sync_all().unwrap();
}

/// Opens a device with O_DIRECT (for writing too with `write`), as a VM's disk does its
/// I/O: buffers, offsets and lengths then go in whole 4 KiB (`thinsr::aligned`). Large I/O
/// through the page cache crawls under TCG.
pub fn open_direct(path: &str, write: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(0o40000) // O_DIRECT
        .open(path)
}

/// Writes `data` at `offset` of a device with O_DIRECT (both in whole 4 KiB) and flushes it.
pub fn write_direct(path: &str, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = open_direct(path, true).unwrap_or_else(|e| panic!("opening {path}: {e}"));
    f.write_all_at(
        thinsr::aligned::AlignedBuf::copy_of(data).as_slice(),
        offset,
    )
    .unwrap();
    f.sync_all().unwrap();
}

/// Reads `len` bytes at `offset` of a device, bypassing nothing but our own process.
pub fn read_at(path: &str, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, offset).unwrap();
    buf
}

/// True when writing to the device fails (the kernel lets a read-only disk be opened for
/// writing, and fails the writes).
pub fn refuses_writes(dev: &str) -> bool {
    use std::os::unix::fs::FileExt;
    match std::fs::OpenOptions::new().write(true).open(dev) {
        Err(_) => true,
        Ok(f) => f
            .write_all_at(&[1u8; 4096], 0)
            .and_then(|_| f.sync_all())
            .is_err(),
    }
}

/// CRC of `len` bytes at `offset`.
pub fn crc_at(path: &str, offset: u64, len: usize) -> u32 {
    crc32fast::hash(&read_at(path, offset, len))
}

/// Runs thinsr with a crash injected at `point` (a `testing` build), which must be reached.
pub fn crash_at(point: &str, args: &[&str]) {
    let out = thinsr_cmd(args)
        .env("THINSR_CRASH_AT", point)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("crash point {point}")),
        "{point} was not reached by {args:?}: {stderr}"
    );
}

/// What thinsr says a command cost with -v.
#[derive(Debug, Default)]
pub struct Cost {
    pub lvm_calls: u32,
    pub meta_read_bytes: u64,
    pub meta_read_ms: f64,
    pub meta_written_bytes: u64,
    pub meta_write_ms: f64,
    pub own_cpu_ms: f64,
}

/// Runs `thinsr -v ARGS` (expecting success) and reads its closing cost line:
/// `thinsr: N lvm call(s) (T ms); metadata read B B in X ms CPU, written B B in Y ms CPU;
/// thinsr's own CPU Z ms`.
pub fn cost(args: &[&str]) -> Cost {
    let mut all = vec!["-v"];
    all.extend_from_slice(args);
    let r = thinsr(&all);
    assert_eq!(r.code, 0, "thinsr {all:?}: {}", r.stderr);
    let line = r
        .stderr
        .lines()
        .rev()
        .find(|l| l.contains(" lvm call(s) ("))
        .unwrap_or_else(|| panic!("no cost line in: {}", r.stderr));
    let numbers: Vec<f64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.trim_matches('.').parse().ok())
        .collect();
    let [calls, _lvm_ms, rb, rms, wb, wms, own] = numbers[..] else {
        panic!("unexpected cost line: {line}");
    };
    Cost {
        lvm_calls: calls as u32,
        meta_read_bytes: rb as u64,
        meta_read_ms: rms,
        meta_written_bytes: wb as u64,
        meta_write_ms: wms,
        own_cpu_ms: own,
    }
}

/// The number of lvm calls thinsr reports with -v for `args`.
pub fn lvm_calls(args: &[&str]) -> u32 {
    cost(args).lvm_calls
}

/// A device-mapper device `name` over a loop device on `file`: table
/// `0 <sectors> <target> <loop> 0<extra>` (`linear`, or `delay` with `extra` " 20").
pub fn dm_on_file(name: &str, file: &str, target: &str, extra: &str) {
    let sectors = std::fs::metadata(file).unwrap().len() / 512;
    let lo = sh(&["/usr/sbin/losetup", "-f", "--show", file])
        .trim()
        .to_string();
    let table = format!("0 {sectors} {target} {lo} 0{extra}");
    sh(&["dmsetup", "create", name, "--table", &table]);
    sh(&["dmsetup", "mknodes", name]);
}

/// Bytes read so far from device-mapper device `name` (its block-layer counters).
pub fn dm_bytes_read(name: &str) -> u64 {
    let minor = sh(&["dmsetup", "info", "-c", "--noheadings", "-o", "minor", name]);
    let stat = std::fs::read_to_string(format!("/sys/block/dm-{}/stat", minor.trim())).unwrap();
    let sectors: u64 = stat.split_whitespace().nth(2).unwrap().parse().unwrap();
    sectors * 512
}

/// Serves `image` read-only over NBD on loopback, as a remote image server would, at
/// `nbd://127.0.0.1:<port>/<export>`. `direct` bypasses the server's page cache, so that
/// every read a client makes shows on the device (not possible for files on tmpfs).
pub fn serve_nbd(image: &str, format: &str, port: u16, export: &str, direct: bool) {
    sh(&["ip", "link", "set", "lo", "up"]);
    let (format, port, export) = (
        format!("--format={format}"),
        format!("--port={port}"),
        format!("--export-name={export}"),
    );
    let mut args = vec![
        "qemu-nbd",
        "--fork",
        "--persistent",
        "--shared=8",
        "--read-only",
        &format,
        "--bind=127.0.0.1",
        &port,
        &export,
    ];
    if direct {
        args.push("--cache=none");
    }
    args.push(image);
    sh(&args);
}

/// thinsr's device-mapper devices (`dmsetup ls` lines): none once everything is detached.
pub fn our_dm_devices() -> Vec<String> {
    sh(&["dmsetup", "ls"])
        .lines()
        .filter(|l| l.starts_with("thinsr-"))
        .map(str::to_string)
        .collect()
}

/// What `burst_write` measured.
pub struct Burst {
    pub total: std::time::Duration,
    /// The longest single write: a pool waiting on growth shows here.
    pub longest: std::time::Duration,
    pub bytes: u64,
}

/// The block `burst_write` puts at block `index`: noise of `seed`, stamped with the index
/// so that no two blocks are alike.
pub fn burst_block(noise: &[u8], index: u64) -> Vec<u8> {
    let mut b = noise.to_vec();
    b[..8].copy_from_slice(&index.to_le_bytes());
    b
}

/// Writes `mib` MiB into `dev` as a VM writing at full speed would: 4 MiB direct-I/O
/// writes, back to back, from offset 0. `between` runs after each write with the bytes
/// written so far. Fails the test on any write error.
pub fn burst_write(dev: &str, mib: u64, seed: u64, mut between: impl FnMut(u64)) -> Burst {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4 << 20;
    let f = open_direct(dev, true).unwrap_or_else(|e| panic!("opening {dev}: {e}"));
    let base = noise(BLOCK, seed);
    let mut buf = thinsr::aligned::AlignedBuf::zeroed(BLOCK);
    let start = std::time::Instant::now();
    let mut longest = std::time::Duration::ZERO;
    let blocks = mib * (1 << 20) / BLOCK as u64;
    for i in 0..blocks {
        buf.as_mut_slice().copy_from_slice(&burst_block(&base, i));
        let t = std::time::Instant::now();
        f.write_all_at(buf.as_slice(), i * BLOCK as u64)
            .unwrap_or_else(|e| panic!("write {i} of {dev} failed after {:?}: {e}", t.elapsed()));
        longest = longest.max(t.elapsed());
        between((i + 1) * BLOCK as u64);
    }
    f.sync_all().unwrap();
    Burst {
        total: start.elapsed(),
        longest,
        bytes: blocks * BLOCK as u64,
    }
}

/// Reads back what `burst_write` wrote (direct I/O) and returns the first block that
/// differs, or None when all are intact.
pub fn burst_differs(dev: &str, mib: u64, seed: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = 4 << 20;
    let f = open_direct(dev, false).unwrap();
    let base = noise(BLOCK, seed);
    let mut buf = thinsr::aligned::AlignedBuf::zeroed(BLOCK);
    (0..mib * (1 << 20) / BLOCK as u64).find(|&i| {
        f.read_exact_at(buf.as_mut_slice(), i * BLOCK as u64)
            .unwrap();
        buf.as_slice() != burst_block(&base, i).as_slice()
    })
}

/// `thinsr pool watch` in the background, its output collected.
pub struct Watcher {
    pub child: std::process::Child,
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Watcher {
    /// Starts it and waits until `pool show` of `sr` says it runs.
    pub fn start(sr: &str) -> Watcher {
        use std::io::BufRead;
        let mut child = thinsr_cmd(&["pool", "watch", "--interval", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pool watch starts");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in std::io::BufReader::new(pipe).lines().map_while(|l| l.ok()) {
                    lines.lock().unwrap().push(l);
                }
            });
        }
        for _ in 0..100 {
            if json(&["pool", "show", sr])["growth"]["watcher"] == "running" {
                return Watcher { child, lines };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("pool watch did not start: {:?}", lines.lock().unwrap());
    }

    pub fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `systemd_run_spy` puts its stand-in, and the calls it records (`SPY/calls`).
pub const SPY: &str = "/tmp/spy";

/// The test VM has no systemd: a stand-in systemd-run that records how it is called and
/// runs the command in a session of its own, as a transient scope would hold it apart;
/// /run/systemd/system made so that thinsr uses it. Returns a PATH finding it first.
pub fn systemd_run_spy() -> String {
    std::fs::create_dir_all("/run/systemd/system").unwrap();
    std::fs::create_dir_all(SPY).unwrap();
    std::fs::write(
        format!("{SPY}/systemd-run"),
        "#!/bin/sh\necho \"$*\" >> /tmp/spy/calls\nwhile [ \"$1\" != \"--\" ]; do shift; done\nshift\nexec setsid \"$@\"\n",
    )
    .unwrap();
    sh(&["chmod", "+x", &format!("{SPY}/systemd-run")]);
    format!("{SPY}:{}", std::env::var("PATH").unwrap_or_default())
}

/// The kinds of `sr check`'s findings in its JSON.
pub fn finding_kinds(check: &Value) -> Vec<String> {
    check["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect()
}
