//! `thinsr pool ...`: parse, call the engine, render.

use super::Out;
use crate::cli::args::PoolCmd;
use crate::engine::context::Ctx;
use crate::engine::pool::{PolicyChange, PoolDetail};
use crate::error::Result;
use crate::units::{parse_new_size, parse_pool_size, Bytes};

pub fn run(ctx: &Ctx, out: &Out, cmd: &PoolCmd) -> Result<i32> {
    match cmd {
        PoolCmd::Show(a) => {
            let d = ctx.pool_show(a.sr.as_deref())?;
            out.emit(&d, || print_detail(&d));
        }
        PoolCmd::Extend { sr, size, metadata } => {
            let size = size.as_deref().map(parse_new_size).transpose()?;
            let metadata = metadata.as_deref().map(parse_new_size).transpose()?;
            let d = ctx.pool_extend(Some(sr), size, metadata)?;
            out.emit(&d, || {
                println!(
                    "Thin pool {}/{}: {} data, {} metadata",
                    d.vg,
                    d.pool.lv,
                    Bytes(d.pool.size),
                    Bytes(d.pool.metadata_size)
                )
            });
        }
        PoolCmd::Set {
            sr,
            threshold,
            grow_by,
            max_size,
            when_full,
            max_overcommit,
        } => {
            let change = PolicyChange {
                threshold: *threshold,
                grow_by: *grow_by,
                max_size: max_size.as_deref().map(parse_pool_size).transpose()?,
                when_full_error: when_full.as_deref().map(|w| w == "error"),
                max_overcommit: *max_overcommit,
            };
            let d = ctx.pool_set(Some(sr), &change)?;
            out.emit(&d, || print_detail(&d));
        }
        PoolCmd::Maintain { srs } => {
            let findings = ctx.pool_maintain(srs)?;
            // Quiet means quiet, except for what needs an admin.
            if out.json {
                out.emit(&findings, || {});
            } else {
                for f in findings.iter().filter(|f| !out.quiet || f.severity > 0) {
                    if f.severity > 0 {
                        eprintln!(
                            "thinsr: {}: {}",
                            if f.severity > 1 {
                                "CRITICAL"
                            } else {
                                "warning"
                            },
                            f.message
                        );
                    } else {
                        println!("{}", f.message);
                    }
                }
            }
            return Ok(findings
                .iter()
                .map(|f| i32::from(f.severity))
                .max()
                .unwrap_or(0));
        }
        PoolCmd::Check(a) => {
            let text = ctx.pool_check(a.sr.as_deref())?;
            out.emit(&(), || {
                if !text.trim().is_empty() {
                    println!("{}", text.trim());
                }
                println!("Pool metadata is consistent");
            });
        }
    }
    Ok(0)
}

fn pct(v: f64) -> String {
    format!("{v:.1}%")
}

fn print_detail(d: &PoolDetail) {
    println!("Pool        {}/{} of SR '{}'", d.vg, d.pool.lv, d.name);
    println!(
        "Data        {} used of {} ({}), chunk {}",
        Bytes(d.pool.data_used),
        Bytes(d.pool.size),
        pct(d.pool.data_percent),
        Bytes(d.chunk_size)
    );
    println!(
        "Metadata    {} used of {} ({})",
        Bytes(d.pool.metadata_used),
        Bytes(d.pool.metadata_size),
        pct(d.pool.metadata_percent)
    );
    println!(
        "Thin disks  {}, {} virtual, over-commitment {:.2}x{}",
        d.pool.thin_volumes,
        Bytes(d.pool.virtual_total),
        d.overcommit,
        d.policy
            .max_overcommit
            .map(|m| format!(" (limit {m}x)"))
            .unwrap_or_default()
    );
    println!(
        "Policy      grows by {}% at {}% use, up to {} ({} more), when full: {}",
        d.policy.grow_by,
        d.policy.threshold,
        Bytes(d.max_size),
        Bytes(d.room),
        d.when_full
    );
    if let Some(k) = &d.pool.kernel {
        println!(
            "Kernel      {}{}",
            k.state,
            if k.needs_check { ", NEEDS CHECK" } else { "" }
        );
    } else {
        println!("Kernel      not active");
    }
}
