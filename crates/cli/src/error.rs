//! The tool's errors: one line each, with an exit code per kind of failure (listed in `--help`).

use std::path::Path;

/// Exit code of a successful run.
pub const EXIT_OK: u8 = 0;

/// Why a command failed. Every message names what failed (device, card, stream, file) and, where
/// it helps, what to do; the kind decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad command line.
    #[error("{0} (see xen-snd --help)")]
    Usage(String),
    /// Not running on Xen: a Xen device is missing.
    #[error("{0}")]
    NoXen(String),
    /// A Xen device exists but may not be opened.
    #[error("{0}")]
    Permission(String),
    /// No vsnd card, or not the card or stream asked for.
    #[error("{0}")]
    NoDevice(String),
    /// The backend did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The stream does not allow the format, rate or channel count.
    #[error("{0}")]
    Unsupported(String),
    /// The input or output file is unusable.
    #[error("{0}")]
    File(String),
    /// Anything else (a stream failure, a xenstore error, ...).
    #[error("{0}")]
    Failed(String),
    /// Interrupted by a signal after a clean shutdown (the number is the signal).
    #[error("interrupted by {}", crate::sys::signal_name(*.0))]
    Interrupted(i32),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NoXen(_) => 3,
            CliError::Permission(_) => 4,
            CliError::NoDevice(_) => 5,
            CliError::Timeout(_) => 6,
            CliError::Unsupported(_) => 7,
            CliError::File(_) => 8,
            CliError::Interrupted(sig) => {
                u8::try_from(128 + sig.clamp(&0, &127)).unwrap_or(u8::MAX)
            }
        }
    }

    /// A file error naming the path.
    pub fn file(path: &Path, what: impl std::fmt::Display) -> CliError {
        CliError::File(format!("{}: {what}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_per_kind() {
        let all = [
            CliError::Failed(String::new()),
            CliError::Usage(String::new()),
            CliError::NoXen(String::new()),
            CliError::Permission(String::new()),
            CliError::NoDevice(String::new()),
            CliError::Timeout(String::new()),
            CliError::Unsupported(String::new()),
            CliError::File(String::new()),
        ];
        let mut codes: Vec<u8> = all.iter().map(CliError::exit_code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(CliError::Interrupted(libc::SIGINT).exit_code(), 130);
        assert_eq!(CliError::Interrupted(libc::SIGTERM).exit_code(), 143);
        assert_eq!(
            CliError::Interrupted(libc::SIGINT).to_string(),
            "interrupted by SIGINT"
        );
    }
}
