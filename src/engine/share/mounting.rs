//! The mount itself: options for NFS and cifs, SMB credentials, and mount(2) once the
//! server's port answers.

use std::path::Path;
use std::time::Duration;

use super::{Protocol, Share, MNT_DIR};
use crate::error::{Error, Result};
use crate::host::mount::{self, FsType};
use crate::host::rundir;

const MOUNT_WAIT: Duration = Duration::from_secs(30);
/// NFS: a request is retried twice, 10 s apart, then fails (`soft`).
const NFS_TIMING: &str = "soft,timeo=100,retrans=2";
/// Where SMB credentials live, under thinsr's configuration directory.
pub const CREDENTIALS_DIR: &str = "credentials";

/// What an SMB user's credentials file holds.
struct Credentials {
    username: String,
    password: String,
    domain: Option<String>,
}

/// `<config>/credentials/USER@HOST` (or `HOST` with no user in the URI), in mount.cifs's
/// format (`username=`, `password=`, `domain=` lines): root's, readable by no one else.
fn credentials(share: &Share, config_dir: &Path) -> Result<Option<Credentials>> {
    let name = match &share.user {
        Some(u) => format!("{u}@{}", share.host),
        None => share.host.clone(),
    };
    let path = config_dir.join(CREDENTIALS_DIR).join(&name);
    if !path.exists() {
        if share.user.is_some() {
            return Err(Error::InvalidArgument(format!(
                "no credentials for {name}: write username= and password= lines to {} (root's, mode 0600)",
                path.display()
            )));
        }
        return Ok(None);
    }
    let text = crate::host::trust::read_secret(&path)?;
    let field = |k: &str| {
        text.lines().find_map(|l| {
            l.trim_start()
                .strip_prefix(k)?
                .strip_prefix('=')
                .map(str::to_string)
        })
    };
    let username = field("username")
        .or_else(|| field("user"))
        .or_else(|| share.user.clone())
        .ok_or_else(|| {
            Error::InvalidArgument(format!("{} has no username= line", path.display()))
        })?;
    Ok(Some(Credentials {
        username,
        password: field("password")
            .or_else(|| field("pass"))
            .unwrap_or_default(),
        domain: field("domain"),
    }))
}

/// The mount itself: the server's port checked first, then mount(2) with the protocol's
/// options; NFS without a version tries 4.2, 4.1, 4.0 and 3 in turn, as mount.nfs does.
pub(super) fn mount_share(share: &Share, at: &Path, config_dir: &Path) -> Result<()> {
    let creds = match share.protocol {
        Protocol::Smb => credentials(share, config_dir)?,
        Protocol::Nfs => None,
    };
    let (addr, ours) = share.reachable()?;
    rundir::private_dir(Path::new(MNT_DIR))?;
    match std::fs::create_dir(at) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::io(format!("making {}", at.display()), e))
        }
        _ => {}
    }
    let failed = |why: String| Error::ServerUnreachable {
        server: share.server(),
        why: format!("mounting {}: {why}", share.place()),
    };
    match share.protocol {
        Protocol::Nfs => {
            let versions: Vec<&str> = match share.option("vers") {
                Some(v) => vec![v],
                None => vec!["4.2", "4.1", "4.0", "3"],
            };
            let mut last = String::new();
            for vers in versions {
                let data = nfs_data(share, vers, addr, ours);
                let source = format!("{}:{}", share.host, share.export);
                match mount::mount_read_only(FsType::Nfs, &source, at, &data, MOUNT_WAIT) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        last = format!("NFS {vers}: {}", e.message);
                        let other_version = matches!(
                            e.errno,
                            Some(nix::errno::Errno::EPROTONOSUPPORT | nix::errno::Errno::EINVAL)
                        );
                        if !other_version {
                            break;
                        }
                    }
                }
            }
            Err(failed(last))
        }
        Protocol::Smb => {
            let data = smb_data(share, addr, creds.as_ref());
            let source = format!("//{}/{}", share.host, share.export);
            mount::mount_read_only(FsType::Cifs, &source, at, &data, MOUNT_WAIT)
                .map_err(|e| failed(format!("SMB: {}", e.message)))
        }
    }
}

fn nfs_data(share: &Share, vers: &str, addr: std::net::IpAddr, ours: std::net::IpAddr) -> String {
    let mut o = vec![
        format!("vers={vers}"),
        NFS_TIMING.into(),
        format!("addr={addr}"),
    ];
    if vers == "3" {
        // No lock manager for a read-only image.
        o.push("nolock,proto=tcp,mountproto=tcp".into());
    } else {
        o.push(format!("clientaddr={ours}"));
    }
    if let Some(p) = share.port {
        o.push(format!("port={p}"));
    }
    for (k, v) in share.options.iter().filter(|(k, _)| k != "vers") {
        o.push(format!("{k}={v}"));
    }
    o.join(",")
}

/// cifs's options; a comma in the password is doubled, as cifs reads it.
fn smb_data(share: &Share, addr: std::net::IpAddr, creds: Option<&Credentials>) -> String {
    let mut o = vec![
        format!("ip={addr}"),
        "soft".to_string(),
        "echo_interval=10".into(),
    ];
    if let Some(p) = share.port {
        o.push(format!("port={p}"));
    }
    match creds {
        Some(c) => {
            o.push(format!("username={}", c.username.replace(',', "")));
            o.push(format!("password={}", c.password.replace(',', ",,")));
            if let Some(d) = &c.domain {
                o.push(format!("domain={}", d.replace(',', "")));
            }
        }
        // No credentials: an anonymous (null) session, which guest shares take.
        None => o.push("sec=none".into()),
    }
    for (k, v) in &share.options {
        o.push(format!("{k}={v}"));
    }
    o.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::share::parse;

    #[test]
    fn cifs_reads_a_doubled_comma_as_one() {
        let s = parse("smb://files/isos/a.vhd").unwrap().unwrap();
        let c = Credentials {
            username: "ops".into(),
            password: "a,b".into(),
            domain: None,
        };
        let data = smb_data(&s, "10.0.0.1".parse().unwrap(), Some(&c));
        assert!(data.contains("password=a,,b"), "{data}");
        assert!(smb_data(&s, "10.0.0.1".parse().unwrap(), None).contains("sec=none"));
    }

    #[test]
    fn nfs_3_takes_no_lock_manager() {
        let v3 = parse("nfs://nas:2050/srv/templates/x.raw?vers=3")
            .unwrap()
            .unwrap();
        let data = nfs_data(
            &v3,
            "3",
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        );
        assert!(
            data.contains("nolock") && data.contains("port=2050"),
            "{data}"
        );
    }
}
