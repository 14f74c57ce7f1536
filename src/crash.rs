//! Crash and pause points for the VM tests, compiled in only with the `testing` feature.
//! `THINSR_CRASH_AT=<point>` aborts the process there (as a kill would);
//! `THINSR_PAUSE_AT=<point>` sleeps `THINSR_PAUSE_MS` (default 2000) there, holding any lock;
//! `THINSR_FAULT_AT=<step>[,<step>...]` makes those steps fail (`fault`).

/// Aborts or pauses at `name` when the environment asks for it.
#[inline]
pub fn point(name: &str) {
    #[cfg(feature = "testing")]
    {
        if std::env::var("THINSR_CRASH_AT").is_ok_and(|v| v == name) {
            abort(name);
        }
        if std::env::var("THINSR_PAUSE_AT").is_ok_and(|v| v == name) {
            let ms = std::env::var("THINSR_PAUSE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000);
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    #[cfg(not(feature = "testing"))]
    let _ = name;
}

/// True when the test asks for a torn write at `name`.
#[inline]
pub fn torn(name: &str) -> bool {
    #[cfg(feature = "testing")]
    return std::env::var("THINSR_CRASH_AT").is_ok_and(|v| v == name);
    #[cfg(not(feature = "testing"))]
    {
        let _ = name;
        false
    }
}

/// True when the test asks step `name` to fail as the kernel or a device might
/// (`THINSR_FAULT_AT`, names separated by commas): the caller then fails it itself.
#[inline]
pub fn fault(name: &str) -> bool {
    #[cfg(feature = "testing")]
    return std::env::var("THINSR_FAULT_AT").is_ok_and(|v| v.split(',').any(|f| f == name));
    #[cfg(not(feature = "testing"))]
    {
        let _ = name;
        false
    }
}

pub fn abort(name: &str) -> ! {
    eprintln!("thinsr: crash point {name}: aborting");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn sources(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }

    /// Every crash point in the code is walked by some VM test (named there in quotes), so
    /// a new multi-step operation cannot land without its crash test.
    #[test]
    fn every_crash_point_is_walked_by_a_vm_test() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (mut src, mut tests) = (Vec::new(), Vec::new());
        sources(&root.join("src"), &mut src);
        sources(&root.join("tests"), &mut tests);
        let tests = tests.concat();
        let mut points = Vec::new();
        for text in &src {
            for marker in ["crash::point(\"", "crash::torn(\""] {
                for (i, _) in text.match_indices(marker) {
                    let rest = &text[i + marker.len()..];
                    points.push(rest[..rest.find('"').unwrap()].to_string());
                }
            }
        }
        points.sort();
        points.dedup();
        assert!(points.len() >= 25, "found only {points:?}");
        let unwalked: Vec<_> = points
            .iter()
            .filter(|p| !tests.contains(&format!("\"{p}\"")))
            .collect();
        assert!(
            unwalked.is_empty(),
            "crash points no VM test walks: {unwalked:?}"
        );
    }
}
