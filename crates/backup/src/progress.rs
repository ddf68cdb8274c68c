//! Progress bars for the technician's long work (restoring documents or a base backup from
//! the repository): rustic's progress reports drawn with `indicatif` on the terminal. Off
//! unless a command asks for them ([`on_terminal`]); the watchdog's repository work keeps
//! rustic's default, a log line at each step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustic_core::{NoProgressBars, Progress, ProgressBars, ProgressType, RusticProgress};

static ON_TERMINAL: AtomicBool = AtomicBool::new(false);

/// From now on, this process's repository work draws progress bars on standard error when it
/// is a terminal (and nothing when it is not: a log or a pipe gets the step lines only).
pub fn on_terminal() {
    ON_TERMINAL.store(true, Ordering::Relaxed);
}

/// The progress reports the repository is opened with.
pub(crate) fn bars() -> Bars {
    if ON_TERMINAL.load(Ordering::Relaxed) {
        Bars(Arc::new(TerminalBars))
    } else {
        Bars(Arc::new(NoProgressBars))
    }
}

/// Either kind, as one type.
#[derive(Debug, Clone)]
pub(crate) struct Bars(Arc<dyn ProgressBars>);

impl ProgressBars for Bars {
    fn progress(&self, kind: ProgressType, prefix: &str) -> Progress {
        self.0.progress(kind, prefix)
    }
}

#[derive(Debug)]
struct TerminalBars;

impl ProgressBars for TerminalBars {
    fn progress(&self, kind: ProgressType, prefix: &str) -> Progress {
        let template = match kind {
            ProgressType::Spinner => "{spinner} {prefix} [{elapsed}]",
            ProgressType::Counter => "{prefix} [{elapsed}] {wide_bar} {pos}/{len} ({eta} left)",
            ProgressType::Bytes => {
                "{prefix} [{elapsed}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ({eta} left)"
            }
        };
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            )
            .with_prefix(prefix.to_owned());
        if matches!(kind, ProgressType::Spinner) {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Progress::new(Bar {
            bar,
            spinner: matches!(kind, ProgressType::Spinner),
        })
    }
}

#[derive(Debug)]
struct Bar {
    bar: ProgressBar,
    /// A spinner only says a step is under way: it goes when the step is done.
    spinner: bool,
}

impl RusticProgress for Bar {
    fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }
    fn set_length(&self, len: u64) {
        self.bar.set_length(len);
    }
    fn set_title(&self, title: &str) {
        self.bar.set_prefix(title.to_owned());
    }
    fn inc(&self, inc: u64) {
        self.bar.inc(inc);
    }
    fn finish(&self) {
        if self.spinner {
            self.bar.finish_and_clear();
        } else {
            self.bar.finish();
        }
    }
}
