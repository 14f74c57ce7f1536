//! The rule for mirrors (engine/mirror/): one whose start or end a crash interrupted. A
//! start's guard normally ends a start that died, and a detach ends any mirror; what is
//! left after both failed is found here: a record still starting, a record running whose
//! VDI device is no mirror (an end stopped after the swap back), a leg device without a
//! mirror. A mirror running as it should is no finding.

use super::facts::{Facts, MirrorFact};
use super::finding::{Finding, FindingKind as K, Fix};
use crate::engine::mirror::{self, Phase};
use crate::error::Result;
use crate::host::dm;
use crate::ids::{SrUuid, VdiUuid};

pub(super) fn mirrors(f: &Facts, repair: bool, out: &mut Vec<Finding>) {
    for fact in &f.mirrors {
        let Some(problem) = problem(fact) else {
            continue;
        };
        let Some(v) = f.meta.vdi(&fact.vdi) else {
            continue; // another SR's VDI
        };
        out.push(
            Finding::new(
                K::StaleMirror,
                format!("mirror of VDI {} ({})", fact.vdi, v.name),
                problem,
                "end it: the VDI's own table back on its device, the leg, NBD connection and log removed",
            )
            .fixed_by(repair, vec![Fix::EndMirror(fact.vdi.clone())]),
        );
    }
}

fn problem(fact: &MirrorFact) -> Option<&'static str> {
    match (&fact.phase, fact.mirroring) {
        (Some(Phase::Starting), _) => Some("its start was interrupted"),
        (Some(Phase::Running), false) => {
            Some("recorded as running, but the VDI's device is no mirror (its end was interrupted)")
        }
        (None, _) if fact.leg => Some("its leg device is left without a mirror"),
        _ => None,
    }
}

/// `Fix::EndMirror`: ends the record (tearing down what it names), then removes a leg no
/// record names.
pub(super) fn end(sr: &SrUuid, vdi: &VdiUuid) -> Result<()> {
    if let Some(m) = mirror::load(sr, vdi).filter(|m| m.running()) {
        mirror::give_up(&m, "ended by 'sr check --repair'".into())?;
    }
    dm::remove(&mirror::leg_name(vdi), vdi.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(phase: Option<Phase>, mirroring: bool, leg: bool) -> MirrorFact {
        MirrorFact {
            vdi: "v".into(),
            phase,
            mirroring,
            leg,
        }
    }

    #[test]
    fn a_mirror_is_stale_when_interrupted_and_left_alone_while_it_runs() {
        assert_eq!(problem(&fact(Some(Phase::Running), true, true)), None);
        assert!(problem(&fact(Some(Phase::Starting), false, false)).is_some());
        assert!(problem(&fact(Some(Phase::Running), false, true)).is_some());
        assert!(problem(&fact(None, false, true)).is_some());
        assert_eq!(problem(&fact(None, false, false)), None);
    }
}
