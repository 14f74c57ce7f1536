//! What an admin at a terminal meets: tab completion in a real bash on a pty, `--version`.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// An interactive bash on a pseudo-terminal, with thinsr's completion loaded.
struct Bash {
    master: std::fs::File,
    child: Child,
    seen: String,
}

impl Bash {
    fn start(completion: &str) -> Bash {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = std::fs::File::from(pty.slave);
        let mut cmd = Command::new("/bin/bash");
        cmd.args(["--norc", "--noprofile", "-i"])
            .env("PS1", "$ ")
            .env("TERM", "dumb")
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        let master = std::fs::File::from(pty.master);
        nix::fcntl::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&master),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let mut bash = Bash {
            master,
            child,
            seen: String::new(),
        };
        bash.send(&format!("source {completion}; echo loaded-$?\n"));
        bash.expect(&["loaded-0"]);
        bash
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Reads until every string in `want` has appeared since the last call; returns it.
    fn expect(&mut self, want: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        loop {
            if want.iter().all(|w| self.seen.contains(w)) {
                return std::mem::take(&mut self.seen);
            }
            assert!(
                Instant::now() < deadline,
                "bash never showed {want:?}; it showed: {:?}",
                self.seen
            );
            match self.master.read(&mut buf) {
                // Without the bell and the backspaces bash redraws with, what is on screen.
                Ok(n) if n > 0 => self.seen.extend(
                    String::from_utf8_lossy(&buf[..n])
                        .chars()
                        .filter(|c| !c.is_control() || *c == '\n'),
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Bash {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn bash_completes_commands_and_the_names_of_srs_and_vdis() {
    vm();
    json(&["sr", "create", DISKS[0], "--name", "Fast local"]);
    for label in ["Windows 10 (64-bit)", "Windows 10 (64-bit)", "web"] {
        json(&["vdi", "create", label, "--size", "8M"]);
    }
    sh(&["truncate", "-s", "8M", "/tmp/debian.raw", "/tmp/win.raw"]);
    json(&["template", "introduce", "file:///tmp/debian.raw"]);
    let win = json(&[
        "template",
        "introduce",
        "file:///tmp/win.raw",
        "--name",
        "Win 11",
    ]);
    let win_prefix = &win["uuid"].as_str().unwrap()[..8];
    let script = "/tmp/thinsr.bash";
    std::fs::write(script, include_str!("../completions/thinsr.bash")).unwrap();
    let mut bash = Bash::start(script);

    // A verb: one match, completed in place.
    bash.send("thinsr vdi cr\t");
    bash.expect(&["thinsr vdi create "]);
    bash.send("\x15"); // Ctrl-U: clear the line
                       // VDI names from the SR's metadata: the common prefix, then both candidates.
    bash.send("thinsr vdi show Win\t");
    bash.expect(&["Windows_10_64-bit"]);
    // Two more TABs list the candidates (the first one only rings the bell).
    bash.send("\t\t");
    bash.expect(&["Windows_10_64-bit+1"]);
    bash.send("\x15");
    // Global options before the group do not confuse it.
    bash.send("thinsr --json vdi destroy w\t");
    bash.expect(&["destroy web "]);
    bash.send("\x15");
    // SRs by volume group name, after --sr and as an sr command's argument.
    bash.send("thinsr vdi list --sr Fa\t");
    bash.expect(&["--sr Fast_local "]);
    bash.send("\x15");
    bash.send("thinsr sr show F\t");
    bash.expect(&["show Fast_local "]);
    bash.send("\x15");
    // Templates by name, or by uuid prefix when the name holds a space.
    bash.send("thinsr template show deb\t");
    bash.expect(&["show debian "]);
    bash.send("\x15");
    let mut names: Vec<String> = vec!["debian".into(), win_prefix.into()];
    names.sort();
    assert_eq!(
        ok(&["__complete", "template"]),
        format!("{}\n", names.join("\n"))
    );

    // Instant because no lvm call is behind a TAB: an `lvm` first on PATH that logs its
    // calls (and fails) sees none, and the names still come.
    std::fs::create_dir_all("/tmp/spy").unwrap();
    std::fs::write(
        "/tmp/spy/lvm",
        "#!/bin/sh\necho \"$*\" >> /tmp/spy/calls\nexit 1\n",
    )
    .unwrap();
    sh(&["chmod", "+x", "/tmp/spy/lvm"]);
    let path = format!("/tmp/spy:{}", std::env::var("PATH").unwrap());
    for group in ["vdi", "sr", "template"] {
        let out = thinsr_cmd(&["__complete", group])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(out.status.success(), "__complete {group}");
        assert!(!out.stdout.is_empty(), "__complete {group} offered nothing");
    }
    let mut want = [
        "Windows_10_64-bit",
        "Windows_10_64-bit+1",
        "debian",
        "web",
        win_prefix,
    ];
    want.sort();
    assert_eq!(ok(&["__complete", "vdi"]), format!("{}\n", want.join("\n")));
    let calls = std::fs::read_to_string("/tmp/spy/calls").unwrap_or_default();
    assert!(calls.is_empty(), "__complete ran lvm: {calls}");
    assert_eq!(ok(&["__complete", "sr"]), "Fast_local\n");
    assert_eq!(ok(&["__complete", "nothing"]), "");
}

#[test]
fn version_names_the_tools_found() {
    vm();
    let v = ok(&["--version"]);
    let mut lines = v.lines();
    assert_eq!(
        lines.next(),
        Some(format!("thinsr {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let rest: Vec<&str> = lines.collect();
    assert!(rest.iter().any(|l| l.starts_with("lvm: 2.03")), "{v}");
    assert!(rest.iter().any(|l| l.starts_with("thin_check: 0.9")), "{v}");
    assert!(rest.iter().any(|l| l.starts_with("qemu-nbd: 7.2")), "{v}");
    // A missing tool is named, with what it is needed for.
    let out = thinsr_cmd(&["--version"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.contains("qemu-nbd: not found (needed for templates"),
        "{v}"
    );
    // -V stays short, for scripts.
    assert_eq!(
        ok(&["-V"]).trim(),
        format!("thinsr {}", env!("CARGO_PKG_VERSION"))
    );
}
