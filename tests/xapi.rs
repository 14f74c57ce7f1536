//! thinsr as xapi's storage plugin, in the test VM: this test plays xapi's part, running the
//! installed executables with `--json` and the arguments on stdin through a whole life.

mod common;

use common::xapi::*;
use common::*;
use serde_json::{json, Value};

#[test]
fn xapi_drives_a_whole_life_through_the_plugin() {
    vm();
    ok(&["xapi", "install", "--root", ROOT]);
    for m in ["Plugin.Query", "SR.create", "Volume.set", "Datapath.attach"] {
        let dir = if m.starts_with("Datapath") {
            DATAPATH
        } else {
            VOLUME
        };
        assert!(std::path::Path::new(&format!("{dir}/{m}")).exists(), "{m}");
    }

    let q = call(VOLUME, "Plugin.Query", json!({}));
    assert_eq!(q["plugin"], "thinsr");
    assert_eq!(q["required_api_version"], "5.0");
    assert!(q["configuration"].is_object() && q["features"].is_array());
    assert_eq!(q["required_cluster_stack"], json!([]));
    call(DATAPATH, "Plugin.Query", json!({}));

    let config = call(
        VOLUME,
        "SR.create",
        json!({"uuid": "1e3c6d5e-0000-4000-8000-000000000001", "configuration": {"device": DISKS[0]},
               "name": "Local thin", "description": "made by xapi"}),
    );
    assert!(config["sr"].is_string(), "{config}");
    let sr = call(VOLUME, "SR.attach", json!({"configuration": config}));
    let sr = sr.as_str().unwrap().to_string();
    let stat = call(VOLUME, "SR.stat", json!({"sr": sr}));
    check_sr_stat(&stat);
    assert_eq!(stat["name"], "Local thin");
    assert_eq!(stat["description"], "made by xapi");
    let probe = call(VOLUME, "SR.probe", json!({"configuration": {}}));
    assert_eq!(probe[0]["configuration"]["sr"], sr.as_str(), "{probe}");

    let v = call(
        VOLUME,
        "Volume.create",
        json!({"sr": sr, "name": "vm disk", "description": "root", "size": 64 << 20, "sharable": false}),
    );
    check_volume(&v);
    assert_eq!(v["virtual_size"], 64 << 20);
    let key = v["key"].as_str().unwrap().to_string();
    // What xapi stores after a snapshot, five keys.
    for (k, val) in [
        ("vdi-type", "user"),
        ("snapshot_time", "20261121T10:00:00Z"),
        ("is_a_snapshot", "false"),
        ("snapshot_of", ""),
        ("content_id", "c0ffee"),
    ] {
        assert_eq!(
            call(
                VOLUME,
                "Volume.set",
                json!({"sr": sr, "key": key, "k": k, "v": val})
            ),
            Value::Null
        );
    }
    let snap = call(VOLUME, "Volume.snapshot", json!({"sr": sr, "key": key}));
    check_volume(&snap);
    assert_eq!(snap["read_write"], false);
    let clone = call(VOLUME, "Volume.clone", json!({"sr": sr, "key": key}));
    check_volume(&clone);
    assert_eq!(clone["read_write"], true);
    call(
        VOLUME,
        "Volume.set_name",
        json!({"sr": sr, "key": clone["key"], "new_name": "copy"}),
    );
    call(
        VOLUME,
        "Volume.set_description",
        json!({"sr": sr, "key": clone["key"], "new_description": "d"}),
    );
    call(
        VOLUME,
        "Volume.unset",
        json!({"sr": sr, "key": key, "k": "content_id"}),
    );

    let ls = call(VOLUME, "SR.ls", json!({"sr": sr}));
    let ls = ls.as_array().unwrap();
    assert_eq!(ls.len(), 3);
    ls.iter().for_each(check_volume);
    let mine = ls.iter().find(|x| x["key"] == key.as_str()).unwrap();
    assert_eq!(mine["keys"]["vdi-type"], "user");
    assert_eq!(mine["keys"]["snapshot_time"], "20261121T10:00:00Z");
    assert!(mine["keys"].get("content_id").is_none(), "{mine}");
    let copy = ls.iter().find(|x| x["key"] == clone["key"]).unwrap();
    assert_eq!(
        (copy["name"].as_str(), copy["description"].as_str()),
        (Some("copy"), Some("d"))
    );

    // The datapath: a real block device holding what was written.
    let uri = v["uri"][0].as_str().unwrap().to_string();
    let dp = call(
        DATAPATH,
        "Datapath.attach",
        json!({"uri": uri, "domain": "0"}),
    );
    let xen = &dp["implementations"][0];
    assert_eq!(xen[0], "XenDisk", "{dp}");
    assert_eq!(xen[1]["backend_type"], "vbd");
    let dev = xen[1]["params"].as_str().unwrap().to_string();
    assert_eq!(dp["implementations"][1][1]["path"], dev.as_str());
    call(
        DATAPATH,
        "Datapath.activate",
        json!({"uri": uri, "domain": "0"}),
    );
    let data = noise(4096, 77);
    write_at(&dev, 4096, &data);
    assert_eq!(read_at(&dev, 4096, 4096), data);
    stop(&uri);
    // Detach never fails, even for what does not exist.
    call(
        DATAPATH,
        "Datapath.detach",
        json!({"uri": "thinsr://nothing/none", "domain": "0"}),
    );
    let dp = call(
        DATAPATH,
        "Datapath.attach",
        json!({"uri": uri, "domain": "0"}),
    );
    let dev = dp["implementations"][0][1]["params"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(read_at(&dev, 4096, 4096), data);
    call(
        DATAPATH,
        "Datapath.detach",
        json!({"uri": uri, "domain": "0"}),
    );

    call(
        VOLUME,
        "Volume.resize",
        json!({"sr": sr, "key": key, "new_size": 128 << 20}),
    );
    let st = call(VOLUME, "Volume.stat", json!({"sr": sr, "key": key}));
    check_volume(&st);
    assert_eq!(st["virtual_size"], 128 << 20);

    // Templates show read-only; what would change one fails with thinsr's code.
    sh(&["truncate", "-s", "16M", "/tmp/t.raw"]);
    let t = json(&["template", "introduce", "file:///tmp/t.raw"]);
    let tkey = t["uuid"].as_str().unwrap();
    let ls = call(VOLUME, "SR.ls", json!({"sr": sr}));
    let tv = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["key"] == tkey)
        .unwrap()
        .clone();
    check_volume(&tv);
    assert_eq!(tv["read_write"], false);
    error(
        VOLUME,
        "Volume.resize",
        json!({"sr": sr, "key": tkey, "new_size": 1 << 30}),
        "VDI_IS_TEMPLATE",
    );
    error(
        VOLUME,
        "Volume.destroy",
        json!({"sr": sr, "key": tkey}),
        "VDI_IS_TEMPLATE",
    );
    let tclone = call(VOLUME, "Volume.clone", json!({"sr": sr, "key": tkey}));
    check_volume(&tclone);

    // Unknown keys and SRs, xapi's own exceptions.
    let e = error(
        VOLUME,
        "Volume.stat",
        json!({"sr": sr, "key": "no-such-key"}),
        "Volume_does_not_exist",
    );
    assert_eq!(e["params"][0], "no-such-key");
    error(
        VOLUME,
        "SR.stat",
        json!({"sr": "no-such-sr"}),
        "SR_does_not_exist",
    );

    for k in [&tclone["key"], &clone["key"], &snap["key"], &json!(key)] {
        assert_eq!(
            call(VOLUME, "Volume.destroy", json!({"sr": sr, "key": k})),
            Value::Null
        );
    }
    json(&["template", "forget", tkey]);
    assert!(call(VOLUME, "SR.ls", json!({"sr": sr}))
        .as_array()
        .unwrap()
        .is_empty());
    call(
        VOLUME,
        "SR.set_name",
        json!({"sr": sr, "new_name": "renamed"}),
    );
    call(
        VOLUME,
        "SR.set_description",
        json!({"sr": sr, "new_description": "x"}),
    );
    assert_eq!(
        call(VOLUME, "SR.stat", json!({"sr": sr}))["name"],
        "renamed"
    );
    assert_eq!(call(VOLUME, "SR.detach", json!({"sr": sr})), Value::Null);
    call(VOLUME, "SR.attach", json!({"configuration": config}));
    assert_eq!(call(VOLUME, "SR.destroy", json!({"sr": sr})), Value::Null);
    error(VOLUME, "SR.stat", json!({"sr": sr}), "SR_does_not_exist");
    ok(&["xapi", "uninstall", "--root", ROOT]);
    assert!(!std::path::Path::new(VOLUME).exists());
}

/// The IDL check that every xapi call of the suite passes through refuses what ocaml-rpc
/// would: a volume record without a required field, a revert that returns a record
/// rather than unit, a null in an optional field, a wrong variant, an argument xapi does
/// not send. No VM needed: it is the test client's own logic.
#[test]
fn the_idl_check_refuses_what_xapi_could_not_decode() {
    use common::idl::{check_args, check_result};
    let good = json!({"key": "k", "uuid": "u", "name": "n", "description": "",
        "read_write": true, "sharable": false, "virtual_size": 1, "physical_utilisation": 0,
        "uri": ["thinsr://s/k"], "keys": {}, "volume_type": "Data", "cbt_enabled": false,
        "extra": "ignored"});
    check_result("Volume.stat", &good).unwrap();
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("virtual_size");
    let e = check_result("Volume.stat", &missing).unwrap_err();
    assert!(e.contains("'virtual_size' is missing"), "{e}");
    // Optional fields may be absent, but not null.
    let mut absent = good.clone();
    absent.as_object_mut().unwrap().remove("volume_type");
    check_result("Volume.stat", &absent).unwrap();
    let mut null = good.clone();
    null["cbt_enabled"] = Value::Null;
    assert!(check_result("Volume.stat", &null).is_err());
    let mut variant = good.clone();
    variant["volume_type"] = json!("Snapshot");
    assert!(check_result("Volume.stat", &variant).is_err());
    let mut size = good.clone();
    size["virtual_size"] = json!("1");
    assert!(check_result("Volume.stat", &size).is_err());
    // Unit is null only: a revert that answers with the volume record fails.
    check_result("Volume.revert", &Value::Null).unwrap();
    let e = check_result("Volume.revert", &good).unwrap_err();
    assert!(e.contains("null (unit)"), "{e}");
    // Health carries its text; a bare constructor name is not enough.
    let stat = json!({"sr": "s", "name": "n", "description": "", "free_space": 0,
        "total_space": 0, "datasources": [], "clustered": false, "health": ["Healthy", ""]});
    check_result("SR.stat", &stat).unwrap();
    let mut bare = stat.clone();
    bare["health"] = json!("Healthy");
    assert!(check_result("SR.stat", &bare).is_err());
    // Arguments: all of them, typed, and no others.
    let args = json!({"dbg": "d", "sr": "s", "name": "n", "description": "", "size": 1,
        "sharable": false});
    check_args("Volume.create", &args).unwrap();
    let mut without = args.clone();
    without.as_object_mut().unwrap().remove("sharable");
    assert!(check_args("Volume.create", &without).is_err());
    let mut extra = args.clone();
    extra["uuid"] = json!("u");
    assert!(check_args("Volume.create", &extra).is_err());
    assert!(check_args(
        "Datapath.attach",
        &json!({"dbg": "d", "uri": "u", "domain": 0})
    )
    .is_err());
    assert!(check_args("Volume.nonsense", &json!({"dbg": "d"})).is_err());
}

/// xapi-storage-script watches `<root>/volume` and `<root>/datapath` with inotify and calls
/// `Plugin.Query` as soon as a plugin directory appears (never again). A watcher that does
/// the same sees only complete plugins, at install and at upgrade; a directory made and
/// then filled, as before, is caught half-made (the control: the watcher can fail).
#[test]
fn the_plugin_appears_whole_to_a_watcher_like_xapis() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::sync::mpsc;
    vm();
    let root = "/tmp/watched";
    for d in ["volume", "datapath"] {
        std::fs::create_dir_all(format!("{root}/{d}")).unwrap();
    }
    let (tx, rx) = mpsc::channel::<(String, bool, String)>();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let ino = Inotify::init(InitFlags::empty()).unwrap();
        let mut dirs = std::collections::HashMap::new();
        for d in ["volume", "datapath"] {
            let wd = ino
                .add_watch(
                    format!("{root}/{d}").as_str(),
                    AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
                )
                .unwrap();
            dirs.insert(wd, d);
        }
        ready_tx.send(()).unwrap();
        loop {
            for e in ino.read_events().unwrap() {
                let Some(name) = e.name.and_then(|n| n.into_string().ok()) else {
                    continue;
                };
                // At once, as xapi-storage-script registers a plugin it sees.
                let query = format!("{root}/{}/{name}/Plugin.Query", dirs[&e.wd]);
                let out = std::process::Command::new(&query)
                    .arg("--json")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .and_then(|mut c| {
                        use std::io::Write;
                        c.stdin
                            .take()
                            .unwrap()
                            .write_all(b"{\"dbg\": \"watcher\"}")?;
                        c.wait_with_output()
                    });
                let (ok, text) = match out {
                    Ok(o) => (
                        o.status.success(),
                        String::from_utf8_lossy(&o.stdout).into_owned(),
                    ),
                    Err(e) => (false, e.to_string()),
                };
                if tx
                    .send((format!("{}/{name}", dirs[&e.wd]), ok, text))
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    ready_rx.recv().unwrap();
    let seen = |n: usize| -> Vec<(String, bool, String)> {
        (0..n)
            .map(|_| {
                rx.recv_timeout(std::time::Duration::from_secs(30))
                    .expect("an event")
            })
            .collect()
    };

    // The control: a directory made, then filled, is seen before its files exist.
    std::fs::create_dir(format!("{root}/datapath/control")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    ok(&["xapi", "install", "--root", "/tmp/control-src"]);
    std::fs::copy(
        "/tmp/control-src/datapath/thinsr/Plugin.Query",
        format!("{root}/datapath/control/Plugin.Query"),
    )
    .unwrap();
    let control = seen(1);
    assert_eq!(control[0].0, "datapath/control");
    assert!(
        !control[0].1,
        "the watcher saw a complete plugin: {control:?}"
    );
    std::fs::remove_dir_all(format!("{root}/datapath/control")).unwrap();

    // Install, then an upgrade over it: every directory the watcher sees answers whole.
    for round in ["install", "upgrade"] {
        ok(&["xapi", "install", "--root", root]);
        let events = seen(2);
        for (dir, ok, text) in &events {
            assert!(ok, "{round}: {dir} answered {text}");
            let q: Value = serde_json::from_str(text).unwrap();
            assert!(
                q["features"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|f| f == "VDI_ACTIVATE_READONLY"),
                "{round}: {dir}: {q}"
            );
        }
        let mut dirs: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
        dirs.sort();
        assert_eq!(
            dirs,
            ["datapath/thinsr", "volume/org.xen.xapi.storage.thinsr"],
            "{round}: nothing else appears where xapi looks"
        );
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(500))
            .is_err());
    }
    // Nothing is left beside them; uninstall removes both whole.
    let left: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    ok(&["xapi", "uninstall", "--root", root]);
    assert!(std::fs::read_dir(format!("{root}/volume"))
        .unwrap()
        .next()
        .is_none());
    assert!(std::fs::read_dir(format!("{root}/datapath"))
        .unwrap()
        .next()
        .is_none());
}
