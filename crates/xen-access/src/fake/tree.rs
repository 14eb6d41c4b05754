//! The xenstore node tree with xenstored's permission rules, shared by live operations and
//! transactions (which work on a private copy and replay their log at commit).

use std::collections::{BTreeMap, BTreeSet};

use crate::{Access, DomId, Perm, StoreErrno};

/// Longest absolute path accepted (xenstored's limit for privileged connections).
const MAX_PATH: usize = 3072;
/// Largest value accepted (the wire payload limit).
const MAX_VALUE: usize = 4096;

/// One node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: String,
    pub(crate) perms: Vec<Perm>,
    /// Generation of the last change to the node (value, permissions or list of children).
    pub(crate) gen: u64,
}

/// What a mutation changed, for firing watches.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// The node was written, created or had its permissions changed.
    Set {
        path: String,
        perms: Vec<Perm>,
        /// Permissions before a `set_perms` (watchers who could read either version hear it).
        old_perms: Option<Vec<Perm>>,
    },
    /// The node and its subtree were removed; `nodes` lists them (the node first) with the
    /// permissions they had.
    Removed {
        path: String,
        nodes: Vec<(String, Vec<Perm>)>,
    },
}

/// A mutation, as logged by a transaction.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    Write { path: String, value: String },
    Mkdir { path: String },
    Rm { path: String },
    SetPerms { path: String, perms: Vec<Perm> },
}

impl Mutation {
    pub(crate) fn op_name(&self) -> &'static str {
        match self {
            Mutation::Write { .. } => "write",
            Mutation::Mkdir { .. } => "mkdir",
            Mutation::Rm { .. } => "rm",
            Mutation::SetPerms { .. } => "set_perms",
        }
    }

    pub(crate) fn path(&self) -> &str {
        match self {
            Mutation::Write { path, .. }
            | Mutation::Mkdir { path }
            | Mutation::Rm { path }
            | Mutation::SetPerms { path, .. } => path,
        }
    }
}

/// Records the paths an operation looked at (for a transaction's conflict check).
#[derive(Debug)]
pub(crate) struct Touched<'a>(pub(crate) Option<&'a mut BTreeSet<String>>);

impl Touched<'_> {
    pub(crate) fn none() -> Touched<'static> {
        Touched(None)
    }

    fn note(&mut self, path: &str) {
        if let Some(set) = self.0.as_deref_mut() {
            if !set.contains(path) {
                set.insert(path.to_owned());
            }
        }
    }
}

/// The access `domid` has to a node with `perms`, as xenstored computes it: dom0 and the owner
/// have full access, listed domains their entry's access, everyone else the first entry's.
pub(crate) fn access_of(domid: DomId, perms: &[Perm]) -> Access {
    if domid == 0 {
        return Access::Both;
    }
    let Some((owner, rest)) = perms.split_first() else {
        return Access::None;
    };
    if owner.domid == domid {
        return Access::Both;
    }
    rest.iter()
        .find(|p| p.domid == domid)
        .map_or(owner.access, |p| p.access)
}

pub(crate) fn can_read(domid: DomId, perms: &[Perm]) -> bool {
    matches!(access_of(domid, perms), Access::Read | Access::Both)
}

fn can_write(domid: DomId, perms: &[Perm]) -> bool {
    matches!(access_of(domid, perms), Access::Write | Access::Both)
}

/// The parent of an absolute path (`None` for the root).
pub(crate) fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => path.get(..i),
        None => None,
    }
}

/// Whether `path` is `base` or lies below it.
pub(crate) fn is_within(path: &str, base: &str) -> bool {
    if base == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(base) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

fn valid_chars(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'_' | b'@'))
}

/// Checks an absolute node path the way xenstored does.
pub(crate) fn check_abs(path: &str) -> Result<(), StoreErrno> {
    let ok = path.starts_with('/')
        && path.len() <= MAX_PATH
        && valid_chars(path)
        && !path.contains("//")
        && (path == "/" || !path.ends_with('/'));
    if ok {
        Ok(())
    } else {
        Err(StoreErrno::Invalid)
    }
}

/// The home directory of a domain, `/local/domain/<domid>`.
pub(crate) fn home_of(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// Resolves `path` as domain `domid` sees it: absolute paths stay, relative ones are taken
/// below the domain's home. Returns the absolute path and whether it was relative.
pub(crate) fn resolve(domid: DomId, path: &str) -> Result<(String, bool), StoreErrno> {
    if path.is_empty() || path.starts_with('@') {
        return Err(StoreErrno::Invalid);
    }
    let (abs, relative) = if path.starts_with('/') {
        (path.to_owned(), false)
    } else {
        (format!("{}/{path}", home_of(domid)), true)
    };
    check_abs(&abs)?;
    Ok((abs, relative))
}

/// The tree.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    nodes: BTreeMap<String, Node>,
    gen: u64,
}

impl Tree {
    /// A tree with only `/`, owned by dom0 and closed to everyone else (like xenstored's).
    pub(crate) fn new() -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "/".to_owned(),
            Node {
                value: String::new(),
                perms: vec![Perm {
                    domid: 0,
                    access: Access::None,
                }],
                gen: 0,
            },
        );
        Tree { nodes, gen: 0 }
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Generation of a node, `None` when it does not exist.
    pub(crate) fn gen_of(&self, path: &str) -> Option<u64> {
        self.nodes.get(path).map(|n| n.gen)
    }

    fn bump(&mut self) -> u64 {
        self.gen += 1;
        self.gen
    }

    /// The nearest existing node at or above `path`.
    fn nearest<'t>(&'t self, path: &'t str) -> Result<(&'t str, &'t Node), StoreErrno> {
        let mut p = path;
        loop {
            if let Some(n) = self.nodes.get(p) {
                return Ok((p, n));
            }
            p = parent_of(p).ok_or(StoreErrno::Invalid)?;
        }
    }

    /// The error for a missing node: ENOENT if the nearest existing ancestor grants the access
    /// the operation needs (write for `write`), EACCES otherwise (xenstored does not reveal
    /// what it hides).
    fn missing(
        &self,
        domid: DomId,
        path: &str,
        write: bool,
        touched: &mut Touched<'_>,
    ) -> StoreErrno {
        match self.nearest(path) {
            Ok((anc, node)) => {
                touched.note(anc);
                let ok = if write {
                    can_write(domid, &node.perms)
                } else {
                    can_read(domid, &node.perms)
                };
                if ok {
                    StoreErrno::NoEnt
                } else {
                    StoreErrno::Access
                }
            }
            Err(e) => e,
        }
    }

    /// Paths of the node and its descendants, the node first.
    pub(crate) fn subtree(&self, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if !self.nodes.contains_key(path) {
            return out;
        }
        out.push(path.to_owned());
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        for key in self.nodes.range(prefix.clone()..).map(|(k, _)| k) {
            if !key.starts_with(&prefix) {
                break;
            }
            if key != path {
                out.push(key.clone());
            }
        }
        out
    }

    /// Names of the node's children.
    fn children(&self, path: &str) -> Vec<String> {
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        let mut out = Vec::new();
        for key in self.nodes.range(prefix.clone()..).map(|(k, _)| k) {
            let Some(rest) = key.strip_prefix(&prefix) else {
                break;
            };
            if !rest.is_empty() && !rest.contains('/') {
                out.push(rest.to_owned());
            }
        }
        out
    }

    /// All nodes, for dumps.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    pub(crate) fn read(
        &self,
        domid: DomId,
        path: &str,
        touched: &mut Touched<'_>,
    ) -> Result<Option<String>, StoreErrno> {
        touched.note(path);
        match self.nodes.get(path) {
            Some(n) if can_read(domid, &n.perms) => Ok(Some(n.value.clone())),
            Some(_) => Err(StoreErrno::Access),
            None => match self.missing(domid, path, false, touched) {
                StoreErrno::NoEnt => Ok(None),
                e => Err(e),
            },
        }
    }

    pub(crate) fn directory(
        &self,
        domid: DomId,
        path: &str,
        touched: &mut Touched<'_>,
    ) -> Result<Vec<String>, StoreErrno> {
        touched.note(path);
        match self.nodes.get(path) {
            Some(n) if can_read(domid, &n.perms) => Ok(self.children(path)),
            Some(_) => Err(StoreErrno::Access),
            None => match self.missing(domid, path, false, touched) {
                StoreErrno::NoEnt => Ok(Vec::new()),
                e => Err(e),
            },
        }
    }

    pub(crate) fn get_perms(
        &self,
        domid: DomId,
        path: &str,
        touched: &mut Touched<'_>,
    ) -> Result<Vec<Perm>, StoreErrno> {
        touched.note(path);
        match self.nodes.get(path) {
            Some(n) if can_read(domid, &n.perms) => Ok(n.perms.clone()),
            Some(_) => Err(StoreErrno::Access),
            None => Err(self.missing(domid, path, false, touched)),
        }
    }

    /// Applies one mutation as `domid`. `None` when nothing changed (mkdir of an existing node,
    /// rm of a missing one).
    pub(crate) fn apply(
        &mut self,
        domid: DomId,
        m: &Mutation,
        touched: &mut Touched<'_>,
    ) -> Result<Option<Change>, StoreErrno> {
        match m {
            Mutation::Write { path, value } => self.write(domid, path, value, touched).map(Some),
            Mutation::Mkdir { path } => self.mkdir(domid, path, touched),
            Mutation::Rm { path } => self.rm(domid, path, touched),
            Mutation::SetPerms { path, perms } => {
                self.set_perms(domid, path, perms, touched).map(Some)
            }
        }
    }

    fn write(
        &mut self,
        domid: DomId,
        path: &str,
        value: &str,
        touched: &mut Touched<'_>,
    ) -> Result<Change, StoreErrno> {
        if value.len() > MAX_VALUE {
            return Err(StoreErrno::Other("E2BIG".to_owned()));
        }
        touched.note(path);
        let Some(node) = self.nodes.get(path) else {
            return self.create(domid, path, value, touched);
        };
        if !can_write(domid, &node.perms) {
            return Err(StoreErrno::Access);
        }
        let gen = self.bump();
        let node = self.nodes.get_mut(path).ok_or(StoreErrno::NoEnt)?;
        value.clone_into(&mut node.value);
        node.gen = gen;
        Ok(Change::Set {
            path: path.to_owned(),
            perms: node.perms.clone(),
            old_perms: None,
        })
    }

    fn mkdir(
        &mut self,
        domid: DomId,
        path: &str,
        touched: &mut Touched<'_>,
    ) -> Result<Option<Change>, StoreErrno> {
        touched.note(path);
        match self.nodes.get(path) {
            Some(n) if can_write(domid, &n.perms) => Ok(None),
            Some(_) => Err(StoreErrno::Access),
            None => self.create(domid, path, "", touched).map(Some),
        }
    }

    /// Creates `path` and any missing ancestors (`mkdir -p`). Needs write access to the nearest
    /// existing ancestor; each new node inherits its parent's permissions, and a non-dom0
    /// creator becomes the owner (xenstored keeps the inherited owner for dom0).
    fn create(
        &mut self,
        domid: DomId,
        path: &str,
        value: &str,
        touched: &mut Touched<'_>,
    ) -> Result<Change, StoreErrno> {
        let (anc, anc_node) = self.nearest(path)?;
        let anc = anc.to_owned();
        touched.note(&anc);
        if !can_write(domid, &anc_node.perms) {
            return Err(StoreErrno::Access);
        }
        let mut perms = anc_node.perms.clone();
        let mut missing = Vec::new();
        let mut p = path;
        while p != anc {
            missing.push(p.to_owned());
            p = parent_of(p).ok_or(StoreErrno::Invalid)?;
        }
        let gen = self.bump();
        if let Some(a) = self.nodes.get_mut(&anc) {
            a.gen = gen;
        }
        for p in missing.iter().rev() {
            if domid != 0 {
                if let Some(owner) = perms.first_mut() {
                    owner.domid = domid;
                }
            }
            touched.note(p);
            let value = if p == path { value } else { "" };
            self.nodes.insert(
                p.clone(),
                Node {
                    value: value.to_owned(),
                    perms: perms.clone(),
                    gen,
                },
            );
        }
        Ok(Change::Set {
            path: path.to_owned(),
            perms,
            old_perms: None,
        })
    }

    fn rm(
        &mut self,
        domid: DomId,
        path: &str,
        touched: &mut Touched<'_>,
    ) -> Result<Option<Change>, StoreErrno> {
        let Some(parent) = parent_of(path) else {
            return Err(StoreErrno::Invalid);
        };
        let parent = parent.to_owned();
        touched.note(path);
        match self.nodes.get(path) {
            None => match self.missing(domid, path, true, touched) {
                StoreErrno::NoEnt => Ok(None),
                e => Err(e),
            },
            Some(n) if !can_write(domid, &n.perms) => Err(StoreErrno::Access),
            Some(_) => {
                touched.note(&parent);
                Ok(Some(self.remove_subtree(path, &parent)))
            }
        }
    }

    /// Removes a node and its descendants without permission checks.
    pub(crate) fn remove_subtree(&mut self, path: &str, parent: &str) -> Change {
        let mut nodes = Vec::new();
        for key in self.subtree(path) {
            if let Some(n) = self.nodes.remove(&key) {
                nodes.push((key, n.perms));
            }
        }
        let gen = self.bump();
        if let Some(p) = self.nodes.get_mut(parent) {
            p.gen = gen;
        }
        Change::Removed {
            path: path.to_owned(),
            nodes,
        }
    }

    fn set_perms(
        &mut self,
        domid: DomId,
        path: &str,
        perms: &[Perm],
        touched: &mut Touched<'_>,
    ) -> Result<Change, StoreErrno> {
        touched.note(path);
        let Some(new_owner) = perms.first() else {
            return Err(StoreErrno::Invalid);
        };
        let Some(node) = self.nodes.get(path) else {
            return Err(self.missing(domid, path, true, touched));
        };
        if !can_write(domid, &node.perms) {
            return Err(StoreErrno::Access);
        }
        let owner = node.perms.first().map(|p| p.domid);
        if domid != 0 && owner != Some(new_owner.domid) {
            // Unprivileged domains may not give their nodes away.
            return Err(StoreErrno::Other("EPERM".to_owned()));
        }
        let gen = self.bump();
        let node = self.nodes.get_mut(path).ok_or(StoreErrno::NoEnt)?;
        let old = std::mem::replace(&mut node.perms, perms.to_vec());
        node.gen = gen;
        Ok(Change::Set {
            path: path.to_owned(),
            perms: perms.to_vec(),
            old_perms: Some(old),
        })
    }
}
