#!/bin/busybox sh
# The emulated host's init (see tools/emulated-host.sh). As /init of the L1 initramfs it loads
# the modules, mounts the host's root (virtio-fs tag share0, read-only) with fresh writable
# directories and the shares, and switches root to it; then, as `stage2`, it lays out the
# cgroups, runs the command and powers L1 off. Its status goes to the run directory (share1).
set -u

fail() {
    echo "emulated-host (L1): $*"
    for s in /run/isobox-l1/status /newroot/run/isobox-l1/status; do [ -d "${s%/status}" ] && echo 1 >"$s"; done
    power_off
}

# An immediate reset, which qemu's -no-reboot turns into its exit.
power_off() {
    sync
    echo b >/proc/sysrq-trigger
    sleep 5
}

stage1() {
    /bin/busybox --install -s /bin
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    while read -r m; do
        # Module parameters from L1's command line, `l1.kvm-amd=a=1,b=0` for kvm-amd.ko.
        # shellcheck disable=SC2046
        insmod "/modules/$m" $(tr ' ' '\n' </proc/cmdline | sed -n "s/^l1\.${m%.ko}=//p" | tr , ' ') ||
            fail "insmod $m failed"
    done </modules/order
    mount -t virtiofs -o ro share0 /newroot || fail "mounting the host root failed"
    for d in tmp run var/tmp; do
        mount -t tmpfs -o mode=1777 tmpfs "/newroot/$d" || fail "tmpfs on /$d failed"
    done
    mkdir -p /newroot/run/isobox-l1
    mount -t virtiofs share1 /newroot/run/isobox-l1 || fail "mounting the run directory failed"
    while read -r tag path; do
        # A share under /tmp, /run or /var/tmp lands on L1's fresh tmpfs: make its mount point.
        mkdir -p "/newroot$path" 2>/dev/null
        mount -t virtiofs "$tag" "/newroot$path" || fail "mounting $path failed"
    done </newroot/run/isobox-l1/shares
    mount --move /dev /newroot/dev
    umount /proc /sys
    repo=$(sed -n 's/^repo=//p' /newroot/run/isobox-l1/config)
    exec switch_root /newroot /bin/sh "$repo/tools/emulated-host-init.sh" stage2
}

cgroups() {
    case "$1" in
    v2)
        mount -t cgroup2 cgroup2 /sys/fs/cgroup
        ctrls=$(cat /sys/fs/cgroup/cgroup.controllers)
        for c in $ctrls; do echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || true; done
        ;;
    v1 | hybrid)
        mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
        for c in $(awk 'NR > 1 && $4 == 1 {print $1}' /proc/cgroups); do
            mkdir -p "/sys/fs/cgroup/$c"
            mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" || true
        done
        if [ "$1" = hybrid ]; then
            mkdir -p /sys/fs/cgroup/unified
            mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
        fi
        ;;
    esac
}

# A soft lockup (a CPU stuck in the kernel) has been seen in L1 under TCG, once for over an
# hour: the stuck CPU never recovers. While another CPU still runs, this saves the kernel's
# log (with every CPU's backtrace) to the run directory, where the host prints it, and ends L1
# so that the host can resume the suite in a fresh one.
lockup_watch() {
    while sleep 15; do
        # The host's watchdog ends an L1 whose heartbeat stops (emulated-host.sh).
        date +%s >/run/isobox-l1/heartbeat
        # Stuck for 100 s or more: under this emulation a CPU can stall for a few seconds and
        # go on.
        dmesg | grep -qE 'soft lockup - CPU#[0-9]+ stuck for ([0-9]{4,}|[1-9][0-9]{2})s' || continue
        echo l >/proc/sysrq-trigger
        sleep 5
        {
            echo "running: $(cat /run/isobox-l1/running 2>/dev/null)"
            dmesg
        } >/run/isobox-l1/lockup.log 2>&1
        power_off
    done
}

# L1's kernel patches its own code (a static key) when the first vCPU with an in-kernel LAPIC
# appears, and again after the last one's guest enables it; each patch waits for every other
# CPU to answer an IPI. Under TCG's nested SVM that IPI has been lost while the other CPU ran
# a guest: the CPU that patches (in a VMM's KVM_CREATE_VCPU) spins for good, and L1 freezes.
# One idle vCPU, made before any test and never run, holds the key on, so a VM's start and
# end patch nothing.
kvm_keeper() {
    python3 -c '
import fcntl, os, time
kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
vm = fcntl.ioctl(kvm, 0xAE01, 0)  # KVM_CREATE_VM
fcntl.ioctl(vm, 0xAE60, 0)  # KVM_CREATE_IRQCHIP: the vCPU gets an in-kernel LAPIC
fcntl.ioctl(vm, 0xAE41, 0)  # KVM_CREATE_VCPU
os.close(kvm)
print("emulated-host (L1): an idle vCPU holds the LAPIC static keys", flush=True)
while True:
    time.sleep(3600)
' </dev/null &
}

stage2() {
    export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    echo "emulated-host (L1): up after $(cut -d' ' -f1 /proc/uptime) s"
    # L1's kernel symbols, for the host's reading of a frozen L1's vCPUs.
    cat /proc/kallsyms >/run/isobox-l1/l1-kallsyms &
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
    mount -t tmpfs -o mode=1777 tmpfs /dev/shm
    cfg=/run/isobox-l1/config
    cgroup=$(sed -n 's/^cgroup=//p' $cfg)
    repo=$(sed -n 's/^repo=//p' $cfg)
    workdir=$(sed -n 's/^workdir=//p' $cfg)
    cgroups "$cgroup"
    # isobox's data directory: the host's cached guest kernels, read-only, under a writable
    # directory (isobox locks and may add to it).
    host_data=/var/lib/isobox
    mkdir -p /run/host-data
    mount --bind "$host_data" /run/host-data 2>/dev/null
    mount -t tmpfs tmpfs "$host_data" && mkdir -p "$host_data/kernels"
    for f in /run/host-data/kernels/vmlinu* /run/host-data/kernels/modules-*; do
        [ -e "$f" ] && ln -s "$f" "$host_data/kernels/"
    done
    export HOME=/tmp/home TMPDIR=/tmp
    # L1's "hardware" KVM is itself emulated: a guest boots in seconds, not in a fraction of
    # one, so the agent gets longer than KVM's default to say Hello.
    export ISOBOX_HELLO_TIMEOUT=120
    mkdir -p "$HOME"
    export PATH="$repo/target/x86_64-unknown-linux-gnu/debug:$PATH"
    ip link set lo up 2>/dev/null
    kvm_keeper
    lockup_watch &
    cd "$workdir" || fail "cd $workdir"
    if [ -s /run/isobox-l1/command ] && [ -n "$(cat /run/isobox-l1/command)" ]; then
        sh -c "$(cat /run/isobox-l1/command)" </dev/null
    else
        sh "$repo/tools/emulated-host-suite.sh" </dev/null
    fi
    echo $? >/run/isobox-l1/status
    power_off
}

case "${1:-}" in
stage2) stage2 ;;
*) stage1 ;;
esac
