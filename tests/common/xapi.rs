//! A client like xapi-storage-script: runs the installed method files with `--json` and
//! the arguments as one JSON object on stdin, reads the result or the error from stdout,
//! and runs calls in parallel where xapi does.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

pub const ROOT: &str = "/tmp/xapi-root";
pub const VOLUME: &str = "/tmp/xapi-root/volume/org.xen.xapi.storage.thinsr";
pub const DATAPATH: &str = "/tmp/xapi-root/datapath/thinsr";

/// Runs plugin method `method` from `dir` as xapi does; returns (exit code, stdout JSON).
pub fn run(dir: &str, method: &str, args: Value) -> (i32, Value) {
    run_with(dir, method, args, &[])
}

/// As `run`, with extra environment variables for the plugin.
pub fn run_with(dir: &str, method: &str, args: Value, env: &[(&str, &str)]) -> (i32, Value) {
    let mut cmd = Command::new(format!("{dir}/{method}"));
    cmd.arg("--json").envs(env.iter().copied());
    talk(cmd, method, args)
}

/// Starts `cmd` as xapi-storage-script starts a method: the arguments (with a `dbg`) as
/// one JSON object on stdin, the result or error read from stdout as JSON. Every call is
/// held to the IDL (idl.rs): the arguments as xapi would send them, and a result as
/// ocaml-rpc would decode it.
pub fn talk(cmd: Command, method: &str, args: Value) -> (i32, Value) {
    let mut all = args;
    all["dbg"] = json!("test");
    if let Err(e) = super::idl::check_args(method, &all) {
        panic!("not a call xapi 26.1 makes: {e}");
    }
    let (code, value) = talk_unchecked(cmd, method, all);
    if code == 0 {
        if let Err(e) = super::idl::check_result(method, &value) {
            panic!("xapi 26.1 could not decode this result: {e}");
        }
    }
    (code, value)
}

/// As `talk`, without the IDL check: for the tests that send what xapi never would, on
/// purpose.
pub fn talk_unchecked(cmd: Command, method: &str, args: Value) -> (i32, Value) {
    let (code, out, stderr) = spawn_and_talk(cmd, method, args);
    let text = String::from_utf8_lossy(&out);
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {text}\nstderr: {stderr}"));
    (code, value)
}

/// Runs method `method` from `dir` with extra environment (a crash point, say) whatever
/// it prints; returns (exit code, stderr).
pub fn run_raw(dir: &str, method: &str, args: Value, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(format!("{dir}/{method}"));
    cmd.arg("--json").envs(env.iter().copied());
    let (code, _, stderr) = spawn_and_talk(cmd, method, args);
    (code, stderr)
}

/// Starts `cmd` with `args` (and a `dbg`) on stdin; returns (exit code, stdout, stderr).
fn spawn_and_talk(mut cmd: Command, method: &str, args: Value) -> (i32, Vec<u8>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{method}: {e}"));
    let mut all = args;
    all["dbg"] = json!("test");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(all.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn call(dir: &str, method: &str, args: Value) -> Value {
    let (code, v) = run(dir, method, args);
    assert_eq!(code, 0, "{method} failed: {v}");
    v
}

pub fn error(dir: &str, method: &str, args: Value, code: &str) -> Value {
    let (status, v) = run(dir, method, args);
    assert_ne!(status, 0, "{method} should have failed: {v}");
    assert_eq!(v["code"], code, "{method}: {v}");
    assert!(v["params"].is_array(), "{v}");
    assert!(v["backtrace"]["error"].is_string(), "{v}");
    assert!(v["backtrace"]["files"].is_array() && v["backtrace"]["lines"].is_array());
    v
}

/// Every field of xapi's volume record, with its type; optional strings never null.
pub fn check_volume(v: &Value) {
    for f in ["key", "uuid", "name", "description"] {
        assert!(v[f].is_string(), "{f} in {v}");
    }
    for f in ["read_write", "sharable"] {
        assert!(v[f].is_boolean(), "{f} in {v}");
    }
    for f in ["virtual_size", "physical_utilisation"] {
        assert!(v[f].is_u64(), "{f} in {v}");
    }
    assert!(
        v["uri"].as_array().unwrap().iter().all(Value::is_string),
        "{v}"
    );
    assert!(
        v["uri"][0].as_str().unwrap().starts_with("thinsr://"),
        "{v}"
    );
    assert!(v["keys"].is_object(), "{v}");
    assert!(
        v.as_object().unwrap().values().all(|x| !x.is_null()),
        "null in {v}"
    );
}

pub fn check_sr_stat(s: &Value) {
    for f in ["sr", "name", "uuid", "description"] {
        assert!(s[f].is_string(), "{f} in {s}");
    }
    assert!(s["free_space"].is_u64() && s["total_space"].is_u64(), "{s}");
    assert!(s["datasources"].is_array(), "{s}");
    assert_eq!(s["clustered"], false);
    assert_eq!(s["health"], json!(["Healthy", ""]));
}

/// Installs the plugin under ROOT, as `thinsr xapi install` does on a host.
pub fn install() {
    super::ok(&["xapi", "install", "--root", ROOT]);
}

/// The method file's directory.
pub fn dir_of(method: &str) -> &'static str {
    if method.starts_with("Datapath") || method.starts_with("Data.") {
        DATAPATH
    } else {
        VOLUME
    }
}

/// Runs the calls at once, each in its own process, as xapi-storage-script does; returns
/// (exit code, result) in the order given.
pub fn parallel(calls: Vec<(&'static str, Value)>) -> Vec<(i32, Value)> {
    let handles: Vec<_> = calls
        .into_iter()
        .map(|(m, a)| std::thread::spawn(move || run(dir_of(m), m, a)))
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Creates an owned SR on `disk` with xapi's uuid and attaches it; returns (sr, the
/// configuration SR.create returned).
pub fn sr_create(disk: &str, uuid: &str, name: &str) -> (String, Value) {
    let config = call(
        VOLUME,
        "SR.create",
        json!({"uuid": uuid, "configuration": {"device": disk}, "name": name, "description": ""}),
    );
    let sr = call(VOLUME, "SR.attach", json!({"configuration": config}));
    (sr.as_str().unwrap().to_string(), config)
}

/// Datapath.attach then activate, as a VM start does; returns the device.
pub fn start(uri: &str) -> String {
    let dp = call(
        DATAPATH,
        "Datapath.attach",
        json!({"uri": uri, "domain": "0"}),
    );
    call(
        DATAPATH,
        "Datapath.activate",
        json!({"uri": uri, "domain": "0"}),
    );
    dp["implementations"][1][1]["path"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Datapath.deactivate then detach, as a VM shutdown does.
pub fn stop(uri: &str) {
    for m in ["Datapath.deactivate", "Datapath.detach"] {
        assert_eq!(
            call(DATAPATH, m, json!({"uri": uri, "domain": "0"})),
            Value::Null
        );
    }
}

/// Volume.create as xapi calls it.
pub fn create(sr: &str, name: &str, size: u64) -> Value {
    call(
        VOLUME,
        "Volume.create",
        json!({"sr": sr, "name": name, "description": "", "size": size, "sharable": false}),
    )
}

/// A Datapath method that returns nothing, for `domain`.
pub fn dp(method: &str, uri: &str, domain: &str) {
    assert_eq!(
        call(DATAPATH, method, json!({"uri": uri, "domain": domain})),
        Value::Null,
        "{method} {domain}"
    );
}

/// Datapath.attach for `domain`, where the stand-in systemd-run is found first; returns
/// (device, the Nbd entry's socket and export name as xapi's `parse_nbd_uri` splits them).
pub fn attach_nbd(uri: &str, domain: &str) -> (String, String, String) {
    let path = format!(
        "{}:{}",
        super::SPY,
        std::env::var("PATH").unwrap_or_default()
    );
    let args = json!({"uri": uri, "domain": domain});
    let (code, r) = run_with(DATAPATH, "Datapath.attach", args, &[("PATH", &path)]);
    assert_eq!(code, 0, "Datapath.attach failed: {r}");
    let imps = r["implementations"].as_array().unwrap();
    let nbd = imps
        .iter()
        .find(|i| i[0] == "Nbd")
        .unwrap_or_else(|| panic!("no Nbd entry: {r}"));
    let text = nbd[1]["uri"].as_str().unwrap();
    let parts: Vec<&str> = text.split(':').collect();
    let [scheme, unix, socket, name] = parts[..] else {
        panic!("xapi cannot parse {text}");
    };
    assert_eq!((scheme, unix), ("nbd", "unix"), "{text}");
    let name = name.strip_prefix("exportname=").expect("exportname=");
    let dev = imps.iter().find(|i| i[0] == "BlockDevice").unwrap()[1]["path"]
        .as_str()
        .unwrap()
        .to_string();
    (dev, socket.to_string(), name.to_string())
}

/// A volume's physical utilisation, as Volume.stat says.
pub fn physical(sr: &str, key: &str) -> u64 {
    call(VOLUME, "Volume.stat", json!({"sr": sr, "key": key}))["physical_utilisation"]
        .as_u64()
        .unwrap()
}

/// A volume's first uri and its key.
pub fn uri_and_key(v: &Value) -> (String, String) {
    (
        v["uri"][0].as_str().unwrap().to_string(),
        v["key"].as_str().unwrap().to_string(),
    )
}
