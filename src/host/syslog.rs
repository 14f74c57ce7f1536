//! A line to the host's syslog (`/dev/log`), best effort: what happened in a command nobody
//! watches (xapi's, cron's) is still found in /var/log/messages on dom0.

use std::os::unix::net::UnixDatagram;

/// Logs `line` at warning level (facility user), as `thinsr[PID]: line`.
pub fn warning(line: &str) {
    // <12>: facility user (1) * 8 + severity warning (4).
    let msg = format!("<12>thinsr[{}]: {line}", std::process::id());
    if let Ok(s) = UnixDatagram::unbound() {
        let _ = s.send_to(msg.as_bytes(), "/dev/log");
    }
}
