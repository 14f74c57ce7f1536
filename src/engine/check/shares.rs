//! The rules for template shares (engine/share.rs): a mount nobody holds any more (a
//! crash between a holder leaving and the unmount, or a mount that finished after its
//! command gave up waiting), and a share whose server no longer answers, whose clones'
//! reads fail until it is back; and a lazy template whose file on its server changed.

use super::facts::{Facts, ShareFact};
use super::finding::{Finding, FindingKind as K, Fix};
use crate::engine::meta::VdiMeta;

pub(super) fn shares(f: &Facts, repair: bool, out: &mut Vec<Finding>) {
    for s in &f.shares {
        let subject = format!(
            "share {} (/run/thinsr/mnt/{})",
            s.place.as_deref().unwrap_or("?"),
            s.id
        );
        match problem(s) {
            Some(Problem::Unused) => out.push(
                Finding::new(
                    K::UnusedShare,
                    subject,
                    "mounted (or recorded) with no template attachment or command holding it",
                    "unmount it and forget its record",
                )
                .fixed_by(repair, vec![Fix::Unmount(s.id.clone())]),
            ),
            Some(Problem::Unreachable(why)) => out.push(Finding::new(
                K::UnreachableShare,
                subject,
                format!(
                    "its server does not answer ({why}): clones reading its templates fail their reads"
                ),
                "none: bring the server back (its clones read again by themselves), or stop their VMs",
            )),
            None => {}
        }
    }
}

/// Lazy templates whose file on the server changed (as their lazy source found): named,
/// nothing to repair here.
pub(super) fn changed_sources(f: &Facts, vdis: &[VdiMeta], out: &mut Vec<Finding>) {
    for t in vdis.iter().filter(|v| v.is_template()) {
        let Some(why) = f.sources_changed.get(&t.uuid) else {
            continue;
        };
        out.push(Finding::new(
            K::TemplateSourceChanged,
            format!("template '{}' ({})", t.name, t.uuid),
            format!(
                "its file on the server is no longer the version introduced ({why}): its clones' reads of blocks not on the host fail; those on the host read as before"
            ),
            "none here: put the introduced version back on the server (reads then work by themselves), or introduce the new file as a new template",
        ));
    }
}

#[derive(Debug, PartialEq)]
enum Problem<'a> {
    Unused,
    Unreachable(&'a str),
}

fn problem(s: &ShareFact) -> Option<Problem<'_>> {
    if s.holders == 0 {
        return Some(Problem::Unused);
    }
    match &s.unreachable {
        Some(why) if s.mounted => Some(Problem::Unreachable(why)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(mounted: bool, holders: usize, unreachable: Option<&str>) -> ShareFact {
        ShareFact {
            id: "nfs-nas_srv-0badcafe".into(),
            place: Some("nfs://nas/srv".into()),
            mounted,
            holders,
            unreachable: unreachable.map(str::to_string),
        }
    }

    #[test]
    fn a_share_nobody_holds_is_unused_and_a_silent_server_is_named() {
        assert_eq!(problem(&fact(true, 1, None)), None);
        assert_eq!(problem(&fact(true, 0, None)), Some(Problem::Unused));
        assert_eq!(problem(&fact(false, 0, None)), Some(Problem::Unused));
        assert_eq!(
            problem(&fact(true, 2, Some("refused"))),
            Some(Problem::Unreachable("refused"))
        );
        // A record whose mount is being made now is not judged by its server.
        assert_eq!(problem(&fact(false, 1, Some("refused"))), None);
    }
}
