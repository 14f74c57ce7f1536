//! Replication between two SRs (two hosts' worth: nothing is shared but the stream):
//! `vdi send` of a snapshot or of what changed since an older one, `vdi receive` making and
//! advancing a replica; streams cut, corrupted and resumed; a receive killed at each step.

mod common;

use common::*;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 64 * MIB;

fn two_srs() {
    ok(&["sr", "create", DISKS[0], "--name", "prod"]);
    ok(&["sr", "create", DISKS[1], "--name", "dr"]);
}

/// A VDI on prod with data here and there, attached (a running VM's disk); its device.
fn running_vdi() -> String {
    json(&["vdi", "create", "web", "--size", "64M", "--sr", "prod"]);
    let dev = ok(&["vdi", "attach", "prod/web"]).trim().to_string();
    for (i, at) in [0, 3 * MIB, 10 * MIB + 4096, 40 * MIB, SIZE - MIB]
        .iter()
        .enumerate()
    {
        write_at(&dev, *at, &noise(MIB as usize, 10 + i as u64));
    }
    dev
}

/// `n` 4 KiB writes at random places of `dev` (the VM going on).
fn random_writes(dev: &str, n: u64, seed: u64) {
    let r = noise(8 * n as usize, seed);
    for i in 0..n {
        let x = u64::from_le_bytes(r[8 * i as usize..8 * i as usize + 8].try_into().unwrap());
        write_at(dev, x % (SIZE / 4096) * 4096, &noise(4096, seed * 1000 + i));
    }
}

fn snapshot(name: &str) -> String {
    json(&["vdi", "snapshot", "prod/web", "--name", name])["uuid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The sha256 of a VDI's contents, read through a read-only attachment.
fn contents(vdi: &str) -> String {
    let v = json(&["vdi", "attach", vdi, "--read-only"]);
    let sum = sha256(v["path"].as_str().unwrap());
    ok(&["vdi", "detach", vdi]);
    sum
}

/// `vdi send` of `snapshot` (against `base`) into `file`; its report.
fn send(snapshot: &str, base: Option<&str>, file: &str) -> Value {
    let mut args = vec!["vdi", "send", snapshot, "-o", file, "--force"];
    if let Some(b) = base {
        args.extend(["--base", b]);
    }
    json(&args)
}

fn receive(file: &str) -> Value {
    json(&["vdi", "receive", "-i", file, "--sr", "dr"])
}

/// dr's LVs with their tags, and the replica head's contents: what a refused stream must
/// leave as it was.
fn dr_state() -> (String, String) {
    let lvs = sh(&[
        "lvs",
        "--noheadings",
        "-o",
        "lv_name,lv_tags",
        "--sort",
        "lv_name",
        "dr",
    ]);
    (lvs, contents("dr/web"))
}

/// The snapshot on dr that replicates source snapshot `source`, if any.
fn replica_of(source: &str) -> Option<Value> {
    let list = json(&["vdi", "list", "--sr", "dr"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["kind"] == "snapshot" && v["replica"]["snapshot"] == source)
        .cloned()
}

/// A full stream, then ten rounds of a running VM's writes each sent as what changed since
/// the snapshot before: every replica snapshot reads as its source, and the stream carries
/// little more than the changed blocks.
#[test]
fn a_replica_follows_its_vdi_snapshot_by_snapshot_moving_only_the_changes() {
    vm();
    two_srs();
    let dev = running_vdi();
    let first = snapshot("web 0");
    let sent = send(&first, None, "/tmp/full.thinsr");
    // Five MiB written, one of them across 64 KiB blocks: 17 blocks.
    assert_eq!(sent["data"], 5 * MIB + 65536, "{sent}");
    let got = receive("/tmp/full.thinsr");
    assert_eq!(got["source_snapshot"], first.as_str());
    let replica = got["replica"]["uuid"].as_str().unwrap().to_string();
    assert_eq!(got["replica"]["replica"]["snapshot"], first.as_str());
    assert_eq!(
        contents(got["snapshot"].as_str().unwrap()),
        contents(&first)
    );
    assert_eq!(contents(&replica), contents(&first));
    let mut base = first;
    for round in 1..=10u64 {
        random_writes(&dev, 20 + 7 * round, round);
        let snap = snapshot(&format!("web {round}"));
        let changed = json(&["vdi", "changed-blocks", &base, &snap])["changed"]
            .as_u64()
            .unwrap();
        let sent = send(&snap, Some(&base), "/tmp/inc.thinsr");
        let wire = std::fs::metadata("/tmp/inc.thinsr").unwrap().len();
        assert_eq!(sent["written"], wire, "{sent}");
        assert!(
            wire as f64 <= 1.1 * changed as f64,
            "round {round}: {wire} bytes on the wire for {changed} changed"
        );
        let got = receive("/tmp/inc.thinsr");
        assert_eq!(got["replica"]["uuid"], replica.as_str(), "{got}");
        assert_eq!(got["base"], base.as_str());
        let want = contents(&snap);
        assert_eq!(
            contents(got["snapshot"].as_str().unwrap()),
            want,
            "round {round}"
        );
        assert_eq!(contents(&replica), want, "round {round}: the replica VDI");
        println!("round {round}: {changed} bytes changed, {wire} sent");
        if round == 1 {
            // Named as an admin names them, SR/label, base and all: the same stream.
            json(&[
                "vdi",
                "send",
                "prod/web 1",
                "--base",
                "prod/web 0",
                "-o",
                "/tmp/named.thinsr",
            ]);
            assert_eq!(std::fs::metadata("/tmp/named.thinsr").unwrap().len(), wire);
        }
        base = snap;
    }
    // What an admin sees: the replica and where it comes from.
    let shown = ok(&["vdi", "show", &replica]);
    assert!(
        shown.contains("Replica of") && shown.contains(&base),
        "{shown}"
    );
    let listed = ok(&["vdi", "list", "--sr", "dr"]);
    assert!(listed.contains("(replica"), "{listed}");
    // Failing over: a clone of the newest replica snapshot reads as the source did.
    let newest = replica_of(&base).unwrap();
    let clone = json(&[
        "vdi",
        "clone",
        newest["uuid"].as_str().unwrap(),
        "--name",
        "web up",
    ]);
    assert_eq!(contents(clone["uuid"].as_str().unwrap()), contents(&base));
    // The same snapshot twice is refused, and changes nothing.
    let before = dr_state();
    let e = fails(
        &["vdi", "receive", "-i", "/tmp/inc.thinsr", "--sr", "dr"],
        "INVALID_ARGUMENT",
    );
    assert!(e.to_string().contains("already"), "{e}");
    assert_eq!(dr_state(), before);
    assert_eq!(
        json(&["sr", "check", "dr"])["findings"],
        serde_json::json!([])
    );
}

/// A stream cut short or with a byte flipped is refused and leaves the replica and dr's
/// LVs as they were; one whose base dr lacks is refused naming it; a resumable receive
/// keeps what verified and the stream resumed from its token completes.
#[test]
fn a_cut_or_corrupt_stream_changes_nothing_and_a_resumed_one_completes() {
    vm();
    two_srs();
    ok(&["sr", "create", DISKS[2], "--name", "empty"]);
    let dev = running_vdi();
    let first = snapshot("web 0");
    send(&first, None, "/tmp/full.thinsr");
    receive("/tmp/full.thinsr");
    random_writes(&dev, 200, 7);
    write_at(&dev, 20 * MIB, &noise(4 * MIB as usize, 8));
    let second = snapshot("web 1");
    send(&second, Some(&first), "/tmp/inc.thinsr");
    let stream = std::fs::read("/tmp/inc.thinsr").unwrap();
    let before = dr_state();
    let len = stream.len();
    for cut in [10, len / 100, len / 5, len / 2, len * 4 / 5, len - 1] {
        std::fs::write("/tmp/cut.thinsr", &stream[..cut]).unwrap();
        let e = fails(
            &["vdi", "receive", "-i", "/tmp/cut.thinsr", "--sr", "dr"],
            "INVALID_ARGUMENT",
        );
        assert!(e.to_string().contains("invalid"), "cut at {cut}: {e}");
        assert_eq!(dr_state(), before, "cut at {cut}");
    }
    for at in [3, 40, len / 3, len / 2 + 17, len - 40, len - 5] {
        let mut bad = stream.clone();
        bad[at] ^= 0x10;
        std::fs::write("/tmp/bad.thinsr", &bad).unwrap();
        let e = fails(
            &["vdi", "receive", "-i", "/tmp/bad.thinsr", "--sr", "dr"],
            "INVALID_ARGUMENT",
        );
        assert!(e.to_string().contains("invalid"), "flip at {at}: {e}");
        assert_eq!(dr_state(), before, "flip at {at}");
    }
    let e = fails(
        &["vdi", "receive", "-i", "/tmp/inc.thinsr", "--sr", "empty"],
        "REPLICA_BASE_MISSING",
    );
    assert!(e["params"].to_string().contains(&first), "{e}");

    // Resumable: cut at 60 %, resumed from the token the error gives.
    std::fs::write("/tmp/cut.thinsr", &stream[..len * 3 / 5]).unwrap();
    let r = thinsr(&[
        "vdi",
        "receive",
        "-i",
        "/tmp/cut.thinsr",
        "--sr",
        "dr",
        "--resumable",
    ]);
    assert_ne!(r.code, 0);
    let token = r
        .stderr
        .split("--resume ")
        .nth(1)
        .unwrap_or_else(|| panic!("no token: {}", r.stderr))
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    let found = thinsr(&["--json", "sr", "check", "dr"]).json()["findings"].to_string();
    assert!(found.contains("receive_interrupted"), "{found}");
    assert_eq!(
        contents("dr/web"),
        before.1,
        "the replica moved before the end"
    );
    let rest = json(&[
        "vdi",
        "send",
        &second,
        "--resume",
        &token,
        "-o",
        "/tmp/rest.thinsr",
    ]);
    let resent = std::fs::metadata("/tmp/rest.thinsr").unwrap().len();
    assert!(
        (resent as f64) < 0.5 * len as f64 && rest["skipped"].as_u64().unwrap() > 0,
        "{resent} of {len} sent again: {rest}"
    );
    let got = receive("/tmp/rest.thinsr");
    assert_eq!(got["resumed"], true, "{got}");
    assert_eq!(contents("dr/web"), contents(&second));
    assert_eq!(
        json(&["sr", "check", "dr"])["findings"],
        serde_json::json!([])
    );
}

/// A receive killed at each of its steps: `sr check --repair` leaves dr clean, the replica
/// at its last snapshot (or, past the point of recording, at the new one), and the next
/// stream applies.
#[test]
fn a_receive_killed_at_any_step_leaves_the_replica_at_a_snapshot() {
    vm();
    two_srs();
    let dev = running_vdi();
    let mut base = snapshot("web 0");
    send(&base, None, "/tmp/full.thinsr");
    receive("/tmp/full.thinsr");
    let points = [
        "receive.staged",
        "receive.record",
        "receive.verified",
        "receive.tagged",
        "receive.recorded",
    ];
    for (i, point) in points.iter().enumerate() {
        random_writes(&dev, 30, 50 + i as u64);
        let snap = snapshot(&format!("web {}", i + 1));
        send(&snap, Some(&base), "/tmp/inc.thinsr");
        let was = contents("dr/web");
        crash_at(
            point,
            &["vdi", "receive", "-i", "/tmp/inc.thinsr", "--sr", "dr"],
        );
        json(&["sr", "check", "dr", "--repair"]);
        assert_eq!(
            json(&["sr", "check", "dr"])["findings"],
            serde_json::json!([]),
            "{point}"
        );
        let now = contents("dr/web");
        match replica_of(&snap) {
            // Recorded before the kill: finished by the repair.
            Some(_) => assert_eq!(now, contents(&snap), "{point}"),
            None => {
                assert_eq!(now, was, "{point}: the replica moved");
                receive("/tmp/inc.thinsr");
                assert_eq!(contents("dr/web"), contents(&snap), "{point}");
            }
        }
        println!(
            "{point}: {}",
            if replica_of(&snap).is_some() {
                "ok"
            } else {
                "?"
            }
        );
        base = snap;
    }
}

/// An sshd on the VM's loopback, port 2222, taking root's key (as an admin sets up key
/// access between hosts); the client accepts its host key on first use.
fn sshd() -> &'static str {
    sh(&["ip", "link", "set", "lo", "up"]);
    sh(&["mkdir", "-p", "/run/sshd", "/root/.ssh", "/tmp/sshd"]);
    sh(&["chmod", "700", "/root/.ssh"]);
    sh(&["chmod", "755", "/run/sshd"]);
    for (key, file) in [
        ("host", "/tmp/sshd/host"),
        ("user", "/root/.ssh/id_ed25519"),
    ] {
        sh(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            key,
            "-f",
            file,
        ]);
    }
    sh(&[
        "cp",
        "/root/.ssh/id_ed25519.pub",
        "/root/.ssh/authorized_keys",
    ]);
    std::fs::write(
        "/tmp/sshd/config",
        "Port 2222\nListenAddress 127.0.0.1\nHostKey /tmp/sshd/host\n\
         PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nPidFile /tmp/sshd/pid\n\
         AuthorizedKeysFile /root/.ssh/authorized_keys\n",
    )
    .unwrap();
    std::fs::write(
        "/root/.ssh/config",
        "Host 127.0.0.1\n  StrictHostKeyChecking accept-new\n",
    )
    .unwrap();
    sh(&[
        "/usr/sbin/sshd",
        "-f",
        "/tmp/sshd/config",
        "-E",
        "/tmp/sshd/log",
    ]);
    "ssh://root@127.0.0.1:2222/dr"
}

fn replicate(to: &str) -> Value {
    json(&["vdi", "replicate", "prod/web", "--to", to, "--keep", "2"])
}

/// The replication snapshots (thinsr's, by key) of prod/web, oldest first.
fn replication_snapshots() -> Vec<String> {
    let list = json(&["vdi", "list", "--sr", "prod"]);
    list.as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "snapshot" && v["keys"]["thinsr.replication"].is_string())
        .map(|v| v["uuid"].as_str().unwrap().to_string())
        .collect()
}

/// `vdi replicate` through a real OpenSSH server as cron runs it: the first run sends the
/// whole disk, the next ones what changed (a running VM writing between them), the
/// replica reading as each snapshot did; older replication snapshots pruned on both sides
/// and the admin's own kept; a second run at once refused; a run killed mid-stream
/// finished by the next one from where it stopped.
#[test]
fn replicate_over_ssh_keeps_a_replica_current_as_cron_runs_it() {
    vm();
    two_srs();
    let to = sshd();
    let dev = running_vdi();
    let first = replicate(to);
    assert!(first["base"].is_null(), "{first}");
    assert_eq!(first["data"], 5 * MIB + 65536, "{first}");
    let replica = first["received"]["replica"]["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        contents(&replica),
        contents(first["snapshot"].as_str().unwrap())
    );
    let mine = snapshot("web mine");
    let mut last = first["snapshot"].as_str().unwrap().to_string();
    for round in 1..=3u64 {
        random_writes(&dev, 40, 100 + round);
        let r = replicate(to);
        assert_eq!(r["base"], last.as_str(), "round {round}: {r}");
        let snap = r["snapshot"].as_str().unwrap().to_string();
        let changed = json(&["vdi", "changed-blocks", &last, &snap])["changed"]
            .as_u64()
            .unwrap();
        let sent = r["sent"].as_u64().unwrap();
        assert!(
            sent as f64 <= 1.1 * changed as f64,
            "round {round}: {sent} sent for {changed} changed"
        );
        assert_eq!(contents(&replica), contents(&snap), "round {round}");
        last = snap;
    }
    // --keep 2: two replication snapshots on each side; the admin's own stays.
    assert_eq!(replication_snapshots().len(), 2);
    let there = json(&["vdi", "list", "--sr", "dr"]);
    let replicas = there
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["kind"] == "snapshot")
        .count();
    assert_eq!(replicas, 2, "{there}");
    assert!(json(&["vdi", "show", &mine])["uuid"] == mine.as_str());

    // One run at a time: a second one while the first holds the VDI's lock.
    let mut held = thinsr_cmd(&["vdi", "replicate", "prod/web", "--to", to, "--keep", "2"])
        .env("THINSR_PAUSE_AT", "replicate.locked")
        .env("THINSR_PAUSE_MS", "6000")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let busy = fails(&["vdi", "replicate", "prod/web", "--to", to], "SR_BUSY");
    assert!(busy.to_string().contains("another run"), "{busy}");
    assert!(held.wait().unwrap().success());
    last = replication_snapshots().pop().unwrap();

    // Killed after two records reached the other side: dr keeps them, and the next run
    // finishes that snapshot from there, then sends a new one.
    random_writes(&dev, 300, 200);
    write_at(&dev, 30 * MIB, &noise(3 * MIB as usize, 201));
    crash_at(
        "send.cut",
        &["vdi", "replicate", "prod/web", "--to", to, "--keep", "2"],
    );
    let cut = replication_snapshots().pop().unwrap();
    assert_ne!(cut, last);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let pending = json(&["sr", "show", "dr"])["receiving"].clone();
    assert_eq!(pending[0]["snapshot"], cut.as_str(), "{pending}");
    let r = replicate(to);
    assert_eq!(r["resumed"], cut.as_str(), "{r}");
    assert_eq!(r["base"], cut.as_str(), "{r}");
    assert_eq!(
        contents(&replica),
        contents(r["snapshot"].as_str().unwrap())
    );
    assert!(json(&["sr", "show", "dr"])["receiving"].is_null());
    assert_eq!(
        json(&["sr", "check", "dr"])["findings"],
        serde_json::json!([])
    );
    assert_eq!(
        json(&["sr", "check", "prod"])["findings"],
        serde_json::json!([])
    );
}
