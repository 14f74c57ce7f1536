//! man pages and shell completions rendered from the clap definitions. `cargo xtask gen`
//! writes them to man/ and completions/; a unit test fails when the committed copies drift.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::args::Cli;

pub const FILES: &str = "\
/etc/thinsr/srs.yaml    the SRs registered on this host (--config, THINSR_CONFIG)
/run/lock/thinsr/       per-SR locks
/usr/libexec/xapi/storage/
                        scripts handling template URI schemes (templates)";
pub const SEE_ALSO: &str = "lvm(8), lvmthin(7), thin_check(8), qemu-nbd(8)";

/// Every page: `thinsr.1`, `thinsr-sr.1`, `thinsr-sr-create.1`, ...
pub fn man_pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    walk(&cmd, "thinsr", &mut out);
    out
}

fn walk(cmd: &clap::Command, name: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let page = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let man = clap_mangen::Man::new(page.clone()).date("");
    let mut buf = Vec::new();
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_synopsis_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    man.render_options_section(&mut buf).unwrap();
    if page.has_subcommands() {
        man.render_subcommands_section(&mut buf).unwrap();
    }
    if let Some(extra) = page.get_after_long_help() {
        section(&mut buf, "EXAMPLES AND NOTES", &extra.to_string());
    }
    section(
        &mut buf,
        "EXIT STATUS",
        crate::cli::args::EXIT_STATUS.trim_start_matches("Exit status:\n"),
    );
    section(&mut buf, "FILES", FILES);
    section(&mut buf, "SEE ALSO", SEE_ALSO);
    man.render_version_section(&mut buf).unwrap();
    out.push((format!("{name}.1"), buf));
    for sub in cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help" && !s.is_hide_set())
    {
        walk(sub, &format!("{name}-{}", sub.get_name()), out);
    }
}

/// A roff section of preformatted text.
fn section(buf: &mut Vec<u8>, title: &str, text: &str) {
    let body: String = text.lines().map(|l| format!("{}\n", escape(l))).collect();
    buf.extend_from_slice(format!(".SH \"{title}\"\n.nf\n{body}.fi\n").as_bytes());
}

fn escape(line: &str) -> String {
    let l = line.replace('\\', "\\e");
    if l.starts_with(['.', '\'']) {
        format!("\\&{l}")
    } else {
        l
    }
}

/// bash, zsh and fish completion scripts.
pub fn completions() -> Vec<(String, Vec<u8>)> {
    [
        (Shell::Bash, "thinsr.bash"),
        (Shell::Zsh, "_thinsr"),
        (Shell::Fish, "thinsr.fish"),
    ]
    .into_iter()
    .map(|(shell, file)| {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "thinsr", &mut buf);
        if shell == Shell::Bash {
            buf.extend_from_slice(crate::cli::complete::BASH_DYNAMIC.as_bytes());
        }
        (file.to_string(), buf)
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn check(dir: &str, files: Vec<(String, Vec<u8>)>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut committed: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|_| panic!("{} is missing: run 'cargo xtask gen'", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        committed.sort();
        let mut names: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
        names.sort();
        assert_eq!(
            committed,
            names,
            "{} lists other files than the CLI defines: run 'cargo xtask gen'",
            dir.display()
        );
        for (name, content) in files {
            let on_disk = std::fs::read(dir.join(&name)).unwrap();
            assert!(
                on_disk == content,
                "{}/{name} is out of date: run 'cargo xtask gen'",
                dir.display()
            );
        }
    }

    #[test]
    fn man_pages_are_current() {
        check("man", man_pages());
    }

    #[test]
    fn completions_are_current() {
        check("completions", completions());
    }

    #[test]
    fn every_command_has_a_page() {
        let pages: Vec<String> = man_pages().into_iter().map(|p| p.0).collect();
        for want in [
            "thinsr.1",
            "thinsr-sr.1",
            "thinsr-sr-create.1",
            "thinsr-sr-introduce.1",
            "thinsr-sr-destroy.1",
            "thinsr-vdi.1",
            "thinsr-vdi-create.1",
            "thinsr-vdi-resize.1",
        ] {
            assert!(
                pages.iter().any(|p| p == want),
                "{want} missing from {pages:?}"
            );
        }
    }

    #[test]
    fn pages_carry_examples_exit_status_files_and_see_also() {
        let pages = man_pages();
        let page = |name: &str| {
            String::from_utf8(pages.iter().find(|p| p.0 == name).unwrap().1.clone()).unwrap()
        };
        let create = page("thinsr-vdi-create.1");
        assert!(create.contains(".SH \"EXAMPLES AND NOTES\""), "{create}");
        assert!(create.contains("--preallocate --sr"), "{create}");
        for name in ["thinsr-pool.1", "thinsr-pool-maintain.1"] {
            let p = page(name);
            assert!(
                p.contains("* * * * *  root  /usr/sbin/thinsr pool maintain"),
                "{p}"
            );
            assert!(p.contains("2  critical"), "{p}");
        }
        for p in &pages {
            let text = String::from_utf8_lossy(&p.1);
            for section in ["EXIT STATUS", "FILES", "SEE ALSO"] {
                assert!(
                    text.contains(&format!(".SH \"{section}\"")),
                    "{} lacks {section}",
                    p.0
                );
            }
            assert!(text.contains("lvmthin(7)") && text.contains("/run/lock/thinsr/"));
        }
    }

    #[test]
    fn man_renders_the_committed_pages() {
        // man-db is among the test bed's packages (`cargo xtask test` installs it).
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(root.join("man/thinsr-vdi-create.1"))
            .env("MANWIDTH", "100")
            .output()
            .expect("man runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("EXAMPLES AND NOTES"), "{text}");
        assert!(
            text.contains("thinsr vdi create db-data --size 200G --preallocate"),
            "{text}"
        );
        assert!(text.contains("lvmthin(7)"), "{text}");
    }

    #[test]
    fn bash_accepts_the_completion_script() {
        use std::io::Write;
        // On stdin: the script is larger than one argument may be (128 KiB).
        let mut bash = std::process::Command::new("bash")
            .arg("-n")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("bash runs");
        let script = completions()[0].1.clone();
        bash.stdin.take().unwrap().write_all(&script).unwrap();
        let out = bash.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
