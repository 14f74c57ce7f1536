//! Servers on the VM's loopback for templates that live on them: the kernel's nfsd (NFSv4,
//! with nfs-kernel-server's rpc.mountd and exportfs), Samba's smbd, and an HTTPS server of
//! the test's own (rustls, with ranges).

use std::process::{Command, Stdio};

use super::sh;

/// Runs a server that detaches itself, its output nowhere.
pub fn daemon(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("server starts");
    assert!(st.success(), "{args:?} failed");
}

/// Starts nfsd exporting `dir` read-only to 127.0.0.1, NFS 3 and 4 (rpcbind for 3's MOUNT
/// protocol); a grace period of 10 s (the least nfsd takes; opens wait for it), which the
/// caller overlaps with its own setup.
pub fn nfs_serve(dir: &str) {
    sh(&["ip", "link", "set", "lo", "up"]);
    for d in [dir, "/var/lib/nfs/v4recovery", "/proc/fs/nfsd"] {
        sh(&["mkdir", "-p", d]);
    }
    if !std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .contains("/proc/fs/nfsd")
    {
        sh(&["mount", "-t", "nfsd", "nfsd", "/proc/fs/nfsd"]);
    }
    std::fs::write(
        "/etc/exports",
        format!("{dir} 127.0.0.1(ro,no_root_squash,no_subtree_check,insecure,fsid=1)\n"),
    )
    .unwrap();
    for f in ["/var/lib/nfs/etab", "/var/lib/nfs/rmtab"] {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
            .unwrap();
    }
    sh(&["exportfs", "-ra"]);
    // rpcbind drops to its own user.
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    if !passwd.contains("\n_rpc:") {
        std::fs::write(
            "/etc/passwd",
            format!("{passwd}_rpc:x:102:65534::/run/rpcbind:/bin/false\n"),
        )
        .unwrap();
    }
    sh(&["mkdir", "-p", "/run/rpcbind"]);
    // Daemons: nothing of ours may stay on their output, which a capture would wait on.
    daemon(&["rpcbind", "-w"]);
    daemon(&["rpc.mountd"]);
    nfs_start();
}

/// nfsd's threads and sockets back (after `nfs_stop`).
pub fn nfs_start() {
    sh(&["rpc.nfsd", "-G", "10", "-L", "10", "-p", "2049", "-U", "8"]);
}

/// Stops nfsd's threads: its port refuses connections, its clients' requests fail.
pub fn nfs_stop() {
    sh(&["rpc.nfsd", "0"]);
}

/// The mounts of thinsr's shares: (mount point, filesystem type).
pub fn share_mounts() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f[1].starts_with("/run/thinsr/mnt/")
                .then(|| (f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

/// Starts Samba's smbd sharing `dir` read-only as `tpl`, for `user` with `password`
/// (and for guests). SMB 2 and 3 only, on port 445.
pub fn smb_serve(dir: &str, user: &str, password: &str) {
    sh(&["ip", "link", "set", "lo", "up"]);
    for d in [
        dir,
        "/etc/samba",
        "/var/lib/samba/private",
        "/var/cache/samba",
        "/run/samba",
        "/var/log/samba",
        "/var/lock/samba",
    ] {
        sh(&["mkdir", "-p", d]);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    if !passwd.contains(&format!("\n{user}:")) {
        std::fs::write(
            "/etc/passwd",
            format!(
                "{passwd}{user}:x:1000:1000::/:/bin/false\nnobody:x:65534:65534::/:/bin/false\n"
            ),
        )
        .unwrap();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        std::fs::write(
            "/etc/group",
            format!("{group}{user}:x:1000:\nnogroup:x:65534:\n"),
        )
        .unwrap();
    }
    std::fs::write(
        "/etc/samba/smb.conf",
        format!(
            "[global]\n\tmap to guest = Bad User\n\tsmb ports = 445\n\tdisable netbios = yes\n\
             \tlog file = /tmp/smbd.log\n\tload printers = no\n\tprinting = bsd\n\
             \tprintcap name = /dev/null\n[tpl]\n\tpath = {dir}\n\tread only = yes\n\tguest ok = yes\n"
        ),
    )
    .unwrap();
    let mut child = Command::new("smbpasswd")
        .args(["-s", "-a", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{password}\n{password}").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success(), "smbpasswd failed");
    smb_start();
}

pub fn smb_start() {
    daemon(&["smbd", "-D"]);
    // smbd listens a moment after it detaches.
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect("127.0.0.1:445").is_err() {
        assert!(t.elapsed().as_secs() < 30, "smbd does not listen on 445");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Kills every smbd: its port refuses connections.
pub fn smb_stop() {
    let _ = Command::new("killall").args(["-9", "smbd"]).status();
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect("127.0.0.1:445").is_ok() {
        assert!(t.elapsed().as_secs() < 30, "smbd still listens");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A web server over TLS on the loopback serving the files of a directory, with ranges
/// (`bytes=A-B` and `bytes=A-`, If-Range, If-Match and If-Unmodified-Since on its
/// validators) and keep-alive as a CDN would, made to drop one response part way, or to
/// hang (hold every request unanswered) while `paused`.
pub struct Https {
    pub port: u16,
    /// Body bytes sent, over all responses.
    pub sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// When non-zero, the next response is cut after this many body bytes (once).
    pub cut_after: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Every request's Range header ("" for none).
    pub ranges: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// While set, requests are read and left unanswered.
    pub paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Requests refused with 412 (their condition named another version).
    pub refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// TCP connections accepted.
    pub connections: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Starts an HTTPS server for `dir` with a certificate for 127.0.0.1 signed by a CA made
/// now, which is put where the host's CA store is read (/etc/ssl/certs).
pub fn https_serve(dir: &str) -> Https {
    use std::sync::{Arc, Mutex};
    sh(&["ip", "link", "set", "lo", "up"]);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "thinsr test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca_cert, &ca_key)
        .unwrap();
    sh(&["mkdir", "-p", "/etc/ssl/certs"]);
    std::fs::write("/etc/ssl/certs/ca-certificates.crt", ca_cert.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Https {
        port: listener.local_addr().unwrap().port(),
        sent: Default::default(),
        cut_after: Default::default(),
        ranges: Arc::new(Mutex::new(Vec::new())),
        paused: Default::default(),
        refused: Default::default(),
        connections: Default::default(),
    };
    let shared = Shared {
        sent: server.sent.clone(),
        cut: server.cut_after.clone(),
        ranges: server.ranges.clone(),
        paused: server.paused.clone(),
        refused: server.refused.clone(),
        dir: dir.to_string(),
    };
    let connections = server.connections.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (config, shared) = (config.clone(), shared.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // Keep-alive: requests on one connection until it ends or is cut.
                while shared.answer(&mut tls) {}
            });
        }
    });
    server
}

#[derive(Clone)]
struct Shared {
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
    cut: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ranges: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    dir: String,
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>;

impl Shared {
    /// Answers one request on `tls`; false when the connection is to end.
    fn answer(&self, tls: &mut Tls) -> bool {
        use std::io::{BufRead, BufReader, Read, Seek, Write};
        use std::sync::atomic::Ordering;
        let mut head = Vec::new();
        {
            let mut r = BufReader::new(&mut *tls);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return false;
                }
                if line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
        }
        while self.paused.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let target = head[0].split(' ').nth(1).unwrap_or("/");
        let path = target.split('?').next().unwrap_or("/").to_string();
        let header = |name: &str| {
            head.iter()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let range = header("Range");
        self.ranges.lock().unwrap().push(range.clone());
        let file = format!("{}{path}", self.dir);
        let Ok(mut f) = std::fs::File::open(&file) else {
            let _ = tls.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            return true;
        };
        let meta = f.metadata().unwrap();
        let len = meta.len();
        // A file written since has another ETag and date.
        let mtime = meta
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let etag = format!("\"{len}-{}\"", mtime.as_nanos());
        let date = format!("Mon, 07 Dec 2026 00:00:{:02} GMT", mtime.as_nanos() % 60);
        let if_match = header("If-Match");
        let if_unmodified = header("If-Unmodified-Since");
        if (!if_match.is_empty() && if_match != etag)
            || (!if_unmodified.is_empty() && if_unmodified != date)
        {
            self.refused.fetch_add(1, Ordering::SeqCst);
            let _ = tls.write_all(b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n");
            return true;
        }
        let span = range.strip_prefix("bytes=").and_then(|r| {
            let (a, b) = r.split_once('-')?;
            let a = a.parse::<u64>().ok()?;
            let b = if b.is_empty() {
                len.checked_sub(1)?
            } else {
                b.parse::<u64>().ok()?.min(len.checked_sub(1)?)
            };
            (a <= b).then_some((a, b))
        });
        let if_range = header("If-Range");
        let span = span.filter(|_| if_range.is_empty() || if_range == etag);
        let (from, to) = span.unwrap_or((0, len.saturating_sub(1)));
        let body = if len == 0 { 0 } else { to + 1 - from };
        let status = if span.is_some() {
            format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{to}/{len}\r\n")
        } else {
            "HTTP/1.1 200 OK\r\n".to_string()
        };
        let _ = write!(
            tls,
            "{status}Content-Length: {body}\r\nETag: {etag}\r\nLast-Modified: {date}\r\nAccept-Ranges: bytes\r\n\r\n"
        );
        f.seek(std::io::SeekFrom::Start(from)).unwrap();
        let limit = self.cut.swap(0, Ordering::SeqCst);
        let mut left = if limit > 0 { limit.min(body) } else { body };
        let mut buf = vec![0u8; 256 << 10];
        while left > 0 {
            let n = f.read(&mut buf[..left.min(256 << 10) as usize]).unwrap();
            if n == 0 || tls.write_all(&buf[..n]).is_err() {
                return false;
            }
            self.sent.fetch_add(n as u64, Ordering::SeqCst);
            left -= n as u64;
        }
        if tls.flush().is_err() {
            return false;
        }
        if limit > 0 {
            // A connection that drops: no TLS close, the socket just ends.
            let _ = tls.sock.shutdown(std::net::Shutdown::Both);
            return false;
        }
        !header("Connection").eq_ignore_ascii_case("close")
    }
}
