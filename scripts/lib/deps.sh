# Shared by scripts/test and scripts/demo: install what the project needs on a Debian 12 machine.
# Idempotent and quiet when everything is already there.

# Debian packages the build and the tests need.
HOST_PACKAGES=(
    gcc            # C differential layout tests, the xenstored LD_PRELOAD shim
    pkg-config
    python3        # scripts/check-licenses
    linux-libc-dev # /usr/include/xen/{gntalloc,gntdev,evtchn}.h for the UAPI tests
    libxen-dev     # /usr/include/xen/io/{sndif,ring,xs_wire}.h for the layout tests, libs for xenstored
    xenstore-utils # the real xenstore-read/-write/-ls/-chmod used as the toolstack in tests
    # PipeWire 0.3.65 for the module: headers for the pipewire-rs bindings, the daemon, the session
    # manager and the PulseAudio server for the tests
    libpipewire-0.3-dev
    libspa-0.2-dev
    libclang-dev
    pipewire
    pipewire-bin
    wireplumber
    pipewire-pulse
    pulseaudio-utils
    # meson builds and installs the module and its configuration
    meson
    ninja-build
)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# install_packages PKG... : apt-get install only what is missing.
install_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! as_root apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null; then
        as_root apt-get update -qq -o DPkg::Lock::Timeout=600
        as_root apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
    fi
}

# ensure_rust: cargo with rustfmt and clippy.
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: no Rust toolchain (cargo) found; install rustup's stable toolchain (Rust >= 1.80)" >&2
        exit 1
    fi
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        if command -v rustup >/dev/null 2>&1; then
            rustup component add rustfmt clippy >/dev/null
        else
            echo "error: cargo fmt / cargo clippy are missing" >&2
            exit 1
        fi
    fi
}
