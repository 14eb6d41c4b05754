//! Differential tests against C headers, for `#[test]` functions.
//!
//! A *probe* is a small C program that prints one `NAME VALUE` line per fact it takes from the
//! headers (a constant, a `sizeof`, an `offsetof`, bytes as hex, …). [`Probe`] compiles it with
//! the system C compiler (`$CC`, else `cc`), runs it and parses what it printed. [`Values`] with
//! the [`consts!`] and [`layout!`] macros collects the same names from the Rust definitions, and
//! [`assert_same`] compares both maps in both directions. `c/c_probe.h` ([`INCLUDE_DIR`], on the
//! include path of every probe) holds the C side's `NUM`, `CONST`, `SIZE` and `OFF` macros.
//!
//! Failures panic with a message naming the file, command or line at fault and, when the
//! compiler or a header is missing, the `apt-get install …` line that provides it: in a test, the
//! panic is the report.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Output},
};

/// The directory holding `c_probe.h`; every probe is compiled with `-I` on it.
pub const INCLUDE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/c");

/// Warning flags every probe is compiled with, after its own flags.
const WARNINGS: [&str; 3] = ["-Wall", "-Wextra", "-Werror"];

/// A line of probe output that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line has no space between a name and a value.
    #[error("malformed probe line {line:?} (want `NAME VALUE`)")]
    Malformed {
        /// The line.
        line: String,
    },
    /// The value is not an unsigned 64-bit decimal number.
    #[error("malformed value in probe line {line:?}: {reason}")]
    NotANumber {
        /// The line.
        line: String,
        /// Why the value does not parse.
        reason: String,
    },
    /// Two lines carry the same name.
    #[error("the probe printed {name} twice")]
    Duplicate {
        /// The name.
        name: String,
    },
}

/// Splits probe output into `NAME → VALUE`; the value is everything after the first space.
pub fn parse_lines(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    let mut lines = BTreeMap::new();
    for line in text.lines() {
        let (name, value) = line.split_once(' ').ok_or_else(|| ParseError::Malformed {
            line: line.to_owned(),
        })?;
        if lines.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(ParseError::Duplicate {
                name: name.to_owned(),
            });
        }
    }
    Ok(lines)
}

/// Like [`parse_lines`], for output whose every value is an unsigned decimal number.
pub fn parse_numbers(text: &str) -> Result<BTreeMap<String, u64>, ParseError> {
    parse_lines(text)?
        .into_iter()
        .map(|(name, value)| match value.parse::<u64>() {
            Ok(number) => Ok((name, number)),
            Err(e) => Err(ParseError::NotANumber {
                line: format!("{name} {value}"),
                reason: e.to_string(),
            }),
        })
        .collect()
}

/// A C probe: its source, where its executable goes, and what it needs to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    source: PathBuf,
    binary: PathBuf,
    flags: Vec<String>,
    packages: Vec<String>,
    required: Vec<PathBuf>,
}

impl Probe {
    /// The probe compiled from `source` into the executable `binary` (in an integration test,
    /// under `env!("CARGO_TARGET_TMPDIR")`).
    pub fn new(source: impl Into<PathBuf>, binary: impl Into<PathBuf>) -> Self {
        Probe {
            source: source.into(),
            binary: binary.into(),
            flags: Vec::new(),
            packages: Vec::new(),
            required: Vec::new(),
        }
    }

    /// Adds a compiler flag (`-std=c11`, `-O1`, …); they come before `-Wall -Wextra -Werror`.
    pub fn flag(mut self, flag: impl Into<String>) -> Self {
        self.flags.push(flag.into());
        self
    }

    /// Names a Debian package besides `gcc` that the probe needs (the one with its headers).
    pub fn package(mut self, package: impl Into<String>) -> Self {
        self.packages.push(package.into());
        self
    }

    /// Names a file (usually a header) whose absence fails the probe before compiling, with the
    /// install hint.
    pub fn require(mut self, path: impl Into<PathBuf>) -> Self {
        self.required.push(path.into());
        self
    }

    /// What to install when the compiler or a header is missing.
    pub fn install_hint(&self) -> String {
        let mut hint = String::from("this test needs a C compiler");
        if !self.packages.is_empty() {
            hint.push_str(" and the headers of ");
            hint.push_str(&self.packages.join(", "));
        }
        hint.push_str(": apt-get install gcc");
        for package in &self.packages {
            hint.push(' ');
            hint.push_str(package);
        }
        hint
    }

    /// Compiles and runs the probe and returns what it printed.
    ///
    /// # Panics
    ///
    /// If a required file is missing, the compiler cannot be run or fails, or the probe cannot be
    /// run, fails or prints something that is not UTF-8; the message says which.
    #[track_caller]
    pub fn output(&self) -> String {
        let hint = self.install_hint();
        for file in &self.required {
            assert!(file.exists(), "{} not found; {hint}", file.display());
        }
        let cc = compiler();
        // A private output path per call: tests in one binary run probes in parallel, and running
        // a file another call is still writing fails with ETXTBSY.
        static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut binary = self.binary.clone().into_os_string();
        binary.push(format!("-{}-{call}", std::process::id()));
        let binary = PathBuf::from(binary);
        let compiled = match Command::new(&cc)
            .args(&self.flags)
            .args(WARNINGS)
            .args(["-I", INCLUDE_DIR, "-o"])
            .arg(&binary)
            .arg(&self.source)
            .output()
        {
            Ok(compiled) => compiled,
            Err(e) => panic!("cannot run the C compiler `{cc}` ({e}); {hint}"),
        };
        assert!(
            compiled.status.success(),
            "compiling {} with `{cc}` failed ({}; missing headers? {hint}):\n{}",
            self.source.display(),
            compiled.status,
            stderr(&compiled)
        );
        let run = Command::new(&binary).output();
        let _ = std::fs::remove_file(&binary);
        let run = match run {
            Ok(run) => run,
            Err(e) => panic!("cannot run {}: {e}", binary.display()),
        };
        assert!(
            run.status.success(),
            "{} failed ({}):\n{}",
            binary.display(),
            run.status,
            stderr(&run)
        );
        match String::from_utf8(run.stdout) {
            Ok(text) => text,
            Err(e) => panic!(
                "{} printed something that is not UTF-8: {e}",
                binary.display()
            ),
        }
    }

    /// Runs the probe ([`Probe::output`]) and splits its lines ([`parse_lines`]).
    ///
    /// # Panics
    ///
    /// As [`Probe::output`], and on a malformed or repeated line.
    #[track_caller]
    pub fn lines(&self) -> BTreeMap<String, String> {
        match parse_lines(&self.output()) {
            Ok(lines) => lines,
            Err(e) => panic!("{}: {e}", self.source.display()),
        }
    }

    /// Runs the probe ([`Probe::output`]) and parses its numbers ([`parse_numbers`]).
    ///
    /// # Panics
    ///
    /// As [`Probe::output`], and on a malformed or repeated line or a value that is not a number.
    #[track_caller]
    pub fn numbers(&self) -> BTreeMap<String, u64> {
        match parse_numbers(&self.output()) {
            Ok(numbers) => numbers,
            Err(e) => panic!("{}: {e}", self.source.display()),
        }
    }
}

/// `$CC` if set, else `cc`.
fn compiler() -> String {
    std::env::var("CC")
        .ok()
        .filter(|cc| !cc.trim().is_empty())
        .unwrap_or_else(|| "cc".to_owned())
}

fn stderr(output: &Output) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&output.stderr)
}

/// The Rust side's `NAME → VALUE` pairs. Putting a name twice panics, so a copy-paste slip in a
/// test's list cannot hide a name that is never compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values(BTreeMap<String, u64>);

impl Values {
    /// No values yet.
    pub fn new() -> Self {
        Values::default()
    }

    /// Adds `name`.
    ///
    /// # Panics
    ///
    /// If `name` is already there.
    #[track_caller]
    pub fn put(&mut self, name: impl Into<String>, value: u64) {
        let name = name.into();
        assert!(!self.0.contains_key(&name), "{name} listed twice");
        self.0.insert(name, value);
    }

    /// Adds `name` with a size or offset.
    ///
    /// # Panics
    ///
    /// If `name` is already there.
    #[track_caller]
    pub fn put_usize(&mut self, name: impl Into<String>, value: usize) {
        let name = name.into();
        let Ok(value) = u64::try_from(value) else {
            panic!("{name}: {value} does not fit 64 bits");
        };
        self.put(name, value);
    }

    /// The pairs.
    pub fn map(&self) -> &BTreeMap<String, u64> {
        &self.0
    }
}

/// Puts each listed constant into a [`Values`] under its own name. The constants must be in scope
/// by those names and convert to `u64` with `From`.
///
/// ```
/// const FLAG_A: u16 = 1;
/// const FLAG_B: u32 = 2;
/// let mut values = c_probe::Values::new();
/// c_probe::consts!(values; FLAG_A, FLAG_B);
/// assert_eq!(values.map().get("FLAG_B"), Some(&2));
/// ```
#[macro_export]
macro_rules! consts {
    ($values:expr; $($name:ident),* $(,)?) => {
        $( $values.put(::core::stringify!($name), ::core::primitive::u64::from($name)); )*
    };
}

/// Puts the layout of a `#[repr(C)]` Rust type that mirrors `struct $c` into a [`Values`]:
/// `sizeof.$c` and `offsetof.$c.FIELD` for each listed field, the names the C macros `SIZE` and
/// `OFF` of `c_probe.h` print. A raw field name (`r#ref`) is printed without its `r#`.
///
/// ```
/// #[repr(C)]
/// struct Pair {
///     a: u16,
///     r#ref: u32,
/// }
/// let mut values = c_probe::Values::new();
/// c_probe::layout!(values; "pair", Pair, [a, r#ref]);
/// assert_eq!(values.map().get("sizeof.pair"), Some(&8));
/// assert_eq!(values.map().get("offsetof.pair.ref"), Some(&4));
/// ```
#[macro_export]
macro_rules! layout {
    ($values:expr; $c:literal, $ty:ty, [$($field:tt),* $(,)?]) => {
        $values.put_usize(::std::format!("sizeof.{}", $c), ::core::mem::size_of::<$ty>());
        $(
            $values.put_usize(
                ::std::format!(
                    "offsetof.{}.{}",
                    $c,
                    ::core::stringify!($field).trim_start_matches("r#")
                ),
                ::core::mem::offset_of!($ty, $field),
            );
        )*
    };
}

/// Every disagreement between the probe's numbers and the Rust ones, one line each: a name only
/// one side has, or a value that differs.
pub fn mismatches(c: &BTreeMap<String, u64>, rust: &BTreeMap<String, u64>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, &value) in c {
        match rust.get(name) {
            None => problems.push(format!("{name}: in the C probe but not checked in Rust")),
            Some(&r) if r != value => problems.push(format!(
                "{name}: Rust {r} ({r:#x}) != C {value} ({value:#x})"
            )),
            Some(_) => {}
        }
    }
    for name in rust.keys().filter(|name| !c.contains_key(*name)) {
        problems.push(format!(
            "{name}: checked in Rust but not printed by the C probe"
        ));
    }
    problems
}

/// Asserts that the probe printed exactly the Rust names, with the same values.
///
/// # Panics
///
/// With `"{what} mismatch:"` followed by every [`mismatches`] line.
#[track_caller]
pub fn assert_same(what: &str, c: &BTreeMap<String, u64>, rust: &Values) {
    let problems = mismatches(c, rust.map());
    assert!(
        problems.is_empty(),
        "{what} mismatch:\n{}",
        problems.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|&(n, v)| (n.to_owned(), v)).collect()
    }

    #[test]
    fn lines_split_at_the_first_space() {
        let lines = parse_lines("A 1\nPCM_FORMAT_S8 0 s8\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines["A"], "1");
        assert_eq!(lines["PCM_FORMAT_S8"], "0 s8");
    }

    #[test]
    fn malformed_and_repeated_lines_are_errors() {
        assert_eq!(
            parse_lines("A 1\nB\n"),
            Err(ParseError::Malformed { line: "B".into() })
        );
        assert_eq!(
            parse_lines("A 1\nA 2\n"),
            Err(ParseError::Duplicate { name: "A".into() })
        );
    }

    #[test]
    fn numbers_must_be_unsigned_decimals() {
        assert_eq!(
            parse_numbers("A 7\nB 18446744073709551615\n").unwrap(),
            map(&[("A", 7), ("B", u64::MAX)])
        );
        for bad in ["A 0x10", "A -1", "A 1 2", "A "] {
            let err = parse_numbers(bad).unwrap_err();
            assert!(
                matches!(&err, ParseError::NotANumber { line, .. } if line == bad),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn mismatches_are_found_in_both_directions() {
        let c = map(&[("SAME", 1), ("DIFF", 16), ("ONLY_C", 3)]);
        let rust = map(&[("SAME", 1), ("DIFF", 17), ("ONLY_RUST", 4)]);
        assert_eq!(
            mismatches(&c, &rust),
            [
                "DIFF: Rust 17 (0x11) != C 16 (0x10)",
                "ONLY_C: in the C probe but not checked in Rust",
                "ONLY_RUST: checked in Rust but not printed by the C probe",
            ]
        );
        assert!(mismatches(&c, &c).is_empty());
    }

    #[test]
    #[should_panic(expected = "demo mismatch:\nX: Rust 2 (0x2) != C 1 (0x1)")]
    fn assert_same_lists_the_mismatches() {
        let mut rust = Values::new();
        rust.put("X", 2);
        assert_same("demo", &map(&[("X", 1)]), &rust);
    }

    #[test]
    #[should_panic(expected = "X listed twice")]
    fn a_rust_name_put_twice_panics() {
        let mut rust = Values::new();
        rust.put("X", 1);
        rust.put_usize("X", 1);
    }

    #[test]
    fn the_install_hint_names_the_packages() {
        let probe = Probe::new("p.c", "p");
        assert_eq!(
            probe.install_hint(),
            "this test needs a C compiler: apt-get install gcc"
        );
        let probe = probe.package("linux-libc-dev");
        assert_eq!(
            probe.install_hint(),
            "this test needs a C compiler and the headers of linux-libc-dev: \
             apt-get install gcc linux-libc-dev"
        );
    }
}
