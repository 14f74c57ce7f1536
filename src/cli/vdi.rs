//! `thinsr vdi ...`: parse, call the engine, render.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};

use super::progress::Reporter;
use super::{table, Out};
use crate::cli::args::VdiCmd;
use crate::engine::context::Ctx;
use crate::engine::export::Target;
use crate::engine::import::{ImportOpts, ImportSource};
use crate::engine::replica::{Destination, ReplicateOpts};
use crate::engine::serve::Serving;
use crate::engine::vdi::Volume;
use crate::error::{Error, Result};
use crate::units::{parse_new_size, parse_positive_size, parse_size, Bytes, NewSize};

/// The `post-` hooks that failed, on stderr (`--json` has them in the record too).
fn warn_hooks(out: &Out, v: &Volume) {
    for f in &v.hook_failures {
        out.warn(f);
    }
}

pub fn run(ctx: &Ctx, out: &Out, cmd: &VdiCmd) -> Result<()> {
    match cmd {
        VdiCmd::Create {
            name,
            size,
            sr,
            description,
            preallocate,
        } => {
            let size = parse_positive_size(size)?;
            let progress = Reporter::new(out.quiet);
            let v = ctx.vdi_create(
                sr.sr.as_deref(),
                name,
                size,
                description,
                *preallocate,
                &progress,
            )?;
            warn_hooks(out, &v);
            out.emit(&v, || {
                println!(
                    "Created {} VDI '{}' ({}): {}, LV {}/{}",
                    v.kind, v.name, v.uuid, v.virtual_size, v.vg, v.lv
                )
            });
        }
        VdiCmd::List { sr } => {
            let listing = ctx.vdi_list(sr.sr.as_deref())?;
            for w in &listing.warnings {
                out.warn(w);
            }
            out.emit(&listing.volumes, || print_list(&listing.volumes));
        }
        VdiCmd::Show(a) => {
            let v = ctx.vdi_show(&a.vdi, a.sr.as_deref())?;
            out.emit(&v, || print_detail(&v));
        }
        VdiCmd::Destroy(a) => {
            // Refuse before asking rather than after; destroy checks again under the lock,
            // so with --yes one lvm report is enough.
            if !out.yes {
                let v = ctx.vdi_show(&a.vdi, a.sr.as_deref())?;
                ctx.vdi_check_destroy(&v)?;
                out.confirm(&format!(
                    "Destroy VDI '{}' ({}, {}, LV {}/{}) and its data?",
                    v.name, v.uuid, v.virtual_size, v.vg, v.lv
                ))?;
            }
            let v = ctx.vdi_destroy(&a.vdi, a.sr.as_deref())?;
            warn_hooks(out, &v);
            out.done(&format!("Destroyed VDI '{}' ({})", v.name, v.uuid));
        }
        VdiCmd::Snapshot { vdi, name } | VdiCmd::Clone { vdi, name } => {
            let clone = matches!(cmd, VdiCmd::Clone { .. });
            let v = ctx.vdi_snapshot(&vdi.vdi, vdi.sr.as_deref(), name.as_deref(), clone)?;
            warn_hooks(out, &v);
            out.emit(&v, || {
                println!(
                    "{} '{}' ({}) of '{}': LV {}/{}",
                    if clone { "Clone" } else { "Snapshot" },
                    v.name,
                    v.uuid,
                    v.parent_name.as_deref().unwrap_or("?"),
                    v.vg,
                    v.lv
                )
            });
        }
        VdiCmd::Resize {
            vdi,
            size,
            allow_shrink,
        } => {
            let new = parse_new_size(size)?;
            if *allow_shrink && !out.yes {
                if let NewSize::To(to) = new {
                    let v = ctx.vdi_show(&vdi.vdi, vdi.sr.as_deref())?;
                    if to < v.virtual_size {
                        out.confirm(&format!(
                            "Shrink VDI '{}' from {} to {}? Data beyond {} is lost.",
                            v.name, v.virtual_size, to, to
                        ))?;
                    }
                }
            }
            let progress = Reporter::new(out.quiet);
            let v = ctx.vdi_resize(&vdi.vdi, vdi.sr.as_deref(), new, *allow_shrink, &progress)?;
            warn_hooks(out, &v);
            out.emit(&v, || {
                println!("VDI '{}' is now {}", v.name, v.virtual_size)
            });
        }
        VdiCmd::Rename { vdi, name } => {
            let v = ctx.vdi_rename(&vdi.vdi, vdi.sr.as_deref(), name)?;
            out.emit(&v, || {
                println!("VDI {} is now '{}', LV {}/{}", v.uuid, v.name, v.vg, v.lv)
            });
        }
        VdiCmd::Cbt { vdi, state } => {
            let v = ctx.vdi_set_cbt(&vdi.vdi, vdi.sr.as_deref(), state == "on")?;
            out.emit(&v, || {
                println!("Changed block tracking of VDI '{}': {state}", v.name)
            });
        }
        VdiCmd::ChangedBlocks {
            base,
            new,
            sr,
            offset,
            length,
        } => {
            let offset = parse_size(offset)?.0;
            let length = length.as_deref().map(parse_size).transpose()?.map(|b| b.0);
            let c = ctx.vdi_changed_blocks(base, new, sr.sr.as_deref(), offset, length)?;
            out.emit(&c, || print_changes(&c));
        }
        VdiCmd::Serve {
            vdi,
            socket,
            writable,
        } => {
            let json = out.json;
            let served = ctx.vdi_serve(
                &vdi.vdi,
                vdi.sr.as_deref(),
                socket.as_deref(),
                *writable,
                &mut |s: &Serving| {
                    if json {
                        json_line(s);
                    } else if !out.quiet {
                        let what = if s.from_snapshot {
                            " (a snapshot of it: it is attached read-write)"
                        } else {
                            ""
                        };
                        let mode = if s.read_only {
                            "read-only"
                        } else {
                            "read-write"
                        };
                        println!(
                            "Serving VDI '{}' {mode}{what}, {}, until interrupted:\n  {}",
                            s.vdi, s.size, s.uri
                        );
                        std::io::stdout().flush().ok();
                    }
                },
            )?;
            if json {
                json_line(&served);
            } else if !out.quiet {
                println!(
                    "Stopped serving '{}': {} connection(s), {} read, {} written in {:.1} s",
                    served.vdi,
                    served.connections,
                    served.bytes_read,
                    served.bytes_written,
                    served.seconds
                );
            }
        }
        VdiCmd::Mirror { vdi, remote } => {
            let progress = Reporter::new(out.quiet);
            let m = ctx.vdi_mirror(&vdi.vdi, vdi.sr.as_deref(), remote, &progress)?;
            out.emit(&m, || {
                println!(
                    "VDI {} mirrored to {}: {} copied in {:.1} s; the mirror has ended",
                    m.vdi, m.remote, m.copied, m.seconds
                )
            });
        }
        VdiCmd::Copy { vdi, to, name } => {
            let progress = Reporter::new(out.quiet);
            let v = ctx.vdi_copy(&vdi.vdi, vdi.sr.as_deref(), to, name.as_deref(), &progress)?;
            out.emit(&v, || {
                println!(
                    "Copied into VDI {} '{}' of SR {} ({} allocated)",
                    v.uuid, v.name, v.sr_name, v.physical_utilisation
                )
            });
        }
        VdiCmd::DataDestroy(a) => {
            if !out.yes {
                let v = ctx.vdi_show(&a.vdi, a.sr.as_deref())?;
                out.confirm(&format!(
                    "Destroy the data of snapshot '{}' ({}), keeping only its block map?",
                    v.name, v.uuid
                ))?;
            }
            let v = ctx.vdi_data_destroy(&a.vdi, a.sr.as_deref())?;
            out.emit(&v, || {
                println!(
                    "Data of snapshot '{}' ({}) destroyed; its block map is kept",
                    v.name, v.uuid
                )
            });
        }
        VdiCmd::Revert { vdi, snapshot } => {
            if !out.yes {
                let v = ctx.vdi_show(&vdi.vdi, vdi.sr.as_deref())?;
                out.confirm(&format!(
                    "Replace the contents of VDI '{}' ({}) with snapshot '{snapshot}'?",
                    v.name, v.uuid
                ))?;
            }
            let v = ctx.vdi_revert(&vdi.vdi, snapshot, vdi.sr.as_deref())?;
            out.emit(&v, || {
                println!("VDI '{}' ({}) reverted to '{snapshot}'", v.name, v.uuid)
            });
        }
        VdiCmd::SetDescription { vdi, text } => {
            let v = ctx.vdi_set_description(&vdi.vdi, vdi.sr.as_deref(), text)?;
            out.emit(&v, || println!("Description of VDI '{}' set", v.name));
        }
        VdiCmd::Set { vdi, key, value } => {
            let v = ctx.vdi_set_key(&vdi.vdi, vdi.sr.as_deref(), key, value)?;
            out.emit(&v, || println!("VDI '{}': {key} set", v.name));
        }
        VdiCmd::Unset { vdi, key } => {
            let v = ctx.vdi_unset_key(&vdi.vdi, vdi.sr.as_deref(), key)?;
            out.emit(&v, || println!("VDI '{}': {key} removed", v.name));
        }
        VdiCmd::Attach { vdi, read_only } => {
            let v = ctx.vdi_attach(&vdi.vdi, vdi.sr.as_deref(), *read_only)?;
            out.emit(&v, || println!("{}", v.path));
        }
        VdiCmd::Detach(a) => {
            let v = ctx.vdi_detach(&a.vdi, a.sr.as_deref())?;
            out.emit(&v, || println!("VDI '{}' detached", v.name));
        }
        VdiCmd::Import {
            file,
            name,
            sr,
            format,
            size,
            description,
        } => {
            let text = file.to_string_lossy();
            let source = if file.as_os_str() == "-" {
                ImportSource::Stdin
            } else if text.starts_with("nbd://") || text.starts_with("nbd+unix://") {
                ImportSource::Nbd(text.into_owned())
            } else {
                ImportSource::File(file.clone())
            };
            let opts = ImportOpts {
                format: Some(format.clone()),
                size: size.as_deref().map(parse_positive_size).transpose()?,
                description: description.clone(),
            };
            let progress = Reporter::new(out.quiet);
            let r = ctx.vdi_import(&source, sr.sr.as_deref(), name, &opts, &progress)?;
            out.emit(&r, || {
                let written = r
                    .written
                    .map(|w| format!(", {} of data written", Bytes(w)))
                    .unwrap_or_default();
                println!(
                    "Imported {} image as VDI '{}' ({}): {}{written}, LV {}/{}",
                    r.format,
                    r.volume.name,
                    r.volume.uuid,
                    r.volume.virtual_size,
                    r.volume.vg,
                    r.volume.lv
                )
            });
        }
        VdiCmd::Send {
            vdi,
            base,
            resume,
            output,
            force,
        } => {
            let target = match output {
                Some(p) if p.as_os_str() != "-" => Target::File {
                    path: p.clone(),
                    force: *force,
                },
                _ if std::io::stdout().is_terminal() => {
                    return Err(Error::Usage(
                        "not writing a stream to a terminal: give -o FILE, or redirect stdout"
                            .into(),
                    ))
                }
                _ => Target::Stdout,
            };
            let to_stdout = matches!(target, Target::Stdout);
            let progress = Reporter::new(out.quiet || out.json && to_stdout);
            let r = ctx.vdi_send(
                &vdi.vdi,
                vdi.sr.as_deref(),
                base.as_deref(),
                resume.as_deref(),
                &target,
                &progress,
            )?;
            let line = format!(
                "Sent snapshot '{}' ({}){} to {}: {} of data, {} of holes, {} records, {} in {:.1} s",
                r.snapshot_name,
                short(&r.snapshot),
                r.base
                    .as_deref()
                    .map(|b| format!(" since {}", short(b)))
                    .unwrap_or_default(),
                if to_stdout { "stdout" } else { &r.output },
                r.data,
                r.holes,
                r.records,
                r.written,
                r.seconds
            );
            out.report(to_stdout, &r, &line);
        }
        VdiCmd::Receive {
            input,
            sr,
            resumable,
            keep,
        } => {
            let progress = Reporter::new(out.quiet);
            let r = match input {
                Some(p) if p.as_os_str() != "-" => {
                    let mut f = std::fs::File::open(p)
                        .map_err(|e| Error::io(p.display().to_string(), e))?;
                    ctx.vdi_receive(sr.sr.as_deref(), &mut f, *resumable, *keep, &progress)?
                }
                _ => {
                    let mut stdin = std::io::stdin().lock();
                    ctx.vdi_receive(sr.sr.as_deref(), &mut stdin, *resumable, *keep, &progress)?
                }
            };
            warn_hooks(out, &r.replica);
            out.emit(&r, || {
                println!(
                    "Received snapshot {} of '{}' as {} of replica VDI '{}' ({}): {} of data, {} of holes, {} read in {:.1} s{}",
                    short(&r.source_snapshot),
                    r.replica.name,
                    short(&r.snapshot),
                    r.replica.name,
                    short(&r.replica.uuid),
                    r.data,
                    r.holes,
                    r.read,
                    r.seconds,
                    if r.resumed { " (resumed)" } else { "" }
                )
            });
        }
        VdiCmd::Replicate {
            vdi,
            to,
            keep,
            remote_thinsr,
        } => {
            let opts = ReplicateOpts {
                to: Destination::parse(to)?,
                to_text: to.clone(),
                keep: *keep,
                remote_thinsr: remote_thinsr.clone(),
            };
            let progress = Reporter::new(out.quiet);
            let r = ctx.vdi_replicate(&vdi.vdi, vdi.sr.as_deref(), &opts, &progress)?;
            out.emit(&r, || {
                println!(
                    "Replicated '{}' to {}: snapshot {}{}{}, {} of data, {} sent in {:.1} s",
                    r.vdi_name,
                    r.to,
                    short(&r.snapshot),
                    r.base
                        .as_deref()
                        .map(|b| format!(" since {}", short(b)))
                        .unwrap_or_else(|| " (whole)".into()),
                    r.resumed
                        .as_deref()
                        .map(|s| format!(", after finishing {}", short(s)))
                        .unwrap_or_default(),
                    r.data,
                    r.sent,
                    r.seconds
                );
                let pruned = r.pruned_here.len() + r.pruned_there.len();
                if pruned > 0 {
                    println!(
                        "Pruned {} older replication snapshot(s) here and {} there",
                        r.pruned_here.len(),
                        r.pruned_there.len()
                    );
                }
            });
        }
    }
    Ok(())
}

fn short(uuid: &str) -> &str {
    uuid.get(..8).unwrap_or(uuid)
}

pub(super) fn print_list(list: &[Volume]) {
    if list.is_empty() {
        println!("No VDIs. Create one with 'thinsr vdi create NAME --size SIZE'.");
        return;
    }
    let many_srs = list.iter().map(|v| &v.sr).collect::<HashSet<_>>().len() > 1;
    let mut header = vec![
        "Name",
        "UUID",
        "Kind",
        "Size",
        "Allocated",
        "Parent",
        "Attached",
    ];
    if many_srs {
        header.insert(0, "SR");
    }
    let mut t = table(&header);
    for v in list {
        let mut row = vec![
            v.name.clone(),
            short(&v.uuid).to_string(),
            match (&v.replica, v.data_destroyed) {
                (_, true) => format!("{} (data destroyed)", v.kind),
                // The head's replica names the newest snapshot received, and when.
                (Some(r), _) if v.read_write => format!(
                    "{} (replica, {} of {})",
                    v.kind,
                    crate::units::utc(r.received),
                    short(&r.snapshot)
                ),
                (Some(_), _) => format!("{} (replica)", v.kind),
                (None, _) => v.kind.to_string(),
            },
            v.virtual_size.to_string(),
            v.physical_utilisation.to_string(),
            v.parent_name.clone().unwrap_or_default(),
            if v.attached {
                "yes".into()
            } else if v.pending.is_some() {
                "incomplete".into()
            } else {
                "no".into()
            },
        ];
        if many_srs {
            row.insert(0, v.sr_name.clone());
        }
        t.add_row(row);
    }
    println!("{t}");
}

pub(super) fn print_detail(v: &Volume) {
    println!("VDI          {} ({})", v.name, v.uuid);
    if !v.description.is_empty() {
        println!("             {}", v.description);
    }
    println!("SR           {} ({})", v.sr_name, v.sr);
    println!(
        "Kind         {}{}",
        v.kind,
        if v.read_write { "" } else { ", read-only" }
    );
    println!("Size         {}", v.virtual_size);
    println!("Allocated    {}", v.physical_utilisation);
    if v.cbt_enabled || v.data_destroyed {
        println!(
            "CBT          {}{}",
            if v.cbt_enabled { "on" } else { "off" },
            if v.data_destroyed {
                ", data destroyed: only its block map is kept"
            } else {
                ""
            }
        );
    }
    if let Some(r) = &v.replica {
        println!(
            "Replica of   VDI {} of SR {}: snapshot {}, received {}",
            r.vdi,
            r.sr,
            r.snapshot,
            crate::units::utc(r.received)
        );
    }
    if let Some(src) = &v.source {
        println!(
            "Image        {src} ({})",
            v.format.as_deref().unwrap_or("?")
        );
        if let Some(s) = &v.server {
            let how = match (&s.error, s.mounted) {
                (Some(e), _) => format!("not answering: {e}"),
                (None, Some(true)) => "answering; mounted".into(),
                (None, _) => "answering".into(),
            };
            println!("Server       {} ({}): {how}", s.place, s.address);
        }
    } else {
        println!("LV           {}/{}", v.vg, v.lv);
    }
    // Shares are of the bytes the image holds (qemu's map), not of its virtual size: zeros
    // take no space in either copy.
    let share = |held: u64| match v.image_allocated {
        Some(all) if all > 0 => format!(
            " of {} the image holds ({:.0}%)",
            Bytes(all),
            (held as f64 * 100.0 / all as f64).min(100.0)
        ),
        _ => " (zeros take no space)".into(),
    };
    let held = v.cached.unwrap_or(0);
    for (what, lv, how) in [
        ("Cache     ", &v.cache, ""),
        ("Local copy", &v.local, ", read in the kernel"),
    ] {
        if let Some(lv) = lv {
            let (vg, data, of) = (&v.vg, Bytes(held), share(held));
            println!("{what}   LV {vg}/{lv}: {data} held{of}{how}");
        }
    }
    if let Some(l) = &v.lazy {
        let on_host = match l.on_host {
            Some(b) => format!(
                "{b} of {} on the host ({:.0}%)",
                l.length,
                b.0 as f64 * 100.0 / l.length.0.max(1) as f64
            ),
            None => format!("{} file; on the host: known once attached", l.length),
        };
        println!("Lazy         read from the server as clones need it: {on_host}");
        if let Some(f) = l.fetched {
            println!("Fetched      {f} since its lazy source started");
        }
        println!(
            "Version      {} (every request pinned to it; a read waits {} s at most)",
            l.version, l.timeout_s
        );
        if l.source_changed {
            println!("Source       CHANGED on the server: pieces not on the host cannot be read");
        } else if let Some(e) = &l.error {
            println!("Last error   {e}");
        }
        println!(
            "Verified     no: 'thinsr template warm' fetches the rest and computes its SHA-256"
        );
    }
    if let Some(h) = &v.sha256 {
        println!("SHA-256      {h}");
    }
    if let Some(o) = &v.origin {
        println!(
            "Template     {} ({o})",
            v.origin_name.as_deref().unwrap_or("?")
        );
    }
    if v.attached {
        println!("Device       {} (attached)", v.path);
    } else {
        println!("Device       (not attached)");
    }
    if let Some(p) = &v.parent {
        println!(
            "Parent       {} ({p})",
            v.parent_name.as_deref().unwrap_or("?")
        );
    }
    if let Some(p) = &v.pending {
        println!("Incomplete   {p:?}: run the interrupted command again, or destroy the VDI");
    }
    for p in &v.problems {
        println!("Problem      {p}");
    }
    if !v.keys.is_empty() {
        println!("Keys");
        for (k, val) in &v.keys {
            println!("  {k} = {val}");
        }
    }
}

/// `vdi changed-blocks` for a human: how much changed, and where.
fn print_changes(c: &crate::engine::changes::ChangedBlocks) {
    let pct = if c.length.0 == 0 {
        0.0
    } else {
        c.changed.0 as f64 * 100.0 / c.length.0 as f64
    };
    println!(
        "{} of {} changed ({pct:.2} %) between '{}' and '{}', in {} range(s) of 64 KiB blocks",
        c.changed,
        c.length,
        c.base_name,
        c.new_name,
        c.extents.len()
    );
    const SHOWN: usize = 20;
    for e in c.extents.iter().take(SHOWN) {
        println!(
            "  {:>12} .. {:>12}  {}",
            e.start,
            e.start + e.len,
            Bytes(e.len)
        );
    }
    if c.extents.len() > SHOWN {
        println!(
            "  ... and {} more (--json lists them all)",
            c.extents.len() - SHOWN
        );
    }
}

/// One JSON object on one line, flushed: what a long-running command says as it goes.
fn json_line<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string(value).expect("results serialize")
    );
    std::io::stdout().flush().ok();
}
