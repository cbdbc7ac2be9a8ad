//! Progress for import and export on a terminal (nothing otherwise): a bar when the total is
//! known up front (import), a spinner with counts when it is not (export streams the listing);
//! messages printed through it so they do not tear the bar.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Counts of a bulk transfer and the bar that shows them.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    /// Chunks transferred.
    pub chunks: u64,
    /// Bytes transferred.
    pub bytes: u64,
}

impl Progress {
    /// Whether progress is shown at all (stderr is a terminal).
    pub fn visible() -> bool {
        std::io::stderr().is_terminal()
    }

    /// Starts counting; `verb` is shown on the bar ("importing"), `total` chunks when known.
    pub fn start(verb: &'static str, total: Option<u64>) -> Self {
        let bar = match total {
            _ if !Self::visible() => ProgressBar::hidden(),
            Some(total) => {
                let bar = ProgressBar::new(total);
                let template = format!(
                    "{verb} [{{bar:40}}] {{pos}}/{{len}} chunks {{msg}} [{{elapsed}}, eta {{eta}}]"
                );
                bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
                bar
            }
            None => {
                let bar = ProgressBar::new_spinner();
                let template = format!("{{spinner}} {verb} {{pos}} chunks {{msg}} [{{elapsed}}]");
                bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
        };
        Progress {
            bar,
            started: Instant::now(),
            chunks: 0,
            bytes: 0,
        }
    }

    /// Counts one more transferred chunk of `bytes` bytes.
    pub fn add(&mut self, bytes: u64) {
        self.chunks += 1;
        self.bytes += bytes;
    }

    /// Shows the counts (once per batch: cheap enough, never per chunk).
    pub fn update(&self) {
        self.bar.set_position(self.chunks);
        self.bar
            .set_message(format!("({})", HumanBytes(self.bytes)));
    }

    /// Prints a line on stderr without tearing the bar.
    pub fn report(&self, line: &str) {
        self.bar.suspend(|| eprintln!("cloudstore-fs: {line}"));
    }

    /// Removes the bar; returns the seconds since the start.
    pub fn finish(&self) -> f64 {
        self.bar.finish_and_clear();
        self.started.elapsed().as_secs_f64()
    }
}

impl Drop for Progress {
    /// A command that stops early must not leave a spinner behind.
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}
