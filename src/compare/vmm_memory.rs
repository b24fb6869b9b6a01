//! What a microVM's host processes hold beyond the guest's own memory: sampled while the VM
//! runs, as the resident bytes of every process of that VM (the VM host, and qemu where it
//! runs the VM) minus the resident part of each one's guest RAM mapping. Peak RSS alone
//! mixes the VMM with the guest pages it touched; this is the VMM's own cost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use isobox_common::proc;

/// Often enough to see a VM that lives about a second; rarely enough not to slow it.
const EVERY: Duration = Duration::from_millis(100);

pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Option<u64>>,
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
            while !flag.load(Ordering::Relaxed) {
                // vm.json appears once `create` has sized the VM, and does not change.
                if guest_ram.is_none() {
                    guest_ram = guest_ram_bytes(&state_dir);
                }
                if let Some(v) = guest_ram.and_then(|g| sample(&state_dir, g)) {
                    peak = Some(peak.map_or(v, |p: u64| p.max(v)));
                }
                std::thread::sleep(EVERY);
            }
            peak
        });
        Sampler { stop, thread }
    }

    /// The largest overhead seen, or None if no process with guest RAM was ever seen.
    pub fn finish(self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().ok().flatten()
    }
}

fn sample(state_dir: &str, guest_ram: u64) -> Option<u64> {
    let mut overhead = 0u64;
    let mut seen_guest = false;
    for pid in vm_processes(state_dir) {
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

fn vm_processes(state_dir: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // The directory itself or a path in it: another VM's id may extend this one's.
            let inside = format!("{state_dir}/");
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0)
                    .map(String::from_utf8_lossy)
                    .any(|a| a == state_dir || a.contains(&inside))
            })
        })
        .collect()
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
    fn a_vm_process_is_found_by_its_state_dir() {
        let dir = format!("/tmp/isobox-vmm-memory-test-{}", std::process::id());
        // The directory is only an argument ($0 of the shell), as it is for a VM host.
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg("sleep 5")
            .arg(&dir)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let found = vm_processes(&dir);
        assert!(
            vm_processes(&dir[..dir.len() - 1]).is_empty(),
            "a prefix matched"
        );
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, vec![child.id() as i32]);
    }
}
