//! Errors and warnings of the configuration model. Each names the node it is about by its path
//! relative to the device directory.

use core::fmt;
use std::error::Error as StdError;
use std::sync::Arc;

/// The source operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceOp {
    /// [`ConfigSource::read`](super::ConfigSource::read).
    Read,
    /// [`ConfigSource::list`](super::ConfigSource::list).
    List,
}

impl fmt::Display for SourceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SourceOp::Read => "read",
            SourceOp::List => "list",
        })
    }
}

/// Why a card or a stream has no usable configuration.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Reading the configuration failed (not a configuration problem); fails the whole card.
    #[error("{}: {op} failed: {source}", Node(.path))]
    Source {
        /// The operation.
        op: SourceOp,
        /// The node asked for.
        path: String,
        /// What the source reported.
        #[source]
        source: Arc<dyn StdError + Send + Sync + 'static>,
    },
    /// A mandatory node is absent (a stream's `type`).
    #[error("{}: missing", Node(.path))]
    Missing {
        /// The absent node.
        path: String,
    },
    /// A node holds a value that cannot be used.
    #[error("{}: invalid value {}: {reason}", Node(.path), Shown(.value))]
    Invalid {
        /// The node.
        path: String,
        /// Its value, verbatim.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The effective `channels-min` of a stream is greater than its effective `channels-max`.
    #[error(
        "{}: empty channel range: channels-min {min} (from {}) > channels-max {max} (from {})",
        Node(.path), Node(.min_from), Node(.max_from)
    )]
    ChannelRange {
        /// The more specific of `min_from` and `max_from` (the key to fix first).
        path: String,
        /// Effective minimum.
        min: u8,
        /// Node the minimum came from (or [`BUILT_IN`]).
        min_from: String,
        /// Effective maximum.
        max: u8,
        /// Node the maximum came from (or [`BUILT_IN`]).
        max_from: String,
    },
    /// The card has no PCM device `0`.
    #[error("{}: missing: a vsnd card needs PCM device 0{}", Node(.path), Strays(.strays))]
    NoDevice {
        /// Always `"0"`.
        path: String,
        /// Other index-like nodes found in the device directory (ignored).
        strays: Vec<String>,
    },
    /// None of the card's PCM devices has a stream.
    #[error("{}: missing: no PCM device of the card has a stream", Node(.path))]
    NoStream {
        /// Always `"0/0"`.
        path: String,
    },
}

/// The origin shown for a value that comes from the built-in defaults, not from xenstore.
pub const BUILT_IN: &str = "(built-in default)";

impl ConfigError {
    /// The node this error is about, relative to the device directory (`""` = the directory).
    pub fn path(&self) -> &str {
        match self {
            ConfigError::Source { path, .. }
            | ConfigError::Missing { path }
            | ConfigError::Invalid { path, .. }
            | ConfigError::ChannelRange { path, .. }
            | ConfigError::NoDevice { path, .. }
            | ConfigError::NoStream { path } => path,
        }
    }
}

impl PartialEq for ConfigError {
    /// Structural equality; source errors compare by their message.
    fn eq(&self, other: &Self) -> bool {
        use ConfigError as E;
        match (self, other) {
            (
                E::Source { op, path, source },
                E::Source {
                    op: o2,
                    path: p2,
                    source: s2,
                },
            ) => op == o2 && path == p2 && source.to_string() == s2.to_string(),
            (E::Missing { path }, E::Missing { path: p2 }) => path == p2,
            (
                E::Invalid {
                    path,
                    value,
                    reason,
                },
                E::Invalid {
                    path: p2,
                    value: v2,
                    reason: r2,
                },
            ) => path == p2 && value == v2 && reason == r2,
            (
                E::ChannelRange {
                    path,
                    min,
                    min_from,
                    max,
                    max_from,
                },
                E::ChannelRange {
                    path: p2,
                    min: n2,
                    min_from: nf2,
                    max: x2,
                    max_from: xf2,
                },
            ) => path == p2 && min == n2 && min_from == nf2 && max == x2 && max_from == xf2,
            (
                E::NoDevice { path, strays },
                E::NoDevice {
                    path: p2,
                    strays: s2,
                },
            ) => path == p2 && strays == s2,
            (E::NoStream { path }, E::NoStream { path: p2 }) => path == p2,
            _ => false,
        }
    }
}

impl Eq for ConfigError {}

/// What was wrong with a value the model dropped, replaced or ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// A `sample-formats` item that names no sndif format; dropped.
    UnknownFormat,
    /// A `sample-formats` item naming a compressed format (IMA ADPCM, MPEG, GSM); dropped.
    UnsupportedFormat,
    /// A `sample-rates` item that is not a decimal integer in `1..=768000`; dropped.
    InvalidRate,
    /// A list with no usable item left; the parent level's value is used.
    EmptyList,
    /// A `channels-*` or `buffer-size` value that is not a decimal number; the parent level's value
    /// is used.
    Unparsable,
    /// A `buffer-size` below the minimum; raised to it.
    BufferRaised {
        /// The value used instead.
        to: u32,
    },
    /// A `buffer-size` above the maximum; clamped to it.
    BufferClamped {
        /// The value used instead.
        to: u32,
    },
    /// An index-like node outside the contiguous run `0..len` that both peers enumerate; ignored.
    NonContiguousIndex {
        /// Length of the run (= the first missing index).
        run: u32,
    },
    /// A node the model does not know at this level; ignored.
    UnknownNode,
    /// A PCM device without stream `0`; it is kept with no streams.
    DeviceWithoutStreams,
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WarningKind::UnknownFormat => f.write_str("unknown sample format, dropped"),
            WarningKind::UnsupportedFormat => {
                f.write_str("compressed format this frontend cannot stream, dropped")
            }
            WarningKind::InvalidRate => {
                f.write_str("not a sample rate (decimal integer in 1..=768000), dropped")
            }
            WarningKind::EmptyList => {
                f.write_str("no usable entry, the parent level's value is used")
            }
            WarningKind::Unparsable => {
                f.write_str("not a decimal number, the parent level's value is used")
            }
            WarningKind::BufferRaised { to } => write!(f, "below the minimum, raised to {to}"),
            WarningKind::BufferClamped { to } => write!(f, "above the maximum, clamped to {to}"),
            WarningKind::NonContiguousIndex { run } => write!(
                f,
                "index outside the contiguous run (enumeration stops at the first missing index, \
                 {run}), ignored"
            ),
            WarningKind::UnknownNode => f.write_str("unknown node, ignored"),
            WarningKind::DeviceWithoutStreams => f.write_str("PCM device has no stream 0"),
        }
    }
}

/// A value the model dropped, replaced or ignored; the card stays usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The node, relative to the device directory.
    pub path: String,
    /// The offending value or list item, verbatim (empty for warnings about nodes).
    pub value: String,
    /// What was wrong and what was done.
    pub kind: WarningKind,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() && !self.kind.is_about_value() {
            write!(f, "{}: {}", Node(&self.path), self.kind)
        } else {
            write!(
                f,
                "{}: {}: {}",
                Node(&self.path),
                Shown(&self.value),
                self.kind
            )
        }
    }
}

impl WarningKind {
    fn is_about_value(self) -> bool {
        !matches!(
            self,
            WarningKind::NonContiguousIndex { .. }
                | WarningKind::UnknownNode
                | WarningKind::DeviceWithoutStreams
        )
    }
}

/// Shows a relative path, naming the device directory itself when it is empty.
struct Node<'a>(&'a str);

impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("<device dir>")
        } else {
            f.write_str(self.0)
        }
    }
}

/// Shows a value quoted and escaped, cut after [`SHOWN_CHARS`] characters.
struct Shown<'a>(&'a str);

const SHOWN_CHARS: usize = 64;

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => {
                let head = self.0.get(..cut).unwrap_or_default();
                write!(f, "{head:?}... ({} bytes)", self.0.len())
            }
        }
    }
}

/// Shows the stray index nodes of a [`ConfigError::NoDevice`].
struct Strays<'a>(&'a [String]);

impl fmt::Display for Strays<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() {
            write!(f, " (ignored: {})", self.0.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let shown = Shown(&long).to_string();
        assert!(shown.starts_with("\"éé"));
        assert!(shown.ends_with("... (200 bytes)"), "{shown}");
        assert_eq!(shown.matches('é').count(), SHOWN_CHARS);
        assert_eq!(Shown("a\"b").to_string(), "\"a\\\"b\"");
    }

    #[test]
    fn messages_name_path_value_and_reason() {
        let e = ConfigError::Invalid {
            path: "0/1/type".into(),
            value: "x".into(),
            reason: "expected \"p\" or \"c\"",
        };
        assert_eq!(
            e.to_string(),
            "0/1/type: invalid value \"x\": expected \"p\" or \"c\""
        );
        let e = ConfigError::Missing {
            path: "0/1/type".into(),
        };
        assert_eq!(e.to_string(), "0/1/type: missing");
        let w = ConfigWarning {
            path: "sample-formats".into(),
            value: "s16le".into(),
            kind: WarningKind::UnknownFormat,
        };
        assert_eq!(
            w.to_string(),
            "sample-formats: \"s16le\": unknown sample format, dropped"
        );
        let w = ConfigWarning {
            path: "foo".into(),
            value: String::new(),
            kind: WarningKind::UnknownNode,
        };
        assert_eq!(w.to_string(), "foo: unknown node, ignored");
    }

    #[test]
    fn source_errors_keep_their_cause() {
        let cause = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "EACCES");
        let e = ConfigError::Source {
            op: SourceOp::List,
            path: String::new(),
            source: Arc::new(cause),
        };
        assert_eq!(e.to_string(), "<device dir>: list failed: EACCES");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("EACCES"));
        assert_eq!(e.clone(), e);
        assert_ne!(
            e,
            ConfigError::Missing {
                path: String::new()
            }
        );
    }
}
