//! The 64-byte sndif messages: requests (frontend → backend), responses and events
//! (backend → frontend).
//!
//! Every message is encoded to and decoded from a private `[u8; 64]` with explicit little-endian
//! accesses at the offsets of [`crate::layout`]; nothing is transmuted. Reserved bytes are written
//! as zero and ignored on decode. Decoding never panics; unknown codes are [`WireError`]s that
//! carry the message id, so a backend can still answer a malformed request.

use core::fmt;

use crate::formats::{FormatSet, PcmFormat};
use crate::layout::{
    CUR_POS_POSITION, EVT_CUR_POS, EVT_ID, EVT_OP, EVT_TYPE, HWP_BUFFER_MAX, HWP_BUFFER_MIN,
    HWP_CHANNELS_MAX, HWP_CHANNELS_MIN, HWP_FORMATS, HWP_PERIOD_MAX, HWP_PERIOD_MIN, HWP_RATES_MAX,
    HWP_RATES_MIN, HWP_SIZE, MSG_SIZE, OPEN_BUFFER_SZ, OPEN_GREF_DIRECTORY, OPEN_PCM_CHANNELS,
    OPEN_PCM_FORMAT, OPEN_PCM_RATE, OPEN_PERIOD_SZ, OP_CLOSE, OP_GET_VOLUME, OP_HW_PARAM_QUERY,
    OP_MUTE, OP_OPEN, OP_READ, OP_SET_VOLUME, OP_TRIGGER, OP_UNMUTE, OP_WRITE, REQ_ID, REQ_OP,
    REQ_OPERATION, RSP_ID, RSP_OPERATION, RSP_RESP, RSP_STATUS, RW_LENGTH, RW_OFFSET,
    TRIGGER_PAUSE, TRIGGER_RESUME, TRIGGER_START, TRIGGER_STOP, TRIGGER_TYPE,
};

/// One encoded request, response or event.
pub type Msg = [u8; MSG_SIZE];

// ---- byte helpers: offsets are compile-time constants, checked against the array size -----------

/// Little-endian accessors for a byte array of one fixed size. Every offset is a const generic
/// argument checked at compile time, so the accessors cannot panic.
macro_rules! le_accessors {
    ($module:ident, $size:path) => {
        // Each instantiation uses only some of the accessors.
        #[allow(dead_code)]
        mod $module {
            const N: usize = $size;

            pub(super) fn get_u8<const OFF: usize>(b: &[u8; N]) -> u8 {
                const { assert!(OFF < N) };
                b[OFF]
            }

            pub(super) fn get_u16<const OFF: usize>(b: &[u8; N]) -> u16 {
                const { assert!(OFF + 2 <= N) };
                u16::from_le_bytes([b[OFF], b[OFF + 1]])
            }

            pub(super) fn get_u32<const OFF: usize>(b: &[u8; N]) -> u32 {
                const { assert!(OFF + 4 <= N) };
                u32::from_le_bytes([b[OFF], b[OFF + 1], b[OFF + 2], b[OFF + 3]])
            }

            pub(super) fn get_u64<const OFF: usize>(b: &[u8; N]) -> u64 {
                const { assert!(OFF + 8 <= N) };
                let mut x = [0u8; 8];
                x.copy_from_slice(&b[OFF..OFF + 8]);
                u64::from_le_bytes(x)
            }

            pub(super) fn get_block<const OFF: usize, const LEN: usize>(b: &[u8; N]) -> [u8; LEN] {
                const { assert!(OFF + LEN <= N) };
                let mut x = [0u8; LEN];
                x.copy_from_slice(&b[OFF..OFF + LEN]);
                x
            }

            pub(super) fn put_u8<const OFF: usize>(b: &mut [u8; N], v: u8) {
                const { assert!(OFF < N) };
                b[OFF] = v;
            }

            pub(super) fn put_u16<const OFF: usize>(b: &mut [u8; N], v: u16) {
                const { assert!(OFF + 2 <= N) };
                b[OFF..OFF + 2].copy_from_slice(&v.to_le_bytes());
            }

            pub(super) fn put_u32<const OFF: usize>(b: &mut [u8; N], v: u32) {
                const { assert!(OFF + 4 <= N) };
                b[OFF..OFF + 4].copy_from_slice(&v.to_le_bytes());
            }

            pub(super) fn put_u64<const OFF: usize>(b: &mut [u8; N], v: u64) {
                const { assert!(OFF + 8 <= N) };
                b[OFF..OFF + 8].copy_from_slice(&v.to_le_bytes());
            }

            pub(super) fn put_block<const OFF: usize, const LEN: usize>(
                b: &mut [u8; N],
                v: &[u8; LEN],
            ) {
                const { assert!(OFF + LEN <= N) };
                b[OFF..OFF + LEN].copy_from_slice(v);
            }
        }
    };
}

le_accessors!(msg, crate::layout::MSG_SIZE);
le_accessors!(hwp, crate::layout::HWP_SIZE);

use msg::{
    get_block, get_u16, get_u32, get_u64, get_u8, put_block, put_u16, put_u32, put_u64, put_u8,
};

// ---- codes -------------------------------------------------------------------------------------

/// A request operation (`XENSND_OP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `XENSND_OP_OPEN`.
    Open,
    /// `XENSND_OP_CLOSE`.
    Close,
    /// `XENSND_OP_READ` (capture).
    Read,
    /// `XENSND_OP_WRITE` (playback).
    Write,
    /// `XENSND_OP_SET_VOLUME`.
    SetVolume,
    /// `XENSND_OP_GET_VOLUME`.
    GetVolume,
    /// `XENSND_OP_MUTE`.
    Mute,
    /// `XENSND_OP_UNMUTE`.
    Unmute,
    /// `XENSND_OP_TRIGGER`.
    Trigger,
    /// `XENSND_OP_HW_PARAM_QUERY`.
    HwParamQuery,
}

/// Every operation, in code order.
pub const ALL_OPERATIONS: [Operation; 10] = [
    Operation::Open,
    Operation::Close,
    Operation::Read,
    Operation::Write,
    Operation::SetVolume,
    Operation::GetVolume,
    Operation::Mute,
    Operation::Unmute,
    Operation::Trigger,
    Operation::HwParamQuery,
];

impl Operation {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            Operation::Open => OP_OPEN,
            Operation::Close => OP_CLOSE,
            Operation::Read => OP_READ,
            Operation::Write => OP_WRITE,
            Operation::SetVolume => OP_SET_VOLUME,
            Operation::GetVolume => OP_GET_VOLUME,
            Operation::Mute => OP_MUTE,
            Operation::Unmute => OP_UNMUTE,
            Operation::Trigger => OP_TRIGGER,
            Operation::HwParamQuery => OP_HW_PARAM_QUERY,
        }
    }

    /// The operation for a wire code, if defined.
    pub fn from_code(code: u8) -> Option<Self> {
        ALL_OPERATIONS.into_iter().find(|op| op.code() == code)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Open => "OPEN",
            Operation::Close => "CLOSE",
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::SetVolume => "SET_VOLUME",
            Operation::GetVolume => "GET_VOLUME",
            Operation::Mute => "MUTE",
            Operation::Unmute => "UNMUTE",
            Operation::Trigger => "TRIGGER",
            Operation::HwParamQuery => "HW_PARAM_QUERY",
        })
    }
}

/// A trigger type (`XENSND_OP_TRIGGER_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriggerType {
    /// `XENSND_OP_TRIGGER_START`.
    Start,
    /// `XENSND_OP_TRIGGER_PAUSE`.
    Pause,
    /// `XENSND_OP_TRIGGER_STOP`.
    Stop,
    /// `XENSND_OP_TRIGGER_RESUME`.
    Resume,
}

/// Every trigger type, in code order.
pub const ALL_TRIGGER_TYPES: [TriggerType; 4] = [
    TriggerType::Start,
    TriggerType::Pause,
    TriggerType::Stop,
    TriggerType::Resume,
];

impl TriggerType {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            TriggerType::Start => TRIGGER_START,
            TriggerType::Pause => TRIGGER_PAUSE,
            TriggerType::Stop => TRIGGER_STOP,
            TriggerType::Resume => TRIGGER_RESUME,
        }
    }

    /// The trigger type for a wire code, if defined.
    pub fn from_code(code: u8) -> Option<Self> {
        ALL_TRIGGER_TYPES.into_iter().find(|t| t.code() == code)
    }
}

/// An event type (`XENSND_EVT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// `XENSND_EVT_CUR_POS`.
    CurPos,
}

impl EventType {
    /// The wire code.
    pub const fn code(self) -> u8 {
        match self {
            EventType::CurPos => EVT_CUR_POS,
        }
    }

    /// The event type for a wire code, if defined.
    pub fn from_code(code: u8) -> Option<Self> {
        (code == EVT_CUR_POS).then_some(EventType::CurPos)
    }
}

// ---- errors ------------------------------------------------------------------------------------

/// Which kind of message a [`WireError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A request.
    Request,
    /// A response.
    Response,
    /// An event.
    Event,
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageKind::Request => "request",
            MessageKind::Response => "response",
            MessageKind::Event => "event",
        })
    }
}

/// A message that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The `operation` field holds no `XENSND_OP_*` code.
    #[error("{kind} id {id}: unknown operation code {code}")]
    UnknownOperation {
        /// Request or response.
        kind: MessageKind,
        /// The message id.
        id: u16,
        /// The raw operation byte.
        code: u8,
    },
    /// A TRIGGER request whose `type` holds no `XENSND_OP_TRIGGER_*` code.
    #[error("request id {id}: TRIGGER with unknown trigger type {code}")]
    UnknownTriggerType {
        /// The request id.
        id: u16,
        /// The raw type byte.
        code: u8,
    },
    /// An OPEN request whose `pcm_format` holds no `XENSND_PCM_FORMAT_*` code.
    #[error("request id {id}: OPEN with unknown PCM format code {code}")]
    UnknownPcmFormat {
        /// The request id.
        id: u16,
        /// The raw format byte.
        code: u8,
    },
    /// An event whose `type` holds no `XENSND_EVT_*` code.
    #[error("event id {id}: unknown event type {code}")]
    UnknownEventType {
        /// The event id.
        id: u16,
        /// The raw type byte.
        code: u8,
    },
}

impl WireError {
    /// The id of the offending message (to answer or match it anyway).
    pub fn id(&self) -> u16 {
        match *self {
            WireError::UnknownOperation { id, .. }
            | WireError::UnknownTriggerType { id, .. }
            | WireError::UnknownPcmFormat { id, .. }
            | WireError::UnknownEventType { id, .. } => id,
        }
    }

    /// The raw operation byte of the offending request or response (`None` for events), so a
    /// backend can echo it in an error response.
    pub fn operation_code(&self) -> Option<u8> {
        match *self {
            WireError::UnknownOperation { code, .. } => Some(code),
            WireError::UnknownTriggerType { .. } => Some(OP_TRIGGER),
            WireError::UnknownPcmFormat { .. } => Some(OP_OPEN),
            WireError::UnknownEventType { .. } => None,
        }
    }
}

// ---- payloads ----------------------------------------------------------------------------------

/// A `min..=max` range of `HW_PARAM_QUERY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Interval {
    /// Lower bound.
    pub min: u32,
    /// Upper bound.
    pub max: u32,
}

impl Interval {
    /// `min..=max`.
    pub const fn new(min: u32, max: u32) -> Self {
        Interval { min, max }
    }
}

/// `struct xensnd_query_hw_param`: a configuration space (request) or its refinement
/// (response). `buffer` and `period` are in **frames**, unlike OPEN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct HwParam {
    /// Formats mask (`1 << XENSND_PCM_FORMAT_*`); undefined bits are kept as received.
    pub formats: FormatSet,
    /// Sample rates, Hz.
    pub rates: Interval,
    /// Channel counts.
    pub channels: Interval,
    /// Buffer size, frames.
    pub buffer: Interval,
    /// Period size, frames.
    pub period: Interval,
}

impl HwParam {
    /// Encode as `struct xensnd_query_hw_param` (40 bytes).
    pub fn to_bytes(&self) -> [u8; HWP_SIZE] {
        let mut b = [0u8; HWP_SIZE];
        hwp::put_u64::<HWP_FORMATS>(&mut b, self.formats.0);
        hwp::put_u32::<HWP_RATES_MIN>(&mut b, self.rates.min);
        hwp::put_u32::<HWP_RATES_MAX>(&mut b, self.rates.max);
        hwp::put_u32::<HWP_CHANNELS_MIN>(&mut b, self.channels.min);
        hwp::put_u32::<HWP_CHANNELS_MAX>(&mut b, self.channels.max);
        hwp::put_u32::<HWP_BUFFER_MIN>(&mut b, self.buffer.min);
        hwp::put_u32::<HWP_BUFFER_MAX>(&mut b, self.buffer.max);
        hwp::put_u32::<HWP_PERIOD_MIN>(&mut b, self.period.min);
        hwp::put_u32::<HWP_PERIOD_MAX>(&mut b, self.period.max);
        b
    }

    /// Decode a `struct xensnd_query_hw_param`.
    pub fn from_bytes(b: &[u8; HWP_SIZE]) -> Self {
        HwParam {
            formats: FormatSet(hwp::get_u64::<HWP_FORMATS>(b)),
            rates: Interval::new(
                hwp::get_u32::<HWP_RATES_MIN>(b),
                hwp::get_u32::<HWP_RATES_MAX>(b),
            ),
            channels: Interval::new(
                hwp::get_u32::<HWP_CHANNELS_MIN>(b),
                hwp::get_u32::<HWP_CHANNELS_MAX>(b),
            ),
            buffer: Interval::new(
                hwp::get_u32::<HWP_BUFFER_MIN>(b),
                hwp::get_u32::<HWP_BUFFER_MAX>(b),
            ),
            period: Interval::new(
                hwp::get_u32::<HWP_PERIOD_MIN>(b),
                hwp::get_u32::<HWP_PERIOD_MAX>(b),
            ),
        }
    }
}

/// `struct xensnd_open_req`. `buffer_sz` and `period_sz` are in **octets**.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpenParams {
    /// Sample rate, Hz.
    pub rate: u32,
    /// Sample format.
    pub format: PcmFormat,
    /// Channel count.
    pub channels: u8,
    /// Shared buffer size, octets.
    pub buffer_sz: u32,
    /// Grant reference of the first page-directory page.
    pub gref_directory: u32,
    /// Period (CUR_POS cadence), octets.
    pub period_sz: u32,
}

/// `struct xensnd_rw_req`: a byte range of the shared buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RwParams {
    /// Offset into the shared buffer, octets.
    pub offset: u32,
    /// Length, octets.
    pub length: u32,
}

/// The payload of a request, one variant per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestBody {
    /// OPEN.
    Open(OpenParams),
    /// CLOSE.
    Close,
    /// READ (capture data into the buffer).
    Read(RwParams),
    /// WRITE (playback data from the buffer).
    Write(RwParams),
    /// SET_VOLUME: per-channel values in the buffer range.
    SetVolume(RwParams),
    /// GET_VOLUME.
    GetVolume(RwParams),
    /// MUTE.
    Mute(RwParams),
    /// UNMUTE.
    Unmute(RwParams),
    /// TRIGGER.
    Trigger(TriggerType),
    /// HW_PARAM_QUERY.
    HwParamQuery(HwParam),
}

impl RequestBody {
    /// The operation this payload belongs to.
    pub fn operation(&self) -> Operation {
        match self {
            RequestBody::Open(_) => Operation::Open,
            RequestBody::Close => Operation::Close,
            RequestBody::Read(_) => Operation::Read,
            RequestBody::Write(_) => Operation::Write,
            RequestBody::SetVolume(_) => Operation::SetVolume,
            RequestBody::GetVolume(_) => Operation::GetVolume,
            RequestBody::Mute(_) => Operation::Mute,
            RequestBody::Unmute(_) => Operation::Unmute,
            RequestBody::Trigger(_) => Operation::Trigger,
            RequestBody::HwParamQuery(_) => Operation::HwParamQuery,
        }
    }
}

// ---- request -----------------------------------------------------------------------------------

/// `struct xensnd_req`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// Frontend-chosen id, echoed in the response.
    pub id: u16,
    /// Operation and payload.
    pub body: RequestBody,
}

fn put_rw(b: &mut Msg, rw: &RwParams) {
    put_u32::<{ REQ_OP + RW_OFFSET }>(b, rw.offset);
    put_u32::<{ REQ_OP + RW_LENGTH }>(b, rw.length);
}

fn get_rw(b: &Msg) -> RwParams {
    RwParams {
        offset: get_u32::<{ REQ_OP + RW_OFFSET }>(b),
        length: get_u32::<{ REQ_OP + RW_LENGTH }>(b),
    }
}

impl Request {
    /// The operation of this request.
    pub fn operation(&self) -> Operation {
        self.body.operation()
    }

    /// Encode to 64 bytes; reserved bytes are zero.
    pub fn encode(&self) -> Msg {
        let mut b = [0u8; MSG_SIZE];
        put_u16::<REQ_ID>(&mut b, self.id);
        put_u8::<REQ_OPERATION>(&mut b, self.operation().code());
        match &self.body {
            RequestBody::Open(o) => {
                put_u32::<{ REQ_OP + OPEN_PCM_RATE }>(&mut b, o.rate);
                put_u8::<{ REQ_OP + OPEN_PCM_FORMAT }>(&mut b, o.format.code());
                put_u8::<{ REQ_OP + OPEN_PCM_CHANNELS }>(&mut b, o.channels);
                put_u32::<{ REQ_OP + OPEN_BUFFER_SZ }>(&mut b, o.buffer_sz);
                put_u32::<{ REQ_OP + OPEN_GREF_DIRECTORY }>(&mut b, o.gref_directory);
                put_u32::<{ REQ_OP + OPEN_PERIOD_SZ }>(&mut b, o.period_sz);
            }
            RequestBody::Close => {}
            RequestBody::Read(rw)
            | RequestBody::Write(rw)
            | RequestBody::SetVolume(rw)
            | RequestBody::GetVolume(rw)
            | RequestBody::Mute(rw)
            | RequestBody::Unmute(rw) => put_rw(&mut b, rw),
            RequestBody::Trigger(t) => put_u8::<{ REQ_OP + TRIGGER_TYPE }>(&mut b, t.code()),
            RequestBody::HwParamQuery(hw) => put_block::<REQ_OP, HWP_SIZE>(&mut b, &hw.to_bytes()),
        }
        b
    }

    /// Decode 64 bytes. Unknown operation, trigger type or PCM format codes are errors that carry
    /// the request id.
    pub fn decode(b: &Msg) -> Result<Self, WireError> {
        let id = get_u16::<REQ_ID>(b);
        let code = get_u8::<REQ_OPERATION>(b);
        let op = Operation::from_code(code).ok_or(WireError::UnknownOperation {
            kind: MessageKind::Request,
            id,
            code,
        })?;
        let body = match op {
            Operation::Open => {
                let fcode = get_u8::<{ REQ_OP + OPEN_PCM_FORMAT }>(b);
                let format = PcmFormat::from_code(fcode)
                    .ok_or(WireError::UnknownPcmFormat { id, code: fcode })?;
                RequestBody::Open(OpenParams {
                    rate: get_u32::<{ REQ_OP + OPEN_PCM_RATE }>(b),
                    format,
                    channels: get_u8::<{ REQ_OP + OPEN_PCM_CHANNELS }>(b),
                    buffer_sz: get_u32::<{ REQ_OP + OPEN_BUFFER_SZ }>(b),
                    gref_directory: get_u32::<{ REQ_OP + OPEN_GREF_DIRECTORY }>(b),
                    period_sz: get_u32::<{ REQ_OP + OPEN_PERIOD_SZ }>(b),
                })
            }
            Operation::Close => RequestBody::Close,
            Operation::Read => RequestBody::Read(get_rw(b)),
            Operation::Write => RequestBody::Write(get_rw(b)),
            Operation::SetVolume => RequestBody::SetVolume(get_rw(b)),
            Operation::GetVolume => RequestBody::GetVolume(get_rw(b)),
            Operation::Mute => RequestBody::Mute(get_rw(b)),
            Operation::Unmute => RequestBody::Unmute(get_rw(b)),
            Operation::Trigger => {
                let tcode = get_u8::<{ REQ_OP + TRIGGER_TYPE }>(b);
                RequestBody::Trigger(
                    TriggerType::from_code(tcode)
                        .ok_or(WireError::UnknownTriggerType { id, code: tcode })?,
                )
            }
            Operation::HwParamQuery => {
                RequestBody::HwParamQuery(HwParam::from_bytes(&get_block::<REQ_OP, HWP_SIZE>(b)))
            }
        };
        Ok(Request { id, body })
    }
}

// ---- response ----------------------------------------------------------------------------------

/// The payload of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseBody {
    /// No payload (every operation except a successful HW_PARAM_QUERY).
    Empty,
    /// The refined configuration space of a successful HW_PARAM_QUERY.
    HwParam(HwParam),
}

/// `struct xensnd_resp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Response {
    /// Id copied from the request.
    pub id: u16,
    /// Operation copied from the request.
    pub operation: Operation,
    /// 0 on success; anything else is a failure (usually `-errno`, but peers differ; sndif.md
    /// §3.6), kept raw.
    pub status: i32,
    /// Payload.
    pub body: ResponseBody,
}

impl Response {
    /// A successful response without payload.
    pub fn ok(id: u16, operation: Operation) -> Self {
        Response {
            id,
            operation,
            status: 0,
            body: ResponseBody::Empty,
        }
    }

    /// A failed response with `status` (e.g. `-22` for `-EINVAL`).
    pub fn error(id: u16, operation: Operation, status: i32) -> Self {
        Response {
            id,
            operation,
            status,
            body: ResponseBody::Empty,
        }
    }

    /// Whether the status reports success.
    pub fn is_ok(&self) -> bool {
        self.status == 0
    }

    /// Encode to 64 bytes; reserved bytes are zero.
    pub fn encode(&self) -> Msg {
        let mut b = Self::encode_raw(self.id, self.operation.code(), self.status);
        if let ResponseBody::HwParam(hw) = &self.body {
            put_block::<RSP_RESP, HWP_SIZE>(&mut b, &hw.to_bytes());
        }
        b
    }

    /// Encode a payload-less response with a raw operation byte: lets a backend answer a request
    /// whose operation code it does not know (see [`WireError::operation_code`]).
    pub fn encode_raw(id: u16, operation_code: u8, status: i32) -> Msg {
        let mut b = [0u8; MSG_SIZE];
        put_u16::<RSP_ID>(&mut b, id);
        put_u8::<RSP_OPERATION>(&mut b, operation_code);
        put_u32::<RSP_STATUS>(&mut b, u32::from_le_bytes(status.to_le_bytes()));
        b
    }

    /// Decode 64 bytes. The body is [`ResponseBody::HwParam`] for a HW_PARAM_QUERY response with
    /// status 0 and [`ResponseBody::Empty`] otherwise (a failed query's payload is meaningless).
    pub fn decode(b: &Msg) -> Result<Self, WireError> {
        let id = get_u16::<RSP_ID>(b);
        let code = get_u8::<RSP_OPERATION>(b);
        let operation = Operation::from_code(code).ok_or(WireError::UnknownOperation {
            kind: MessageKind::Response,
            id,
            code,
        })?;
        let status = i32::from_le_bytes(get_u32::<RSP_STATUS>(b).to_le_bytes());
        let body = if operation == Operation::HwParamQuery && status == 0 {
            ResponseBody::HwParam(HwParam::from_bytes(&get_block::<RSP_RESP, HWP_SIZE>(b)))
        } else {
            ResponseBody::Empty
        };
        Ok(Response {
            id,
            operation,
            status,
            body,
        })
    }
}

// ---- event -------------------------------------------------------------------------------------

/// The kind and payload of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `XENSND_EVT_CUR_POS`: cumulative stream position in **octets** since OPEN (may freeze or
    /// go backwards on some backends; sndif.md pitfall 3).
    CurPos {
        /// Position, octets.
        position: u64,
    },
}

impl EventKind {
    /// The event type.
    pub fn event_type(&self) -> EventType {
        match self {
            EventKind::CurPos { .. } => EventType::CurPos,
        }
    }
}

/// `struct xensnd_evt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event {
    /// Backend-chosen id (not necessarily sequential).
    pub id: u16,
    /// Kind and payload.
    pub kind: EventKind,
}

impl Event {
    /// Encode to 64 bytes; reserved bytes are zero.
    pub fn encode(&self) -> Msg {
        let mut b = [0u8; MSG_SIZE];
        put_u16::<EVT_ID>(&mut b, self.id);
        put_u8::<EVT_TYPE>(&mut b, self.kind.event_type().code());
        match self.kind {
            EventKind::CurPos { position } => {
                put_u64::<{ EVT_OP + CUR_POS_POSITION }>(&mut b, position);
            }
        }
        b
    }

    /// Decode 64 bytes; an unknown type is an error carrying the event id.
    pub fn decode(b: &Msg) -> Result<Self, WireError> {
        let id = get_u16::<EVT_ID>(b);
        let code = get_u8::<EVT_TYPE>(b);
        let kind = match EventType::from_code(code) {
            Some(EventType::CurPos) => EventKind::CurPos {
                position: get_u64::<{ EVT_OP + CUR_POS_POSITION }>(b),
            },
            None => return Err(WireError::UnknownEventType { id, code }),
        };
        Ok(Event { id, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::ALL_FORMATS;

    fn hw() -> HwParam {
        HwParam {
            formats: FormatSet(0x8000_0000_0000_4004),
            rates: Interval::new(8000, 192_000),
            channels: Interval::new(1, 8),
            buffer: Interval::new(64, 65536),
            period: Interval::new(32, 16384),
        }
    }

    fn rw(offset: u32, length: u32) -> RwParams {
        RwParams { offset, length }
    }

    fn all_bodies() -> Vec<RequestBody> {
        let open = OpenParams {
            rate: 48000,
            format: PcmFormat::S16Le,
            channels: 2,
            buffer_sz: 65536,
            gref_directory: 0x1234,
            period_sz: 4096,
        };
        let mut v = vec![
            RequestBody::Open(open),
            RequestBody::Close,
            RequestBody::Read(rw(1, 2)),
            RequestBody::Write(rw(0xffff_fff0, 0x10)),
            RequestBody::SetVolume(rw(3, 4)),
            RequestBody::GetVolume(rw(5, 6)),
            RequestBody::Mute(rw(7, 8)),
            RequestBody::Unmute(rw(9, 10)),
            RequestBody::HwParamQuery(hw()),
        ];
        v.extend(ALL_TRIGGER_TYPES.map(RequestBody::Trigger));
        v.extend(ALL_FORMATS.map(|format| RequestBody::Open(OpenParams { format, ..open })));
        v
    }

    #[test]
    fn operation_codes_round_trip() {
        for (i, op) in ALL_OPERATIONS.iter().enumerate() {
            assert_eq!(usize::from(op.code()), i);
            assert_eq!(Operation::from_code(op.code()), Some(*op));
        }
        assert_eq!(Operation::from_code(10), None);
        assert_eq!(TriggerType::from_code(4), None);
        assert_eq!(EventType::from_code(1), None);
        assert_eq!(Operation::HwParamQuery.to_string(), "HW_PARAM_QUERY");
    }

    #[test]
    fn every_request_round_trips() {
        for (n, body) in all_bodies().into_iter().enumerate() {
            let id = u16::try_from(n).unwrap_or(0).wrapping_mul(4099);
            let req = Request { id, body };
            let bytes = req.encode();
            assert_eq!(Request::decode(&bytes), Ok(req), "{req:?}");
            assert_eq!(bytes[REQ_OPERATION], req.operation().code());
        }
    }

    #[test]
    fn open_request_bytes_match_the_documented_offsets() {
        let req = Request {
            id: 0xbeef,
            body: RequestBody::Open(OpenParams {
                rate: 44100,
                format: PcmFormat::F32Le,
                channels: 6,
                buffer_sz: 0x0001_0203,
                gref_directory: 0x0a0b_0c0d,
                period_sz: 0x1122_3344,
            }),
        };
        let b = req.encode();
        let mut want = [0u8; 64];
        want[0..2].copy_from_slice(&0xbeefu16.to_le_bytes());
        want[2] = 0;
        want[8..12].copy_from_slice(&44100u32.to_le_bytes());
        want[12] = 14;
        want[13] = 6;
        want[16..20].copy_from_slice(&0x0001_0203u32.to_le_bytes());
        want[20..24].copy_from_slice(&0x0a0b_0c0du32.to_le_bytes());
        want[24..28].copy_from_slice(&0x1122_3344u32.to_le_bytes());
        assert_eq!(b, want);
    }

    #[test]
    fn reserved_bytes_are_ignored_on_decode() {
        let req = Request {
            id: 7,
            body: RequestBody::Write(rw(100, 200)),
        };
        let mut b = req.encode();
        for i in [3usize, 4, 5, 6, 7, 16, 40, 63] {
            b[i] = 0xff;
        }
        assert_eq!(Request::decode(&b), Ok(req));
        let close = Request {
            id: 9,
            body: RequestBody::Close,
        };
        let mut c = close.encode();
        c[8..].fill(0x77);
        assert_eq!(Request::decode(&c), Ok(close));
        let ev = Event {
            id: 3,
            kind: EventKind::CurPos { position: 5 },
        };
        let mut e = ev.encode();
        e[3] = 1;
        e[16..].fill(0xaa);
        assert_eq!(Event::decode(&e), Ok(ev));
    }

    #[test]
    fn unknown_codes_are_typed_errors_with_the_id() {
        let mut b = [0u8; 64];
        b[0..2].copy_from_slice(&0x0102u16.to_le_bytes());
        b[2] = 42;
        let e = Request::decode(&b).expect_err("unknown op");
        assert_eq!(
            e,
            WireError::UnknownOperation {
                kind: MessageKind::Request,
                id: 0x0102,
                code: 42
            }
        );
        assert_eq!(e.id(), 0x0102);
        assert_eq!(e.operation_code(), Some(42));
        assert_eq!(e.to_string(), "request id 258: unknown operation code 42");

        b[2] = OP_TRIGGER;
        b[8] = 4;
        let e = Request::decode(&b).expect_err("unknown trigger");
        assert_eq!(
            e,
            WireError::UnknownTriggerType {
                id: 0x0102,
                code: 4
            }
        );
        assert_eq!(e.operation_code(), Some(OP_TRIGGER));

        b[2] = OP_OPEN;
        b[12] = 25;
        let e = Request::decode(&b).expect_err("unknown format");
        assert_eq!(
            e,
            WireError::UnknownPcmFormat {
                id: 0x0102,
                code: 25
            }
        );
        assert_eq!(e.operation_code(), Some(OP_OPEN));

        b[2] = 200;
        let e = Response::decode(&b).expect_err("unknown op in response");
        assert!(matches!(
            e,
            WireError::UnknownOperation {
                kind: MessageKind::Response,
                code: 200,
                ..
            }
        ));

        b[2] = 1;
        let e = Event::decode(&b).expect_err("unknown event type");
        assert_eq!(
            e,
            WireError::UnknownEventType {
                id: 0x0102,
                code: 1
            }
        );
        assert_eq!(e.operation_code(), None);
    }

    #[test]
    fn responses_round_trip() {
        let cases = [
            Response::ok(1, Operation::Open),
            Response::error(2, Operation::Write, -22),
            Response::error(3, Operation::Trigger, 22),
            Response::error(4, Operation::HwParamQuery, i32::MIN),
            Response {
                id: 0xffff,
                operation: Operation::HwParamQuery,
                status: 0,
                body: ResponseBody::HwParam(hw()),
            },
        ];
        for r in cases {
            let b = r.encode();
            assert_eq!(Response::decode(&b), Ok(r));
        }
        let b = Response::error(5, Operation::Close, -5).encode();
        assert_eq!(&b[4..8], &(-5i32).to_le_bytes());
        assert!(!Response::decode(&b).expect("decode").is_ok());
    }

    #[test]
    fn failed_hw_param_response_has_no_body() {
        let mut r = Response {
            id: 1,
            operation: Operation::HwParamQuery,
            status: 0,
            body: ResponseBody::HwParam(hw()),
        };
        r.status = -22;
        let d = Response::decode(&r.encode()).expect("decode");
        assert_eq!(d.body, ResponseBody::Empty);
        assert_eq!(d.status, -22);
    }

    #[test]
    fn raw_error_response_echoes_unknown_operation() {
        let b = Response::encode_raw(77, 42, -38);
        assert_eq!(b[2], 42);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 77);
        assert_eq!(&b[4..8], &(-38i32).to_le_bytes());
        assert!(b[8..].iter().all(|x| *x == 0));
    }

    #[test]
    fn events_round_trip() {
        for position in [0u64, 1, 0x0102_0304_0506_0708, u64::MAX] {
            let ev = Event {
                id: 0xfffe,
                kind: EventKind::CurPos { position },
            };
            let b = ev.encode();
            assert_eq!(&b[8..16], &position.to_le_bytes());
            assert_eq!(Event::decode(&b), Ok(ev));
        }
    }

    /// xorshift64*: deterministic, dependency-free.
    struct Prng(u64);
    impl Prng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn fill(&mut self, b: &mut Msg) {
            for chunk in b.chunks_exact_mut(8) {
                chunk.copy_from_slice(&self.next().to_le_bytes());
            }
        }
    }

    #[test]
    fn decoding_random_bytes_never_panics_and_re_encodes_consistently() {
        let mut rng = Prng(0x9e37_79b9_7f4a_7c15);
        let mut b = [0u8; 64];
        let (mut req_ok, mut rsp_ok, mut evt_ok) = (0u32, 0u32, 0u32);
        for i in 0..100_000u32 {
            rng.fill(&mut b);
            // Bias a share of the inputs towards valid codes so the success paths run too.
            if i % 2 == 0 {
                b[2] %= 12;
                b[8] %= 5;
                b[12] %= 26;
            }
            if let Ok(r) = Request::decode(&b) {
                req_ok += 1;
                // Decoding the re-encoded bytes gives the same value (reserved bytes dropped).
                assert_eq!(Request::decode(&r.encode()), Ok(r));
            }
            if let Ok(r) = Response::decode(&b) {
                rsp_ok += 1;
                assert_eq!(Response::decode(&r.encode()), Ok(r));
            }
            if let Ok(e) = Event::decode(&b) {
                evt_ok += 1;
                assert_eq!(Event::decode(&e.encode()), Ok(e));
            }
        }
        assert!(req_ok > 10_000, "requests decoded: {req_ok}");
        assert!(rsp_ok > 10_000, "responses decoded: {rsp_ok}");
        assert!(evt_ok > 100, "events decoded: {evt_ok}");
    }
}
