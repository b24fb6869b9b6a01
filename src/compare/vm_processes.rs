//! A microVM's host processes (the VM host, qemu where it runs the VM, virtiofsd), sampled
//! while the VM runs, for two things:
//! - what they hold beyond the guest's own memory: the resident bytes of every one minus the
//!   resident part of each one's guest RAM mapping. Peak RSS alone mixes the VMM with the
//!   guest pages it touched; this is the VMM's own cost.
//! - how confined each is: what a guest that escapes into it would hold on the host.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use isobox_common::proc;

use super::row::HostProcess;

/// Often enough to see a VM that lives about a second; rarely enough not to slow it.
const EVERY: Duration = Duration::from_millis(100);

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Sampled>,
}

/// What the samples of one VM found.
#[derive(Debug, Default)]
pub struct Sampled {
    /// The largest overhead seen, or None if no process with guest RAM was ever seen.
    pub overhead: Option<u64>,
    /// Each process as it was last seen, one entry per distinct name and confinement.
    pub processes: Vec<HostProcess>,
}

impl Sampler {
    /// Samples the processes whose command line mentions `state_dir` (the VM's own state
    /// directory: the VM host's `--state-dir`, qemu's console and socket paths) until
    /// [`Sampler::finish`].
    pub fn start(state_dir: String) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = None;
            let mut guest_ram = None;
            // By pid, overwritten at each sample: a child caught between fork and exec is
            // still a copy of its parent, and is seen again as what it became. With the
            // number of samples it was in: a helper that lives a moment (ip, tc) is left out.
            let mut last_seen = std::collections::BTreeMap::<i32, (u32, HostProcess)>::new();
            while !flag.load(Ordering::Relaxed) {
                let pids = vm_processes(&state_dir);
                // vm.json appears once `create` has sized the VM, and does not change.
                if guest_ram.is_none() {
                    guest_ram = guest_ram_bytes(&state_dir);
                }
                if let Some(v) = guest_ram.and_then(|g| sample(&pids, g)) {
                    peak = Some(peak.map_or(v, |p: u64| p.max(v)));
                }
                for &pid in &pids {
                    if let Some(c) = proc::confinement(pid) {
                        let seen = last_seen.get(&pid).map_or(0, |(n, _)| *n);
                        last_seen.insert(pid, (seen + 1, HostProcess::from(&c)));
                    }
                }
                std::thread::sleep(EVERY);
            }
            let mut processes: Vec<HostProcess> = Vec::new();
            for (_, p) in last_seen.into_values().filter(|(n, _)| *n > 1) {
                if !processes.contains(&p) {
                    processes.push(p);
                }
            }
            Sampled {
                overhead: peak,
                processes,
            }
        });
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

fn sample(pids: &[i32], guest_ram: u64) -> Option<u64> {
    let mut overhead = 0u64;
    let mut seen_guest = false;
    for &pid in pids {
        let Some(maps) = proc::mappings(pid) else {
            continue;
        };
        let (total, guest) = split(&maps, guest_ram);
        seen_guest |= guest.is_some();
        overhead += total - guest.unwrap_or(0);
    }
    seen_guest.then_some(overhead)
}

/// The VM's RAM as `create` sized it (vm.json in its state directory).
fn guest_ram_bytes(state_dir: &str) -> Option<u64> {
    let text = std::fs::read(format!("{state_dir}/vm.json")).ok()?;
    let cfg: serde_json::Value = serde_json::from_slice(&text).ok()?;
    cfg["mem_mib"].as_u64().map(|m| m << 20)
}

/// A neighbouring anonymous mapping the kernel merged into guest RAM is at most this big (it
/// then counts as guest memory).
const MERGED_SLACK: u64 = 4 << 20;

/// (all resident bytes, resident bytes of the guest RAM mapping if there is one): guest RAM
/// is the smallest mapping of at least the VM's memory size and at most `MERGED_SLACK` more
/// (qemu under TCG has a bigger one, its translation buffer).
fn split(maps: &[(u64, u64)], guest_ram: u64) -> (u64, Option<u64>) {
    let total = maps.iter().map(|(_, rss)| rss).sum();
    let guest = maps
        .iter()
        .filter(|(size, _)| (guest_ram..guest_ram + MERGED_SLACK).contains(size))
        .min_by_key(|(size, _)| *size)
        .map(|(_, rss)| *rss);
    (total, guest)
}

/// The processes whose command line names `state_dir` (the VM host's `--state-dir`), and
/// their descendants (qemu and virtiofsd, which get their files as descriptors).
fn vm_processes(state_dir: &str) -> Vec<i32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    // The directory itself or a path in it: another VM's id may extend this one's.
    let inside = format!("{state_dir}/");
    let names_it = |p: &procfs::process::Process| {
        p.cmdline()
            .is_ok_and(|args| args.iter().any(|a| a == state_dir || a.contains(&inside)))
    };
    let mut parent = std::collections::BTreeMap::new();
    let mut found = Vec::new();
    for p in all.flatten().filter(|p| p.pid != me) {
        if names_it(&p) {
            found.push(p.pid);
        } else if let Ok(stat) = p.stat() {
            parent.insert(p.pid, stat.ppid);
        }
    }
    // Children of what was found, until no more are: a tree a few levels deep.
    let mut grew = true;
    while grew {
        let before = found.len();
        parent.retain(|&pid, ppid| {
            let child = found.contains(ppid);
            if child {
                found.push(pid);
            }
            !child
        });
        grew = found.len() > before;
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mapping_of_the_vms_size_is_the_guest() {
        let maps = [
            (4096, 4096),
            (256 << 20, 40 << 20),
            (1 << 30, 30 << 20),
            (1 << 20, 1 << 20),
        ];
        let total = (40 << 20) + (30 << 20) + (1 << 20) + 4096;
        assert_eq!(split(&maps, 256 << 20), (total, Some(40 << 20)));
        // The built-in VMM's RAM with a small mapping merged in.
        let merged = [(4096, 4096), ((256 << 20) + (132 << 10), 100 << 20)];
        assert_eq!(split(&merged, 256 << 20).1, Some(100 << 20));
        // A process without guest RAM (a relay) is all overhead.
        assert_eq!(split(&[(1 << 20, 1 << 19)], 256 << 20), (1 << 19, None));
    }

    #[test]
    fn a_vm_process_is_found_by_its_state_dir_with_its_children() {
        let dir = format!("/tmp/isobox-vmm-memory-test-{}", std::process::id());
        // The directory is only an argument ($0 of the shell), as it is for a VM host; its
        // child names it nowhere, as qemu does not.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 5 & echo $!; wait")
            .arg(&dir)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let sleep: i32 = line.trim().parse().unwrap();
        let found = vm_processes(&dir);
        assert!(
            vm_processes(&dir[..dir.len() - 1]).is_empty(),
            "a prefix matched"
        );
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleep), nix::sys::signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
        let mut want = vec![child.id() as i32, sleep];
        want.sort_unstable();
        assert_eq!(found, want);
    }
}
