//! HTTP and HTTPS downloads (ureq over rustls): TLS verified against the host's CA store
//! (the file or directory OpenSSL would read: /etc/pki/tls on dom0, /etc/ssl elsewhere, or
//! SSL_CERT_FILE), every connect and read bounded, and a download resumed where it stopped
//! when the server still has the same file.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::units::clip;

const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// The longest a read may wait for the server's next bytes.
const READ_WAIT: Duration = Duration::from_secs(30);

/// A response body from `from` on.
pub struct Body {
    /// The byte its first byte is at: `from` when the server resumed, 0 when it sent the
    /// whole file (it changed, or cannot send ranges).
    pub start: u64,
    /// The whole file's length.
    pub length: u64,
    /// What names this version of the file (its ETag, else its Last-Modified).
    pub validator: Option<String>,
    pub reader: Box<dyn Read + Send + Sync>,
}

fn agent() -> Result<ureq::Agent> {
    agent_with(None, 1, true)
}

/// An agent whose every request ends within `bound` (connect, headers and body), keeping
/// up to `idle` connections per server open for the next request. Without `tls` (plain
/// http:// only) the host's CA store is not needed.
fn agent_with(bound: Option<Duration>, idle: usize, tls: bool) -> Result<ureq::Agent> {
    let mut roots = rustls::RootCertStore::empty();
    let found = match tls {
        true => rustls_native_certs::load_native_certs().map_err(|e| Error::ServerUnreachable {
            server: "this host's CA store".into(),
            why: format!("cannot read it: {e}"),
        })?,
        false => Vec::new(),
    };
    let (added, _) = roots.add_parsable_certificates(found);
    if added == 0 && tls {
        return Err(Error::InvalidArgument(
            "this host's CA store holds no certificate (install ca-certificates, or set SSL_CERT_FILE): an https:// server cannot be checked".into(),
        ));
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::InvalidArgument(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut b = ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_WAIT.min(bound.unwrap_or(CONNECT_WAIT)))
        .timeout_read(READ_WAIT)
        .max_idle_connections_per_host(idle)
        .max_idle_connections(idle.max(16));
    if let Some(b2) = bound {
        b = b.timeout(b2);
    }
    Ok(b.user_agent(concat!("thinsr/", env!("CARGO_PKG_VERSION")))
        .tls_config(Arc::new(tls))
        .build())
}

/// `host:port` of `url`, for messages.
pub fn server_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if authority
        .rsplit_once(':')
        .is_some_and(|(h, _)| !h.ends_with(']') || h.starts_with('['))
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:{}", if scheme == "http" { 80 } else { 443 })
    }
}

/// GETs `url` from byte `from` (a resumed download: only if the file is still `validator`).
pub fn get(url: &str, from: u64, validator: Option<&str>) -> Result<Body> {
    let mut req = agent()?.get(url);
    if from > 0 {
        req = req.set("Range", &format!("bytes={from}-"));
        if let Some(v) = validator {
            req = req.set("If-Range", v);
        }
    }
    let resp = req.call().map_err(|e| status_error(url, e))?;
    let validator = resp
        .header("ETag")
        .or_else(|| resp.header("Last-Modified"))
        .map(str::to_string);
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let (start, length) = if resp.status() == 206 {
        // "bytes START-END/LENGTH"
        let range = resp.header("Content-Range").unwrap_or_default();
        let parsed = range
            .strip_prefix("bytes ")
            .and_then(|r| r.split_once('/'))
            .and_then(|(span, len)| Some((number(span.split_once('-')?.0)?, number(len)?)));
        match parsed {
            Some((s, l)) if s == from => (s, l),
            _ => {
                return Err(Error::ImageUnreadable {
                    uri: clip(url),
                    why: format!("the server sent range '{}' for bytes {from}-", clip(range)),
                })
            }
        }
    } else {
        let len = resp
            .header("Content-Length")
            .and_then(number)
            .ok_or_else(|| Error::ImageUnreadable {
                uri: clip(url),
                why: "the server does not say how long the file is (no Content-Length)".into(),
            })?;
        (0, len)
    };
    Ok(Body {
        start,
        length,
        validator,
        reader: Box::new(resp.into_reader()),
    })
}

/// The one version of a file a lazy template reads: every range request is conditional on
/// it, so a file replaced on the server is never mixed with the one read before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// A strong ETag (`"..."`), checked with If-Match.
    ETag(String),
    /// Last-Modified (the server gave no strong ETag), checked with If-Unmodified-Since.
    Modified(String),
}

impl Pinned {
    /// As recorded: the ETag with its quotes, or `modified:` and the date.
    pub fn to_record(&self) -> String {
        match self {
            Pinned::ETag(e) => e.clone(),
            Pinned::Modified(d) => format!("modified:{d}"),
        }
    }

    pub fn from_record(s: &str) -> Pinned {
        match s.strip_prefix("modified:") {
            Some(d) => Pinned::Modified(d.to_string()),
            None => Pinned::ETag(s.to_string()),
        }
    }

    fn condition(&self) -> (&'static str, &str) {
        match self {
            Pinned::ETag(e) => ("If-Match", e),
            Pinned::Modified(d) => ("If-Unmodified-Since", d),
        }
    }

    /// What a response's own validators say of it: false when it names another version.
    fn matches(&self, resp: &ureq::Response) -> bool {
        match self {
            Pinned::ETag(e) => resp.header("ETag").is_none_or(|got| got == e),
            Pinned::Modified(d) => resp.header("Last-Modified").is_none_or(|got| got == d),
        }
    }
}

/// What a lazy template learns of its file at introduce: one request for its first bytes.
#[derive(Debug)]
pub struct Probe {
    pub length: u64,
    pub pinned: Pinned,
    /// The file's first bytes (at most what was asked), for its format.
    pub head: Vec<u8>,
}

/// Why a range could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// The server holds another version of the file now (412, or other validators).
    Changed(String),
    /// No answer within the bound, or the connection failed.
    Unreachable(String),
    /// Any other answer (404, a range not asked for).
    Refused(String),
}

impl std::fmt::Display for RangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RangeError::Changed(w) => write!(f, "the file changed on the server: {w}"),
            RangeError::Unreachable(w) => write!(f, "the server does not answer: {w}"),
            RangeError::Refused(w) => f.write_str(w),
        }
    }
}

/// "bytes START-END/LENGTH" as (start, end inclusive, length).
fn content_range(resp: &ureq::Response) -> Option<(u64, u64, u64)> {
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let (span, len) = resp
        .header("Content-Range")?
        .strip_prefix("bytes ")?
        .split_once('/')?;
    let (s, e) = span.split_once('-')?;
    Some((number(s)?, number(e)?, number(len)?))
}

/// Where a lazy template's requests go: an http(s) URL, or an s3 object whose URL is
/// signed for each request.
enum Target {
    Plain(String),
    S3(Box<super::s3::Object>),
}

impl Target {
    fn of(uri: &str, config: &std::path::Path) -> Result<Target> {
        if uri.starts_with("s3://") {
            return Ok(Target::S3(Box::new(super::s3::Object::open(uri, config)?)));
        }
        Ok(Target::Plain(uri.to_string()))
    }

    fn url(&self) -> String {
        match self {
            Target::Plain(u) => u.clone(),
            Target::S3(o) => o.url(),
        }
    }

    fn is_tls(&self) -> bool {
        !self.url().starts_with("http://")
    }

    /// What messages name as the server (never a signed URL).
    fn server(&self, uri: &str) -> String {
        match self {
            Target::Plain(_) => server_of(uri),
            Target::S3(o) => format!("s3 endpoint {}", o.endpoint),
        }
    }
}

/// Why a transport failed, without its URL (a signed one carries a key's id).
fn transport_why(t: &ureq::Transport) -> String {
    match t.message() {
        Some(m) => format!("{}: {m}", t.kind()),
        None => t.kind().to_string(),
    }
}

/// What a refusal says: its status, and an S3 server's error code when it sends one.
fn refusal(code: u16, r: ureq::Response) -> String {
    let status = format!("{code} {}", r.status_text());
    let mut body = String::new();
    let _ = r.into_reader().take(4096).read_to_string(&mut body);
    match body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
    {
        Some((c, _)) if c.len() < 64 && c.chars().all(|c| c.is_ascii_alphanumeric()) => {
            format!("the server answered {status} ({c})")
        }
        _ => format!("the server answered {status}"),
    }
}

/// Ranged reads of one version of one file, over a few kept-alive connections, each
/// request ending within a bound.
pub struct Ranged {
    agent: ureq::Agent,
    target: Target,
    /// The template's URI as given, for messages.
    pub uri: String,
    pub pinned: Pinned,
    pub length: u64,
}

/// Connections kept open to a lazy template's server (as many as the NBD server's
/// workers ask at once).
const KEEP: usize = 8;

impl Ranged {
    /// Reads of `uri` (http(s)://, or s3:// with its keys read from under `config`).
    pub fn new(
        uri: &str,
        config: &std::path::Path,
        pinned: Pinned,
        length: u64,
        bound: Duration,
    ) -> Result<Ranged> {
        let target = Target::of(uri, config)?;
        Ok(Ranged {
            agent: agent_with(Some(bound), KEEP, target.is_tls())?,
            target,
            uri: uri.to_string(),
            pinned,
            length,
        })
    }

    /// Asks for the first `head` bytes of `uri` and the version to pin; the server must
    /// answer ranges and name the version (a strong ETag, else Last-Modified).
    pub fn probe(uri: &str, config: &std::path::Path, head: u64, bound: Duration) -> Result<Probe> {
        let target = Target::of(uri, config)?;
        let refused = |why: String| Error::ImageUnreadable {
            uri: clip(uri),
            why,
        };
        let resp = agent_with(Some(bound), 1, target.is_tls())?
            .get(&target.url())
            .set("Range", &format!("bytes=0-{}", head.max(1) - 1))
            .call()
            .map_err(|e| match e {
                ureq::Error::Status(code, r) => refused(refusal(code, r)),
                ureq::Error::Transport(t) => Error::ServerUnreachable {
                    server: target.server(uri),
                    why: transport_why(&t),
                },
            })?;
        if resp.status() != 206 {
            return Err(refused(format!(
                "the server answered {} to a range request: it cannot be read lazily ('--sha256' fetches it whole)",
                resp.status()
            )));
        }
        let (start, end, length) = content_range(&resp)
            .filter(|(s, _, _)| *s == 0)
            .ok_or_else(|| refused("the server sent no usable Content-Range".into()))?;
        let pinned = match (resp.header("ETag"), resp.header("Last-Modified")) {
            (Some(e), _) if e.starts_with('"') => Pinned::ETag(e.to_string()),
            (_, Some(d)) => Pinned::Modified(d.to_string()),
            _ => {
                return Err(refused(
                    "the server names no version of the file (no strong ETag, no Last-Modified): reading it lazily could mix two versions ('--sha256' fetches it whole)".into(),
                ))
            }
        };
        let mut head = Vec::new();
        resp.into_reader()
            .take(end + 1 - start)
            .read_to_end(&mut head)
            .map_err(|e| Error::ServerUnreachable {
                server: target.server(uri),
                why: e.to_string(),
            })?;
        Ok(Probe {
            length,
            pinned,
            head,
        })
    }

    /// Reads `buf.len()` bytes from `start` (within the file) of the pinned version.
    pub fn read(&self, start: u64, buf: &mut [u8]) -> std::result::Result<(), RangeError> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = start + buf.len() as u64 - 1;
        if end >= self.length {
            return Err(RangeError::Refused(format!(
                "bytes {start}-{end} lie past the file's {} bytes",
                self.length
            )));
        }
        let (if_name, if_value) = self.pinned.condition();
        let resp = self
            .agent
            .get(&self.target.url())
            .set("Range", &format!("bytes={start}-{end}"))
            .set(if_name, if_value)
            .call();
        let resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Status(412, _)) => {
                return Err(RangeError::Changed(format!(
                    "it is no longer the version introduced ({})",
                    self.pinned.to_record()
                )))
            }
            Err(ureq::Error::Status(code, r)) => return Err(RangeError::Refused(refusal(code, r))),
            Err(ureq::Error::Transport(t)) => {
                return Err(RangeError::Unreachable(format!(
                    "{}: {}",
                    self.target.server(&self.uri),
                    transport_why(&t)
                )))
            }
        };
        if !self.pinned.matches(&resp) {
            return Err(RangeError::Changed(format!(
                "the server sent version {} of it, not {}",
                resp.header("ETag")
                    .or(resp.header("Last-Modified"))
                    .unwrap_or("?"),
                self.pinned.to_record()
            )));
        }
        match content_range(&resp) {
            Some((s, e, l)) if s == start && e == end && l == self.length => {}
            Some((_, _, l)) if l != self.length => {
                return Err(RangeError::Changed(format!(
                    "it is {l} bytes long now, not {}",
                    self.length
                )))
            }
            _ => {
                return Err(RangeError::Refused(format!(
                    "the server answered {} without bytes {start}-{end}",
                    resp.status()
                )))
            }
        }
        resp.into_reader()
            .read_exact(buf)
            .map_err(|e| RangeError::Unreachable(format!("reading bytes {start}-{end}: {e}")))
    }
}

fn status_error(url: &str, e: ureq::Error) -> Error {
    match e {
        ureq::Error::Status(code, r) => Error::ImageUnreadable {
            uri: clip(url),
            why: format!("the server answered {code} {}", r.status_text()),
        },
        ureq::Error::Transport(t) => Error::ServerUnreachable {
            server: server_of(url),
            why: t.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_versions_round_trip_through_their_record() {
        for p in [
            Pinned::ETag("\"abc-1\"".into()),
            Pinned::Modified("Tue, 01 Dec 2026 10:00:00 GMT".into()),
        ] {
            assert_eq!(Pinned::from_record(&p.to_record()), p);
        }
        assert_eq!(
            Pinned::ETag("\"x\"".into()).condition(),
            ("If-Match", "\"x\"")
        );
    }

    #[test]
    fn servers_are_named_with_their_port() {
        assert_eq!(
            server_of("https://cdn.example.org/x/y.qcow2"),
            "cdn.example.org:443"
        );
        assert_eq!(server_of("http://10.0.0.1/y.raw"), "10.0.0.1:80");
        assert_eq!(server_of("https://h:8443/y?x=1"), "h:8443");
        assert_eq!(server_of("https://[::1]/y"), "[::1]:443");
    }
}
