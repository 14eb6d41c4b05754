//! Every byte offset, size and code of the sndif shared-memory protocol that the Rust side uses.
//!
//! Values follow `xen/io/sndif.h` and `xen/io/ring.h` (protocol version 2). Field offsets inside a
//! payload struct (`OPEN_*`, `RW_*`, `TRIGGER_*`, `HWP_*`, `CUR_POS_*`) are relative to the start
//! of the payload union (`REQ_OP`, `RSP_RESP`, `EVT_OP`); all other offsets are absolute within
//! their message or page. The wire, ring, event and page-directory code reads and writes memory
//! only through these constants, and `tests/layout_c.rs` compares each of them with the C header,
//! so a wrong value here fails a test instead of silently mis-encoding.

/// Size of a Xen page (`XEN_PAGE_SIZE`); every shared page of sndif is one of these.
pub const XEN_PAGE_SIZE: usize = 4096;

/// `XENSND_PROTOCOL_VERSION`.
pub const XENSND_PROTOCOL_VERSION: u32 = 2;

/// Size of one request, response or event (`sizeof(struct xensnd_req)` etc.).
pub const MSG_SIZE: usize = 64;

// ---- struct xensnd_req -------------------------------------------------------------------------

/// `offsetof(struct xensnd_req, id)` (u16).
pub const REQ_ID: usize = 0;
/// `offsetof(struct xensnd_req, operation)` (u8).
pub const REQ_OPERATION: usize = 2;
/// `offsetof(struct xensnd_req, op)`: start of the per-operation payload union.
pub const REQ_OP: usize = 8;
/// `sizeof(((struct xensnd_req *)0)->op)`.
pub const REQ_OP_SIZE: usize = 56;

// ---- struct xensnd_resp ------------------------------------------------------------------------

/// `offsetof(struct xensnd_resp, id)` (u16).
pub const RSP_ID: usize = 0;
/// `offsetof(struct xensnd_resp, operation)` (u8).
pub const RSP_OPERATION: usize = 2;
/// `offsetof(struct xensnd_resp, status)` (i32).
pub const RSP_STATUS: usize = 4;
/// `offsetof(struct xensnd_resp, resp)`: start of the response payload union.
pub const RSP_RESP: usize = 8;
/// `sizeof(((struct xensnd_resp *)0)->resp)`.
pub const RSP_RESP_SIZE: usize = 56;

// ---- struct xensnd_evt -------------------------------------------------------------------------

/// `offsetof(struct xensnd_evt, id)` (u16).
pub const EVT_ID: usize = 0;
/// `offsetof(struct xensnd_evt, type)` (u8).
pub const EVT_TYPE: usize = 2;
/// `offsetof(struct xensnd_evt, op)`: start of the event payload union.
pub const EVT_OP: usize = 8;
/// `sizeof(((struct xensnd_evt *)0)->op)`.
pub const EVT_OP_SIZE: usize = 56;

// ---- payload structs (offsets relative to the union) -------------------------------------------

/// `offsetof(struct xensnd_open_req, pcm_rate)` (u32, Hz).
pub const OPEN_PCM_RATE: usize = 0;
/// `offsetof(struct xensnd_open_req, pcm_format)` (u8, `XENSND_PCM_FORMAT_*`).
pub const OPEN_PCM_FORMAT: usize = 4;
/// `offsetof(struct xensnd_open_req, pcm_channels)` (u8).
pub const OPEN_PCM_CHANNELS: usize = 5;
/// `offsetof(struct xensnd_open_req, buffer_sz)` (u32, octets).
pub const OPEN_BUFFER_SZ: usize = 8;
/// `offsetof(struct xensnd_open_req, gref_directory)` (grant_ref_t).
pub const OPEN_GREF_DIRECTORY: usize = 12;
/// `offsetof(struct xensnd_open_req, period_sz)` (u32, octets).
pub const OPEN_PERIOD_SZ: usize = 16;
/// `sizeof(struct xensnd_open_req)`.
pub const OPEN_REQ_SIZE: usize = 20;

/// `offsetof(struct xensnd_rw_req, offset)` (u32, octets).
pub const RW_OFFSET: usize = 0;
/// `offsetof(struct xensnd_rw_req, length)` (u32, octets).
pub const RW_LENGTH: usize = 4;
/// `sizeof(struct xensnd_rw_req)`.
pub const RW_REQ_SIZE: usize = 8;

/// `offsetof(struct xensnd_trigger_req, type)` (u8, `XENSND_OP_TRIGGER_*`).
pub const TRIGGER_TYPE: usize = 0;
/// `sizeof(struct xensnd_trigger_req)`.
pub const TRIGGER_REQ_SIZE: usize = 1;

/// `offsetof(struct xensnd_query_hw_param, formats)` (u64 mask).
pub const HWP_FORMATS: usize = 0;
/// `offsetof(struct xensnd_query_hw_param, rates.min)` (u32, Hz).
pub const HWP_RATES_MIN: usize = 8;
/// `offsetof(struct xensnd_query_hw_param, rates.max)` (u32, Hz).
pub const HWP_RATES_MAX: usize = 12;
/// `offsetof(struct xensnd_query_hw_param, channels.min)` (u32).
pub const HWP_CHANNELS_MIN: usize = 16;
/// `offsetof(struct xensnd_query_hw_param, channels.max)` (u32).
pub const HWP_CHANNELS_MAX: usize = 20;
/// `offsetof(struct xensnd_query_hw_param, buffer.min)` (u32, frames).
pub const HWP_BUFFER_MIN: usize = 24;
/// `offsetof(struct xensnd_query_hw_param, buffer.max)` (u32, frames).
pub const HWP_BUFFER_MAX: usize = 28;
/// `offsetof(struct xensnd_query_hw_param, period.min)` (u32, frames).
pub const HWP_PERIOD_MIN: usize = 32;
/// `offsetof(struct xensnd_query_hw_param, period.max)` (u32, frames).
pub const HWP_PERIOD_MAX: usize = 36;
/// `sizeof(struct xensnd_query_hw_param)`.
pub const HWP_SIZE: usize = 40;

/// `offsetof(struct xensnd_cur_pos_evt, position)` (u64, octets).
pub const CUR_POS_POSITION: usize = 0;
/// `sizeof(struct xensnd_cur_pos_evt)`.
pub const CUR_POS_SIZE: usize = 8;

// ---- request/response ring (struct xen_sndif_sring) --------------------------------------------

/// `offsetof(struct xen_sndif_sring, req_prod)`; written by the frontend.
pub const RING_REQ_PROD: usize = 0;
/// `offsetof(struct xen_sndif_sring, req_event)`; written by the backend.
pub const RING_REQ_EVENT: usize = 4;
/// `offsetof(struct xen_sndif_sring, rsp_prod)`; written by the backend.
pub const RING_RSP_PROD: usize = 8;
/// `offsetof(struct xen_sndif_sring, rsp_event)`; written by the frontend.
pub const RING_RSP_EVENT: usize = 12;
/// `offsetof(struct xen_sndif_sring, ring)`: first slot.
pub const RING_SLOTS: usize = 64;
/// `sizeof(union xen_sndif_sring_entry)`.
pub const RING_SLOT_SIZE: usize = 64;
/// `__CONST_RING_SIZE(xen_sndif, 4096)`: number of slots (a power of two).
pub const RING_SIZE: u32 = 32;
/// Bytes of the ring page that the ring actually uses (header + slots).
pub const RING_BYTES: usize = RING_SLOTS + RING_SIZE as usize * RING_SLOT_SIZE;

// ---- event page (struct xensnd_event_page) -----------------------------------------------------

/// `XENSND_EVENT_PAGE_SIZE`.
pub const EVT_PAGE_SIZE: usize = 4096;
/// `offsetof(struct xensnd_event_page, in_cons)`; written by the frontend.
pub const EVT_PAGE_IN_CONS: usize = 0;
/// `offsetof(struct xensnd_event_page, in_prod)`; written by the backend.
pub const EVT_PAGE_IN_PROD: usize = 4;
/// `XENSND_IN_RING_OFFS`: first event slot.
pub const EVT_PAGE_SLOTS: usize = 64;
/// `XENSND_IN_RING_LEN`: number of event slots (not a power of two: slot = counter % 63).
pub const EVT_RING_LEN: u32 = 63;
/// Bytes of the event page that the event ring uses (header + slots).
pub const EVT_PAGE_BYTES: usize = EVT_PAGE_SLOTS + EVT_RING_LEN as usize * MSG_SIZE;

// ---- page directory (struct xensnd_page_directory) ---------------------------------------------

/// `offsetof(struct xensnd_page_directory, gref_dir_next_page)`.
pub const PGDIR_NEXT: usize = 0;
/// `offsetof(struct xensnd_page_directory, gref)`.
pub const PGDIR_REFS: usize = 4;
/// `sizeof(grant_ref_t)`.
pub const GREF_SIZE: usize = 4;
/// Grant references one directory page holds: `(4096 - 4) / 4`.
pub const PGDIR_REFS_PER_PAGE: usize = 1023;

// ---- codes -------------------------------------------------------------------------------------

/// `XENSND_OP_OPEN`.
pub const OP_OPEN: u8 = 0;
/// `XENSND_OP_CLOSE`.
pub const OP_CLOSE: u8 = 1;
/// `XENSND_OP_READ`.
pub const OP_READ: u8 = 2;
/// `XENSND_OP_WRITE`.
pub const OP_WRITE: u8 = 3;
/// `XENSND_OP_SET_VOLUME`.
pub const OP_SET_VOLUME: u8 = 4;
/// `XENSND_OP_GET_VOLUME`.
pub const OP_GET_VOLUME: u8 = 5;
/// `XENSND_OP_MUTE`.
pub const OP_MUTE: u8 = 6;
/// `XENSND_OP_UNMUTE`.
pub const OP_UNMUTE: u8 = 7;
/// `XENSND_OP_TRIGGER`.
pub const OP_TRIGGER: u8 = 8;
/// `XENSND_OP_HW_PARAM_QUERY`.
pub const OP_HW_PARAM_QUERY: u8 = 9;

/// `XENSND_OP_TRIGGER_START`.
pub const TRIGGER_START: u8 = 0;
/// `XENSND_OP_TRIGGER_PAUSE`.
pub const TRIGGER_PAUSE: u8 = 1;
/// `XENSND_OP_TRIGGER_STOP`.
pub const TRIGGER_STOP: u8 = 2;
/// `XENSND_OP_TRIGGER_RESUME`.
pub const TRIGGER_RESUME: u8 = 3;

/// `XENSND_EVT_CUR_POS`.
pub const EVT_CUR_POS: u8 = 0;

// ---- compile-time consistency ------------------------------------------------------------------

const _: () = {
    assert!(REQ_OP + REQ_OP_SIZE == MSG_SIZE);
    assert!(RSP_RESP + RSP_RESP_SIZE == MSG_SIZE);
    assert!(EVT_OP + EVT_OP_SIZE == MSG_SIZE);
    assert!(OPEN_REQ_SIZE <= REQ_OP_SIZE);
    assert!(RW_REQ_SIZE <= REQ_OP_SIZE);
    assert!(TRIGGER_REQ_SIZE <= REQ_OP_SIZE);
    assert!(HWP_SIZE <= REQ_OP_SIZE && HWP_SIZE <= RSP_RESP_SIZE);
    assert!(CUR_POS_SIZE <= EVT_OP_SIZE);
    assert!(RING_SIZE.is_power_of_two());
    assert!(RING_BYTES <= XEN_PAGE_SIZE);
    assert!(RING_RSP_EVENT + 4 <= RING_SLOTS);
    assert!(EVT_PAGE_BYTES <= EVT_PAGE_SIZE);
    assert!(EVT_PAGE_IN_PROD + 4 <= EVT_PAGE_SLOTS);
    assert!(PGDIR_REFS + PGDIR_REFS_PER_PAGE * GREF_SIZE <= XEN_PAGE_SIZE);
};
