//! Templates: read-only images outside the VG, referenced by URI, read by their clones as a
//! dm-thin external origin. Registering one reads its format and size and copies nothing.
//!
//! A template is an entry of kind `template` among the SR's VDIs, so every lookup rule works
//! for it; it has no LV. Its clones carry its uuid as their `origin`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::engine::context::Ctx;
use crate::engine::meta::{VdiKind, VdiMeta};
use crate::engine::names;
use crate::engine::share::holders::{self, Holder};
use crate::engine::share::{self, Share};
use crate::engine::vdi::{Found, ServerState, Volume};
use crate::error::{Error, Result};
use crate::host::probe::is_block_device;
use crate::host::qemu::probe;
use crate::host::tool;
use crate::ids::{LvPath, VdiUuid};
use crate::units::{clip, Bytes};

/// Where scheme scripts live unless `--scheme-dir` / `THINSR_SCHEME_DIR` says otherwise.
pub const DEFAULT_SCHEME_DIR: &str = "/usr/libexec/xapi/storage";

const MAX_URI: usize = 4096;

/// Where a template's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local image file (or block device).
    File(PathBuf),
    /// An NBD export, which qemu-nbd opens itself.
    Nbd(String),
    /// A file on an NFS export or SMB share, read through a mount of thinsr's.
    Share(Share),
    /// A file on a web server, fetched once into the template's local copy.
    Http(String),
    /// Any other scheme: `<scheme-dir>/<scheme> attach URI` prints a local path.
    Scheme(String),
}

fn bad(uri: &str, why: impl Into<String>) -> Error {
    Error::InvalidUri {
        uri: clip(uri),
        why: why.into(),
    }
}

/// A scheme is `[a-z][a-z0-9+.-]*`: it names a script, so nothing else may pass.
pub fn check_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c))
        && scheme.len() <= 64
}

/// Parses and validates a template URI before anything runs.
pub fn parse_uri(uri: &str) -> Result<Source> {
    if uri.len() > MAX_URI {
        return Err(bad(uri, format!("longer than {MAX_URI} characters")));
    }
    if uri.chars().any(char::is_control) {
        return Err(bad(uri, "it holds control characters"));
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(bad(
            uri,
            "not a URI: write file:///path, nbd://host[:port]/export or scheme://...",
        ));
    };
    if !check_scheme(scheme) {
        return Err(bad(
            uri,
            format!("scheme '{}' is not [a-z][a-z0-9+.-]*", clip(scheme)),
        ));
    }
    match scheme {
        "file" => {
            if !rest.starts_with('/') {
                return Err(bad(uri, "a file URI needs an absolute path: file:///path"));
            }
            if rest.split('/').any(|c| c == "..") {
                return Err(bad(uri, "'..' is not allowed in the path"));
            }
            Ok(Source::File(PathBuf::from(rest)))
        }
        "nbd" => {
            let (authority, _export) = rest.split_once('/').unwrap_or((rest, ""));
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
                _ => (authority, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
            if !host_ok {
                return Err(bad(
                    uri,
                    "nbd://host[:port]/export needs a host name or address",
                ));
            }
            if port.is_some_and(|p| p.parse::<u16>().map_or(true, |n| n == 0)) {
                return Err(bad(uri, "the port must be a number from 1 to 65535"));
            }
            Ok(Source::Nbd(uri.into()))
        }
        "http" | "https" => {
            check_url(uri)?;
            Ok(Source::Http(uri.into()))
        }
        "nfs" | "smb" | "cifs" => Ok(Source::Share(
            share::parse(uri)?.expect("share schemes parse as shares"),
        )),
        other => Ok(Source::Scheme(other.into())),
    }
}

/// How an image opened for a while is given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A local file or an NBD URI: nothing to give back.
    Nothing,
    /// A scheme script's attach, to be told `detach`.
    Script(String),
    /// A holder of a share's mount (its id, the holder's key).
    Share { id: String, key: String },
}

impl Opened {
    /// Gives the image back (`uri`, as opened).
    pub fn close(&self, scheme_dir: &Path, uri: &str) -> Result<()> {
        match self {
            Opened::Nothing => Ok(()),
            Opened::Script(s) => run_scheme(scheme_dir, s, "detach", uri).map(drop),
            Opened::Share { id, key } => holders::release(id, key),
        }
    }
}

/// An http(s) URI a template may be fetched from: no user or password in it (it is
/// stored in the SR's metadata), a host, a path.
pub fn check_url(uri: &str) -> Result<()> {
    let bad = |why: &str| Error::InvalidUri {
        uri: clip(uri),
        why: why.into(),
    };
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| bad("not an http:// or https:// URI"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(
            "credentials never go in a URI (it is stored in the SR's metadata)",
        ));
    }
    let host_ok = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if !host_ok {
        return Err(bad("it needs a server's host name or address"));
    }
    if uri.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(bad("spaces and fragments are not allowed"));
    }
    Ok(())
}

/// A label for a template introduced without `--name`: the image's file name without its
/// extension, or the export's name.
pub fn default_name(uri: &str) -> String {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let last = rest
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(rest);
    let stem = match last.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= 5 => stem,
        _ => last,
    };
    let name: String = stem.chars().take(names::MAX_LABEL).collect();
    if name.is_empty() {
        "template".into()
    } else {
        name
    }
}

/// The script handling `scheme`, by absolute path inside `dir` only.
fn scheme_script(dir: &Path, scheme: &str) -> Result<PathBuf> {
    if !check_scheme(scheme) || !dir.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "no scheme script for '{}' in '{}'",
            clip(scheme),
            dir.display()
        )));
    }
    let path = dir.join(scheme);
    let meta = std::fs::metadata(&path).map_err(|_| {
        Error::InvalidArgument(format!(
            "no handler for scheme '{scheme}': {} does not exist (set --scheme-dir)",
            path.display()
        ))
    })?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(Error::InvalidArgument(format!(
            "{} is not an executable file",
            path.display()
        )));
    }
    // Run as root: only if nobody but root could have written it, or the way to it.
    crate::host::trust::root_only(&path, "scheme script")?;
    Ok(path)
}

/// Runs `<script> attach|detach URI`; `attach` returns the local path it printed.
pub fn run_scheme(dir: &Path, scheme: &str, verb: &str, uri: &str) -> Result<Option<PathBuf>> {
    let script = scheme_script(dir, scheme)?;
    let tool_name = script.display().to_string();
    let text = tool::run(&tool_name, &[verb, uri])?;
    if verb != "attach" {
        return Ok(None);
    }
    let path = text.lines().map(str::trim).find(|l| !l.is_empty());
    match path {
        Some(p) if p.starts_with('/') && Path::new(p).exists() => Ok(Some(PathBuf::from(p))),
        _ => {
            let e = Error::CommandFailed {
                tool: tool_name.clone(),
                message: format!(
                    "'attach {}' printed '{}', not the path of an existing file or device",
                    clip(uri),
                    clip(path.unwrap_or(""))
                ),
            };
            Err(e.undo("running its detach", || {
                tool::run(&tool_name, &["detach", uri])
            }))
        }
    }
}

impl Ctx {
    /// What qemu opens for a template's image: its file, its NBD URI, the image's path in
    /// a share's mount (held by `holder`), or the path its scheme's script attached; with
    /// how to give it back. An admin's own script for `nfs` or `smb` replaces thinsr's.
    pub(crate) fn open_image(&self, uri: &str, holder: &Holder) -> Result<(PathBuf, Opened)> {
        Ok(match parse_uri(uri)? {
            Source::File(p) => (p, Opened::Nothing),
            Source::Nbd(u) => (PathBuf::from(u), Opened::Nothing),
            Source::Share(s) if !self.has_script(uri) => {
                let p = holders::acquire(&s, holder, &self.config_dir())?;
                let key = holder.key.clone();
                (p, Opened::Share { id: s.id(), key })
            }
            Source::Http(_) if !self.has_script(uri) => {
                return Err(Error::ImageUnreadable {
                    uri: clip(uri),
                    why: "an http(s) template is read from the local copy fetched when it was \
                          introduced, and this one has none: 'thinsr template forget' it and \
                          introduce it again"
                        .into(),
                })
            }
            Source::Share(_) | Source::Http(_) | Source::Scheme(_) => {
                let s = uri.split_once("://").map_or("", |(s, _)| s).to_string();
                let p = run_scheme(&self.scheme_dir, &s, "attach", uri)?
                    .expect("attach returns a path");
                (p, Opened::Script(s))
            }
        })
    }

    /// True when the scheme directory holds a script for `uri`'s scheme (which then
    /// handles it, even where thinsr has a handler of its own).
    pub(crate) fn has_script(&self, uri: &str) -> bool {
        let scheme = uri.split_once("://").map_or("", |(s, _)| s);
        check_scheme(scheme) && self.scheme_dir.join(scheme).is_file()
    }

    /// Runs `f` on template image `uri` opened for the while (qemu's view of it: a path or
    /// an NBD URI), given back whatever `f` returns.
    pub(crate) fn with_image<T>(&self, uri: &str, f: impl FnOnce(&str) -> Result<T>) -> Result<T> {
        let (path, opened) = self.open_image(uri, &Holder::process())?;
        let result = f(&path.to_string_lossy());
        let closed = opened.close(&self.scheme_dir, uri);
        let value = result?;
        closed?;
        Ok(value)
    }

    /// Reads a template's format and size through whatever its URI needs.
    fn probe_uri(&self, uri: &str) -> Result<(String, Bytes)> {
        match parse_uri(uri)? {
            Source::File(path) => {
                if !path.exists() {
                    return Err(Error::ImageUnreadable {
                        uri: clip(uri),
                        why: format!("{} does not exist", path.display()),
                    });
                }
                let probed = probe(&path.to_string_lossy(), None)?;
                // qemu calls any file raw; a disk image is whole 512-byte sectors.
                let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                if probed.0 == "raw" && !is_block_device(&path) && len % 512 != 0 {
                    return Err(Error::ImageUnreadable {
                        uri: clip(uri),
                        why: format!(
                            "{len} bytes is not a whole number of 512-byte sectors: not a disk image"
                        ),
                    });
                }
                Ok(probed)
            }
            Source::Nbd(u) => probe(&u, Some("raw")),
            Source::Share(_) | Source::Http(_) | Source::Scheme(_) => {
                self.with_image(uri, |path| probe(path, None))
            }
        }
    }

    /// Registers an image after reading its format and size (`template introduce` without
    /// a cache; `cache.rs` adds one).
    pub(crate) fn introduce_template(
        &self,
        uri: &str,
        sr: Option<&str>,
        name: Option<&str>,
    ) -> Result<Volume> {
        parse_uri(uri)?;
        let label = name.map_or_else(|| default_name(uri), str::to_string);
        names::check_label(&label)?;
        let entry = self.entry(sr)?;
        // Probing may take a while (a remote server, a script): not under the SR's lock.
        Self::read_meta(&entry)?;
        let (format, size) = self.probe_uri(uri)?;
        let mut op = self.lock_sr(&entry)?;
        if let Some(t) = op
            .meta
            .vdis
            .iter()
            .find(|v| v.image.as_ref().is_some_and(|i| i.uri == uri))
        {
            return Err(Error::TemplateExists {
                uri: clip(uri),
                name: t.name.clone(),
            });
        }
        let uuid = VdiUuid::random();
        let t = VdiMeta::template(&uuid, &label, uri, &format, size);
        op.meta.vdis.push(t.clone());
        op.save()?;
        let vg = self.lvm.report_vg(&entry.vg)?;
        Ok(self.volume(&entry, &op.meta, &vg, &t, None))
    }

    /// `template forget`: refused while clones read from it or it is attached.
    pub fn template_forget(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        let mut t = self.forget_template_quietly(key, sr)?;
        self.after(crate::engine::hooks::Hook::PostTemplateForget, &mut t)?;
        Ok(t)
    }

    /// `template forget` without its hook (an introduce undone).
    pub(crate) fn forget_template_quietly(&self, key: &str, sr: Option<&str>) -> Result<Volume> {
        self.with_vdi(key, sr, |ctx, op, vg, uuid| {
            let t = op.meta.vdi(uuid).expect("with_vdi found it").clone();
            if !t.is_template() {
                return Err(Error::NotATemplate(t.name.clone()));
            }
            let mut users: Vec<String> = op
                .meta
                .vdis
                .iter()
                .filter(|v| v.origin.as_deref() == Some(t.uuid.as_str()))
                .map(|v| format!("{} ({})", v.name, v.uuid))
                .collect();
            if users.is_empty() {
                if let Some(d) = ctx.our_device(&t.uuid) {
                    users.push(format!("attached read-only as {}", d.path().display()));
                }
            }
            if !users.is_empty() {
                return Err(Error::TemplateInUse {
                    template: t.name.clone(),
                    users,
                });
            }
            let vol = ctx.volume(&op.entry, &op.meta, vg, &t, None);
            op.meta.vdis.retain(|v| v.uuid != t.uuid);
            op.save()?;
            let store = t.lazy.as_ref().map(|l| l.lv.clone());
            for c in t.cache.iter().chain(&t.local).chain(&store) {
                // After the entry: a crash between leaves an orphan copy sr check removes.
                ctx.remove_lv(&LvPath::new(&vg.name, c))?;
            }
            Ok(vol)
        })
    }

    /// `template list`: the templates of one SR or all.
    pub fn template_list(&self, sr: Option<&str>) -> Result<crate::engine::vdi::Listing> {
        let mut listing = self.vdi_list(sr)?;
        listing.volumes.retain(|v| v.kind == VdiKind::Template);
        listing.warnings.retain(|w| !w.contains("carries VDI tag"));
        Ok(listing)
    }

    /// The template named by `key`, or NOT_A_TEMPLATE.
    pub(crate) fn find_template(&self, key: &str, sr: Option<&str>) -> Result<(Found, VdiMeta)> {
        let found = self.resolve(key, sr)?;
        let t = found
            .meta
            .vdi(&found.uuid)
            .expect("resolve found it")
            .clone();
        if !t.is_template() {
            return Err(Error::NotATemplate(t.name));
        }
        Ok((found, t))
    }
}

/// Where template image `uri` is served from and whether its server answers now (bounded
/// by seconds); None for a local file or a scheme script's image.
pub(crate) fn server_state(uri: &str) -> Option<ServerState> {
    let (place, host, port, mounted) = match parse_uri(uri).ok()? {
        // An s3 object read by thinsr itself: its endpoint.
        Source::Scheme(_) if uri.starts_with("s3://") => {
            let endpoint = crate::host::s3::parse(uri).ok()?.endpoint();
            let server = crate::host::http::server_of(&endpoint);
            let (host, port) = server.rsplit_once(':')?;
            (endpoint.clone(), host.to_string(), port.parse().ok()?, None)
        }
        Source::File(_) | Source::Scheme(_) => return None,
        Source::Nbd(u) => {
            let rest = u.strip_prefix("nbd://")?;
            let authority = rest.split('/').next()?;
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                    (h.to_string(), p.parse().ok()?)
                }
                _ => (authority.to_string(), 10809),
            };
            (format!("nbd://{authority}"), host, port, None)
        }
        Source::Http(u) => {
            let server = crate::host::http::server_of(&u);
            let (host, port) = server.rsplit_once(':')?;
            let scheme = u.split_once("://")?.0;
            let authority = u.split_once("://")?.1.split(['/', '?']).next()?;
            (
                format!("{scheme}://{authority}"),
                host.to_string(),
                port.parse().ok()?,
                None,
            )
        }
        Source::Share(s) => {
            let mounted = holders::is_mounted(&s.id());
            let port = s
                .server()
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())?;
            (s.place(), s.host.clone(), port, Some(mounted))
        }
    };
    let answer = crate::host::mount::answering(&host, port, std::time::Duration::from_secs(5));
    Some(ServerState {
        place,
        address: format!("{host}:{port}"),
        reachable: answer.is_ok(),
        error: answer.err().map(|e| e.to_string()),
        mounted,
    })
}

/// An NBD URI an import may read: `nbd://HOST[:PORT]/EXPORT` (as templates take it), or
/// `nbd+unix:///EXPORT?socket=/ABSOLUTE/PATH` with nothing else in its query.
pub fn nbd_uri(uri: &str) -> Result<String> {
    let bad = |why: &str| Error::InvalidUri {
        uri: clip(uri),
        why: why.into(),
    };
    if let Some(rest) = uri.strip_prefix("nbd+unix:///") {
        let (export, query) = rest
            .split_once('?')
            .ok_or_else(|| bad("it names no ?socket="))?;
        let socket = query
            .strip_prefix("socket=")
            .ok_or_else(|| bad("the query holds socket=PATH and nothing else"))?;
        let safe = |c: char| c.is_ascii_alphanumeric() || "+_.-/".contains(c);
        if !export.chars().all(safe) || export.contains("..") {
            return Err(bad(
                "the export name holds letters, digits and + _ . - / only",
            ));
        }
        if !socket.starts_with('/') || socket.contains("..") || !socket.chars().all(safe) {
            return Err(bad("the socket is an absolute path without '..'"));
        }
        return Ok(uri.to_string());
    }
    match parse_uri(uri)? {
        Source::Nbd(u) => Ok(u),
        _ => Err(bad(
            "not an NBD URI: nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn nbd_uris_are_checked() {
        let ok = "nbd+unix:///web01?socket=/run/thinsr/serve/u.sock";
        assert_eq!(nbd_uri(ok).unwrap(), ok);
        assert!(nbd_uri("nbd://host:10809/web01").is_ok());
        for bad in [
            "nbd+unix:///web01",
            "nbd+unix:///web01?socket=relative.sock",
            "nbd+unix:///web01?socket=/run/../etc/x",
            "nbd+unix:///web01?socket=/s&x=1",
            "nbd+unix:///we b?socket=/s",
            "file:///tmp/x.raw",
            "nbd://",
        ] {
            assert!(nbd_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uris_are_checked_before_anything_runs() {
        assert_eq!(
            parse_uri("file:///srv/t.qcow2").unwrap(),
            Source::File("/srv/t.qcow2".into())
        );
        assert_eq!(
            parse_uri("nbd://10.0.0.1:10809/debian").unwrap(),
            Source::Nbd("nbd://10.0.0.1:10809/debian".into())
        );
        assert_eq!(
            parse_uri("nbd://[::1]:10809/x").unwrap(),
            Source::Nbd("nbd://[::1]:10809/x".into())
        );
        assert_eq!(
            parse_uri("s3+ro://bucket/t").unwrap(),
            Source::Scheme("s3+ro".into())
        );
        for bad in [
            "../x://y",
            "a/b://y",
            "A B://y",
            "Up://y",
            "://y",
            "1x://y",
            "/srv/t.qcow2",
            "file://relative/t",
            "file:///srv/../etc/shadow",
            "nbd://:10809/x",
            "nbd://host:99999/x",
            "nbd://host:0/x",
            "nbd://ho st/x",
            "file:///a\nb",
        ] {
            let e = parse_uri(bad).expect_err(bad);
            assert_eq!(e.code(), "INVALID_URI", "{bad}");
        }
        assert!(parse_uri(&format!("file:///{}", "a".repeat(5000))).is_err());
    }

    #[test]
    fn schemes_name_scripts_safely() {
        for ok in ["x", "nfs", "s3+ro", "my.scheme-2"] {
            assert!(check_scheme(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", "A B", "X", "-x", ".", "a b", "é"] {
            assert!(!check_scheme(bad), "{bad}");
        }
        let dir = Path::new("/nonexistent");
        assert!(scheme_script(dir, "../x").is_err());
        assert!(scheme_script(Path::new("relative"), "x").is_err());
    }

    #[test]
    fn default_names_come_from_the_image() {
        assert_eq!(default_name("file:///srv/debian-12.qcow2"), "debian-12");
        assert_eq!(default_name("nbd://host:10809/win10"), "win10");
        assert_eq!(default_name("nbd://host"), "host");
        assert_eq!(default_name("x://a/b.c.raw"), "b.c");
    }
}
