//! The admin's hooks as the tests install them: scripts that log each event they are given.

use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

pub const HOOKS: &str = "/etc/thinsr/hooks";
pub const LOG: &str = "/root/hooks.log";

/// A hook of `hook` named `name`, with the shell `body`, mode `mode`.
pub fn hook(hook: &str, name: &str, body: &str, mode: u32) {
    let dir = format!("{HOOKS}/{hook}.d");
    std::fs::create_dir_all(&dir).unwrap();
    let path = format!("{dir}/{name}");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A hook that logs the event it is given, under its own name.
pub fn logging(h: &str) {
    hook(
        h,
        "50-log",
        &format!("{{ echo '== {h}'; cat; echo; }} >> {LOG}"),
        0o755,
    );
}

/// The events logged since the last call: (hook, record).
pub fn events() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(LOG).unwrap_or_default();
    let _ = std::fs::remove_file(LOG);
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        let name = l.strip_prefix("== ").expect("a header").to_string();
        let record: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(record["hook"], name.as_str(), "{record}");
        out.push((name, record));
    }
    out
}

pub fn names(ev: &[(String, Value)]) -> Vec<&str> {
    ev.iter().map(|(n, _)| n.as_str()).collect()
}
