use clap::error::ErrorKind;
use clap::Parser;

use thinsr::cli::Cli;
use thinsr::cmd;
use thinsr::error::Error;

fn main() {
    let cli = match Cli::try_parse() {
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
                cmd::render_error(&Error::Usage(first.to_string()), true);
                std::process::exit(2);
            }
            e.exit();
        }
    };
    if let Err(e) = cmd::run(&cli) {
        cmd::render_error(&e, cli.global.json);
        std::process::exit(e.exit_code());
    }
}
