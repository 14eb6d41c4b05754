# Exact audio comparisons for the pw-* scenarios, with busybox tools only (dom0 and domU):
#
#   pwc_wav_data FILE.wav OUT.raw       the data chunk of a RIFF/WAVE file (any chunk layout)
#   pwc_match GOT.raw WANT.raw [FROM]   the sound GOT carries is WANT's (from byte FROM on), frame
#                                       for frame: bit-exact, not "close"
#   pwc_capture_match GOT.raw STREAM    the sound GOT carries is one contiguous piece of the
#                                       backend's capture pattern of STREAM (starting anywhere)
#
# What "bit-exact" means here is what the module's host tests mean by it (tests/support: "silence
# before, after and inside aside"): the received stream with its silent (all-zero) frames left
# out must be the played data with its silent frames left out - every frame, in order, unchanged,
# nothing missing, nothing repeated, nothing extra. Silence does not count because PipeWire adds
# it without losing anything: in front of a stream (the graph runs before the player's first
# buffer), after it (a sink keeps running until it is suspended) and inside it when a client
# misses its cycle (an xrun: the data comes a cycle later). How much silence was inside, and in
# how many places, is part of every detail line. The pattern fixtures have no silent frame at
# all (make-pattern-wav: the upper bits of the right channel are noise), so for them nothing of
# the file can hide in the silence. Frames are 4 bytes (S16LE stereo) throughout.
# Source it after lib.sh: `. /testbed/pipewire/checks.sh`.
# shellcheck shell=dash
# shellcheck disable=SC2034 # PW_XL_CFG etc. are for the scenarios that source this

PWC_FRAME=4
# The domU of every pw-* scenario (tb_create_domu "$PW_XL_CFG"), and its memory: the initramfs
# with PipeWire is ~70 MB unpacked, the session itself ~60 MB.
PW_XL_CFG=/testbed/pipewire/xl.cfg
PW_DOMU_MEMORY=512

# pwc_size FILE: its size in bytes.
pwc_size() {
    stat -c %s "$1"
}

# pwc_u32 FILE OFFSET: the little-endian u32 at OFFSET.
pwc_u32() {
    od -A n -t u4 -j "$2" -N 4 "$1" 2>/dev/null | tr -d ' '
}

# pwc_wav_data FILE OUT: copy the data chunk of FILE (a RIFF/WAVE file) to OUT. A data chunk whose
# size field is 0 or runs past the end (a writer that was killed) is taken up to the end of the
# file, rounded down to whole frames. 1 if FILE has no RIFF/WAVE header or no data chunk.
pwc_wav_data() {
    local size off id len
    size=$(pwc_size "$1") || return 1
    [ "$(dd if="$1" bs=1 count=4 2>/dev/null)" = RIFF ] || return 1
    [ "$(dd if="$1" bs=1 skip=8 count=4 2>/dev/null)" = WAVE ] || return 1
    off=12
    while [ $((off + 8)) -le "$size" ]; do
        id=$(dd if="$1" bs=1 skip="$off" count=4 2>/dev/null)
        len=$(pwc_u32 "$1" $((off + 4)))
        [ -n "$len" ] || return 1
        if [ "$id" = data ]; then
            if [ "$len" = 0 ] || [ $((off + 8 + len)) -gt "$size" ]; then
                len=$((size - off - 8))
            fi
            len=$((len / PWC_FRAME * PWC_FRAME))
            tail -c +$((off + 9)) "$1" | head -c "$len" >"$2"
            return 0
        fi
        off=$((off + 8 + len + len % 2))
    done
    return 1
}

# pwc_first_sound FILE [FROM]: byte offset of the first frame at or after FROM that is not all
# zero; empty (status 1) when there is none.
pwc_first_sound() {
    # Offsets are counted here (16 bytes per od line): busybox awk reads od's zero-padded offset
    # column as octal.
    od -A n -t x4 -v -j "${2:-0}" "$1" 2>/dev/null | awk -v from="${2:-0}" '
        {
            for (i = 1; i <= NF; i++) if ($i != "00000000") { print from + (NR - 1) * 16 + (i - 1) * 4; found = 1; exit }
        }
        END { if (!found) exit 1 }'
}

# pwc_last_sound FILE: byte offset of the last frame that is not all zero; empty (status 1) when
# there is none.
pwc_last_sound() {
    od -A n -t x4 -v "$1" 2>/dev/null | awk '
        { for (i = 1; i <= NF; i++) if ($i != "00000000") last = (NR - 1) * 16 + (i - 1) * 4 }
        END { if (last == "") exit 1; print last }'
}

# pwc_sha FILE FROM LEN: SHA-256 (hex) of LEN bytes of FILE from offset FROM.
pwc_sha() {
    local s
    s=$(tail -c +$(($2 + 1)) "$1" | head -c "$3" | sha256sum) || return 1
    echo "${s%% *}"
}

# pwc_strip FILE OUT: OUT = FILE without its silent frames. Prints "LEAD INSIDE PLACES TRAIL":
# silent frames before the first sound, between sounds (and in how many places), after the last.
pwc_strip() {
    local runs total off len
    total=$(($(pwc_size "$1") / PWC_FRAME))
    # od prints one frame per line; grep (fast, also under TCG) picks the silent ones by line
    # number; awk turns them into runs of sound ("offset length" in bytes) and the tally.
    runs=$(od -A n -t x4 -v -w4 "$1" 2>/dev/null | grep -n -x ' 00000000' | awk -F: -v total="$total" '
        function sound(from, to) {   # frames from..to (1-based, inclusive) are sound
            if (to < from) return
            print (from - 1) * 4, (to - from + 1) * 4
            if (seen && gap) { inside += gap; places++ }
            seen = 1; gap = 0
        }
        {
            sound(prev + 1, $1 - 1)
            if (seen) gap++; else lead++
            prev = $1
        }
        END { sound(prev + 1, total); print "silence", lead + 0, inside + 0, places + 0, gap + 0 }')
    : >"$2"
    echo "$runs" | while read -r off len; do
        [ "$off" = silence ] && continue
        tail -c +$((off + 1)) "$1" | head -c "$len" >>"$2"
    done
    echo "$runs" | awk '$1 == "silence" { print $2, $3, $4, $5 }'
}

# pwc_match GOT WANT [WANT_FROM]: the stream a backend received (GOT, raw) against the data that
# was played (WANT, raw; from byte WANT_FROM on if given), silence aside (see the top). One line of
# detail either way; status 0 only on a match.
pwc_match() {
    local got="$1" want="$2" g w gn wn c
    if [ -n "${3-}" ]; then
        tail -c +$(($3 + 1)) "$want" >/tmp/pwc.want.part
        want=/tmp/pwc.want.part
    fi
    # shellcheck disable=SC2046 # four numbers
    set -- $(pwc_strip "$got" /tmp/pwc.g.s)
    g="lead-in $1 silent frames, $2 silent frames inserted in $3 places, $4 after"
    pwc_strip "$want" /tmp/pwc.w.s >/dev/null
    gn=$(($(pwc_size /tmp/pwc.g.s) / PWC_FRAME))
    wn=$(($(pwc_size /tmp/pwc.w.s) / PWC_FRAME))
    if [ "$gn" = 0 ]; then
        echo "the received data is all silence ($(($(pwc_size "$got") / PWC_FRAME)) frames)"
        return 1
    fi
    if cmp -s /tmp/pwc.g.s /tmp/pwc.w.s; then
        echo "$wn frames of sound bit-exact (sha256 $(pwc_sha /tmp/pwc.g.s 0 $((wn * PWC_FRAME)))); $g"
        return 0
    fi
    c=$(pwc_common_frames /tmp/pwc.g.s 0 /tmp/pwc.w.s 0 $(((gn < wn ? gn : wn) * PWC_FRAME)))
    echo "NOT bit-exact: $gn frames of sound received, $wn played; they agree for the first $c frames of sound; $g"
    return 1
}

# pwc_common_frames A A_FROM B B_FROM MAX_BYTES: how many whole frames A (from byte A_FROM) and
# B (from B_FROM) have in common at their start, at most MAX_BYTES/4 (a binary search on hashes).
pwc_common_frames() {
    local lo=0 hi=$(($5 / PWC_FRAME)) mid
    while [ "$lo" -lt "$hi" ]; do
        mid=$(((lo + hi + 1) / 2))
        if [ "$(pwc_sha "$1" "$2" $((mid * PWC_FRAME)))" = "$(pwc_sha "$3" "$4" $((mid * PWC_FRAME)))" ]; then
            lo=$mid
        else
            hi=$((mid - 1))
        fi
    done
    echo "$lo"
}

# pwc_pattern_index FILE OFFSET: the make-pattern-wav frame index stored in the frame at byte
# OFFSET of FILE (raw data): left = k & 0xffff, right & 0xf = k >> 16.
pwc_pattern_index() {
    local l r
    # shellcheck disable=SC2046 # od prints two numbers
    set -- $(od -A n -t u2 -j "$2" -N 4 "$1" 2>/dev/null)
    l=${1-}
    r=${2-}
    [ -n "$l" ] && [ -n "$r" ] || return 1
    echo $((l | ((r & 15) << 16)))
}

# pwc_pattern_runs FILE [MAX] [TOTAL] [FROM]: FILE (raw make-pattern-wav frames as received) as runs:
# "silence xN" for all-zero frames, "A..B" for consecutive file frames A to B, "other xN" for
# anything else; at most MAX (default 12) runs are named. Then a tally: file frames missing (and
# in how many gaps; with TOTAL, the file's frame count, the missing end counts too), frames that
# came twice, silence inserted between sounds (PipeWire's answer to a client that missed its
# cycle: nothing is lost, the rest comes later), and frames that are no pattern frame. FROM is the
# file frame FILE should start with (default 0).
pwc_pattern_runs() {
    od -A n -t u2 -v -w4 "$1" 2>/dev/null | awk -v max="${2:-12}" -v total="${3:-0}" -v next_k="${4:-0}" '
        function flush() {
            if (kind == "") return
            runs++
            if (runs <= max) {
                if (kind == "s") out = out sep "silence x" n
                else if (kind == "p") out = out sep first ".." last
                else out = out sep "other x" n
                sep = ", "
            }
            if (kind == "p") {
                if (first > next_k) { missing += first - next_k; gaps++ }
                if (first < next_k) repeated += (last < next_k ? last : next_k - 1) - first + 1
                if (last + 1 > next_k) next_k = last + 1
                if (pending_s) { inserted += pending_s; places++ }
                pending_s = 0; seen_p = 1
            } else if (kind == "s") {
                if (seen_p) pending_s = n
            } else other += n
        }
        NF == 2 {
            k = $1 + ($2 % 16) * 65536
            if ($1 == 0 && $2 == 0) t = "s"; else t = "p"
            if (t == "s" && kind == "s") { n++; next }
            if (t == "p" && kind == "p" && k == last + 1) { last = k; n++; next }
            flush()
            kind = t; n = 1; first = k; last = k
        }
        END {
            flush()
            if (runs > max) out = out ", ..."
            if (total > next_k) { missing += total - next_k; gaps++ }
            printf "%s (%d runs): %d file frames missing in %d gaps, %d frames twice, %d frames of silence inserted in %d places, %d other frames\n", \
                out, runs, missing, gaps, repeated, inserted, places, other
        }'
}

# pwc_pattern_diagnosis GOT WANT: for a received stream that is not bit-exact and WANT a
# make-pattern-wav file: which file frames arrived, in which order. One line.
pwc_pattern_diagnosis() {
    echo "as file frames: $(pwc_pattern_runs "$1" 12 $(($(pwc_size "$2") / PWC_FRAME)))"
}

# pwc_capture_match GOT STREAM: GOT (raw, what a recorder wrote), silence aside, is one contiguous
# piece of the backend's capture pattern of STREAM (<fe>/<dev>/<pcm>/<stream>), as
# `xen-snd-backend --locate-pattern` finds it (the same binary, run here as a calculator: it inverts
# the pattern's words, so it knows where in the stream every recorded byte comes from). The piece
# may start at any frame of the stream (a recorder linked after the source started misses the
# quanta before, which is normal) and silence may come before, inside and after; it must not skip
# or repeat pattern bytes, contain foreign frames or start in the middle of a frame. One line of
# detail (on a failure it carries the locator's line: its runs say where data went missing); 0 on
# a match.
pwc_capture_match() {
    local got="$1" id="$2" line rc w from=none bytes=0 sil=0/0in0/0 lead rest mid
    line=$(xen-snd-backend --locate-pattern "$id" "$got" --frame-bytes "$PWC_FRAME" 2>&1)
    rc=$?
    case "$rc" in
    0) ;;
    1)
        echo "NOT one contiguous piece of the backend's pattern of $id: $line"
        return 1
        ;;
    *)
        echo "xen-snd-backend --locate-pattern $id $got failed (exit $rc): $line"
        return 1
        ;;
    esac
    # "pattern STREAM contiguous from=F bytes=B gaps=0/0 repeats=0 silence=L/IinP/A other=0 runs: ..."
    for w in $line; do
        case "$w" in
        from=*) from=${w#from=} ;;
        bytes=*) bytes=${w#bytes=} ;;
        silence=*) sil=${w#silence=} ;;
        runs:) break ;;
        esac
    done
    lead=${sil%%/*}
    rest=${sil#*/}
    mid=${rest%/*}
    case "$from$bytes" in
    *[!0-9]*)
        echo "cannot read the locator's line: $line"
        return 1
        ;;
    esac
    if [ $((from % PWC_FRAME)) != 0 ]; then
        echo "NOT frame-aligned with the backend's pattern of $id: it starts at byte $from of the stream, inside a frame: $line"
        return 1
    fi
    echo "$((bytes / PWC_FRAME)) frames of the backend's pattern of $id, contiguous and bit-exact, from its frame $((from / PWC_FRAME)) on (0 = its OPEN); lead-in $lead silent frames, ${mid%in*} silent frames inserted in ${mid#*in} places, ${rest##*/} after"
    return 0
}

# pwc_is_prefix GOT WANT: the sound in GOT (raw), silence aside, is the beginning of WANT's (raw)
# sound up to GOT's end (a stream cut short, e.g. by a killed backend). One line; 0 on a match.
pwc_is_prefix() {
    local n
    pwc_strip "$2" /tmp/pwc.pw.s >/dev/null
    # shellcheck disable=SC2046 # four numbers
    set -- $(pwc_strip "$1" /tmp/pwc.p.s)
    n=$(pwc_size /tmp/pwc.p.s)
    if [ "$n" -gt "$(pwc_size /tmp/pwc.pw.s)" ]; then
        echo "$((n / PWC_FRAME)) frames of sound: more than was played"
        return 1
    fi
    if [ "$(pwc_sha /tmp/pwc.p.s 0 "$n")" = "$(pwc_sha /tmp/pwc.pw.s 0 "$n")" ]; then
        echo "the played data's first $((n / PWC_FRAME)) frames of sound, bit-exact; lead-in $1 silent frames, $2 inserted in $3 places"
        return 0
    fi
    echo "NOT the played data's beginning: of $((n / PWC_FRAME)) frames of sound the first $(pwc_common_frames /tmp/pwc.p.s 0 /tmp/pwc.pw.s 0 "$n") agree; lead-in $1 silent frames, $2 inserted in $3 places"
    return 1
}

# ---- dom0 ---------------------------------------------------------------------------------------

# pwc_playback_result NAME GOT.wav WANT.wav [EXTRA]: report result NAME: the playback stream the
# backend wrote to GOT.wav (its -o file) is WANT.wav's data, silence aside (pwc_match).
# EXTRA (e.g. the backend's report line) is appended to the detail.
pwc_playback_result() {
    local name="$1" got="$2" want="$3" extra="${4-}" d
    if ! pwc_wav_data "$got" /tmp/pwc.got.raw; then
        tb_result "$name" FAIL "no WAV data from the backend at $got (in its directory: $(find "$(dirname "$got")" -type f 2>&1 | tr '\n' ' ')) $extra"
        return 1
    fi
    pwc_wav_data "$want" /tmp/pwc.want.raw || { tb_result "$name" FAIL "cannot read $want"; return 1; }
    if d=$(pwc_match /tmp/pwc.got.raw /tmp/pwc.want.raw); then
        tb_result "$name" PASS "$d${extra:+; $extra}"
    else
        case "$want" in
        *pattern*) d="$d; $(pwc_pattern_diagnosis /tmp/pwc.got.raw /tmp/pwc.want.raw)" ;;
        esac
        tb_result "$name" FAIL "$d${extra:+; $extra}"
        return 1
    fi
}

# pwc_tell KEY VALUE: leave VALUE for the domU in its data/testbed/KEY (it waits with
# tb_wait_until ... tb_xs_is data/testbed/KEY VALUE).
pwc_tell() {
    xenstore-write "/local/domain/$(tb_domid)/data/testbed/$1" "$2"
}

# pwc_domu_says KEY VALUE: the domU left VALUE in data/testbed/KEY (snd_put).
pwc_domu_says() {
    [ "$(snd_domu_get "$1")" = "$2" ]
}

# pwc_create_domu: `xl create` the pw-* scenarios' domU ($PW_XL_CFG, $PW_DOMU_MEMORY MiB). A
# missing template is an error (tb_create_domu would quietly use one without a sound card).
pwc_create_domu() {
    if [ ! -f "$PW_XL_CFG" ]; then
        tb_result domu-created FAIL "$PW_XL_CFG is not in the image (testbed/pipewire/initrd-args)"
        return 1
    fi
    TB_DOMU_MEMORY=$PW_DOMU_MEMORY tb_create_domu "$PW_XL_CFG"
}

# pwc_export_file FILE NAME: hand FILE to the host through the raw disk `testbed/run --disk` gave
# QEMU (dom0 sees it as /dev/vda once virtio_pci and virtio_blk are loaded). Layout: a 512-byte
# header "XEN-SND-TESTBED-FILE <bytes> <sha256> <NAME>\n" (zero padded), then the file from
# byte 512. One line of detail; 1 if there is no disk or the file does not fit.
pwc_export_file() {
    local file="$1" name="$2" size sha disk=/dev/vda cap
    tb_modprobe virtio_pci virtio_blk || { echo "cannot load virtio_pci/virtio_blk"; return 1; }
    tb_wait_until 10 test -b "$disk" || { echo "no $disk (testbed/run --disk FILE gives one)"; return 1; }
    size=$(pwc_size "$file") || { echo "no $file"; return 1; }
    cap=$(($(cat /sys/block/vda/size) * 512))
    [ $((size + 512)) -le "$cap" ] || { echo "$file ($size bytes) does not fit on $disk ($cap bytes)"; return 1; }
    sha=$(sha256sum "$file") || return 1
    sha=${sha%% *}
    printf 'XEN-SND-TESTBED-FILE %s %s %s\n' "$size" "$sha" "$name" >/tmp/pwc.hdr
    if ! dd if="$file" of="$disk" bs=512 seek=1 conv=notrunc 2>/dev/null ||
        ! dd if=/tmp/pwc.hdr of="$disk" bs=512 count=1 conv=sync,notrunc 2>/dev/null; then
        echo "writing $disk failed"
        return 1
    fi
    sync
    echo "$name: $size bytes, sha256 $sha, on $disk"
}
