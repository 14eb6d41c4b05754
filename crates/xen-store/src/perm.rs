//! Node permissions as xenstore spells them: `n0`, `r5`, `w1`, `b2`.
//!
//! The first entry of a node's permission list names the owner (who always has full access) and,
//! through its access letter, what every domain not listed gets; later entries grant access to
//! specific domains.

use core::fmt;
use core::str::FromStr;

/// Access granted by one permission entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read only.
    Read,
    /// `w`: write only.
    Write,
    /// `b`: read and write.
    Both,
}

impl Access {
    /// The wire letter.
    pub const fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }

    /// The access for a wire letter.
    pub fn from_letter(c: char) -> Option<Access> {
        Some(match c {
            'n' => Access::None,
            'r' => Access::Read,
            'w' => Access::Write,
            'b' => Access::Both,
            _ => return None,
        })
    }
}

/// One permission entry: a domain and its access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perm {
    /// The domain id.
    pub domid: u32,
    /// What it may do.
    pub access: Access,
}

impl Perm {
    /// A permission entry.
    pub const fn new(domid: u32, access: Access) -> Perm {
        Perm { domid, access }
    }
}

/// A permission string that is not `<n|r|w|b><decimal domid>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid xenstore permission {0:?} (expected n|r|w|b followed by a domid)")]
pub struct ParsePermError(pub String);

impl FromStr for Perm {
    type Err = ParsePermError;

    fn from_str(s: &str) -> Result<Perm, ParsePermError> {
        let err = || ParsePermError(s.to_owned());
        let mut chars = s.chars();
        let access = chars.next().and_then(Access::from_letter).ok_or_else(err)?;
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let domid = digits.parse::<u32>().map_err(|_| err())?;
        Ok(Perm { domid, access })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.access.letter(), self.domid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spelling_round_trips() {
        for (s, p) in [
            ("n0", Perm::new(0, Access::None)),
            ("r5", Perm::new(5, Access::Read)),
            ("w1", Perm::new(1, Access::Write)),
            ("b2", Perm::new(2, Access::Both)),
            ("r65535", Perm::new(65535, Access::Read)),
        ] {
            assert_eq!(s.parse::<Perm>(), Ok(p));
            assert_eq!(p.to_string(), s);
        }
    }

    #[test]
    fn malformed_permissions_are_rejected() {
        for s in [
            "",
            "r",
            "x5",
            "R5",
            "r-1",
            "r+1",
            "r 1",
            "5",
            "rr5",
            "r99999999999",
        ] {
            assert!(s.parse::<Perm>().is_err(), "{s:?} accepted");
        }
    }
}
