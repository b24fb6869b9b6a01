#!/usr/bin/env bash
# Set up a fresh Debian host for isobox and run its main job or its tests.
#   ./dev.sh compare [ARGS]   build, then `isobox compare` on the built-in default bundle
#   ./dev.sh test             build, then every unit and integration test
# Needs root: containers, cgroups and KVM do.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(busybox-static runc crun qemu-system-x86 cpio strace file)

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "dev.sh: installing ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
}

case "${1:-}" in
compare)
    shift
    install_packages
    cargo build --release --workspace --bins
    exec target/x86_64-unknown-linux-gnu/release/isobox compare "$@"
    ;;
test)
    install_packages
    # The microVM tests boot the static guest agent, a binary of the workspace.
    cargo build --workspace --bins
    exec cargo test --workspace --no-fail-fast
    ;;
*)
    echo "usage: $0 compare [ARGS] | test" >&2
    exit 2
    ;;
esac
