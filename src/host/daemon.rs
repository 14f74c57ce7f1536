//! Long-lived servers of thinsr's own, started by a short call (a plugin method) and
//! outliving it. On XCP-ng that call comes from xapi-storage-script, whose unit has no
//! KillMode: a toolstack restart would end every process it left behind, so the server
//! runs in a transient systemd scope of its own where systemd runs (`systemd-run --scope`,
//! systemd 219 on CentOS 7), else as a child in a process group of its own. It never
//! holds the caller's stdout or stderr (xapi-storage-script reads them to the end): it
//! says it is ready on a pipe of its own, within a bounded wait.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// What the server prints on stdout once clients can connect.
pub const READY: &str = "ready";
/// How long a server may take to say it is ready, and to end when asked.
const WAIT: Duration = Duration::from_secs(10);

/// Starts `program ARGS` outside the caller (in scope `unit` where systemd runs) and waits
/// for its ready line; returns what the line says after `ready`. `stdin`, when given, is
/// the server's standard input (a descriptor it watches); crash points are the caller's,
/// not the server's.
pub fn start<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    unit: &str,
    what: &str,
    stdin: Option<std::os::fd::OwnedFd>,
) -> Result<String> {
    let mut cmd = if Path::new("/run/systemd/system").is_dir() {
        let mut c = Command::new("systemd-run");
        c.args(["--scope", "--unit", unit, "--description", what, "--"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .env_remove("THINSR_CRASH_AT")
        .env_remove("THINSR_FAULT_AT")
        .env_remove("THINSR_SERVER_CRASH_AT")
        .stdin(stdin.map(Stdio::from).unwrap_or(Stdio::null()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    // A test crashes a server at one of its own points with THINSR_SERVER_CRASH_AT.
    #[cfg(feature = "testing")]
    if let Ok(point) = std::env::var("THINSR_SERVER_CRASH_AT") {
        cmd.env("THINSR_CRASH_AT", point);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", program.display()), e))?;
    let mut out = child.stdout.take().expect("piped");
    let deadline = Instant::now() + WAIT;
    let mut said = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(out.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0);
        let mut buf = [0u8; 256];
        let n = if ready > 0 {
            out.read(&mut buf).unwrap_or(0)
        } else {
            0
        };
        said.extend_from_slice(&buf[..n]);
        if said.starts_with(READY.as_bytes()) && said.contains(&b'\n') {
            // The child lives on; it is reaped by init once this process exits.
            let line = String::from_utf8_lossy(&said[READY.len()..]);
            return Ok(line.lines().next().unwrap_or("").trim().to_string());
        }
        if n == 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::CommandFailed {
                tool: program.display().to_string(),
                message: format!(
                    "{what} did not start within {} s{}",
                    WAIT.as_secs(),
                    match String::from_utf8_lossy(&said).trim() {
                        "" => String::new(),
                        s => format!(": {s}"),
                    }
                ),
            });
        }
    }
}

/// The process `pid`, if it runs and its command line holds every one of `marks` (a pid
/// file can outlive its process, and the number be reused).
pub fn running(pid: u32, marks: &[&str]) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    marks.iter().all(|m| args.contains(&m.as_bytes()))
}

/// True once process `pid` holds no open file (gone, a zombie, or exiting past that).
fn files_closed(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(true, |mut d| d.next().is_none())
}

/// Asks `pid` to end (SIGTERM), waits for it, then kills it. Only a process that
/// `running(pid, marks)` recognises is signalled.
pub fn stop(pid: u32, marks: &[&str]) {
    if !running(pid, marks) {
        return;
    }
    let Ok(p) = i32::try_from(pid).map(Pid::from_raw) else {
        return;
    };
    let _ = kill(p, Signal::SIGTERM);
    let deadline = Instant::now() + WAIT;
    // Its command line goes before its files (the kernel lets go of a process's memory
    // first, and of its descriptors once its last thread ends): a device it held may
    // still be open while it no longer looks like running.
    let holds = |pid: u32| running(pid, marks) || !files_closed(pid);
    while holds(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running(pid, marks) {
        let _ = kill(p, Signal::SIGKILL);
        while holds(pid) && Instant::now() < deadline + WAIT {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
