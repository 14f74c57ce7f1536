//! Property tests over every parser of untrusted input: the committed corpora in
//! fuzz/corpus/<target>/ are replayed as they are, then mutated (bits flipped, bytes set,
//! cut, inserted, repeated) for a bounded number of cases per target. No input may panic,
//! and what is accepted must be well-formed. `cargo test fuzz -- --ignored write_corpus`
//! regenerates the seeds.

use std::path::PathBuf;

use proptest::prelude::*;

use crate::image::{block_map, extent::Extent, qcow2, stream::Input, thin_xml, vhd};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The seeds of `target`, sorted by name; a target without seeds fails (a fuzz test that
/// tries nothing proves nothing).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Cut(usize),
    Insert(usize, Vec<u8>),
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..8u8).prop_map(|(p, b)| Mutation::Flip(p, b)),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Set(p, b)),
        1 => any::<usize>().prop_map(Mutation::Cut),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, v)| Mutation::Insert(p, v)),
        1 => (any::<usize>(), 1..64usize).prop_map(|(p, l)| Mutation::Repeat(p, l)),
    ]
}

/// Mutations aimed at headers: most land in the first 512 bytes, where the fields are.
fn mutate(seed: &[u8], muts: &[Mutation], head: bool) -> Vec<u8> {
    let mut v = seed.to_vec();
    for m in muts {
        if v.is_empty() {
            v.push(0);
        }
        let at = |p: usize, len: usize| if head { p % len.min(512) } else { p % len };
        match m {
            Mutation::Flip(p, b) => {
                let i = at(*p, v.len());
                v[i] ^= 1 << b;
            }
            Mutation::Set(p, b) => {
                let i = at(*p, v.len());
                v[i] = *b;
            }
            Mutation::Cut(p) => v.truncate(p % (v.len() + 1)),
            Mutation::Insert(p, bytes) => {
                let i = at(*p, v.len());
                v.splice(i..i, bytes.iter().copied());
            }
            Mutation::Repeat(p, l) => {
                let i = at(*p, v.len());
                let end = (i + l).min(v.len());
                let piece = v[i..end].to_vec();
                v.splice(i..i, piece);
            }
        }
    }
    v
}

fn normalized(v: &[Extent]) -> bool {
    v.iter().all(|e| e.len > 0) && v.windows(2).all(|w| w[0].end() < w[1].start)
}

/// Decodes an image with thinsr's stream readers; every write must fall inside the disk.
fn read_image(bytes: &[u8]) {
    let mut r = bytes;
    let mut input = Input::new(&mut r, "fuzz");
    let Ok(head) = input.peek(8).map(<[u8]>::to_vec) else {
        return;
    };
    let check = |size: u64| {
        move |at: u64, data: &[u8]| {
            assert!(
                at + data.len() as u64 <= size,
                "a write at {at} beyond {size}"
            );
            Ok(())
        }
    };
    if head.starts_with(qcow2::MAGIC) {
        if let Ok(h) = qcow2::read_header(&mut input) {
            let _ = qcow2::decode(&mut input, &h, &mut check(h.size));
        }
    } else if let Ok(h) = vhd::read_header(&mut input) {
        let _ = vhd::decode(&mut input, &h, &mut check(h.size));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn xml(bytes: &[u8]) {
    let s = text(bytes);
    for dev in [0, 1, 2, 7] {
        if let Ok(m) = thin_xml::parse_map(&s, dev) {
            assert!(m.block > 0 && normalized(&m.extents()));
        }
    }
    if let (Ok(a), Ok(b)) = (thin_xml::parse_map(&s, 1), thin_xml::parse_map(&s, 2)) {
        if let Ok(d) = block_map::diff(&a, &b) {
            assert!(d.block > 0 && normalized(&d.changed) && normalized(&d.removed));
        }
    }
    if let Ok(m) = block_map::BlockMap::decode(bytes) {
        assert_eq!(block_map::BlockMap::decode(&m.encode()), Ok(m));
    }
}

fn meta(bytes: &[u8]) {
    let _ = crate::engine::meta::decode_for_fuzz(bytes);
}

/// A pool's metadata blocks, checksums recomputed after mutation so that the tree walk,
/// not only the checksum test, meets the damage.
fn thin_details(bytes: &[u8]) {
    use crate::host::thin::details::{image::reseal, parse, BLOCK};
    let mut blocks: Vec<Vec<u8>> = bytes.chunks(BLOCK).map(<[u8]>::to_vec).collect();
    for b in &mut blocks {
        b.resize(BLOCK, 0);
        reseal(b);
    }
    let mut reads = 0;
    let parsed = parse(|n| {
        reads += 1;
        assert!(
            reads <= blocks.len() + 3,
            "read more blocks than the device has"
        );
        blocks
            .get(n as usize)
            .cloned()
            .ok_or_else(|| "past the end".into())
    });
    if let Ok(d) = parsed {
        assert!(d.data_block_size.0 % 512 == 0);
    }
}

fn strings(bytes: &[u8]) {
    let s = text(bytes);
    let name = crate::engine::names::sanitize(&s, 64);
    assert!(
        crate::engine::names::is_valid_lvm_name(&name) && name.len() <= 64,
        "{s:?} -> {name:?}"
    );
    let _ = crate::engine::names::check_label(&s);
    let _ = crate::engine::names::check_key(&s);
    let _ = crate::units::parse_size(&s);
    let _ = crate::units::parse_new_size(&s);
    let _ = crate::units::parse_pool_size(&s);
    match crate::engine::template::parse_uri(&s) {
        Ok(crate::engine::template::Source::Scheme(scheme)) => {
            assert!(crate::engine::template::check_scheme(&scheme), "{s:?}")
        }
        Ok(crate::engine::template::Source::File(p)) => assert!(p.is_absolute(), "{s:?}"),
        _ => {}
    }
    let _ = crate::image::parse_qemu_map(bytes);
}

/// Every seed as it is, then `cases` mutations of them.
fn run(target: &str, head: bool, f: fn(&[u8])) {
    let seeds = corpus(target);
    for s in &seeds {
        f(s);
    }
    let cases = std::env::var("THINSR_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(300);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (any::<usize>(), proptest::collection::vec(mutation(), 1..6));
    runner
        .run(&strategy, |(i, muts)| {
            f(&mutate(&seeds[i % seeds.len()], &muts, head));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{target}: {e}"));
}

#[test]
fn fuzz_qcow2_reader() {
    run("qcow2", true, read_image);
}

#[test]
fn fuzz_qcow2_reader_tables() {
    run("qcow2", false, read_image);
}

#[test]
fn fuzz_vhd_reader() {
    run("vhd", true, read_image);
}

#[test]
fn fuzz_thin_xml() {
    run("thin_xml", false, xml);
}

#[test]
fn fuzz_metadata() {
    run("meta", true, meta);
    // The seeds are real metadata and must decode.
    for s in corpus("meta") {
        assert!(matches!(
            crate::engine::meta::decode_for_fuzz(&s),
            Some(Ok(_))
        ));
    }
}

#[test]
fn fuzz_thin_details() {
    run("thin_details", false, thin_details);
}

#[test]
fn fuzz_names_sizes_uris() {
    run("strings", false, strings);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn any_text_is_handled(s in any::<String>()) {
        strings(s.as_bytes());
        xml(s.as_bytes());
    }
}

/// Regenerates the seeds (run by hand; qemu-img and thin_restore needed).
#[test]
#[ignore]
fn write_corpus() {
    use std::process::Command;
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = corpus_dir(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    let tmp = std::env::temp_dir().join(format!("thinsr-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    // A 3 MiB disk with data in three places, as qemu writes it and as thinsr does.
    let raw = tmp.join("d.raw");
    let mut disk = vec![0u8; 1 << 20];
    for (i, at) in [0usize, 70_000, (1 << 20) - 4096].iter().enumerate() {
        disk[*at..*at + 4096].fill(i as u8 + 1);
    }
    std::fs::write(&raw, &disk).unwrap();
    for (fmt, opts, target, name) in [
        ("qcow2", "cluster_size=4096", "qcow2", "qemu-4k.qcow2"),
        (
            "qcow2",
            "compat=0.10,cluster_size=512",
            "qcow2",
            "qemu-v2-512.qcow2",
        ),
        ("vpc", "subformat=dynamic", "vhd", "qemu.vhd"),
    ] {
        let out = tmp.join(name);
        let st = Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", fmt, "-o", opts])
            .arg(&raw)
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        put(target, name, &std::fs::read(&out).unwrap());
    }
    let data = crate::image::extent::align(
        &[Extent::new(0, 4096), Extent::new(70_000, 4096)],
        qcow2::CLUSTER,
        1 << 20,
    );
    let progress = crate::progress::Silent;
    for target in ["qcow2", "vhd"] {
        let mut src = disk.clone();
        let mut outv = Vec::new();
        let mut out = crate::image::stream::Out::stream(&mut outv, "corpus");
        let mut feed = crate::image::Feed::new(&mut src, &progress);
        if target == "qcow2" {
            let img = qcow2::Image {
                size: 1 << 20,
                data: &data,
                zero: &[],
                backing: None,
            };
            qcow2::write(&img, &mut feed, &mut out).unwrap();
        } else {
            vhd::write(1 << 20, &data, &[1; 16], &mut feed, &mut out).unwrap();
        }
        out.finish().unwrap();
        put(target, &format!("thinsr.{target}"), &outv);
    }
    put(
        "thin_xml",
        "dump-0.9.xml",
        include_bytes!("../fuzz/seeds/dump-0.9.xml"),
    );
    put(
        "thin_xml",
        "dump-1.x-shared.xml",
        include_bytes!("../fuzz/seeds/dump-1.x-shared.xml"),
    );
    put(
        "thin_xml",
        "delta.xml",
        include_bytes!("../fuzz/seeds/delta.xml"),
    );
    put(
        "thin_xml",
        "delta-verbose.xml",
        include_bytes!("../fuzz/seeds/delta-verbose.xml"),
    );
    let m: crate::engine::meta::SrMeta =
        serde_yaml::from_str(include_str!("../fuzz/seeds/meta.yaml")).unwrap();
    put(
        "meta",
        "slot",
        &crate::engine::meta::encode_for_fuzz(&m, false),
    );
    put(
        "meta",
        "slot-json",
        &crate::engine::meta::encode_for_fuzz(&m, true),
    );
    put(
        "thin_details",
        "sample",
        &crate::host::thin::details::image::sample().concat(),
    );
    for (i, s) in [
        "Windows 10 (64-bit)",
        "../../etc",
        "-snapshot_tmeta",
        "Ünïcødé ☃ disk",
        "40G",
        "+10G",
        "1.5T",
        "50%",
        "0x10",
        "18446744073709551615b",
        "file:///srv/images/debian.qcow2",
        "nbd://host:10809/export",
        "s3+x://bucket/key",
        "file://relative",
        "A B://x",
    ]
    .iter()
    .enumerate()
    {
        put("strings", &format!("{i:02}"), s.as_bytes());
    }
    put("strings", "qemu-map.json", br#"[{ "start": 0, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true, "offset": 327680}]"#);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn mutations_change_what_they_say() {
    let s = b"abcdef".to_vec();
    assert_eq!(mutate(&s, &[Mutation::Set(1, b'X')], false), b"aXcdef");
    assert_eq!(mutate(&s, &[Mutation::Cut(3)], false), b"abc");
    assert_eq!(
        mutate(&s, &[Mutation::Insert(0, vec![b'Z'])], false),
        b"Zabcdef"
    );
    assert_eq!(mutate(&s, &[Mutation::Repeat(4, 10)], false), b"abcdefef");
    assert_eq!(mutate(&s, &[Mutation::Flip(0, 0)], false), b"`bcdef");
}
