//! `thinsr pool ...`: parse, call the engine, render.

use super::Out;
use crate::cli::args::PoolCmd;
use crate::engine::context::Ctx;
use crate::engine::growth::Growth;
use crate::engine::pool::{Finding, PolicyChange, PoolDetail};
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
            for f in &d.hook_failures {
                out.warn(f);
            }
            out.emit(&d, || {
                println!(
                    "Thin pool {}/{}: {} data, {} metadata",
                    d.vg, d.pool.lv, d.pool.size, d.pool.metadata_size
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
                for f in &findings {
                    print_finding(f, out.quiet);
                }
            }
            return Ok(findings
                .iter()
                .map(|f| i32::from(f.severity))
                .max()
                .unwrap_or(0));
        }
        PoolCmd::Watch { srs, interval } => {
            if !(interval.is_finite() && (0.1..=3600.0).contains(interval)) {
                return Err(crate::error::Error::InvalidArgument(format!(
                    "--interval {interval}: give seconds from 0.1 to 3600"
                )));
            }
            let every = std::time::Duration::from_secs_f64(*interval);
            ctx.pool_watch(srs, every, &mut |f| {
                if out.json {
                    // One object per line: a journal, or a pipe, reads them as they come.
                    println!("{}", serde_json::to_string(f).unwrap_or_default());
                } else {
                    print_finding(f, out.quiet);
                }
            })?;
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

/// News on stdout, warnings on stderr; `--quiet` keeps only what needs an admin.
fn print_finding(f: &Finding, quiet: bool) {
    match f.severity {
        0 if quiet => {}
        0 => println!("{}", f.message),
        1 => eprintln!("thinsr: warning: {}", f.message),
        _ => eprintln!("thinsr: CRITICAL: {}", f.message),
    }
}

/// The "Growth" line of `pool show` and `sr show`.
pub fn print_growth(g: &Growth) {
    let mark = match g.low_water_mark {
        Some(0) => ", no low-water mark in the pool's table".to_string(),
        Some(m) => format!(", wakes at {} free", Bytes(m)),
        None => String::new(),
    };
    let pid = g
        .watcher_pid
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    println!("Growth      watcher {}{pid}{mark}", g.watcher);
    if let Some(w) = &g.warning {
        println!("            warning: {w}");
    }
}

fn pct(v: f64) -> String {
    format!("{v:.1}%")
}

fn print_detail(d: &PoolDetail) {
    println!("Pool        {}/{} of SR '{}'", d.vg, d.pool.lv, d.name);
    println!(
        "Data        {} used of {} ({}), chunk {}",
        d.pool.data_used,
        d.pool.size,
        pct(d.pool.data_percent),
        d.chunk_size
    );
    println!(
        "Metadata    {} used of {} ({})",
        d.pool.metadata_used,
        d.pool.metadata_size,
        pct(d.pool.metadata_percent)
    );
    println!(
        "Thin disks  {}, {} virtual, over-commitment {:.2}x{}",
        d.pool.thin_volumes,
        d.pool.virtual_total,
        d.overcommit,
        d.policy
            .max_overcommit
            .map(|m| format!(" (limit {m}x)"))
            .unwrap_or_default()
    );
    println!(
        "Policy      grows by {}% at {}% use, up to {} ({} more), when full: {}",
        d.policy.grow_by, d.policy.threshold, d.max_size, d.room, d.when_full
    );
    print_growth(&d.growth);
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
