//! The SMAPIv3 interface as xapi 26.1.4 reads it: every method's arguments and result,
//! field by field, taken from the IDL at xen-api tag v26.1.4 (commit of XCP-ng 8.3's
//! xapi.spec, ocaml/xapi-storage/generator/lib/{plugin,control,data,common}.ml), plus the
//! methods later releases added that thinsr implements (`Volume.revert`, from xen-api's
//! master). xapi-storage-script decodes results with ocaml-rpc's rpcty unmarshaller
//! (mirage/ocaml-rpc src/lib/rpcmarshal.ml), and the rules below are its rules:
//! - unit is `null` only; a record is an object whose keys are matched lowercased, extra
//!   keys ignored, a required field missing is an error, and an optional field present
//!   must hold its type (a `null` there is an error, not None);
//! - a variant is its constructor's name as a string (no contents) or `[name, contents]`;
//! - `(string * 'a) list` is an object; a tuple is an array; int and int64 are integers.
//!
//! `talk` (xapi.rs) checks every call the suite makes against this table: the arguments
//! sent (as xapi sends them: all of them, no others) and, when the call succeeds, the
//! result.

use serde_json::Value;

#[derive(Clone, Debug)]
pub enum T {
    Str,
    Int,
    Int64,
    Bool,
    Float,
    Unit,
    List(Box<T>),
    /// `(string * T) list`: a JSON object.
    Dict(Box<T>),
    Pair(Box<T>, Box<T>),
    /// A record's field that may be absent.
    Opt(Box<T>),
    Rec(Vec<(&'static str, T)>),
    /// Constructors with their contents (None: no argument).
    Variant(Vec<(&'static str, Option<T>)>),
}

use T::*;

fn list(t: T) -> T {
    List(Box::new(t))
}
fn dict(t: T) -> T {
    Dict(Box::new(t))
}
fn opt(t: T) -> T {
    Opt(Box::new(t))
}

fn health() -> T {
    Variant(vec![
        ("Healthy", Some(Str)),
        ("Recovering", Some(Str)),
        ("Unreachable", Some(Str)),
        ("Unavailable", Some(Str)),
    ])
}

pub fn sr_stat() -> T {
    Rec(vec![
        ("sr", Str),
        ("name", Str),
        ("uuid", opt(Str)),
        ("description", Str),
        ("free_space", Int64),
        ("total_space", Int64),
        ("datasources", list(Str)),
        ("clustered", Bool),
        ("health", health()),
    ])
}

pub fn volume() -> T {
    Rec(vec![
        ("key", Str),
        ("uuid", opt(Str)),
        ("name", Str),
        ("description", Str),
        ("read_write", Bool),
        ("sharable", Bool),
        ("virtual_size", Int64),
        ("physical_utilisation", Int64),
        ("uri", list(Str)),
        ("keys", dict(Str)),
        (
            "volume_type",
            opt(Variant(vec![
                ("Data", None),
                ("CBT_Metadata", None),
                ("Data_and_CBT_Metadata", None),
            ])),
        ),
        ("cbt_enabled", opt(Bool)),
    ])
}

fn query_result() -> T {
    Rec(vec![
        ("plugin", Str),
        ("name", Str),
        ("description", Str),
        ("vendor", Str),
        ("copyright", Str),
        ("version", Str),
        ("required_api_version", Str),
        ("features", list(Str)),
        ("configuration", dict(Str)),
        ("required_cluster_stack", list(Str)),
    ])
}

fn probe_result() -> T {
    Rec(vec![
        ("configuration", dict(Str)),
        ("complete", Bool),
        ("sr", opt(sr_stat())),
        ("extra_info", dict(Str)),
    ])
}

fn backend() -> T {
    Rec(vec![(
        "implementations",
        list(Variant(vec![
            (
                "XenDisk",
                Some(Rec(vec![
                    ("params", Str),
                    ("extra", dict(Str)),
                    ("backend_type", Str),
                ])),
            ),
            ("BlockDevice", Some(Rec(vec![("path", Str)]))),
            ("File", Some(Rec(vec![("path", Str)]))),
            ("Nbd", Some(Rec(vec![("uri", Str)]))),
        ])),
    )])
}

fn blocklist() -> T {
    Rec(vec![
        ("blocksize", Int),
        ("ranges", list(Pair(Box::new(Int64), Box::new(Int64)))),
    ])
}

fn operation() -> T {
    Variant(vec![("CopyV1", Some(Str)), ("MirrorV1", Some(Str))])
}

/// A method's arguments (`dbg` first, as every method has) and its result.
pub struct Method {
    pub args: Vec<(&'static str, T)>,
    pub result: T,
}

fn m(args: &[(&'static str, T)], result: T) -> Method {
    let mut all = vec![("dbg", Str)];
    all.extend(args.iter().cloned());
    Method { args: all, result }
}

/// The IDL's declaration of `method` ("Volume.create"; "Plugin.Query" as the method file
/// is named), None for a name the IDL does not have.
pub fn method(method: &str) -> Option<Method> {
    let (iface, name) = method.split_once('.')?;
    let sr = ("sr", Str);
    let key = ("key", Str);
    let uri = ("uri", Str);
    let domain = ("domain", Str);
    let config = ("configuration", dict(Str));
    let op = ("operation", operation());
    Some(match (iface, name.to_ascii_lowercase().as_str()) {
        ("Plugin", "query") => m(&[], query_result()),
        ("Plugin", "ls") => m(&[], list(Str)),
        ("Plugin", "diagnostics") => m(&[], Str),
        ("SR", "probe") => m(&[config], list(probe_result())),
        ("SR", "create") => m(
            &[("uuid", Str), config, ("name", Str), ("description", Str)],
            dict(Str),
        ),
        ("SR", "attach") => m(&[config], Str),
        ("SR", "detach") | ("SR", "destroy") => m(&[sr], Unit),
        ("SR", "stat") => m(&[sr], sr_stat()),
        ("SR", "set_name") => m(&[sr, ("new_name", Str)], Unit),
        ("SR", "set_description") => m(&[sr, ("new_description", Str)], Unit),
        ("SR", "ls") => m(&[sr], list(volume())),
        ("Volume", "create") => m(
            &[
                sr,
                ("name", Str),
                ("description", Str),
                ("size", Int64),
                ("sharable", Bool),
            ],
            volume(),
        ),
        ("Volume", "snapshot") | ("Volume", "clone") | ("Volume", "stat") => {
            m(&[sr, key], volume())
        }
        ("Volume", "copy") => m(&[sr, key, ("dest_sr", Str)], volume()),
        ("Volume", "destroy")
        | ("Volume", "enable_cbt")
        | ("Volume", "disable_cbt")
        | ("Volume", "data_destroy") => m(&[sr, key], Unit),
        ("Volume", "set_name") => m(&[sr, key, ("new_name", Str)], Unit),
        ("Volume", "set_description") => m(&[sr, key, ("new_description", Str)], Unit),
        ("Volume", "set") => m(&[sr, key, ("k", Str), ("v", Str)], Unit),
        ("Volume", "unset") => m(&[sr, key, ("k", Str)], Unit),
        ("Volume", "resize") => m(&[sr, key, ("new_size", Int64)], Unit),
        ("Volume", "compare") => m(&[sr, key, ("key2", Str)], blocklist()),
        ("Volume", "similar_content") => m(&[sr, key], list(Str)),
        ("Volume", "list_changed_blocks") => m(
            &[sr, key, ("key2", Str), ("offset", Int64), ("length", Int)],
            Rec(vec![("granularity", Int), ("bitmap", Str)]),
        ),
        ("Volume", "compose") => m(&[sr, key, ("key2", Str)], Unit),
        // Since xen-api v26.16 (master's control.ml): `returning unit`.
        ("Volume", "revert") => m(&[sr, ("snapshot", Str), key], Unit),
        ("Datapath", "open") => m(&[uri, ("persistent", Bool)], Unit),
        ("Datapath", "attach") => m(&[uri, domain], backend()),
        ("Datapath", "activate")
        | ("Datapath", "activate_readonly")
        | ("Datapath", "deactivate")
        | ("Datapath", "detach") => m(&[uri, domain], Unit),
        ("Datapath", "import_activate") => m(&[uri, domain], Str),
        ("Datapath", "close") => m(&[uri], Unit),
        ("Data", "copy") => m(
            &[uri, domain, ("remote", Str), ("blocklist", blocklist())],
            operation(),
        ),
        ("Data", "mirror") => m(&[uri, domain, ("remote", Str)], operation()),
        ("Data", "stat") => m(
            &[op],
            Rec(vec![
                ("failed", Bool),
                ("complete", Bool),
                ("progress", opt(Float)),
            ]),
        ),
        ("Data", "cancel") | ("Data", "destroy") => m(&[op], Unit),
        ("Data", "ls") => m(&[], list(operation())),
        _ => return None,
    })
}

/// Whether `v` reads as `t` to ocaml-rpc; the error says where it does not.
pub fn check(t: &T, v: &Value, at: &str) -> Result<(), String> {
    let bad = |want: &str| Err(format!("{at}: expected {want}, got {v}"));
    match t {
        Str if v.is_string() => Ok(()),
        Str => bad("a string"),
        Int | Int64 if v.is_i64() || v.is_u64() => Ok(()),
        Int | Int64 => bad("an integer"),
        Bool if v.is_boolean() => Ok(()),
        Bool => bad("a boolean"),
        Float if v.is_number() => Ok(()),
        Float => bad("a number"),
        Unit if v.is_null() => Ok(()),
        Unit => bad("null (unit)"),
        List(t) => match v.as_array() {
            Some(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, x)| check(t, x, &format!("{at}[{i}]"))),
            None => bad("an array"),
        },
        Dict(t) => match v.as_object() {
            Some(o) => o
                .iter()
                .try_for_each(|(k, x)| check(t, x, &format!("{at}.{k}"))),
            None => bad("an object"),
        },
        Pair(a, b) => match v.as_array().map(Vec::as_slice) {
            Some([x, y]) => {
                check(a, x, &format!("{at}[0]")).and_then(|_| check(b, y, &format!("{at}[1]")))
            }
            _ => bad("a pair"),
        },
        Opt(t) => check(t, v, at),
        Rec(fields) => {
            let Some(o) = v.as_object() else {
                return bad("an object (record)");
            };
            for (name, ft) in fields {
                let found = o.iter().find(|(k, _)| k.to_ascii_lowercase() == *name);
                match (found, ft) {
                    (Some((_, x)), ft) => check(ft, x, &format!("{at}.{name}"))?,
                    (None, Opt(_)) => {}
                    (None, _) => {
                        return Err(format!("{at}: required field '{name}' is missing in {v}"))
                    }
                }
            }
            Ok(())
        }
        Variant(tags) => {
            let (name, contents) = match v {
                Value::String(s) => (s.as_str(), None),
                Value::Array(a) if a.len() == 2 && a[0].is_string() => {
                    (a[0].as_str().unwrap(), Some(&a[1]))
                }
                _ => return bad("a variant (\"Name\" or [\"Name\", contents])"),
            };
            match (tags.iter().find(|(n, _)| *n == name), contents) {
                (None, _) => Err(format!("{at}: '{name}' is not a constructor of {tags:?}")),
                (Some((_, None)), None) => Ok(()),
                (Some((_, None)), Some(c)) => {
                    Err(format!("{at}: {name} takes no contents, got {c}"))
                }
                (Some((_, Some(t))), Some(c)) => check(t, c, &format!("{at}({name})")),
                (Some((_, Some(_))), None) => Err(format!("{at}: {name} needs its contents")),
            }
        }
    }
}

/// The arguments of a call as xapi sends them: every argument the IDL declares, of its
/// type, and nothing else.
pub fn check_args(method_name: &str, args: &Value) -> Result<(), String> {
    let m = method(method_name).ok_or_else(|| format!("{method_name} is not in the IDL"))?;
    let Some(o) = args.as_object() else {
        return Err(format!(
            "{method_name}: arguments are not an object: {args}"
        ));
    };
    for (name, t) in &m.args {
        let v = o
            .get(*name)
            .ok_or_else(|| format!("{method_name}: argument '{name}' is missing in {args}"))?;
        check(t, v, &format!("{method_name}({name})"))?;
    }
    if let Some(extra) = o.keys().find(|k| !m.args.iter().any(|(n, _)| n == k)) {
        return Err(format!(
            "{method_name}: xapi sends no argument '{extra}': {args}"
        ));
    }
    Ok(())
}

/// A successful call's result as ocaml-rpc decodes it.
pub fn check_result(method_name: &str, result: &Value) -> Result<(), String> {
    let m = method(method_name).ok_or_else(|| format!("{method_name} is not in the IDL"))?;
    check(&m.result, result, method_name)
}
