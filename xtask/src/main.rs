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

/// The test files also run in the dom0 profile (XCP-ng 8.3's LVM setup, qemu-dp, thin
/// tools 0.7.3, the static binary; see vm.rs).
const DOM0_FILES: &[&str] = &["sr", "vdi", "template", "export", "pool"];
/// Long tests of those files that the dom0 profile leaves out, to keep the suite under an
/// hour: what they prove does not depend on the host's setup (the pool watcher's timing;
/// export and import byte-for-byte against qemu, whose dom0 path the other export tests
/// take).
const DOM0_SKIP: &[&str] = &[
    "a_burst_into_a_fresh_owned_pool_never_waits_for_growth",
    "cron_still_saves_a_burst_when_the_watcher_dies",
    "exports_read_only_the_data_and_qemu_reads_them_identical",
    "imports_stay_thin_and_equal_their_source",
];

fn test(args: &[String]) -> Result<()> {
    vm::ensure_packages()?;
    let filter = args.first().cloned();
    let started = Instant::now();

    // 1. Unit tests on the host.
    println!("[xtask] unit tests on the host");
    run(cargo().args(["test", "--workspace", "--lib", "--bins"]))?;

    // 2. The packages an admin installs, checked with rpm and dpkg-deb (whole runs only).
    if filter.is_none() || filter.as_deref() == Some("package") {
        println!("[xtask] packages: static binary, rpm, deb");
        package::package()?;
        if filter.is_some() {
            return Ok(());
        }
    }

    // 3. Integration tests, one fresh VM (and fresh disks) per test.
    let (thinsr, bins) = build_for_vm(false)?;
    let mut jobs: Vec<(PathBuf, String)> = Vec::new();
    let mut profiles: Vec<bool> = Vec::new();
    for bin in &bins {
        // A filter names a test, or a test file (`vdi` runs all of tests/vdi.rs).
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
            let wanted = |f: &str| name.contains(f) || file == f;
            let dom0_file =
                DOM0_FILES.contains(&file.as_str()) && !DOM0_SKIP.contains(&name.as_str());
            // `dom0:FILTER` runs only the dom0 profile of what FILTER names.
            let (normal, in_dom0) = match filter.as_deref() {
                None => (true, dom0_file),
                Some(f) => match f.strip_prefix("dom0:") {
                    Some(f) => (false, dom0_file && wanted(f)),
                    None => (wanted(f), wanted(f) && dom0_file),
                },
            };
            if normal {
                jobs.push((bin.clone(), name.clone()));
                profiles.push(false);
            }
            if in_dom0 {
                jobs.push((bin.clone(), name));
                profiles.push(true);
            }
        }
    }
    if jobs.is_empty() {
        return Err("no integration test matched: nothing would be proven".into());
    }
    let mut extra = vec![thinsr];
    extra.extend(bins.iter().cloned());
    // The dom0 profile runs thinsr's static binary, as packaged for XCP-ng.
    let dom0_thinsr = if profiles.contains(&true) {
        Some(package::static_binary(true)?)
    } else {
        None
    };
    let bed = vm::build_with(&work_dir()?, &extra, &jobs, None, dom0_thinsr.as_deref())?;
    let profiles = Arc::new(profiles);
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
    let results = Arc::new(Mutex::new(Vec::new()));
    let bed = Arc::new(bed);
    let jobs = Arc::new(jobs);
    let mut handles = Vec::new();
    for _ in 0..parallel.max(1) {
        let (next, results, bed, jobs) = (next.clone(), results.clone(), bed.clone(), jobs.clone());
        let profiles = profiles.clone();
        handles.push(std::thread::spawn(move || loop {
            let i = {
                let mut n = next.lock().unwrap();
                let i = *n;
                *n += 1;
                i
            };
            if i >= jobs.len() {
                break;
            }
            let name = &if profiles[i] {
                format!("{} [dom0]", jobs[i].1)
            } else {
                jobs[i].1.clone()
            };
            let append = format!(
                "thinsr_mode=test thinsr_job={}{}",
                i + 1,
                if profiles[i] {
                    " thinsr_profile=dom0"
                } else {
                    ""
                }
            );
            let outcome = vm::boot(&bed, &i.to_string(), &append, false, timeout);
            let ok = matches!(&outcome, Ok(o) if o.rc == Some(0));
            let secs = outcome
                .as_ref()
                .map(|o| o.elapsed.as_secs_f64())
                .unwrap_or(0.0);
            println!(
                "test {name} ... {} ({secs:.1}s)",
                if ok { "ok" } else { "FAILED" }
            );
            results.lock().unwrap().push((name.clone(), ok, outcome));
        }));
    }
    for h in handles {
        h.join().map_err(|_| "a VM runner thread panicked")?;
    }
    let results = results.lock().unwrap();
    let failed: Vec<_> = results.iter().filter(|r| !r.1).collect();
    if !failed.is_empty() {
        println!("\nfailures:\n");
        for (name, _, outcome) in &failed {
            println!("---- {name} (in the VM) ----");
            match outcome {
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
        for (name, _, _) in &failed {
            println!("    {name}");
        }
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
    let bed = vm::build(&work_dir()?, &[thinsr, bench], &jobs, None)?;
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

fn vm_with_thinsr(script: Option<&str>, testing: bool) -> Result<vm::Bed> {
    let thinsr = release_thinsr(testing)?;
    vm::build(&work_dir()?, &[thinsr], &[], script)
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
        "thinsr_mode=demo",
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
        "thinsr_mode=shell",
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
