//! `thinsr sr ...`: parse, call the engine, render.

use super::{table, Out};
use crate::cli::args::SrCmd;
use crate::engine::context::Ctx;
use crate::engine::sr::{Adopt, SrDetail, SrSummary};
use crate::error::{Error, Result};
use crate::units::{parse_pool_size, parse_positive_size, Bytes};

pub fn run(ctx: &Ctx, out: &Out, cmd: &SrCmd) -> Result<i32> {
    match cmd {
        SrCmd::Create {
            devices,
            file,
            size,
            name,
            force,
        } => {
            let d = match (file, size) {
                (Some(file), Some(size)) => {
                    ctx.create_file(file, parse_positive_size(size)?, name.as_deref())?
                }
                _ => ctx.create_owned(devices, name.as_deref(), *force, None)?,
            };
            made(out, "Created", &d);
        }
        SrCmd::Introduce {
            vg,
            name,
            pool_size,
            pool,
        } => {
            let pool_size = pool_size.as_deref().map(parse_pool_size).transpose()?;
            let adopt = |turn_on_zeroing| {
                pool.as_deref().map(|pool| Adopt {
                    pool,
                    turn_on_zeroing,
                })
            };
            let d = match ctx.introduce(
                &vg.into(),
                name.as_deref(),
                pool_size,
                adopt(out.yes),
                None,
            ) {
                // Asked on a terminal; elsewhere the refusal says what to do.
                Err(Error::PoolNotZeroing { pool }) if out.can_ask() => {
                    out.confirm(&format!(
                        "Thin pool {pool} does not zero new blocks: VDIs would show the disk's old bytes. Turn zeroing on (lvchange --zero y)?"
                    ))?;
                    ctx.introduce(&vg.into(), name.as_deref(), pool_size, adopt(true), None)?
                }
                d => d?,
            };
            made(out, "Introduced", &d);
        }
        SrCmd::Attach(a) => {
            let d = ctx.attach(a.sr.as_deref())?;
            for w in &d.warnings {
                out.warn(w);
            }
            out.emit(&d, || println!("SR '{}' is attached", d.name));
        }
        SrCmd::Detach(a) => {
            for w in ctx.detach(a.sr.as_deref())? {
                out.warn(&w);
            }
            out.done("SR detached");
        }
        SrCmd::Forget(a) => {
            let e = ctx.forget(a.sr.as_deref())?;
            out.done(&format!(
                "Forgot SR '{}'; its volume group {} is untouched ('thinsr sr introduce {}' brings it back)",
                e.name, e.vg, e.vg
            ));
        }
        SrCmd::Destroy(a) => {
            let entry = ctx.entry(a.sr.as_deref())?;
            // Refuse before asking rather than after; destroy checks again under the lock,
            // so with --yes one lvm report is enough.
            if !out.yes {
                ctx.check_destroy(&entry)?;
                out.confirm_by_typing(
                    &format!("destroy SR '{}' and every disk in it", entry.name),
                    &entry.name,
                )?;
            }
            ctx.destroy(&entry)?;
            out.done(&format!("Destroyed SR '{}'", entry.name));
        }
        SrCmd::Show(a) => {
            let d = ctx.show(a.sr.as_deref())?;
            out.emit(&d, || print_detail(&d));
        }
        SrCmd::Check { sr, repair } => {
            let progress = super::progress::Reporter::new(out.quiet);
            let r = ctx.sr_check(sr.as_deref(), *repair, out.yes, &progress)?;
            if !out.json {
                for w in &r.warnings {
                    out.warn(w);
                }
            }
            out.emit(&r, || {
                if r.findings.is_empty() {
                    println!("SR '{}' is consistent", r.name);
                }
                for f in &r.findings {
                    println!(
                        "{}: {} [{}]\n    {}: {}",
                        f.subject,
                        f.problem,
                        f.kind,
                        if f.repaired { "repaired" } else { "repair" },
                        f.repair
                    );
                }
            });
            return Ok(if r.clean() { 0 } else { 1 });
        }
        SrCmd::List => {
            let list = ctx.list()?;
            out.emit(&list, || print_list(&list));
        }
        SrCmd::Rename { sr, name } => {
            let m = ctx.rename(Some(sr), name)?;
            out.emit(&m, || println!("SR {} is now named '{}'", m.uuid, m.name));
        }
        SrCmd::SetDescription { sr, text } => {
            let m = ctx.set_description(Some(sr), text)?;
            out.emit(&m, || println!("Description of SR '{}' set", m.name));
        }
    }
    Ok(0)
}

/// What xapi 26.1 does with an SR of this health (xapi-storage-script's SR.scan2), `warned`
/// when the health carries a warning.
fn what_xapi_does(health: &str, warned: bool) -> &'static str {
    match health {
        "Healthy" if warned => "scans succeed; the warning above reaches xapi in the SR's description",
        "Healthy" => "scans succeed",
        "Unreachable" => "scans are retried 3 times a second apart, then fail (SR_UNHEALTHY); running VMs keep their disks and VMs start, but their writes wait or fail until the pool has room",
        "Unavailable" => "scans fail at once (SR_UNHEALTHY); the pool's metadata needs a repair before VMs can use it",
        _ => "scans fail (SR_UNHEALTHY)",
    }
}

/// The result of create or introduce: warnings on stderr, then the SR.
fn made(out: &Out, verb: &str, d: &SrDetail) {
    for w in &d.warnings {
        out.warn(w);
    }
    out.emit(d, || {
        println!(
            "{verb} SR '{}' ({}) on volume group {}",
            d.name, d.uuid, d.vg
        );
        println!(
            "Thin pool {}: {}, grows as it fills",
            d.pool.lv, d.pool.size
        );
    });
}

fn print_list(list: &[SrSummary]) {
    if list.is_empty() {
        println!("No storage repository is registered. Create one with 'thinsr sr create' or 'thinsr sr introduce'.");
        return;
    }
    let mut t = table(&["Name", "UUID", "VG", "Mode", "State", "Size", "Free"]);
    for s in list {
        t.add_row(vec![
            s.name.clone(),
            s.uuid[..8].to_string(),
            s.vg.clone(),
            s.mode.to_string(),
            s.state.clone(),
            s.total_space.to_string(),
            s.free_space.to_string(),
        ]);
    }
    println!("{t}");
}

fn pct(part: Bytes, whole: Bytes) -> String {
    if whole.0 == 0 {
        "-".into()
    } else {
        format!("{:.1}%", part.0 as f64 * 100.0 / whole.0 as f64)
    }
}

fn print_detail(d: &SrDetail) {
    println!("SR          {} ({})", d.name, d.uuid);
    println!(
        "Contents    {} VDI LV(s), {} template cache(s)",
        d.vdis, d.caches
    );
    if !d.description.is_empty() {
        println!("            {}", d.description);
    }
    println!(
        "Mode        {}{}",
        d.mode,
        d.file
            .as_ref()
            .map(|f| format!(", backed by file {}", f.display()))
            .unwrap_or_default()
    );
    println!(
        "State       {}, health {}{}",
        if d.attached { "attached" } else { "detached" },
        d.health.0,
        if d.health.1.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.health.1)
        }
    );
    println!(
        "xapi        {}",
        what_xapi_does(&d.health.0, !d.health.1.is_empty())
    );
    println!(
        "VG          {}: {} total, {} free for pool growth and preallocated disks",
        d.vg, d.vg_size, d.vg_free
    );
    let p = &d.pool;
    println!(
        "Pool        {}{}: {} data, {} used ({}); metadata {} used of {} ({})",
        p.lv,
        if p.owned { "" } else { " (adopted)" },
        p.size,
        p.data_used,
        pct(p.data_used, p.size),
        p.metadata_used,
        p.metadata_size,
        pct(p.metadata_used, p.metadata_size),
    );
    println!(
        "Thin disks  {}, {} virtual, over-commitment {:.2}x",
        p.thin_volumes, p.virtual_total, d.overcommit
    );
    println!("Sizing      {}", d.pool_sizing);
    super::pool::print_growth(&d.growth);
    if let Some(k) = &p.kernel {
        println!(
            "Kernel      pool {}{}, when full: {}",
            k.state,
            if k.needs_check { ", NEEDS CHECK" } else { "" },
            k.when_full
        );
    }
    println!(
        "Isolation   {}",
        if p.zeroes_new_blocks {
            "the pool zeroes new blocks: a new VDI reads zeros, never old data"
        } else {
            "the pool does NOT zero new blocks: a new VDI can show the disk's old bytes; 'thinsr sr check --repair' turns zeroing on"
        }
    );
    println!(
        "Space       {} free of {} for disks",
        d.free_space, d.total_space
    );
    println!();
    let mut pvs = table(&["Physical volume", "Size", "Free"]);
    for pv in &d.pvs {
        pvs.add_row(vec![
            pv.device.clone(),
            pv.size.to_string(),
            pv.free.to_string(),
        ]);
    }
    println!("{pvs}");
    let mut lvs = table(&["Logical volume", "Role", "Size", "Active"]);
    for l in d.lvs.iter().chain(&d.foreign_lvs) {
        let role = if l.role == "foreign" {
            "foreign (not thinsr's)".to_string()
        } else {
            l.role.clone()
        };
        lvs.add_row(vec![
            l.name.clone(),
            role,
            l.size.to_string(),
            if l.active { "yes" } else { "no" }.into(),
        ]);
    }
    println!("{lvs}");
    for r in &d.receiving {
        println!();
        println!(
            "Interrupted receive of snapshot {} of '{}': {} verified and kept; its sender \
             resumes it with 'thinsr vdi send {} --resume {}'",
            r.snapshot, r.label, r.verified, r.snapshot, r.token
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_said_to_reach_xapi_only_when_there_is_one() {
        assert_eq!(what_xapi_does("Healthy", false), "scans succeed");
        assert!(what_xapi_does("Healthy", true).contains("the warning above reaches xapi"));
        assert!(what_xapi_does("Unreachable", false).contains("retried"));
    }
}
