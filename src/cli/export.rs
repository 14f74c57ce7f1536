//! `thinsr export`: where the image goes, its format, and the report.

use std::io::IsTerminal;

use super::progress::Reporter;
use super::Out;
use crate::cli::args::ExportArgs;
use crate::engine::context::Ctx;
use crate::engine::export::{ExportOpts, Target};
use crate::error::{Error, Result};
use crate::image::Format;

pub fn run(ctx: &Ctx, out: &Out, a: &ExportArgs) -> Result<()> {
    let target = match &a.output {
        Some(p) if p.as_os_str() == "-" => Target::Stdout,
        Some(p) => Target::File {
            path: p.clone(),
            force: a.force,
        },
        None if std::io::stdout().is_terminal() => {
            return Err(Error::Usage(
                "not writing a disk image to a terminal: give -o FILE, or redirect stdout".into(),
            ))
        }
        None => Target::Stdout,
    };
    let format = match (&a.format, &target) {
        (Some(f), _) => Format::parse(f)?,
        (None, _) if a.base.is_some() => Format::Qcow2,
        (None, Target::File { path, .. }) => Format::of_path(path).unwrap_or(Format::Raw),
        (None, Target::Stdout) => Format::Raw,
    };
    let opts = ExportOpts {
        format,
        base: a.base.clone(),
        backing_name: a.backing_name.clone(),
    };
    // With the image on stdout and --json, stderr carries the report alone.
    let progress = Reporter::new(out.quiet || out.json && matches!(target, Target::Stdout));
    let r = ctx.export(&a.vdi.vdi, a.vdi.sr.as_deref(), &opts, &target, &progress)?;
    let line = format!(
        "Exported '{}' as {} to {}: {} disk, {} read, {} written in {:.1} s{}",
        r.vdi,
        r.format,
        if r.output == "-" { "stdout" } else { &r.output },
        r.virtual_size,
        r.read,
        r.written,
        r.seconds,
        if r.from_snapshot {
            " (from a temporary snapshot: it is attached read-write)"
        } else {
            ""
        }
    );
    out.report(matches!(target, Target::Stdout), &r, &line);
    Ok(())
}
