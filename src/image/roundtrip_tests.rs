//! The writers and stream readers checked against qemu-img on the host: what thinsr writes
//! qemu reads back identical (and `qemu-img check` finds clean), and what qemu writes
//! thinsr's import decodes identical.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::extent::{align, Extent};
use super::stream::{Input, Out};
use super::*;
use crate::progress::Silent;

impl ReadAt for Vec<u8> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let o = offset as usize;
        buf.copy_from_slice(&self[o..o + buf.len()]);
        Ok(())
    }
}

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("thinsr-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs (install qemu-utils)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "qemu-img {args:?}: {text}");
    text
}

/// A disk of `size` bytes with a pattern in `data` (everything else zero).
fn disk(size: u64, data: &[Extent], seed: u8) -> Vec<u8> {
    let mut d = vec![0u8; size as usize];
    for e in data {
        for (i, b) in d[e.start as usize..e.end() as usize].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed) | 1;
        }
    }
    d
}

fn export_file(
    p: &Path,
    format: Format,
    size: u64,
    data: &[Extent],
    zero: &[Extent],
    backing: Option<&str>,
    src: &mut Vec<u8>,
) {
    let f = File::create(p).unwrap();
    let mut out = Out::file(&f, "test");
    let progress = Silent;
    let mut feed = Feed::new(src, &progress);
    match format {
        Format::Raw => write_raw(size, data, &mut feed, &mut out).unwrap(),
        Format::Vhd => {
            vhd::write(size, data, &[9; 16], &mut feed, &mut out).unwrap();
        }
        Format::Qcow2 => {
            let img = qcow2::Image {
                size,
                data,
                zero,
                backing,
            };
            qcow2::write(&img, &mut feed, &mut out).unwrap();
        }
    }
    out.finish().unwrap();
}

fn x(v: &[(u64, u64)]) -> Vec<Extent> {
    v.iter().map(|&(s, l)| Extent::new(s, l)).collect()
}

const MIB: u64 = 1 << 20;

/// Data at awkward places: the first sector, across a 2 MiB VHD block, inside one
/// cluster, and in the disk's last (partial) cluster.
fn sample() -> (u64, Vec<Extent>) {
    let size = 37 * MIB + 512 * 3;
    let data = x(&[
        (0, 512),
        (2 * MIB - 4096, 8192),
        (5 * MIB + 100, 3000),
        (20 * MIB, 3 * MIB),
        (size - 700, 700),
    ]);
    (size, data)
}

#[test]
fn qemu_reads_what_thinsr_writes() {
    let dir = Dir::new("writers");
    let (size, data) = sample();
    let mut src = disk(size, &data, 7);
    let reference = dir.path("ref.raw");
    std::fs::write(&reference, &src).unwrap();
    let map = align(&data, qcow2::CLUSTER, size);
    for (format, name, qfmt) in [
        (Format::Raw, "a.raw", "raw"),
        (Format::Vhd, "a.vhd", "vpc"),
        (Format::Qcow2, "a.qcow2", "qcow2"),
    ] {
        let p = dir.path(name);
        export_file(&p, format, size, &map, &[], None, &mut src);
        let out = p.to_str().unwrap();
        let info = qemu_img(&["info", "--output=json", "-f", qfmt, out]);
        assert!(
            info.contains(&format!("\"virtual-size\": {size}")),
            "{name}: {info}"
        );
        qemu_img(&[
            "compare",
            "-f",
            "raw",
            "-F",
            qfmt,
            reference.to_str().unwrap(),
            out,
        ]);
        if format == Format::Qcow2 {
            let check = qemu_img(&["check", "-f", "qcow2", out]);
            assert!(check.contains("No errors were found"), "{check}");
        }
    }
    // A raw export to a file is sparse; a qcow2 holds only the mapped clusters.
    let raw = dir.path("a.raw").metadata().unwrap();
    assert!(std::os::unix::fs::MetadataExt::blocks(&raw) * 512 < 8 * MIB);
    let q = dir.path("a.qcow2").metadata().unwrap().len();
    assert!(q < 5 * MIB, "{q}");
}

#[test]
fn a_delta_over_its_base_reads_as_the_new_disk() {
    let dir = Dir::new("delta");
    let size = 64 * MIB;
    let old = x(&[(0, 4 * MIB), (10 * MIB, MIB), (30 * MIB, 2 * MIB)]);
    let mut base = disk(size, &old, 1);
    export_file(
        &dir.path("base.qcow2"),
        Format::Qcow2,
        size,
        &old,
        &[],
        None,
        &mut base,
    );
    // The new disk: one range rewritten, one discarded, one new.
    let mut new = base.clone();
    let changed = x(&[(MIB, MIB), (40 * MIB, 64 * 1024)]);
    for e in &changed {
        for b in &mut new[e.start as usize..e.end() as usize] {
            *b = 0xAB;
        }
    }
    let removed = x(&[(30 * MIB, 2 * MIB)]);
    for e in &removed {
        new[e.start as usize..e.end() as usize].fill(0);
    }
    std::fs::write(dir.path("new.raw"), &new).unwrap();
    let delta = dir.path("delta.qcow2");
    export_file(
        &delta,
        Format::Qcow2,
        size,
        &changed,
        &removed,
        Some("base.qcow2"),
        &mut new,
    );
    let d = delta.to_str().unwrap();
    let check = qemu_img(&["check", "-f", "qcow2", d]);
    assert!(check.contains("No errors were found"), "{check}");
    let info = qemu_img(&["info", "--output=json", d]);
    assert!(
        info.contains("\"backing-filename\": \"base.qcow2\""),
        "{info}"
    );
    qemu_img(&[
        "compare",
        "-f",
        "raw",
        "-F",
        "qcow2",
        dir.path("new.raw").to_str().unwrap(),
        d,
    ]);
    // And qemu-img can make one image of the pair.
    let whole = dir.path("whole.raw");
    qemu_img(&[
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        d,
        whole.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&whole).unwrap() == new);
}

/// Decodes `image` as a stream into a buffer of `size` bytes.
fn import(image: &Path, size: u64) -> Vec<u8> {
    let bytes = std::fs::read(image).unwrap();
    let mut r = &bytes[..];
    let mut input = Input::new(&mut r, "test");
    let mut disk = vec![0u8; size as usize];
    let mut sink = |at: u64, data: &[u8]| {
        disk[at as usize..at as usize + data.len()].copy_from_slice(data);
        Ok(())
    };
    let head = input.peek(4).unwrap().to_vec();
    if head == qcow2::MAGIC {
        let h = qcow2::read_header(&mut input).unwrap();
        assert_eq!(h.size, size);
        qcow2::decode(&mut input, &h, &mut sink).unwrap();
    } else {
        let h = vhd::read_header(&mut input).unwrap();
        assert_eq!(h.size, size);
        vhd::decode(&mut input, &h, &mut sink).unwrap();
    }
    disk
}

#[test]
fn thinsr_reads_what_qemu_and_thinsr_write() {
    let dir = Dir::new("readers");
    let (size, data) = sample();
    let mut src = disk(size, &data, 3);
    let reference = dir.path("ref.raw");
    std::fs::write(&reference, &src).unwrap();
    let r = reference.to_str().unwrap();
    for (fmt, opts) in [
        ("qcow2", "cluster_size=65536"),
        ("qcow2", "cluster_size=4096"),
        ("qcow2", "compat=0.10"),
        ("vpc", "subformat=dynamic"),
    ] {
        let p = dir.path(&format!("q-{opts}.img"));
        qemu_img(&[
            "convert",
            "-f",
            "raw",
            "-O",
            fmt,
            "-o",
            opts,
            r,
            p.to_str().unwrap(),
        ]);
        let size_read = if fmt == "vpc" {
            // qemu's VHD rounds the size to its CHS geometry.
            let info = qemu_img(&["info", "--output=json", p.to_str().unwrap()]);
            let v: serde_json::Value = serde_json::from_str(&info).unwrap();
            v["virtual-size"].as_u64().unwrap()
        } else {
            size
        };
        let got = import(&p, size_read);
        assert!(got[..size as usize] == src[..], "{fmt} {opts}");
    }
    let map = align(&data, qcow2::CLUSTER, size);
    for (format, name) in [(Format::Vhd, "t.vhd"), (Format::Qcow2, "t.qcow2")] {
        let p = dir.path(name);
        export_file(&p, format, size, &map, &[], None, &mut src);
        assert!(import(&p, size) == src, "{name}");
    }
}

#[test]
fn hostile_headers_are_refused() {
    let (size, data) = sample();
    let mut src = disk(size, &data, 3);
    let dir = Dir::new("hostile");
    let map = align(&data, qcow2::CLUSTER, size);
    let p = dir.path("t.qcow2");
    export_file(&p, Format::Qcow2, size, &map, &[], None, &mut src);
    let good = std::fs::read(&p).unwrap();
    // Each change of a header field must be refused, never panic.
    for (at, bytes) in [
        (4, vec![0, 0, 0, 9]),
        (20, vec![0, 0, 0, 40]),
        (24, vec![0; 8]),
        (36, vec![0, 0, 0, 0]),
        (40, vec![0, 0, 0, 0, 0, 0, 0, 7]),
        (8, vec![0, 0, 0, 0, 0, 0, 0, 112]),
        (72, vec![0, 0, 0, 0, 0, 0, 0, 2]),
    ] {
        let mut bad = good.clone();
        bad[at..at + bytes.len()].copy_from_slice(&bytes);
        let mut r = &bad[..];
        let mut input = Input::new(&mut r, "t");
        assert!(qcow2::read_header(&mut input).is_err(), "offset {at}");
    }
    // A truncated image ends early instead of reading garbage.
    let cut = &good[..good.len() / 2];
    let mut r = cut;
    let mut input = Input::new(&mut r, "t");
    let h = qcow2::read_header(&mut input).unwrap();
    assert!(qcow2::decode(&mut input, &h, &mut |_, _| Ok(())).is_err());
}
