//! `cargo xtask package`: what an admin installs. A static x86_64 binary (musl, so it runs
//! on XCP-ng 8.3's glibc 2.17 as on any Linux), an RPM for XCP-ng and a deb for Debian and
//! Ubuntu, in target/package/.
//!
//! Built with Debian's own packaging tools rather than cargo plugins: rpmbuild (package
//! `rpm`) writes an RPM with a gzip payload when told (`_binary_payload`), which CentOS 7's
//! rpm reads (it cannot read zstd, rpm 4.18's default), and dpkg-deb is on every Debian
//! machine. Both are driven from one staged tree, so the two packages hold the same files.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cargo, root, run, Result};

pub const MUSL: &str = "x86_64-unknown-linux-musl";

/// The cron line README documents, as a configuration file.
const CRON: &str =
    "# thinsr: grow thin pools past their threshold and report trouble (exit 1 warning,\n\
# 2 critical). The pool watcher (thinsr-pool-watch.service) grows them in real time;\n\
# this is the safety net and the monitoring check.\n\
* * * * *  root  /usr/sbin/thinsr --quiet pool maintain\n";

/// Never installed as the host's LVM configuration: a snippet for the admin to merge.
const LVM_FILTER: &str =
    "# LVM filter for hosts running thinsr: keep LVM's scans off thinsr's own devices\n\
# (template clones, read-only views) and off NBD devices, whose servers may be gone.\n\
# Merge into the devices { } section of /etc/lvm/lvm.conf, and on XCP-ng also of\n\
# /etc/lvm/master/lvm.conf (the writable copy its storage code uses). thinsr never edits\n\
# either file; it passes what it needs with --config on each call.\n\
devices {\n\
    global_filter = [ \"r|^/dev/mapper/thinsr-|\", \"r|^/dev/nbd|\" ]\n\
}\n";

/// Loads the modules templates and pools need at boot, and gives NBD enough devices.
const MODULES_LOAD: &str =
    "# thinsr: thin pools, NBD for templates qemu serves, mirrors for storage migration\ndm_thin_pool\nnbd\ndm_mirror\n";
const NBD_OPTIONS: &str =
    "# thinsr: NBD devices for template servers, without partition scanning\noptions nbd nbds_max=64 max_part=0\n";

fn version() -> Result<String> {
    let toml = fs::read_to_string(root().join("Cargo.toml"))?;
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(str::to_string)
        .ok_or_else(|| "no version in Cargo.toml".into())
}

/// The static binary: musl's self-contained target, non-PIE (so `file` says "statically
/// linked"), and bindings to the kernel's dm-ioctl.h generated as for glibc: its
/// structures are the kernel's and the same for both.
/// With `testing`, the build the dom0 test profile runs (it honours THINSR_CRASH_AT).
pub fn static_binary(testing: bool) -> Result<PathBuf> {
    run(Command::new("rustup").args(["target", "add", MUSL]))?;
    let target_dir = root().join(if testing {
        "target/testing-musl"
    } else {
        "target"
    });
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "--bin",
        "thinsr",
        "--target",
        MUSL,
    ]);
    if testing {
        cmd.args(["--features", "testing"]);
    }
    run(cmd
        .arg("--target-dir")
        .arg(&target_dir)
        .env("PKG_CONFIG_ALLOW_CROSS", "1")
        // ring (TLS for https:// templates) compiles C for the target: musl's gcc wrapper.
        .env("CC_x86_64_unknown_linux_musl", "musl-gcc")
        .env(
            "BINDGEN_EXTRA_CLANG_ARGS_x86_64_unknown_linux_musl",
            "--target=x86_64-unknown-linux-gnu",
        )
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        ))?;
    Ok(target_dir.join(MUSL).join("release/thinsr"))
}

fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
    fs::create_dir_all(path.parent().unwrap())?;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(to.parent().unwrap())?;
    fs::copy(from, to).map_err(|e| format!("copying {}: {e}", from.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The installed tree for one package kind (`rpm` or `deb`) under `stage`.
fn stage_tree(stage: &Path, bin: &Path, kind: &str) -> Result<()> {
    if stage.exists() {
        fs::remove_dir_all(stage)?;
    }
    let src = root();
    copy(bin, &stage.join("usr/sbin/thinsr"), 0o755)?;
    for page in fs::read_dir(src.join("man"))? {
        let page = page?.path();
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        let dst = stage.join("usr/share/man/man1").join(&name);
        copy(&page, &dst, 0o644)?;
        run(Command::new("gzip").args(["-9nf"]).arg(&dst))?;
    }
    let comp = src.join("completions");
    copy(
        &comp.join("thinsr.bash"),
        &stage.join("usr/share/bash-completion/completions/thinsr"),
        0o644,
    )?;
    if kind == "deb" {
        copy(
            &comp.join("_thinsr"),
            &stage.join("usr/share/zsh/vendor-completions/_thinsr"),
            0o644,
        )?;
        copy(
            &comp.join("thinsr.fish"),
            &stage.join("usr/share/fish/vendor_completions.d/thinsr.fish"),
            0o644,
        )?;
    }
    write(&stage.join("etc/cron.d/thinsr"), CRON, 0o644)?;
    let unit_dir = if kind == "rpm" {
        "usr/lib/systemd/system"
    } else {
        "lib/systemd/system"
    };
    copy(
        &src.join("dist/thinsr-pool-watch.service"),
        &stage.join(unit_dir).join("thinsr-pool-watch.service"),
        0o644,
    )?;
    let doc = stage.join("usr/share/doc/thinsr");
    write(&doc.join("lvm-filter.conf"), LVM_FILTER, 0o644)?;
    copy(&src.join("README.md"), &doc.join("README.md"), 0o644)?;
    copy(&src.join("CHANGELOG.md"), &doc.join("CHANGELOG.md"), 0o644)?;
    write(
        &stage.join("usr/lib/modules-load.d/thinsr.conf"),
        MODULES_LOAD,
        0o644,
    )?;
    write(
        &stage.join("etc/modprobe.d/thinsr-nbd.conf"),
        NBD_OPTIONS,
        0o644,
    )?;
    // The rpm holds no method files: its %posttrans makes them with `thinsr xapi install`,
    // which puts each plugin directory in place whole, in one rename. Files rpm wrote one
    // by one into xapi-storage-script's watched directories would be seen half-made.
    Ok(())
}

/// Every file under `stage`, as absolute paths of the installed system, sorted.
fn files(stage: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, stage: &Path, out: &mut Vec<String>) -> Result<()> {
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(&p, stage, out)?;
            } else {
                out.push(format!("/{}", p.strip_prefix(stage).unwrap().display()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(stage, stage, &mut out)?;
    out.sort();
    Ok(out)
}

fn rpm(out: &Path, bin: &Path, version: &str) -> Result<PathBuf> {
    let top = out.join("rpmbuild");
    let stage = out.join("stage-rpm");
    stage_tree(&stage, bin, "rpm")?;
    let listed: Vec<String> = files(&stage)?
        .into_iter()
        .map(|f| {
            let config = f.starts_with("/etc/");
            let quoted = format!("\"{f}\"");
            if config {
                format!("%config(noreplace) {quoted}")
            } else if f.starts_with("/usr/share/doc/") {
                format!("%doc {quoted}")
            } else {
                quoted
            }
        })
        .collect();
    let spec = format!(
        "Name: thinsr\n\
Version: {version}\n\
Release: 1\n\
Summary: Thin-provisioned local VM disks on LVM and dm-thin, an SMAPIv3 plugin for XCP-ng\n\
License: MIT OR Apache-2.0\n\
BuildArch: x86_64\n\
Requires: lvm2\n\
Requires: device-mapper-persistent-data\n\
AutoReqProv: no\n\
\n\
%description\n\
thinsr runs VM disks on local storage: thin-provisioned LVM volumes in a dm-thin pool,\n\
instant clones from templates, readable names, backups that read only what changed.\n\
One static binary with an SMAPIv3 (xapi-storage) volume and datapath plugin.\n\
Templates in qcow2, VHD or VMDK, and NBD templates, need qemu-dp (qemu-img, qemu-nbd).\n\
\n\
%install\n\
cp -a {stage}/. %{{buildroot}}/\n\
\n\
%post\n\
systemctl daemon-reload >/dev/null 2>&1 || :\n\
systemctl enable thinsr-pool-watch.service >/dev/null 2>&1 || :\n\
systemctl start thinsr-pool-watch.service >/dev/null 2>&1 || :\n\
\n\
%preun\n\
if [ \"$1\" = 0 ]; then\n\
  systemctl disable --now thinsr-pool-watch.service >/dev/null 2>&1 || :\n\
  /usr/sbin/thinsr xapi uninstall >/dev/null 2>&1 || :\n\
fi\n\
\n\
%posttrans\n\
/usr/sbin/thinsr xapi install --binary /usr/sbin/thinsr\n\
\n\
%files\n\
{files}\n",
        stage = stage.display(),
        files = listed.join("\n"),
    );
    fs::create_dir_all(top.join("SPECS"))?;
    let spec_path = top.join("SPECS/thinsr.spec");
    fs::write(&spec_path, spec)?;
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        // CentOS 7's rpm reads gzip, xz or none: not zstd.
        .args(["--define", "_binary_payload w9.gzdio"])
        // The binary is already as it should be: no stripping, no debuginfo package.
        .args(["--define", "__os_install_post %{nil}"])
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "_build_id_links none"])
        .arg(&spec_path))?;
    let built = top.join(format!("RPMS/x86_64/thinsr-{version}-1.x86_64.rpm"));
    let dst = out.join(built.file_name().unwrap());
    fs::rename(&built, &dst)?;
    Ok(dst)
}

fn deb(out: &Path, bin: &Path, version: &str) -> Result<PathBuf> {
    let stage = out.join("stage-deb");
    stage_tree(&stage, bin, "deb")?;
    let size_kib: u64 = files(&stage)?
        .iter()
        .map(|f| {
            fs::metadata(stage.join(&f[1..]))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum::<u64>()
        / 1024;
    let control = format!(
        "Package: thinsr\n\
Version: {version}\n\
Architecture: amd64\n\
Maintainer: thinsr developers <thinsr@localhost>\n\
Depends: lvm2, thin-provisioning-tools\n\
Recommends: qemu-utils\n\
Installed-Size: {size_kib}\n\
Section: admin\n\
Priority: optional\n\
Description: thin-provisioned local VM disks on LVM and dm-thin\n \
thinsr runs VM disks on local storage: thin LVM volumes in a dm-thin pool,\n \
instant clones from templates, readable names, and backups that read only what\n \
changed.\n"
    );
    write(&stage.join("DEBIAN/control"), &control, 0o644)?;
    let conffiles: Vec<String> = files(&stage)?
        .into_iter()
        .filter(|f| f.starts_with("/etc/"))
        .collect();
    write(
        &stage.join("DEBIAN/conffiles"),
        &(conffiles.join("\n") + "\n"),
        0o644,
    )?;
    let dst = out.join(format!("thinsr_{version}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group", "-Zxz"])
        .arg(&stage)
        .arg(&dst))?;
    Ok(dst)
}

/// What each package must hold, checked with the tools an admin would use.
fn check(rpm: &Path, deb: &Path, bin: &Path) -> Result<()> {
    let text = |cmd: &mut Command| -> Result<String> {
        let out = cmd.output()?;
        if !out.status.success() {
            return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let file = text(Command::new("file").arg(bin))?;
    if !file.contains("statically linked") {
        return Err(format!("the binary is not static: {file}").into());
    }
    let rpm_files = text(Command::new("rpm").arg("-qpl").arg(rpm))?;
    let compressor = text(
        Command::new("rpm")
            .args(["-qp", "--qf", "%{PAYLOADCOMPRESSOR}"])
            .arg(rpm),
    )?;
    if !["gzip", "xz", "none"].contains(&compressor.trim()) {
        return Err(format!("the rpm's payload is {compressor}: CentOS 7 cannot read it").into());
    }
    let configs = text(Command::new("rpm").arg("-qpc").arg(rpm))?;
    let deb_files = text(Command::new("dpkg-deb").arg("-c").arg(deb))?;
    let both = [
        "/usr/sbin/thinsr",
        "/usr/share/man/man1/thinsr.1.gz",
        "/usr/share/man/man1/thinsr-pool-watch.1.gz",
        "/usr/share/bash-completion/completions/thinsr",
        "/etc/cron.d/thinsr",
        "/usr/share/doc/thinsr/lvm-filter.conf",
        "/etc/modprobe.d/thinsr-nbd.conf",
    ];
    let rpm_only = ["/usr/lib/systemd/system/thinsr-pool-watch.service"];
    let deb_only = [
        "/lib/systemd/system/thinsr-pool-watch.service",
        "/usr/share/zsh/vendor-completions/_thinsr",
        "/usr/share/fish/vendor_completions.d/thinsr.fish",
    ];
    for f in both.iter().chain(rpm_only.iter()) {
        if !rpm_files.lines().any(|l| l == *f) {
            return Err(format!("{} lacks {f}", rpm.display()).into());
        }
    }
    for f in both.iter().chain(deb_only.iter()) {
        if !deb_files.lines().any(|l| l.ends_with(&format!(".{f}"))) {
            return Err(format!("{} lacks {f}", deb.display()).into());
        }
    }
    if !configs.lines().any(|l| l == "/etc/cron.d/thinsr") {
        return Err("the rpm's cron file is not a configuration file".into());
    }
    // The method files are made by %posttrans, whole, where xapi watches: none in the
    // payload (rpm would write them one by one), and the scriptlet runs the installer.
    if rpm_files.contains("xapi-storage-script") {
        return Err("the rpm's payload holds method files: xapi would see them half-made".into());
    }
    let scripts = text(Command::new("rpm").arg("-qp").arg("--scripts").arg(rpm))?;
    let posttrans = scripts
        .split("posttrans scriptlet")
        .nth(1)
        .unwrap_or_default();
    if !posttrans.contains("/usr/sbin/thinsr xapi install --binary /usr/sbin/thinsr") {
        return Err(format!("the rpm's %posttrans does not install the plugin:\n{scripts}").into());
    }
    let requires = text(Command::new("rpm").arg("-qpR").arg(rpm))?;
    if !requires
        .lines()
        .any(|l| l.trim() == "device-mapper-persistent-data")
    {
        return Err("the rpm does not require device-mapper-persistent-data (thin tools)".into());
    }
    println!(
        "[xtask] packages check out: {} ({} payload, {} files), {} ({} files); {}",
        rpm.display(),
        compressor.trim(),
        rpm_files.lines().count(),
        deb.display(),
        deb_files.lines().filter(|l| !l.ends_with('/')).count(),
        file.trim()
    );
    Ok(())
}

/// `cargo xtask package`: the static binary, the RPM and the deb in target/package/, each
/// checked.
pub fn package() -> Result<PathBuf> {
    let bin = static_binary(false)?;
    let out = root().join("target/package");
    fs::create_dir_all(&out)?;
    let dst_bin = out.join("thinsr");
    copy(&bin, &dst_bin, 0o755)?;
    let version = version()?;
    let rpm = rpm(&out, &dst_bin, &version)?;
    let deb = deb(&out, &dst_bin, &version)?;
    check(&rpm, &deb, &dst_bin)?;
    Ok(dst_bin)
}
