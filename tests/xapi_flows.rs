//! The sequences xapi really runs against an SR, played by a client like
//! xapi-storage-script (tests/common/xapi.rs): vm-install from a template, VM start and
//! stop, renaming a running disk, a VM snapshot, a read-only attach of a template,
//! sr-probe, a host reinstall, a boot storm, a detach that loses a race, SMAPI tracing.

mod common;

use common::xapi::*;
use common::*;
use serde_json::{json, Value};

const SR_UUID: &str = "5b0c7f62-3f1e-4c57-9d7e-0a1b2c3d4e5f";

fn stat(sr: &str, key: &str) -> Value {
    call(VOLUME, "Volume.stat", json!({"sr": sr, "key": key}))
}

/// `Volume.create` as xapi calls it for a new disk.
fn create(sr: &str, name: &str, description: &str, size: u64) -> Value {
    call(
        VOLUME,
        "Volume.create",
        json!({"sr": sr, "name": name, "description": description, "size": size, "sharable": false}),
    )
}

/// A 4 MiB raw template image of noise (`seed`) at `path`, introduced as `name`.
fn raw_template(path: &str, name: &str, seed: u64) -> (Vec<u8>, Value) {
    let image = noise(4 << 20, seed);
    std::fs::write(path, &image).unwrap();
    let uri = format!("file://{path}");
    (
        image,
        json(&["template", "introduce", &uri, "--name", name]),
    )
}

fn lv_of(key: &str) -> String {
    json(&["vdi", "show", key])["lv"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn vm_install_start_rename_snapshot_and_stop() {
    vm();
    install();
    let q = call(VOLUME, "Plugin.Query", json!({}));
    let features: Vec<&str> = q["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(!features.contains(&"SR_METADATA"), "{q}");
    for f in [
        "THIN_PROVISIONING",
        "LARGE_VDI",
        "VDI_SNAPSHOT",
        "VDI_CLONE",
    ] {
        assert!(features.contains(&f), "{f}: {q}");
    }
    // xapi's uuid is the SR's.
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "Local thin");
    assert_eq!(sr, SR_UUID);
    assert_eq!(call(VOLUME, "SR.stat", json!({"sr": sr}))["uuid"], SR_UUID);
    assert_eq!(json(&["sr", "show", SR_UUID])["uuid"], SR_UUID);

    // vm-install: every disk is made with an empty label, then renamed.
    let v = create(&sr, "", "", 64 << 20);
    check_volume(&v);
    assert_eq!(v["name"], "");
    let key = v["key"].as_str().unwrap().to_string();
    assert_eq!(lv_of(&key), "vdi");
    let second = create(&sr, "", "", 8 << 20);
    assert_eq!(lv_of(second["key"].as_str().unwrap()), "vdi+1");
    call(
        VOLUME,
        "Volume.set_name",
        json!({"sr": sr, "key": key, "new_name": "web01 0"}),
    );
    assert_eq!(lv_of(&key), "web01_0");
    // Sharable disks are refused, never silently made unshared.
    let e = error(
        VOLUME,
        "Volume.create",
        json!({"sr": sr, "name": "shared", "description": "", "size": 8 << 20, "sharable": true}),
        "INVALID_ARGUMENT",
    );
    assert!(e["params"].to_string().contains("sharable"), "{e}");

    // VM start; the disk is renamed while the VM runs.
    let uri = v["uri"][0].as_str().unwrap().to_string();
    let dev = start(&uri);
    write_at(&dev, 0, &noise(1 << 20, 1));
    call(
        VOLUME,
        "Volume.set_name",
        json!({"sr": sr, "key": key, "new_name": "web01 system disk"}),
    );
    assert_eq!(stat(&sr, &key)["name"], "web01 system disk");
    // The VM's device is untouched: same path, same data, still writable.
    assert_eq!(lv_of(&key), "web01_0");
    assert!(std::path::Path::new(&dev).exists());
    write_at(&dev, 1 << 20, &noise(1 << 20, 2));
    assert_eq!(read_at(&dev, 0, 1 << 20), noise(1 << 20, 1));

    // VM snapshot: name and description copied; xapi's keys set on the snapshot.
    call(
        VOLUME,
        "Volume.set_description",
        json!({"sr": sr, "key": key, "new_description": "root fs"}),
    );
    let snap = call(VOLUME, "Volume.snapshot", json!({"sr": sr, "key": key}));
    check_volume(&snap);
    assert_eq!(
        (snap["name"].as_str(), snap["description"].as_str()),
        (Some("web01 system disk"), Some("root fs"))
    );
    let skey = snap["key"].as_str().unwrap().to_string();
    for (k, val) in [
        ("vdi-type", "user"),
        ("snapshot_of", key.as_str()),
        ("snapshot_time", "20261201T10:00:00Z"),
    ] {
        call(
            VOLUME,
            "Volume.set",
            json!({"sr": sr, "key": skey, "k": k, "v": val}),
        );
    }
    call(
        VOLUME,
        "Volume.set_name",
        json!({"sr": sr, "key": skey, "new_name": "before upgrade"}),
    );
    let clone = call(VOLUME, "Volume.clone", json!({"sr": sr, "key": skey}));
    assert_eq!(clone["name"], "before upgrade");
    let s = stat(&sr, &skey);
    assert_eq!(s["keys"]["snapshot_of"], key.as_str(), "{s}");

    // VM shutdown: the LV takes the label's name once it is free.
    stop(&uri);
    assert_eq!(lv_of(&key), "web01_system_disk");
    let dev = start(&uri);
    assert_eq!(read_at(&dev, 1 << 20, 1 << 20), noise(1 << 20, 2));
    stop(&uri);
    ok(&["sr", "check", "Local thin"]);
}

#[test]
fn template_volumes_attach_read_only_and_take_xapis_keys() {
    vm();
    install();
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "Local thin");
    let (image, t) = raw_template("/tmp/t.raw", "Debian 12", 3);
    let tkey = t["uuid"].as_str().unwrap().to_string();
    let tv = stat(&sr, &tkey);
    assert_eq!(tv["read_write"], false);
    // Labels and keys are xapi's: they change on templates too.
    call(
        VOLUME,
        "Volume.set_name",
        json!({"sr": sr, "key": tkey, "new_name": "Debian 12 (base)"}),
    );
    call(
        VOLUME,
        "Volume.set",
        json!({"sr": sr, "key": tkey, "k": "vdi-type", "v": "user"}),
    );
    call(
        VOLUME,
        "Volume.set_description",
        json!({"sr": sr, "key": tkey, "new_description": "golden"}),
    );
    call(
        VOLUME,
        "Volume.unset",
        json!({"sr": sr, "key": tkey, "k": "vdi-type"}),
    );
    let tv = stat(&sr, &tkey);
    assert_eq!(
        (tv["name"].as_str(), tv["description"].as_str()),
        (Some("Debian 12 (base)"), Some("golden"))
    );
    // A read-only VBD, vdi-copy or vdi-export of the template: attached read-only.
    let uri = tv["uri"][0].as_str().unwrap().to_string();
    let dev = start(&uri);
    assert!(refuses_writes(&dev), "{dev} takes writes");
    assert_eq!(crc_at(&dev, 0, 4 << 20), crc32fast::hash(&image));
    // Two readers at once (a copy while a VM reads it) share the device.
    let again = start(&uri);
    assert_eq!(again, dev);
    stop(&uri);
    assert_eq!(std::fs::read("/tmp/t.raw").unwrap(), image);
    assert!(our_dm_devices().is_empty(), "{:?}", our_dm_devices());
}

#[test]
fn sr_probe_finds_srs_on_a_device_and_attach_brings_one_back_after_a_reinstall() {
    vm();
    install();
    let (sr, config) = sr_create(DISKS[0], SR_UUID, "Local thin");
    let v = create(&sr, "db", "data", 32 << 20);
    let key = v["key"].as_str().unwrap().to_string();
    let dev = start(v["uri"][0].as_str().unwrap());
    write_at(&dev, 0, &noise(1 << 20, 4));
    stop(v["uri"][0].as_str().unwrap());

    // A blank disk holds none; the SR's disk holds this one, with an sr record.
    let none = call(
        VOLUME,
        "SR.probe",
        json!({"configuration": {"device": DISKS[1]}}),
    );
    assert_eq!(none, json!([]));
    let found = call(
        VOLUME,
        "SR.probe",
        json!({"configuration": {"device": DISKS[0]}}),
    );
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found[0]["configuration"]["sr_uuid"], SR_UUID, "{found}");
    assert_eq!(found[0]["sr"]["uuid"], SR_UUID, "{found}");
    assert_eq!(found[0]["sr"]["name"], "Local thin", "{found}");

    // The host is reinstalled: its registry is gone, the disks are as they were.
    call(VOLUME, "SR.detach", json!({"sr": sr}));
    sh(&["rm", "-rf", "/etc/thinsr"]);
    assert_eq!(json(&["sr", "list"]), json!([]));
    let found = call(
        VOLUME,
        "SR.probe",
        json!({"configuration": {"device": DISKS[0]}}),
    );
    assert_eq!(found[0]["configuration"]["sr_uuid"], SR_UUID, "{found}");
    assert!(found[0]["sr"].is_object(), "{found}");
    // xapi plugs the PBD again with what SR.create returned, and nothing else.
    let back = call(VOLUME, "SR.attach", json!({"configuration": config}));
    assert_eq!(back, SR_UUID);
    let s = call(VOLUME, "SR.stat", json!({"sr": SR_UUID}));
    assert_eq!(
        (s["name"].as_str(), s["uuid"].as_str()),
        (Some("Local thin"), Some(SR_UUID))
    );
    let ls = call(VOLUME, "SR.ls", json!({"sr": SR_UUID}));
    let db = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["key"] == key.as_str())
        .expect("the VDI is back")
        .clone();
    assert_eq!(
        (db["name"].as_str(), db["description"].as_str()),
        (Some("db"), Some("data"))
    );
    let dev = start(db["uri"][0].as_str().unwrap());
    assert_eq!(read_at(&dev, 0, 1 << 20), noise(1 << 20, 4));
    stop(db["uri"][0].as_str().unwrap());
}

#[test]
fn a_boot_storm_of_twelve_clones_attaches_and_detaches_every_one() {
    vm();
    install();
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "Local thin");
    let base = create(&sr, "golden", "", 64 << 20);
    let base_key = base["key"].as_str().unwrap().to_string();
    let keys: Vec<String> = (0..12)
        .map(|_| {
            call(VOLUME, "Volume.clone", json!({"sr": sr, "key": base_key}))["key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let uri = |k: &str| format!("thinsr://{sr}/{k}");
    // Twelve VMs start at once: each asks for its disk's stat and its attach together.
    let mut calls = Vec::new();
    for k in &keys {
        calls.push(("Volume.stat", json!({"sr": sr, "key": k})));
        calls.push(("Datapath.attach", json!({"uri": uri(k), "domain": "0"})));
    }
    let started = std::time::Instant::now();
    let results = parallel(calls);
    let failed: Vec<&(i32, Value)> = results.iter().filter(|(c, _)| *c != 0).collect();
    assert!(
        failed.is_empty(),
        "{} of 24 calls failed: {failed:?}",
        failed.len()
    );
    eprintln!("24 concurrent calls took {:?}", started.elapsed());
    let activations = parallel(
        keys.iter()
            .map(|k| ("Datapath.activate", json!({"uri": uri(k), "domain": "0"})))
            .collect(),
    );
    assert!(activations.iter().all(|(c, _)| *c == 0), "{activations:?}");
    // And stop at once.
    let detaches = parallel(
        keys.iter()
            .map(|k| ("Datapath.detach", json!({"uri": uri(k), "domain": "0"})))
            .collect(),
    );
    assert!(
        detaches.iter().all(|(c, v)| *c == 0 && v.is_null()),
        "{detaches:?}"
    );
    assert!(
        !std::path::Path::new(&format!("/run/thinsr/detach-queue/{sr}")).exists(),
        "a detach was left queued"
    );
    for k in &keys {
        assert_eq!(json(&["vdi", "show", k])["attached"], false);
    }
    let destroys = parallel(
        keys.iter()
            .map(|k| ("Volume.destroy", json!({"sr": sr, "key": k})))
            .collect(),
    );
    assert!(destroys.iter().all(|(c, _)| *c == 0), "{destroys:?}");
    call(VOLUME, "SR.detach", json!({"sr": sr}));
}

#[test]
fn a_detach_that_loses_a_race_is_finished_before_the_next_call() {
    vm();
    install();
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "Local thin");
    let v = create(&sr, "disk", "", 16 << 20);
    let key = v["key"].as_str().unwrap().to_string();
    let uri = v["uri"][0].as_str().unwrap().to_string();
    start(&uri);
    // Someone holds the SR's lock for longer than the detach will wait.
    let held = thinsr::host::lock::acquire(SR_UUID, "test").unwrap();
    let t = std::time::Instant::now();
    let (code, out) = run_with(
        DATAPATH,
        "Datapath.detach",
        json!({"uri": uri, "domain": "0"}),
        &[("THINSR_LOCK_TIMEOUT", "0.5")],
    );
    assert_eq!((code, out), (0, Value::Null));
    assert!(t.elapsed() < std::time::Duration::from_secs(30));
    let queued = format!("/run/thinsr/detach-queue/{sr}/{key}");
    assert!(std::path::Path::new(&queued).exists());
    assert_eq!(json(&["vdi", "show", &key])["attached"], true);
    drop(held);
    // The next call on the SR finishes it first: the destroy finds the VDI detached.
    assert_eq!(
        call(VOLUME, "Volume.destroy", json!({"sr": sr, "key": key})),
        Value::Null
    );
    assert!(!std::path::Path::new(&queued).exists());
    // A queued detach never runs after the volume was attached again.
    let w = create(&sr, "again", "", 16 << 20);
    let wuri = w["uri"][0].as_str().unwrap().to_string();
    start(&wuri);
    let held = thinsr::host::lock::acquire(SR_UUID, "test").unwrap();
    run_with(
        DATAPATH,
        "Datapath.detach",
        json!({"uri": wuri, "domain": "0"}),
        &[("THINSR_LOCK_TIMEOUT", "0.5")],
    );
    drop(held);
    let dev = start(&wuri);
    call(VOLUME, "SR.stat", json!({"sr": sr}));
    assert!(std::path::Path::new(&dev).exists());
    assert_eq!(
        json(&["vdi", "show", w["key"].as_str().unwrap()])["attached"],
        true
    );
    stop(&wuri);
}

/// Runs a method file as SMAPI tracing does: `python3 -m observer FILE --json`, where
/// observer.py loads FILE with `runpy.run_path(FILE, run_name="__main__")`.
fn through_runpy(method: &str, args: Value) -> (i32, Value) {
    talk(observer(method), method, args)
}

fn observer(method: &str) -> std::process::Command {
    let file = format!("{}/{method}", dir_of(method));
    let observer = format!(
        "import runpy, sys\nsys.argv = ['{file}', '--json']\nrunpy.run_path('{file}', run_name='__main__')\n"
    );
    let mut python = std::process::Command::new("python3");
    python.args(["-c", &observer]);
    python
}

#[test]
fn every_method_file_runs_through_runpy_as_smapi_tracing_loads_it() {
    vm();
    install();
    for dir in [VOLUME, DATAPATH] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with("#!/usr/bin/env python3\n"),
                "{}",
                path.display()
            );
            let method = path.file_name().unwrap().to_str().unwrap().to_string();
            // Every method answers in xapi's shape through runpy: a result, or an error
            // (to arguments no IDL call has, on purpose).
            let (code, v) = talk_unchecked(
                observer(&method),
                &method,
                json!({"sr": "nope", "uri": "thinsr://nope/x"}),
            );
            if code != 0 {
                assert!(v["code"].is_string(), "{method}: {v}");
            }
        }
    }
    let (code, q) = through_runpy("Plugin.Query", json!({}));
    assert_eq!((code, q["plugin"].as_str()), (0, Some("thinsr")));
    // A whole small life, traced.
    let (code, config) = through_runpy(
        "SR.create",
        json!({"uuid": SR_UUID, "configuration": {"device": DISKS[0]}, "name": "traced", "description": ""}),
    );
    assert_eq!(code, 0, "{config}");
    let (code, sr) = through_runpy("SR.attach", json!({"configuration": config}));
    assert_eq!((code, sr.as_str()), (0, Some(SR_UUID)));
    let (code, v) = through_runpy(
        "Volume.create",
        json!({"sr": SR_UUID, "name": "", "description": "", "size": 8 << 20, "sharable": false}),
    );
    assert_eq!(code, 0, "{v}");
    let uri = v["uri"][0].clone();
    let (code, dp) = through_runpy("Datapath.attach", json!({"uri": uri, "domain": "0"}));
    assert_eq!(code, 0, "{dp}");
    let (code, _) = through_runpy("Datapath.detach", json!({"uri": uri, "domain": "0"}));
    assert_eq!(code, 0);
    let (code, e) = through_runpy("Volume.stat", json!({"sr": SR_UUID, "key": "no-such-key"}));
    assert_eq!(
        (code, e["code"].as_str()),
        (1, Some("Volume_does_not_exist"))
    );
}

#[test]
fn template_servers_start_in_a_systemd_scope_of_their_own_where_systemd_runs() {
    vm();
    let path = systemd_run_spy();
    let run = |args: &[&str]| {
        let out = thinsr_cmd(args).env("PATH", &path).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["sr", "create", DISKS[0], "--name", "local"]);
    sh(&["qemu-img", "create", "-f", "qcow2", "/tmp/t.qcow2", "32M"]);
    run(&[
        "template",
        "introduce",
        "file:///tmp/t.qcow2",
        "--name",
        "tpl",
    ]);
    run(&["vdi", "clone", "tpl", "--name", "web"]);
    let dev = run(&["vdi", "attach", "web"]).trim().to_string();
    let calls = std::fs::read_to_string("/tmp/spy/calls").unwrap();
    assert!(
        calls.starts_with("--scope --unit thinsr-nbd-nbd"),
        "{calls}"
    );
    // qemu-nbd is run by the path thinsr found it at (PATH or qemu-dp's directory).
    assert!(calls.contains("/qemu-nbd --read-only "), "{calls}");
    // The clone reads the template through the server the scope holds.
    assert_eq!(read_at(&dev, 0, 4096), vec![0u8; 4096]);
    write_at(&dev, 0, &noise(4096, 5));
    run(&["vdi", "detach", "web"]);
}

fn attach_for(uri: &str, domain: &str) -> String {
    let dp = call(
        DATAPATH,
        "Datapath.attach",
        json!({"uri": uri, "domain": domain}),
    );
    dp["implementations"][1][1]["path"]
        .as_str()
        .unwrap()
        .to_string()
}

fn dp(method: &str, uri: &str, domain: &str) {
    assert_eq!(
        call(DATAPATH, method, json!({"uri": uri, "domain": domain})),
        Value::Null
    );
}

fn size_of(dev: &str) -> u64 {
    use std::io::{Seek, SeekFrom};
    std::fs::File::open(dev)
        .unwrap()
        .seek(SeekFrom::End(0))
        .unwrap()
}

/// Several domains on one volume, as the IDL's datapath counts them: read-only for any
/// number (the device read-only in the kernel while they last), read-write for one at a
/// time, never both; the device goes with the last domain's detach, not the first's.
#[test]
fn domains_share_a_volume_and_the_device_goes_with_the_last() {
    vm();
    install();
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "Local thin");
    let v = create(&sr, "backup me", "", 64 << 20);
    let uri = v["uri"][0].as_str().unwrap().to_string();
    let dev = attach_for(&uri, "1");
    write_at(&dev, 0, &noise(1 << 20, 5));
    assert_eq!(attach_for(&uri, "2"), dev);
    // Two read-only activations (dom0 reading for a backup, say): the kernel refuses writes.
    dp("Datapath.activate_readonly", &uri, "1");
    dp("Datapath.activate_readonly", &uri, "2");
    assert!(
        refuses_writes(&dev),
        "{dev} takes writes while active read-only"
    );
    // A writer meanwhile is refused, naming why.
    attach_for(&uri, "3");
    let e = error(
        DATAPATH,
        "Datapath.activate",
        json!({"uri": uri, "domain": "3"}),
        "VDI_ATTACHED",
    );
    assert!(e.to_string().contains("read-only for domain"), "{e}");
    // The first reader leaves: the device stays for the second, still read-only.
    dp("Datapath.deactivate", &uri, "1");
    dp("Datapath.detach", &uri, "1");
    assert!(refuses_writes(&dev));
    assert_eq!(
        crc_at(&dev, 0, 1 << 20),
        crc32fast::hash(&noise(1 << 20, 5))
    );
    dp("Datapath.deactivate", &uri, "2");
    assert!(!refuses_writes(&dev), "the last read-only activation ended");
    dp("Datapath.detach", &uri, "2");
    // One writer at a time.
    dp("Datapath.activate", &uri, "3");
    attach_for(&uri, "4");
    error(
        DATAPATH,
        "Datapath.activate",
        json!({"uri": uri, "domain": "4"}),
        "VDI_ATTACHED",
    );
    error(
        DATAPATH,
        "Datapath.activate_readonly",
        json!({"uri": uri, "domain": "4"}),
        "VDI_ATTACHED",
    );
    dp("Datapath.deactivate", &uri, "3");
    dp("Datapath.detach", &uri, "3");
    assert!(std::path::Path::new(&dev).exists(), "domain 4 still has it");
    dp("Datapath.activate", &uri, "4");
    // What the volume holds now (refuses_writes wrote its first 4 KiB once it could).
    let held = crc_at(&dev, 0, 1 << 20);
    dp("Datapath.deactivate", &uri, "4");
    dp("Datapath.detach", &uri, "4");
    assert!(
        !std::path::Path::new(&dev).exists(),
        "{dev} outlived its last domain"
    );
    // A snapshot is read-only: two VMs activating it (however they ask) both read it.
    let snap = call(
        VOLUME,
        "Volume.snapshot",
        json!({"sr": sr, "key": v["key"].as_str().unwrap()}),
    );
    let suri = snap["uri"][0].as_str().unwrap().to_string();
    let sdev = attach_for(&suri, "8");
    assert_eq!(attach_for(&suri, "9"), sdev);
    dp("Datapath.activate", &suri, "8");
    dp("Datapath.activate", &suri, "9");
    assert_eq!(crc_at(&sdev, 0, 1 << 20), held);
    for d in ["8", "9"] {
        dp("Datapath.deactivate", &suri, d);
        dp("Datapath.detach", &suri, d);
    }
    assert!(our_dm_devices().is_empty() && !std::path::Path::new(&sdev).exists());
    assert_eq!(stat(&sr, v["key"].as_str().unwrap())["keys"], json!({}));
    assert!(json(&["sr", "check", "Local thin"])["findings"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// VDI_RESIZE_ONLINE: a running VM's disk grows while it writes, a thin VDI's and a
/// template clone's (whose device of thinsr's gets the new length); the device the VM was
/// given reports the new size and takes writes at its new end. Shrinking stays refused,
/// and so does growing a preallocated VDI while attached (its new part is zeroed first).
#[test]
fn a_running_disk_grows_while_it_is_written() {
    vm();
    install();
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "Local thin");
    let (_, t) = raw_template("/tmp/base.raw", "base", 8);
    let clone = call(
        VOLUME,
        "Volume.clone",
        json!({"sr": sr, "key": t["uuid"].as_str().unwrap()}),
    );
    let thin = create(&sr, "data", "", 32 << 20);
    for (v, old) in [(&thin, 32u64 << 20), (&clone, 4 << 20)] {
        let key = v["key"].as_str().unwrap().to_string();
        let uri = v["uri"][0].as_str().unwrap().to_string();
        let dev = attach_for(&uri, "7");
        dp("Datapath.activate", &uri, "7");
        assert_eq!(size_of(&dev), old);
        // A writer at work across the resize: 1 MiB records at the start, over and over,
        // until it sees the disk grow, then at its new end, as a VM would.
        let new = old + (64 << 20);
        let writer = {
            let dev = dev.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let began = std::time::Instant::now();
                let waiting = |d: &str| size_of(d) < new && began.elapsed().as_secs() < 120;
                while waiting(&dev) || n < 3 {
                    write_at(&dev, 0, &noise(1 << 20, 100 + n));
                    n += 1;
                }
                write_at(&dev, new - (1 << 20), &noise(1 << 20, 99));
                n - 1
            })
        };
        assert_eq!(
            call(
                VOLUME,
                "Volume.resize",
                json!({"sr": sr, "key": key, "new_size": new}),
            ),
            Value::Null
        );
        let last = writer.join().unwrap();
        assert_eq!(read_at(&dev, new - (1 << 20), 1 << 20), noise(1 << 20, 99));
        assert_eq!(size_of(&dev), new, "{dev} does not show the new size");
        assert_eq!(stat(&sr, &key)["virtual_size"], new);
        // The new end takes writes and gives them back; the old data is intact.
        write_at(&dev, new - 4096, &[0x5a; 4096]);
        assert_eq!(read_at(&dev, new - 4096, 4096), vec![0x5a; 4096]);
        assert_eq!(read_at(&dev, 0, 1 << 20), noise(1 << 20, 100 + last));
        if old == 4 << 20 {
            // The clone still reads nothing of its own where the template ended.
            assert_eq!(read_at(&dev, 4 << 20, 4096), vec![0; 4096]);
        } else {
            assert_eq!(read_at(&dev, old, 4096), vec![0; 4096]);
        }
        // Shrinking an attached disk: refused.
        error(
            VOLUME,
            "Volume.resize",
            json!({"sr": sr, "key": key, "new_size": old}),
            "SHRINK_REFUSED",
        );
        dp("Datapath.deactivate", &uri, "7");
        dp("Datapath.detach", &uri, "7");
    }
    // A preallocated VDI grows while detached only: its new part is zeroed before use.
    json(&["vdi", "create", "pre", "--size", "8M", "--preallocate"]);
    ok(&["vdi", "attach", "pre"]);
    let e = fails(&["vdi", "resize", "pre", "16M"], "VDI_ATTACHED");
    assert!(e.to_string().contains("grows only while detached"), "{e}");
    ok(&["vdi", "detach", "pre"]);
    assert!(json(&["sr", "check", "Local thin"])["findings"]
        .as_array()
        .unwrap()
        .is_empty());
}
