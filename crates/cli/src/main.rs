//! `xen-snd`: the command-line tool for guests — a userspace Xen para-virtual sound frontend
//! built on the engine (`xen-snd-engine`).
//!
//! * `xen-snd status [--connect] [--json]` — the vsnd cards of this guest: backend domain and
//!   state, PCM devices, streams with direction, formats, rates, channels, buffer size and
//!   unique-id, the frontend state; with `--connect` also what the backend allows
//!   (HW_PARAM_QUERY) after a full handshake.
//! * `xen-snd play FILE.wav` — plays a WAV file on a playback stream; the summary on stdout ends
//!   with `frames <n>` and `sha256 <hex>` (the SHA-256 of the PCM bytes sent, to compare with
//!   the backend's).
//! * `xen-snd record FILE.wav --seconds S` — records from a capture stream into a WAV file.
//!
//! Errors are one line on stderr, `xen-snd: <what failed>`, with an exit code per kind of
//! failure (see `xen-snd --help`). SIGINT and SIGTERM stop the stream, close it and shut the
//! frontend down (state 5, then 6) before exiting with 130 or 143.
//!
//! # Test hook
//!
//! With the `test-hook` feature (default), setting `XEN_SND_TEST_WORLD` makes the tool run
//! against an in-process fake Xen with the reference backend instead of the real devices (the
//! engine's test world; see `testworld.rs`). It is how `tests/` exercise the tool on machines
//! without Xen.
//! `XEN_SND_DEVICE_DIR` (default `/dev/xen`) moves the real devices, which the tests use to
//! provoke "no Xen" and "permission denied".

use std::process::ExitCode;

use crate::args::Command;
use crate::env::Env;
use crate::error::{CliError, EXIT_OK};
use crate::sys::Signals;

mod args;
mod cards;
mod env;
mod error;
mod json;
mod link;
mod play;
mod record;
mod session;
mod status;
mod sys;
#[cfg(feature = "test-hook")]
mod testworld;
mod wav;

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn run(cmd: &Command, env: &Env) -> Result<(), CliError> {
    let signals = || {
        Signals::install()
            .map_err(|e| CliError::Failed(format!("installing the signal handlers: {e}")))
    };
    match cmd {
        Command::Help(_) | Command::Version => Ok(()),
        Command::Status(a) => status::run(env, a, &signals()?),
        Command::Play(a) => play::run(env, a, &signals()?),
        Command::Record(a) => record::run(env, a, &signals()?),
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd = match args::parse(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xen-snd: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    match &cmd {
        Command::Help(text) => {
            print!("{text}");
            return ExitCode::from(EXIT_OK);
        }
        Command::Version => {
            println!("xen-snd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::from(EXIT_OK);
        }
        _ => {}
    }
    let env = match Env::from_process() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("xen-snd: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let result = run(&cmd, &env);
    env.finish();
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("xen-snd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(super::hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(super::hex(&[]), "");
    }
}
