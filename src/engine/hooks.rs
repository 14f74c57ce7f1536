//! The admin's hooks: every executable in `<config>/hooks/<hook>.d/` (/etc/thinsr unless
//! `--config-dir` says otherwise), run in name order with a JSON record of the event on
//! stdin, whichever interface caused it: the CLI, xapi's plugin, cron, the pool watcher.
//! This is the design's "hook points for interfacing with external replication services".
//!
//! - `pre-` hooks may refuse: a non-zero exit (or a hook that cannot be run, or runs past
//!   its time) fails the command with HOOK_REFUSED, naming the hook and quoting the first
//!   line of its stderr, before anything is changed.
//! - `post-` hooks run once the change is durable; a failure is reported (returned to the
//!   caller for stderr and `--json`, and logged to syslog) and never undoes the change.
//! - Each hook has 30 s (a number of seconds in `<config>/hooks/timeout` says otherwise);
//!   then its process group is killed.
//! - A hook runs only if root alone could have written it and every directory above it,
//!   as scheme scripts (`host/trust.rs`). Names follow run-parts: letters, digits, `_` and
//!   `-` (an editor's `hook~` or a package manager's `hook.dpkg-old` is not run);
//!   non-executable files are skipped.
//! - Hooks run outside the SR's lock, so a hook may call thinsr itself.
//!
//! With no hook directory nothing is read or run: a command costs what it did.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::engine::context::{Caller, Ctx};
use crate::engine::meta::Mode;
use crate::engine::registry::Entry;
use crate::engine::vdi::Volume;
use crate::error::{Error, Result};

/// How long a hook may run unless `<config>/hooks/timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The events hooks are run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PreVdiDestroy,
    PreVdiSnapshot,
    PostVdiCreate,
    PostVdiDestroy,
    PostVdiResize,
    PostVdiSnapshot,
    PostVdiClone,
    PostVdiRevert,
    PostVdiAttach,
    PostVdiDetach,
    PostSrAttach,
    PostSrDetach,
    PostPoolGrow,
    PostPoolFull,
    PostTemplateIntroduce,
    PostTemplateForget,
    PostReplicaReceive,
    PreVdiRevert,
    PreVdiDetach,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::PreVdiDestroy => "pre-vdi-destroy",
            Hook::PreVdiSnapshot => "pre-vdi-snapshot",
            Hook::PostVdiCreate => "post-vdi-create",
            Hook::PostVdiDestroy => "post-vdi-destroy",
            Hook::PostVdiResize => "post-vdi-resize",
            Hook::PostVdiSnapshot => "post-vdi-snapshot",
            Hook::PostVdiClone => "post-vdi-clone",
            Hook::PostVdiRevert => "post-vdi-revert",
            Hook::PostVdiAttach => "post-vdi-attach",
            Hook::PostVdiDetach => "post-vdi-detach",
            Hook::PostSrAttach => "post-sr-attach",
            Hook::PostSrDetach => "post-sr-detach",
            Hook::PostPoolGrow => "post-pool-grow",
            Hook::PostPoolFull => "post-pool-full",
            Hook::PostTemplateIntroduce => "post-template-introduce",
            Hook::PostTemplateForget => "post-template-forget",
            Hook::PostReplicaReceive => "post-replica-receive",
            Hook::PreVdiRevert => "pre-vdi-revert",
            Hook::PreVdiDetach => "pre-vdi-detach",
        }
    }

    fn is_pre(self) -> bool {
        self.name().starts_with("pre-")
    }
}

/// The SR as a hook is told of it (what the registry knows, no lvm call).
#[derive(Debug, Serialize)]
struct SrRecord<'a> {
    uuid: &'a str,
    name: &'a str,
    vg: &'a str,
    mode: Mode,
}

/// What a hook reads on stdin.
#[derive(Debug, Serialize)]
struct Event<'a> {
    hook: &'static str,
    sr: SrRecord<'a>,
    /// The VDI (the template, the replica); none for SR and pool events.
    #[serde(skip_serializing_if = "Option::is_none")]
    vdi: Option<&'a Volume>,
    caller: Caller,
}

/// The scripts of `hook` under `dir` (the hooks directory), in name order: None when there
/// are none, without reading more than the directory.
fn scripts(dir: &Path, hook: Hook) -> Option<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir.join(format!("{}.d", hook.name()))).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                !n.is_empty()
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    (!found.is_empty()).then_some(found)
}

/// The time bound of every hook: `<dir>/timeout` (seconds, root's file) or the default.
fn timeout(dir: &Path) -> Result<Duration> {
    let path = dir.join("timeout");
    if !path.exists() {
        return Ok(DEFAULT_TIMEOUT);
    }
    crate::host::trust::root_only(&path, "hook timeout file")?;
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::io(path.display().to_string(), e))?;
    match text.trim().parse::<u64>() {
        Ok(s) if (1..=3600).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(Error::ConfigInvalid {
            path: path.display().to_string(),
            why: format!(
                "'{}' is not a number of seconds from 1 to 3600",
                crate::units::clip(text.trim())
            ),
        }),
    }
}

/// How one hook ended, when not well: its first line of stderr, or why it did not run.
fn run_one(script: &Path, input: &[u8], limit: Duration) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(script) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        // Not an executable file: not a hook (as run-parts).
        _ => return None,
    }
    if let Err(e) = crate::host::trust::root_only(script, "hook") {
        return Some(format!("not run: {e}"));
    }
    match crate::host::tool::run_with_input_within(script, input, limit) {
        Err(e) => Some(format!("cannot run it: {e}")),
        Ok(None) => Some(format!(
            "killed after {} s, its time limit",
            limit.as_secs()
        )),
        Ok(Some(out)) if out.status.success() => None,
        Ok(Some(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().map(str::trim).find(|l| !l.is_empty());
            Some(match first {
                Some(l) => crate::units::clip(l),
                None => format!("it exited with {}", out.status),
            })
        }
    }
}

impl Ctx {
    fn hooks_dir(&self) -> PathBuf {
        self.config_dir().join("hooks")
    }

    /// Runs the `pre-` `hook` for SR `entry` and the VDI whose record `vdi` makes (only
    /// when the hook has scripts: a command without hooks costs what it did). A refusal is
    /// the error, and no later script of the hook runs.
    pub(crate) fn before(
        &self,
        hook: Hook,
        entry: &Entry,
        vdi: impl FnOnce() -> Result<Volume>,
    ) -> Result<()> {
        let dir = self.hooks_dir();
        let Some(scripts) = scripts(&dir, hook) else {
            return Ok(());
        };
        self.run_scripts(hook, &dir, scripts, entry, Some(&vdi()?))
            .map(drop)
    }

    /// Runs the `post-` `hook` for the record `v` of the change just made, noting its
    /// failures in it (they are in syslog already).
    pub(crate) fn after(&self, hook: Hook, v: &mut Volume) -> Result<()> {
        let dir = self.hooks_dir();
        let Some(scripts) = scripts(&dir, hook) else {
            return Ok(());
        };
        let entry = self.entry(Some(&v.sr))?;
        v.hook_failures = self.run_scripts(hook, &dir, scripts, &entry, Some(v))?;
        Ok(())
    }

    /// Runs the `post-` `hook` of an SR or pool event of SR `entry`; returns its failures
    /// (in syslog already), a line each.
    pub(crate) fn after_sr(&self, hook: Hook, entry: &Entry) -> Vec<String> {
        let dir = self.hooks_dir();
        let Some(scripts) = scripts(&dir, hook) else {
            return vec![];
        };
        self.run_scripts(hook, &dir, scripts, entry, None)
            .unwrap_or_else(|e| vec![format!("hook {} not run: {e}", hook.name())])
    }

    /// Runs `scripts` of `hook` (under `dir`) with the event's record on stdin: a `pre-`
    /// hook's first failure is the error; a `post-` hook's failures are returned, a line
    /// each.
    fn run_scripts(
        &self,
        hook: Hook,
        dir: &Path,
        scripts: Vec<PathBuf>,
        entry: &Entry,
        vdi: Option<&Volume>,
    ) -> Result<Vec<String>> {
        let event = Event {
            hook: hook.name(),
            sr: SrRecord {
                uuid: &entry.uuid,
                name: &entry.name,
                vg: &entry.vg,
                mode: entry.mode,
            },
            vdi,
            caller: self.caller,
        };
        let input =
            serde_json::to_vec(&event).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut failures = Vec::new();
        let limit = match timeout(dir) {
            Ok(limit) => limit,
            Err(e) if !hook.is_pre() => {
                // After the change: said, never an error.
                let line = format!("hook {} not run: {e}; the change stands", hook.name());
                crate::host::syslog::warning(&line);
                failures.push(line);
                return Ok(failures);
            }
            Err(e) => return Err(e),
        };
        for script in scripts {
            let Some(why) = run_one(&script, &input, limit) else {
                continue;
            };
            let shown = script.display().to_string();
            if hook.is_pre() {
                return Err(Error::HookRefused {
                    hook: hook.name().into(),
                    script: shown,
                    message: why,
                });
            }
            let line = format!(
                "hook {} ({shown}) failed: {why}; the change stands",
                hook.name()
            );
            crate::host::syslog::warning(&line);
            failures.push(line);
        }
        Ok(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_documented_ones() {
        for (h, n) in [
            (Hook::PreVdiDestroy, "pre-vdi-destroy"),
            (Hook::PostVdiClone, "post-vdi-clone"),
        ] {
            assert_eq!(h.name(), n);
        }
        assert!(Hook::PreVdiSnapshot.is_pre() && !Hook::PostVdiCreate.is_pre());
        assert_eq!(serde_json::to_string(&Caller::Xapi).unwrap(), "\"xapi\"");
    }

    #[test]
    fn only_run_parts_names_in_name_order() {
        let dir = std::env::temp_dir().join(format!("thinsr-hooks-{}", uuid::Uuid::new_v4()));
        let d = dir.join("post-vdi-create.d");
        std::fs::create_dir_all(&d).unwrap();
        assert!(scripts(&dir, Hook::PostVdiDestroy).is_none());
        for n in ["20-b", "10_a", "x~", "y.dpkg-old", ".hidden", "Z9"] {
            std::fs::write(d.join(n), "#!/bin/sh\n").unwrap();
        }
        let got: Vec<String> = scripts(&dir, Hook::PostVdiCreate)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, ["10_a", "20-b", "Z9"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
