//! The xenstore wire format (`xs_wire.h`): message types, the 16-byte header, payload limits and an
//! incremental decoder that reassembles messages from arbitrary `read` chunks.
//!
//! Every message, in both directions, is a [`Header`] (`{u32 type, u32 req_id, u32 tx_id, u32 len}`
//! in native byte order) followed by `len` bytes of payload, `len <= PAYLOAD_MAX`.

use core::fmt;

/// Size of the message header (`struct xsd_sockmsg`).
pub const HEADER_LEN: usize = 16;

/// Largest payload either side may send (`XENSTORE_PAYLOAD_MAX`). xenstored kills a connection
/// that exceeds it.
pub const PAYLOAD_MAX: usize = 4096;

/// Longest absolute path xenstored accepts (`XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;

/// Longest relative path clients should send (`XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;

/// Message types (`enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MsgType {
    /// `XS_CONTROL` (formerly `XS_DEBUG`).
    Control = 0,
    /// `XS_DIRECTORY`.
    Directory = 1,
    /// `XS_READ`.
    Read = 2,
    /// `XS_GET_PERMS`.
    GetPerms = 3,
    /// `XS_WATCH`.
    Watch = 4,
    /// `XS_UNWATCH`.
    Unwatch = 5,
    /// `XS_TRANSACTION_START`.
    TransactionStart = 6,
    /// `XS_TRANSACTION_END`.
    TransactionEnd = 7,
    /// `XS_INTRODUCE`.
    Introduce = 8,
    /// `XS_RELEASE`.
    Release = 9,
    /// `XS_GET_DOMAIN_PATH`.
    GetDomainPath = 10,
    /// `XS_WRITE`.
    Write = 11,
    /// `XS_MKDIR`.
    Mkdir = 12,
    /// `XS_RM`.
    Rm = 13,
    /// `XS_SET_PERMS`.
    SetPerms = 14,
    /// `XS_WATCH_EVENT` (only from the server).
    WatchEvent = 15,
    /// `XS_ERROR` (only from the server).
    Error = 16,
    /// `XS_IS_DOMAIN_INTRODUCED`.
    IsDomainIntroduced = 17,
    /// `XS_RESUME`.
    Resume = 18,
    /// `XS_SET_TARGET`.
    SetTarget = 19,
    /// `XS_RESET_WATCHES` (20 was `XS_RESTRICT`, removed).
    ResetWatches = 21,
    /// `XS_DIRECTORY_PART`.
    DirectoryPart = 22,
}

impl MsgType {
    /// The wire value.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The type for a wire value, if it is one this crate knows.
    pub fn from_code(code: u32) -> Option<Self> {
        use MsgType::*;
        Some(match code {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }

    /// The name used in `xs_wire.h` without the `XS_` prefix, e.g. `"READ"`; used in errors.
    pub const fn name(self) -> &'static str {
        use MsgType::*;
        match self {
            Control => "CONTROL",
            Directory => "DIRECTORY",
            Read => "READ",
            GetPerms => "GET_PERMS",
            Watch => "WATCH",
            Unwatch => "UNWATCH",
            TransactionStart => "TRANSACTION_START",
            TransactionEnd => "TRANSACTION_END",
            Introduce => "INTRODUCE",
            Release => "RELEASE",
            GetDomainPath => "GET_DOMAIN_PATH",
            Write => "WRITE",
            Mkdir => "MKDIR",
            Rm => "RM",
            SetPerms => "SET_PERMS",
            WatchEvent => "WATCH_EVENT",
            Error => "ERROR",
            IsDomainIntroduced => "IS_DOMAIN_INTRODUCED",
            Resume => "RESUME",
            SetTarget => "SET_TARGET",
            ResetWatches => "RESET_WATCHES",
            DirectoryPart => "DIRECTORY_PART",
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The message header (`struct xsd_sockmsg`), fields in native byte order on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Message type as sent (see [`MsgType::from_code`]).
    pub msg_type: u32,
    /// Request id, echoed by the server in its reply.
    pub req_id: u32,
    /// Transaction id, 0 outside transactions.
    pub tx_id: u32,
    /// Payload length in bytes.
    pub len: u32,
}

impl Header {
    /// The 16 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        for (chunk, v) in
            out.chunks_exact_mut(4)
                .zip([self.msg_type, self.req_id, self.tx_id, self.len])
        {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        out
    }

    /// Parse 16 header bytes.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Header {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[i * 4..i * 4 + 4]);
            u32::from_ne_bytes(w)
        };
        Header {
            msg_type: word(0),
            req_id: word(1),
            tx_id: word(2),
            len: word(3),
        }
    }
}

/// Errors of the wire codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A payload longer than [`PAYLOAD_MAX`] (to send, or announced by a received header).
    #[error("payload of {len} bytes exceeds the xenstore limit of {PAYLOAD_MAX} bytes")]
    PayloadTooLarge {
        /// The offending length.
        len: usize,
    },
}

/// One complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header; `header.len == payload.len()`.
    pub header: Header,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl Message {
    /// The header's type, if known.
    pub fn msg_type(&self) -> Option<MsgType> {
        MsgType::from_code(self.header.msg_type)
    }
}

/// Encode one message (header + payload) into a single buffer, ready for one `write`.
pub fn encode_message(
    msg_type: MsgType,
    req_id: u32,
    tx_id: u32,
    payload: &[u8],
) -> Result<Vec<u8>, WireError> {
    let len = payload.len();
    if len > PAYLOAD_MAX {
        return Err(WireError::PayloadTooLarge { len });
    }
    let header = Header {
        msg_type: msg_type.code(),
        req_id,
        tx_id,
        // `len <= PAYLOAD_MAX` was checked above, so this cannot truncate.
        len: len as u32,
    };
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Build a payload of NUL-terminated strings: `a\0b\0…`.
pub fn nul_joined<I, S>(parts: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_ref());
        out.push(0);
    }
    out
}

/// Split a payload of NUL-terminated strings. A missing final terminator is tolerated (the rest
/// counts as the last string); the empty string after the final NUL is not returned.
pub fn split_nul(payload: &[u8]) -> Vec<&[u8]> {
    let mut parts: Vec<&[u8]> = payload.split(|&b| b == 0).collect();
    if payload.last() == Some(&0) || payload.is_empty() {
        parts.pop();
    }
    parts
}

/// Incremental decoder: feed it whatever `read` returned, take complete messages out.
///
/// A header announcing more than [`PAYLOAD_MAX`] bytes is an error from which the stream cannot
/// be resynchronised; the caller must drop the connection.
#[derive(Debug, Default)]
pub struct MessageReader {
    buf: Vec<u8>,
}

impl MessageReader {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append bytes received from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered that do not yet form a complete message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Take the next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let Some(head) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = Header::decode(head);
        let len = usize::try_from(header.len).unwrap_or(usize::MAX);
        if len > PAYLOAD_MAX {
            return Err(WireError::PayloadTooLarge { len });
        }
        let total = HEADER_LEN + len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let payload = self.buf.get(HEADER_LEN..total).map(<[u8]>::to_vec);
        self.buf.drain(..total);
        Ok(payload.map(|payload| Message { header, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_native_layout() {
        let h = Header {
            msg_type: MsgType::Write.code(),
            req_id: 0x0102_0304,
            tx_id: 7,
            len: 4096,
        };
        let bytes = h.encode();
        assert_eq!(&bytes[0..4], &11u32.to_ne_bytes());
        assert_eq!(&bytes[4..8], &0x0102_0304u32.to_ne_bytes());
        assert_eq!(&bytes[8..12], &7u32.to_ne_bytes());
        assert_eq!(&bytes[12..16], &4096u32.to_ne_bytes());
        assert_eq!(Header::decode(&bytes), h);
    }

    #[test]
    fn type_codes_match_xs_wire_h() {
        assert_eq!(MsgType::Control.code(), 0);
        assert_eq!(MsgType::WatchEvent.code(), 15);
        assert_eq!(MsgType::Error.code(), 16);
        assert_eq!(MsgType::SetTarget.code(), 19);
        assert_eq!(MsgType::ResetWatches.code(), 21);
        assert_eq!(MsgType::DirectoryPart.code(), 22);
        assert_eq!(MsgType::from_code(20), None);
        for code in 0..=22 {
            if let Some(t) = MsgType::from_code(code) {
                assert_eq!(t.code(), code, "{t}");
            }
        }
    }

    #[test]
    fn encode_message_checks_the_limit() {
        let ok = encode_message(MsgType::Write, 3, 9, &[b'x'; PAYLOAD_MAX]).unwrap();
        assert_eq!(ok.len(), HEADER_LEN + PAYLOAD_MAX);
        let head: [u8; HEADER_LEN] = ok[..HEADER_LEN].try_into().unwrap();
        assert_eq!(
            Header::decode(&head),
            Header {
                msg_type: 11,
                req_id: 3,
                tx_id: 9,
                len: 4096
            }
        );
        assert_eq!(
            encode_message(MsgType::Write, 3, 9, &[0; PAYLOAD_MAX + 1]),
            Err(WireError::PayloadTooLarge {
                len: PAYLOAD_MAX + 1
            })
        );
    }

    #[test]
    fn reader_reassembles_byte_by_byte() {
        let a = encode_message(MsgType::Read, 1, 0, b"/a/b\0").unwrap();
        let b = encode_message(MsgType::WatchEvent, 0, 0, b"/x\0tok\0").unwrap();
        let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let mut r = MessageReader::new();
        let mut got = Vec::new();
        for byte in &stream {
            r.push(std::slice::from_ref(byte));
            while let Some(m) = r.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].msg_type(), Some(MsgType::Read));
        assert_eq!(got[0].header.req_id, 1);
        assert_eq!(got[0].payload, b"/a/b\0");
        assert_eq!(got[1].msg_type(), Some(MsgType::WatchEvent));
        assert_eq!(got[1].payload, b"/x\0tok\0");
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn reader_handles_split_header_several_messages_per_chunk_and_empty_payload() {
        let a = encode_message(MsgType::Rm, 5, 2, b"").unwrap();
        let b = encode_message(MsgType::Read, 6, 0, b"value").unwrap();
        let c = encode_message(MsgType::Mkdir, 7, 0, b"OK\0").unwrap();
        let mut stream = Vec::new();
        for m in [&a, &b, &c] {
            stream.extend_from_slice(m);
        }
        // Chunks: half a header, rest of `a` plus all of `b` plus 3 bytes of `c`, the rest.
        let cut1 = 8;
        let cut2 = a.len() + b.len() + 3;
        let mut r = MessageReader::new();
        r.push(&stream[..cut1]);
        assert_eq!(r.next_message().unwrap(), None);
        r.push(&stream[cut1..cut2]);
        let m1 = r.next_message().unwrap().unwrap();
        assert_eq!(
            (m1.header.req_id, m1.header.tx_id, m1.payload.len()),
            (5, 2, 0)
        );
        let m2 = r.next_message().unwrap().unwrap();
        assert_eq!(
            (m2.header.req_id, m2.payload.as_slice()),
            (6, &b"value"[..])
        );
        assert_eq!(r.next_message().unwrap(), None);
        assert_eq!(r.buffered(), 3);
        r.push(&stream[cut2..]);
        let m3 = r.next_message().unwrap().unwrap();
        assert_eq!((m3.header.req_id, m3.payload.as_slice()), (7, &b"OK\0"[..]));
        assert_eq!(r.next_message().unwrap(), None);
    }

    #[test]
    fn reader_rejects_oversize_header() {
        let h = Header {
            msg_type: 2,
            req_id: 1,
            tx_id: 0,
            len: PAYLOAD_MAX as u32 + 1,
        };
        let mut r = MessageReader::new();
        r.push(&h.encode());
        assert_eq!(
            r.next_message(),
            Err(WireError::PayloadTooLarge {
                len: PAYLOAD_MAX + 1
            })
        );
    }

    #[test]
    fn nul_strings() {
        assert_eq!(nul_joined(["a", "bc"]), b"a\0bc\0");
        assert_eq!(split_nul(b"a\0bc\0"), vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!(split_nul(b"a\0bc"), vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!(split_nul(b""), Vec::<&[u8]>::new());
        assert_eq!(split_nul(b"\0"), vec![&b""[..]]);
        assert_eq!(split_nul(b"x\0\0"), vec![&b"x"[..], &b""[..]]);
    }
}
