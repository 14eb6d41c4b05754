//! Fault injection: make the next N calls of an operation fail.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::{DomId, StoreErrno};

/// An operation whose next calls can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// `read`, `directory` and `get_perms` (on a connection or inside a transaction).
    StoreRead,
    /// `write`, `mkdir`, `rm` and `set_perms` (on a connection or inside a transaction).
    StoreWrite,
    /// The commit at the end of a transaction (use [`StoreErrno::Again`] to force retries).
    StoreCommit,
    /// [`crate::GrantShare::share`].
    GrantShare,
    /// [`crate::GrantMap::map`].
    GrantMap,
    /// [`crate::EvtchnHandle::bind_unbound`] and [`crate::EvtchnHandle::bind_interdomain`].
    EvtchnBind,
    /// [`crate::EvtchnHandle::notify`].
    EvtchnNotify,
}

/// The error an injected fault produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultError {
    /// Store operations fail with this errno; grant and event-channel operations fail with a
    /// reason naming it (e.g. `"injected fault: ENOSPC"`).
    Errno(StoreErrno),
    /// Store operations fail with [`crate::StoreError::Connection`]; others with a reason
    /// saying the connection was lost.
    ConnectionLost,
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultError::Errno(e) => write!(f, "injected fault: {e}"),
            FaultError::ConnectionLost => f.write_str("injected fault: connection lost"),
        }
    }
}

#[derive(Debug)]
struct Rule {
    domid: Option<DomId>,
    op: FaultOp,
    remaining: usize,
    error: FaultError,
}

/// The fault table of a [`super::FakeXen`] (see [`super::FakeXen::faults`]).
///
/// Rules are consumed in the order they were added; a call consumes one count of the first rule
/// that matches its operation and domain.
#[derive(Debug, Default)]
pub struct Faults {
    /// Number of rules with a non-zero count: lets the hot paths skip the lock.
    armed: AtomicUsize,
    rules: Mutex<Vec<Rule>>,
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, Vec<Rule>> {
        self.rules.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `times` calls of `op` by any domain fail with `error`.
    pub fn fail_next(&self, op: FaultOp, times: usize, error: FaultError) {
        self.add(None, op, times, error);
    }

    /// The next `times` calls of `op` made by domain `domid` fail with `error`.
    pub fn fail_next_for(&self, domid: DomId, op: FaultOp, times: usize, error: FaultError) {
        self.add(Some(domid), op, times, error);
    }

    fn add(&self, domid: Option<DomId>, op: FaultOp, times: usize, error: FaultError) {
        if times == 0 {
            return;
        }
        let mut rules = self.lock();
        rules.push(Rule {
            domid,
            op,
            remaining: times,
            error,
        });
        self.armed.fetch_add(1, Ordering::SeqCst);
    }

    /// How many injected failures of `op` (for any domain) are still pending.
    pub fn pending(&self, op: FaultOp) -> usize {
        self.lock()
            .iter()
            .filter(|r| r.op == op)
            .map(|r| r.remaining)
            .sum()
    }

    /// Drops every pending fault.
    pub fn clear(&self) {
        let mut rules = self.lock();
        rules.clear();
        self.armed.store(0, Ordering::SeqCst);
    }

    /// Consumes one count of the first matching rule. Allocates nothing unless a rule fires (and
    /// then only to clone the error).
    pub(crate) fn take(&self, domid: DomId, op: FaultOp) -> Option<FaultError> {
        if self.armed.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut rules = self.lock();
        let rule = rules
            .iter_mut()
            .find(|r| r.op == op && r.domid.map_or(true, |d| d == domid) && r.remaining > 0)?;
        rule.remaining -= 1;
        let error = rule.error.clone();
        let before = rules.len();
        rules.retain(|r| r.remaining > 0);
        let removed = before - rules.len();
        self.armed.fetch_sub(removed, Ordering::SeqCst);
        Some(error)
    }
}
