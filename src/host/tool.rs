//! Runs host tools other than lvm (blkid, losetup) with argument vectors.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::error::{Error, Result};

/// Runs `tool ARGS...`; only a failure to start it is an error here.
pub fn output<S: AsRef<OsStr>>(tool: &str, args: &[S]) -> Result<Output> {
    Command::new(tool)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::CommandFailed {
            tool: tool.into(),
            message: format!("cannot run {tool}: {e}"),
        })
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
