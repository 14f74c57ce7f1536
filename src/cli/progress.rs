//! Progress on stderr: an indicatif bar on a terminal, a plain line every few seconds
//! otherwise (cron mail, logs, the xapi plugin), nothing with --quiet.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::progress::Progress;
use crate::units::Bytes;

/// Seconds between plain progress lines: `THINSR_PROGRESS_INTERVAL`, 3 by default.
fn interval() -> Duration {
    std::env::var("THINSR_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(3))
}

enum Style {
    Bar,
    Lines(Duration),
    Silent,
}

struct Work {
    what: String,
    total: u64,
    done: u64,
    start: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

pub struct Reporter {
    style: Style,
    work: RefCell<Option<Work>>,
}

impl Reporter {
    pub fn new(quiet: bool) -> Reporter {
        let style = if quiet {
            Style::Silent
        } else if std::io::stderr().is_terminal() {
            Style::Bar
        } else {
            Style::Lines(interval())
        };
        Reporter {
            style,
            work: RefCell::new(None),
        }
    }
}

fn rate(bytes: u64, since: Instant) -> String {
    let secs = since.elapsed().as_secs_f64().max(0.001);
    format!("{}/s", Bytes((bytes as f64 / secs) as u64))
}

impl Progress for Reporter {
    fn begin(&self, what: &str, total: u64) {
        let now = Instant::now();
        let bar = match self.style {
            Style::Silent => return,
            Style::Lines(_) => {
                eprintln!("thinsr: {what}: {}", Bytes(total));
                None
            }
            Style::Bar => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                bar.set_message(what.to_string());
                Some(bar)
            }
        };
        *self.work.borrow_mut() = Some(Work {
            what: what.into(),
            total,
            done: 0,
            start: now,
            last_line: now,
            bar,
        });
    }

    fn set(&self, done: u64) {
        let mut work = self.work.borrow_mut();
        let Some(w) = work.as_mut() else { return };
        w.done = done;
        if let Some(bar) = &w.bar {
            bar.set_position(done);
        } else if let Style::Lines(every) = self.style {
            if w.last_line.elapsed() >= every && done < w.total {
                w.last_line = Instant::now();
                let left = w.total - done;
                let per_sec = done as f64 / w.start.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "thinsr: {}: {} of {} ({:.0}%), {}, about {:.0} s left",
                    w.what,
                    Bytes(done),
                    Bytes(w.total),
                    done as f64 * 100.0 / w.total.max(1) as f64,
                    rate(done, w.start),
                    left as f64 / per_sec.max(1.0)
                );
            }
        }
    }

    fn end(&self) {
        let Some(w) = self.work.borrow_mut().take() else {
            return;
        };
        if let Some(bar) = w.bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "thinsr: {}: {} of {} in {:.1} s ({})",
            w.what,
            Bytes(w.done),
            Bytes(w.total),
            w.start.elapsed().as_secs_f64(),
            rate(w.done, w.start)
        );
    }
}
