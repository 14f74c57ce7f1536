//! The clap definitions, and only them: man/ and completions/ are rendered from here.
//! Sizes are taken as text and parsed by thinsr, so a bad one gets a coded error in --json.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

mod vdi;

pub use vdi::VdiCmd;

pub const EXIT_STATUS: &str = "\
Exit status:
  0  done
  1  failed; nothing was changed unless the message says otherwise
  2  usage error (unknown option, bad size or name)
  130  cancelled (Ctrl-C, SIGTERM or a declined confirmation); what was half-made is undone";

/// Shown by `thinsr pool` and `thinsr pool maintain`, and in their man pages.
pub const MAINTAIN_HELP: &str = "\
A full thin pool freezes every VM on it, so run maintenance from cron every minute:

  * * * * *  root  /usr/sbin/thinsr pool maintain

'pool maintain' grows each pool whose data or metadata use passed the threshold (80% by
default) by 20%, within the pool's maximum ('pool set'). It prints one line per action and
nothing when there is nothing to do, so cron mails only news. A busy SR is skipped, never
waited on.

Exit status of 'pool maintain' (usable as a monitoring check):
  0  fine (including pools it grew)
  1  warning: a pool is over its threshold and cannot grow
  2  critical: a pool is full, read-only or needs_check";

#[derive(Debug, Parser)]
#[command(
    name = "thinsr",
    version,
    about = "Thin-provisioned local VM-disk storage on LVM and dm-thin",
    long_about = "thinsr manages storage repositories (SRs) for Xen hosts: an LVM volume group \
with a dm-thin pool, either owned by thinsr (made on raw disks) or shared with the admin's \
own LVs, which it never touches.",
    after_long_help = EXIT_STATUS,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Group,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Print the result as one JSON document (errors in the xapi shape).
    #[arg(long, global = true)]
    pub json: bool,
    /// Answer yes to confirmations (needed for destructive commands off a terminal).
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Show each lvm command run and its duration on stderr.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Directory holding thinsr's host configuration (the list of known SRs).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "THINSR_CONFIG",
        default_value = "/etc/thinsr"
    )]
    pub config: PathBuf,
    /// Directory of the scripts handling template URI schemes (`<DIR>/<scheme> attach|detach
    /// URI`); a script named nfs, smb, http or https replaces thinsr's own handler.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "THINSR_SCHEME_DIR",
        default_value = crate::engine::template::DEFAULT_SCHEME_DIR
    )]
    pub scheme_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Group {
    /// Storage repositories: create, introduce, attach, inspect, destroy.
    #[command(subcommand)]
    Sr(SrCmd),
    /// Virtual disks: thin or preallocated, snapshots, clones, resize, names and keys.
    #[command(subcommand)]
    Vdi(VdiCmd),
    /// Templates: read-only images cloned without copying, from file://, nbd://, nfs://,
    /// smb://, http:// or https:// and s3:// (read lazily), or any scheme a script of
    /// yours handles.
    #[command(subcommand)]
    Template(TemplateCmd),
    /// The xapi storage plugin: install thinsr as an SMAPIv3 volume and datapath plugin.
    #[command(subcommand)]
    Xapi(XapiCmd),
    /// The thin pool: use, growth policy, cron maintenance, checks.
    #[command(subcommand, after_long_help = MAINTAIN_HELP)]
    Pool(PoolCmd),
    /// Write a VDI as a raw, VHD or qcow2 image, reading only the blocks that hold data.
    #[command(after_long_help = "\
Examples:
  thinsr export web01 -o web01.qcow2
  thinsr export web01 --format vhd | ssh backup 'cat > web01.vhd'
  thinsr export web01 --base \"web01 monday\" -o web01-tuesday.qcow2 --backing-name web01-monday.qcow2

Which blocks to read comes from the pool's metadata (and, for a template's clone, from the
template's map): a mostly empty disk exports in the time its data takes to read. A VDI
attached read-write is exported from a temporary snapshot, removed afterwards, so the image
is one point in time. The format is --format, else the output file's extension (.raw, .img,
.vhd, .qcow2), else raw.

--base SNAPSHOT writes only what changed since that older snapshot of the same VDI, as a
qcow2 image whose unwritten clusters fall through to its backing file (the base's export,
named by --backing-name, by default '<base LV>.qcow2') and whose discarded ranges read as
zeros. The image is written beside the output file under a hidden name and renamed into
place once complete: a failed or cancelled export leaves no partial image, and an existing
file is replaced (only with --force) only by a complete one. With --json the report goes to stdout, or to stderr when the image
does.")]
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub vdi: VdiArg,
    /// Image format.
    #[arg(long, value_name = "FORMAT", value_parser = ["raw", "vhd", "qcow2"])]
    pub format: Option<String>,
    /// Where to write: a file, or - for stdout (the default when stdout is not a terminal).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Only what changed since this older snapshot of the VDI (a qcow2 over its export).
    #[arg(long, value_name = "SNAPSHOT")]
    pub base: Option<String>,
    /// The backing file name written into a --base export.
    #[arg(long, value_name = "NAME", requires = "base")]
    pub backing_name: Option<String>,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum SrCmd {
    /// Create an owned SR on raw disks (or on a sparse file with --file).
    #[command(after_long_help = "\
Examples:
  thinsr sr create /dev/sdb /dev/sdc --name \"Fast local\"
  thinsr sr create --file /var/lib/thinsr/try.img --size 20G

thinsr refuses a disk holding a filesystem, partition table, PV or RAID signature unless
--force. The thin pool starts at a quarter of the VG and grows as it fills: pools cannot
shrink, so the rest of the VG stays free for growth and preallocated disks.")]
    Create {
        /// Disks to turn into the SR's volume group.
        #[arg(
            value_name = "DEVICE",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        devices: Vec<String>,
        /// Back the SR with a new sparse file attached as a loop device.
        #[arg(long, value_name = "PATH", requires = "size")]
        file: Option<PathBuf>,
        /// Size of the file for --file (512M, 20G, 1.5T).
        #[arg(long, value_name = "SIZE", requires = "file")]
        size: Option<String>,
        /// The SR's name; the volume group is named after it.
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Wipe signatures found on the disks.
        #[arg(long)]
        force: bool,
    },
    /// Share an existing volume group: make (or adopt) a thin pool beside the admin's LVs,
    /// or register an SR already in it.
    #[command(after_long_help = "\
Examples:
  thinsr sr introduce vg0 --pool-size 200G
  thinsr sr introduce vg0 --pool-size 50%    # half of the VG's free space
  thinsr sr introduce vg0 --pool vms         # adopt the thin pool vg0/vms
  thinsr sr introduce vg0                    # re-register after 'forget' or a reinstall")]
    Introduce {
        /// The volume group.
        #[arg(value_name = "VG")]
        vg: String,
        /// The SR's name (default: the VG's).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Size of a new thin pool: SIZE, or N% of the VG's free space.
        #[arg(long, value_name = "SIZE|N%", conflicts_with = "pool")]
        pool_size: Option<String>,
        /// Adopt this existing thin pool LV instead of making one. A pool that does not
        /// zero new blocks (made with -Zn) is refused: its new VDIs would show old data;
        /// on a terminal thinsr offers to turn zeroing on, elsewhere --yes does.
        #[arg(long, value_name = "LV")]
        pool: Option<String>,
    },
    /// Activate the SR's pool and metadata (re-attaching a file SR's loop device).
    Attach(SrArg),
    /// Deactivate the SR; refused while a disk is attached.
    Detach(SrArg),
    /// Unregister the SR from this host; nothing on disk changes.
    Forget(SrArg),
    /// Destroy the SR and everything thinsr made in it.
    #[command(after_long_help = "\
Owned SRs lose their volume group and PV labels. Shared SRs lose only the LVs thinsr
created; every other LV in the volume group stays exactly as it was. On a terminal thinsr
asks for the SR's name; elsewhere --yes is required.")]
    Destroy(SrArg),
    /// Show an SR's layout: disks, pool use, thinsr's LVs and the admin's.
    Show(SrArg),
    /// Compare the SR's metadata with LVM and the kernel; --repair fixes what an
    /// interrupted command left.
    #[command(after_long_help = "\
What --repair does, by rules that never lose data:
  - an entry whose LV is gone (an interrupted destroy) is forgotten;
  - an entry whose LV was renamed records the new name;
  - a preallocated VDI whose zeroing did not finish is zeroed now;
  - a tagged thin LV missing from the metadata (an interrupted create) is adopted as a
    VDI named after the LV;
  - a tagged preallocated LV missing from the metadata was never zeroed nor used: it is
    removed, with --yes only.

Exit status: 0 consistent (or everything repaired), 1 findings remain.")]
    Check {
        #[arg(value_name = "SR")]
        sr: Option<String>,
        /// Repair what was found.
        #[arg(long)]
        repair: bool,
    },
    /// List registered SRs.
    List,
    /// Give the SR a new name (the volume group keeps its own).
    Rename {
        #[arg(value_name = "SR")]
        sr: String,
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Set the SR's description.
    SetDescription {
        #[arg(value_name = "SR")]
        sr: String,
        #[arg(value_name = "TEXT")]
        text: String,
    },
}

#[derive(Debug, Args)]
pub struct SrArg {
    /// The SR: name, uuid (or a unique prefix), or volume group; may be left out when only
    /// one SR is registered.
    #[arg(value_name = "SR")]
    pub sr: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum XapiCmd {
    /// Install the plugin's method files for xapi-storage-script, each running this binary.
    #[command(after_long_help = "\
Makes <root>/volume/org.xen.xapi.storage.thinsr/ (Plugin.Query, SR.*, Volume.*) and
<root>/datapath/thinsr/ (Datapath.*), each entry a small Python 3 file that runs this
binary under the method's name (so SMAPI tracing, which loads method files with runpy,
works too). thinsr reads the method's arguments as JSON on stdin and prints the result as
xapi expects. xapi registers SM types when it starts: run 'xe-toolstack-restart' after
installing. Then: 'xe sr-create type=thinsr name-label=Local device-config:device=/dev/sdb'
(owned) or 'device-config:vg=VG device-config:pool-size=50%' (shared).")]
    Install {
        /// Where xapi-storage-script looks for plugins.
        #[arg(long, value_name = "DIR", default_value = crate::xapi::DEFAULT_ROOT)]
        root: PathBuf,
        /// The thinsr the method files run (default: this binary; packages give
        /// /usr/sbin/thinsr while building).
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
    },
    /// Remove the method files `xapi install` made.
    Uninstall {
        #[arg(long, value_name = "DIR", default_value = crate::xapi::DEFAULT_ROOT)]
        root: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Register a read-only image as a template; nothing is copied.
    #[command(after_long_help = "\
Examples:
  thinsr template introduce file:///srv/images/debian-12.qcow2
  thinsr template introduce nbd://images.lan:10809/win10 --name \"Windows 10\"
  thinsr template introduce nfs://nas.lan/export/images/debian-12.qcow2
  thinsr template introduce https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-generic-amd64.qcow2
  thinsr template introduce \"s3://images/debian-12.qcow2?endpoint=https://s3.lan:9000&region=garage\"
  thinsr template introduce gs://bucket/debian.raw   # runs <scheme-dir>/gs attach|detach URI

Images may be raw, qcow2, vhd (vpc), vhdx or vmdk: thinsr reads the format and virtual size
with qemu-img. nbd:// exports are raw disks. Any other scheme is handled by an executable
<scheme-dir>/<scheme> (--scheme-dir, default /usr/libexec/xapi/storage) whose 'attach URI'
prints a local path or block device and whose 'detach URI' lets go of it. The image must
not change while clones exist: they read their unwritten blocks from it.

URIs: file:///PATH; nbd://HOST[:PORT]/EXPORT; nfs://HOST[:PORT]/EXPORT/FILE (NFSv4.2 down to
v3; mount options ?vers=, timeo=, retrans=, rsize=, nconnect=, sec=); smb://[USER@]HOST/SHARE/PATH
(credentials from /etc/thinsr/credentials/USER@HOST, root's, mode 0600: username= and password=
lines; ?vers=, domain=, sec=); http(s)://HOST/PATH (read lazily: introduce asks the server for
the file's first bytes only, clones read at once, each piece is fetched once per host the first
time a clone reads it, every request pinned to the file's ETag or Last-Modified; 'thinsr
template warm' fetches the rest and makes it a local copy. With --sha256 it is fetched whole
first, checked, and resumed when run again. TLS checked against the host's CA store);
s3://BUCKET/KEY[?endpoint=http(s)://HOST[:PORT]&region=NAME] (read lazily as http(s) is:
path-style at the endpoint given, else AWS's own for the region; requests signed with AWS
Signature V4 by the keys in /etc/thinsr/credentials/s3/HOST or .../default, root's, mode 0600:
aws_access_key_id = and aws_secret_access_key = lines; unsigned without). A script
<scheme-dir>/SCHEME replaces thinsr's own handler for SCHEME.")]
    Introduce {
        /// The image: file:///path, nbd://host[:port]/export, nfs://host/export/file,
        /// smb://[user@]host/share/path, https://host/path, s3://bucket/key, or scheme://...
        #[arg(value_name = "URI")]
        uri: String,
        #[command(flatten)]
        sr: SrOpt,
        /// The template's name (default: the image's file name without extension).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Keep a local copy-on-read cache of it (see 'thinsr template cache').
        #[arg(long)]
        cache: bool,
        /// An http(s) image's SHA-256: it is then fetched whole before any clone reads it,
        /// checked against this, and removed when it differs. Without it an http(s) image
        /// is read lazily.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// A lazy http(s) template: how long a clone's read of a piece not on the host
        /// waits for the server before it fails (EIO).
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        timeout: u64,
        /// A lazy http(s) template: fetch the rest at once, as 'thinsr template warm' does.
        #[arg(long)]
        warm: bool,
        /// With --warm: at most this many bytes a second (e.g. 50M).
        #[arg(long, value_name = "RATE", requires = "warm")]
        rate: Option<String>,
    },
    /// Unregister a template (and remove its cache or local copy); refused while clones read
    /// from it.
    Forget(VdiArg),
    /// Keep (on) or drop (off) a local copy-on-read cache of a remote template; off also
    /// removes its local copy.
    #[command(after_long_help = "\
Examples:
  thinsr template cache \"Windows 10\" on
  thinsr template warm \"Windows 10\"

A cached template is served to its clones through a thin LV of the SR's pool holding a
qcow2 overlay of the image: a block read once is kept there, so each block crosses the
network once per host, even across detach, 'sr detach' and reboots. VMs never write the
cache: their writes go to their own volumes. Only images qemu opens itself (file://,
nbd://) can be cached. Switching is refused while the template is attached.
'thinsr template warm' then turns the cache into a local copy its clones read in the kernel.")]
    Cache {
        #[command(flatten)]
        template: VdiArg,
        #[arg(value_name = "STATE", value_parser = ["on", "off"])]
        state: String,
    },
    /// Fetch a cached or lazy template completely now into a local copy, with progress
    /// (cancellable; a lazy one resumes where it stopped).
    Warm {
        #[command(flatten)]
        template: VdiArg,
        /// A lazy template: at most this many bytes a second from its server (e.g. 50M).
        #[arg(long, value_name = "RATE")]
        rate: Option<String>,
    },
    /// Copy a template's data into a thin LV of the pool that its clones read in the kernel.
    #[command(after_long_help = "\
Examples:
  thinsr template localize debian-12
  thinsr template cache debian-12 off      # removes the local copy again

The copy is a raw thin LV holding what the image holds (zeros take no space), read through
the template's cache when it has one; it replaces the cache. New clones are thin
snapshots of it; clones made before read it through a device of thinsr's in the kernel,
attached ones moved onto it at once (the same bytes), and the template's qemu-nbd ends:
nothing that a restart of a server can take away. The image itself is never written.")]
    Localize(VdiArg),
    /// List templates.
    List {
        #[command(flatten)]
        sr: SrOpt,
    },
    /// Show a template: its URI, format, size and clones.
    Show(VdiArg),
}

#[derive(Debug, Args)]
pub struct SrOpt {
    /// The SR (name, uuid or volume group); may be left out when only one is registered.
    #[arg(long = "sr", value_name = "SR")]
    pub sr: Option<String>,
}

#[derive(Debug, Args)]
pub struct VdiArg {
    /// The VDI: uuid, unique uuid prefix, LV name, label, or SR/name.
    #[arg(value_name = "VDI")]
    pub vdi: String,
    /// Look for the VDI in this SR only.
    #[arg(long = "sr", value_name = "SR")]
    pub sr: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Show data and metadata use, over-commitment, growth policy and room to grow.
    Show(SrArg),
    /// Grow the pool's data to SIZE (or by +SIZE), and/or its metadata.
    #[command(after_long_help = "\
Examples:
  thinsr pool extend \"Fast local\" +20G
  thinsr pool extend vg0 --metadata +64M

Thin pools cannot shrink. In shared mode an explicit extend also raises the pool's maximum
size to at least the new size.")]
    Extend {
        #[arg(value_name = "SR")]
        sr: String,
        /// New data size, or +SIZE to grow by that much.
        #[arg(value_name = "SIZE", required_unless_present = "metadata")]
        size: Option<String>,
        /// New metadata size, or +SIZE.
        #[arg(long, value_name = "SIZE")]
        metadata: Option<String>,
    },
    /// Set the growth policy (kept in the SR's metadata).
    #[command(after_long_help = "\
Defaults: --threshold 80 --grow-by 20 --when-full queue, no over-commit limit. The maximum
size defaults to all free space of the VG in owned mode, and to the size the admin chose in
shared mode; N% is a share of the whole volume group.

Examples:
  thinsr pool set \"Fast local\" --threshold 70 --grow-by 25
  thinsr pool set vg0 --max-size 400G --when-full error --max-overcommit 3")]
    Set {
        #[arg(value_name = "SR")]
        sr: String,
        /// Use (percent) of data or metadata at which the pool grows.
        #[arg(long, value_name = "PCT")]
        threshold: Option<u8>,
        /// How much the pool grows each time, in percent of its size.
        #[arg(long, value_name = "PCT")]
        grow_by: Option<u16>,
        /// The largest the pool may grow to: SIZE, or N% of the volume group.
        #[arg(long, value_name = "SIZE|N%")]
        max_size: Option<String>,
        /// What a write into a full pool does: queue (up to 60 s, then fail) or error at once.
        #[arg(long, value_name = "POLICY", value_parser = ["queue", "error"])]
        when_full: Option<String>,
        /// Refuse new thin disks once their virtual total would pass RATIO x the pool's size.
        #[arg(long, value_name = "RATIO")]
        max_overcommit: Option<f64>,
    },
    /// Grow pools that passed their threshold; quiet unless there is news (for cron).
    #[command(after_long_help = MAINTAIN_HELP)]
    Maintain {
        /// The SRs (default: every registered SR).
        #[arg(value_name = "SR")]
        srs: Vec<String>,
    },
    /// Grow pools the moment the kernel says they fill (run as a service).
    #[command(after_long_help = WATCH_HELP)]
    Watch {
        /// The SRs (default: every registered SR, including ones registered later).
        #[arg(value_name = "SR")]
        srs: Vec<String>,
        /// Also look at every pool this often, in seconds, between the kernel's events.
        #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
        interval: f64,
    },
    /// Check the pool's metadata with thin_check (on a snapshot while it is live).
    Check(SrArg),
}

const WATCH_HELP: &str = "\
Runs until SIGTERM or Ctrl-C; one watcher serves every SR of the host. It waits on
device-mapper's events: dm-thin raises one when a pool's free data reaches its low-water
mark, which thinsr's lvm calls set from the pool's --threshold. The pool is then grown at
once, within its policy (by --grow-by, at least 1 GiB), as 'pool maintain' would; news and
warnings are printed one per line (for the journal).

The packages install and enable it as a systemd service:
  systemctl enable --now thinsr-pool-watch

'pool show' and 'sr show' say whether it runs; 'pool maintain' (cron) warns when it died
and still grows pools, once a minute.";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `thinsr --help` and `thinsr template --help` name every scheme thinsr handles, and
    /// the scripts that handle the others.
    #[test]
    fn help_names_every_template_scheme() {
        let mut cli = Cli::command();
        let top = cli.render_long_help().to_string();
        let template = cli
            .find_subcommand_mut("template")
            .expect("a template group")
            .render_long_help()
            .to_string();
        let introduce = Cli::command()
            .find_subcommand_mut("template")
            .and_then(|t| t.find_subcommand_mut("introduce").cloned())
            .expect("template introduce")
            .render_long_help()
            .to_string();
        for help in [&top, &template] {
            for scheme in [
                "file://", "nbd://", "nfs://", "smb://", "http://", "https://", "s3://", "script",
            ] {
                assert!(help.contains(scheme), "{scheme} missing from:\n{help}");
            }
        }
        assert!(
            introduce.contains("Examples:") && introduce.contains("URIs:"),
            "{introduce}"
        );
    }
}
