//! multiprocessing's logger over the `log` facade (`util.py`'s
//! `get_logger`, `log_to_stderr`, and the messages of `util.debug`/`info`).
//!
//! Every message of mp-context and mp-forkserver has the `log` target
//! [`LOGGER_NAME`] (`multiprocessing`), so it reaches whatever logger the
//! program installed (`env_logger` with `RUST_LOG=multiprocessing=info`,
//! say). [`log_to_stderr`] installs [`get_logger`]'s own instead, which
//! prints CPython's format, `[INFO/Process-1] message`, and which spawn and
//! forkserver children install again, as CPython's children do.
//!
//! The messages, where CPython's are:
//!
//! | level | message | where |
//! |---|---|---|
//! | info | `child process calling self.run()` | a child, before its target |
//! | info | `process exiting with exitcode N` | a child, after its target |
//! | info | `process shutting down` | [`shutdown`](crate::shutdown), at exit |
//! | info | `calling terminate() for daemon NAME` | shutdown |
//! | info | `calling join() for process NAME` | shutdown |
//! | info | `fork server started (pid N, EXE) at PATH` | a fork server is launched |
//! | debug | `started NAME (pid N) with the M start method` | the parent, after `start` (ours) |

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use log::LevelFilter;

use crate::{Error, Result};

/// The `log` target of every message: `multiprocessing`, CPython's
/// `util.LOGGER_NAME`.
pub const LOGGER_NAME: &str = mp_forkserver::LOG_TARGET;

/// multiprocessing's own logger (CPython's `logging.getLogger
/// ('multiprocessing')` with `propagate = 0`): a [`log::Log`] that prints
/// the messages of target [`LOGGER_NAME`] at or above its level to stderr,
/// as `[LEVEL/ProcessName] message`, and ignores every other target.
/// Get it with [`get_logger`]; [`log_to_stderr`] installs it.
#[derive(Debug)]
pub struct Logger {
    /// A `LevelFilter` as `usize`.
    level: AtomicUsize,
}

static LOGGER: Logger = Logger {
    // CPython's logger has no level of its own: the root's WARNING applies.
    level: AtomicUsize::new(LevelFilter::Warn as usize),
};

/// Whether [`LOGGER`] is the installed logger.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The inverse of `level as usize` (`Off` is 0, `Trace` 5).
fn filter_from(n: usize) -> LevelFilter {
    LevelFilter::iter().nth(n).unwrap_or(LevelFilter::Trace)
}

impl Logger {
    /// The level at and above which it prints.
    pub fn level(&self) -> LevelFilter {
        filter_from(self.level.load(Ordering::Relaxed))
    }

    /// Sets the level (CPython's `logger.setLevel`). While this logger is
    /// installed, `log`'s global maximum level follows it.
    pub fn set_level(&self, level: LevelFilter) {
        self.level.store(level as usize, Ordering::Relaxed);
        if INSTALLED.load(Ordering::Relaxed) {
            log::set_max_level(level);
        }
    }

    /// The target it prints: [`LOGGER_NAME`].
    pub fn name(&self) -> &'static str {
        LOGGER_NAME
    }
}

/// CPython's level names: `log`'s `WARN` is `WARNING`, and `TRACE` stands
/// for multiprocessing's `SUBDEBUG`.
fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "ERROR",
        log::Level::Warn => "WARNING",
        log::Level::Info => "INFO",
        log::Level::Debug => "DEBUG",
        log::Level::Trace => "SUBDEBUG",
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == LOGGER_NAME && metadata.level() <= self.level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // CPython's DEFAULT_LOGGING_FORMAT, '[%(levelname)s/%(processName)s]
        // %(message)s'; one write, so that lines of several processes on
        // one stderr do not interleave.
        let line = format!(
            "[{}/{}] {}\n",
            level_name(record.level()),
            crate::current_process().name(),
            record.args()
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// multiprocessing's logger (CPython's `get_logger`). It prints only once
/// installed, by [`log_to_stderr`]; until then the messages go to the
/// program's own logger, if any, under the target [`LOGGER_NAME`].
pub fn get_logger() -> &'static Logger {
    &LOGGER
}

/// Installs [`get_logger`]'s logger as the program's `log` logger, so that
/// multiprocessing's messages go to stderr (CPython's `log_to_stderr`),
/// and sets its level if `level` is given. Spawn and forkserver children
/// started afterwards do the same; fork children inherit it.
///
/// # Errors
///
/// [`Error::LoggerInstalled`] if the program has installed another logger
/// already: multiprocessing's messages go to that one (target
/// [`LOGGER_NAME`]), whose filter decides.
pub fn log_to_stderr(level: Option<LevelFilter>) -> Result<&'static Logger> {
    if !INSTALLED.load(Ordering::Relaxed) {
        log::set_logger(&LOGGER).map_err(|_| Error::LoggerInstalled)?;
        INSTALLED.store(true, Ordering::Relaxed);
    }
    if let Some(level) = level {
        LOGGER.level.store(level as usize, Ordering::Relaxed);
    }
    log::set_max_level(LOGGER.level());
    Ok(&LOGGER)
}

/// What a spawn or forkserver child needs to log as its parent does: the
/// level, if the parent called [`log_to_stderr`].
pub(crate) fn child_setting() -> Option<u8> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| LOGGER.level() as u8)
}

/// Applies [`child_setting`]'s value in a child.
pub(crate) fn apply_child_setting(setting: Option<u8>) {
    if let Some(level) = setting {
        let _ = log_to_stderr(Some(filter_from(level.into())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_and_names_are_cpythons() {
        for l in LevelFilter::iter() {
            assert_eq!(filter_from(l as usize), l);
        }
        assert_eq!(filter_from(LevelFilter::Trace as usize), LevelFilter::Trace);
        assert_eq!(level_name(log::Level::Warn), "WARNING");
        assert_eq!(get_logger().name(), "multiprocessing");
    }

    #[test]
    fn only_multiprocessing_messages_pass() {
        use log::Log;
        let logger = Logger {
            level: AtomicUsize::new(LevelFilter::Info as usize),
        };
        let meta = |target, level| log::Metadata::builder().target(target).level(level).build();
        assert!(logger.enabled(&meta(LOGGER_NAME, log::Level::Info)));
        assert!(!logger.enabled(&meta(LOGGER_NAME, log::Level::Debug)));
        assert!(!logger.enabled(&meta("other", log::Level::Error)));
    }
}
