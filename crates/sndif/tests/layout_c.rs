//! Differential test against the official Xen headers.
//!
//! Compiles `tests/c/layout.c` with the system C compiler against `/usr/include/xen/io/sndif.h`
//! and `ring.h`, runs it, and compares every `NAME VALUE` line it prints with the Rust side:
//! layout constants, operation/trigger/event/PCM format codes and strings, reference messages
//! built through the C structs (decoded by Rust and re-encoded byte for byte), a ring scenario
//! driven by the `ring.h` macros (notify/final-check results and the resulting page bytes), and
//! the event-slot placement of `XENSND_IN_RING_REF` across the counter wrap.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use c_probe::Probe;
use sndif::layout as l;
use sndif::wire::{ALL_OPERATIONS, ALL_TRIGGER_TYPES};
use sndif::{
    BackRing, Event, EventKind, EventReader, EventType, EventWriter, FormatSet, FrontRing, HwParam,
    Interval, OpenParams, Operation, PcmFormat, Request, RequestBody, Response, ResponseBody,
    RwParams, SharedMem, TriggerType, ALL_FORMATS,
};

const SNDIF_H: &str = "/usr/include/xen/io/sndif.h";

/// Name → value lines printed by the C probe.
fn c_facts() -> &'static BTreeMap<String, String> {
    static FACTS: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    FACTS.get_or_init(|| {
        Probe::new(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/layout.c"),
            concat!(env!("CARGO_TARGET_TMPDIR"), "/sndif_layout_probe"),
        )
        .flag("-std=gnu11")
        .flag("-O1")
        .package("libxen-dev")
        .require(SNDIF_H)
        .lines()
    })
}

fn fact(name: &str) -> &'static str {
    c_facts()
        .get(name)
        .unwrap_or_else(|| panic!("C probe did not print {name}"))
}

fn num(name: &str) -> u64 {
    let v = fact(name);
    v.parse()
        .unwrap_or_else(|e| panic!("{name}: {v:?} is not a number: {e}"))
}

fn msg_bytes(name: &str) -> [u8; 64] {
    let v = fact(name);
    let bytes = hex(v);
    bytes
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("{name}: {} bytes, want 64", b.len()))
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn to_u64(v: usize) -> u64 {
    u64::try_from(v).expect("fits")
}

/// Every layout fact the probe prints, with the Rust value it must equal.
fn layout_table() -> Vec<(&'static str, u64)> {
    let u = to_u64;
    let mut t = vec![
        ("XEN_PAGE_SIZE", u(l::XEN_PAGE_SIZE)),
        (
            "XENSND_PROTOCOL_VERSION",
            u64::from(l::XENSND_PROTOCOL_VERSION),
        ),
        ("REQ_SIZE", u(l::MSG_SIZE)),
        ("RSP_SIZE", u(l::MSG_SIZE)),
        ("EVT_SIZE", u(l::MSG_SIZE)),
        ("REQ_ID", u(l::REQ_ID)),
        ("REQ_OPERATION", u(l::REQ_OPERATION)),
        ("REQ_OP", u(l::REQ_OP)),
        ("REQ_OP_SIZE", u(l::REQ_OP_SIZE)),
        ("REQ_OPEN_PCM_RATE", u(l::REQ_OP + l::OPEN_PCM_RATE)),
        ("REQ_OPEN_PCM_FORMAT", u(l::REQ_OP + l::OPEN_PCM_FORMAT)),
        ("REQ_OPEN_PCM_CHANNELS", u(l::REQ_OP + l::OPEN_PCM_CHANNELS)),
        ("REQ_OPEN_BUFFER_SZ", u(l::REQ_OP + l::OPEN_BUFFER_SZ)),
        (
            "REQ_OPEN_GREF_DIRECTORY",
            u(l::REQ_OP + l::OPEN_GREF_DIRECTORY),
        ),
        ("REQ_OPEN_PERIOD_SZ", u(l::REQ_OP + l::OPEN_PERIOD_SZ)),
        ("REQ_RW_OFFSET", u(l::REQ_OP + l::RW_OFFSET)),
        ("REQ_RW_LENGTH", u(l::REQ_OP + l::RW_LENGTH)),
        ("REQ_TRIGGER_TYPE", u(l::REQ_OP + l::TRIGGER_TYPE)),
        ("REQ_HWP", u(l::REQ_OP)),
        ("OPEN_PCM_RATE", u(l::OPEN_PCM_RATE)),
        ("OPEN_PCM_FORMAT", u(l::OPEN_PCM_FORMAT)),
        ("OPEN_PCM_CHANNELS", u(l::OPEN_PCM_CHANNELS)),
        ("OPEN_BUFFER_SZ", u(l::OPEN_BUFFER_SZ)),
        ("OPEN_GREF_DIRECTORY", u(l::OPEN_GREF_DIRECTORY)),
        ("OPEN_PERIOD_SZ", u(l::OPEN_PERIOD_SZ)),
        ("OPEN_REQ_SIZE", u(l::OPEN_REQ_SIZE)),
        ("RW_OFFSET", u(l::RW_OFFSET)),
        ("RW_LENGTH", u(l::RW_LENGTH)),
        ("RW_REQ_SIZE", u(l::RW_REQ_SIZE)),
        ("TRIGGER_TYPE", u(l::TRIGGER_TYPE)),
        ("TRIGGER_REQ_SIZE", u(l::TRIGGER_REQ_SIZE)),
        ("HWP_FORMATS", u(l::HWP_FORMATS)),
        ("HWP_RATES_MIN", u(l::HWP_RATES_MIN)),
        ("HWP_RATES_MAX", u(l::HWP_RATES_MAX)),
        ("HWP_CHANNELS_MIN", u(l::HWP_CHANNELS_MIN)),
        ("HWP_CHANNELS_MAX", u(l::HWP_CHANNELS_MAX)),
        ("HWP_BUFFER_MIN", u(l::HWP_BUFFER_MIN)),
        ("HWP_BUFFER_MAX", u(l::HWP_BUFFER_MAX)),
        ("HWP_PERIOD_MIN", u(l::HWP_PERIOD_MIN)),
        ("HWP_PERIOD_MAX", u(l::HWP_PERIOD_MAX)),
        ("HWP_SIZE", u(l::HWP_SIZE)),
        ("RSP_ID", u(l::RSP_ID)),
        ("RSP_OPERATION", u(l::RSP_OPERATION)),
        ("RSP_STATUS", u(l::RSP_STATUS)),
        ("RSP_RESP", u(l::RSP_RESP)),
        ("RSP_RESP_SIZE", u(l::RSP_RESP_SIZE)),
        ("RSP_HWP", u(l::RSP_RESP)),
        ("EVT_ID", u(l::EVT_ID)),
        ("EVT_TYPE", u(l::EVT_TYPE)),
        ("EVT_OP", u(l::EVT_OP)),
        ("EVT_OP_SIZE", u(l::EVT_OP_SIZE)),
        ("EVT_CUR_POS_POSITION", u(l::EVT_OP + l::CUR_POS_POSITION)),
        ("CUR_POS_POSITION", u(l::CUR_POS_POSITION)),
        ("CUR_POS_SIZE", u(l::CUR_POS_SIZE)),
        ("RING_REQ_PROD", u(l::RING_REQ_PROD)),
        ("RING_REQ_EVENT", u(l::RING_REQ_EVENT)),
        ("RING_RSP_PROD", u(l::RING_RSP_PROD)),
        ("RING_RSP_EVENT", u(l::RING_RSP_EVENT)),
        ("RING_SLOTS", u(l::RING_SLOTS)),
        ("RING_SLOT_SIZE", u(l::RING_SLOT_SIZE)),
        ("RING_SIZE", u64::from(l::RING_SIZE)),
        ("EVT_PAGE_SIZE", u(l::EVT_PAGE_SIZE)),
        ("EVT_PAGE_IN_CONS", u(l::EVT_PAGE_IN_CONS)),
        ("EVT_PAGE_IN_PROD", u(l::EVT_PAGE_IN_PROD)),
        ("EVT_PAGE_SLOTS", u(l::EVT_PAGE_SLOTS)),
        ("EVT_RING_LEN", u64::from(l::EVT_RING_LEN)),
        ("PGDIR_NEXT", u(l::PGDIR_NEXT)),
        ("PGDIR_REFS", u(l::PGDIR_REFS)),
        ("GREF_SIZE", u(l::GREF_SIZE)),
        ("PGDIR_REFS_PER_PAGE", u(l::PGDIR_REFS_PER_PAGE)),
        ("EVT_CUR_POS", u64::from(EventType::CurPos.code())),
    ];
    let op_names = [
        "OP_OPEN",
        "OP_CLOSE",
        "OP_READ",
        "OP_WRITE",
        "OP_SET_VOLUME",
        "OP_GET_VOLUME",
        "OP_MUTE",
        "OP_UNMUTE",
        "OP_TRIGGER",
        "OP_HW_PARAM_QUERY",
    ];
    for (name, op) in op_names.into_iter().zip(ALL_OPERATIONS) {
        t.push((name, u64::from(op.code())));
    }
    let trigger_names = [
        "TRIGGER_START",
        "TRIGGER_PAUSE",
        "TRIGGER_STOP",
        "TRIGGER_RESUME",
    ];
    for (name, tt) in trigger_names.into_iter().zip(ALL_TRIGGER_TYPES) {
        t.push((name, u64::from(tt.code())));
    }
    t
}

/// Prefixes of probe lines checked by the other tests below.
const GROUP_PREFIXES: [&str; 4] = ["PCM_FORMAT_", "MSG_", "RING_STEP", "EVT_SLOT_OFFSET_"];

#[test]
fn layout_constants_match_the_header() {
    let mut mismatches = Vec::new();
    for (name, rust) in layout_table() {
        let c = num(name);
        if c != rust {
            mismatches.push(format!("{name}: C {c}, Rust {rust}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "layout mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn every_probe_line_is_checked() {
    let table: Vec<&str> = layout_table().into_iter().map(|(n, _)| n).collect();
    let unchecked: Vec<&String> = c_facts()
        .keys()
        .filter(|k| {
            !table.contains(&k.as_str())
                && !GROUP_PREFIXES.iter().any(|p| k.starts_with(p))
                && k.as_str() != "RING_PAGE"
        })
        .collect();
    assert!(
        unchecked.is_empty(),
        "probe lines nobody compares: {unchecked:?}"
    );
}

#[test]
fn pcm_format_codes_and_strings_match_the_header() {
    let formats: Vec<(&String, &String)> = c_facts()
        .iter()
        .filter(|(k, _)| k.starts_with("PCM_FORMAT_"))
        .collect();
    assert_eq!(formats.len(), ALL_FORMATS.len(), "format count");
    let mut seen = Vec::new();
    for (name, value) in formats {
        let (code, string) = value
            .split_once(' ')
            .unwrap_or_else(|| panic!("{name}: {value:?}"));
        let code: u8 = code.parse().expect("format code");
        let f = PcmFormat::from_code(code)
            .unwrap_or_else(|| panic!("{name}: C code {code} unknown to PcmFormat"));
        assert_eq!(f.xenstore_name(), string, "{name} (code {code}) string");
        assert_eq!(PcmFormat::from_xenstore(string), Some(f), "{name} parse");
        seen.push(f);
    }
    seen.sort();
    assert_eq!(
        seen,
        ALL_FORMATS.to_vec(),
        "every PcmFormat has a C counterpart"
    );
}

fn hw() -> HwParam {
    HwParam {
        formats: FormatSet(0x8000_0000_0000_4005),
        rates: Interval::new(8000, 192_000),
        channels: Interval::new(1, 8),
        buffer: Interval::new(64, 0x00fe_dcba),
        period: Interval::new(32, 0x00ab_cdef),
    }
}

fn rw(offset: u32, length: u32) -> RwParams {
    RwParams { offset, length }
}

fn req(id: u16, body: RequestBody) -> Request {
    Request { id, body }
}

/// Decodes each named C message into the value the test expects and encodes that value back into
/// the same bytes; returns how many messages were compared.
fn compare_messages<T: Clone + PartialEq + std::fmt::Debug, E: PartialEq + std::fmt::Debug>(
    cases: Vec<(&str, T)>,
    decode: impl Fn(&[u8; 64]) -> Result<T, E>,
    encode: impl Fn(&T) -> [u8; 64],
) -> usize {
    let count = cases.len();
    for (name, want) in cases {
        let c = msg_bytes(name);
        assert_eq!(
            decode(&c),
            Ok(want.clone()),
            "{name}: Rust decode of C bytes"
        );
        assert_eq!(
            encode(&want),
            c,
            "{name}: Rust encoding differs from C bytes"
        );
    }
    count
}

#[test]
fn c_built_messages_decode_and_rust_encodes_the_same_bytes() {
    use RequestBody as B;
    let open = OpenParams {
        rate: 44100,
        format: PcmFormat::F32Be,
        channels: 6,
        buffer_sz: 0x0012_3456,
        gref_directory: 0x0a0b_0c0d,
        period_sz: 0x0001_0203,
    };
    let requests = vec![
        ("MSG_REQ_OPEN", req(0x1101, B::Open(open))),
        ("MSG_REQ_CLOSE", req(0x1102, B::Close)),
        ("MSG_REQ_READ", req(0x1103, B::Read(rw(0x100, 0x200)))),
        (
            "MSG_REQ_WRITE",
            req(0x1104, B::Write(rw(0xffff_f000, 0xfff))),
        ),
        (
            "MSG_REQ_SET_VOLUME",
            req(0x1105, B::SetVolume(rw(0x10, 0x20))),
        ),
        (
            "MSG_REQ_GET_VOLUME",
            req(0x1106, B::GetVolume(rw(0x30, 0x40))),
        ),
        ("MSG_REQ_MUTE", req(0x1107, B::Mute(rw(0x50, 0x60)))),
        ("MSG_REQ_UNMUTE", req(0x1108, B::Unmute(rw(0x70, 0x80)))),
        (
            "MSG_REQ_TRIGGER_START",
            req(0x1109, B::Trigger(TriggerType::Start)),
        ),
        (
            "MSG_REQ_TRIGGER_PAUSE",
            req(0x110a, B::Trigger(TriggerType::Pause)),
        ),
        (
            "MSG_REQ_TRIGGER_STOP",
            req(0x110b, B::Trigger(TriggerType::Stop)),
        ),
        (
            "MSG_REQ_TRIGGER_RESUME",
            req(0x110c, B::Trigger(TriggerType::Resume)),
        ),
        ("MSG_REQ_HW_PARAM_QUERY", req(0x1110, B::HwParamQuery(hw()))),
    ];
    let responses = vec![
        ("MSG_RSP_OPEN_OK", Response::ok(0x2201, Operation::Open)),
        (
            "MSG_RSP_WRITE_EINVAL",
            Response::error(0x2202, Operation::Write, -22),
        ),
        (
            "MSG_RSP_HW_PARAM_QUERY",
            Response {
                id: 0x2203,
                operation: Operation::HwParamQuery,
                status: 0,
                body: ResponseBody::HwParam(hw()),
            },
        ),
    ];
    let events = vec![(
        "MSG_EVT_CUR_POS",
        Event {
            id: 0xfedc,
            kind: EventKind::CurPos {
                position: 0x0102_0304_0506_0708,
            },
        },
    )];

    let checked = compare_messages(requests, Request::decode, Request::encode)
        + compare_messages(responses, Response::decode, Response::encode)
        + compare_messages(events, Event::decode, Event::encode);
    let printed = c_facts().keys().filter(|k| k.starts_with("MSG_")).count();
    assert_eq!(checked, printed, "every C message is compared");
}

fn write_req(id: u16, offset: u32) -> Request {
    req(id, RequestBody::Write(rw(offset, 16)))
}

/// Replays the scenario of `ring_scenario()` in layout.c with the Rust ring ends.
#[test]
fn ring_macros_and_rust_rings_agree() {
    let mem = SharedMem::heap_pages(1).expect("page");
    mem.fill(0, mem.len(), 0xa5).expect("fill");
    let mut front = FrontRing::init(mem.clone()).expect("init");
    let mut back = BackRing::attach(mem.clone()).expect("attach");
    let flag = |name: &str| num(name) != 0;

    for id in 1..=3u16 {
        front
            .push_request(&write_req(id, u32::from(id) * 16))
            .expect("push");
    }
    assert_eq!(front.publish(), Ok(flag("RING_STEP1_REQ_NOTIFY")), "step 1");

    for id in 1..=3u16 {
        assert_eq!(
            back.take_request(),
            Ok(Some(write_req(id, u32::from(id) * 16)))
        );
    }

    back.push_response(&Response::ok(1, Operation::Write))
        .expect("rsp");
    assert_eq!(
        back.publish_responses(),
        Ok(flag("RING_STEP2_RSP_NOTIFY")),
        "step 2"
    );

    back.push_response(&Response::error(2, Operation::Write, -5))
        .expect("rsp");
    assert_eq!(
        back.publish_responses(),
        Ok(flag("RING_STEP3_RSP_NOTIFY")),
        "step 3"
    );

    assert_eq!(
        front.take_response(),
        Ok(Some(Response::ok(1, Operation::Write)))
    );
    assert_eq!(
        front.take_response(),
        Ok(Some(Response::error(2, Operation::Write, -5)))
    );
    assert_eq!(front.rearm(), Ok(flag("RING_STEP4_RSP_MORE")), "step 4");

    back.push_response(&Response::ok(3, Operation::Write))
        .expect("rsp");
    assert_eq!(
        back.publish_responses(),
        Ok(flag("RING_STEP5_RSP_NOTIFY")),
        "step 5"
    );

    assert_eq!(back.rearm(), Ok(flag("RING_STEP6_REQ_MORE")), "step 6");

    front.push_request(&write_req(4, 64)).expect("push");
    assert_eq!(front.publish(), Ok(flag("RING_STEP7_REQ_NOTIFY")), "step 7");
    front.push_request(&write_req(5, 80)).expect("push");
    assert_eq!(front.publish(), Ok(flag("RING_STEP8_REQ_NOTIFY")), "step 8");

    // The flags are not all equal, so a constant answer could not pass.
    let steps = c_facts()
        .keys()
        .filter(|k| k.starts_with("RING_STEP"))
        .count();
    assert_eq!(steps, 8);

    let c_page = hex(fact("RING_PAGE"));
    assert_eq!(c_page.len(), l::RING_SLOTS + 5 * l::RING_SLOT_SIZE);
    let mut rust_page = vec![0u8; c_page.len()];
    mem.read_bytes(0, &mut rust_page).expect("read");
    for (i, (c, r)) in c_page.iter().zip(&rust_page).enumerate() {
        assert_eq!(
            c, r,
            "ring page byte {i} differs (C {c:#04x}, Rust {r:#04x})"
        );
    }
}

#[test]
fn event_slot_placement_matches_xensnd_in_ring_ref() {
    let offsets: Vec<(u32, u64)> = c_facts()
        .iter()
        .filter_map(|(k, v)| {
            let counter = k.strip_prefix("EVT_SLOT_OFFSET_")?;
            Some((
                counter.parse().expect("counter"),
                v.parse().expect("offset"),
            ))
        })
        .collect();
    assert!(
        offsets.len() >= 5,
        "probe printed {} slot offsets",
        offsets.len()
    );
    assert!(
        offsets.iter().any(|(c, _)| *c == u32::MAX),
        "wrap counter covered"
    );
    for (counter, c_off) in offsets {
        let mem = SharedMem::heap_pages(1).expect("page");
        let reader = EventReader::init(mem.clone()).expect("init");
        mem.store_u32(l::EVT_PAGE_IN_CONS, counter).expect("store");
        mem.store_u32(l::EVT_PAGE_IN_PROD, counter).expect("store");
        let mut writer = EventWriter::attach(mem.clone()).expect("attach");
        writer
            .push(&Event {
                id: 0x5a5a,
                kind: EventKind::CurPos { position: u64::MAX },
            })
            .expect("push");
        let mut page = vec![0u8; l::EVT_PAGE_SIZE];
        mem.read_bytes(0, &mut page).expect("read");
        let used: Vec<usize> = (0..usize::try_from(l::EVT_RING_LEN).expect("63"))
            .map(|k| l::EVT_PAGE_SLOTS + k * l::MSG_SIZE)
            .filter(|off| page[*off..*off + l::MSG_SIZE].iter().any(|b| *b != 0))
            .collect();
        assert_eq!(
            used.iter().map(|o| to_u64(*o)).collect::<Vec<_>>(),
            vec![c_off],
            "counter {counter}: Rust wrote slot at {used:?}, C XENSND_IN_RING_REF is at {c_off}"
        );
        drop(reader);
    }
}
