//! The qemu-nbd adapter: serves an image read-only on a kernel NBD device (`qemu-nbd -c`),
//! and tells whether that connection is still alive.
//!
//! The kernel publishes a connected device's server pid in `/sys/block/nbdN/pid`: that is
//! the only liveness test used, so a qemu-nbd killed under a clone shows as dead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::host::tool;

const SYS_BLOCK: &str = "/sys/block";

fn sys(device: &Path, file: &str) -> Option<String> {
    let name = device.file_name()?.to_str()?;
    std::fs::read_to_string(Path::new(SYS_BLOCK).join(name).join(file))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The pid of the process serving `device`, while connected.
pub fn server_pid(device: &Path) -> Option<u32> {
    sys(device, "pid")?.parse().ok()
}

/// True when `device` is connected to server `pid` and has a size.
pub fn is_alive(device: &Path, pid: u32) -> bool {
    server_pid(device) == Some(pid)
        && sys(device, "size").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 0))
        && Path::new(&format!("/proc/{pid}")).exists()
}

/// The NBD devices with no server and no size, in number order.
fn free_devices() -> Result<Vec<PathBuf>> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(SYS_BLOCK)
        .map_err(|e| Error::io(format!("listing {SYS_BLOCK}"), e))?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let n: u32 = name.strip_prefix("nbd")?.parse().ok()?;
            Some((n, PathBuf::from(format!("/dev/{name}"))))
        })
        .filter(|(_, dev)| server_pid(dev).is_none() && sys(dev, "size").is_some_and(|s| s == "0"))
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, d)| d).collect())
}

/// The first free NBD device, or an error saying how to get some.
pub fn pick_device() -> Result<PathBuf> {
    free_devices()?.into_iter().next().ok_or_else(|| Error::CommandFailed {
        tool: "qemu-nbd".into(),
        message: "no free NBD device: load the module ('modprobe nbd nbds_max=64') or detach unused templates".into(),
    })
}

/// Serves `image` (a path or an `nbd://` URI qemu opens itself) read-only on `device` and
/// returns the server's pid once the device has a size.
pub fn connect(device: &Path, image: &str, format: &str) -> Result<u32> {
    // The page cache is welcome: every clone reads the same template blocks.
    serve(device, &["--read-only", "--format", format], image)
}

/// Serves a template through its cache: qemu's copy-on-read filter over the qcow2 overlay
/// on `cache` (a block device) whose backing file is the template, so each block read is
/// fetched once and kept. qemu needs the overlay writable, so the NBD device is made
/// read-only in the kernel instead (BLKROSET): nothing but qemu writes the cache.
pub fn connect_cached(device: &Path, cache: &Path) -> Result<u32> {
    let opts = format!(
        "driver=copy-on-read,file.driver=qcow2,file.file.driver=host_device,file.file.filename={}",
        cache.display()
    );
    let pid = serve(device, &["--image-opts"], &opts)?;
    super::probe::set_read_only(device, true).inspect_err(|_| {
        let _ = disconnect(device);
    })?;
    Ok(pid)
}

fn serve(device: &Path, opts: &[&str], image: &str) -> Result<u32> {
    let dev = device.to_string_lossy().into_owned();
    let mut args: Vec<&str> = opts.to_vec();
    args.extend(["--connect", &dev, "--", image]);
    start_outside_caller(&dev, &args)?;
    // qemu-nbd returns once the kernel holds the socket; the size follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = server_pid(device) {
            if is_alive(device, pid) {
                return Ok(pid);
            }
        }
        if Instant::now() >= deadline {
            let _ = disconnect(device);
            return Err(Error::CommandFailed {
                tool: "qemu-nbd".into(),
                message: format!("{dev} did not come up serving {image}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `qemu-nbd ARGS` in a systemd scope of its own where systemd runs. A template's
/// server outlives the call that started it, and on XCP-ng that call comes from
/// xapi-storage-script, whose unit has no KillMode: a toolstack restart would end every
/// server under running VMs. A transient scope puts the server in a cgroup of its own
/// (`systemd-run --scope`, in systemd 219 as on CentOS 7). Without systemd (or if
/// systemd-run fails) it starts as a child of the caller, which is where it stays.
fn start_outside_caller(dev: &str, args: &[&str]) -> Result<()> {
    if Path::new("/run/systemd/system").is_dir() {
        let unit = format!(
            "thinsr-nbd-{}-{}",
            dev.rsplit('/').next().unwrap_or("dev"),
            std::process::id()
        );
        let qemu_nbd = tool::program("qemu-nbd").display().to_string();
        let mut scoped = vec![
            "--scope",
            "--unit",
            &unit,
            "--description",
            "thinsr template server",
            "--",
            &qemu_nbd,
        ];
        scoped.extend_from_slice(args);
        if tool::run("systemd-run", &scoped).is_ok() {
            return Ok(());
        }
        // The server may have started before systemd-run failed: start clean.
        let _ = disconnect(Path::new(dev));
    }
    tool::run("qemu-nbd", args).map(drop)
}

/// Disconnects `device` (`qemu-nbd -d`), which also ends its server; harmless on a device
/// whose server died or that was never connected.
pub fn disconnect(device: &Path) -> Result<()> {
    let pid = server_pid(device);
    tool::run("qemu-nbd", &[Path::new("--disconnect"), device])?;
    // The server exits once the kernel lets go of the socket.
    if let Some(pid) = pid {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}
