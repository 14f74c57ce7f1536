//! The throwaway VM: Debian's cloud kernel, an initramfs holding busybox, the host's LVM and
//! thin tools, and our binaries, booted under TCG (KVM hangs on these machines).

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{run, Result};

/// Host tools copied into the VM, with their shared libraries.
const HOST_TOOLS: &[&str] = &[
    "/sbin/lvm",
    "/usr/sbin/dmsetup",
    "/usr/sbin/pdata_tools",
    "/usr/bin/qemu-nbd",
    "/usr/bin/qemu-img",
    "/usr/sbin/blkid",
    "/usr/sbin/losetup",
    "/usr/sbin/wipefs",
    "/usr/sbin/mke2fs",
    // A real bash, for the completion test.
    "/bin/bash",
    // The file servers templates are read from in the tests: the kernel's nfsd with
    // nfs-kernel-server's userland, and Samba's smbd. (The kernel's ksmbd would do for
    // SMB, but Debian 12's ksmbd-tools 3.4.7 no longer passes the 6.1 kernel's checks of
    // its share replies: every tree connect fails with BAD_NETWORK_NAME.)
    "/usr/sbin/rpc.nfsd",
    "/usr/sbin/rpc.mountd",
    "/usr/sbin/rpcbind",
    "/usr/sbin/exportfs",
    "/usr/sbin/smbd",
    "/usr/bin/smbpasswd",
    // What one command asks of the kernel, for the scale benchmark.
    "/usr/bin/strace",
    // Replication to another host goes through the system's OpenSSH (tests/replicate.rs).
    "/usr/sbin/sshd",
    "/usr/bin/ssh",
    "/usr/bin/ssh-keygen",
    // The peer of lazy http(s) templates in `cargo xtask bench bench_lazy`: nbdkit's curl
    // plugin under its cache filter, on a kernel NBD device by nbd-client.
    "/usr/bin/nbdkit",
    "/usr/lib/x86_64-linux-gnu/nbdkit/plugins/nbdkit-curl-plugin.so",
    "/usr/lib/x86_64-linux-gnu/nbdkit/filters/nbdkit-cache-filter.so",
    "/usr/sbin/nbd-client",
];
const LVM_LINKS: &[&str] = &[
    "lvs",
    "vgs",
    "pvs",
    "lvcreate",
    "lvremove",
    "lvchange",
    "lvextend",
    "lvrename",
    "vgcreate",
    "vgremove",
    "vgchange",
    "vgextend",
    "pvcreate",
    "pvremove",
    "lvconvert",
    "vgdisplay",
    "lvdisplay",
];
const THIN_LINKS: &[&str] = &[
    "thin_check",
    "thin_dump",
    "thin_delta",
    "thin_repair",
    "thin_restore",
    "thin_ls",
    "thin_metadata_size",
];
const MODULES: &[&str] = &[
    "dm-mod",
    "dm-thin-pool",
    "dm-snapshot",
    "dm-flakey",
    "dm-delay",
    "dm-mirror",
    "nbd",
    "loop",
    "virtio_pci",
    "virtio_blk",
];
/// Template shares: the NFS and SMB clients thinsr mounts with, and the servers the tests
/// run on the VM's loopback. Loaded only where shares are used (a third of a boot's module
/// loading under TCG): every VM but the test jobs that say `thinsr_lean`.
const SHARE_MODULES: &[&str] = &[
    "nfsv4",
    "nfsv3",
    // SMB 3 signing and encryption, which cifs loads by name when it needs them.
    "gcm",
    "ccm",
    "cmac",
    "aes",
    "aes_generic",
    "sha512",
    "ecb",
    "des",
    "cifs",
    "nfsd",
];
/// Debian packages the test bed needs; qemu-utils is pinned to qemu-system-x86's version
/// because the machine may carry a newer backport that conflicts with it.
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "lvm2",
    "thin-provisioning-tools",
    "linux-image-cloud-amd64",
    "busybox-static",
    "python3-minimal",
    "libclang-dev",
    "cpio",
    "kmod",
    "e2fsprogs",
    "util-linux",
    "binutils",
    // cargo xtask package: rpmbuild, and file to check the binary is static.
    "rpm",
    "file",
    "libdevmapper-dev",
    "pkg-config",
    "man-db",
    "nfs-kernel-server",
    "strace",
    "samba",
    "openssh-server",
    "openssh-client",
    "nbdkit",
    "nbd-client",
    // musl-gcc, for the C inside ring (rustls) in the static binary.
    "musl-tools",
];

/// The VM's lvm.conf. With `dom0`, XCP-ng 8.3's LVM setup (xcp-ng-rpms/lvm2 and sm, as
/// ../shared/dom0-tools/README.md lists it): the host's lvm.conf read-only for metadata (a
/// writable copy goes to /etc/lvm/master), no archives, no lvmetad, NBD filtered, and no
/// setting lvm2 2.02.180 does not know. udev is off in both.
fn lvm_conf(dom0: bool) -> String {
    let pick = |dom0_line: &'static str, debian_line: &'static str| {
        if dom0 {
            dom0_line
        } else {
            debian_line
        }
    };
    format!(
        r#"devices {{
    # As README asks of hosts: LVM keeps off thinsr's own devices.
    global_filter = [ "r|^/dev/mapper/thinsr-|", "r|^/dev/nbd|" ]
{filter}    obtain_device_list_from_udev = 0
{devicesfile}}}
activation {{
    udev_sync = 0
    udev_rules = 0
    monitoring = 0
}}
{backup}global {{
{global}    thin_check_executable = "/usr/sbin/thin_check"
    thin_dump_executable = "/usr/sbin/thin_dump"
    thin_repair_executable = "/usr/sbin/thin_repair"
}}
"#,
        filter = pick("    filter = [ \"r|/dev/nbd|\" ]\n", ""),
        devicesfile = pick("", "    use_devicesfile = 0\n"),
        backup = pick("backup {\n    archive = 0\n}\n", ""),
        global = pick("    metadata_read_only = 1\n    use_lvmetad = 0\n", ""),
    )
}

/// dom0's own storage tools (static builds of XCP-ng 8.3's lvm2 2.02.180-18 and dmsetup
/// 1.02.149, and thin-provisioning-tools 0.7.3), from ../shared/dom0-tools beside the
/// repository (`THINSR_DOM0_TOOLS` overrides). Checked against its SHA256SUMS: a tool that
/// changed under us would prove nothing about dom0.
pub const DOM0_TOOLS: &[&str] = &["lvm", "dmsetup", "pdata_tools"];

pub fn dom0_tools_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("THINSR_DOM0_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("../shared/dom0-tools"));
    if !dir.join("SHA256SUMS").is_file() {
        return Err(format!(
            "dom0's tools are missing: no {}/SHA256SUMS (set THINSR_DOM0_TOOLS to the folder holding lvm, dmsetup and pdata_tools)",
            dir.display()
        )
        .into());
    }
    let out = Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&dir)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "dom0's tools in {} do not match their SHA256SUMS:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    for tool in DOM0_TOOLS {
        let sums = fs::read_to_string(dir.join("SHA256SUMS"))?;
        if !sums
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(tool))
        {
            return Err(format!("{}/SHA256SUMS lists no {tool}", dir.display()).into());
        }
    }
    Ok(dir)
}

/// What the VM's init does after setting up the machine.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /run/lock /var/tmp /etc/thinsr
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /run/lock /dev/mapper /dev/pts
# As on Debian hosts: qemu-nbd -c puts its socket under /var/lock.
ln -sfn /run/lock /var/lock
mount -t devpts devpts /dev/pts
for m in $(cat /modules.list); do insmod "$m" 2>/dev/null; done
if ! grep -q thinsr_lean /proc/cmdline; then
    for m in $(cat /modules-shares.list); do insmod "$m" 2>/dev/null; done
fi
# nbd devices appear asynchronously after insmod; mdev gives the nodes a moment.
sleep 0.2
# The bulk of the root (binaries, libraries) is on the read-only disk after the test's
# four, bound where the initramfs left its mount points.
mkdir -p /bulk
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vde ] && break; sleep 0.1; done
if ! mount -t ext4 -o ro /dev/vde /bulk; then
    echo "thinsr test VM: the bulk disk /dev/vde did not mount"
    echo "@@THINSR-RESULT 99"
    poweroff -f
fi
for d in $(cat /bulk.list); do mount -o bind "/bulk/$d" "/$d"; done
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root THINSR_VM=1 LC_ALL=C
if grep -q 'thinsr_profile=dom0' /proc/cmdline; then
    # XCP-ng 8.3's dom0, as far as thinsr meets it: its own lvm 2.02.180, dmsetup 1.02.149
    # and thin tools 0.7.3 (static builds, see ../shared/dom0-tools), lvm.conf read-only
    # for metadata with a writable master copy, qemu's tools only in qemu-dp's directory,
    # and thinsr's static binary.
    mkdir -p /usr/lib64/qemu-dp/bin /etc/lvm/master /run/lock/lvm
    mv /usr/bin/qemu-img /usr/bin/qemu-nbd /usr/lib64/qemu-dp/bin/
    cp /dom0/lvm.conf /etc/lvm/lvm.conf
    sed 's/metadata_read_only = 1/metadata_read_only = 0/' /dom0/lvm.conf > /etc/lvm/master/lvm.conf
    # A static lvm started under another name runs /usr/sbin/lvm: the links go there.
    rm -f /sbin/lvm /usr/sbin/lvm /usr/sbin/dmsetup /usr/sbin/pdata_tools
    cp /dom0/tools/lvm /dom0/tools/dmsetup /dom0/tools/pdata_tools /usr/sbin/
    chmod 755 /usr/sbin/lvm /usr/sbin/dmsetup /usr/sbin/pdata_tools
    ln -s /usr/sbin/lvm /sbin/lvm
    export THINSR_PROFILE=dom0 THINSR_BIN=$(cat /dom0/thinsr-bin)
    ln -sfn "$THINSR_BIN" /usr/sbin/thinsr
fi
export RUST_BACKTRACE=1
cd /tmp
mode=$(sed -n 's/.*thinsr_mode=\([a-z]*\).*/\1/p' /proc/cmdline)
job=$(sed -n 's/.*thinsr_job=\([0-9]*\).*/\1/p' /proc/cmdline)
case "$mode" in
test)
    line=$(sed -n "${job}p" /jobs.list)
    bin=${line%% *}; name=${line#* }
    echo "@@THINSR-START"
    "$bin" --exact "$name" --test-threads=1 --nocapture
    rc=$?
    echo "@@THINSR-RESULT $rc"
    ;;
demo)
    sh /demo.sh </dev/null
    echo "@@THINSR-RESULT $?"
    ;;
*)
    echo "thinsr test VM: disks are /dev/vd[a-d]; 'poweroff -f' leaves."
    setsid cttyhack sh -l
    ;;
esac
sync
poweroff -f
"#;

pub struct Bed {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The read-only disk behind the test's four (/dev/vde): see BULK.
    pub bulk: PathBuf,
    pub work: PathBuf,
}

pub fn kernel_version() -> Result<String> {
    let mut found: Vec<String> = fs::read_dir("/lib/modules")?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-cloud-amd64"))
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| "no cloud kernel under /lib/modules (linux-image-cloud-amd64)".into())
}

fn copy_into(root: &Path, src: &Path) -> Result<()> {
    let dst = root.join(src.strip_prefix("/").unwrap_or(src));
    if dst.exists() {
        return Ok(());
    }
    fs::create_dir_all(dst.parent().unwrap())?;
    fs::copy(src, &dst).map_err(|e| format!("copying {}: {e}", src.display()))?;
    Ok(())
}

/// Debian's minimal Python 3 (the interpreter and the stdlib its -minimal packages hold),
/// for the xapi plugin's method files, which are Python as xapi's SMAPI tracing needs.
/// And /usr/bin/env for their `#!/usr/bin/env python3`, as on a host.
fn copy_python(root: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<()> {
    let bin = fs::canonicalize("/usr/bin/python3")
        .map_err(|e| format!("Debian's python3 (python3-minimal) is missing: {e}"))?;
    let name = bin
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("python3 has no name")?
        .to_string();
    copy_with_libs(root, &bin, seen)?;
    symlink(&name, root.join("usr/bin/python3"))?;
    symlink("/bin/busybox", root.join("usr/bin/env"))?;
    let out = Command::new("dpkg")
        .args([
            "-L",
            &format!("{name}-minimal"),
            &format!("lib{name}-minimal"),
        ])
        .output()?;
    if !out.status.success() {
        return Err(format!("dpkg -L {name}-minimal failed").into());
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let p = Path::new(line);
        if line.starts_with("/usr/lib/python") && p.is_file() {
            copy_into(root, p)?;
        }
    }
    Ok(())
}

/// The binary and every shared library `ldd` names for it.
fn copy_with_libs(root: &Path, bin: &Path, seen: &mut BTreeSet<PathBuf>) -> Result<()> {
    copy_into(root, bin)?;
    let out = Command::new("ldd").arg(bin).output()?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(p) = path {
            if seen.insert(p.clone()) {
                // Copy the real file to the path the loader asks for.
                let real = fs::canonicalize(&p)?;
                let dst = root.join(p.strip_prefix("/").unwrap());
                fs::create_dir_all(dst.parent().unwrap())?;
                if !dst.exists() {
                    fs::copy(&real, &dst)?;
                }
            }
        }
    }
    Ok(())
}

/// Builds the initramfs. `extra` binaries keep their host paths so that paths compiled into
/// test binaries (CARGO_BIN_EXE_thinsr) resolve inside the VM too.
pub fn build(
    work: &Path,
    extra: &[PathBuf],
    jobs: &[(PathBuf, String)],
    demo: Option<&str>,
) -> Result<Bed> {
    build_with(work, extra, jobs, demo, None)
}

/// Copies module `m` and those it needs into `root`, adding each not yet in `order` after
/// what it depends on.
fn add_module(root: &Path, kver: &str, m: &str, order: &mut Vec<String>) -> Result<()> {
    let out = Command::new("modprobe")
        .args(["-S", kver, "--show-depends", m])
        .output()?;
    if !out.status.success() {
        return Err(format!("modprobe --show-depends {m} failed for kernel {kver}").into());
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(path) = line.strip_prefix("insmod ") {
            // The module alone: options a package set in /etc/modprobe.d (nbd-client's
            // max_part) are not the test bed's.
            let path = path.split_whitespace().next().unwrap_or("").to_string();
            if !order.contains(&path) {
                copy_into(root, Path::new(&path))?;
                order.push(path);
            }
        }
    }
    Ok(())
}

/// As `build`, with the dom0 profile's static thinsr (`thinsr_profile=dom0` selects it).
pub fn build_with(
    work: &Path,
    extra: &[PathBuf],
    jobs: &[(PathBuf, String)],
    demo: Option<&str>,
    dom0_thinsr: Option<&Path>,
) -> Result<Bed> {
    let kver = kernel_version()?;
    let kernel = PathBuf::from(format!("/boot/vmlinuz-{kver}"));
    if !kernel.exists() {
        return Err(format!("{} is missing", kernel.display()).into());
    }
    let root = work.join("root");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc/lvm", "lib64", "root", "tmp",
    ] {
        fs::create_dir_all(root.join(d))?;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("busybox-static is not installed")?;
    fs::copy(busybox, root.join("bin/busybox"))?;
    let mut seen = BTreeSet::new();
    for tool in HOST_TOOLS
        .iter()
        .map(Path::new)
        .chain(extra.iter().map(|p| p.as_path()))
    {
        if !tool.exists() {
            return Err(format!("{} is missing on the host", tool.display()).into());
        }
        copy_with_libs(&root, tool, &mut seen)?;
    }
    // Our binaries without their debug info: a dozen test binaries of 45 MB each would
    // take most of the VM's RAM-backed root, where the tests write their files. Panic
    // messages keep their file and line (they do not come from debug info).
    for bin in extra {
        let dst = root.join(bin.strip_prefix("/").unwrap_or(bin));
        run(Command::new("strip").arg("--strip-debug").arg(&dst))?;
    }
    for l in LVM_LINKS {
        symlink("/sbin/lvm", root.join("sbin").join(l))?;
    }
    for l in THIN_LINKS {
        symlink("/usr/sbin/pdata_tools", root.join("usr/sbin").join(l))?;
    }
    symlink("/usr/sbin/mke2fs", root.join("usr/sbin/mkfs.ext4"))?;
    copy_python(&root, &mut seen)?;
    if let Some(t) = extra
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == "thinsr"))
    {
        symlink(t, root.join("usr/sbin/thinsr"))?;
    }

    // Modules in dependency order, each once: the base, then the shares' own.
    let mut order: Vec<String> = Vec::new();
    for m in MODULES {
        add_module(&root, &kver, m, &mut order)?;
    }
    let base = order.len();
    for m in SHARE_MODULES {
        add_module(&root, &kver, m, &mut order)?;
    }
    fs::write(root.join("modules.list"), order[..base].join("\n") + "\n")?;
    fs::write(
        root.join("modules-shares.list"),
        order[base..].join("\n") + "\n",
    )?;
    fs::write(root.join("etc/lvm/lvm.conf"), lvm_conf(false))?;
    if let Some(bin) = dom0_thinsr {
        let dir = root.join("dom0");
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("lvm.conf"), lvm_conf(true))?;
        let tools = dom0_tools_dir()?;
        fs::create_dir_all(dir.join("tools"))?;
        for tool in DOM0_TOOLS {
            fs::copy(tools.join(tool), dir.join("tools").join(tool))
                .map_err(|e| format!("copying dom0's {tool}: {e}"))?;
        }
        // Static: copied alone, with no library of ours beside it.
        copy_into(&root, bin)?;
        fs::write(dir.join("thinsr-bin"), bin.display().to_string())?;
    }
    // sshd's privilege separation runs as "sshd", chrooted into /run/sshd.
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    // rpcbind (for NFSv3's MOUNT protocol) reads the transports it may use, and the port
    // of "sunrpc", from these.
    for f in ["/etc/netconfig", "/etc/services"] {
        fs::copy(f, root.join(&f[1..])).map_err(|e| format!("copying {f}: {e}"))?;
    }
    let jobs_list: String = jobs
        .iter()
        .map(|(bin, name)| format!("{} {}\n", bin.display(), name))
        .collect();
    fs::write(root.join("jobs.list"), jobs_list)?;
    if let Some(script) = demo {
        fs::write(root.join("demo.sh"), script)?;
    }
    let init = root.join("init");
    fs::write(&init, INIT)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;

    let bulk = pack_bulk(work, &root)?;
    let initrd = work.join("initrd.cpio");
    let file = fs::File::create(&initrd)?;
    let mut find = Command::new("sh")
        .args(["-c", "find . | cpio -o -H newc --quiet"])
        .current_dir(&root)
        .stdout(file)
        .spawn()?;
    if !find.wait()?.success() {
        return Err("cpio failed to pack the initramfs".into());
    }
    Ok(Bed {
        kernel,
        initrd,
        bulk,
        work: work.to_path_buf(),
    })
}

/// The root's folders that go on the read-only bulk disk rather than into the initramfs:
/// the test and thinsr binaries and the shared libraries, four fifths of the root. The
/// kernel copies every byte of an initramfs at boot, ~37 MB/s under TCG, where a disk is
/// read only where a test reads it: 250 MB in the initramfs cost ~6 s of each boot.
const BULK: &[&str] = &["work", "lib/x86_64-linux-gnu", "usr/lib"];

/// Moves the BULK folders of `root` into an ext4 image (ext4 is built into Debian's cloud
/// kernel, so nothing but virtio_blk must load before it mounts), leaving empty mount
/// points the VM's init binds them on.
fn pack_bulk(work: &Path, root: &Path) -> Result<PathBuf> {
    let dir = work.join("bulk");
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    for d in BULK {
        let (from, to) = (root.join(d), dir.join(d));
        fs::create_dir_all(to.parent().unwrap())?;
        if from.exists() {
            fs::rename(&from, &to)?;
        } else {
            fs::create_dir_all(&to)?;
        }
        fs::create_dir_all(&from)?;
    }
    fs::write(root.join("bulk.list"), BULK.join("\n") + "\n")?;
    // Python's bytecode compiled here, as Debian's packages do at install: on the read-only
    // disk every method file's python would otherwise compile each module it imports again
    // (a minute more of the plugin tests under TCG). The bytecode names the source's mtime
    // and size, which mke2fs keeps.
    run(Command::new("python3")
        // One process: `-j` needs concurrent.futures, which python3-minimal lacks.
        .args(["-m", "compileall", "-q", "-s"])
        .arg(&dir)
        .args(["-p", "/"])
        .arg(dir.join("usr/lib")))?;
    let out = Command::new("du").args(["-sk"]).arg(&dir).output()?;
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|k| k.parse().ok())
        .ok_or("du could not size the bulk folders")?;
    let image = work.join("bulk.ext4");
    let _ = fs::remove_file(&image);
    // Room for ext4's own metadata over the files; no journal: it is only ever read.
    run(Command::new("mke2fs")
        .args([
            "-q",
            "-t",
            "ext4",
            "-O",
            "^has_journal",
            "-L",
            "thinsr-bulk",
            "-d",
        ])
        .arg(&dir)
        .arg(&image)
        .arg(format!("{}k", kib + kib / 5 + 16 * 1024)))?;
    Ok(image)
}

pub struct Outcome {
    pub rc: Option<i32>,
    pub output: String,
    pub elapsed: Duration,
    /// The kernel's first hung-task report, when one stopped the VM early.
    pub hung: Option<String>,
}

pub const DISKS: usize = 4;
pub const DISK_SIZE: u64 = 4 << 30;

/// Boots the VM with fresh sparse disks. `echo` streams the console to our stdout.
pub fn boot(bed: &Bed, tag: &str, append: &str, echo: bool, timeout: Duration) -> Result<Outcome> {
    let dir = bed.work.join(format!("disks-{tag}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let mut args: Vec<String> = vec![
        "-accel".into(),
        "tcg".into(),
        "-cpu".into(),
        "max".into(),
        "-m".into(),
        "2048".into(),
        "-smp".into(),
        "1".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        bed.kernel.display().to_string(),
        "-initrd".into(),
        bed.initrd.display().to_string(),
        "-append".into(),
        // THINSR_VM_APPEND: more kernel arguments, for a debugging run (`loglevel=7` shows
        // a hung task's stack).
        format!(
            // cryptomgr.notests: the kernel's self-tests of its ciphers, a second of each
            // boot under TCG, prove nothing about thinsr. mitigations=off: the retpolines
            // of a throwaway VM's kernel halve its fork and exec speed under TCG.
            "console=ttyS0 quiet panic=-1 cryptomgr.notests mitigations=off {append} {}",
            std::env::var("THINSR_VM_APPEND").unwrap_or_default()
        ),
    ];
    for i in 0..DISKS {
        let disk = dir.join(format!("disk{i}.raw"));
        fs::File::create(&disk)?.set_len(DISK_SIZE)?;
        args.push("-drive".into());
        args.push(format!(
            "file={},if=virtio,format=raw,cache=unsafe,discard=unmap",
            disk.display()
        ));
    }
    // After the test's disks, so they stay /dev/vd[a-d]; read-only, so both VMs share it.
    args.push("-drive".into());
    args.push(format!(
        "file={},if=virtio,format=raw,readonly=on",
        bed.bulk.display()
    ));
    // No network card: the tests talk over the VM's loopback, and its boot ROM costs time.
    args.push("-nic".into());
    args.push("none".into());
    let start = Instant::now();
    let interactive = append.contains("thinsr_mode=shell");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(&args);
    if interactive {
        let status = cmd.status()?;
        let _ = fs::remove_dir_all(&dir);
        return Ok(Outcome {
            rc: status.code(),
            output: String::new(),
            elapsed: start.elapsed(),
            hung: None,
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = String::new();
    let mut rc = None;
    let mut started = false;
    let mut hung = None;
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            let _ = child.kill();
            output.push_str(&format!(
                "\n[xtask] VM timed out after {}s\n",
                timeout.as_secs()
            ));
            break;
        }
        match rx.recv_timeout(left.min(Duration::from_millis(500))) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_string();
                // The console may prefix a marker with the firmware's escape sequences.
                if let Some((_, code)) = line.split_once("@@THINSR-RESULT ") {
                    rc = code.trim().parse().ok();
                    continue;
                }
                if line.ends_with("@@THINSR-START") {
                    started = true;
                    continue;
                }
                // A task stuck in the kernel for two minutes: the VM is of no more use
                // (seen once in ~100 runs under TCG, stuck in writeback). Stop it now
                // rather than at the timeout; the caller decides whether to run it again.
                if line.contains("blocked for more than") && hung.is_none() {
                    hung = Some(line.trim().to_string());
                    output.push_str(&line);
                    output.push('\n');
                    // What the kernel prints with it for 3 s (its stack, at loglevel 7).
                    let until = Instant::now() + Duration::from_secs(3);
                    while let Ok(l) =
                        rx.recv_timeout(until.saturating_duration_since(Instant::now()))
                    {
                        output.push_str(&l);
                        output.push('\n');
                    }
                    output.push_str("[xtask] stopped the VM: a task hung in its kernel\n");
                    let _ = child.kill();
                    break;
                }
                if echo {
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
                output.push_str(&line);
                output.push('\n');
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if child.try_wait()?.is_some() {
                    // Drain what is left.
                    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                        if let Some((_, code)) = line.split_once("@@THINSR-RESULT ") {
                            rc = code.trim().parse().ok();
                        } else {
                            output.push_str(&line);
                            output.push('\n');
                        }
                    }
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = child.wait();
                break;
            }
        }
    }
    let _ = child.wait();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    if rc.is_none() && !err.is_empty() {
        output.push_str(&format!("[qemu stderr] {err}"));
    }
    if rc.is_none() && !started && !append.contains("thinsr_mode=demo") {
        output.push_str("[xtask] the VM never started the test: it did not boot\n");
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(Outcome {
        rc,
        output,
        elapsed: start.elapsed(),
        hung,
    })
}

/// Installs the Debian packages the test bed needs when any is missing.
pub fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    let qemu_ok = Path::new("/usr/bin/qemu-system-x86_64").exists();
    if missing.is_empty() && qemu_ok {
        return Ok(());
    }
    eprintln!("[xtask] installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    // qemu-utils must match qemu-system-x86 (the image may carry a newer backport).
    let policy = Command::new("apt-cache")
        .args(["policy", "qemu-system-x86"])
        .output()?;
    let version = String::from_utf8_lossy(&policy.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: ").map(str::to_string))
        .ok_or("apt-cache knows no qemu-system-x86")?;
    let mut args: Vec<String> = vec![
        "install".into(),
        "-y".into(),
        "-qq".into(),
        "--no-install-recommends".into(),
        "--allow-downgrades".into(),
    ];
    args.extend(PACKAGES.iter().map(|s| s.to_string()));
    args.push(format!("qemu-utils={version}"));
    args.push(format!("qemu-block-extra={version}"));
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(&args))
}
