//! `cargo xtask test|bench|package|demo|shell|gen`: the real-kernel test bed, packages and
//! generated files.
//!
//! xtask deliberately does not depend on the thinsr crate: it must build on a fresh machine
//! before it has installed the C toolchain pieces (libclang) that devicemapper needs.

mod package;
#[cfg(test)]
mod tidy;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("{cmd:?} failed with {status}").into());
    }
    Ok(())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("demo") => demo(),
        Some("shell") => shell(),
        Some("script") => script(&args[1..]),
        Some("gen") => gen(),
        Some("bench") => bench(&args[1..]),
        Some("package") => vm::ensure_packages().and_then(|_| package::package().map(drop)),
        _ => {
            eprintln!(
                "usage: cargo xtask test [FILTER] | bench [PART] | package | demo | shell | script FILE | gen"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e}");
        std::process::exit(1);
    }
}

fn work_dir() -> Result<PathBuf> {
    let dir = root().join("target/xtask");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Builds thinsr (with the test hooks) and returns its path plus the integration test
/// executables.
fn build_for_vm(release: bool) -> Result<(PathBuf, Vec<PathBuf>)> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--package",
        "thinsr",
        "--features",
        "testing",
        "--tests",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    if release {
        cmd.arg("--release");
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output()?;
    if !out.status.success() {
        return Err("building the integration tests failed".into());
    }
    let mut tests = Vec::new();
    let mut thinsr = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let kinds = msg["target"]["kind"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let exe = msg["executable"].as_str().map(PathBuf::from);
        if kinds.iter().any(|k| k == "test") && msg["profile"]["test"] == true {
            tests.extend(exe);
        } else if kinds.iter().any(|k| k == "bin")
            && msg["target"]["name"] == "thinsr"
            && msg["profile"]["test"] == false
        {
            thinsr = exe;
        }
    }
    let thinsr = thinsr.ok_or("cargo did not report the thinsr binary")?;
    tests.sort();
    Ok((thinsr, tests))
}

fn list_tests(bin: &Path) -> Result<Vec<String>> {
    let out = Command::new(bin)
        .args(["--list", "--format", "terse"])
        .output()?;
    if !out.status.success() {
        return Err(format!("{} --list failed", bin.display()).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test").map(str::to_string))
        .collect())
}

/// Where each integration test runs, once. dom0 (XCP-ng 8.3's own lvm 2.02.180, dmsetup
/// and thin tools 0.7.3, its lvm.conf, qemu-dp, the static binary; see vm.rs) is where
/// thinsr's users are, so every test runs there. The Debian profile (lvm2 2.03, thin tools
/// 1.x, qemu on PATH, the dynamic binary) keeps what is about Debian and a smoke set of the
/// main flows, which then run in both.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Profile {
    Dom0,
    Debian,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Dom0 => "dom0",
            Profile::Debian => "debian",
        }
    }
}

/// Tests about Debian's tools alone (they assert 2.03 and 1.x versions).
const DEBIAN_ONLY: &[&str] = &["version_names_the_tools_found"];
/// Tests that run in both profiles: the host's setup itself; the guard against lvm2
/// 2.03.16's unresumed pool table (growth); and one test of each main flow (SR, VDI,
/// template clone, delta export with thin tools 1.x's thin_dump). Not the xapi plugin's:
/// xapi runs only in dom0, where all of them run.
const DEBIAN_TOO: &[&str] = &[
    "thinsr_runs_on_the_host_as_it_is_set_up",
    "maintain_grows_a_pool_past_its_threshold_and_is_quiet_otherwise",
    "owned_create_show_destroy_leaves_clean_disks",
    "friendly_names_labels_keys_and_lookups",
    "cloning_copies_nothing",
    "a_delta_over_its_base_rebuilds_the_vdi",
    // What thinsr guarantees an admin, whichever LVM the host has.
    "new_vdis_never_show_old_bytes_even_where_lvm_would_not_zero",
    "nothing_run_or_read_as_root_could_have_been_written_by_another_user",
];

fn profiles_of(name: &str) -> &'static [Profile] {
    if DEBIAN_ONLY.contains(&name) {
        &[Profile::Debian]
    } else if DEBIAN_TOO.contains(&name) {
        &[Profile::Dom0, Profile::Debian]
    } else {
        &[Profile::Dom0]
    }
}

/// One VM run's result, for the report at the end.
struct Ran {
    file: String,
    name: String,
    profile: Profile,
    ok: bool,
    secs: f64,
    outcome: Result<vm::Outcome>,
    /// The console of a first run stopped by a kernel hang, when the test ran again.
    retried: Option<String>,
}

/// What the run cost: per profile, per test file, and the slowest ten tests, so the next
/// change sees its cost.
fn print_costs(parts: &[(&str, f64)], ran: &[Ran], wall: f64) {
    println!(
        "\n[xtask] what the run cost (wall seconds; VM seconds summed over VMs run two at a time)"
    );
    for (part, secs) in parts {
        println!("  {part:<40} {secs:>8.1} s");
    }
    let mut by_profile: std::collections::BTreeMap<Profile, (usize, f64)> = Default::default();
    let mut by_file: std::collections::BTreeMap<(String, Profile), (usize, f64)> =
        Default::default();
    for r in ran {
        let p = by_profile.entry(r.profile).or_default();
        p.0 += 1;
        p.1 += r.secs;
        let f = by_file.entry((r.file.clone(), r.profile)).or_default();
        f.0 += 1;
        f.1 += r.secs;
    }
    for (profile, (n, secs)) in &by_profile {
        println!(
            "  profile {:<32} {secs:>8.1} VM-s in {n} tests",
            profile.name()
        );
    }
    for ((file, profile), (n, secs)) in &by_file {
        println!(
            "  tests/{file}.rs [{}]{:<w$} {secs:>8.1} VM-s in {n} tests",
            profile.name(),
            "",
            w = 40usize.saturating_sub(file.len() + profile.name().len() + 11)
        );
    }
    let mut slow: Vec<&Ran> = ran.iter().collect();
    slow.sort_by(|a, b| b.secs.total_cmp(&a.secs));
    println!("  the slowest ten:");
    for r in slow.iter().take(10) {
        println!("    {:>7.1} s  {} [{}]", r.secs, r.name, r.profile.name());
    }
    println!("  whole run: {wall:.1} s");
}

fn test(args: &[String]) -> Result<()> {
    vm::ensure_packages()?;
    let filter = args.first().cloned();
    let started = Instant::now();
    let mut parts: Vec<(&str, f64)> = Vec::new();
    let mut part = Instant::now();
    let mut lap = |parts: &mut Vec<(&str, f64)>, what: &'static str| {
        parts.push((what, part.elapsed().as_secs_f64()));
        part = Instant::now();
    };

    // 1. Unit tests on the host.
    println!("[xtask] unit tests on the host");
    run(cargo().args(["test", "--workspace", "--lib", "--bins"]))?;
    lap(&mut parts, "unit tests (with their build)");

    // 2. The packages an admin installs, checked with rpm and dpkg-deb (whole runs only).
    if filter.is_none() || filter.as_deref() == Some("package") {
        println!("[xtask] packages: static binary, rpm, deb");
        package::package()?;
        lap(&mut parts, "packages (static binary, rpm, deb)");
        if filter.is_some() {
            return Ok(());
        }
    }

    // 3. Integration tests, one fresh VM (and fresh disks) per test, each in its profile.
    let (thinsr, bins) = build_for_vm(false)?;
    // (test binary, its file's stem, test name, profile)
    let mut jobs: Vec<(PathBuf, String, String, Profile)> = Vec::new();
    for bin in &bins {
        // A filter names tests, or test files (`vdi` runs all of tests/vdi.rs).
        let file = bin
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('-'))
            .map(|(stem, _)| stem.to_string())
            .unwrap_or_default();
        if file == "bench" {
            continue; // timings are `cargo xtask bench`'s, never a test's
        }
        for name in list_tests(bin)? {
            // Several, comma-separated: `sr,isolation`.
            let wanted = |f: &str| f.split(',').any(|f| name.contains(f) || file == f);
            // `dom0:FILTER` and `debian:FILTER` run only that profile of what FILTER names.
            let (only, f) = match filter.as_deref() {
                None => (None, None),
                Some(f) => match (f.strip_prefix("dom0:"), f.strip_prefix("debian:")) {
                    (Some(f), _) => (Some(Profile::Dom0), Some(f)),
                    (_, Some(f)) => (Some(Profile::Debian), Some(f)),
                    _ => (None, Some(f)),
                },
            };
            if f.is_some_and(|f| !wanted(f)) {
                continue;
            }
            for &profile in profiles_of(&name) {
                if only.is_none_or(|o| o == profile) {
                    jobs.push((bin.clone(), file.clone(), name.clone(), profile));
                }
            }
        }
    }
    if jobs.is_empty() {
        return Err("no integration test matched: nothing would be proven".into());
    }
    // The longest first (by the last whole run's costs), so the two VMs finish together
    // rather than one waiting on a long test started last.
    let costs = read_costs();
    let cost = |j: &(PathBuf, String, String, Profile)| {
        costs
            .get(&cost_key(&j.2, j.3))
            .copied()
            .unwrap_or(UNKNOWN_COST)
    };
    jobs.sort_by(|a, b| cost(b).total_cmp(&cost(a)));
    let mut extra = vec![thinsr];
    extra.extend(bins.iter().cloned());
    // The S3 server s3:// templates are read from in tests/lazy.rs.
    if jobs.iter().any(|j| j.1 == "lazy") {
        extra.push(s3s_fs()?);
    }
    // The dom0 profile runs thinsr's static binary, as packaged for XCP-ng.
    let dom0_thinsr = if jobs.iter().any(|j| j.3 == Profile::Dom0) {
        Some(package::static_binary(true)?)
    } else {
        None
    };
    let listed: Vec<(PathBuf, String)> = jobs.iter().map(|j| (j.0.clone(), j.2.clone())).collect();
    let bed = vm::build_with(&work_dir()?, &extra, &listed, None, dom0_thinsr.as_deref())?;
    lap(&mut parts, "builds for the VM and its initramfs");
    println!(
        "\n[xtask] running {} integration tests in VMs (kernel {})",
        jobs.len(),
        vm::kernel_version()?
    );

    let parallel: usize = std::env::var("THINSR_VM_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
    let timeout = Duration::from_secs(
        std::env::var("THINSR_VM_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600),
    );
    let next = Arc::new(Mutex::new(0usize));
    let results: Arc<Mutex<Vec<Ran>>> = Arc::new(Mutex::new(Vec::new()));
    let bed = Arc::new(bed);
    let jobs = Arc::new(jobs);
    let mut handles = Vec::new();
    for _ in 0..parallel.max(1) {
        let (next, results, bed, jobs) = (next.clone(), results.clone(), bed.clone(), jobs.clone());
        handles.push(std::thread::spawn(move || loop {
            let i = {
                let mut n = next.lock().unwrap();
                let i = *n;
                *n += 1;
                i
            };
            let Some((_, file, name, profile)) = jobs.get(i) else {
                break;
            };
            let append = format!(
                "thinsr_mode=test thinsr_job={}{}{}",
                i + 1,
                // Only tests/shares.rs mounts or serves NFS and SMB.
                if file == "shares" { "" } else { " thinsr_lean" },
                if *profile == Profile::Dom0 {
                    " thinsr_profile=dom0"
                } else {
                    ""
                }
            );
            let mut outcome = vm::boot(&bed, &i.to_string(), &append, false, timeout);
            // A kernel hang in the VM (not a failed check, not a timeout) is the test
            // bed's: run the test once more, and say so in the summary.
            let mut retried = None;
            let mut first_secs = 0.0;
            if let Ok(o) = &outcome {
                if let (None, Some(h)) = (o.rc, &o.hung) {
                    println!(
                        "[xtask] {name} [{}]: the VM's kernel hung ({h}); running it again",
                        profile.name()
                    );
                    retried = Some(o.output.clone());
                    first_secs = o.elapsed.as_secs_f64();
                    outcome = vm::boot(&bed, &i.to_string(), &append, false, timeout);
                }
            }
            let ok = matches!(&outcome, Ok(o) if o.rc == Some(0));
            let secs = first_secs
                + outcome
                    .as_ref()
                    .map(|o| o.elapsed.as_secs_f64())
                    .unwrap_or(0.0);
            println!(
                "test {name} [{}] ... {} ({secs:.1}s)",
                profile.name(),
                if ok { "ok" } else { "FAILED" }
            );
            results.lock().unwrap().push(Ran {
                file: file.clone(),
                name: name.clone(),
                profile: *profile,
                ok,
                secs,
                outcome,
                retried,
            });
        }));
    }
    for h in handles {
        h.join().map_err(|_| "a VM runner thread panicked")?;
    }
    lap(&mut parts, "integration tests in VMs");
    let results = results.lock().unwrap();
    let failed: Vec<&Ran> = results.iter().filter(|r| !r.ok).collect();
    if !failed.is_empty() {
        println!("\nfailures:\n");
        for r in &failed {
            println!("---- {} [{}] (in the VM) ----", r.name, r.profile.name());
            match &r.outcome {
                Ok(o) => {
                    println!("{}", o.output);
                    match o.rc {
                        Some(rc) => println!("[xtask] test exited with {rc}"),
                        None => println!("[xtask] no result came back from the VM"),
                    }
                }
                Err(e) => println!("[xtask] could not run the VM: {e}"),
            }
        }
        println!("failures:");
        for r in &failed {
            println!("    {} [{}]", r.name, r.profile.name());
        }
    }
    for r in results.iter().filter(|r| r.retried.is_some()) {
        println!(
            "\n[xtask] {} [{}] ran twice: its first VM's kernel hung; that run's console:\n{}",
            r.name,
            r.profile.name(),
            r.retried.as_deref().unwrap_or_default()
        );
    }
    print_costs(&parts, &results, started.elapsed().as_secs_f64());
    if filter.is_none() && failed.is_empty() {
        write_costs(&results)?;
    }
    let passed = results.len() - failed.len();
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.2}s",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} integration test(s) failed in the VM", failed.len()).into())
    }
}

/// The VM seconds each test took in the last whole run, committed so that a fresh clone
/// (CI) orders its tests by them: one line per test, `SECONDS NAME [PROFILE]`.
const COSTS: &str = "xtask/test-costs.txt";
/// A test the file does not know yet (new since): started among the long ones.
const UNKNOWN_COST: f64 = 120.0;

fn cost_key(name: &str, profile: Profile) -> String {
    format!("{name} [{}]", profile.name())
}

fn read_costs() -> std::collections::HashMap<String, f64> {
    std::fs::read_to_string(root().join(COSTS))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (secs, key) = l.trim().split_once(' ')?;
            Some((key.to_string(), secs.parse().ok()?))
        })
        .collect()
}

/// After a whole run, the costs it measured, for the next run's order.
fn write_costs(ran: &[Ran]) -> Result<()> {
    let mut lines: Vec<(f64, String)> = ran
        .iter()
        .map(|r| (r.secs, cost_key(&r.name, r.profile)))
        .collect();
    lines.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let text: String = lines.iter().map(|(s, k)| format!("{s:.0} {k}\n")).collect();
    std::fs::write(root().join(COSTS), text)?;
    Ok(())
}

/// `cargo xtask bench [PART]`: tests/bench.rs in one VM, its table echoed; PART names one
/// of its parts alone (`bench_origins`). Release build: the figures are about thinsr as
/// shipped.
fn bench(args: &[String]) -> Result<()> {
    let part = args.first().map(String::as_str).unwrap_or("bench");
    vm::ensure_packages()?;
    let (thinsr, bins) = build_for_vm(true)?;
    let bench = bins
        .iter()
        .find(|b| {
            b.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("bench-"))
        })
        .ok_or("cargo did not build tests/bench.rs")?
        .clone();
    let jobs = vec![(bench.clone(), part.to_string())];
    let mut extra = vec![thinsr, bench];
    if part.contains("replicate") {
        extra.push(linbit_thin_send_recv()?);
    }
    // THINSR_BENCH_PERF=1: the host's perf in the VM, and the parts that look for it
    // profile what they measure (a profile to read, never a figure to report).
    if std::env::var_os("THINSR_BENCH_PERF").is_some() {
        extra.push(PathBuf::from("/usr/bin/perf"));
    }
    let bed = vm::build(&work_dir()?, &extra, &jobs, None)?;
    let outcome = vm::boot(
        &bed,
        "bench",
        "thinsr_mode=test thinsr_job=1",
        true,
        Duration::from_secs(3600),
    )?;
    match outcome.rc {
        Some(0) => Ok(()),
        Some(rc) => Err(format!("the benchmark failed (exit {rc})").into()),
        None => Err(format!("the benchmark VM gave no result:\n{}", outcome.output).into()),
    }
}

/// LINBIT's thin_send/thin_recv (GPLv3, so built here, never kept in the tree), the peer
/// `bench_replicate` compares with: from THINSR_LINBIT_SRC (a checkout), or its v1.1.3 tag
/// cloned into target/linbit. Built with the host's gcc and flex; the VM gets it at the
/// same path (the bench looks for it there).
/// s3s-fs, an S3 server over a directory that checks SigV4 signatures itself (the s3s
/// project's), built once into target/s3s for tests/lazy.rs. 0.14.1: the last release
/// this toolchain builds.
pub fn s3s_fs() -> Result<PathBuf> {
    let dir = root().join("target/s3s");
    let bin = dir.join("bin/s3s-fs");
    if bin.exists() {
        return Ok(bin);
    }
    println!("[xtask] building s3s-fs 0.14.1 (once) for the s3:// template tests");
    run(Command::new(env!("CARGO"))
        .args([
            "install",
            "--quiet",
            "s3s-fs",
            "--version",
            "0.14.1",
            "--features",
            "binary",
            "--root",
        ])
        .arg(&dir))?;
    Ok(bin)
}

fn linbit_thin_send_recv() -> Result<PathBuf> {
    let dir = root().join("target/linbit");
    let bin = dir.join("thin_send_recv");
    if bin.exists() {
        return Ok(bin);
    }
    let src = match std::env::var_os("THINSR_LINBIT_SRC") {
        Some(p) => PathBuf::from(p),
        None => {
            let src = dir.join("src");
            if !src.exists() {
                run(Command::new("git")
                    .args([
                        "clone",
                        "--quiet",
                        "--depth",
                        "1",
                        "--branch",
                        "v1.1.3",
                        "https://github.com/LINBIT/thin-send-recv",
                    ])
                    .arg(&src))?;
            }
            src
        }
    };
    if Command::new("flex").arg("--version").output().is_err() {
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-qq", "--no-install-recommends", "flex"]))?;
    }
    run(Command::new("make")
        .arg("-C")
        .arg(&src)
        .arg("thin_send_recv"))?;
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(src.join("thin_send_recv"), &bin)?;
    Ok(bin)
}

/// A release build of thinsr; with `testing`, one that also honours THINSR_CRASH_AT (for
/// `cargo xtask script` and `shell`, never for the demo).
fn release_thinsr(testing: bool) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "thinsr",
        "--bin",
        "thinsr",
    ]);
    if testing {
        cmd.args(["--features", "testing", "--target-dir"])
            .arg(root().join("target/testing"));
    }
    run(&mut cmd)?;
    Ok(root().join(if testing {
        "target/testing/release/thinsr"
    } else {
        "target/release/thinsr"
    }))
}

/// `THINSR_PROFILE=dom0` gives `script` and `shell` the dom0 profile (dom0's tools, the
/// static binary), as `cargo xtask test dom0:NAME` has.
fn dom0_wanted() -> bool {
    std::env::var("THINSR_PROFILE").is_ok_and(|p| p == "dom0")
}

fn vm_with_thinsr(script: Option<&str>, testing: bool) -> Result<vm::Bed> {
    let thinsr = release_thinsr(testing)?;
    let dom0 = if dom0_wanted() {
        Some(package::static_binary(testing)?)
    } else {
        None
    };
    vm::build_with(&work_dir()?, &[thinsr], &[], script, dom0.as_deref())
}

/// The kernel command line's profile word.
fn profile_arg() -> &'static str {
    if dom0_wanted() {
        " thinsr_profile=dom0"
    } else {
        ""
    }
}

fn demo() -> Result<()> {
    run_script("demo", include_str!("demo.sh"), false)
}

/// `cargo xtask script FILE`: any shell script, run as root in a fresh VM with thinsr.
fn script(args: &[String]) -> Result<()> {
    let [file] = args else {
        return Err("usage: cargo xtask script FILE".into());
    };
    run_script("script", &std::fs::read_to_string(file)?, true)
}

/// Runs a shell script in a fresh VM (as the demo does), echoing its output.
fn run_script(what: &str, script: &str, testing: bool) -> Result<()> {
    vm::ensure_packages()?;
    let bed = vm_with_thinsr(Some(script), testing)?;
    let outcome = vm::boot(
        &bed,
        what,
        &format!("thinsr_mode=demo{}", profile_arg()),
        true,
        Duration::from_secs(900),
    )?;
    match outcome.rc {
        Some(0) => Ok(()),
        Some(rc) => Err(format!("the {what} failed (exit {rc})").into()),
        None => Err(format!("the {what} VM gave no result:\n{}", outcome.output).into()),
    }
}

fn shell() -> Result<()> {
    vm::ensure_packages()?;
    let bed = vm_with_thinsr(None, true)?;
    vm::boot(
        &bed,
        "shell",
        &format!("thinsr_mode=shell{}", profile_arg()),
        true,
        Duration::from_secs(86400),
    )?;
    Ok(())
}

/// Regenerates man/ and completions/ from the clap definitions.
fn gen() -> Result<()> {
    vm::ensure_packages()?;
    run(cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "thinsr",
            "--bin",
            "thinsr-gen",
            "--",
        ])
        .arg(root()))
}
