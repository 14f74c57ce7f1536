//! `s3://BUCKET/KEY[?endpoint=URL&region=REGION]` objects: where they are (the endpoint
//! given, path-style, as MinIO, Ceph RGW and Garage serve; else AWS's own endpoint for the
//! region, virtual-hosted), the keys to sign with, and a GET URL signed with AWS Signature
//! V4 (rusty-s3, query-string signing) made for each request.
//!
//! Keys live in `<config>/credentials/s3/HOST` (HOST: the endpoint's host name, or
//! `default`) in AWS's shared-credentials format, root's and mode 0600; no file: requests
//! go unsigned (a public bucket). They stay in the process that reads them: never in an
//! argument, the environment, a log, the SR's metadata or an error (a signed URL carries
//! the key's id and a signature, so no message ever shows one).

use std::path::Path;
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::error::{Error, Result};
use crate::units::clip;

/// Signed URLs are made per request; this only bounds a leaked one.
const SIGNED_FOR: Duration = Duration::from_secs(900);
const DEFAULT_REGION: &str = "us-east-1";

/// Where an s3:// URI points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    pub key: String,
    /// The endpoint given (`http(s)://HOST[:PORT]`), or None for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

impl Location {
    /// The endpoint requests go to: the one given, or AWS's for the region.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone().unwrap_or_else(|| {
            format!(
                "https://s3.{}.amazonaws.com",
                self.region.as_deref().unwrap_or(DEFAULT_REGION)
            )
        })
    }

    /// The endpoint's host name, which names its credentials file.
    pub fn host(&self) -> String {
        let e = self.endpoint();
        let rest = e.split_once("://").map_or(e.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6).to_string(),
            None => authority.split(':').next().unwrap_or(authority).to_string(),
        }
    }
}

fn bad(uri: &str, why: &str) -> Error {
    Error::InvalidUri {
        uri: clip(uri),
        why: why.into(),
    }
}

/// Reads an s3:// URI; refuses what S3 would not name (bucket rules) or what could smuggle
/// something into a request (spaces, fragments, credentials in the endpoint).
pub fn parse(uri: &str) -> Result<Location> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| bad(uri, "not an s3:// URI"))?;
    if uri
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    {
        return Err(bad(uri, "spaces and fragments are not allowed"));
    }
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (bucket, key) = path
        .split_once('/')
        .ok_or_else(|| bad(uri, "it needs s3://BUCKET/KEY"))?;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if !bucket_ok {
        return Err(bad(
            uri,
            "a bucket's name is 3 to 63 lowercase letters, digits, '-' and '.'",
        ));
    }
    if key.is_empty() || key.len() > 1024 {
        return Err(bad(uri, "it needs an object key after the bucket"));
    }
    let mut loc = Location {
        bucket: bucket.into(),
        key: key.into(),
        endpoint: None,
        region: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("endpoint", e)) => {
                let authority = e
                    .strip_prefix("https://")
                    .or_else(|| e.strip_prefix("http://"))
                    .map(|a| a.trim_end_matches('/'))
                    .filter(|a| {
                        !a.is_empty()
                            && a.chars()
                                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
                    });
                if authority.is_none() {
                    return Err(bad(
                        uri,
                        "the endpoint is http(s)://HOST[:PORT] only (no credentials, no path)",
                    ));
                }
                loc.endpoint = Some(e.trim_end_matches('/').to_string());
            }
            Some(("region", r))
                if !r.is_empty()
                    && r.len() <= 64
                    && r.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                loc.region = Some(r.into());
            }
            _ => {
                return Err(bad(
                    uri,
                    "its query takes endpoint=http(s)://HOST[:PORT] and region=NAME only",
                ))
            }
        }
    }
    Ok(loc)
}

/// The keys of `<config>/credentials/s3/HOST` (or `default`), if a file is there: the
/// access key's id and secret, and the region it names.
fn credentials(config: &Path, host: &str) -> Result<Option<(Credentials, Option<String>)>> {
    let dir = config.join("credentials").join("s3");
    let Some(path) = [host, "default"]
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.symlink_metadata().is_ok())
    else {
        return Ok(None);
    };
    let text = crate::host::trust::read_secret(&path)?;
    let field = |k: &str| {
        text.lines().find_map(|l| {
            let (name, value) = l.split_once('=')?;
            (name.trim() == k).then(|| value.trim().to_string())
        })
    };
    match (field("aws_access_key_id"), field("aws_secret_access_key")) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
            Ok(Some((Credentials::new(id, secret), field("region"))))
        }
        // Named only by path: the file's content is never repeated.
        _ => Err(Error::InvalidArgument(format!(
            "{} needs aws_access_key_id = and aws_secret_access_key = lines",
            path.display()
        ))),
    }
}

/// An object to read: URLs signed for each request.
pub struct Object {
    bucket: Bucket,
    key: String,
    keys: Option<Credentials>,
    /// `scheme://host[:port]` of the endpoint, for messages.
    pub endpoint: String,
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        write!(f, "s3 object {} at {}", self.key, self.endpoint)
    }
}

impl Object {
    /// The object of `uri`, with the keys of its endpoint's file under `config` (if any).
    pub fn open(uri: &str, config: &Path) -> Result<Object> {
        let loc = parse(uri)?;
        let keys = credentials(config, &loc.host())?;
        let region = loc
            .region
            .clone()
            .or_else(|| keys.as_ref().and_then(|(_, r)| r.clone()))
            .unwrap_or_else(|| DEFAULT_REGION.into());
        let endpoint = match &loc.endpoint {
            Some(e) => e.clone(),
            None => format!("https://s3.{region}.amazonaws.com"),
        };
        let style = match loc.endpoint {
            Some(_) => UrlStyle::Path,
            None => UrlStyle::VirtualHost,
        };
        let url = url::Url::parse(&endpoint).map_err(|e| bad(uri, &e.to_string()))?;
        let bucket = Bucket::new(url, style, loc.bucket.clone(), region)
            .map_err(|e| bad(uri, &e.to_string()))?;
        Ok(Object {
            bucket,
            key: loc.key,
            keys: keys.map(|(k, _)| k),
            endpoint,
        })
    }

    /// A GET URL of the object, signed now when there are keys.
    pub fn url(&self) -> String {
        self.bucket
            .get_object(self.keys.as_ref(), &self.key)
            .sign(SIGNED_FOR)
            .to_string()
            .trim_end_matches('?')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_a_bucket_a_key_and_where_they_are() {
        let l = parse("s3://images/debian-12.qcow2?endpoint=https://s3.lan:9000&region=garage")
            .unwrap();
        assert_eq!(l.bucket, "images");
        assert_eq!(l.key, "debian-12.qcow2");
        assert_eq!(l.endpoint(), "https://s3.lan:9000");
        assert_eq!(l.host(), "s3.lan");
        assert_eq!(l.region.as_deref(), Some("garage"));
        let aws = parse("s3://my-bucket/a/b/c.raw").unwrap();
        assert_eq!(aws.endpoint(), "https://s3.us-east-1.amazonaws.com");
        assert_eq!(aws.host(), "s3.us-east-1.amazonaws.com");
        for bad in [
            "s3://UPPER/x",
            "s3://ab/x",
            "s3://bucket",
            "s3://bucket/",
            "s3://bucket/x?endpoint=ftp://h",
            "s3://bucket/x?endpoint=https://u:p@h",
            "s3://bucket/x?endpoint=https://h/path",
            "s3://bucket/x?foo=1",
            "s3://bucket/x y",
            "s3://bucket/x#frag",
            "s3://bucket/x?region=a;b",
        ] {
            assert!(parse(bad).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn urls_are_path_style_at_an_endpoint_and_virtual_hosted_at_aws() {
        let dir = std::env::temp_dir().join(format!("thinsr-s3-{}", std::process::id()));
        let o = Object::open("s3://images/d.raw?endpoint=http://127.0.0.1:9000", &dir).unwrap();
        assert!(o.keys.is_none());
        assert_eq!(o.url(), "http://127.0.0.1:9000/images/d.raw");
        let o = Object::open("s3://images/d.raw?region=eu-west-3", &dir).unwrap();
        assert_eq!(o.url(), "https://images.s3.eu-west-3.amazonaws.com/d.raw");
    }

    #[test]
    fn a_signed_url_carries_the_key_id_and_a_signature_never_the_secret() {
        let bucket = Bucket::new(
            url::Url::parse("http://127.0.0.1:9000").unwrap(),
            UrlStyle::Path,
            "images",
            "us-east-1",
        )
        .unwrap();
        let o = Object {
            bucket,
            key: "d.raw".into(),
            keys: Some(Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG")),
            endpoint: "http://127.0.0.1:9000".into(),
        };
        let u = o.url();
        assert!(u.contains("X-Amz-Signature="), "{u}");
        assert!(u.contains("AKIDEXAMPLE"), "{u}");
        assert!(!u.contains("wJalrXUtnFEMI"), "{u}");
        assert!(!format!("{o:?}").contains("AKIDEXAMPLE"));
    }
}
