//! Tests of the plugin's pure parts: method names, uris, the shapes of results.
use super::*;

#[test]
fn methods_are_known_by_their_file_name() {
    assert_eq!(
        method_of("/usr/libexec/xapi-storage-script/volume/org.xen.xapi.storage.thinsr/SR.ls"),
        Some("SR.ls")
    );
    assert_eq!(method_of("Datapath.attach"), Some("Datapath.attach"));
    assert_eq!(method_of("/usr/sbin/thinsr"), None);
    assert_eq!(method_of("SR.rm"), None);
}

#[test]
fn volume_uris_name_sr_and_vdi() {
    assert_eq!(
        parse_volume_uri("thinsr://s1/v1").unwrap(),
        ("s1".to_string(), "v1".to_string())
    );
    assert!(parse_volume_uri("file:///x").is_err());
    assert!(parse_volume_uri("thinsr://nothing").is_err());
}

/// The golden pair of the xapi-storage docs: Volume.create's arguments as xapi sends
/// them, and the volume record it expects, field for field in our one serializer.
#[test]
fn golden_volume_create_pair() {
    let input: Value = serde_json::from_str(
        r#"{"sharable":false,"size":0,"description":"vdi description","name":"vdi name","sr":"file:///tmp/dummy","dbg":"debug"}"#,
    )
    .unwrap();
    let a = Args(input.as_object().unwrap());
    assert_eq!(a.str("name").unwrap(), "vdi name");
    assert_eq!(a.str("description").unwrap(), "vdi description");
    assert_eq!(a.size("size").unwrap(), Bytes(0));
    assert_eq!(a.sr().unwrap(), "file:///tmp/dummy");
    assert!(a.size("name").is_err() && a.str("nothing").is_err());

    let golden: Value = serde_json::from_str(
        r#"{"name":"vdi name","description":"vdi description","key":"UUID","uuid":"UUID","read_write":true,"sharable":false,"virtual_size":0,"physical_utilisation":0,"uri":["raw+file:///tmp/disk.raw"],"keys":{},"volume_type":"Data","cbt_enabled":false}"#,
    )
    .unwrap();
    let v = crate::engine::vdi::Volume {
        key: "UUID".into(),
        uuid: "UUID".into(),
        name: "vdi name".into(),
        description: "vdi description".into(),
        read_write: true,
        sharable: false,
        virtual_size: Bytes(0),
        physical_utilisation: Bytes(0),
        uri: vec!["raw+file:///tmp/disk.raw".into()],
        keys: BTreeMap::new(),
        sr: "s".into(),
        sr_name: "s".into(),
        kind: crate::engine::meta::VdiKind::Thin,
        vg: "vg".into(),
        lv: "lv".into(),
        path: String::new(),
        attached: false,
        parent: None,
        parent_name: None,
        source: None,
        format: None,
        origin: None,
        origin_name: None,
        cache: None,
        local: None,
        cached: None,
        image_allocated: None,
        server: None,
        lazy: None,
        sha256: None,
        created: 0,
        pending: None,
        cbt_enabled: false,
        data_destroyed: false,
        volume_type: crate::engine::vdi::VolumeType::Data,
        problems: vec![],
        replica: None,
        hook_failures: vec![],
    };
    let ours = serde_json::to_value(&v).unwrap();
    for (field, want) in golden.as_object().unwrap() {
        assert_eq!(&ours[field], want, "{field}");
    }
    // Extras are allowed (xapi ignores them), nulls are not.
    assert!(ours.as_object().unwrap().values().all(|x| !x.is_null()));
    // And back: the record reads as the golden one did.
    let again: Value = serde_json::from_str(&ours.to_string()).unwrap();
    for field in crate::engine::vdi::VOLUME_FIELDS {
        assert_eq!(again[field], golden[field], "{field}");
    }
}

#[test]
fn golden_sr_stat_and_backend_shapes() {
    let health = serde_json::to_value(("Healthy".to_string(), String::new())).unwrap();
    assert_eq!(health, json!(["Healthy", ""]));
    let backend = json!({"implementations": [
        ["XenDisk", {"backend_type": "vbd", "params": "/dev/x", "extra": {}}],
        ["BlockDevice", {"path": "/dev/x"}]
    ]});
    let text = backend.to_string();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), backend);
    assert_eq!(Value::Null.to_string(), "null", "unit results print null");
}

#[test]
fn missing_volumes_use_xapis_exception() {
    let e = plugin_error(&Error::VdiNotFound("k1".into()));
    assert_eq!(e["code"], "Volume_does_not_exist");
    assert_eq!(e["params"], json!(["k1"]));
    assert!(e["backtrace"]["files"].is_array() && e["backtrace"]["lines"].is_array());
    let e = plugin_error(&Error::VdiIsTemplate("t".into()));
    assert_eq!(e["code"], "VDI_IS_TEMPLATE");
}
