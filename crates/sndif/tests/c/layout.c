/*
 * Differential layout probe for the Rust `sndif` crate (run by tests/layout_c.rs).
 *
 * Compiled against the official Xen headers (xen/io/sndif.h, xen/io/ring.h). Prints one
 * "NAME VALUE" line per fact: sizes, offsets and codes from the header, reference messages
 * built through the C structs (as hex), and a short ring/event-page scenario driven by the
 * ring.h macros. The Rust test compares every line with its own constants and code.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ring.h expects the user to provide the barriers (xenctrl.h normally does). */
#define mb() __sync_synchronize()
#define rmb() __sync_synchronize()
#define wmb() __sync_synchronize()

#include <xen/io/sndif.h>

#define PAGE 4096

#define NUM(name, expr) printf("%s %llu\n", (name), (unsigned long long)(expr))
#define OFF(name, type, field) NUM(name, offsetof(type, field))
#define SZ(name, type) NUM(name, sizeof(type))
#define FSZ(name, type, field) NUM(name, sizeof(((type *)0)->field))

static void hex(const char *name, const void *p, size_t len)
{
    const unsigned char *b = p;
    printf("%s ", name);
    for (size_t i = 0; i < len; i++)
        printf("%02x", b[i]);
    printf("\n");
}

#define FMT(x) \
    printf("PCM_FORMAT_%s %d %s\n", #x, XENSND_PCM_FORMAT_##x, XENSND_PCM_FORMAT_##x##_STR)

static void formats(void)
{
    FMT(S8); FMT(U8); FMT(S16_LE); FMT(S16_BE); FMT(U16_LE); FMT(U16_BE);
    FMT(S24_LE); FMT(S24_BE); FMT(U24_LE); FMT(U24_BE); FMT(S32_LE); FMT(S32_BE);
    FMT(U32_LE); FMT(U32_BE); FMT(F32_LE); FMT(F32_BE); FMT(F64_LE); FMT(F64_BE);
    FMT(IEC958_SUBFRAME_LE); FMT(IEC958_SUBFRAME_BE); FMT(MU_LAW); FMT(A_LAW);
    FMT(IMA_ADPCM); FMT(MPEG); FMT(GSM);
}

static void layout(void)
{
    NUM("XEN_PAGE_SIZE", PAGE);
    NUM("XENSND_PROTOCOL_VERSION", XENSND_PROTOCOL_VERSION);

    SZ("REQ_SIZE", struct xensnd_req);
    SZ("RSP_SIZE", struct xensnd_resp);
    SZ("EVT_SIZE", struct xensnd_evt);

    OFF("REQ_ID", struct xensnd_req, id);
    OFF("REQ_OPERATION", struct xensnd_req, operation);
    OFF("REQ_OP", struct xensnd_req, op);
    FSZ("REQ_OP_SIZE", struct xensnd_req, op);
    OFF("REQ_OPEN_PCM_RATE", struct xensnd_req, op.open.pcm_rate);
    OFF("REQ_OPEN_PCM_FORMAT", struct xensnd_req, op.open.pcm_format);
    OFF("REQ_OPEN_PCM_CHANNELS", struct xensnd_req, op.open.pcm_channels);
    OFF("REQ_OPEN_BUFFER_SZ", struct xensnd_req, op.open.buffer_sz);
    OFF("REQ_OPEN_GREF_DIRECTORY", struct xensnd_req, op.open.gref_directory);
    OFF("REQ_OPEN_PERIOD_SZ", struct xensnd_req, op.open.period_sz);
    OFF("REQ_RW_OFFSET", struct xensnd_req, op.rw.offset);
    OFF("REQ_RW_LENGTH", struct xensnd_req, op.rw.length);
    OFF("REQ_TRIGGER_TYPE", struct xensnd_req, op.trigger.type);
    OFF("REQ_HWP", struct xensnd_req, op.hw_param);

    OFF("OPEN_PCM_RATE", struct xensnd_open_req, pcm_rate);
    OFF("OPEN_PCM_FORMAT", struct xensnd_open_req, pcm_format);
    OFF("OPEN_PCM_CHANNELS", struct xensnd_open_req, pcm_channels);
    OFF("OPEN_BUFFER_SZ", struct xensnd_open_req, buffer_sz);
    OFF("OPEN_GREF_DIRECTORY", struct xensnd_open_req, gref_directory);
    OFF("OPEN_PERIOD_SZ", struct xensnd_open_req, period_sz);
    SZ("OPEN_REQ_SIZE", struct xensnd_open_req);
    OFF("RW_OFFSET", struct xensnd_rw_req, offset);
    OFF("RW_LENGTH", struct xensnd_rw_req, length);
    SZ("RW_REQ_SIZE", struct xensnd_rw_req);
    OFF("TRIGGER_TYPE", struct xensnd_trigger_req, type);
    SZ("TRIGGER_REQ_SIZE", struct xensnd_trigger_req);
    OFF("HWP_FORMATS", struct xensnd_query_hw_param, formats);
    OFF("HWP_RATES_MIN", struct xensnd_query_hw_param, rates.min);
    OFF("HWP_RATES_MAX", struct xensnd_query_hw_param, rates.max);
    OFF("HWP_CHANNELS_MIN", struct xensnd_query_hw_param, channels.min);
    OFF("HWP_CHANNELS_MAX", struct xensnd_query_hw_param, channels.max);
    OFF("HWP_BUFFER_MIN", struct xensnd_query_hw_param, buffer.min);
    OFF("HWP_BUFFER_MAX", struct xensnd_query_hw_param, buffer.max);
    OFF("HWP_PERIOD_MIN", struct xensnd_query_hw_param, period.min);
    OFF("HWP_PERIOD_MAX", struct xensnd_query_hw_param, period.max);
    SZ("HWP_SIZE", struct xensnd_query_hw_param);

    OFF("RSP_ID", struct xensnd_resp, id);
    OFF("RSP_OPERATION", struct xensnd_resp, operation);
    OFF("RSP_STATUS", struct xensnd_resp, status);
    OFF("RSP_RESP", struct xensnd_resp, resp);
    FSZ("RSP_RESP_SIZE", struct xensnd_resp, resp);
    OFF("RSP_HWP", struct xensnd_resp, resp.hw_param);

    OFF("EVT_ID", struct xensnd_evt, id);
    OFF("EVT_TYPE", struct xensnd_evt, type);
    OFF("EVT_OP", struct xensnd_evt, op);
    FSZ("EVT_OP_SIZE", struct xensnd_evt, op);
    OFF("EVT_CUR_POS_POSITION", struct xensnd_evt, op.cur_pos.position);
    OFF("CUR_POS_POSITION", struct xensnd_cur_pos_evt, position);
    SZ("CUR_POS_SIZE", struct xensnd_cur_pos_evt);

    OFF("RING_REQ_PROD", struct xen_sndif_sring, req_prod);
    OFF("RING_REQ_EVENT", struct xen_sndif_sring, req_event);
    OFF("RING_RSP_PROD", struct xen_sndif_sring, rsp_prod);
    OFF("RING_RSP_EVENT", struct xen_sndif_sring, rsp_event);
    OFF("RING_SLOTS", struct xen_sndif_sring, ring);
    SZ("RING_SLOT_SIZE", union xen_sndif_sring_entry);
    NUM("RING_SIZE", __CONST_RING_SIZE(xen_sndif, PAGE));

    NUM("EVT_PAGE_SIZE", XENSND_EVENT_PAGE_SIZE);
    OFF("EVT_PAGE_IN_CONS", struct xensnd_event_page, in_cons);
    OFF("EVT_PAGE_IN_PROD", struct xensnd_event_page, in_prod);
    NUM("EVT_PAGE_SLOTS", XENSND_IN_RING_OFFS);
    NUM("EVT_RING_LEN", XENSND_IN_RING_LEN);

    OFF("PGDIR_NEXT", struct xensnd_page_directory, gref_dir_next_page);
    OFF("PGDIR_REFS", struct xensnd_page_directory, gref);
    SZ("GREF_SIZE", grant_ref_t);
    NUM("PGDIR_REFS_PER_PAGE",
        (PAGE - offsetof(struct xensnd_page_directory, gref)) / sizeof(grant_ref_t));

    NUM("OP_OPEN", XENSND_OP_OPEN);
    NUM("OP_CLOSE", XENSND_OP_CLOSE);
    NUM("OP_READ", XENSND_OP_READ);
    NUM("OP_WRITE", XENSND_OP_WRITE);
    NUM("OP_SET_VOLUME", XENSND_OP_SET_VOLUME);
    NUM("OP_GET_VOLUME", XENSND_OP_GET_VOLUME);
    NUM("OP_MUTE", XENSND_OP_MUTE);
    NUM("OP_UNMUTE", XENSND_OP_UNMUTE);
    NUM("OP_TRIGGER", XENSND_OP_TRIGGER);
    NUM("OP_HW_PARAM_QUERY", XENSND_OP_HW_PARAM_QUERY);
    NUM("TRIGGER_START", XENSND_OP_TRIGGER_START);
    NUM("TRIGGER_PAUSE", XENSND_OP_TRIGGER_PAUSE);
    NUM("TRIGGER_STOP", XENSND_OP_TRIGGER_STOP);
    NUM("TRIGGER_RESUME", XENSND_OP_TRIGGER_RESUME);
    NUM("EVT_CUR_POS", XENSND_EVT_CUR_POS);
}

/* Reference messages, built field by field through the C structs. */

static void rw(const char *name, uint16_t id, uint8_t op, uint32_t offset, uint32_t length)
{
    struct xensnd_req r;
    memset(&r, 0, sizeof(r));
    r.id = id;
    r.operation = op;
    r.op.rw.offset = offset;
    r.op.rw.length = length;
    hex(name, &r, sizeof(r));
}

static void fill_hw(struct xensnd_query_hw_param *p)
{
    p->formats = 0x8000000000004005ull;
    p->rates.min = 8000;
    p->rates.max = 192000;
    p->channels.min = 1;
    p->channels.max = 8;
    p->buffer.min = 64;
    p->buffer.max = 0x00fedcba;
    p->period.min = 32;
    p->period.max = 0x00abcdef;
}

static void messages(void)
{
    struct xensnd_req r;
    struct xensnd_resp s;
    struct xensnd_evt e;

    memset(&r, 0, sizeof(r));
    r.id = 0x1101;
    r.operation = XENSND_OP_OPEN;
    r.op.open.pcm_rate = 44100;
    r.op.open.pcm_format = XENSND_PCM_FORMAT_F32_BE;
    r.op.open.pcm_channels = 6;
    r.op.open.buffer_sz = 0x00123456;
    r.op.open.gref_directory = 0x0a0b0c0d;
    r.op.open.period_sz = 0x00010203;
    hex("MSG_REQ_OPEN", &r, sizeof(r));

    memset(&r, 0, sizeof(r));
    r.id = 0x1102;
    r.operation = XENSND_OP_CLOSE;
    hex("MSG_REQ_CLOSE", &r, sizeof(r));

    rw("MSG_REQ_READ", 0x1103, XENSND_OP_READ, 0x00000100, 0x00000200);
    rw("MSG_REQ_WRITE", 0x1104, XENSND_OP_WRITE, 0xfffff000, 0x00000fff);
    rw("MSG_REQ_SET_VOLUME", 0x1105, XENSND_OP_SET_VOLUME, 0x10, 0x20);
    rw("MSG_REQ_GET_VOLUME", 0x1106, XENSND_OP_GET_VOLUME, 0x30, 0x40);
    rw("MSG_REQ_MUTE", 0x1107, XENSND_OP_MUTE, 0x50, 0x60);
    rw("MSG_REQ_UNMUTE", 0x1108, XENSND_OP_UNMUTE, 0x70, 0x80);

    static const struct { const char *name; uint8_t type; } triggers[] = {
        { "MSG_REQ_TRIGGER_START", XENSND_OP_TRIGGER_START },
        { "MSG_REQ_TRIGGER_PAUSE", XENSND_OP_TRIGGER_PAUSE },
        { "MSG_REQ_TRIGGER_STOP", XENSND_OP_TRIGGER_STOP },
        { "MSG_REQ_TRIGGER_RESUME", XENSND_OP_TRIGGER_RESUME },
    };
    for (unsigned i = 0; i < sizeof(triggers) / sizeof(triggers[0]); i++) {
        memset(&r, 0, sizeof(r));
        r.id = (uint16_t)(0x1109 + i);
        r.operation = XENSND_OP_TRIGGER;
        r.op.trigger.type = triggers[i].type;
        hex(triggers[i].name, &r, sizeof(r));
    }

    memset(&r, 0, sizeof(r));
    r.id = 0x1110;
    r.operation = XENSND_OP_HW_PARAM_QUERY;
    fill_hw(&r.op.hw_param);
    hex("MSG_REQ_HW_PARAM_QUERY", &r, sizeof(r));

    memset(&s, 0, sizeof(s));
    s.id = 0x2201;
    s.operation = XENSND_OP_OPEN;
    s.status = 0;
    hex("MSG_RSP_OPEN_OK", &s, sizeof(s));

    memset(&s, 0, sizeof(s));
    s.id = 0x2202;
    s.operation = XENSND_OP_WRITE;
    s.status = -22;
    hex("MSG_RSP_WRITE_EINVAL", &s, sizeof(s));

    memset(&s, 0, sizeof(s));
    s.id = 0x2203;
    s.operation = XENSND_OP_HW_PARAM_QUERY;
    s.status = 0;
    fill_hw(&s.resp.hw_param);
    hex("MSG_RSP_HW_PARAM_QUERY", &s, sizeof(s));

    memset(&e, 0, sizeof(e));
    e.id = 0xfedc;
    e.type = XENSND_EVT_CUR_POS;
    e.op.cur_pos.position = 0x0102030405060708ull;
    hex("MSG_EVT_CUR_POS", &e, sizeof(e));
}

/*
 * Ring scenario with the ring.h macros. The Rust test replays the same steps with
 * FrontRing/BackRing and compares every notify/more flag and the final page bytes.
 */
static void ring_scenario(void)
{
    union xen_sndif_sring_entry *slot;
    struct xen_sndif_sring *sring = aligned_alloc(PAGE, PAGE);
    struct xen_sndif_front_ring front;
    struct xen_sndif_back_ring back;
    int notify, more;

    if (!sring) {
        fprintf(stderr, "aligned_alloc failed\n");
        exit(1);
    }
    memset(sring, 0xa5, PAGE);
    XEN_FRONT_RING_INIT(&front, sring, PAGE);
    BACK_RING_INIT(&back, sring, PAGE);

    /* Front: three requests (ids 1..3, WRITE offset = id * 16, length 16), one push. */
    for (uint16_t id = 1; id <= 3; id++) {
        slot = (union xen_sndif_sring_entry *)RING_GET_REQUEST(&front, front.req_prod_pvt);
        memset(&slot->req, 0, sizeof(slot->req));
        slot->req.id = id;
        slot->req.operation = XENSND_OP_WRITE;
        slot->req.op.rw.offset = id * 16u;
        slot->req.op.rw.length = 16;
        front.req_prod_pvt++;
    }
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, notify);
    NUM("RING_STEP1_REQ_NOTIFY", notify);

    /* Back: consume all three. */
    back.req_cons = sring->req_prod;

    /* Back: answer request 1 (status 0), publish. */
    slot = (union xen_sndif_sring_entry *)RING_GET_RESPONSE(&back, back.rsp_prod_pvt);
    memset(&slot->rsp, 0, sizeof(slot->rsp));
    slot->rsp.id = 1;
    slot->rsp.operation = XENSND_OP_WRITE;
    back.rsp_prod_pvt++;
    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, notify);
    NUM("RING_STEP2_RSP_NOTIFY", notify);

    /* Back: answer request 2 (status -5); the front has not re-armed. */
    slot = (union xen_sndif_sring_entry *)RING_GET_RESPONSE(&back, back.rsp_prod_pvt);
    memset(&slot->rsp, 0, sizeof(slot->rsp));
    slot->rsp.id = 2;
    slot->rsp.operation = XENSND_OP_WRITE;
    slot->rsp.status = -5;
    back.rsp_prod_pvt++;
    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, notify);
    NUM("RING_STEP3_RSP_NOTIFY", notify);

    /* Front: consume both responses, final check (re-arms rsp_event). */
    front.rsp_cons = sring->rsp_prod;
    RING_FINAL_CHECK_FOR_RESPONSES(&front, more);
    NUM("RING_STEP4_RSP_MORE", more);

    /* Back: answer request 3; the front re-armed. */
    slot = (union xen_sndif_sring_entry *)RING_GET_RESPONSE(&back, back.rsp_prod_pvt);
    memset(&slot->rsp, 0, sizeof(slot->rsp));
    slot->rsp.id = 3;
    slot->rsp.operation = XENSND_OP_WRITE;
    back.rsp_prod_pvt++;
    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&back, notify);
    NUM("RING_STEP5_RSP_NOTIFY", notify);

    /* Back: final check for requests (re-arms req_event). */
    RING_FINAL_CHECK_FOR_REQUESTS(&back, more);
    NUM("RING_STEP6_REQ_MORE", more);

    /* Front: one more request (id 4); the back re-armed. */
    slot = (union xen_sndif_sring_entry *)RING_GET_REQUEST(&front, front.req_prod_pvt);
    memset(&slot->req, 0, sizeof(slot->req));
    slot->req.id = 4;
    slot->req.operation = XENSND_OP_WRITE;
    slot->req.op.rw.offset = 64;
    slot->req.op.rw.length = 16;
    front.req_prod_pvt++;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, notify);
    NUM("RING_STEP7_REQ_NOTIFY", notify);

    /* Front: one more request (id 5); the back has not re-armed since. */
    slot = (union xen_sndif_sring_entry *)RING_GET_REQUEST(&front, front.req_prod_pvt);
    memset(&slot->req, 0, sizeof(slot->req));
    slot->req.id = 5;
    slot->req.operation = XENSND_OP_WRITE;
    slot->req.op.rw.offset = 80;
    slot->req.op.rw.length = 16;
    front.req_prod_pvt++;
    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&front, notify);
    NUM("RING_STEP8_REQ_NOTIFY", notify);

    /* Header (without the 0xa5-initialised tail of pvt/pad, which XEN_FRONT_RING_INIT zeroes)
     * and the used slots. */
    hex("RING_PAGE", sring, offsetof(struct xen_sndif_sring, ring) + 5 * sizeof(sring->ring[0]));
    free(sring);
}

/* Slot offsets of XENSND_IN_RING_REF for a few counters, including the u32 wrap. */
static void event_slots(void)
{
    static const uint32_t counters[] = { 0, 1, 62, 63, 64, 125, 126, 0xfffffffbu, 0xffffffffu };
    char name[64];
    unsigned char *page = aligned_alloc(PAGE, PAGE);

    if (!page) {
        fprintf(stderr, "aligned_alloc failed\n");
        exit(1);
    }
    for (unsigned i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
        snprintf(name, sizeof(name), "EVT_SLOT_OFFSET_%u", counters[i]);
        NUM(name, (size_t)((unsigned char *)&XENSND_IN_RING_REF(page, counters[i]) - page));
    }
    free(page);
}

int main(void)
{
    layout();
    formats();
    messages();
    ring_scenario();
    event_slots();
    return 0;
}
