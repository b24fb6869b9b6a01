#!/usr/bin/env bash
# Set up a fresh Debian host for isobox and run its main job or its tests.
#   ./dev.sh compare [ARGS]   build, then `isobox compare` on the built-in default bundle
#   ./dev.sh test             build, then every unit and integration test
#   ./dev.sh bench [ARGS]     build, then `cargo bench ARGS` (the microVM benches boot the agent)
#   ./dev.sh fuzz [SECONDS]   run each fuzz target (fuzz/) for SECONDS, default 60
#   ./dev.sh emulated-host [--cgroup v2|hybrid|v1] [--share DIR]... [--only EXE]... [-- COMMAND]
#                             an ordinary host (hardware KVM, cgroup v2) under qemu TCG: runs
#                             COMMAND there, or the suite that needs one (tools/emulated-host.sh)
# Needs root: containers, cgroups and KVM do.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(busybox-static runc crun qemu-system-x86 cpio strace file acpica-tools lz4 procps iproute2
    podman containerd docker.io)

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

# isobox-vm: the same binary under the name that makes the microVM its default backend, for
# engines that can only name a runtime binary (installed: ln -s isobox /usr/local/bin/isobox-vm).
link_isobox_vm() {
    ln -sfn isobox "target/x86_64-unknown-linux-gnu/$1/isobox-vm"
}

case "${1:-}" in
compare)
    shift
    install_packages
    cargo build --release --workspace --bins
    link_isobox_vm release
    exec target/x86_64-unknown-linux-gnu/release/isobox compare "$@"
    ;;
test)
    install_packages
    # The microVM tests boot the static guest agent, a binary of the workspace.
    cargo build --workspace --bins
    link_isobox_vm debug
    exec cargo test --workspace --no-fail-fast
    ;;
bench)
    shift
    install_packages
    # The benches run the release isobox, which finds the guest agent next to itself.
    cargo build --release --workspace --bins
    link_isobox_vm release
    exec cargo bench "$@"
    ;;
fuzz)
    # Every target of fuzz/ for SECONDS (default 60) from its corpus. A crash, a hang (10 s on
    # one input) or a runaway allocation fails, leaving the input in fuzz/artifacts/<target>/.
    seconds="${2:-60}"
    cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
    cd fuzz
    # libFuzzer's instrumentation takes nightly flags; the stable compiler accepts them so.
    export RUSTC_BOOTSTRAP=1
    # The fuzzed paths are safe Rust, where a sanitizer finds nothing and costs executions:
    # none. Overflow checks and debug assertions stay on. cargo-fuzz's RUSTFLAGS replace
    # .cargo/config.toml's rustflags: the targets are not static.
    cargo fuzz build --sanitizer none
    for t in $(cargo fuzz list); do
        dict=()
        [ -f "dict/$t.dict" ] && dict=(-dict="dict/$t.dict")
        cargo fuzz run --sanitizer none "$t" "corpus/$t" -- "${dict[@]}" \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    done
    ;;
emulated-host)
    shift
    install_packages
    exec tools/emulated-host.sh "$@"
    ;;
*)
    echo "usage: $0 compare [ARGS] | test | fuzz [SECONDS] | emulated-host [ARGS] [-- COMMAND]" >&2
    exit 2
    ;;
esac
