//! `thinsr template ...`: parse, call the engine, render.

use super::vdi::{print_detail, print_list};
use super::Out;
use crate::cli::args::TemplateCmd;
use crate::engine::context::Ctx;
use crate::error::Result;
use crate::units::Bytes;

pub fn run(ctx: &Ctx, out: &Out, cmd: &TemplateCmd) -> Result<()> {
    match cmd {
        TemplateCmd::Introduce {
            uri,
            sr,
            name,
            cache,
            sha256,
            timeout,
            warm,
            rate,
        } => {
            let progress = super::progress::Reporter::new(out.quiet);
            let rate = rate_of(rate.as_deref())?;
            let how = crate::engine::cache::Introduce {
                cache: *cache,
                sha256: sha256.as_deref(),
                timeout: std::time::Duration::from_secs(*timeout),
                warm: warm.then_some(rate),
                progress: &progress,
            };
            let t = ctx.template_introduce(uri, sr.sr.as_deref(), name.as_deref(), &how)?;
            out.emit(&t, || {
                println!(
                    "Introduced template '{}' ({}): {} {}, {}",
                    t.name,
                    t.uuid,
                    t.format.as_deref().unwrap_or("?"),
                    t.virtual_size,
                    uri
                );
                println!("Clone it with 'thinsr vdi clone \"{}\"'.", t.name);
            });
        }
        TemplateCmd::Forget(a) => {
            let t = ctx.template_forget(&a.vdi, a.sr.as_deref())?;
            out.emit(&t, || {
                println!("Template '{}' forgotten; its image is untouched", t.name)
            });
        }
        TemplateCmd::List { sr } => {
            let listing = ctx.template_list(sr.sr.as_deref())?;
            for w in &listing.warnings {
                out.warn(w);
            }
            out.emit(&listing.volumes, || {
                if listing.volumes.is_empty() {
                    println!("No templates. Register one with 'thinsr template introduce URI'.");
                } else {
                    print_list(&listing.volumes)
                }
            });
        }
        TemplateCmd::Cache { template, state } => {
            let on = state == "on";
            let t = ctx.template_cache(&template.vdi, template.sr.as_deref(), on)?;
            out.emit(&t, || match &t.cache {
                Some(lv) => println!("Template '{}' is cached in LV {}/{lv}", t.name, t.vg),
                None => println!("Template '{}' is not cached", t.name),
            });
        }
        TemplateCmd::Warm { template: a, .. } | TemplateCmd::Localize(a) => {
            let progress = super::progress::Reporter::new(out.quiet);
            let t = if let TemplateCmd::Warm { rate, .. } = cmd {
                let rate = rate_of(rate.as_deref())?;
                ctx.template_warm(&a.vdi, a.sr.as_deref(), rate, &progress)?
            } else {
                ctx.template_localize(&a.vdi, a.sr.as_deref(), &progress)?
            };
            out.emit(&t, || {
                println!(
                    "Template '{}' is local: {} in LV {}/{}, read in the kernel",
                    t.name,
                    Bytes(t.cached.unwrap_or(0)),
                    t.vg,
                    t.local.as_deref().unwrap_or("?")
                )
            });
        }
        TemplateCmd::Show(a) => {
            let t = ctx.template_show(&a.vdi, a.sr.as_deref())?;
            out.emit(&t, || print_detail(&t));
        }
    }
    Ok(())
}

/// A `--rate` in bytes a second (0: no bound).
fn rate_of(rate: Option<&str>) -> Result<u64> {
    rate.map_or(Ok(0), |r| crate::units::parse_positive_size(r).map(|b| b.0))
}
