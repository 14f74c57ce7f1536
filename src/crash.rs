//! Crash and pause points for the VM tests, compiled in only with the `testing` feature.
//! `THINSR_CRASH_AT=<point>` aborts the process there (as a kill would);
//! `THINSR_PAUSE_AT=<point>` sleeps `THINSR_PAUSE_MS` (default 2000) there, holding any lock.

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

pub fn abort(name: &str) -> ! {
    eprintln!("thinsr: crash point {name}: aborting");
    std::process::abort()
}
