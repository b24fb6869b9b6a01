//! Facts about host processes, read from /proc (through procfs): whether a pid is still the
//! process we started, what it uses, and how confined it is.

use procfs::process::Process;

fn process(pid: i32) -> Option<Process> {
    // procfs would read pid 0 or a negative pid as a path; neither is a process.
    (pid > 0).then(|| Process::new(pid).ok()).flatten()
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or None
/// when there is no such process.
pub fn start_time(pid: i32) -> Option<u64> {
    Some(process(pid)?.stat().ok()?.starttime)
}

/// The one-letter state of `pid` (R, S, Z, …), if it exists.
pub fn state_letter(pid: i32) -> Option<char> {
    Some(process(pid)?.stat().ok()?.state)
}

/// CPU time `pid` has used so far, all its threads together, in nanoseconds: (user,
/// kernel). A KVM or TCG vCPU thread's guest time counts as user time.
pub fn cpu_time_ns(pid: i32) -> Option<(u64, u64)> {
    let stat = process(pid)?.stat().ok()?;
    Some((ticks_to_ns(stat.utime), ticks_to_ns(stat.stime)))
}

/// Clock ticks (USER_HZ, the unit of /proc/PID/stat and cpuacct.stat) in nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000_000) / procfs::ticks_per_second().max(1)
}

/// The resident memory of `pid` in bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let statm = process(pid)?.statm().ok()?;
    Some(statm.resident.saturating_mul(procfs::page_size()))
}

/// Size and resident bytes of each memory mapping of `pid` (from /proc/PID/smaps).
pub fn mappings(pid: i32) -> Option<Vec<(u64, u64)>> {
    let maps = process(pid)?.smaps().ok()?;
    Some(
        maps.into_iter()
            .map(|m| {
                let size = m.address.1.saturating_sub(m.address.0);
                (size, m.extension.map.get("Rss").copied().unwrap_or(0))
            })
            .collect(),
    )
}

/// True when `pid` exists, is not a zombie, and started at `start` — so a recycled pid is not
/// mistaken for the container's.
pub fn is_alive(pid: i32, start: u64) -> bool {
    let Some(stat) = process(pid).and_then(|p| p.stat().ok()) else {
        return false;
    };
    stat.starttime == start && !matches!(stat.state, 'Z' | 'X')
}

/// How far a process is fenced in: what a compromise of it (a guest escaping into its VMM)
/// would hold on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// The process's command name (/proc/PID/comm).
    pub name: String,
    /// 0 none, 1 strict, 2 a filter; None on a kernel without seccomp.
    pub seccomp: Option<u32>,
    pub no_new_privs: bool,
    /// The effective and bounding capability sets, as masks.
    pub effective: u64,
    pub bounding: u64,
    /// The kinds of namespace ("ipc", "mnt", "net", …) it does not share with the caller,
    /// sorted.
    pub own_namespaces: Vec<String>,
}

/// The confinement of `pid`, its namespaces compared with the calling process's.
pub fn confinement(pid: i32) -> Option<Confinement> {
    let p = process(pid)?;
    let status = p.status().ok()?;
    let theirs = p.namespaces().ok()?;
    let ours = Process::myself().ok()?.namespaces().ok()?;
    let mut own_namespaces: Vec<String> = theirs
        .0
        .iter()
        .filter(|(kind, ns)| ours.0.get(*kind) != Some(*ns))
        .map(|(kind, _)| kind.to_string_lossy().into_owned())
        .collect();
    own_namespaces.sort();
    Some(Confinement {
        name: status.name,
        seccomp: status.seccomp,
        no_new_privs: status.nonewprivs == Some(1),
        effective: status.capeff,
        bounding: status.capbnd.unwrap_or(u64::MAX),
        own_namespaces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_mappings_have_sizes_and_resident_bytes() {
        let own = mappings(std::process::id() as i32).expect("own smaps");
        assert!(own.iter().all(|(size, rss)| *size > 0 && rss <= size));
        assert!(own.iter().any(|(_, rss)| *rss > 0));
        assert_eq!(mappings(-1), None);
    }

    #[test]
    fn own_cpu_time_and_rss_are_read() {
        let me = std::process::id() as i32;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0u64.wrapping_add(1));
        }
        let (user, kernel) = cpu_time_ns(me).expect("own stat");
        assert!(user + kernel > 0);
        assert!(rss_bytes(me).expect("own statm") > 4096);
        assert_eq!(cpu_time_ns(-1), None);
    }

    #[test]
    fn own_process_is_alive_and_recycled_pid_is_not() {
        let me = std::process::id() as i32;
        let st = start_time(me).expect("own stat");
        assert!(is_alive(me, st));
        assert!(!is_alive(me, st + 1));
        assert!(!is_alive(0, st));
        assert_eq!(state_letter(0), None);
    }

    #[test]
    fn a_child_with_no_new_privs_and_its_own_uts_namespace_is_seen_so() {
        use std::os::unix::process::CommandExt;
        let root = nix::unistd::geteuid().is_root();
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("5");
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || (root && libc::unshare(libc::CLONE_NEWUTS) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let pid = child.id() as i32;
        // Until exec the child is still a copy of this process under another name.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = confinement(pid);
        while seen.as_ref().is_none_or(|c| c.name != "sleep") {
            assert!(std::time::Instant::now() < deadline, "{seen:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
            seen = confinement(pid);
        }
        let _ = child.kill();
        let _ = child.wait();
        let c = seen.unwrap();
        assert!(c.no_new_privs, "{c:?}");
        if root {
            assert_eq!(c.own_namespaces, ["uts"], "{c:?}");
        } else {
            eprintln!("skipped: the namespace half: needs root");
        }
        let me = confinement(std::process::id() as i32).unwrap();
        assert!(me.own_namespaces.is_empty(), "{me:?}");
    }
}
