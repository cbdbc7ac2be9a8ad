//! The daemon's logger: env_logger, with one of fuser's messages put in its place. fuser logs
//! "Failed to send FUSE reply: No such file or directory" as an ERROR when the kernel no longer
//! waits for a reply: the request was interrupted (its program got a signal, as Go programs
//! such as restic and rclone do all the time). That is no failure of the mount: debug.

use log::{Level, Log, Metadata, Record};

/// Wraps env_logger; see the module's doc.
pub struct DaemonLogger(env_logger::Logger);

/// fuser's message for a reply to a request the kernel gave up on.
const INTERRUPTED: &str = "Failed to send FUSE reply: No such file or directory";

impl DaemonLogger {
    /// Installs the logger: `RUST_LOG` as env_logger reads it, `default` without it.
    pub fn init(default: &str) {
        Self::install(
            env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
                .build(),
        );
    }

    /// Installs `inner`, an env_logger configured by the caller (level, target, format).
    pub fn install(inner: env_logger::Logger) {
        let max = inner.filter();
        if log::set_boxed_logger(Box::new(DaemonLogger(inner))).is_ok() {
            log::set_max_level(max);
        }
    }

    /// Whether `record` is fuser's report of an interrupted request.
    fn is_interrupted_reply(record: &Record) -> bool {
        record.level() == Level::Error
            && record.target().starts_with("fuser")
            && record.args().to_string().starts_with(INTERRUPTED)
    }
}

impl Log for DaemonLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if Self::is_interrupted_reply(record) {
            let quiet = Metadata::builder()
                .level(Level::Debug)
                .target(record.target())
                .build();
            if self.0.enabled(&quiet) {
                let text = format!(
                    "{} (an interrupted request: the kernel no longer waited for the reply)",
                    record.args()
                );
                self.0.log(
                    &Record::builder()
                        .metadata(quiet)
                        .args(format_args!("{text}"))
                        .build(),
                );
            }
            return;
        }
        self.0.log(record)
    }

    fn flush(&self) {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_interrupted_reply_is_quieted() {
        let check = |level, target, text: &str| {
            DaemonLogger::is_interrupted_reply(
                &Record::builder()
                    .level(level)
                    .target(target)
                    .args(format_args!("{text}"))
                    .build(),
            )
        };
        assert!(check(Level::Error, "fuser::reply", INTERRUPTED));
        assert!(!check(
            Level::Error,
            "fuser::reply",
            "Failed to send FUSE reply: No such device"
        ));
        assert!(!check(Level::Error, "cloudstore_fs", INTERRUPTED));
    }
}
