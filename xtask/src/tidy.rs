//! Tidy checks on thinsr's source tree, run with the unit tests (`cargo test --workspace`):
//! the shape ARCHITECTURE.md describes stays true. Each source file is a node; a path to
//! another file's module (`crate::engine::vdi::Volume`, `super::space`) is an edge. `mod`
//! declarations are not edges: a parent names its children without depending on them.
//! So is a call of a method that another file defines on the engine's context (`Ctx`,
//! `Locked`): those calls need no `use`, yet they are how the engine's files depend on each
//! other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most source files a reader finds directly in `src/`.
const MAX_ROOT_FILES: usize = 12;
/// A file longer than this says why at its top, in a line starting `//! Long:`.
const MAX_LINES: usize = 700;

/// Module path (`engine::vdi::lookup`, "" for the crate root) of every library file.
pub fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "bin") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|e| e != "rs") || p.ends_with("src/main.rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|c| c.to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// The text of a file without comments and string literals, which may name paths that
/// are not dependencies.
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str {
                kept.push(c);
            }
            prev = c;
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Every module path a file's code names: `crate::a::b`, `super::a`, and the members of
/// `crate::a::{b, c::d}` groups, resolved to absolute paths.
fn paths_named(code: &str, this: &str) -> Vec<String> {
    let mut found = Vec::new();
    // Paths are ASCII: other bytes never match, so bytes are enough.
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = |w: &str| bytes[i..].starts_with(w.as_bytes());
        let boundary = i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != b':';
        if boundary && (starts("crate::") || starts("super::")) {
            let (base, skip) = if starts("crate::") {
                (String::new(), "crate::".len())
            } else {
                let mut p: Vec<&str> = this.split("::").filter(|s| !s.is_empty()).collect();
                p.pop();
                (p.join("::"), "super::".len())
            };
            let mut j = i + skip;
            let mut path = base.clone();
            loop {
                let s = j;
                while j < bytes.len() && ident(bytes[j]) {
                    j += 1;
                }
                let seg = String::from_utf8_lossy(&bytes[s..j]).into_owned();
                if seg.is_empty() {
                    break;
                }
                path = if path.is_empty() {
                    seg
                } else {
                    format!("{path}::{seg}")
                };
                if bytes.get(j) == Some(&b':') && bytes.get(j + 1) == Some(&b':') {
                    j += 2;
                    if bytes.get(j) == Some(&b'{') {
                        // A group: each member, one level of nesting is enough here.
                        let end = (j..bytes.len()).find(|&k| bytes[k] == b'}').unwrap_or(j);
                        let inner = String::from_utf8_lossy(&bytes[j + 1..end]);
                        for member in inner.split(',') {
                            let m = member.trim().split(" as ").next().unwrap_or("").trim();
                            let m = m.trim_start_matches('{');
                            if !m.is_empty() && m != "self" {
                                found.push(format!("{path}::{m}"));
                            }
                        }
                        j = end;
                        break;
                    }
                    continue;
                }
                break;
            }
            found.push(path);
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

/// The file (module) a path lands in: its longest prefix that is a module.
fn owner<'a, V>(path: &str, mods: &'a BTreeMap<String, V>) -> Option<&'a str> {
    let mut p = path.to_string();
    loop {
        if let Some((k, _)) = mods.get_key_value(p.as_str()) {
            return Some(k.as_str());
        }
        match p.rsplit_once("::") {
            Some((head, _)) => p = head.to_string(),
            None => return None,
        }
    }
}

/// The types whose methods are spread over many files, so that a call of one is an edge.
const CONTEXT_TYPES: [&str; 2] = ["Ctx", "Locked"];

/// The methods a file's code defines in inherent `impl` blocks of the context types.
fn context_methods(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in code.lines() {
        if !inside {
            inside = CONTEXT_TYPES
                .iter()
                .any(|t| line.starts_with(&format!("impl {t} {{")));
            continue;
        }
        if line.starts_with('}') {
            inside = false;
            continue;
        }
        // A method sits one level in: four spaces, then its visibility and `fn`.
        let Some(rest) = line.strip_prefix("    ") else {
            continue;
        };
        let rest = rest
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        if let Some(name) = rest.strip_prefix("fn ") {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

/// Method name -> the module defining it on a context type. A name two files define is
/// left out: a call of it could mean either.
fn method_owners(codes: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut owners: BTreeMap<String, Option<String>> = BTreeMap::new();
    for (m, code) in codes {
        for name in context_methods(code) {
            owners
                .entry(name)
                .and_modify(|o| {
                    if o.as_deref() != Some(m.as_str()) {
                        *o = None
                    }
                })
                .or_insert_with(|| Some(m.clone()));
        }
    }
    owners
        .into_iter()
        .filter_map(|(n, o)| Some((n, o?)))
        .collect()
}

/// The names a file's code calls as methods (`.name(`, `.name::<`).
fn methods_called(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for piece in code.split('.').skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = &piece[name.len()..];
        if !name.is_empty() && (after.starts_with('(') || after.starts_with("::<")) {
            out.insert(name);
        }
    }
    out
}

/// Edges between files: module -> the modules its code names, and the modules defining
/// the context methods it calls.
pub fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let codes: BTreeMap<String, String> = modules(src)
        .iter()
        .map(|(m, file)| (m.clone(), code_of(&std::fs::read_to_string(file).unwrap())))
        .collect();
    graph_of(&codes)
}

/// The graph of modules whose code (comments and strings taken out) is given.
fn graph_of(codes: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mods = codes;
    let owners = method_owners(codes);
    let mut g = BTreeMap::new();
    for (m, code) in codes {
        // An inline test module's `super` is the file itself.
        let (main, tests) = code.split_once("mod tests {").unwrap_or((code, ""));
        let mut named = paths_named(main, m);
        named.extend(paths_named(tests, &format!("{m}::tests")));
        let mut deps = BTreeSet::new();
        for p in named {
            if let Some(o) = owner(&p, mods) {
                // A file's own children, or its parent folder's module, through `mod` or
                // `super` alone are not named here; the crate root is only a map.
                if o != m && !o.is_empty() {
                    deps.insert(o.to_string());
                }
            }
        }
        // Only the engine's own files: the other layers name the engine with `use` anyway,
        // and a `.load(` there is std's, not the context's.
        let callers = if m.starts_with("engine::") {
            methods_called(main)
        } else {
            BTreeSet::new()
        };
        for name in callers {
            match owners.get(&name) {
                Some(o) if o != m => {
                    deps.insert(o.clone());
                }
                _ => {}
            }
        }
        g.insert(m.clone(), deps);
    }
    g
}

/// A cycle of files, if any, as the list of modules around it.
pub fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark: BTreeMap<&str, Mark> = g.keys().map(|k| (k.as_str(), Mark::New)).collect();
    fn visit<'a>(
        n: &'a str,
        g: &'a BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        mark.insert(n, Mark::Open);
        stack.push(n);
        for d in g.get(n).into_iter().flatten() {
            match mark.get(d.as_str()).copied() {
                Some(Mark::Open) => {
                    let at = stack.iter().position(|s| *s == d).unwrap();
                    let mut c: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                    c.push(d.clone());
                    return Some(c);
                }
                Some(Mark::New) => {
                    if let Some(c) = visit(d, g, mark, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        mark.insert(n, Mark::Done);
        None
    }
    let keys: Vec<&str> = g.keys().map(String::as_str).collect();
    for k in keys {
        if mark[k] == Mark::New {
            let mut stack = Vec::new();
            if let Some(c) = visit(k, g, &mut mark, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

/// Parameter names that hold an identity: an SR's or VDI's uuid, a VG's or LV's name.
const IDENTITY_PARAMS: [&str; 10] = [
    "vg", "vg_name", "lv", "lv_name", "pool", "meta_lv", "uuid", "vdi", "template", "owner",
];

/// Functions whose signature takes two or more identity names as bare strings (`&str`,
/// `String`, `Option<&str>`): `(vg, lv)` as two `&str` compiles with the two swapped;
/// typed names (`src/ids.rs`) do not. `sr` counts unless optional (then it is a lookup
/// key, as an admin gives it). Returns `function(param, param)` for each.
fn bare_identity_params(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("fn ") {
        let boundary = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        rest = &rest[at + 3..];
        if !boundary {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let Some(open) = rest.find('(') else { break };
        if rest[..open].contains(['{', ';']) {
            continue;
        }
        // The parameter list, to its matching parenthesis; split at top-level commas.
        let (mut depth, mut params, mut cur) = (0i32, Vec::new(), String::new());
        for c in rest[open + 1..].chars() {
            match c {
                '(' | '<' | '[' => depth += 1,
                ')' if depth == 0 => break,
                ')' | '>' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    params.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        params.push(cur);
        let bare: Vec<String> = params
            .iter()
            .filter_map(|p| {
                let (n, ty) = p.split_once(':')?;
                let n = n.trim().trim_start_matches("mut ").trim();
                let ty: String = ty.split_whitespace().collect::<Vec<_>>().join(" ");
                let ty = ty.replace("'a ", "").replace("'_ ", "");
                let stringy = matches!(
                    ty.as_str(),
                    "&str" | "String" | "&String" | "Option<&str>" | "Option<String>"
                );
                let identity =
                    IDENTITY_PARAMS.contains(&n) || (n == "sr" && !ty.starts_with("Option"));
                (stringy && identity).then(|| n.to_string())
            })
            .collect();
        if bare.len() >= 2 {
            out.push(format!("{name}({})", bare.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No engine or host signature takes two identity names as bare strings.
    #[test]
    fn identities_are_typed_in_engine_and_host_signatures() {
        let mut found = Vec::new();
        for (m, file) in modules(&src()) {
            let test_only = m.ends_with("tests") || m.ends_with("fixtures");
            if !(m.starts_with("engine") || m.starts_with("host")) || test_only {
                continue;
            }
            let code = code_of(&std::fs::read_to_string(file).unwrap());
            let main = code
                .split_once("mod tests {")
                .map_or(code.as_str(), |(m, _)| m);
            found.extend(
                bare_identity_params(main)
                    .into_iter()
                    .map(|f| format!("{m}::{f}")),
            );
        }
        assert!(found.is_empty(), "take typed names (src/ids.rs): {found:?}");
        // The checker itself sees one.
        let swapped = "pub fn grow(vg: &str, pool: &str, by: u64) {}\nfn key(sr: Option<&str>, uuid: &str) {}";
        assert_eq!(bare_identity_params(swapped), ["grow(vg, pool)"]);
        let typed = "pub fn grow(vg: &VgName, pool: &LvName) {}";
        assert!(bare_identity_params(typed).is_empty());
    }

    fn src() -> PathBuf {
        crate::root().join("src")
    }

    #[test]
    fn no_two_source_files_import_each_other_through_a_circle() {
        let g = graph(&src());
        assert!(g.len() > 40, "the tree was not read: {} modules", g.len());
        assert!(
            g["engine::vdi::lookup"].contains("engine::context"),
            "the graph misses plain `use crate::` edges"
        );
        assert!(
            g["engine::cache"].contains("engine::vdi::attach"),
            "the graph misses calls of the context's methods (cache.rs calls vdi_attach)"
        );
        if let Some(c) = find_cycle(&g) {
            panic!("a circle of imports: {}", c.join(" -> "));
        }
    }

    #[test]
    fn the_checker_sees_a_circle() {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.insert("a".into(), ["b".to_string()].into());
        g.insert("b".into(), ["c".to_string()].into());
        g.insert("c".into(), ["a".to_string()].into());
        assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
        g.get_mut("c").unwrap().clear();
        assert!(find_cycle(&g).is_none());
        let named = paths_named(
            "use crate::engine::{sr, vdi::Volume};\nlet x = super::space(1);\n",
            "engine::sr::create",
        );
        assert!(named.contains(&"engine::sr".to_string()), "{named:?}");
        assert!(named.contains(&"engine::vdi::Volume".to_string()));
        assert!(named.contains(&"engine::sr::space".to_string()));
    }

    /// Two engine files calling each other's `Ctx` methods, with no `use` between them,
    /// make a circle; the same calls from outside the engine, or of a name two files
    /// define, do not count.
    #[test]
    fn the_checker_sees_a_circle_of_method_calls() {
        let code = |s: &str| code_of(s);
        let mut codes = BTreeMap::new();
        codes.insert(
            "engine::a".to_string(),
            code("impl Ctx {\n    pub fn a_thing(&self) { self.b_thing(); }\n}\n"),
        );
        codes.insert(
            "engine::b".to_string(),
            code("impl Locked {\n    pub(crate) fn b_thing(&self) { self.ctx.a_thing(); }\n    fn load(&self) {}\n}\n"),
        );
        let g = graph_of(&codes);
        assert_eq!(
            find_cycle(&g).unwrap(),
            ["engine::a", "engine::b", "engine::a"]
        );
        // A comment or string naming the method is no call.
        codes.insert(
            "engine::b".to_string(),
            code("impl Locked {\n    pub fn b_thing(&self) { let s = \".a_thing()\"; } // .a_thing()\n}\n"),
        );
        assert!(find_cycle(&graph_of(&codes)).is_none());
        // A layer above the engine calls the engine without making a circle of it.
        codes.insert(
            "cli::x".to_string(),
            code("fn f(c: &Ctx) { c.a_thing(); }\n"),
        );
        codes.insert(
            "engine::b".to_string(),
            code("impl Locked {\n    pub fn b_thing(&self) { x.load(1); }\n}\n"),
        );
        let g = graph_of(&codes);
        assert!(g["cli::x"].is_empty() && find_cycle(&g).is_none(), "{g:?}");
    }

    /// lvm's argument vectors are built in `host/lvm/cmd.rs`, once, not in the engine.
    #[test]
    fn the_engine_builds_no_lvm_command_line() {
        const COMMANDS: [&str; 11] = [
            "lvcreate",
            "lvremove",
            "lvchange",
            "lvrename",
            "lvresize",
            "lvextend",
            "vgcreate",
            "vgremove",
            "pvcreate",
            "pvremove",
            "lvmconfig",
        ];
        let mut found = Vec::new();
        for (m, file) in modules(&src()) {
            if !m.starts_with("engine") || m.ends_with("tests") {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            let main = text
                .split_once("mod tests {")
                .map_or(text.as_str(), |(m, _)| m);
            for c in COMMANDS {
                if main.contains(&format!("\"{c}\",")) || main.contains(&format!("\"{c}\".into(),"))
                {
                    found.push(format!("{m}: {c}"));
                }
            }
        }
        assert!(
            found.is_empty(),
            "build these in host/lvm/cmd.rs: {found:?}"
        );
    }

    #[test]
    fn few_files_at_the_root_and_none_too_long() {
        let root_files = std::fs::read_dir(src())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
            .count();
        assert!(
            root_files <= MAX_ROOT_FILES,
            "{root_files} .rs files directly in src/ (at most {MAX_ROOT_FILES}): give them a room"
        );
        let mut long = Vec::new();
        for file in modules(&src()).values() {
            let text = std::fs::read_to_string(file).unwrap();
            let lines = text.lines().count();
            if lines > MAX_LINES && !text.lines().take(20).any(|l| l.starts_with("//! Long:")) {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
        assert!(
            long.is_empty(),
            "over {MAX_LINES} lines without a `//! Long:` reason at the top: {long:?}"
        );
    }
}
