//! Names of devices and streams.

use core::fmt;
use core::str::FromStr;

use xen_access::DomId;

/// One vsnd device (virtual card) of one frontend domain: `/…/backend/vsnd/<fe>/<dev>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceKey {
    /// Frontend domain id.
    pub fe: DomId,
    /// Device id (`<dev-id>` in xenstore).
    pub dev: u32,
}

impl fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.fe, self.dev)
    }
}

/// One stream: frontend domain, device id, PCM device index, stream index. Displayed and parsed
/// as `fe/dev/pcm/stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// Frontend domain id.
    pub fe: DomId,
    /// Device id.
    pub dev: u32,
    /// PCM device index (`<N>`).
    pub pcm: u32,
    /// Stream index within the PCM device (`<M>`).
    pub stream: u32,
}

impl StreamId {
    /// `fe/dev/pcm/stream`.
    pub const fn new(fe: DomId, dev: u32, pcm: u32, stream: u32) -> Self {
        StreamId {
            fe,
            dev,
            pcm,
            stream,
        }
    }

    /// The device the stream belongs to.
    pub const fn device(&self) -> DeviceKey {
        DeviceKey {
            fe: self.fe,
            dev: self.dev,
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/{}", self.fe, self.dev, self.pcm, self.stream)
    }
}

/// A string that is not `fe/dev/pcm/stream`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a stream id of the form <fe-domid>/<dev-id>/<pcm-index>/<stream-index>")]
pub struct StreamIdParseError(pub String);

impl FromStr for StreamId {
    type Err = StreamIdParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || StreamIdParseError(s.to_owned());
        let mut parts = s.trim().split('/');
        let fe = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let dev = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let pcm = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let stream = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(StreamId::new(fe, dev, pcm, stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = StreamId::new(3, 1, 0, 2);
        assert_eq!(id.to_string(), "3/1/0/2");
        assert_eq!("3/1/0/2".parse::<StreamId>(), Ok(id));
        assert!("3/1/0".parse::<StreamId>().is_err());
        assert!("3/1/0/2/5".parse::<StreamId>().is_err());
        assert!("70000/1/0/2".parse::<StreamId>().is_err());
        assert!("a/b/c/d".parse::<StreamId>().is_err());
        assert_eq!(id.device().to_string(), "3/1");
    }
}
