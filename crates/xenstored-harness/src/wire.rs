//! The harness's own minimal view of the xenstore wire protocol (`xs_wire.h`): message framing
//! for the ring bridge, and one-shot requests for the few dom0 operations the harness performs
//! itself (INTRODUCE, RELEASE, IS_DOMAIN_INTRODUCED), so that the harness does not depend on the
//! client under test being correct.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::{Error, Result};

/// `XS_DIRECTORY`.
pub const XS_DIRECTORY: u32 = 1;
/// `XS_READ`.
pub const XS_READ: u32 = 2;
/// `XS_WATCH`.
pub const XS_WATCH: u32 = 4;
/// `XS_UNWATCH`.
pub const XS_UNWATCH: u32 = 5;
/// `XS_TRANSACTION_START`.
pub const XS_TRANSACTION_START: u32 = 6;
/// `XS_TRANSACTION_END`.
pub const XS_TRANSACTION_END: u32 = 7;
/// `XS_INTRODUCE`.
pub const XS_INTRODUCE: u32 = 8;
/// `XS_RELEASE`.
pub const XS_RELEASE: u32 = 9;
/// `XS_GET_DOMAIN_PATH`.
pub const XS_GET_DOMAIN_PATH: u32 = 10;
/// `XS_WRITE`.
pub const XS_WRITE: u32 = 11;
/// `XS_WATCH_EVENT`.
pub const XS_WATCH_EVENT: u32 = 15;
/// `XS_ERROR`.
pub const XS_ERROR: u32 = 16;
/// `XS_IS_DOMAIN_INTRODUCED`.
pub const XS_IS_DOMAIN_INTRODUCED: u32 = 17;

/// Size of `struct xsd_sockmsg`.
pub const HEADER_LEN: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`.
pub const PAYLOAD_MAX: usize = 4096;

/// `struct xsd_sockmsg` (native endian, as on the socket and the ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message type (`XS_*`).
    pub ty: u32,
    /// Request id, echoed in the reply.
    pub req_id: u32,
    /// Transaction id, 0 outside a transaction.
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

impl Header {
    /// Encode into the 16 wire bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        for (chunk, v) in b
            .chunks_exact_mut(4)
            .zip([self.ty, self.req_id, self.tx_id, self.len])
        {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// Decode the first 16 bytes of `b`, if there are that many.
    pub fn decode(b: &[u8]) -> Option<Header> {
        let word = |i: usize| -> Option<u32> {
            let bytes: [u8; 4] = b.get(i * 4..i * 4 + 4)?.try_into().ok()?;
            Some(u32::from_ne_bytes(bytes))
        };
        Some(Header {
            ty: word(0)?,
            req_id: word(1)?,
            tx_id: word(2)?,
            len: word(3)?,
        })
    }
}

/// One whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Its header; `len` always equals `payload.len()` after [`take_msg`].
    pub header: Header,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl Msg {
    /// A message with the header's `len` set from the payload.
    pub fn new(ty: u32, req_id: u32, tx_id: u32, payload: Vec<u8>) -> Msg {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        Msg {
            header: Header {
                ty,
                req_id,
                tx_id,
                len,
            },
            payload,
        }
    }

    /// Header plus payload, ready to send.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.payload.len());
        v.extend_from_slice(&self.header.encode());
        v.extend_from_slice(&self.payload);
        v
    }
}

/// Why a byte stream cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OversizeMsg {
    /// The length the header claimed.
    pub len: u32,
}

/// Remove one whole message from the front of `buf`, if it holds one. A header announcing a
/// payload over [`PAYLOAD_MAX`] is an error: the stream cannot be framed any further.
pub fn take_msg(buf: &mut Vec<u8>) -> std::result::Result<Option<Msg>, OversizeMsg> {
    let Some(header) = Header::decode(buf) else {
        return Ok(None);
    };
    let len = header.len as usize;
    if len > PAYLOAD_MAX {
        return Err(OversizeMsg { len: header.len });
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let payload = buf
        .get(HEADER_LEN..HEADER_LEN + len)
        .unwrap_or_default()
        .to_vec();
    buf.drain(..HEADER_LEN + len);
    Ok(Some(Msg { header, payload }))
}

/// Split a payload into its NUL-terminated strings (a missing final NUL is tolerated).
pub fn split_strings(payload: &[u8]) -> Vec<&[u8]> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0).collect()
}

/// Join strings into a payload, each followed by a NUL.
pub fn join_strings(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        v.extend_from_slice(p);
        v.push(0);
    }
    v
}

/// Send one request as dom0 over a fresh connection to `socket` and return the reply payload.
/// An `XS_ERROR` reply becomes [`Error::Xenstore`]. Watch events cannot arrive (the connection
/// has no watches). Bounded by `timeout`.
pub fn request(
    socket: &Path,
    ty: u32,
    op: &'static str,
    args: &[&[u8]],
    timeout: Duration,
) -> Result<Vec<u8>> {
    let what = || format!("xenstore {op} over {}", socket.display());
    let io = |e| Error::io(what(), e);
    let mut s = UnixStream::connect(socket).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let req = Msg::new(ty, 0x4853_0001, 0, join_strings(args));
    s.write_all(&req.to_bytes()).map_err(io)?;
    let mut hdr = [0u8; HEADER_LEN];
    s.read_exact(&mut hdr).map_err(io)?;
    let header = Header::decode(&hdr).ok_or_else(|| Error::protocol(what(), "short header"))?;
    if header.len as usize > PAYLOAD_MAX {
        return Err(Error::protocol(
            what(),
            format!("reply length {}", header.len),
        ));
    }
    let mut payload = vec![0u8; header.len as usize];
    s.read_exact(&mut payload).map_err(io)?;
    let arg = args
        .first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default();
    if header.ty == XS_ERROR {
        let name = split_strings(&payload)
            .first()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        return Err(Error::Xenstore {
            op,
            arg,
            errno: name,
        });
    }
    if header.ty != ty {
        return Err(Error::protocol(
            what(),
            format!("reply type {} to request type {ty}", header.ty),
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            ty: XS_WATCH,
            req_id: 7,
            tx_id: 0x1234_5678,
            len: 9,
        };
        assert_eq!(Header::decode(&h.encode()), Some(h));
        assert_eq!(Header::decode(&h.encode()[..15]), None);
    }

    #[test]
    fn take_msg_waits_for_whole_messages() {
        let m1 = Msg::new(XS_READ, 1, 0, b"/a\0".to_vec());
        let m2 = Msg::new(XS_WATCH, 2, 0, b"/b\0tok\0".to_vec());
        let mut stream = m1.to_bytes();
        stream.extend(m2.to_bytes());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        // Feed one byte at a time: messages appear only when complete.
        for b in stream {
            buf.push(b);
            while let Some(m) = take_msg(&mut buf).expect("framing") {
                got.push(m);
            }
        }
        assert_eq!(got, vec![m1, m2]);
        assert!(buf.is_empty());
    }

    #[test]
    fn oversize_header_is_refused() {
        let mut buf = Msg::new(XS_READ, 1, 0, Vec::new()).to_bytes();
        buf[12..16].copy_from_slice(&4097u32.to_ne_bytes());
        assert_eq!(take_msg(&mut buf), Err(OversizeMsg { len: 4097 }));
    }

    #[test]
    fn strings_split_and_join() {
        assert_eq!(split_strings(b"a\0bc\0"), vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!(split_strings(b"a\0\0"), vec![&b"a"[..], &b""[..]]);
        assert!(split_strings(b"").is_empty());
        assert_eq!(
            join_strings(&[b"5", b"0", b"1"]),
            b"5\x000\x001\x00".to_vec()
        );
    }
}
