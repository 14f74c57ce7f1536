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
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs().map_err(|e| Error::ServerUnreachable {
        server: "this host's CA store".into(),
        why: format!("cannot read it: {e}"),
    })?;
    let (added, _) = roots.add_parsable_certificates(found);
    if added == 0 {
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
    Ok(ureq::AgentBuilder::new()
        .timeout_connect(CONNECT_WAIT)
        .timeout_read(READ_WAIT)
        .user_agent(concat!("thinsr/", env!("CARGO_PKG_VERSION")))
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
    let resp = req.call().map_err(|e| match e {
        ureq::Error::Status(code, r) => Error::ImageUnreadable {
            uri: clip(url),
            why: format!("the server answered {code} {}", r.status_text()),
        },
        ureq::Error::Transport(t) => Error::ServerUnreachable {
            server: server_of(url),
            why: t.to_string(),
        },
    })?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
