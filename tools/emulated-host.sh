#!/usr/bin/env bash
# An ordinary host in software: boot Debian's cloud kernel under qemu TCG with `-cpu max`
# (which emulates AMD SVM with nested paging), so the "L1" guest has a real /dev/kvm
# (kvm-amd) and a pure cgroup-v2 hierarchy: the two things these build machines lack.
#
#   tools/emulated-host.sh [--cgroup v2|hybrid|v1] [--share DIR]... [--only EXE]... [-- COMMAND]
#
# L1's root is this host's own root, shared read-only over virtio-fs, with fresh /tmp, /run,
# /var/tmp and the state isobox keeps; every `--share DIR` is mounted read-write at the same
# path. COMMAND runs under `sh -c` in the first shared directory (else in the repository),
# with the workspace's debug binaries first on PATH; its output is printed and its status is
# this script's. Without COMMAND it runs the suite (tools/emulated-host-suite.sh), or only
# the test executables named by --only (e.g. `--only microvm`). Only the L1 initramfs
# (busybox, the kernel's kvm, virtio and virtio-fs modules, the init script) is built, once
# per kernel version and input hash, in $ISOBOX_DATA_DIR/emulated-host (default
# /var/lib/isobox/emulated-host).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
data=${ISOBOX_DATA_DIR:-/var/lib/isobox}
cache=$data/emulated-host
cgroup=v2
shares=()
only=
while [ $# -gt 0 ]; do
    case "$1" in
    --cgroup) cgroup=$2; shift 2 ;;
    --cgroup=*) cgroup=${1#*=}; shift ;;
    --share) shares+=("$(cd "$2" && pwd)"); shift 2 ;;
    --share=*) shares+=("$(cd "${1#*=}" && pwd)"); shift ;;
    --only) only="$only $2"; shift 2 ;;
    --only=*) only="$only ${1#*=}"; shift ;;
    --) shift; break ;;
    -h|--help) sed -n 2,16p "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "emulated-host: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$cgroup" in v2|hybrid|v1) ;; *) echo "emulated-host: --cgroup takes v2, hybrid or v1" >&2; exit 2 ;; esac
command=${*:-}

step_start=$(date +%s.%N)
step() {
    local now
    now=$(date +%s.%N)
    awk -v a="$step_start" -v b="$now" -v s="$1" 'BEGIN {printf "emulated-host: %-40s %6.1f s\n", s, b - a}' >&2
    step_start=$now
}

virtiofsd=
for c in /usr/libexec/virtiofsd /usr/lib/qemu/virtiofsd "$(command -v virtiofsd || true)"; do
    [ -n "$c" ] && [ -x "$c" ] && { virtiofsd=$c; break; }
done
[ -n "$virtiofsd" ] || { echo "emulated-host: no virtiofsd (Debian: qemu-system-common)" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { echo "emulated-host: qemu-system-x86_64 is missing" >&2; exit 1; }

# The L1 kernel: the same Debian package isobox provisions for its guests, modules included.
mkdir -p "$cache"
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "emulated-host: cannot resolve linux-image-cloud-amd64 (run apt-get update)" >&2; exit 1; }
kdir=$cache/$pkg
if [ ! -d "$kdir/x/boot" ]; then
    rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
    (cd "$kdir.tmp" && apt-get download -q "$pkg" >/dev/null 2>&1 && dpkg-deb -x ./*.deb x && rm -f ./*.deb)
    rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
fi
kver=${pkg#linux-image-}
vmlinuz=$kdir/x/boot/vmlinuz-$kver
mods=$kdir/x/lib/modules/$kver/kernel
step "L1 kernel $kver"

# Load order (each after what it depends on, per modinfo).
modules=(
    drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko
    drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci_modern_dev.ko
    drivers/virtio/virtio_pci.ko fs/fuse/fuse.ko fs/fuse/virtiofs.ko
    fs/overlayfs/overlay.ko virt/lib/irqbypass.ko arch/x86/kvm/kvm.ko arch/x86/kvm/kvm-amd.ko
    # Devices the tests use as an ordinary host has them loaded.
    drivers/block/loop.ko drivers/net/tun.ko drivers/net/veth.ko
    # A microVM's network: tc redirects between the namespace's interface and the VM's tap.
    net/sched/sch_ingress.ko net/sched/cls_u32.ko net/sched/act_mirred.ko
)
key=$( (cat "$0" "$repo/tools/emulated-host-init.sh" /bin/busybox; echo "$kver") | sha256sum | cut -c1-16)
initrd=$cache/l1-$kver-$key.cpio.gz
if [ ! -f "$initrd" ]; then
    tmp=$(mktemp -d)
    mkdir -p "$tmp"/{bin,dev,proc,sys,modules,newroot,share}
    cp /bin/busybox "$tmp/bin/busybox"
    cp "$repo/tools/emulated-host-init.sh" "$tmp/init"
    chmod 755 "$tmp/init"
    for m in "${modules[@]}"; do
        cp "$mods/$m" "$tmp/modules/"
        basename "$m" >>"$tmp/modules/order"
    done
    (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1 >"$initrd.tmp")
    mv "$initrd.tmp" "$initrd"
    rm -rf "$tmp"
fi
step "L1 initramfs"

run=$(mktemp -d /tmp/isobox-l1-XXXXXX)
# The workspace's binaries and, for the suite, its test executables (static, like every
# binary here, and run in L1 from the repository's target directory).
if [ -z "${EMULATED_HOST_NO_BUILD:-}" ]; then
    (cd "$repo" && cargo build --workspace --bins -q)
    [ -n "$command" ] || (cd "$repo" && cargo build -q -p isobox-microvm --example vm_host &&
        cargo build -q -p isobox-guest --examples)
fi
if [ -z "$command" ]; then
    (cd "$repo" && cargo test --workspace --no-run -q --message-format=json) |
        sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1 \2/p' \
            >"$run/tests"
fi
# The guest kernel, fetched on the host: L1 sees the host's isobox data read-only.
"$repo/target/x86_64-unknown-linux-gnu/debug/isobox" kernel --fetch >/dev/null
step "build"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [ -n "${EMULATED_HOST_KEEP:-}" ] || rm -rf "$run"
}
trap cleanup EXIT
workdir=${shares[0]:-$repo}
{
    echo "cgroup=$cgroup"
    echo "repo=$repo"
    echo "workdir=$workdir"
    echo "only=${only# }"
} >"$run/config"
printf '%s\n' "${command:-}" >"$run/command"
# Tag 0 is the host's root (read-only in L1), tag 1 this run's directory, then the shares.
dirs=(/ "$run" "${shares[@]}")
qemu_fs=()
for i in "${!dirs[@]}"; do
    qemu_fs+=(-chardev "socket,id=fs$i,path=$run/fs$i.sock"
        -device "vhost-user-fs-pci,queue-size=1024,chardev=fs$i,tag=share$i")
    [ "$i" -ge 2 ] && echo "share$i ${dirs[$i]}" >>"$run/shares"
done
touch "$run/shares"
# One virtiofsd per share and boot: each serves one connection and ends with it.
start_daemons() {
    for i in "${!dirs[@]}"; do
        rm -f "$run/fs$i.sock"
        # The namespace sandbox pivots into its directory, which "/" cannot be.
        local sandbox=namespace
        [ "$i" -eq 0 ] && sandbox=chroot
        "$virtiofsd" --socket-path="$run/fs$i.sock" -o source="${dirs[$i]}" -o cache=auto \
            -o log_level=err -o announce_submounts -o sandbox=$sandbox >>"$run/virtiofsd.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!dirs[@]}"; do
        for _ in $(seq 100); do [ -S "$run/fs$i.sock" ] && break; sleep 0.05; done
    done
}

mem=${EMULATED_HOST_MEMORY:-4G}
# L1 under TCG, nested: it has been seen to freeze outright (no console, no file written)
# and to lock up a CPU in its kernel. For the suite, a watchdog ends an L1 whose heartbeat
# (a file L1 rewrites every 15 s) is older than heartbeat_limit, or that wrote nothing else
# under $run for silent_limit (longer than the suite's per-executable limit); L1 ends itself
# on a soft lockup; and the suite resumes in a fresh L1 after the test that was running
# (tools/emulated-host-suite.sh), up to four times.
silent_limit=${EMULATED_HOST_SILENT:-1000}
heartbeat_limit=${EMULATED_HOST_HEARTBEAT:-180}
boots=1
[ -z "$command" ] && boots=$((1 + ${EMULATED_HOST_RESTARTS:-4}))
# The suite's test executable in progress and its last test, as L1 last wrote them.
running() {
    local r out
    r=$(cat "$run/running" 2>/dev/null) || return 0
    out=$run/suite-${r% *}-${r#* }.out
    printf '%s' "$r"
    [ -f "$out" ] && grep '^test ' "$out" | tail -1 | sed 's/^/, last: /'
}
# What the host runs on, for reading a log from another machine.
echo "emulated-host: host $(uname -r), $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, qemu $(qemu-system-x86_64 --version | awk 'NR == 1 {print $4}')" >&2
boot_l1() {
    start_daemons
    # loglevel 4: the kernel's errors (a stuck CPU, an RCU stall, a task blocked for minutes,
    # an OOM kill) reach the console, where the watchdog below and a reader of the log see them.
    qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "${EMULATED_HOST_CPUS:-2}" \
        -M q35 -m "$mem" -object "memory-backend-memfd,id=mem,size=$mem,share=on" \
        -numa node,memdev=mem -display none -monitor "unix:$run/monitor.sock,server=on,wait=off" -no-reboot \
        -chardev "stdio,id=con,signal=off,logfile=$run/l1-console.log" -serial chardev:con \
        -kernel "$vmlinuz" -initrd "$initrd" "${qemu_fs[@]}" \
        -append "console=ttyS0 rdinit=/init panic=-1 mitigations=off tsc=reliable tsc_early_khz=2600000 quiet loglevel=${EMULATED_HOST_LOGLEVEL:-4} ${EMULATED_HOST_APPEND:-}" \
        </dev/null &
    local qemu=$! lockup_seen= status started
    started=$(date +%s)
    rm -f "$run/heartbeat"
    # A command has no watchdog: its time is its caller's to bound.
    while [ -z "$command" ] && kill -0 "$qemu" 2>/dev/null; do
        sleep 10
        # What the suite writes, not the console or virtiofsd's log: a stuck kernel keeps
        # printing to its console.
        local newest now beat why=
        newest=$(find "$run" -type f ! -name l1-console.log ! -name virtiofsd.log ! -name heartbeat -printf '%T@\n' | sort -n | tail -1)
        beat=$(stat -c %Y "$run/heartbeat" 2>/dev/null || echo "$started")
        now=$(date +%s)
        if awk -v n="$newest" -v now="$now" -v l="$silent_limit" 'BEGIN {exit !(now - n > l)}'; then
            why="wrote nothing for ${silent_limit} s"
        elif [ $((now - beat)) -gt "$heartbeat_limit" ]; then
            why="has had no heartbeat for $((now - beat)) s"
        fi
        # L1's own watch (emulated-host-init.sh) ends it on a soft lockup; if both its CPUs
        # are stuck, nothing in L1 can, so the host does after two minutes.
        if [ -z "$lockup_seen" ] && grep -qE 'soft lockup - CPU#[0-9]+ stuck for ([0-9]{4,}|[1-9][0-9]{2})s' "$run/l1-console.log" 2>/dev/null; then
            lockup_seen=$now
        fi
        if [ -n "$lockup_seen" ] && [ $((now - lockup_seen)) -gt 120 ]; then
            why="has a stuck CPU and did not end itself"
        fi
        if [ -n "$why" ]; then
            echo "emulated-host: L1 $why (running: $(running)); ending it" >&2
            tail -30 "$run/l1-console.log" 2>/dev/null | sed 's/^/emulated-host: L1 console: /' >&2
            command -v python3 >/dev/null &&
                python3 "$repo/tools/emulated-host-cpus.py" "$run/monitor.sock" "$run/l1-kallsyms" |
                sed 's/^/emulated-host: L1 vCPUs: /' >&2
            kill -9 "$qemu" 2>/dev/null
            break
        fi
    done
    wait "$qemu" 2>/dev/null
    status=$?
    if [ -f "$run/lockup.log" ]; then
        echo "emulated-host: L1 ended itself on a soft lockup; its kernel log:" >&2
        # The lockup report and the CPUs' backtraces, not the whole boot log.
        awk 'NR == 1 {print; next} /soft lockup/ {p = 1} p' "$run/lockup.log" | head -150 | sed 's/^/emulated-host: L1 dmesg: /' >&2
        mv "$run/lockup.log" "$run/lockup-$(date +%s).log"
    fi
    return "$status"
}
set +e
# A fresh L1 resumes the suite only within this budget, so that a run of freezes ends the
# suite with its reason, not the caller's time limit.
budget=${EMULATED_HOST_BUDGET:-3600}
suite_start=$(date +%s)
for boot in $(seq "$boots"); do
    boot_l1
    qemu_status=$?
    [ -f "$run/status" ] && break
    [ "$boot" -lt "$boots" ] || break
    if [ $(($(date +%s) - suite_start)) -gt "$budget" ]; then
        echo "emulated-host: L1 ended without a status (qemu: $qemu_status; running: $(running)); the suite has run for over ${budget} s, so no fresh L1" >&2
        break
    fi
    echo "emulated-host: L1 ended without a status (qemu: $qemu_status; running: $(running)); resuming the suite in a fresh L1" >&2
done
set -e
step "L1 run"
if [ ! -f "$run/status" ]; then
    echo "emulated-host: L1 ended without reporting a status (qemu exited $qemu_status)" >&2
    [ -s "$run/virtiofsd.log" ] && sed 's/^/virtiofsd: /' "$run/virtiofsd.log" >&2
    exit 1
fi
exit "$(cat "$run/status")"
