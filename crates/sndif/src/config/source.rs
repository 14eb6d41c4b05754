//! Where the configuration is read from: the [`ConfigSource`] trait and an in-memory [`MapSource`].

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// Read access to the nodes below one vsnd frontend device directory
/// (`/local/domain/<fe>/device/vsnd/<dev-id>/`).
///
/// Paths are relative to that directory and use `/` as separator: `""` is the directory itself,
/// then `"short-name"`, `"0/name"`, `"0/1/type"`, ...
pub trait ConfigSource {
    /// The error a failed read or listing reports (a xenstore error, a lost connection, ...).
    type Error: std::error::Error + Send + Sync + 'static;

    /// The value of the node at `path`, or `Ok(None)` when the node does not exist.
    fn read(&self, path: &str) -> Result<Option<String>, Self::Error>;

    /// The names of the children of the node at `path` (names only, not paths), in any order;
    /// `Ok(vec![])` when the node does not exist or has no children.
    fn list(&self, path: &str) -> Result<Vec<String>, Self::Error>;
}

impl<T: ConfigSource + ?Sized> ConfigSource for &T {
    type Error = T::Error;

    fn read(&self, path: &str) -> Result<Option<String>, Self::Error> {
        (**self).read(path)
    }

    fn list(&self, path: &str) -> Result<Vec<String>, Self::Error> {
        (**self).list(path)
    }
}

/// The failure a [`MapSource`] reports for a path registered with [`MapSource::fail_at`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?}: injected {op} failure")]
pub struct MapSourceError {
    /// `"read"` or `"list"`.
    pub op: &'static str,
    /// The path that was asked for.
    pub path: String,
}

/// An in-memory [`ConfigSource`]: a map from relative path to value, for tests.
///
/// Directories are implied by the keys: `"0/0/type"` makes `0` a child of `""`, `0` a child of
/// `"0"` and `type` a child of `"0/0"`, as xenstore creates missing parent nodes on write. A
/// directory node that was not inserted explicitly reads as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapSource {
    entries: BTreeMap<String, String>,
    failing: BTreeSet<String>,
}

impl MapSource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// A source holding the given `(path, value)` pairs; a later pair replaces an earlier one with
    /// the same path.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut src = Self::new();
        for (path, value) in pairs {
            src.insert(*path, *value);
        }
        src
    }

    /// Set the node at `path` (leading and trailing `/` are ignored); returns the previous value.
    pub fn insert(&mut self, path: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let path = normalise(&path.into()).to_owned();
        self.entries.insert(path, value.into())
    }

    /// Remove the node at `path` (not its children); returns its value.
    pub fn remove(&mut self, path: &str) -> Option<String> {
        self.entries.remove(normalise(path))
    }

    /// Make every `read` and `list` of exactly `path` fail with a [`MapSourceError`].
    pub fn fail_at(&mut self, path: impl Into<String>) {
        let path = normalise(&path.into()).to_owned();
        self.failing.insert(path);
    }

    /// All stored `(path, value)` pairs, in path order.
    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.entries
    }

    fn check(&self, op: &'static str, path: &str) -> Result<(), MapSourceError> {
        if self.failing.contains(path) {
            Err(MapSourceError {
                op,
                path: path.to_owned(),
            })
        } else {
            Ok(())
        }
    }
}

impl ConfigSource for MapSource {
    type Error = MapSourceError;

    fn read(&self, path: &str) -> Result<Option<String>, Self::Error> {
        let path = normalise(path);
        self.check("read", path)?;
        Ok(self.entries.get(path).cloned())
    }

    fn list(&self, path: &str) -> Result<Vec<String>, Self::Error> {
        let path = normalise(path);
        self.check("list", path)?;
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut names = BTreeSet::new();
        let range = self
            .entries
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded));
        for (key, _) in range {
            let Some(rest) = key.strip_prefix(prefix.as_str()) else {
                break;
            };
            if let Some(name) = rest.split('/').next() {
                if !name.is_empty() {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }
}

fn normalise(path: &str) -> &str {
    path.trim_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_returns_values_and_none_for_absent_nodes() {
        let src = MapSource::from_pairs(&[("short-name", "A"), ("0/0/type", "p")]);
        assert_eq!(src.read("short-name").unwrap().as_deref(), Some("A"));
        assert_eq!(src.read("0/0/type").unwrap().as_deref(), Some("p"));
        assert_eq!(src.read("/0/0/type/").unwrap().as_deref(), Some("p"));
        assert_eq!(src.read("long-name").unwrap(), None);
        // An implied directory has no value of its own.
        assert_eq!(src.read("0").unwrap(), None);
    }

    #[test]
    fn list_derives_directories_from_keys() {
        let src = MapSource::from_pairs(&[
            ("short-name", "A"),
            ("0/name", "x"),
            ("0/0/type", "p"),
            ("0/1/type", "c"),
            ("0/10/type", "c"),
            ("1/0/type", "p"),
            ("0x", "not a child of 0"),
        ]);
        assert_eq!(src.list("").unwrap(), ["0", "0x", "1", "short-name"]);
        assert_eq!(src.list("0").unwrap(), ["0", "1", "10", "name"]);
        assert_eq!(src.list("0/1").unwrap(), ["type"]);
        assert!(src.list("0/1/type").unwrap().is_empty());
        assert!(src.list("7").unwrap().is_empty());
    }

    #[test]
    fn injected_failures_name_the_path() {
        let mut src = MapSource::from_pairs(&[("0/0/type", "p")]);
        src.fail_at("0/0/type");
        src.fail_at("0");
        let err = src.read("0/0/type").unwrap_err();
        assert_eq!(err.path, "0/0/type");
        assert_eq!(err.op, "read");
        assert_eq!(src.list("0").unwrap_err().op, "list");
        assert!(src.list("").is_ok());
    }

    #[test]
    fn insert_and_remove() {
        let mut src = MapSource::new();
        assert_eq!(src.insert("a", "1"), None);
        assert_eq!(src.insert("/a", "2").as_deref(), Some("1"));
        assert_eq!(src.remove("a").as_deref(), Some("2"));
        assert!(src.entries().is_empty());
    }
}
