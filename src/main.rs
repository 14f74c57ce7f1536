use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use thinsr::cli::args::Cli;
use thinsr::cli::{render_error, run};
use thinsr::error::Error;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Run by xapi under a method's name (a link `thinsr xapi install` made).
    if let Some(method) = args.first().and_then(|a| thinsr::xapi::method_of(a)) {
        std::process::exit(thinsr::xapi::serve(method));
    }
    // The NBD export of an attached volume, started by Datapath.attach.
    if args.get(1).map(String::as_str) == Some(thinsr::engine::datapath_nbd::COMMAND) {
        std::process::exit(thinsr::engine::datapath_nbd::run_server(&args[2..]));
    }
    // The lazy source of an attached http(s) template (engine/lazy/server.rs).
    if args.get(1).map(String::as_str) == Some(thinsr::engine::lazy::server::COMMAND) {
        std::process::exit(thinsr::engine::lazy::server::run_server(&args[2..]));
    }
    // The guard of a mirror's start (engine/mirror.rs).
    if args.get(1).map(String::as_str) == Some(thinsr::engine::mirror::GUARD) {
        std::process::exit(thinsr::engine::mirror::run_guard(&args[2..]));
    }
    if thinsr::cli::complete::run_if_asked(&args) {
        return;
    }
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let informational =
                matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                    || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            if !informational && std::env::args().any(|a| a == "--json") {
                let text = e.to_string();
                let first = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                render_error(&Error::Usage(first.to_string()), true);
                std::process::exit(2);
            }
            e.exit();
        }
    };
    match run(&cli) {
        Ok(0) => {}
        Ok(status) => std::process::exit(status),
        Err(e) => {
            render_error(&e, cli.global.json);
            std::process::exit(e.exit_code());
        }
    }
}

/// Parses the command line; `--version` also names the tools thinsr found, so that is only
/// looked up when asked for.
fn parse(args: &[String]) -> Result<Cli, clap::Error> {
    let mut cmd = Cli::command();
    if args.iter().skip(1).any(|a| a == "--version") {
        cmd = cmd.long_version(thinsr::host::version::long());
    }
    cmd.try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
}
