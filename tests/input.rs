//! Hostile and mistaken input across every command group, in the test VM: each gets a
//! coded error in the xapi shape, no panic, and changes nothing (LVM, device-mapper, the
//! registry and every SR's metadata compared before and after).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const PLUGIN: &str = "/tmp/xapi/volume/org.xen.xapi.storage.thinsr";

/// What must not change: LVM, dm, the registry, and the SRs' metadata as thinsr reads it.
fn snapshot() -> String {
    let vdis = thinsr(&["--json", "vdi", "list"]).stdout;
    let srs = thinsr(&["--json", "sr", "list"]).stdout;
    format!("{}\n{vdis}\n{srs}", state())
}

/// Runs a plugin method with `stdin` as its arguments; returns exit code and stdout JSON.
fn plugin(method: &str, stdin: &str) -> (i32, Value) {
    let mut child = Command::new(format!("{PLUGIN}/{method}"))
        .arg("--json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{method}: {stderr}");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {stderr}"));
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn bad_input_across_all_commands_changes_nothing() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    json(&["vdi", "create", "disk", "--size", "16M"]);
    json(&["vdi", "create", "fat", "--size", "8M", "--preallocate"]);
    sh(&["truncate", "-s", "16M", "/tmp/t.raw"]);
    json(&[
        "template",
        "introduce",
        "file:///tmp/t.raw",
        "--name",
        "tpl",
    ]);
    json(&["vdi", "clone", "tpl", "--name", "from tpl"]);
    ok(&["vdi", "attach", "from tpl"]);
    ok(&["xapi", "install", "--root", "/tmp/xapi"]);
    std::fs::write("/tmp/not-an-image.txt", "hello").unwrap();
    let long = "x".repeat(10_000);
    let long_uri = format!("file:///{}", "a".repeat(5000));

    let cases: Vec<(Vec<&str>, &str)> = vec![
        // sr
        (vec!["sr", "create", "/dev/nonexistent"], "DEVICE_NOT_FOUND"),
        (vec!["sr", "create", "/tmp/t.raw"], "NOT_A_BLOCK_DEVICE"),
        (vec!["sr", "create", DISKS[1], DISKS[1]], "INVALID_ARGUMENT"),
        (vec!["sr", "create", DISKS[0]], "DEVICE_IN_USE"),
        (
            vec!["sr", "create", DISKS[1], "--name", "local"],
            "INVALID_NAME",
        ),
        (vec!["sr", "introduce", "no_such_vg"], "VG_NOT_FOUND"),
        (vec!["sr", "introduce", "bad/vg"], "VG_NOT_FOUND"),
        (vec!["sr", "show", "nope"], "SR_NOT_FOUND"),
        (vec!["sr", "detach", "local"], "SR_HAS_ATTACHED_VDIS"),
        (
            vec!["--yes", "sr", "destroy", "local"],
            "SR_HAS_ATTACHED_VDIS",
        ),
        (vec!["sr", "rename", "local", &long], "INVALID_NAME"),
        (vec!["sr", "check", "nope"], "SR_NOT_FOUND"),
        // vdi
        (vec!["vdi", "create", "x", "--size", "1Q"], "INVALID_SIZE"),
        (vec!["vdi", "create", &long, "--size", "1M"], "INVALID_NAME"),
        (vec!["vdi", "show", "nope"], "VDI_NOT_FOUND"),
        (vec!["vdi", "show", "local/nope"], "VDI_NOT_FOUND"),
        (vec!["--yes", "vdi", "destroy", "from tpl"], "VDI_ATTACHED"),
        // Growing an attached clone works (VDI_RESIZE_ONLINE); shrinking it does not.
        (
            vec!["--yes", "vdi", "resize", "from tpl", "1M", "--allow-shrink"],
            "VDI_ATTACHED",
        ),
        (
            vec!["vdi", "attach", "from tpl", "--read-only"],
            "VDI_ATTACHED",
        ),
        (vec!["vdi", "snapshot", "fat"], "INVALID_ARGUMENT"),
        (vec!["vdi", "set", "disk", "", "v"], "INVALID_ARGUMENT"),
        (vec!["vdi", "resize", "disk", "1M"], "SHRINK_REFUSED"),
        (
            vec!["vdi", "clone", "disk", "--name", "\u{7}"],
            "INVALID_NAME",
        ),
        // template
        (vec!["template", "introduce", "/tmp/t.raw"], "INVALID_URI"),
        (
            vec!["template", "introduce", "file://tmp/t.raw"],
            "INVALID_URI",
        ),
        (
            vec!["template", "introduce", "file:///tmp/../tmp/t.raw"],
            "INVALID_URI",
        ),
        (vec!["template", "introduce", "../x://a"], "INVALID_URI"),
        (vec!["template", "introduce", "a/b://a"], "INVALID_URI"),
        (vec!["template", "introduce", "A B://a"], "INVALID_URI"),
        (
            vec!["template", "introduce", "nbd://host:0/x"],
            "INVALID_URI",
        ),
        (vec!["template", "introduce", &long_uri], "INVALID_URI"),
        (
            vec!["template", "introduce", "file:///tmp/nothing"],
            "IMAGE_UNREADABLE",
        ),
        (
            vec!["template", "introduce", "file:///tmp/not-an-image.txt"],
            "IMAGE_UNREADABLE",
        ),
        (
            vec!["template", "introduce", "file:///tmp/t.raw"],
            "TEMPLATE_EXISTS",
        ),
        (vec!["template", "introduce", "zz://a"], "INVALID_ARGUMENT"),
        (
            vec![
                "--scheme-dir",
                "relative",
                "template",
                "introduce",
                "zz://a",
            ],
            "INVALID_ARGUMENT",
        ),
        (
            // An empty name is legal (as in XenAPI); the image is taken already.
            vec!["template", "introduce", "file:///tmp/t.raw", "--name", ""],
            "TEMPLATE_EXISTS",
        ),
        (vec!["template", "forget", "tpl"], "TEMPLATE_IN_USE"),
        (vec!["template", "forget", "disk"], "NOT_A_TEMPLATE"),
        (vec!["template", "show", "disk"], "NOT_A_TEMPLATE"),
        (vec!["template", "show", "nope"], "VDI_NOT_FOUND"),
        (vec!["vdi", "resize", "tpl", "+1M"], "VDI_IS_TEMPLATE"),
        // pool
        (vec!["pool", "show", "nope"], "SR_NOT_FOUND"),
        (vec!["pool", "extend", "local", "-1G"], "USAGE"),
        (vec!["pool", "extend", "local", "100T"], "NO_SPACE"),
        (
            vec!["pool", "set", "local", "--threshold", "0"],
            "INVALID_ARGUMENT",
        ),
        (
            vec!["pool", "set", "local", "--threshold", "101"],
            "INVALID_ARGUMENT",
        ),
        (
            vec!["pool", "set", "local", "--max-size", "zz"],
            "INVALID_SIZE",
        ),
        (
            vec!["pool", "set", "local", "--when-full", "panic"],
            "USAGE",
        ),
        (vec!["pool", "check", "nope"], "SR_NOT_FOUND"),
        // usage
        (vec!["vdi", "frobnicate"], "USAGE"),
        (vec!["--no-such-option", "sr", "list"], "USAGE"),
    ];
    // Every mismatch is collected, so one run shows them all. Nothing may change, so each
    // command's aftermath is compared with the state before the first.
    let mut wrong = Vec::new();
    let mut tried = 0;
    let before = snapshot();
    for (args, code) in &cases {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let r = thinsr(&all);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
        if r.code == 0 || v["code"] != *code || !v["params"].is_array() {
            wrong.push(format!("{args:?}: exit {} {v}", r.code));
        }
        if snapshot() != before {
            wrong.push(format!("{args:?} changed something"));
        }
        tried += 1;
    }
    // The plugin: malformed arguments, unknown keys and SRs.
    let sr = json(&["sr", "show", "local"])["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let plugin_cases: Vec<(&str, String, &str)> = vec![
        ("SR.stat", "not json".into(), "INVALID_ARGUMENT"),
        ("SR.stat", "[1,2]".into(), "INVALID_ARGUMENT"),
        ("SR.stat", "{}".into(), "INVALID_ARGUMENT"),
        ("SR.stat", r#"{"sr": 7}"#.into(), "INVALID_ARGUMENT"),
        ("SR.stat", r#"{"sr": "nope"}"#.into(), "SR_does_not_exist"),
        (
            "Volume.stat",
            format!(r#"{{"sr": "{sr}", "key": "nope"}}"#),
            "Volume_does_not_exist",
        ),
        (
            "Volume.create",
            format!(
                r#"{{"sr": "{sr}", "name": "x", "description": "", "size": -1, "sharable": false}}"#
            ),
            "INVALID_ARGUMENT",
        ),
        (
            "SR.create",
            r#"{"uuid": "u", "configuration": {}, "name": "n", "description": ""}"#.into(),
            "INVALID_ARGUMENT",
        ),
    ];
    for (method, stdin, code) in &plugin_cases {
        let (status, v) = plugin(method, stdin);
        if status == 0 || v["code"] != *code {
            wrong.push(format!("{method} {stdin}: exit {status} {v}"));
        }
        if snapshot() != before {
            wrong.push(format!("{method} {stdin} changed something"));
        }
        tried += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("bad inputs tried: {tried}");
    assert!(tried >= 50);
}
