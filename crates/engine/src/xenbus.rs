//! XenBus device states (`xen/include/public/io/xenbus.h`).

use core::fmt;

/// A XenBus state as written to a `state` node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum XenbusState {
    /// `XenbusStateUnknown` (0); also what a missing or unparsable `state` node reads as.
    Unknown = 0,
    /// `XenbusStateInitialising` (1).
    Initialising = 1,
    /// `XenbusStateInitWait` (2): the backend waits for the frontend's transport keys.
    InitWait = 2,
    /// `XenbusStateInitialised` (3): the frontend published its transport keys.
    Initialised = 3,
    /// `XenbusStateConnected` (4).
    Connected = 4,
    /// `XenbusStateClosing` (5).
    Closing = 5,
    /// `XenbusStateClosed` (6).
    Closed = 6,
    /// `XenbusStateReconfiguring` (7).
    Reconfiguring = 7,
    /// `XenbusStateReconfigured` (8).
    Reconfigured = 8,
}

impl XenbusState {
    /// The number written to xenstore.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The state for a number, if it is one.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => XenbusState::Unknown,
            1 => XenbusState::Initialising,
            2 => XenbusState::InitWait,
            3 => XenbusState::Initialised,
            4 => XenbusState::Connected,
            5 => XenbusState::Closing,
            6 => XenbusState::Closed,
            7 => XenbusState::Reconfiguring,
            8 => XenbusState::Reconfigured,
            _ => return None,
        })
    }

    /// Parses a `state` node's value (decimal, surrounding whitespace ignored).
    pub fn parse(value: &str) -> Option<Self> {
        value.trim().parse::<u32>().ok().and_then(Self::from_code)
    }

    /// The value to write.
    pub fn as_str(self) -> &'static str {
        match self {
            XenbusState::Unknown => "0",
            XenbusState::Initialising => "1",
            XenbusState::InitWait => "2",
            XenbusState::Initialised => "3",
            XenbusState::Connected => "4",
            XenbusState::Closing => "5",
            XenbusState::Closed => "6",
            XenbusState::Reconfiguring => "7",
            XenbusState::Reconfigured => "8",
        }
    }
}

impl fmt::Display for XenbusState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            XenbusState::Unknown => "Unknown",
            XenbusState::Initialising => "Initialising",
            XenbusState::InitWait => "InitWait",
            XenbusState::Initialised => "Initialised",
            XenbusState::Connected => "Connected",
            XenbusState::Closing => "Closing",
            XenbusState::Closed => "Closed",
            XenbusState::Reconfiguring => "Reconfiguring",
            XenbusState::Reconfigured => "Reconfigured",
        };
        write!(f, "{name} ({})", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        for code in 0..=8u32 {
            let s = XenbusState::from_code(code).expect("defined");
            assert_eq!(u32::from(s.code()), code);
            assert_eq!(XenbusState::parse(s.as_str()), Some(s));
        }
        assert_eq!(XenbusState::parse(" 4\n"), Some(XenbusState::Connected));
        assert_eq!(XenbusState::parse("9"), None);
        assert_eq!(XenbusState::parse("-1"), None);
        assert_eq!(XenbusState::parse("four"), None);
        assert_eq!(XenbusState::parse(""), None);
        assert_eq!(XenbusState::Closed.to_string(), "Closed (6)");
    }
}
