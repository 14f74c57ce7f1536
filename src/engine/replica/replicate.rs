//! `vdi replicate VDI --to ssh://[USER@]HOST[:PORT][/SR] | --to SR`: one round of keeping a
//! replica current, for cron. A snapshot; the newest snapshot both sides hold, found by
//! the replica's record of its source (never by name); the stream of what changed since it
//! piped into `thinsr vdi receive` on the other side (through the system's `ssh`, with the
//! admin's keys and config, or a local child); older replication snapshots pruned on both
//! sides. A receive a cut stream left is resumed first. One run per VDI at a time.

use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::engine::context::Ctx;
use crate::engine::meta::VdiKind;
use crate::error::{Error, Result};
use crate::host::ssh::{self, shell_safe, Login};
use crate::host::{lock, tool};
use crate::progress::Progress;
use crate::units::Bytes;

/// The key marking thinsr's replication snapshots (its value: where they went).
pub const REPLICATION_KEY: &str = "thinsr.replication";

/// Where a replica lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Another host, through `ssh`; its SR (None: its only one).
    Ssh { login: Login, sr: Option<String> },
    /// Another SR of this host.
    Local { sr: String },
}

impl Destination {
    pub fn parse(s: &str) -> Result<Destination> {
        let bad = |why: &str| Error::InvalidUri {
            uri: crate::units::clip(s),
            why: why.into(),
        };
        let Some(rest) = s.strip_prefix("ssh://") else {
            if s.contains("://") {
                return Err(bad(
                    "replicas go to ssh://[USER@]HOST[:PORT][/SR] or an SR of this host",
                ));
            }
            return Ok(Destination::Local { sr: s.to_string() });
        };
        let (authority, sr) = match rest.split_once('/') {
            Some((a, "")) => (a, None),
            Some((a, sr)) => (a, Some(sr.to_string())),
            None => (rest, None),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))?,
                ),
            ),
            _ => (hostport, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name_ok = |x: &str| {
            !x.is_empty()
                && !x.starts_with('-')
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
        };
        if !name_ok(host) {
            return Err(bad(
                "no host name, or one with characters a host name has not",
            ));
        }
        if user.as_deref().is_some_and(|u| !name_ok(u)) {
            return Err(bad("a user name with characters a user name has not"));
        }
        if sr.as_deref().is_some_and(|s| !shell_safe(s)) {
            return Err(bad(
                "the SR must be named without spaces or quotes here: give its uuid",
            ));
        }
        Ok(Destination::Ssh {
            login: Login {
                user,
                host: host.to_string(),
                port,
            },
            sr,
        })
    }

    /// The SR on the other side, if named.
    fn sr(&self) -> Option<&str> {
        match self {
            Destination::Ssh { sr, .. } => sr.as_deref(),
            Destination::Local { sr } => Some(sr),
        }
    }

    /// `thinsr ARGS` on the other side: through ssh (bounded connect, a dead connection
    /// noticed within a minute, never a password prompt), or this binary.
    fn command(&self, remote_thinsr: &str, args: &[String]) -> Result<Command> {
        match self {
            Destination::Local { .. } => {
                let exe = std::env::current_exe()
                    .map_err(|e| Error::io("finding thinsr's own binary", e))?;
                let mut c = Command::new(exe);
                c.args(args);
                Ok(c)
            }
            Destination::Ssh { login, .. } => ssh::command(login, remote_thinsr, args),
        }
    }
}

/// What one run did.
#[derive(Debug, Serialize)]
pub struct ReplicateReport {
    pub vdi: String,
    pub vdi_name: String,
    pub to: String,
    /// The snapshot taken and sent.
    pub snapshot: String,
    /// What it was sent against (None: a full stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// A snapshot whose interrupted stream was finished first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<String>,
    /// Data read and sent, and bytes of the stream(s).
    pub data: Bytes,
    pub sent: Bytes,
    /// The other side's receive report.
    pub received: Value,
    /// Replication snapshots destroyed here, and there.
    pub pruned_here: Vec<String>,
    pub pruned_there: Vec<String>,
    pub seconds: f64,
}

pub struct ReplicateOpts {
    pub to: Destination,
    pub to_text: String,
    pub keep: usize,
    pub remote_thinsr: String,
}

impl Ctx {
    /// `vdi replicate`: see the module's comment.
    pub fn vdi_replicate(
        &self,
        key: &str,
        sr: Option<&str>,
        o: &ReplicateOpts,
        progress: &dyn Progress,
    ) -> Result<ReplicateReport> {
        let start = Instant::now();
        let found = self.resolve(key, sr)?;
        let v = found.vdi()?;
        if !matches!(v.kind, VdiKind::Thin | VdiKind::Clone) {
            return Err(Error::InvalidArgument(format!(
                "'{}' is a {}: replicas are kept of thin VDIs and clones",
                v.name, v.kind
            )));
        }
        if o.keep == 0 {
            return Err(Error::Usage("--keep is at least 1".into()));
        }
        let what = format!("replication of VDI '{}'", v.name);
        let _one = lock::acquire_within(&format!("replicate-{}", v.uuid), &what, Duration::ZERO)
            .map_err(|_| {
                Error::SrBusy(format!(
                    "{what} (another run is under way; this one did nothing)"
                ))
            })?;
        crate::crash::point("replicate.locked");
        let sr_uuid = found.entry.uuid.to_string();
        // What the other side holds of this VDI, by its record of the source.
        let mut list_args = vec!["--json".into(), "vdi".into(), "list".into()];
        if let Some(s) = o.to.sr() {
            list_args.extend(["--sr".into(), s.to_string()]);
        }
        let listed = self.remote_json(o, &list_args, None)?;
        let held: Vec<String> = listed
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| {
                x["kind"] == "snapshot"
                    && x["replica"]["sr"] == sr_uuid.as_str()
                    && x["replica"]["vdi"] == v.uuid.as_str()
            })
            .filter_map(|x| x["replica"]["snapshot"].as_str().map(str::to_string))
            .collect();
        let mine = |meta: &crate::engine::meta::SrMeta| -> Vec<(u64, String)> {
            let mut s: Vec<(u64, String)> = meta
                .vdis
                .iter()
                .filter(|x| {
                    x.kind == VdiKind::Snapshot && x.parent.as_deref() == Some(v.uuid.as_str())
                })
                .map(|x| (x.created, x.uuid.to_string()))
                .collect();
            s.sort();
            s
        };
        let meta = Self::read_meta(&found.entry)?;
        let mut base = mine(&meta)
            .into_iter()
            .rev()
            .find(|(_, u)| held.contains(u))
            .map(|(_, u)| u);
        let (mut data, mut sent) = (0u64, 0u64);
        // A stream a cut left half-received there: finished first, from its token.
        let mut resumed = None;
        let mut show_args = vec!["--json".into(), "sr".into(), "show".into()];
        show_args.extend(o.to.sr().map(str::to_string));
        let shown = self.remote_json(o, &show_args, None)?;
        let pending = shown["receiving"].as_array().and_then(|r| {
            r.iter().find(|x| {
                x["source_sr"] == sr_uuid.as_str()
                    && x["source_vdi"] == v.uuid.as_str()
                    && meta.vdi(x["snapshot"].as_str().unwrap_or("")).is_some()
            })
        });
        if let Some(p) = pending {
            let snap = p["snapshot"].as_str().unwrap_or_default().to_string();
            let token = p["token"].as_str().unwrap_or_default().to_string();
            let (report, _) = self.pipe(o, &snap, None, Some(&token), progress)?;
            data += report.data.0;
            sent += report.written.0;
            base = Some(snap.clone());
            resumed = Some(snap);
        }
        let label = format!("{} {}", v.name, stamp());
        let snap = self
            .vdi_snapshot(&v.uuid, Some(&sr_uuid), Some(&label), false)?
            .uuid
            .to_string();
        self.vdi_set_key(&snap, Some(&sr_uuid), REPLICATION_KEY, &o.to_text)?;
        let (report, received) = self.pipe(o, &snap, base.as_deref(), None, progress)?;
        data += report.data.0;
        sent += report.written.0;
        // Older replication snapshots here, beyond the newest `keep` (never the one sent).
        let meta = Self::read_meta(&found.entry)?;
        let ours: Vec<String> = mine(&meta)
            .into_iter()
            .map(|(_, u)| u)
            .filter(|u| {
                meta.vdi(u)
                    .is_some_and(|x| x.keys.get(REPLICATION_KEY) == Some(&o.to_text))
            })
            .collect();
        let mut pruned_here = Vec::new();
        for old in ours.iter().rev().skip(o.keep).filter(|u| **u != snap) {
            self.vdi_destroy(old, Some(&sr_uuid))?;
            pruned_here.push(old.clone());
        }
        let pruned_there = received["pruned"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        Ok(ReplicateReport {
            vdi: v.uuid.to_string(),
            vdi_name: v.name.clone(),
            to: o.to_text.clone(),
            snapshot: snap,
            base,
            resumed,
            data: Bytes(data),
            sent: Bytes(sent),
            received,
            pruned_here,
            pruned_there,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Runs `thinsr ARGS` on the other side with `input` (or nothing) on its stdin; its
    /// JSON result, or its error as ours.
    fn remote_json(
        &self,
        o: &ReplicateOpts,
        args: &[String],
        input: Option<&mut tool::Feeder>,
    ) -> Result<Value> {
        let c = o.to.command(&o.remote_thinsr, args)?;
        let tool::Fed {
            status,
            stdout,
            stderr,
            fed,
        } = tool::run_feeding(c, input)?;
        let parsed: Option<Value> = serde_json::from_slice(&stdout).ok();
        let side = match &o.to {
            Destination::Local { sr } => format!("SR {sr}"),
            Destination::Ssh { login, .. } => login.host.clone(),
        };
        if !status.success() {
            // The other side's own error says more than a broken pipe here.
            let why = parsed
                .as_ref()
                .and_then(|p| p["params"].as_array()?.last()?.as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&stderr).trim().to_string());
            return Err(Error::CommandFailed {
                tool: format!("thinsr {} on {side}", args[1..].join(" ")),
                message: format!("{why} ({status})"),
            });
        }
        fed?;
        parsed.ok_or_else(|| Error::CommandFailed {
            tool: format!("thinsr {} on {side}", args[1..].join(" ")),
            message: "its answer is not JSON".into(),
        })
    }

    /// Sends `snapshot` (against `base`, or resumed from `token`) into a receive on the
    /// other side. Returns the send's report and the receive's.
    fn pipe(
        &self,
        o: &ReplicateOpts,
        snapshot: &str,
        base: Option<&str>,
        token: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<(super::SendReport, Value)> {
        let mut args: Vec<String> = ["--json", "--quiet", "vdi", "receive", "--resumable"]
            .map(String::from)
            .to_vec();
        args.extend(["--keep".into(), o.keep.to_string()]);
        if let Some(s) = o.to.sr() {
            args.extend(["--sr".into(), s.to_string()]);
        }
        let mut report = None;
        let mut feed = |out: &mut dyn std::io::Write| -> Result<()> {
            report = Some(self.send_into(snapshot, None, base, token, out, progress)?);
            Ok(())
        };
        let received = self.remote_json(o, &args, Some(&mut feed))?;
        let report = report.ok_or_else(|| Error::InvalidArgument("nothing was sent".into()))?;
        Ok((report, received))
    }
}

/// A snapshot label's time: `YYYYMMDD-HHMMSS` (UTC).
fn stamp() -> String {
    let t = crate::units::utc(crate::engine::vdi::now());
    t.trim_end_matches(" UTC")
        .replace(['-', ':'], "")
        .replace(' ', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_refuse_what_a_shell_would_read() {
        assert_eq!(
            Destination::parse("ssh://root@dr-host:2222/local").unwrap(),
            Destination::Ssh {
                login: Login {
                    user: Some("root".into()),
                    host: "dr-host".into(),
                    port: Some(2222),
                },
                sr: Some("local".into()),
            }
        );
        assert_eq!(
            Destination::parse("ssh://dr").unwrap(),
            Destination::Ssh {
                login: Login {
                    user: None,
                    host: "dr".into(),
                    port: None,
                },
                sr: None,
            }
        );
        assert_eq!(
            Destination::parse("backup").unwrap(),
            Destination::Local {
                sr: "backup".into()
            }
        );
        for bad in [
            "ssh://",
            "ssh://-oProxyCommand=x/sr",
            "ssh://h/sr name",
            "ssh://h/$(reboot)",
            "ssh://h/a;b",
            "ssh://h:port/sr",
            "ssh://us er@h",
            "https://h/sr",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snapshot_stamps_are_labels() {
        let s = stamp();
        assert_eq!(s.len(), 15, "{s}");
        crate::engine::names::check_label(&s).unwrap();
    }
}
