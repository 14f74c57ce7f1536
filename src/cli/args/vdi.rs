//! The clap definitions of `thinsr vdi`: the largest group, kept apart.

use clap::Subcommand;

use super::{SrOpt, VdiArg};

#[derive(Debug, Subcommand)]
pub enum VdiCmd {
    /// Create a VDI: a thin LV in the pool, or a fully zeroed LV with --preallocate.
    #[command(after_long_help = "\
Examples:
  thinsr vdi create \"Windows 10 (64-bit)\" --size 40G
  thinsr vdi create db-data --size 200G --preallocate --sr \"Fast local\"

The LV is named after the label (Windows_10_64-bit, then Windows_10_64-bit+1, ...); the
label itself is kept exactly. A preallocated VDI takes its space from the volume group and
is zeroed completely before first use, with progress; Ctrl-C removes it again.")]
    Create {
        /// The VDI's name (label); any text, the LV name is derived from it.
        #[arg(value_name = "NAME")]
        name: String,
        /// Virtual size (512M, 40G, 1.5T).
        #[arg(long, value_name = "SIZE")]
        size: String,
        #[command(flatten)]
        sr: SrOpt,
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
        /// Allocate and zero all of it now, from the volume group's free space.
        #[arg(long)]
        preallocate: bool,
    },
    /// List VDIs: kind, size, space used, parent, attached or not.
    List {
        #[command(flatten)]
        sr: SrOpt,
    },
    /// Show everything known about a VDI: LV, device, parent, keys.
    Show(VdiArg),
    /// Destroy a VDI; refused while attached.
    #[command(after_long_help = "\
On a terminal thinsr asks before destroying; elsewhere --yes is required. Snapshots and
clones of the VDI stay usable: thin snapshots do not depend on their origin.")]
    Destroy(VdiArg),
    /// Take an instant read-only snapshot of a VDI.
    #[command(after_long_help = "\
Examples:
  thinsr vdi snapshot web01 --name \"web01 before upgrade\"

Snapshots and clones of a template, or of a template's clone, read the same template.")]
    Snapshot {
        #[command(flatten)]
        vdi: VdiArg,
        /// Name of the snapshot (default: the VDI's own, as xe does).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Make an instant writable copy of a VDI or template (a thin snapshot).
    Clone {
        #[command(flatten)]
        vdi: VdiArg,
        /// Name of the clone (default: the VDI's own, as xe does).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Grow a VDI to SIZE, or by +SIZE; shrinking needs --allow-shrink.
    #[command(after_long_help = "\
Examples:
  thinsr vdi resize web01 60G
  thinsr vdi resize web01 +10G

The new part of a preallocated VDI is zeroed before the VDI can be attached again.
Shrinking cuts off the end of the disk and its data: shrink the filesystem inside first.")]
    Resize {
        #[command(flatten)]
        vdi: VdiArg,
        /// The new size, or +SIZE to grow by that much.
        #[arg(value_name = "SIZE", allow_hyphen_values = true)]
        size: String,
        /// Allow a smaller size (data beyond it is lost).
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Give a VDI a new name; its LV is renamed to match, the uuid stays.
    Rename {
        #[command(flatten)]
        vdi: VdiArg,
        #[arg(value_name = "NEW_NAME")]
        name: String,
    },
    /// Set a VDI's description.
    SetDescription {
        #[command(flatten)]
        vdi: VdiArg,
        #[arg(value_name = "TEXT")]
        text: String,
    },
    /// Set a key on a VDI (kept in the SR's metadata, shown under keys).
    Set {
        #[command(flatten)]
        vdi: VdiArg,
        #[arg(value_name = "KEY")]
        key: String,
        #[arg(value_name = "VALUE")]
        value: String,
    },
    /// Remove a key from a VDI.
    Unset {
        #[command(flatten)]
        vdi: VdiArg,
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Attach a VDI and print the block device to give the VM.
    #[command(after_long_help = "\
A VDI cloned from a template gets a device of thinsr's own (/dev/mapper/thinsr-VG-LV) that
reads the template where the VDI has no data of its own; the template is served read-only
(qemu-nbd, or its scheme's script) once for all its attached clones. Other VDIs are their
LV, activated by LVM. Attaching an attached VDI prints the same device.")]
    Attach {
        #[command(flatten)]
        vdi: VdiArg,
        /// Attach it read-only (the only way to attach a template).
        #[arg(long)]
        read_only: bool,
    },
    /// Detach a VDI; refused while something holds it open, done when already detached.
    Detach(VdiArg),
    /// Make a new thin VDI from a disk image (a file, an NBD export, or - for stdin).
    #[command(after_long_help = "\
Examples:
  thinsr vdi import debian.qcow2 --name \"Debian 12\"
  ssh backup 'cat web01.vhd' | thinsr vdi import - --name web01
  thinsr vdi import - --name scratch --format raw --size 20G < disk.raw
  thinsr vdi import 'nbd+unix:///web01?socket=/run/thinsr/serve/UUID.sock' --name copy
  thinsr vdi import nbd://backup-host:10809/web01 --name web01

The VDI gets the image's virtual size, and only data that is not zero is written, so it
stays thin. Files are read by qemu-img (raw, qcow2, vhd, vhdx, vmdk); a stream on stdin is
decoded by thinsr (raw with --size, dynamic VHD, qcow2 whose tables precede their data, as
qemu and thinsr write them). Until the import finishes the VDI is marked incomplete and
cannot be attached; a failed or cancelled import removes it, and 'sr check' finds one a
crash left.")]
    Import {
        /// The image file, an NBD URI (nbd://HOST[:PORT]/EXPORT,
        /// nbd+unix:///EXPORT?socket=PATH), or - for stdin.
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
        /// The new VDI's name (label).
        #[arg(long, value_name = "NAME")]
        name: String,
        #[command(flatten)]
        sr: SrOpt,
        /// The image's format (auto: detected).
        #[arg(long, value_name = "FORMAT", default_value = "auto",
              value_parser = ["auto", "raw", "vhd", "qcow2", "vmdk", "vhdx"])]
        format: String,
        /// The virtual size of a raw stream on stdin (its exact length).
        #[arg(long, value_name = "SIZE")]
        size: Option<String>,
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// Write a snapshot (or what changed since an older one) as a replication stream.
    #[command(after_long_help = "\
Examples:
  thinsr vdi send \"web01 monday\" -o web01-monday.thinsr
  thinsr vdi send \"web01 tuesday\" --base \"web01 monday\" | ssh dr thinsr vdi receive --sr local
  thinsr vdi send \"web01 tuesday\" --resume TOKEN | ssh dr thinsr vdi receive --sr local

Only the blocks that hold data (with --base: that differ from the base, found in the pool's
metadata at a cost that follows the change) are read. The stream names the SR, the VDI and
the snapshots by uuid, carries a SHA-256 per record chained over the whole, and is described
in docs/send-stream.md. A file is written beside its name and renamed into place when
complete. TOKEN is what a receive that stopped printed: only what it lacks is sent again.")]
    Send {
        /// The snapshot to send.
        #[command(flatten)]
        vdi: VdiArg,
        /// Send only what differs from this older snapshot of the same VDI, which the
        /// receiving SR holds a replica of.
        #[arg(long, value_name = "SNAPSHOT")]
        base: Option<String>,
        /// Continue a stream a receive stopped, from the token it printed.
        #[arg(long, value_name = "TOKEN", conflicts_with = "base")]
        resume: Option<String>,
        /// Where the stream goes (- or none: stdout, never a terminal).
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Apply a replication stream: a replica VDI's newest snapshot, or a new replica.
    #[command(after_long_help = "\
Examples:
  thinsr vdi receive -i web01-monday.thinsr --sr local
  ssh prod thinsr vdi send \"web01 tuesday\" --base \"web01 monday\" | thinsr vdi receive --sr local

A full stream makes a replica VDI (named after the source, recording its identity) and its
first snapshot; an incremental one is written onto a thin snapshot of the replica's copy of
its base, found by the source's identities, and becomes the replica's newest snapshot (and
its contents) only once the whole stream verified. A cut, corrupt or reordered stream
leaves the replica as it was; with --resumable what verified is kept and the error prints
the token 'vdi send --resume' continues from. A stream whose base this SR lacks is refused
with REPLICA_BASE_MISSING, naming it. Failing over: 'thinsr vdi clone' the replica's newest
snapshot, or use the replica VDI itself.")]
    Receive {
        /// The stream (- or none: stdin).
        #[arg(short = 'i', long, value_name = "FILE")]
        input: Option<std::path::PathBuf>,
        #[command(flatten)]
        sr: SrOpt,
        /// Keep what verified when the stream stops early, to resume it.
        #[arg(long)]
        resumable: bool,
        /// Destroy the replica's older snapshots beyond the newest N (at least 1).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
    },
    /// Bring a replica of a VDI up to date: snapshot, send what changed, prune (for cron).
    #[command(after_long_help = "\
Examples:
  thinsr vdi replicate web01 --to ssh://root@dr-host/local
  thinsr vdi replicate web01 --to ssh://dr-host --keep 7 --json
  thinsr vdi replicate web01 --to backup

Each run takes a snapshot of the VDI (named after it and the time, marked with the key
thinsr.replication), finds the newest snapshot of it the other side holds a replica of (by
identity, not by name), and pipes the stream of what changed since then into 'thinsr vdi
receive' there: through the system's ssh (your keys and ~/.ssh/config; no password prompt,
a 15 s connect bound, a dead connection noticed within a minute), or into an SR of this
host. The first run sends the whole VDI. A stream a cut left half-received is finished
first, from where it stopped. Then only the newest --keep replication snapshots stay, here
and there; snapshots you took yourself are never pruned. One run per VDI at a time: a
second exits with SR_BUSY and does nothing. Failing over: 'thinsr vdi clone' the replica's
newest snapshot on the other host.")]
    Replicate {
        #[command(flatten)]
        vdi: VdiArg,
        /// ssh://[USER@]HOST[:PORT][/SR], or an SR of this host.
        #[arg(long, value_name = "DEST")]
        to: String,
        /// Replication snapshots kept on each side.
        #[arg(long, value_name = "N", default_value_t = 3)]
        keep: usize,
        /// thinsr's path on the other host.
        #[arg(long, value_name = "PATH", default_value = "thinsr")]
        remote_thinsr: String,
    },
    /// Turn changed block tracking on or off (xapi's cbt_enabled; snapshots inherit it).
    #[command(after_long_help = "\
dm-thin's own maps already know which blocks differ between a VDI and its snapshots, so
tracking costs nothing while VMs write; this records the wish, as xapi's VDI.enable_cbt.")]
    Cbt {
        #[command(flatten)]
        vdi: VdiArg,
        #[arg(value_name = "STATE", value_parser = ["on", "off"])]
        state: String,
    },
    /// List the 64 KiB blocks that differ between two snapshots of one VDI.
    #[command(after_long_help = "\
Examples:
  thinsr vdi changed-blocks web01-monday web01-tuesday
  thinsr vdi changed-blocks web01-monday web01-tuesday --json

The answer comes from the pool's metadata (or the map 'vdi data-destroy' kept), not from
reading the disks; a pool whose unit is larger than 64 KiB has its changed units read on
both sides to find the 64 KiB blocks that really differ. --json gives xapi's bitmap:
base64, one bit a 64 KiB block, most significant bit first.")]
    ChangedBlocks {
        /// The older snapshot (a data-destroyed one too).
        #[arg(value_name = "BASE")]
        base: String,
        /// The newer snapshot, or the VDI itself.
        #[arg(value_name = "NEW")]
        new: String,
        #[command(flatten)]
        sr: SrOpt,
        /// Start of the part of the disk to look at (widened to 64 KiB blocks).
        #[arg(long, value_name = "SIZE", default_value = "0")]
        offset: String,
        /// Length of the part to look at (default: to the end of the disk).
        #[arg(long, value_name = "SIZE")]
        length: Option<String>,
    },
    /// Serve a VDI over NBD on a unix socket until interrupted (read-only unless --writable).
    #[command(after_long_help = "\
Examples:
  thinsr vdi serve web01-monday
  qemu-img convert -O qcow2 'nbd+unix:///web01-monday?socket=/run/thinsr/serve/UUID.sock' web01.qcow2

What a backup tool or qemu-img reads from: the VDI as 'thinsr export' would read it (a VDI
attached read-write is served from a temporary snapshot, removed afterwards). The socket
is /run/thinsr/serve/VDI-UUID.sock, root's alone, unless --socket names a path where
nothing is. Any number of clients, one after another or together. Ctrl-C or SIGTERM
stops it, ends the sessions and detaches what it attached. With --json, one JSON line
when the socket accepts (its nbd+unix URI) and one when it stops.")]
    Serve {
        #[command(flatten)]
        vdi: VdiArg,
        /// Where to put the socket (a path where nothing is yet).
        #[arg(long, value_name = "PATH")]
        socket: Option<std::path::PathBuf>,
        /// Serve it read-write (a detached VDI, attached for the while): what a client
        /// writes lands in the VDI, and zeros it writes unmap blocks, keeping it thin.
        #[arg(long)]
        writable: bool,
    },
    /// Copy a VDI to an NBD export while it stays in use: the kernel mirrors its writes.
    #[command(after_long_help = "\
Examples:
  thinsr vdi mirror web01 nbd://10.0.0.2:10809/web01
  thinsr vdi mirror web01 'nbd+unix:///web01?socket=/run/migrate/web01.sock'

While a VM keeps running on the VDI, device-mapper mirrors its writes to both the VDI and
the export and copies what the VDI holds (only allocated blocks travel; the export must be
blank or read as zeros elsewhere). Once the copy is in sync the mirror ends: the export
then holds the VDI as it was at that instant, and the VM goes on writing to the VDI alone.
A detached VDI is attached for the while. The export must be writable and at least as
large as the VDI; a destination that fails ends the mirror without the VM noticing.
Ctrl-C ends it at once, the VDI untouched. xapi's storage migration uses the same path
(Data.mirror).")]
    Mirror {
        #[command(flatten)]
        vdi: VdiArg,
        /// The destination: nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH.
        #[arg(value_name = "URI")]
        remote: String,
    },
    /// Copy a VDI into another SR of this host, thin, while it stays in use.
    #[command(after_long_help = "\
Examples:
  thinsr vdi copy web01 --to fast
  thinsr vdi copy web01 --to fast --name \"web01 copy\"

A new thin VDI in SR --to (same size, the same label unless --name) receives what the VDI
holds through the same kernel mirror as 'thinsr vdi mirror': only data travels, and the
copy holds the VDI as it was when the copy came in sync. On failure or Ctrl-C the new VDI
is destroyed. A read-only VDI (a snapshot) is copied with 'thinsr export' and 'thinsr vdi
import' instead.")]
    Copy {
        #[command(flatten)]
        vdi: VdiArg,
        /// The SR to copy into.
        #[arg(long, value_name = "SR")]
        to: String,
        /// The new VDI's label (the source's by default).
        #[arg(long, value_name = "LABEL")]
        name: Option<String>,
    },
    /// Free a snapshot's data, keeping its block map for changed-blocks and export --base.
    #[command(after_long_help = "\
What Xen Orchestra does after a backup (xapi's VDI.data_destroy): the snapshot stays listed,
marked data-destroyed, and is still a base for 'vdi changed-blocks' and 'export --base';
it can no longer be attached, cloned or exported. On a terminal thinsr asks first;
elsewhere --yes is required.")]
    DataDestroy(VdiArg),
    /// Make a VDI's contents its snapshot's again; its uuid, name, keys and CBT stay.
    #[command(after_long_help = "\
Examples:
  thinsr vdi revert web01 \"web01 before upgrade\"

Refused while the VDI is attached. What the VDI holds now is lost (take a snapshot first
to keep it). On a terminal thinsr asks first; elsewhere --yes is required.")]
    Revert {
        #[command(flatten)]
        vdi: VdiArg,
        /// The snapshot of this VDI to go back to.
        #[arg(value_name = "SNAPSHOT")]
        snapshot: String,
    },
}
