//! The admin's hooks (/etc/thinsr/hooks/<hook>.d/), end to end through the thinsr binary
//! and the installed xapi method files: each event once, the same record whichever
//! interface caused it, a pre- hook's refusal changing nothing, a hung hook killed at its
//! bound, an unsafe hook never run, a hook that calls thinsr itself.

mod common;

use std::time::{Duration, Instant};

use common::hooks::*;
use common::xapi::{call, install, VOLUME};
use common::*;
use serde_json::{json, Value};

/// Processes running `sleep 300`.
fn sleepers() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| c.as_slice() == b"sleep\x00300\x00")
        .count()
}

#[test]
fn hooks_run_once_per_event_from_the_cli_and_from_xapi() {
    vm();
    for h in [
        "pre-vdi-destroy",
        "pre-vdi-snapshot",
        "post-vdi-create",
        "post-vdi-destroy",
        "post-vdi-resize",
        "post-vdi-snapshot",
        "post-vdi-clone",
    ] {
        logging(h);
    }
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    assert!(events().is_empty(), "no hook of an SR's creation yet");

    // The CLI: each command, its events once, in order, with the records vdi show gives.
    let v = json(&["vdi", "create", "web", "--size", "64M"]);
    let ev = events();
    assert_eq!(names(&ev), ["post-vdi-create"]);
    let (_, r) = &ev[0];
    assert_eq!(r["caller"], "cli");
    assert_eq!(r["vdi"]["uuid"], v["uuid"], "{r}");
    assert_eq!(r["vdi"]["name"], "web");
    assert_eq!(r["sr"]["name"], "local");
    assert_eq!(r["sr"]["uuid"], v["sr"]);

    let snap = json(&["vdi", "snapshot", "web", "--name", "web-1"]);
    let ev = events();
    assert_eq!(names(&ev), ["pre-vdi-snapshot", "post-vdi-snapshot"]);
    assert_eq!(ev[0].1["vdi"]["name"], "web");
    assert_eq!(ev[1].1["vdi"]["uuid"], snap["uuid"]);
    assert_eq!(ev[1].1["vdi"]["parent"], v["uuid"]);

    json(&["vdi", "clone", "web", "--name", "web-2"]);
    assert_eq!(names(&events()), ["post-vdi-clone"]);
    json(&["vdi", "resize", "web", "128M"]);
    let ev = events();
    assert_eq!(names(&ev), ["post-vdi-resize"]);
    assert_eq!(ev[0].1["vdi"]["virtual_size"], 128 << 20);
    json(&["vdi", "destroy", "web-2", "--yes"]);
    let ev = events();
    assert_eq!(names(&ev), ["pre-vdi-destroy", "post-vdi-destroy"]);
    assert!(ev.iter().all(|(_, r)| r["vdi"]["name"] == "web-2"));

    // xapi, through the installed method files: the same hooks, the same records.
    install();
    let sr = v["sr"].as_str().unwrap();
    let created = call(
        VOLUME,
        "Volume.create",
        json!({"sr": sr, "name": "vm disk", "description": "", "size": 64 << 20, "sharable": false}),
    );
    let ev = events();
    assert_eq!(names(&ev), ["post-vdi-create"]);
    assert_eq!(ev[0].1["caller"], "xapi");
    assert_eq!(ev[0].1["vdi"]["key"], created["key"]);
    let s = call(
        VOLUME,
        "Volume.snapshot",
        json!({"sr": sr, "key": created["key"]}),
    );
    call(
        VOLUME,
        "Volume.clone",
        json!({"sr": sr, "key": created["key"]}),
    );
    call(VOLUME, "Volume.destroy", json!({"sr": sr, "key": s["key"]}));
    assert_eq!(
        names(&events()),
        [
            "pre-vdi-snapshot",
            "post-vdi-snapshot",
            "post-vdi-clone",
            "pre-vdi-destroy",
            "post-vdi-destroy"
        ]
    );
}

#[test]
fn a_refusal_changes_nothing_and_a_failed_hook_never_undoes() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    json(&["vdi", "create", "db", "--size", "64M"]);
    let lvs = || sh(&["lvm", "lvs", "--noheadings", "-o", "lv_name,lv_tags"]);
    let before = lvs();

    // A pre- hook says no: the command fails naming it and quoting it; nothing changed.
    hook(
        "pre-vdi-destroy",
        "10-backup-running",
        "echo 'a backup of this disk is running' >&2; exit 3",
        0o755,
    );
    let e = fails(&["vdi", "destroy", "db", "--yes"], "HOOK_REFUSED");
    let msg = e.to_string();
    assert!(msg.contains("pre-vdi-destroy"), "{msg}");
    assert!(msg.contains("a backup of this disk is running"), "{msg}");
    assert!(msg.contains("10-backup-running"), "{msg}");
    assert_eq!(lvs(), before);
    json(&["vdi", "show", "db"]);
    std::fs::remove_dir_all(format!("{HOOKS}/pre-vdi-destroy.d")).unwrap();

    // A post- hook that fails, and one that hangs: the VDI is made, both are reported,
    // the hung one killed at the bound (2 s here), with what it started.
    std::fs::write(format!("{HOOKS}/timeout"), "2\n").unwrap();
    hook(
        "post-vdi-create",
        "10-fails",
        "echo 'replica host down' >&2; exit 1",
        0o755,
    );
    hook(
        "post-vdi-create",
        "20-hangs",
        "sleep 300 & sleep 300",
        0o755,
    );
    let start = Instant::now();
    let run = thinsr(&["--json", "vdi", "create", "logs", "--size", "64M"]);
    let took = start.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(took < Duration::from_secs(20), "{took:?}");
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let failures = v["hook_failures"].to_string();
    assert!(failures.contains("replica host down"), "{failures}");
    assert!(failures.contains("killed after 2 s"), "{failures}");
    assert!(run.stderr.contains("replica host down"), "{}", run.stderr);
    assert_eq!(sleepers(), 0, "the hung hook's children live on");
    json(&["vdi", "show", "logs"]);
    std::fs::remove_dir_all(format!("{HOOKS}/post-vdi-create.d")).unwrap();

    // A hook anyone may write is never run: a pre- hook refuses, a post- one is reported.
    hook(
        "pre-vdi-snapshot",
        "10-open",
        &format!("touch {LOG}"),
        0o777,
    );
    let e = fails(&["vdi", "snapshot", "db"], "HOOK_REFUSED");
    assert!(e.to_string().contains("not run"), "{e}");
    hook("post-vdi-clone", "10-open", &format!("touch {LOG}"), 0o777);
    let c = json(&["vdi", "clone", "db", "--name", "db-2"]);
    assert!(c["hook_failures"].to_string().contains("not run"), "{c}");
    assert!(!std::path::Path::new(LOG).exists(), "an unsafe hook ran");
    // Not executable, or named as a backup: not a hook at all.
    std::fs::remove_dir_all(format!("{HOOKS}/pre-vdi-snapshot.d")).unwrap();
    hook("pre-vdi-snapshot", "10-off", "exit 1", 0o644);
    hook("pre-vdi-snapshot", "20-old.dpkg-old", "exit 1", 0o755);
    json(&["vdi", "snapshot", "db", "--name", "db-snap"]);

    // A hook that calls thinsr: no lock is held while it runs.
    hook(
        "post-vdi-resize",
        "10-list",
        &format!("thinsr --json vdi list > {LOG}"),
        0o755,
    );
    let r = json(&["vdi", "resize", "db", "128M"]);
    assert!(r.get("hook_failures").is_none(), "{r}");
    let listed: Value = serde_json::from_str(&std::fs::read_to_string(LOG).unwrap()).unwrap();
    assert!(listed.to_string().contains("\"db\""), "{listed}");
}

/// The rest of the events, each once per operation that changed something, with its record:
/// attach and detach (CLI and xapi), revert, import, template introduce and forget, a
/// replica received, SR detach and attach; a `pre-vdi-detach` refusal keeps the device.
#[test]
fn attach_revert_template_replica_and_sr_events_fire_once_each() {
    vm();
    for h in [
        "post-vdi-create",
        "post-vdi-attach",
        "pre-vdi-detach",
        "post-vdi-detach",
        "pre-vdi-revert",
        "post-vdi-revert",
        "post-template-introduce",
        "post-template-forget",
        "post-replica-receive",
        "post-sr-attach",
        "post-sr-detach",
    ] {
        logging(h);
    }
    json(&["sr", "create", DISKS[0], "--name", "local"]);
    json(&["sr", "create", DISKS[1], "--name", "dr"]);
    assert!(events().is_empty());
    let v = json(&["vdi", "create", "web", "--size", "64M", "--sr", "local"]);
    assert_eq!(names(&events()), ["post-vdi-create"]);

    let dev = ok(&["vdi", "attach", "local/web"]).trim().to_string();
    let ev = events();
    assert_eq!(names(&ev), ["post-vdi-attach"]);
    assert_eq!(ev[0].1["vdi"]["uuid"], v["uuid"]);
    assert_eq!(ev[0].1["vdi"]["attached"], true, "{}", ev[0].1);
    ok(&["vdi", "attach", "local/web"]);
    assert!(
        events().is_empty(),
        "an attach of an attached VDI changed nothing"
    );
    write_at(&dev, 0, &noise(1 << 20, 1));
    // A pre-vdi-detach hook says no: the device stays.
    hook(
        "pre-vdi-detach",
        "10-in-use",
        "echo 'still exporting it' >&2; exit 1",
        0o755,
    );
    let e = fails(&["vdi", "detach", "local/web"], "HOOK_REFUSED");
    assert!(e.to_string().contains("still exporting it"), "{e}");
    assert!(std::path::Path::new(&dev).exists());
    std::fs::remove_file(format!("{HOOKS}/pre-vdi-detach.d/10-in-use")).unwrap();
    events();
    ok(&["vdi", "detach", "local/web"]);
    assert_eq!(names(&events()), ["pre-vdi-detach", "post-vdi-detach"]);
    ok(&["vdi", "detach", "local/web"]);
    assert!(
        events().is_empty(),
        "a detach of a detached VDI changed nothing"
    );

    let snap = json(&["vdi", "snapshot", "local/web", "--name", "web-1"]);
    json(&["--yes", "vdi", "revert", "local/web", "web-1"]);
    let ev = events();
    assert_eq!(names(&ev), ["pre-vdi-revert", "post-vdi-revert"]);
    assert!(ev.iter().all(|(_, r)| r["vdi"]["uuid"] == v["uuid"]));

    std::fs::write("/tmp/base.raw", noise(4 << 20, 2)).unwrap();
    let imported = json(&[
        "vdi",
        "import",
        "/tmp/base.raw",
        "--name",
        "imported",
        "--sr",
        "local",
    ]);
    let ev = events();
    assert_eq!(names(&ev), ["post-vdi-create"]);
    assert_eq!(ev[0].1["vdi"]["uuid"], imported["uuid"], "{}", ev[0].1);
    json(&[
        "template",
        "introduce",
        "file:///tmp/base.raw",
        "--name",
        "base",
        "--sr",
        "local",
    ]);
    let ev = events();
    assert_eq!(names(&ev), ["post-template-introduce"]);
    assert_eq!(ev[0].1["vdi"]["kind"], "template");
    json(&["template", "forget", "base", "--sr", "local"]);
    assert_eq!(names(&events()), ["post-template-forget"]);

    json(&[
        "vdi",
        "send",
        snap["uuid"].as_str().unwrap(),
        "-o",
        "/tmp/s.thinsr",
    ]);
    let got = json(&["vdi", "receive", "-i", "/tmp/s.thinsr", "--sr", "dr"]);
    let ev = events();
    assert_eq!(names(&ev), ["post-replica-receive"]);
    assert_eq!(ev[0].1["vdi"]["uuid"], got["replica"]["uuid"]);
    assert_eq!(ev[0].1["vdi"]["replica"]["snapshot"], snap["uuid"]);
    assert_eq!(ev[0].1["sr"]["name"], "dr");

    json(&["sr", "detach", "dr"]);
    let ev = events();
    assert_eq!(names(&ev), ["post-sr-detach"]);
    assert_eq!(ev[0].1["sr"]["name"], "dr");
    assert!(ev[0].1.get("vdi").is_none(), "{}", ev[0].1);
    json(&["sr", "attach", "dr"]);
    assert_eq!(names(&events()), ["post-sr-attach"]);
    json(&["sr", "attach", "dr"]);
    assert!(
        events().is_empty(),
        "an attach of an attached SR changed nothing"
    );

    // xapi: a VM start and stop, the same events from the method files.
    install();
    let uri = format!(
        "thinsr://{}/{}",
        v["sr"].as_str().unwrap(),
        v["uuid"].as_str().unwrap()
    );
    common::xapi::start(&uri);
    let ev = events();
    assert_eq!(names(&ev), ["post-vdi-attach"]);
    assert_eq!(ev[0].1["caller"], "xapi");
    common::xapi::stop(&uri);
    assert_eq!(names(&events()), ["pre-vdi-detach", "post-vdi-detach"]);
}
