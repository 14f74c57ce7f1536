//! Disks moving into thinsr live, as xapi 26.1 drives the destination of a storage
//! migration (read in xen-api's storage_smapiv3_migrate.ml, storage_smapiv1_migrate.ml,
//! storage_migrate.ml and xapi-storage-script's main.ml), played through the installed
//! method files: the Nbd entry of a MIR domain's attach written by qemu's client again for
//! each transfer with a second writer meanwhile and a client that hangs up mid-request;
//! the VM's own domain coming up on the volume before MIR lets go; tapdisk's client
//! handed over by SCM_RIGHTS to `Datapath.import_activate`; `Volume.compose` layering
//! those writes onto the parent, and surviving a crash at each of its steps.

mod common;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use common::xapi::*;
use common::*;
use serde_json::{json, Value};

const SR_UUID: &str = "7d3e5a10-2b4c-4d6e-8f90-a1b2c3d4e5f6";
const MIB: u64 = 1 << 20;
/// A storage migration's receiving domain, as xapi_vm_migrate.ml names it.
const MIR: &str = "MIR3fa9c1";

/// What runs as the volume's NBD export now.
fn servers() -> Vec<String> {
    sh(&["ps", "-eo", "args"])
        .lines()
        .filter(|l| l.contains("__datapath-nbd"))
        .map(str::to_string)
        .collect()
}

/// An image of `mib` MiB: 1 MiB of noise every 4 MiB from `seed`, zeros between.
fn image(path: &str, mib: u64, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; (mib * MIB) as usize];
    for i in (0..mib).step_by(4) {
        let at = (i * MIB) as usize;
        data[at..at + MIB as usize].copy_from_slice(&noise(MIB as usize, seed + i));
    }
    std::fs::write(path, &data).unwrap();
    data
}

/// `qemu-img convert -n` of raw `image` into an NBD export, as a copy over xapi's proxy.
fn convert_into(image: &str, nbd: &str) -> String {
    sh(&[
        "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", image, nbd,
    ])
}

/// An NBD client speaking exactly what tapdisk's does (blktap drivers/block-nbd.c):
/// fixed newstyle with NO_ZEROES, NBD_OPT_EXPORT_NAME "tapdisk_client" with its NUL, then
/// simple requests.
struct Client(UnixStream);

impl Client {
    fn handshake(s: UnixStream) -> (Client, u64) {
        let (c, size, flags) = Client::negotiate(s);
        assert_eq!(flags & 2, 0, "the export is read-only");
        (c, size)
    }

    /// The handshake; returns the client, the export's size and its transmission flags.
    fn negotiate(mut s: UnixStream) -> (Client, u64, u16) {
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[..8], b"NBDMAGIC");
        assert_eq!(&hello[8..16], b"IHAVEOPT");
        s.write_all(&3u32.to_be_bytes()).unwrap();
        let name = b"tapdisk_client\0";
        let mut opt = b"IHAVEOPT".to_vec();
        opt.extend_from_slice(&1u32.to_be_bytes());
        opt.extend_from_slice(&(name.len() as u32).to_be_bytes());
        opt.extend_from_slice(name);
        s.write_all(&opt).unwrap();
        let mut info = [0u8; 10];
        s.read_exact(&mut info).unwrap();
        let size = u64::from_be_bytes(info[..8].try_into().unwrap());
        let flags = u16::from_be_bytes(info[8..].try_into().unwrap());
        (Client(s), size, flags)
    }

    fn request(&mut self, kind: u16, handle: u64, offset: u64, len: u32) {
        let mut b = 0x2560_9513u32.to_be_bytes().to_vec();
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&handle.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        self.0.write_all(&b).unwrap();
    }

    fn answer(&mut self, handle: u64) {
        let mut r = [0u8; 16];
        self.0.read_exact(&mut r).unwrap();
        assert_eq!(&r[..4], &0x6744_6698u32.to_be_bytes());
        assert_eq!(u32::from_be_bytes(r[4..8].try_into().unwrap()), 0, "error");
        assert_eq!(u64::from_be_bytes(r[8..].try_into().unwrap()), handle);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.request(1, offset, offset, data.len() as u32);
        self.0.write_all(data).unwrap();
        self.answer(offset);
    }

    fn flush_and_leave(mut self) {
        self.request(3, 1, 0, 0);
        self.answer(1);
        self.request(2, 2, 0, 0);
    }
}

/// Connects to an export's socket as xapi's proxy does.
fn connect(socket: &str) -> (Client, u64) {
    Client::handshake(UnixStream::connect(socket).unwrap())
}

/// Hands a connection to the socket `Datapath.import_activate` returned, as xapi's
/// nbd_handler does (the datapath's name as the message); returns our end.
fn pass(socket: &str, datapath: &str) -> (Client, u64) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let control = UnixStream::connect(socket).unwrap();
    thinsr::host::fdpass::send(&control, theirs.as_fd(), datapath.as_bytes()).unwrap();
    drop(theirs);
    drop(control);
    Client::handshake(ours)
}

/// Starts a WRITE of 1 MiB, sends a tenth of it and hangs up.
fn hang_up_mid_write(mut c: Client) {
    c.request(1, 9, 0, MIB as u32);
    c.0.write_all(&noise(100 << 10, 1)).unwrap();
    drop(c);
}

/// The destination of an SMAPIv3 source's migration: a blank leaf attached and activated
/// for the MIR domain, written through its Nbd entry by qemu's client (a new connection
/// per transfer, a second writer meanwhile, one that hangs up mid-write); the VM's domain
/// comes up on it before MIR lets go; each detach takes down only its own.
#[test]
fn a_migration_lands_through_the_nbd_entry_of_a_mir_attach() {
    vm();
    install();
    systemd_run_spy();
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "local");
    for dir in [VOLUME, DATAPATH] {
        let q = call(dir, "Plugin.Query", json!({}));
        let f = q["features"].to_string();
        assert!(f.contains("\"VDI_MIRROR_IN\""), "{dir}: {q}");
        assert!(f.contains("\"VDI_COMPOSE\""), "{dir}: {q}");
    }
    let leaf = create(&sr, "web", 256 * MIB);
    let uri = leaf["uri"][0].as_str().unwrap().to_string();
    let key = leaf["key"].as_str().unwrap().to_string();
    let (dev, socket, export) = attach_nbd(&uri, MIR);
    dp("Datapath.activate", &uri, MIR);
    assert_eq!(export, key);
    assert_eq!(sh(&["stat", "-c", "%a %U", &socket]).trim(), "600 root");
    let dir = Path::new(&socket)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(sh(&["stat", "-c", "%a %U", &dir]).trim(), "700 root");
    // xapi's get_nbd_server attaches again for each transfer: the same export.
    assert_eq!(attach_nbd(&uri, MIR).1, socket);
    assert_eq!(servers().len(), 1, "{:?}", servers());
    // Started in a scope of its own, outside the plugin call (a toolstack restart ends
    // xapi-storage-script's cgroup, not the export).
    let calls = std::fs::read_to_string("/tmp/spy/calls").unwrap();
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert!(calls.starts_with("--scope --unit thinsr-nbd-"), "{calls}");

    // The source: 256 MiB, 64 MiB of it data.
    let want = image("/tmp/src.raw", 256, 10);
    let nbd = format!("nbd+unix:///{export}?socket={socket}");
    // A client that hangs up in the middle of a write leaves the export serving.
    hang_up_mid_write(connect(&socket).0);
    // The bulk copy, and a second writer meanwhile writing what the source has there (a
    // mirror's writes arriving during the copy).
    let writer = {
        let socket = socket.clone();
        let block = want[(8 * MIB) as usize..(9 * MIB) as usize].to_vec();
        std::thread::spawn(move || {
            let (mut c, size) = connect(&socket);
            assert_eq!(size, 256 * MIB);
            for _ in 0..4 {
                c.write(8 * MIB, &block);
            }
            c.flush_and_leave();
        })
    };
    convert_into("/tmp/src.raw", &nbd);
    writer.join().unwrap();
    // A second transfer (xapi connects again for each): the copy again, as a retry would.
    convert_into("/tmp/src.raw", &nbd);
    assert_eq!(sha256(&dev), sha256("/tmp/src.raw"));
    let used = physical(&sr, &key);
    println!("256 MiB leaf, 64 MiB of data written over NBD: {used} bytes allocated");
    assert!(
        (64 * MIB..=64 * MIB * 11 / 10).contains(&used),
        "{used} bytes allocated for 64 MiB of data"
    );

    // The VM's domain on this host comes up on the volume before MIR lets go.
    let (vm_dev, vm_socket, _) = attach_nbd(&uri, "5");
    assert_eq!(
        (vm_dev.as_str(), vm_socket.as_str()),
        (dev.as_str(), socket.as_str())
    );
    dp("Datapath.activate", &uri, "5");
    // A second VM is still refused.
    attach_nbd(&uri, "6");
    error(
        DATAPATH,
        "Datapath.activate",
        json!({"uri": uri, "domain": "6"}),
        "VDI_ATTACHED",
    );
    dp("Datapath.detach", &uri, "6");
    // DP.destroy2 of the mirror: MIR goes, the VM's domain keeps the device and export.
    dp("Datapath.deactivate", &uri, MIR);
    dp("Datapath.detach", &uri, MIR);
    assert!(Path::new(&dev).exists());
    assert_eq!(servers().len(), 1, "{:?}", servers());
    assert_eq!(
        crc_at(&dev, 0, MIB as usize),
        crc32fast::hash(&want[..MIB as usize])
    );
    // The VM stops: nothing is left running, bound or attached.
    dp("Datapath.deactivate", &uri, "5");
    dp("Datapath.detach", &uri, "5");
    // A snapshot's export (a copy reads one) is read-only, whatever its device allows.
    let snap = call(VOLUME, "Volume.snapshot", json!({"sr": sr, "key": key}));
    let suri = snap["uri"][0].as_str().unwrap().to_string();
    let (_, ssock, _) = attach_nbd(&suri, "CP3fa9c1");
    let (_, size, flags) = Client::negotiate(UnixStream::connect(&ssock).unwrap());
    assert_eq!((size, flags & 2), (256 * MIB, 2), "flags {flags:#x}");
    dp("Datapath.detach", &suri, "CP3fa9c1");
    // An admin's `vdi detach` of a volume xapi attached ends its export too.
    attach_nbd(&uri, "9");
    assert_eq!(servers().len(), 1, "{:?}", servers());
    ok(&["vdi", "detach", &key]);
    assert!(servers().is_empty(), "{:?}", servers());
    dp("Datapath.detach", &uri, "9");
    // An export left running for a volume deactivated behind thinsr's back (a detach
    // interrupted between the two): sr check names it and --repair stops it.
    let (dev9, _, _) = attach_nbd(&uri, "9");
    let lv = format!(
        "local/{}",
        json(&["vdi", "show", &key])["lv"].as_str().unwrap()
    );
    let top = Path::new(&dev9).file_name().unwrap().to_str().unwrap();
    sh(&["dmsetup", "remove", top]);
    sh(&["lvm", "lvchange", "-an", &lv]);
    let found = thinsr(&["--json", "sr", "check", "local"]).json()["findings"].to_string();
    assert!(found.contains("stray_export"), "{found}");
    ok(&["sr", "check", "local", "--repair"]);
    assert!(servers().is_empty(), "{:?}", servers());
    dp("Datapath.detach", &uri, "9");
    assert!(servers().is_empty(), "{:?}", servers());
    assert!(!Path::new(&socket).exists(), "{socket} outlived the detach");
    assert!(!Path::new(&dev).exists(), "{dev} outlived the detach");
    assert!(our_dm_devices().is_empty(), "{:?}", our_dm_devices());
    assert!(json(&["sr", "check", "local"])["findings"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// What tapdisk's mirror writes into the leaf in the SMAPIv1 flow: unaligned and partial
/// blocks, so that only the exact ranges may cover the parent's data.
fn mirror_writes() -> Vec<(u64, Vec<u8>)> {
    vec![
        (100 << 10, noise(4096, 71)),
        (MIB + 512, noise(512, 72)),
        (5 * MIB, noise(MIB as usize, 73)),
        (15 * MIB + 1000, noise(3000, 74)),
    ]
}

/// receive_start_common's first steps: a leaf of 16 MiB and its dummy snapshot, the leaf
/// attached and activated for MIR, a blank parent. Returns the keys and uris
/// (leaf, leaf uri, dummy, parent, parent uri).
fn receive_start(sr: &str, name: &str) -> (String, String, String, String, String) {
    let leaf = create(sr, name, 16 * MIB);
    let key = leaf["key"].as_str().unwrap().to_string();
    let uri = leaf["uri"][0].as_str().unwrap().to_string();
    let dummy = call(VOLUME, "Volume.snapshot", json!({"sr": sr, "key": key}));
    attach_nbd(&uri, MIR);
    dp("Datapath.activate", &uri, MIR);
    let parent = create(sr, name, 16 * MIB);
    let pkey = parent["key"].as_str().unwrap().to_string();
    let puri = parent["uri"][0].as_str().unwrap().to_string();
    let dummy = dummy["key"].as_str().unwrap().to_string();
    (key, uri, dummy, pkey, puri)
}

/// The SMAPIv1 source's destination up to the compose (storage_smapiv1_migrate.ml
/// receive_start_common and receive_finalize): leaf + its dummy snapshot, the leaf
/// attached and activated for MIR, a blank parent, tapdisk's connection handed over to
/// import_activate writing the mirror's writes (after one that hangs up), the parent
/// filled through its own Nbd entry (sparse_dd's copy), then MIR's DP.destroy2. Returns
/// (leaf key, parent key, dummy key, the bytes the leaf must read after the compose).
fn up_to_compose(sr: &str, seed: u64) -> (String, String, String, Vec<u8>) {
    let (key, uri, dummy, pkey, puri) = receive_start(sr, "db");
    let import_activate = || {
        let path = call(
            DATAPATH,
            "Datapath.import_activate",
            json!({"uri": uri, "domain": MIR}),
        );
        path.as_str().unwrap().to_string()
    };
    let path = import_activate();
    assert_eq!(sh(&["stat", "-c", "%a %U", &path]).trim(), "600 root");
    hang_up_mid_write(pass(&path, "dp-leaf").0);
    // xapi calls import_activate again for each connection: the same socket.
    assert_eq!(import_activate(), path);
    let (mut tapdisk, size) = pass(&path, "dp-leaf");
    assert_eq!(size, 16 * MIB);
    // The copy of the source's snapshot into the parent, meanwhile.
    let base = image(&format!("/tmp/base{seed}.raw"), 16, seed);
    let copy = "CP3fa9c1";
    let (_, psock, pname) = attach_nbd(&puri, copy);
    dp("Datapath.activate", &puri, copy);
    let nbd = format!("nbd+unix:///{pname}?socket={psock}");
    let copier = std::thread::spawn({
        let image = format!("/tmp/base{seed}.raw");
        move || {
            sh(&[
                "qemu-img", "convert", "-n", "-f", "raw", "-O", "raw", &image, &nbd,
            ])
        }
    });
    let mut want = base;
    for (at, data) in mirror_writes() {
        tapdisk.write(at, &data);
        want[at as usize..at as usize + data.len()].copy_from_slice(&data);
    }
    tapdisk.flush_and_leave();
    copier.join().unwrap();
    dp("Datapath.deactivate", &puri, copy);
    dp("Datapath.detach", &puri, copy);
    // receive_finalize: DP.destroy2 of the leaf's datapath, then compose.
    dp("Datapath.deactivate", &uri, MIR);
    dp("Datapath.detach", &uri, MIR);
    assert!(servers().is_empty(), "{:?}", servers());
    (key, pkey, dummy, want)
}

fn compose_args(sr: &str, leaf: &str, parent: &str) -> Value {
    json!({"sr": sr, "key": leaf, "key2": parent})
}

/// After a compose: the leaf reads `want`, the parent is gone from SR.ls, the dummy
/// destroys (receive_finalize's next call), the SR is clean; then the leaf is destroyed.
fn composed(sr: &str, leaf: &str, parent: &str, dummy: &str, want: &[u8]) {
    let ls = call(VOLUME, "SR.ls", json!({"sr": sr})).to_string();
    assert!(!ls.contains(parent), "the parent is still listed: {ls}");
    call(VOLUME, "Volume.destroy", json!({"sr": sr, "key": dummy}));
    let uri = format!("thinsr://{SR_UUID}/{leaf}");
    let (dev, _, _) = attach_nbd(&uri, "0");
    let got = read_at(&dev, 0, want.len());
    for (at, data) in mirror_writes() {
        let at = at as usize;
        assert!(
            got[at..at + data.len()] == data[..],
            "the mirror's write at {at}"
        );
    }
    assert!(
        got == want,
        "the leaf does not read the parent under its writes"
    );
    dp("Datapath.detach", &uri, "0");
    let findings = json(&["sr", "check", "local"])["findings"].clone();
    assert_eq!(findings, json!([]), "{findings}");
    call(VOLUME, "Volume.destroy", json!({"sr": sr, "key": leaf}));
}

/// After a compose killed at `point`: `sr check` names it, and `--repair` finishes it.
fn repair_interrupted_compose(point: &str) {
    let findings = thinsr(&["--json", "sr", "check", "local"]).json()["findings"].to_string();
    assert!(
        findings.contains("compose_unfinished"),
        "{point}: {findings}"
    );
    let repaired = json(&["sr", "check", "local", "--repair"]);
    assert!(
        repaired["findings"].to_string().contains("finish it"),
        "{point}: {repaired}"
    );
}

/// Runs Volume.compose with a crash at `point`, as a killed plugin call would end.
fn compose_crashing(sr: &str, leaf: &str, parent: &str, point: &str) {
    let args = compose_args(sr, leaf, parent);
    let (_, stderr) = run_raw(
        VOLUME,
        "Volume.compose",
        args,
        &[("THINSR_CRASH_AT", point)],
    );
    assert!(
        stderr.contains(&format!("crash point {point}")),
        "{point} was not reached: {stderr}"
    );
}

/// The SMAPIv1 source's destination for a halted VM (nothing attached when compose
/// comes; a running VM's order is the test after it): tapdisk's connection passed by
/// SCM_RIGHTS, its unaligned writes logged, and Volume.compose giving the parent's data
/// under them, to the byte; then a crash at every step of the compose, each finished by `sr check --repair`
/// while the log lives; and undone, leaving both as they were, once it is gone.
#[test]
fn import_activate_takes_tapdisks_connection_and_compose_layers_its_writes() {
    vm();
    install();
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "local");
    let (leaf, parent, dummy, want) = up_to_compose(&sr, 20);
    let done = call(VOLUME, "Volume.compose", compose_args(&sr, &leaf, &parent));
    assert_eq!(done, Value::Null);
    composed(&sr, &leaf, &parent, &dummy, &want);

    for (i, point) in [
        "compose.recorded",
        "compose.created",
        "compose.copied",
        "compose.old-removed",
        "compose.retagged",
        "compose.parent-removed",
    ]
    .iter()
    .enumerate()
    {
        let (leaf, parent, dummy, want) = up_to_compose(&sr, 30 + i as u64);
        compose_crashing(&sr, &leaf, &parent, point);
        // Meanwhile the leaf is not attached, nor its parent destroyed.
        let uri = format!("thinsr://{SR_UUID}/{leaf}");
        let (code, e) = run(
            DATAPATH,
            "Datapath.attach",
            json!({"uri": uri, "domain": "0"}),
        );
        assert_ne!(code, 0, "{point}: attached mid-compose");
        assert_eq!(e["code"], "VDI_INCOMPLETE", "{point}: {e}");
        repair_interrupted_compose(point);
        composed(&sr, &leaf, &parent, &dummy, &want);
    }

    // A reboot before the copy was recorded loses the log: the compose is undone, the
    // leaf and the parent stay as they were, and compose again is refused.
    let (leaf, parent, dummy, _) = up_to_compose(&sr, 50);
    compose_crashing(&sr, &leaf, &parent, "compose.created");
    sh(&[
        "sh",
        "-c",
        &format!("rm /run/thinsr/nbd/{SR_UUID}/{leaf}.written"),
    ]);
    let repaired = json(&["sr", "check", "local", "--repair"]);
    assert!(
        repaired["findings"].to_string().contains("undo it"),
        "{repaired}"
    );
    // Compose again cannot tell the leaf's writes from its zeros: refused, not guessed.
    let (code, e) = run(VOLUME, "Volume.compose", compose_args(&sr, &leaf, &parent));
    assert_ne!(code, 0, "composed without its log: {e}");
    assert_eq!(e["code"], "VDI_INCOMPLETE", "{e}");
    assert!(e.to_string().contains("log"), "{e}");
    let ls = call(VOLUME, "SR.ls", json!({"sr": sr})).to_string();
    assert!(ls.contains(&parent) && ls.contains(&leaf), "{ls}");
    assert_eq!(json(&["sr", "check", "local"])["findings"], json!([]));
    let lvs = sh(&["lvs", "--noheadings", "-o", "lv_name"]);
    assert!(!lvs.contains("composed"), "{lvs}");
    for k in [&leaf, &parent, &dummy] {
        call(VOLUME, "Volume.destroy", json!({"sr": sr, "key": k}));
    }
}

// xenopsd's order (issue 42): the VM runs on the leaf before compose arrives.

/// What the source's tapdisk mirrors before the VM leaves it: 4 KiB pieces into 64 KiB
/// pool blocks it writes only in part, one across two blocks, one into the source's zeros.
fn mirror_pieces() -> Vec<(u64, Vec<u8>)> {
    vec![
        (100 << 10, noise(4096, 81)),
        (4 * MIB + (8 << 10), noise(4096, 82)),
        (6 * MIB + (4 << 10), noise(4096, 83)),
        (12 * MIB + (62 << 10), noise(4096, 84)),
    ]
}

/// Where the VM writes 4 KiB: in the block the mirror wrote in part (beside its write and
/// over it), into data only the parent holds, into zeros.
const VM_WRITES: [u64; 6] = [
    68 << 10,
    100 << 10,
    4 * MIB + (512 << 10),
    8 * MIB + (12 << 10),
    2 * MIB,
    14 * MIB,
];
/// What the VM reads first, none of it where it writes: parent and mirror in one block,
/// zeros and mirror, across a block edge, the parent alone; and the mirror's write alone,
/// the one read that needs no parent.
const FIRST_READS: [(u64, usize); 5] = [
    (4 * MIB, 64 << 10),
    (6 * MIB, 64 << 10),
    (12 * MIB, 128 << 10),
    (0, 64 << 10),
    (4 * MIB + (8 << 10), 4096),
];
const COVERED_READ: usize = 4;

/// A domain's disk I/O as blkback's: O_DIRECT, 4 KiB aligned.
fn direct(dev: &str) -> std::fs::File {
    open_direct(dev, true).unwrap()
}

fn direct_read(f: &std::fs::File, at: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut b = thinsr::aligned::AlignedBuf::zeroed(len);
    f.read_exact_at(b.as_mut_slice(), at)?;
    Ok(b.as_slice()[..len].to_vec())
}

fn direct_write(f: &std::fs::File, at: u64, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(thinsr::aligned::AlignedBuf::copy_of(data).as_slice(), at)
}

/// A read the VM made: where, what it got, and when.
type VmRead = (u64, std::io::Result<Vec<u8>>, std::time::Instant);

/// The destination VM, running: one thread reads FIRST_READS (each answered when it
/// can be), another writes VM_WRITES in turn and reads back what it wrote (and, once
/// `composed`, the 64 KiB block around it), keeping the model of the disk.
struct RunningVm {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    composed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Reads of FIRST_READS answered.
    answered: std::sync::Arc<std::sync::atomic::AtomicU64>,
    reader: std::thread::JoinHandle<Vec<VmRead>>,
    writer: std::thread::JoinHandle<(Vec<u8>, Vec<String>)>,
}

impl RunningVm {
    fn start(dev: &str, source: Vec<u8>, seed: u64) -> RunningVm {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
        use std::sync::Arc;
        let stop = Arc::new(AtomicBool::new(false));
        let composed = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicU64::new(0));
        let reader = {
            let f = direct(dev);
            let answered = answered.clone();
            std::thread::spawn(move || {
                let reads: Vec<_> = FIRST_READS.iter().map(|&(at, len)| (at, len)).collect();
                // The covered read first, so that a waiting one cannot hold it up.
                let order = [COVERED_READ, 0, 1, 2, 3];
                order
                    .iter()
                    .map(|&i| {
                        let (at, len) = reads[i];
                        let got = direct_read(&f, at, len);
                        answered.fetch_add(1, SeqCst);
                        (at, got, std::time::Instant::now())
                    })
                    .collect()
            })
        };
        let writer = {
            let f = direct(dev);
            let (stop, composed, writes) = (stop.clone(), composed.clone(), writes.clone());
            std::thread::spawn(move || {
                let mut model = source;
                let mut errors = Vec::new();
                for k in 0u64.. {
                    let at = VM_WRITES[k as usize % VM_WRITES.len()];
                    let data = noise(4096, seed * 1000 + k);
                    match direct_write(&f, at, &data) {
                        Ok(()) => model[at as usize..at as usize + 4096].copy_from_slice(&data),
                        Err(e) => errors.push(format!("write {k} at {at}: {e}")),
                    }
                    writes.fetch_add(1, SeqCst);
                    let (rat, rlen) = match composed.load(SeqCst) {
                        true => (at / (64 << 10) * (64 << 10), 64 << 10),
                        false => (at, 4096),
                    };
                    match direct_read(&f, rat, rlen) {
                        Ok(got) if got[..] == model[rat as usize..rat as usize + rlen] => {}
                        Ok(_) => {
                            errors.push(format!("read at {rat} after write {k}: not the model"))
                        }
                        Err(e) => errors.push(format!("read at {rat} after write {k}: {e}")),
                    }
                    if stop.load(SeqCst) && k >= 2 * VM_WRITES.len() as u64 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                (model, errors)
            })
        };
        RunningVm {
            stop,
            composed,
            writes,
            answered,
            reader,
            writer,
        }
    }

    fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits (at most 60 s) until the VM made `n` more writes than now.
    fn wait_writes(&self, n: u64) {
        let until = self.writes() + n;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.writes() < until {
            assert!(
                std::time::Instant::now() < deadline,
                "the VM's writes stalled at {}",
                self.writes()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The destination side of an SMAPIv1 source's migration in xenopsd's order, up to the
/// compose: the leaf and its dummy, MIR's attach and activate, the parent, tapdisk's
/// 4 KiB pieces through import_activate while the parent is copied through its Nbd entry,
/// the VM's domain attached early, the source paused (tapdisk flushes), the VM's domain
/// activated and unpaused (reading and writing), the source torn down (tapdisk leaves),
/// MIR's DP.destroy2. Returns (leaf, parent, dummy, the VM's device, the source's bytes,
/// the running VM).
fn up_to_live_compose(
    sr: &str,
    seed: u64,
    crash_activate: bool,
) -> (String, String, String, String, Vec<u8>, RunningVm) {
    let (key, uri, dummy, pkey, puri) = receive_start(sr, "app");
    let path = call(
        DATAPATH,
        "Datapath.import_activate",
        json!({"uri": uri, "domain": MIR}),
    );
    let (mut tapdisk, _) = pass(path.as_str().unwrap(), "dp-leaf");
    let image_path = format!("/tmp/live{seed}.raw");
    let mut source = image(&image_path, 16, seed);
    let copy = "CP3fa9c1";
    let (_, psock, pname) = attach_nbd(&puri, copy);
    dp("Datapath.activate", &puri, copy);
    let nbd = format!("nbd+unix:///{pname}?socket={psock}");
    let copier = std::thread::spawn(move || convert_into(&image_path, &nbd));
    let mut mirrored = |tapdisk: &mut Client, pieces: &[(u64, Vec<u8>)]| {
        for (at, data) in pieces {
            tapdisk.write(*at, data);
            source[*at as usize..*at as usize + data.len()].copy_from_slice(data);
        }
    };
    let pieces = mirror_pieces();
    mirrored(&mut tapdisk, &pieces[..2]);
    copier.join().unwrap();
    dp("Datapath.deactivate", &puri, copy);
    dp("Datapath.detach", &puri, copy);
    // VM_receive_memory: the VM's disks attached early while the source runs and its
    // tapdisk goes on mirroring; the source paused (every write it acknowledged is on the
    // leaf); at sync point 3 activated for the VM's domain, which is unpaused.
    let (dev, _, _) = attach_nbd(&uri, "7");
    mirrored(&mut tapdisk, &pieces[2..]);
    if crash_activate {
        // Killed with the view connected, before the VM's device reads it: the activate
        // xenopsd retries (or the next one) finishes it.
        let point = "compose.landing-connected";
        let args = json!({"uri": uri, "domain": "7"});
        let (_, e) = run_raw(
            DATAPATH,
            "Datapath.activate",
            args,
            &[("THINSR_CRASH_AT", point)],
        );
        assert!(e.contains(&format!("crash point {point}")), "{e}");
    }
    dp("Datapath.activate", &uri, "7");
    let vm = RunningVm::start(&dev, source.clone(), seed);
    vm.wait_writes(3);
    // The read of the mirror's write alone is answered at once; the others wait.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while vm.answered.load(std::sync::atomic::Ordering::SeqCst) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the read of the mirror's write waits"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        vm.answered.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a read of the parent's data was answered before compose named it"
    );
    // The source's teardown: its tapdisk closes the mirror, then its VBD's deactivate
    // runs receive_finalize3 here.
    tapdisk.flush_and_leave();
    dp("Datapath.deactivate", &uri, MIR);
    dp("Datapath.detach", &uri, MIR);
    (key, pkey, dummy, dev, source, vm)
}

/// After a live compose: the VM's reads were the source's bytes (the covered one at
/// once, the others only once compose named the parent, after `compose_began`), every
/// write and read-back succeeded, the device equals the model, the VM's I/O is in the
/// kernel (no NBD device under it), the SR is clean; detached and attached again, the
/// same; then the dummy and the leaf are destroyed.
fn live_composed(
    sr: &str,
    (leaf, parent, dummy, dev): (&str, &str, &str, &str),
    source: &[u8],
    vm: RunningVm,
    compose_began: std::time::Instant,
) {
    use std::sync::atomic::Ordering::SeqCst;
    vm.composed.store(true, SeqCst);
    vm.wait_writes(VM_WRITES.len() as u64);
    vm.stop.store(true, SeqCst);
    let first = vm.reader.join().unwrap();
    let (model, errors) = vm.writer.join().unwrap();
    assert!(errors.is_empty(), "the VM saw: {errors:?}");
    for (i, (at, got, when)) in first.iter().enumerate() {
        let got = got
            .as_ref()
            .unwrap_or_else(|e| panic!("the VM's read at {at}: {e}"));
        let want = &source[*at as usize..*at as usize + got.len()];
        assert!(
            got[..] == want[..],
            "the VM's first read at {at} is not the source's"
        );
        match i {
            0 => assert!(*when < compose_began, "a read of the mirror's write waited"),
            _ => assert!(
                *when > compose_began,
                "a read at {at} answered before compose"
            ),
        }
    }
    let all = direct_read(&direct(dev), 0, model.len()).unwrap();
    assert!(
        all == model,
        "the device is not parent + mirror + the VM's writes"
    );
    // In the kernel again: the VM's device maps a dm device, no NBD device is connected.
    let top = Path::new(dev).file_name().unwrap().to_str().unwrap();
    let table = sh(&["dmsetup", "table", top]);
    assert!(
        table.contains(" linear ") && !table.contains(" 43:"),
        "{table}"
    );
    let nbds = sh(&["sh", "-c", "cat /sys/block/nbd*/size | sort -u"]);
    assert_eq!(nbds.trim(), "0", "an NBD device is still connected");
    let ls = call(VOLUME, "SR.ls", json!({"sr": sr})).to_string();
    assert!(!ls.contains(parent), "the parent is still listed: {ls}");
    call(VOLUME, "Volume.destroy", json!({"sr": sr, "key": dummy}));
    let findings = json(&["sr", "check", "local"])["findings"].clone();
    assert_eq!(findings, json!([]), "{findings}");
    let uri = format!("thinsr://{SR_UUID}/{leaf}");
    dp("Datapath.deactivate", &uri, "7");
    dp("Datapath.detach", &uri, "7");
    let (again, _, _) = attach_nbd(&uri, "0");
    assert!(
        read_at(&again, 0, model.len()) == model,
        "not the same once attached again"
    );
    dp("Datapath.detach", &uri, "0");
    call(VOLUME, "Volume.destroy", json!({"sr": sr, "key": leaf}));
}

/// The destination of a running VM's move from an SMAPIv1 SR, in xenopsd's order: the
/// VM reads and writes the leaf before compose arrives, and compose runs while it goes
/// on writing; then a crash at every step of that compose, each finished by `sr check
/// --repair` with the VM still writing.
#[test]
fn a_vm_running_on_the_leaf_before_compose_reads_its_disk_exactly_throughout() {
    vm();
    install();
    systemd_run_spy();
    let (sr, _) = sr_create(DISKS[0], SR_UUID, "local");
    let (leaf, parent, dummy, dev, source, vm) = up_to_live_compose(&sr, 60, true);
    let began = std::time::Instant::now();
    let done = call(VOLUME, "Volume.compose", compose_args(&sr, &leaf, &parent));
    println!("live compose: {:.2} s", began.elapsed().as_secs_f64());
    assert_eq!(done, Value::Null);
    live_composed(&sr, (&leaf, &parent, &dummy, &dev), &source, vm, began);

    for (i, point) in [
        "compose.recorded",
        "compose.created",
        "compose.switched",
        "compose.copied",
        "compose.kernel",
        "compose.old-removed",
        "compose.retagged",
        "compose.parent-removed",
    ]
    .iter()
    .enumerate()
    {
        let (leaf, parent, dummy, dev, source, vm) = up_to_live_compose(&sr, 70 + i as u64, false);
        let began = std::time::Instant::now();
        compose_crashing(&sr, &leaf, &parent, point);
        vm.wait_writes(2);
        repair_interrupted_compose(point);
        live_composed(&sr, (&leaf, &parent, &dummy, &dev), &source, vm, began);
    }
}
