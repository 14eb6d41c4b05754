# Shared by the host-side testbed scripts (fetch, build-initrd, run). Source it; do not run it.
# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables below are used by the scripts that source this

# Repository root and the testbed directory, wherever the caller was started from.
TESTBED_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_DIR="$(cd "$TESTBED_DIR/.." && pwd)"

# Downloaded debs, their unpacked tree, the Xen image and the built initramfs images.
CACHE_DIR="${TESTBED_CACHE:-$REPO_DIR/.cache/testbed}"
DEB_DIR="$CACHE_DIR/debs"
ROOT_DIR="$CACHE_DIR/root"
# TESTBED_IMAGES: a separate image directory, so differently built images (e.g. one with PipeWire,
# testbed/pipewire/) do not overwrite each other.
IMAGE_DIR="${TESTBED_IMAGES:-$CACHE_DIR/images}"

# Xen version directory inside the Debian packages (usr/lib/xen-4.17/...).
XEN_LIBEXEC="usr/lib/xen-4.17/bin"

# die MSG...: print an error naming the script and exit 1.
die() {
    echo "testbed/$(basename "$0"): error: $*" >&2
    exit 1
}

# note MSG...: a progress line on stderr (stdout stays for results).
note() {
    echo "testbed/$(basename "$0"): $*" >&2
}

# as_root CMD...: run as root (directly when we already are).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_update: refresh the package lists; only called after an apt operation failed, because on a
# fresh machine the lists may be missing (apt-cache then finds nothing, apt-get cannot download).
apt_update() {
    note "apt-get update (package lists missing or stale)"
    # The dpkg/apt lock is often held by a parallel session: wait for it instead of failing.
    as_root apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null
}

# kernel_version: the kernel version fetch unpacked (e.g. 6.1.0-56-amd64).
kernel_version() {
    [ -s "$CACHE_DIR/kernel-version" ] || die "no kernel in $CACHE_DIR: run testbed/fetch first"
    cat "$CACHE_DIR/kernel-version"
}
