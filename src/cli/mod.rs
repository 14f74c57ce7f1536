//! The CLI layer: runs a parsed command through the engine and renders the result.

pub mod args;
pub mod complete;
pub mod docs;
mod export;
mod pool;
mod progress;
mod sr;
mod template;
mod vdi;

use std::io::IsTerminal;

use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;

use crate::cli::args::{Cli, Global, Group};
use crate::engine::context::Caller;
use crate::engine::registry::RegistryFile;
use crate::error::{Error, Result};
use crate::host::lvm::Lvm;

/// How to talk to whoever runs us.
pub struct Out {
    pub json: bool,
    pub quiet: bool,
    pub yes: bool,
}

impl Out {
    pub fn new(g: &Global) -> Out {
        Out {
            json: g.json,
            quiet: g.quiet,
            yes: g.yes,
        }
    }

    /// The result: JSON on stdout with --json, else whatever `human` prints.
    pub fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce()) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).expect("results serialize")
            );
        } else if !self.quiet {
            human();
        }
    }

    /// The report of a command whose data went to stdout (an image, a stream): on stderr,
    /// as JSON with `--json`; otherwise, as `emit` does.
    pub fn report<T: Serialize>(&self, on_stdout: bool, value: &T, line: &str) {
        if !on_stdout {
            return self.emit(value, || println!("{line}"));
        }
        if self.json {
            eprintln!(
                "{}",
                serde_json::to_string_pretty(value).expect("reports serialize")
            );
        } else if !self.quiet {
            eprintln!("{line}");
        }
    }

    /// A unit result: `null` in JSON, a one-line confirmation for humans.
    pub fn done(&self, message: &str) {
        self.emit(&(), || println!("{message}"));
    }

    pub fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("thinsr: warning: {message}");
        }
    }

    /// Whether a question can be put to someone: a terminal, not --json.
    pub fn can_ask(&self) -> bool {
        !self.json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    /// Asks a yes/no question before something destructive; no is the default.
    pub fn confirm(&self, question: &str) -> Result<()> {
        if self.yes {
            return Ok(());
        }
        if !self.can_ask() {
            return Err(Error::ConfirmationRequired(
                question.trim_end_matches('?').into(),
            ));
        }
        match dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()
        {
            Ok(true) => Ok(()),
            _ => Err(Error::Cancelled),
        }
    }

    /// Asks the admin to type `expected` before something destructive.
    pub fn confirm_by_typing(&self, what: &str, expected: &str) -> Result<()> {
        if self.yes {
            return Ok(());
        }
        if self.json || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
            return Err(Error::ConfirmationRequired(what.into()));
        }
        let typed: String = dialoguer::Input::new()
            .with_prompt(format!("{what}: type '{expected}' to confirm"))
            .allow_empty(true)
            .interact_text()
            .map_err(|_| Error::Cancelled)?;
        if typed.trim() == expected {
            Ok(())
        } else {
            Err(Error::Cancelled)
        }
    }
}

/// Runs the command; Ok carries the exit status (`pool maintain` reports warnings with it).
pub fn run(cli: &Cli) -> Result<i32> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::NotRoot);
    }
    let out = Out::new(&cli.global);
    let mut ctx = crate::engine::context::Ctx::new(
        Lvm::new(cli.global.verbose > 0),
        RegistryFile::in_dir(&cli.global.config),
        cli.global.scheme_dir.clone(),
    );
    // Who hooks are told caused an event: `pool maintain` runs from cron, `pool watch` is
    // the watcher.
    ctx.caller = match &cli.command {
        Group::Pool(args::PoolCmd::Maintain { .. }) => Caller::Cron,
        Group::Pool(args::PoolCmd::Watch { .. }) => Caller::Watch,
        _ => Caller::Cli,
    };
    let ctx = ctx;
    let result = match &cli.command {
        Group::Sr(c) => sr::run(&ctx, &out, c),
        Group::Vdi(c) => vdi::run(&ctx, &out, c).map(|_| 0),
        Group::Template(c) => template::run(&ctx, &out, c).map(|_| 0),
        Group::Xapi(c) => xapi(&out, c).map(|_| 0),
        Group::Pool(c) => pool::run(&ctx, &out, c),
        Group::Export(a) => export::run(&ctx, &out, a).map(|_| 0),
    };
    if cli.global.verbose > 0 {
        eprintln!(
            "thinsr: {} lvm call(s) ({} ms); {}",
            ctx.lvm.calls(),
            ctx.lvm.time().as_millis(),
            crate::stats::summary()
        );
    }
    result
}

fn xapi(out: &Out, cmd: &crate::cli::args::XapiCmd) -> Result<()> {
    use crate::cli::args::XapiCmd;
    match cmd {
        XapiCmd::Install { root, binary } => {
            let exe = match binary {
                Some(b) if b.is_absolute() => b.clone(),
                Some(b) => {
                    return Err(Error::InvalidArgument(format!(
                        "--binary {}: give an absolute path",
                        b.display()
                    )))
                }
                None => std::env::current_exe()
                    .map_err(|e| Error::io("finding the thinsr binary", e))?,
            };
            let links = crate::xapi::install(root, &exe)?;
            let shown: Vec<String> = links.iter().map(|l| l.display().to_string()).collect();
            out.emit(&shown, || {
                println!(
                    "Installed {} plugin method files in {} running {}",
                    links.len(),
                    root.display(),
                    exe.display()
                )
            });
        }
        XapiCmd::Uninstall { root } => {
            let n = crate::xapi::uninstall(root)?;
            out.emit(&n, || {
                println!("Removed {n} plugin entry points from {}", root.display())
            });
        }
    }
    Ok(())
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

/// Renders an error: the xapi shape on stdout with --json, else a message and a hint.
pub fn render_error(e: &Error, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string(&e.to_xapi()).expect("errors serialize")
        );
    } else {
        eprintln!("thinsr: error: {e}");
        if let Some(h) = e.hint() {
            eprintln!("hint: {h}");
        }
    }
}
