//! The x86-64 syscalls to probe (numbers 0..=334 and 424..=462, by name; the numbers come
//! from `isobox_common::syscalls`) with, for each syscall, either
//! arguments that make the kernel answer without doing anything, or the reason it is never
//! called.
//!
//! The arguments follow three rules: file descriptors are -1 (EBADF), pointers the kernel
//! would read or write are null (EFAULT), and flags/ids/commands are invalid (EINVAL) wherever
//! a null pointer would mean "ignore" or a zero would be valid. Nothing here creates, changes
//! or waits on anything outside the probing process; the two calls that can only succeed and
//! return a new descriptor (`inotify_init`, `eventfd`) are marked to have it closed again.

/// How one syscall is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Call with these six arguments.
    Call([u64; 6]),
    /// Call with these arguments; a non-negative result is a new fd that must be closed.
    CallClose([u64; 6]),
    /// Never called, for this reason.
    Skip(&'static str),
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Sys {
    pub name: &'static str,
    pub probe: Probe,
}

impl Sys {
    /// The syscall number, from the shared table (every name here is in it; tested).
    pub fn nr(&self) -> u32 {
        isobox_common::syscalls::x86_64_number(self.name).unwrap_or(u32::MAX)
    }
}

/// Null pointer: the kernel answers EFAULT when it tries to read or write it.
const NUL: u64 = 0;
/// -1: a bad file descriptor / pid, or all bits set in a flags word.
const BAD: u64 = u64::MAX;
/// A clock or command id above every valid one.
const BIG: u64 = 0x7fff_ffff;
/// A System V IPC key that nothing uses; without IPC_CREAT the lookup fails with ENOENT.
const NOKEY: u64 = 0x1505_1505;

const fn pad(a: &[u64]) -> [u64; 6] {
    let mut out = [0u64; 6];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    out
}

macro_rules! call {
    ($name:expr $(, $arg:expr)*) => {
        Sys { name: $name, probe: Probe::Call(pad(&[$($arg),*])) }
    };
}
macro_rules! close {
    ($name:expr $(, $arg:expr)*) => {
        Sys { name: $name, probe: Probe::CallClose(pad(&[$($arg),*])) }
    };
}
macro_rules! skip {
    ($name:expr, $why:expr) => {
        Sys {
            name: $name,
            probe: Probe::Skip($why),
        }
    };
}

const BLOCKS: &str = "may block";
const ENDS: &str = "ends or replaces the process";
const SPAWNS: &str = "creates a process or thread";
const SIGNALS: &str = "sends a signal";
const OWN_MEM: &str = "changes the probe's own memory map";
const SIGSTATE: &str = "changes signal or thread state";
const CREDS: &str = "changes credentials";
const NS: &str = "changes namespaces or mounts";
const HOST: &str = "changes host-wide state";
const MODULES: &str = "loads or unloads kernel code";
const CLOCK: &str = "sets the system clock";

/// Every probed syscall number, in order.
pub static TABLE: &[Sys] = &[
    call!("read", BAD, NUL, 0),
    call!("write", BAD, NUL, 0),
    call!("open", NUL, 0, 0),
    call!("close", BAD),
    call!("stat", NUL, NUL),
    call!("fstat", BAD, NUL),
    call!("lstat", NUL, NUL),
    skip!("poll", BLOCKS),
    call!("lseek", BAD, 0, 0),
    call!("mmap", 0, 0, 0, 0, BAD, 0),
    skip!("mprotect", OWN_MEM),
    skip!("munmap", OWN_MEM),
    skip!("brk", OWN_MEM),
    skip!("rt_sigaction", SIGSTATE),
    call!("rt_sigprocmask", BAD, NUL, NUL, 1),
    skip!("rt_sigreturn", SIGSTATE),
    call!("ioctl", BAD, 0, 0),
    call!("pread64", BAD, NUL, 0, 0),
    call!("pwrite64", BAD, NUL, 0, 0),
    call!("readv", BAD, NUL, 0),
    call!("writev", BAD, NUL, 0),
    call!("access", NUL, 0),
    call!("pipe", NUL),
    skip!("select", BLOCKS),
    call!("sched_yield"),
    skip!("mremap", OWN_MEM),
    call!("msync", 0, 0, BAD),
    call!("mincore", 1, 0, NUL),
    call!("madvise", 0, 0, 0xffff),
    call!("shmget", NOKEY, 0, 0),
    call!("shmat", BAD, NUL, 0),
    call!("shmctl", BAD, BAD, NUL),
    call!("dup", BAD),
    call!("dup2", BAD, BAD),
    skip!("pause", BLOCKS),
    skip!("nanosleep", BLOCKS),
    call!("getitimer", BAD, NUL),
    call!("alarm", 0),
    call!("setitimer", BAD, NUL, NUL),
    call!("getpid"),
    call!("sendfile", BAD, BAD, NUL, 0),
    call!("socket", BAD, 0, 0),
    call!("connect", BAD, NUL, 0),
    call!("accept", BAD, NUL, NUL),
    call!("sendto", BAD, NUL, 0, 0, NUL, 0),
    call!("recvfrom", BAD, NUL, 0, 0, NUL, NUL),
    call!("sendmsg", BAD, NUL, 0),
    call!("recvmsg", BAD, NUL, 0),
    call!("shutdown", BAD, BAD),
    call!("bind", BAD, NUL, 0),
    call!("listen", BAD, 0),
    call!("getsockname", BAD, NUL, NUL),
    call!("getpeername", BAD, NUL, NUL),
    call!("socketpair", BAD, 0, 0, NUL),
    call!("setsockopt", BAD, 0, 0, NUL, 0),
    call!("getsockopt", BAD, 0, 0, NUL, NUL),
    skip!("clone", SPAWNS),
    skip!("fork", SPAWNS),
    skip!("vfork", SPAWNS),
    skip!("execve", ENDS),
    skip!("exit", ENDS),
    skip!("wait4", BLOCKS),
    skip!("kill", SIGNALS),
    call!("uname", NUL),
    call!("semget", NOKEY, 0, 0),
    call!("semop", BAD, NUL, 0),
    call!("semctl", BAD, 0, BAD, 0),
    call!("shmdt", NUL),
    call!("msgget", NOKEY, 0),
    call!("msgsnd", BAD, NUL, 0, 0),
    call!("msgrcv", BAD, NUL, 0, 0, 0),
    call!("msgctl", BAD, BAD, NUL),
    call!("fcntl", BAD, 0, 0),
    call!("flock", BAD, 0),
    call!("fsync", BAD),
    call!("fdatasync", BAD),
    call!("truncate", NUL, 0),
    call!("ftruncate", BAD, 0),
    call!("getdents", BAD, NUL, 0),
    call!("getcwd", NUL, 0),
    call!("chdir", NUL),
    call!("fchdir", BAD),
    call!("rename", NUL, NUL),
    call!("mkdir", NUL, 0),
    call!("rmdir", NUL),
    call!("creat", NUL, 0),
    call!("link", NUL, NUL),
    call!("unlink", NUL),
    call!("symlink", NUL, NUL),
    call!("readlink", NUL, NUL, 0),
    call!("chmod", NUL, 0),
    call!("fchmod", BAD, 0),
    call!("chown", NUL, 0, 0),
    call!("fchown", BAD, 0, 0),
    call!("lchown", NUL, 0, 0),
    call!("umask", 0o022),
    call!("gettimeofday", NUL, NUL),
    call!("getrlimit", BAD, NUL),
    call!("getrusage", 0x7fff, NUL),
    call!("sysinfo", NUL),
    call!("times", NUL),
    skip!("ptrace", "attaches to or changes another process"),
    call!("getuid"),
    call!("syslog", 9999, NUL, 0),
    call!("getgid"),
    skip!("setuid", CREDS),
    skip!("setgid", CREDS),
    call!("geteuid"),
    call!("getegid"),
    call!("setpgid", 0, BAD),
    call!("getppid"),
    call!("getpgrp"),
    skip!("setsid", "changes the probe's session"),
    skip!("setreuid", CREDS),
    skip!("setregid", CREDS),
    call!("getgroups", 0, NUL),
    skip!("setgroups", CREDS),
    skip!("setresuid", CREDS),
    call!("getresuid", NUL, NUL, NUL),
    skip!("setresgid", CREDS),
    call!("getresgid", NUL, NUL, NUL),
    call!("getpgid", BAD),
    skip!("setfsuid", CREDS),
    skip!("setfsgid", CREDS),
    call!("getsid", BAD),
    call!("capget", NUL, NUL),
    call!("capset", NUL, NUL),
    call!("rt_sigpending", NUL, 1),
    skip!("rt_sigtimedwait", BLOCKS),
    skip!("rt_sigqueueinfo", SIGNALS),
    skip!("rt_sigsuspend", BLOCKS),
    skip!("sigaltstack", SIGSTATE),
    call!("utime", NUL, NUL),
    call!("mknod", NUL, 0, 0),
    call!("uselib", NUL),
    skip!("personality", "changes the process's execution domain"),
    call!("ustat", 0, NUL),
    call!("statfs", NUL, NUL),
    call!("fstatfs", BAD, NUL),
    call!("sysfs", BAD),
    call!("getpriority", BAD, 0),
    call!("setpriority", BAD, 0, 0),
    call!("sched_setparam", BAD, NUL),
    call!("sched_getparam", BAD, NUL),
    call!("sched_setscheduler", BAD, 0, NUL),
    call!("sched_getscheduler", BAD),
    call!("sched_get_priority_max", BAD),
    call!("sched_get_priority_min", BAD),
    call!("sched_rr_get_interval", BAD, NUL),
    call!("mlock", 0, 0),
    call!("munlock", 0, 0),
    call!("mlockall", 0),
    call!("munlockall"),
    skip!("vhangup", HOST),
    call!("modify_ldt", 0, NUL, 0),
    skip!("pivot_root", NS),
    call!("_sysctl", NUL),
    skip!("prctl", SIGSTATE),
    skip!("arch_prctl", SIGSTATE),
    skip!("adjtimex", CLOCK),
    call!("setrlimit", BAD, NUL),
    skip!("chroot", NS),
    skip!("sync", "flushes every filesystem; has no harmless form"),
    skip!("acct", HOST),
    skip!("settimeofday", CLOCK),
    skip!("mount", NS),
    skip!("umount2", NS),
    skip!("swapon", HOST),
    skip!("swapoff", HOST),
    skip!("reboot", HOST),
    skip!("sethostname", HOST),
    skip!("setdomainname", HOST),
    skip!("iopl", HOST),
    skip!("ioperm", HOST),
    skip!("create_module", MODULES),
    skip!("init_module", MODULES),
    skip!("delete_module", MODULES),
    call!("get_kernel_syms", NUL),
    call!("query_module", NUL, 0, NUL, 0, NUL),
    call!("quotactl", 0xff, NUL, 0, NUL),
    call!("nfsservctl", 0, NUL, NUL),
    call!("getpmsg", BAD, NUL, NUL, NUL, NUL),
    call!("putpmsg", BAD, NUL, NUL, 0, 0),
    call!("afs_syscall", 0, 0, 0, 0, 0),
    call!("tuxcall", 0, 0, 0),
    call!("security", 0, 0, 0),
    call!("gettid"),
    call!("readahead", BAD, 0, 0),
    call!("setxattr", NUL, NUL, NUL, 0, 0),
    call!("lsetxattr", NUL, NUL, NUL, 0, 0),
    call!("fsetxattr", BAD, NUL, NUL, 0, 0),
    call!("getxattr", NUL, NUL, NUL, 0),
    call!("lgetxattr", NUL, NUL, NUL, 0),
    call!("fgetxattr", BAD, NUL, NUL, 0),
    call!("listxattr", NUL, NUL, 0),
    call!("llistxattr", NUL, NUL, 0),
    call!("flistxattr", BAD, NUL, 0),
    call!("removexattr", NUL, NUL),
    call!("lremovexattr", NUL, NUL),
    call!("fremovexattr", BAD, NUL),
    skip!("tkill", SIGNALS),
    call!("time", NUL),
    // FUTEX_WAKE (non-private) on a null address: EFAULT, and waking nobody is harmless.
    call!("futex", NUL, 1, 0, NUL, NUL, 0),
    call!("sched_setaffinity", BAD, 0, NUL),
    call!("sched_getaffinity", BAD, 0, NUL),
    call!("set_thread_area", NUL),
    call!("io_setup", 0, NUL),
    call!("io_destroy", 0),
    call!("io_getevents", 0, 1, 0, NUL, NUL),
    call!("io_submit", 0, 0, NUL),
    call!("io_cancel", 0, NUL, NUL),
    call!("get_thread_area", NUL),
    call!("lookup_dcookie", 0, NUL, 0),
    call!("epoll_create", 0),
    call!("epoll_ctl_old", BAD, 0, BAD, NUL),
    call!("epoll_wait_old", BAD, NUL, 0, 0),
    call!("remap_file_pages", 0, 0, 0, 0, BAD),
    call!("getdents64", BAD, NUL, 0),
    skip!("set_tid_address", SIGSTATE),
    call!("restart_syscall"),
    call!("semtimedop", BAD, NUL, 0, NUL),
    call!("fadvise64", BAD, 0, 0, 0),
    call!("timer_create", BIG, NUL, NUL),
    call!("timer_settime", BAD, 0, NUL, NUL),
    call!("timer_gettime", BAD, NUL),
    call!("timer_getoverrun", BAD),
    call!("timer_delete", BAD),
    skip!("clock_settime", CLOCK),
    call!("clock_gettime", 1, NUL),
    call!("clock_getres", 1, NUL),
    skip!("clock_nanosleep", BLOCKS),
    skip!("exit_group", ENDS),
    skip!("epoll_wait", BLOCKS),
    call!("epoll_ctl", BAD, 0, BAD, NUL),
    skip!("tgkill", SIGNALS),
    call!("utimes", NUL, NUL),
    call!("vserver", 0, 0, 0),
    call!("mbind", 0, 0, BAD, NUL, 0, 0),
    call!("set_mempolicy", BAD, NUL, 0),
    call!("get_mempolicy", NUL, NUL, 0, 0, BAD),
    call!("mq_open", NUL, 0, 0, NUL),
    call!("mq_unlink", NUL),
    call!("mq_timedsend", BAD, NUL, 0, 0, NUL),
    call!("mq_timedreceive", BAD, NUL, 0, NUL, NUL),
    call!("mq_notify", BAD, NUL),
    call!("mq_getsetattr", BAD, NUL, NUL),
    skip!("kexec_load", MODULES),
    skip!("waitid", BLOCKS),
    call!("add_key", NUL, NUL, NUL, 0, 0),
    call!("request_key", NUL, NUL, NUL, 0),
    call!("keyctl", BIG, 0, 0, 0, 0),
    call!("ioprio_set", BAD, 0, 0),
    call!("ioprio_get", BAD, 0),
    close!("inotify_init"),
    call!("inotify_add_watch", BAD, NUL, 0),
    call!("inotify_rm_watch", BAD, 0),
    call!("migrate_pages", BAD, 0, NUL, NUL),
    call!("openat", BAD, NUL, 0, 0),
    call!("mkdirat", BAD, NUL, 0),
    call!("mknodat", BAD, NUL, 0, 0),
    call!("fchownat", BAD, NUL, 0, 0, BAD),
    call!("futimesat", BAD, NUL, NUL),
    call!("newfstatat", BAD, NUL, NUL, 0),
    call!("unlinkat", BAD, NUL, BAD),
    call!("renameat", BAD, NUL, BAD, NUL),
    call!("linkat", BAD, NUL, BAD, NUL, BAD),
    call!("symlinkat", NUL, BAD, NUL),
    call!("readlinkat", BAD, NUL, NUL, 0),
    call!("fchmodat", BAD, NUL, 0),
    call!("faccessat", BAD, NUL, 0),
    skip!("pselect6", BLOCKS),
    skip!("ppoll", BLOCKS),
    skip!("unshare", NS),
    call!("set_robust_list", NUL, 0),
    call!("get_robust_list", BAD, NUL, NUL),
    call!("splice", BAD, NUL, BAD, NUL, 0, 0),
    call!("tee", BAD, BAD, 0, 0),
    call!("sync_file_range", BAD, 0, 0, 0),
    call!("vmsplice", BAD, NUL, 0, 0),
    call!("move_pages", BAD, 0, NUL, NUL, NUL, 0),
    call!("utimensat", BAD, NUL, NUL, BAD),
    skip!("epoll_pwait", BLOCKS),
    call!("signalfd", BAD, NUL, 1),
    call!("timerfd_create", BIG, 0),
    close!("eventfd", 0),
    call!("fallocate", BAD, 0, 0, 0),
    call!("timerfd_settime", BAD, 0, NUL, NUL),
    call!("timerfd_gettime", BAD, NUL),
    call!("accept4", BAD, NUL, NUL, BAD),
    call!("signalfd4", BAD, NUL, 1, 0),
    call!("eventfd2", 0, BAD),
    call!("epoll_create1", BAD),
    call!("dup3", BAD, BAD, 0),
    call!("pipe2", NUL, BAD),
    call!("inotify_init1", BAD),
    call!("preadv", BAD, NUL, 0, 0, 0),
    call!("pwritev", BAD, NUL, 0, 0, 0),
    skip!("rt_tgsigqueueinfo", SIGNALS),
    call!("perf_event_open", NUL, 0, BAD, BAD, 0),
    call!("recvmmsg", BAD, NUL, 0, 0, NUL),
    call!("fanotify_init", BAD, 0),
    call!("fanotify_mark", BAD, 0, 0, BAD, NUL),
    call!("prlimit64", 0, BAD, NUL, NUL),
    call!("name_to_handle_at", BAD, NUL, NUL, NUL, BAD),
    call!("open_by_handle_at", BAD, NUL, 0),
    skip!("clock_adjtime", CLOCK),
    call!("syncfs", BAD),
    call!("sendmmsg", BAD, NUL, 0, 0),
    skip!("setns", NS),
    call!("getcpu", NUL, NUL, NUL),
    call!("process_vm_readv", BAD, NUL, 0, NUL, 0, BAD),
    call!("process_vm_writev", BAD, NUL, 0, NUL, 0, BAD),
    call!("kcmp", BAD, BAD, BAD, 0, 0),
    skip!("finit_module", MODULES),
    call!("sched_setattr", BAD, NUL, BAD),
    call!("sched_getattr", BAD, NUL, 0, 0),
    call!("renameat2", BAD, NUL, BAD, NUL, BAD),
    skip!("seccomp", SIGSTATE),
    call!("getrandom", NUL, 0, BAD),
    call!("memfd_create", NUL, BAD),
    skip!("kexec_file_load", MODULES),
    call!("bpf", BIG, NUL, 0),
    skip!("execveat", ENDS),
    skip!("userfaultfd", "creates a fault handler that can block"),
    call!("membarrier", 0x4000_0000, 0, 0),
    call!("mlock2", 0, 0, BAD),
    call!("copy_file_range", BAD, NUL, BAD, NUL, 0, BAD),
    call!("preadv2", BAD, NUL, 0, 0, 0, 0),
    call!("pwritev2", BAD, NUL, 0, 0, 0, 0),
    // An unaligned start is refused before anything else is looked at.
    call!("pkey_mprotect", 1, 0, 0, BAD),
    call!("pkey_alloc", BAD, 0),
    call!("pkey_free", BAD),
    call!("statx", BAD, NUL, BAD, 0, NUL),
    call!("io_pgetevents", 0, 1, 0, NUL, NUL, NUL),
    call!("rseq", NUL, 0, BAD, 0),
    skip!("pidfd_send_signal", SIGNALS),
    skip!(
        "io_uring_setup",
        "io_uring: large, often-exploited surface; not touched"
    ),
    skip!("io_uring_enter", BLOCKS),
    skip!("io_uring_register", "io_uring: not touched"),
    call!("open_tree", BAD, NUL, BAD),
    call!("move_mount", BAD, NUL, BAD, NUL, BAD),
    call!("fsopen", NUL, BAD),
    call!("fsconfig", BAD, BAD, NUL, NUL, 0),
    call!("fsmount", BAD, BAD, BAD),
    call!("fspick", BAD, NUL, BAD),
    call!("pidfd_open", BAD, BAD),
    skip!("clone3", SPAWNS),
    // first > last: refused before any descriptor is looked at.
    call!("close_range", 1, 0, 0),
    call!("openat2", BAD, NUL, NUL, 0),
    call!("pidfd_getfd", BAD, BAD, BAD),
    call!("faccessat2", BAD, NUL, 0, BAD),
    call!("process_madvise", BAD, NUL, 0, 0, BAD),
    skip!("epoll_pwait2", BLOCKS),
    call!("mount_setattr", BAD, NUL, BAD, NUL, 0),
    call!("quotactl_fd", BAD, 0, 0, NUL),
    call!("landlock_create_ruleset", NUL, 0, BAD),
    call!("landlock_add_rule", BAD, 0, NUL, BAD),
    call!("landlock_restrict_self", BAD, BAD),
    skip!(
        "memfd_secret",
        "removes memory from the kernel's direct map"
    ),
    call!("process_mrelease", BAD, BAD),
    skip!("futex_waitv", BLOCKS),
    call!("set_mempolicy_home_node", 0, 0, BAD, BAD),
    call!("cachestat", BAD, NUL, NUL, BAD),
    call!("fchmodat2", BAD, NUL, 0, BAD),
    call!("map_shadow_stack", 0, 0, BAD),
    call!("futex_wake", NUL, 0, 0, BAD),
    skip!("futex_wait", BLOCKS),
    call!("futex_requeue", NUL, BAD, 0, 0),
    call!("statmount", NUL, NUL, 0, BAD),
    call!("listmount", NUL, NUL, 0, BAD),
    call!("lsm_get_self_attr", 0, NUL, NUL, BAD),
    call!("lsm_set_self_attr", 0, NUL, 0, BAD),
    call!("lsm_list_modules", NUL, NUL, BAD),
    call!("mseal", 1, 0, BAD),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_exactly_the_two_ranges_in_order() {
        let want: Vec<u32> = (0..=334).chain(424..=462).collect();
        let got: Vec<u32> = TABLE.iter().map(|s| s.nr()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = TABLE.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }

    #[test]
    fn dangerous_calls_are_never_probed() {
        for name in [
            "exit",
            "exit_group",
            "fork",
            "vfork",
            "clone",
            "clone3",
            "execve",
            "execveat",
            "kill",
            "tkill",
            "tgkill",
            "reboot",
            "kexec_load",
            "kexec_file_load",
            "pause",
            "rt_sigsuspend",
            "wait4",
            "waitid",
            "nanosleep",
            "clock_nanosleep",
            "select",
            "pselect6",
            "poll",
            "ppoll",
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
            "munmap",
            "mremap",
            "brk",
            "mprotect",
            "rt_sigreturn",
            "rt_sigaction",
            "sigaltstack",
            "set_tid_address",
            "arch_prctl",
            "prctl",
            "seccomp",
            "setuid",
            "setresuid",
            "setgroups",
            "unshare",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "chroot",
            "swapon",
            "swapoff",
            "init_module",
            "finit_module",
            "delete_module",
            "ptrace",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "memfd_secret",
            "userfaultfd",
            "vhangup",
            "acct",
            "settimeofday",
            "clock_settime",
            "adjtimex",
            "sethostname",
            "setdomainname",
            "iopl",
            "ioperm",
            "personality",
            "futex_wait",
            "futex_waitv",
            "sync",
        ] {
            let row = TABLE.iter().find(|s| s.name == name).expect(name);
            assert!(
                matches!(row.probe, Probe::Skip(_)),
                "{name} must not be probed"
            );
        }
    }

    #[test]
    fn fd_arguments_never_name_a_real_descriptor() {
        // read/write/close and friends must get -1, never 0/1/2 (our stdio).
        for name in [
            "read", "write", "close", "dup", "fsync", "ioctl", "shutdown",
        ] {
            let row = TABLE.iter().find(|s| s.name == name).unwrap();
            match row.probe {
                Probe::Call(a) => assert_eq!(a[0], BAD, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}
