//! The system's OpenSSH client, for a command on another host: the admin's keys and
//! config, never a password prompt (cron has no one to answer it), a bounded connect, and
//! a connection that dies noticed within a minute.

use std::process::Command;

use crate::error::{Error, Result};

/// Whether `s` reaches the other host's shell as itself: ssh joins its arguments into one
/// command line, so each must need no quoting.
pub fn shell_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:=@+,".contains(&b))
}

/// Where to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// `ssh ... HOST PROGRAM ARGS`; refused when an argument would need quoting there.
pub fn command(login: &Login, program: &str, args: &[String]) -> Result<Command> {
    if let Some(bad) = std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .find(|a| !shell_safe(a))
    {
        return Err(Error::InvalidArgument(format!(
            "'{}' would need quoting on the other host's shell",
            crate::units::clip(bad)
        )));
    }
    let mut c = Command::new(super::tool::program("ssh"));
    c.args([
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=15",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=4",
    ]);
    if let Some(p) = login.port {
        c.args(["-p", &p.to_string()]);
    }
    if let Some(u) = &login.user {
        c.args(["-l", u]);
    }
    c.arg("--").arg(&login.host).arg(program).args(args);
    Ok(c)
}
