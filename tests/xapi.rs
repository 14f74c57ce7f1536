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
