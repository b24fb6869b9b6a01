//! The isolation probe: run inside any sandbox (isobox container or microVM, runc, crun, a
//! bare host), it reports what the workload can see and reach as one JSON object on stdout.
//! A harness runs it in each sandbox and on the host and compares the objects.
//!
//! # Schema (version 1)
//!
//! Absent data is `null`, never a missing key. Every check that failed adds a string to
//! `errors`.
//!
//! - `schema`: 1. `probe_version`: the crate version.
//! - `kernel`: `{release, version, machine, boot_id, shared_kernel}`; `boot_id` from
//!   /proc/sys/kernel/random/boot_id; `shared_kernel` is a bool only when the harness sets
//!   `ISOBOX_PROBE_HOST_BOOT_ID` to the host's boot id (equal ids: the kernel is shared).
//! - `processes`: `{visible, kernel_threads, pids, pid_self, pid1_cmdline, init_is_self,
//!   init_pid_ns, namespaces, host_pids_given, host_pids_matched, host_pids_visible,
//!   host_pids_reason}`. `visible` counts /proc/<pid> dirs and `pids` lists them; `namespaces`
//!   maps cgroup/ipc/mnt/net/pid/time/user/uts to link targets like "pid:[4026531836]".
//!   `init_pid_ns`: kthreadd (pid 2, parent 0) is visible. The harness may set
//!   `ISOBOX_PROBE_HOST_PIDS` to host pids (`pid` or `pid:starttime`, comma separated);
//!   `host_pids_visible` then means all of them are visible. Without it, it is a heuristic:
//!   a different kernel → false; kernel threads visible while pid 1 is not ours or an isobox
//!   agent → true; pid 1 a systemd/init → true; more than 64 non-kernel processes → true.
//! - `network`: `{interfaces, non_loopback, source}` (`source`: "procfs" | "sysfs" | "none").
//! - `hostname`: string or null.
//! - `user`: `{uid, gid, euid, egid, groups, uid_map, gid_map, in_user_ns}`; the maps are the
//!   raw file contents; `in_user_ns` is true when uid_map is not `0 0 4294967295`.
//! - `capabilities`: `{effective, permitted, inheritable, bounding, ambient}` each
//!   `{hex: "000001ffffffffff", names: ["cap_chown", ...]}` or null; `seccomp`: "disabled" |
//!   "strict" | "filter" | "unknown"; `seccomp_filters`: count or null; `no_new_privs`: bool.
//! - `reachable`: `{kallsyms_addresses, dev_kvm, dev_mem, raw_disks_present,
//!   raw_disks_readable, raw_disk, cgroupfs_writable, cgroupfs_writable_path,
//!   sysrq_trigger_writable, mounts}`: bools, name lists, a path or null, and the number of
//!   lines of /proc/self/mounts (or null).
//! - `syscalls`: `{arch: "x86_64", method: "child" | "in_process", seccomp_filter, counts:
//!   {reachable, blocked, enosys, not_probed}, reachable: [names], blocked: [names],
//!   enosys: [names], not_probed: [names], results: [{nr, name, class, detail}]}` over
//!   x86-64 numbers 0..=334 and 424..=462. `class` is one of the four list names. `detail` is
//!   "ok <ret>", an errno name, "killed by signal <n>", "timed out", or why it is not probed.
//!   ENOSYS → enosys; EPERM/EACCES → blocked only under a seccomp filter (else reachable);
//!   death or a hang in the call → blocked; anything else → reachable.
//! - `containment`: null unless `--containment`; then `{memory: {cap_mib, step_mib,
//!   reached_mib, outcome, signal, oom_killed, error}, pids: {cap, forked, stopped_by,
//!   limited, error}, errors}`. `outcome`: "completed" | "killed" | "alloc_failed" | "error".
//!   Caps: `ISOBOX_PROBE_MEM_MIB` (default 512), `ISOBOX_PROBE_FORKS` (default 1024).
//! - `errors`: list of strings.

pub mod caps;
pub mod containment;
pub mod identity;
pub mod kernel;
pub mod net;
pub mod procs;
pub mod reach;
pub mod report;
pub mod syscall_table;
pub mod syscalls;

pub use report::{run, Options, Report, SCHEMA_VERSION};
