//! Runs host tools other than lvm (blkid, losetup) with argument vectors.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// Where XCP-ng's dom0 keeps qemu-img and qemu-nbd (package qemu-dp), off PATH.
pub const QEMU_DP_DIR: &str = "/usr/lib64/qemu-dp/bin";

/// The directories on PATH holding `tool`, first match.
fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// The program to run for `tool`, and where it was found. qemu's tools: the directory in
/// `THINSR_QEMU_DIR` if set, else PATH, else qemu-dp's directory. Others: PATH.
pub fn locate(tool: &str) -> (PathBuf, &'static str) {
    if tool.starts_with("qemu-") {
        if let Some(dir) = std::env::var_os("THINSR_QEMU_DIR") {
            return (Path::new(&dir).join(tool), "THINSR_QEMU_DIR");
        }
        if let Some(p) = on_path(tool) {
            return (p, "PATH");
        }
        let dp = Path::new(QEMU_DP_DIR).join(tool);
        if dp.is_file() {
            return (dp, "qemu-dp");
        }
    } else if let Some(p) = on_path(tool) {
        return (p, "PATH");
    }
    (PathBuf::from(tool), "not found")
}

/// The program to run for `tool` (see `locate`).
pub fn program(tool: &str) -> PathBuf {
    locate(tool).0
}

/// Runs `tool ARGS...`; only a failure to start it is an error here.
pub fn output<S: AsRef<OsStr>>(tool: &str, args: &[S]) -> Result<Output> {
    Command::new(program(tool))
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::CommandFailed {
            tool: tool.into(),
            message: format!("cannot run {tool}: {e}"),
        })
}

/// Runs `cmd` to its end with its stdout and stderr in memory files rather than pipes, and
/// returns what it wrote. lvm writes its JSON reports a line at a time: through a pipe each
/// line wakes the reader (a thousand LVs, three thousand wakes, a fifth of `sr show`
/// under TCG); into a file nobody waits. A pipe still serves where memory files cannot be
/// made.
pub fn output_via_memory(cmd: &mut Command) -> std::io::Result<Output> {
    let (Ok(out), Ok(err)) = (memory_file(c"thinsr-stdout"), memory_file(c"thinsr-stderr")) else {
        return cmd.output();
    };
    let status = cmd
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .status()?;
    Ok(Output {
        status,
        stdout: read_back(out)?,
        stderr: read_back(err)?,
    })
}

/// A file in memory, for a child's output.
fn memory_file(name: &std::ffi::CStr) -> std::io::Result<std::fs::File> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    memfd_create(name, MemFdCreateFlag::MFD_CLOEXEC)
        .map(std::fs::File::from)
        .map_err(std::io::Error::from)
}

/// All a child wrote into `f`.
fn read_back(mut f: std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(0))?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// Runs `program` (no arguments) with `input` on its stdin and its output in memory files,
/// in a process group of its own; waits at most `limit`, then kills the whole group (what
/// it started too) and returns None. For an admin's hooks: a hung one must not hold the
/// command, nor leave children behind.
pub fn run_with_input_within(
    program: &Path,
    input: &[u8],
    limit: std::time::Duration,
) -> std::io::Result<Option<Output>> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let (out, err) = (
        memory_file(c"thinsr-stdout")?,
        memory_file(c"thinsr-stderr")?,
    );
    let mut child = Command::new(program)
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(out.try_clone()?)
        .stderr(err.try_clone()?)
        .process_group(0)
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is its own business (EPIPE).
        let _ = stdin.write_all(input);
    }
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let Some(status) = status else {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.wait();
        return Ok(None);
    };
    Ok(Some(Output {
        status,
        stdout: read_back(out)?,
        stderr: read_back(err)?,
    }))
}

/// As `output`, but waits at most `limit`: a tool still running then (talking to a server
/// that does not answer) is killed, and None returned.
pub fn output_within<S: AsRef<OsStr>>(
    tool: &str,
    args: &[S],
    limit: std::time::Duration,
) -> Result<Option<Output>> {
    let child = Command::new(program(tool))
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::CommandFailed {
            tool: tool.into(),
            message: format!("cannot run {tool}: {e}"),
        })?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    // The output is read to its end by the waiting thread, so a large report never fills
    // a pipe while this one waits.
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let _ = waiter.join();
            out.map(Some).map_err(|e| Error::CommandFailed {
                tool: tool.into(),
                message: format!("{tool} failed: {e}"),
            })
        }
        Err(_) => {
            // Ours, still unreaped (the waiter holds it): the pid is not reused yet.
            if let Ok(p) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = waiter.join();
            Ok(None)
        }
    }
}

/// Runs `tool ARGS...` and returns what it printed; a non-zero exit is the tool's failure.
pub fn run<S: AsRef<OsStr>>(tool: &str, args: &[S]) -> Result<String> {
    let out = output(tool, args)?;
    if !out.status.success() {
        return Err(failed(tool, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The tool's failure, with its own message.
pub fn failed(tool: &str, out: &Output) -> Error {
    Error::CommandFailed {
        tool: tool.into(),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// What writes a child's stdin (`run_feeding`).
pub type Feeder<'a> = dyn FnMut(&mut dyn std::io::Write) -> Result<()> + 'a;

/// How a fed child ended: its status and outputs, and what its feeder returned.
pub struct Fed {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub fed: Result<()>,
}

/// Runs `cmd` with `feed` writing its stdin (or nothing there), both outputs read beside
/// it so that neither pipe fills and stalls it. Returns its status, stdout, stderr, and
/// what `feed` returned.
pub fn run_feeding(mut cmd: Command, feed: Option<&mut Feeder>) -> Result<Fed> {
    use std::io::Read;
    use std::process::Stdio;
    cmd.stdin(if feed.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {:?}", cmd.get_program()), e))?;
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            r.read_to_end(&mut s).ok();
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let fed = match (feed, child.stdin.take()) {
        (Some(f), Some(mut stdin)) => f(&mut stdin),
        _ => Ok(()),
    };
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("waiting for {:?}", cmd.get_program()), e))?;
    Ok(Fed {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        fed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_via_memory_returns_both_streams_and_the_status() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "i=0; while [ $i -lt 3000 ]; do echo line$i; i=$((i+1)); done; echo oops >&2; exit 3",
        ]);
        let out = output_via_memory(&mut cmd).unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 3000);
        assert!(text.ends_with("line2999\n"));
        assert_eq!(out.stderr, b"oops\n");
        assert_eq!(out.status.code(), Some(3));
    }
}
