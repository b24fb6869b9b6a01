//! The x86-64 syscall table (numbers 0..=334 and 424..=462) with, for each syscall, either
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
    pub nr: u32,
    pub name: &'static str,
    pub probe: Probe,
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
    ($nr:expr, $name:expr $(, $arg:expr)*) => {
        Sys { nr: $nr, name: $name, probe: Probe::Call(pad(&[$($arg),*])) }
    };
}
macro_rules! close {
    ($nr:expr, $name:expr $(, $arg:expr)*) => {
        Sys { nr: $nr, name: $name, probe: Probe::CallClose(pad(&[$($arg),*])) }
    };
}
macro_rules! skip {
    ($nr:expr, $name:expr, $why:expr) => {
        Sys {
            nr: $nr,
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
    call!(0, "read", BAD, NUL, 0),
    call!(1, "write", BAD, NUL, 0),
    call!(2, "open", NUL, 0, 0),
    call!(3, "close", BAD),
    call!(4, "stat", NUL, NUL),
    call!(5, "fstat", BAD, NUL),
    call!(6, "lstat", NUL, NUL),
    skip!(7, "poll", BLOCKS),
    call!(8, "lseek", BAD, 0, 0),
    call!(9, "mmap", 0, 0, 0, 0, BAD, 0),
    skip!(10, "mprotect", OWN_MEM),
    skip!(11, "munmap", OWN_MEM),
    skip!(12, "brk", OWN_MEM),
    skip!(13, "rt_sigaction", SIGSTATE),
    call!(14, "rt_sigprocmask", BAD, NUL, NUL, 1),
    skip!(15, "rt_sigreturn", SIGSTATE),
    call!(16, "ioctl", BAD, 0, 0),
    call!(17, "pread64", BAD, NUL, 0, 0),
    call!(18, "pwrite64", BAD, NUL, 0, 0),
    call!(19, "readv", BAD, NUL, 0),
    call!(20, "writev", BAD, NUL, 0),
    call!(21, "access", NUL, 0),
    call!(22, "pipe", NUL),
    skip!(23, "select", BLOCKS),
    call!(24, "sched_yield"),
    skip!(25, "mremap", OWN_MEM),
    call!(26, "msync", 0, 0, BAD),
    call!(27, "mincore", 1, 0, NUL),
    call!(28, "madvise", 0, 0, 0xffff),
    call!(29, "shmget", NOKEY, 0, 0),
    call!(30, "shmat", BAD, NUL, 0),
    call!(31, "shmctl", BAD, BAD, NUL),
    call!(32, "dup", BAD),
    call!(33, "dup2", BAD, BAD),
    skip!(34, "pause", BLOCKS),
    skip!(35, "nanosleep", BLOCKS),
    call!(36, "getitimer", BAD, NUL),
    call!(37, "alarm", 0),
    call!(38, "setitimer", BAD, NUL, NUL),
    call!(39, "getpid"),
    call!(40, "sendfile", BAD, BAD, NUL, 0),
    call!(41, "socket", BAD, 0, 0),
    call!(42, "connect", BAD, NUL, 0),
    call!(43, "accept", BAD, NUL, NUL),
    call!(44, "sendto", BAD, NUL, 0, 0, NUL, 0),
    call!(45, "recvfrom", BAD, NUL, 0, 0, NUL, NUL),
    call!(46, "sendmsg", BAD, NUL, 0),
    call!(47, "recvmsg", BAD, NUL, 0),
    call!(48, "shutdown", BAD, BAD),
    call!(49, "bind", BAD, NUL, 0),
    call!(50, "listen", BAD, 0),
    call!(51, "getsockname", BAD, NUL, NUL),
    call!(52, "getpeername", BAD, NUL, NUL),
    call!(53, "socketpair", BAD, 0, 0, NUL),
    call!(54, "setsockopt", BAD, 0, 0, NUL, 0),
    call!(55, "getsockopt", BAD, 0, 0, NUL, NUL),
    skip!(56, "clone", SPAWNS),
    skip!(57, "fork", SPAWNS),
    skip!(58, "vfork", SPAWNS),
    skip!(59, "execve", ENDS),
    skip!(60, "exit", ENDS),
    skip!(61, "wait4", BLOCKS),
    skip!(62, "kill", SIGNALS),
    call!(63, "uname", NUL),
    call!(64, "semget", NOKEY, 0, 0),
    call!(65, "semop", BAD, NUL, 0),
    call!(66, "semctl", BAD, 0, BAD, 0),
    call!(67, "shmdt", NUL),
    call!(68, "msgget", NOKEY, 0),
    call!(69, "msgsnd", BAD, NUL, 0, 0),
    call!(70, "msgrcv", BAD, NUL, 0, 0, 0),
    call!(71, "msgctl", BAD, BAD, NUL),
    call!(72, "fcntl", BAD, 0, 0),
    call!(73, "flock", BAD, 0),
    call!(74, "fsync", BAD),
    call!(75, "fdatasync", BAD),
    call!(76, "truncate", NUL, 0),
    call!(77, "ftruncate", BAD, 0),
    call!(78, "getdents", BAD, NUL, 0),
    call!(79, "getcwd", NUL, 0),
    call!(80, "chdir", NUL),
    call!(81, "fchdir", BAD),
    call!(82, "rename", NUL, NUL),
    call!(83, "mkdir", NUL, 0),
    call!(84, "rmdir", NUL),
    call!(85, "creat", NUL, 0),
    call!(86, "link", NUL, NUL),
    call!(87, "unlink", NUL),
    call!(88, "symlink", NUL, NUL),
    call!(89, "readlink", NUL, NUL, 0),
    call!(90, "chmod", NUL, 0),
    call!(91, "fchmod", BAD, 0),
    call!(92, "chown", NUL, 0, 0),
    call!(93, "fchown", BAD, 0, 0),
    call!(94, "lchown", NUL, 0, 0),
    call!(95, "umask", 0o022),
    call!(96, "gettimeofday", NUL, NUL),
    call!(97, "getrlimit", BAD, NUL),
    call!(98, "getrusage", 0x7fff, NUL),
    call!(99, "sysinfo", NUL),
    call!(100, "times", NUL),
    skip!(101, "ptrace", "attaches to or changes another process"),
    call!(102, "getuid"),
    call!(103, "syslog", 9999, NUL, 0),
    call!(104, "getgid"),
    skip!(105, "setuid", CREDS),
    skip!(106, "setgid", CREDS),
    call!(107, "geteuid"),
    call!(108, "getegid"),
    call!(109, "setpgid", 0, BAD),
    call!(110, "getppid"),
    call!(111, "getpgrp"),
    skip!(112, "setsid", "changes the probe's session"),
    skip!(113, "setreuid", CREDS),
    skip!(114, "setregid", CREDS),
    call!(115, "getgroups", 0, NUL),
    skip!(116, "setgroups", CREDS),
    skip!(117, "setresuid", CREDS),
    call!(118, "getresuid", NUL, NUL, NUL),
    skip!(119, "setresgid", CREDS),
    call!(120, "getresgid", NUL, NUL, NUL),
    call!(121, "getpgid", BAD),
    skip!(122, "setfsuid", CREDS),
    skip!(123, "setfsgid", CREDS),
    call!(124, "getsid", BAD),
    call!(125, "capget", NUL, NUL),
    call!(126, "capset", NUL, NUL),
    call!(127, "rt_sigpending", NUL, 1),
    skip!(128, "rt_sigtimedwait", BLOCKS),
    skip!(129, "rt_sigqueueinfo", SIGNALS),
    skip!(130, "rt_sigsuspend", BLOCKS),
    skip!(131, "sigaltstack", SIGSTATE),
    call!(132, "utime", NUL, NUL),
    call!(133, "mknod", NUL, 0, 0),
    call!(134, "uselib", NUL),
    skip!(135, "personality", "changes the process's execution domain"),
    call!(136, "ustat", 0, NUL),
    call!(137, "statfs", NUL, NUL),
    call!(138, "fstatfs", BAD, NUL),
    call!(139, "sysfs", BAD),
    call!(140, "getpriority", BAD, 0),
    call!(141, "setpriority", BAD, 0, 0),
    call!(142, "sched_setparam", BAD, NUL),
    call!(143, "sched_getparam", BAD, NUL),
    call!(144, "sched_setscheduler", BAD, 0, NUL),
    call!(145, "sched_getscheduler", BAD),
    call!(146, "sched_get_priority_max", BAD),
    call!(147, "sched_get_priority_min", BAD),
    call!(148, "sched_rr_get_interval", BAD, NUL),
    call!(149, "mlock", 0, 0),
    call!(150, "munlock", 0, 0),
    call!(151, "mlockall", 0),
    call!(152, "munlockall"),
    skip!(153, "vhangup", HOST),
    call!(154, "modify_ldt", 0, NUL, 0),
    skip!(155, "pivot_root", NS),
    call!(156, "_sysctl", NUL),
    skip!(157, "prctl", SIGSTATE),
    skip!(158, "arch_prctl", SIGSTATE),
    skip!(159, "adjtimex", CLOCK),
    call!(160, "setrlimit", BAD, NUL),
    skip!(161, "chroot", NS),
    skip!(
        162,
        "sync",
        "flushes every filesystem; has no harmless form"
    ),
    skip!(163, "acct", HOST),
    skip!(164, "settimeofday", CLOCK),
    skip!(165, "mount", NS),
    skip!(166, "umount2", NS),
    skip!(167, "swapon", HOST),
    skip!(168, "swapoff", HOST),
    skip!(169, "reboot", HOST),
    skip!(170, "sethostname", HOST),
    skip!(171, "setdomainname", HOST),
    skip!(172, "iopl", HOST),
    skip!(173, "ioperm", HOST),
    skip!(174, "create_module", MODULES),
    skip!(175, "init_module", MODULES),
    skip!(176, "delete_module", MODULES),
    call!(177, "get_kernel_syms", NUL),
    call!(178, "query_module", NUL, 0, NUL, 0, NUL),
    call!(179, "quotactl", 0xff, NUL, 0, NUL),
    call!(180, "nfsservctl", 0, NUL, NUL),
    call!(181, "getpmsg", BAD, NUL, NUL, NUL, NUL),
    call!(182, "putpmsg", BAD, NUL, NUL, 0, 0),
    call!(183, "afs_syscall", 0, 0, 0, 0, 0),
    call!(184, "tuxcall", 0, 0, 0),
    call!(185, "security", 0, 0, 0),
    call!(186, "gettid"),
    call!(187, "readahead", BAD, 0, 0),
    call!(188, "setxattr", NUL, NUL, NUL, 0, 0),
    call!(189, "lsetxattr", NUL, NUL, NUL, 0, 0),
    call!(190, "fsetxattr", BAD, NUL, NUL, 0, 0),
    call!(191, "getxattr", NUL, NUL, NUL, 0),
    call!(192, "lgetxattr", NUL, NUL, NUL, 0),
    call!(193, "fgetxattr", BAD, NUL, NUL, 0),
    call!(194, "listxattr", NUL, NUL, 0),
    call!(195, "llistxattr", NUL, NUL, 0),
    call!(196, "flistxattr", BAD, NUL, 0),
    call!(197, "removexattr", NUL, NUL),
    call!(198, "lremovexattr", NUL, NUL),
    call!(199, "fremovexattr", BAD, NUL),
    skip!(200, "tkill", SIGNALS),
    call!(201, "time", NUL),
    // FUTEX_WAKE (non-private) on a null address: EFAULT, and waking nobody is harmless.
    call!(202, "futex", NUL, 1, 0, NUL, NUL, 0),
    call!(203, "sched_setaffinity", BAD, 0, NUL),
    call!(204, "sched_getaffinity", BAD, 0, NUL),
    call!(205, "set_thread_area", NUL),
    call!(206, "io_setup", 0, NUL),
    call!(207, "io_destroy", 0),
    call!(208, "io_getevents", 0, 1, 0, NUL, NUL),
    call!(209, "io_submit", 0, 0, NUL),
    call!(210, "io_cancel", 0, NUL, NUL),
    call!(211, "get_thread_area", NUL),
    call!(212, "lookup_dcookie", 0, NUL, 0),
    call!(213, "epoll_create", 0),
    call!(214, "epoll_ctl_old", BAD, 0, BAD, NUL),
    call!(215, "epoll_wait_old", BAD, NUL, 0, 0),
    call!(216, "remap_file_pages", 0, 0, 0, 0, BAD),
    call!(217, "getdents64", BAD, NUL, 0),
    skip!(218, "set_tid_address", SIGSTATE),
    call!(219, "restart_syscall"),
    call!(220, "semtimedop", BAD, NUL, 0, NUL),
    call!(221, "fadvise64", BAD, 0, 0, 0),
    call!(222, "timer_create", BIG, NUL, NUL),
    call!(223, "timer_settime", BAD, 0, NUL, NUL),
    call!(224, "timer_gettime", BAD, NUL),
    call!(225, "timer_getoverrun", BAD),
    call!(226, "timer_delete", BAD),
    skip!(227, "clock_settime", CLOCK),
    call!(228, "clock_gettime", 1, NUL),
    call!(229, "clock_getres", 1, NUL),
    skip!(230, "clock_nanosleep", BLOCKS),
    skip!(231, "exit_group", ENDS),
    skip!(232, "epoll_wait", BLOCKS),
    call!(233, "epoll_ctl", BAD, 0, BAD, NUL),
    skip!(234, "tgkill", SIGNALS),
    call!(235, "utimes", NUL, NUL),
    call!(236, "vserver", 0, 0, 0),
    call!(237, "mbind", 0, 0, BAD, NUL, 0, 0),
    call!(238, "set_mempolicy", BAD, NUL, 0),
    call!(239, "get_mempolicy", NUL, NUL, 0, 0, BAD),
    call!(240, "mq_open", NUL, 0, 0, NUL),
    call!(241, "mq_unlink", NUL),
    call!(242, "mq_timedsend", BAD, NUL, 0, 0, NUL),
    call!(243, "mq_timedreceive", BAD, NUL, 0, NUL, NUL),
    call!(244, "mq_notify", BAD, NUL),
    call!(245, "mq_getsetattr", BAD, NUL, NUL),
    skip!(246, "kexec_load", MODULES),
    skip!(247, "waitid", BLOCKS),
    call!(248, "add_key", NUL, NUL, NUL, 0, 0),
    call!(249, "request_key", NUL, NUL, NUL, 0),
    call!(250, "keyctl", BIG, 0, 0, 0, 0),
    call!(251, "ioprio_set", BAD, 0, 0),
    call!(252, "ioprio_get", BAD, 0),
    close!(253, "inotify_init"),
    call!(254, "inotify_add_watch", BAD, NUL, 0),
    call!(255, "inotify_rm_watch", BAD, 0),
    call!(256, "migrate_pages", BAD, 0, NUL, NUL),
    call!(257, "openat", BAD, NUL, 0, 0),
    call!(258, "mkdirat", BAD, NUL, 0),
    call!(259, "mknodat", BAD, NUL, 0, 0),
    call!(260, "fchownat", BAD, NUL, 0, 0, BAD),
    call!(261, "futimesat", BAD, NUL, NUL),
    call!(262, "newfstatat", BAD, NUL, NUL, 0),
    call!(263, "unlinkat", BAD, NUL, BAD),
    call!(264, "renameat", BAD, NUL, BAD, NUL),
    call!(265, "linkat", BAD, NUL, BAD, NUL, BAD),
    call!(266, "symlinkat", NUL, BAD, NUL),
    call!(267, "readlinkat", BAD, NUL, NUL, 0),
    call!(268, "fchmodat", BAD, NUL, 0),
    call!(269, "faccessat", BAD, NUL, 0),
    skip!(270, "pselect6", BLOCKS),
    skip!(271, "ppoll", BLOCKS),
    skip!(272, "unshare", NS),
    call!(273, "set_robust_list", NUL, 0),
    call!(274, "get_robust_list", BAD, NUL, NUL),
    call!(275, "splice", BAD, NUL, BAD, NUL, 0, 0),
    call!(276, "tee", BAD, BAD, 0, 0),
    call!(277, "sync_file_range", BAD, 0, 0, 0),
    call!(278, "vmsplice", BAD, NUL, 0, 0),
    call!(279, "move_pages", BAD, 0, NUL, NUL, NUL, 0),
    call!(280, "utimensat", BAD, NUL, NUL, BAD),
    skip!(281, "epoll_pwait", BLOCKS),
    call!(282, "signalfd", BAD, NUL, 1),
    call!(283, "timerfd_create", BIG, 0),
    close!(284, "eventfd", 0),
    call!(285, "fallocate", BAD, 0, 0, 0),
    call!(286, "timerfd_settime", BAD, 0, NUL, NUL),
    call!(287, "timerfd_gettime", BAD, NUL),
    call!(288, "accept4", BAD, NUL, NUL, BAD),
    call!(289, "signalfd4", BAD, NUL, 1, 0),
    call!(290, "eventfd2", 0, BAD),
    call!(291, "epoll_create1", BAD),
    call!(292, "dup3", BAD, BAD, 0),
    call!(293, "pipe2", NUL, BAD),
    call!(294, "inotify_init1", BAD),
    call!(295, "preadv", BAD, NUL, 0, 0, 0),
    call!(296, "pwritev", BAD, NUL, 0, 0, 0),
    skip!(297, "rt_tgsigqueueinfo", SIGNALS),
    call!(298, "perf_event_open", NUL, 0, BAD, BAD, 0),
    call!(299, "recvmmsg", BAD, NUL, 0, 0, NUL),
    call!(300, "fanotify_init", BAD, 0),
    call!(301, "fanotify_mark", BAD, 0, 0, BAD, NUL),
    call!(302, "prlimit64", 0, BAD, NUL, NUL),
    call!(303, "name_to_handle_at", BAD, NUL, NUL, NUL, BAD),
    call!(304, "open_by_handle_at", BAD, NUL, 0),
    skip!(305, "clock_adjtime", CLOCK),
    call!(306, "syncfs", BAD),
    call!(307, "sendmmsg", BAD, NUL, 0, 0),
    skip!(308, "setns", NS),
    call!(309, "getcpu", NUL, NUL, NUL),
    call!(310, "process_vm_readv", BAD, NUL, 0, NUL, 0, BAD),
    call!(311, "process_vm_writev", BAD, NUL, 0, NUL, 0, BAD),
    call!(312, "kcmp", BAD, BAD, BAD, 0, 0),
    skip!(313, "finit_module", MODULES),
    call!(314, "sched_setattr", BAD, NUL, BAD),
    call!(315, "sched_getattr", BAD, NUL, 0, 0),
    call!(316, "renameat2", BAD, NUL, BAD, NUL, BAD),
    skip!(317, "seccomp", SIGSTATE),
    call!(318, "getrandom", NUL, 0, BAD),
    call!(319, "memfd_create", NUL, BAD),
    skip!(320, "kexec_file_load", MODULES),
    call!(321, "bpf", BIG, NUL, 0),
    skip!(322, "execveat", ENDS),
    skip!(323, "userfaultfd", "creates a fault handler that can block"),
    call!(324, "membarrier", 0x4000_0000, 0, 0),
    call!(325, "mlock2", 0, 0, BAD),
    call!(326, "copy_file_range", BAD, NUL, BAD, NUL, 0, BAD),
    call!(327, "preadv2", BAD, NUL, 0, 0, 0, 0),
    call!(328, "pwritev2", BAD, NUL, 0, 0, 0, 0),
    // An unaligned start is refused before anything else is looked at.
    call!(329, "pkey_mprotect", 1, 0, 0, BAD),
    call!(330, "pkey_alloc", BAD, 0),
    call!(331, "pkey_free", BAD),
    call!(332, "statx", BAD, NUL, BAD, 0, NUL),
    call!(333, "io_pgetevents", 0, 1, 0, NUL, NUL, NUL),
    call!(334, "rseq", NUL, 0, BAD, 0),
    skip!(424, "pidfd_send_signal", SIGNALS),
    skip!(
        425,
        "io_uring_setup",
        "io_uring: large, often-exploited surface; not touched"
    ),
    skip!(426, "io_uring_enter", BLOCKS),
    skip!(427, "io_uring_register", "io_uring: not touched"),
    call!(428, "open_tree", BAD, NUL, BAD),
    call!(429, "move_mount", BAD, NUL, BAD, NUL, BAD),
    call!(430, "fsopen", NUL, BAD),
    call!(431, "fsconfig", BAD, BAD, NUL, NUL, 0),
    call!(432, "fsmount", BAD, BAD, BAD),
    call!(433, "fspick", BAD, NUL, BAD),
    call!(434, "pidfd_open", BAD, BAD),
    skip!(435, "clone3", SPAWNS),
    // first > last: refused before any descriptor is looked at.
    call!(436, "close_range", 1, 0, 0),
    call!(437, "openat2", BAD, NUL, NUL, 0),
    call!(438, "pidfd_getfd", BAD, BAD, BAD),
    call!(439, "faccessat2", BAD, NUL, 0, BAD),
    call!(440, "process_madvise", BAD, NUL, 0, 0, BAD),
    skip!(441, "epoll_pwait2", BLOCKS),
    call!(442, "mount_setattr", BAD, NUL, BAD, NUL, 0),
    call!(443, "quotactl_fd", BAD, 0, 0, NUL),
    call!(444, "landlock_create_ruleset", NUL, 0, BAD),
    call!(445, "landlock_add_rule", BAD, 0, NUL, BAD),
    call!(446, "landlock_restrict_self", BAD, BAD),
    skip!(
        447,
        "memfd_secret",
        "removes memory from the kernel's direct map"
    ),
    call!(448, "process_mrelease", BAD, BAD),
    skip!(449, "futex_waitv", BLOCKS),
    call!(450, "set_mempolicy_home_node", 0, 0, BAD, BAD),
    call!(451, "cachestat", BAD, NUL, NUL, BAD),
    call!(452, "fchmodat2", BAD, NUL, 0, BAD),
    call!(453, "map_shadow_stack", 0, 0, BAD),
    call!(454, "futex_wake", NUL, 0, 0, BAD),
    skip!(455, "futex_wait", BLOCKS),
    call!(456, "futex_requeue", NUL, BAD, 0, 0),
    call!(457, "statmount", NUL, NUL, 0, BAD),
    call!(458, "listmount", NUL, NUL, 0, BAD),
    call!(459, "lsm_get_self_attr", 0, NUL, NUL, BAD),
    call!(460, "lsm_set_self_attr", 0, NUL, 0, BAD),
    call!(461, "lsm_list_modules", NUL, NUL, BAD),
    call!(462, "mseal", 1, 0, BAD),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_exactly_the_two_ranges_in_order() {
        let want: Vec<u32> = (0..=334).chain(424..=462).collect();
        let got: Vec<u32> = TABLE.iter().map(|s| s.nr).collect();
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
