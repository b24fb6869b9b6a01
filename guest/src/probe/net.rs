//! Network interfaces the workload can see.

use serde::Serialize;

/// The `network` object of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    /// Interface names, sorted.
    pub interfaces: Vec<String>,
    /// Interfaces other than `lo`.
    pub non_loopback: usize,
    /// "procfs" (/proc/net/dev), "sysfs" (/sys/class/net, when /proc is missing) or "none".
    pub source: &'static str,
}

/// Interface names from a `/proc/net/dev` text (two header lines, then `name: counters`).
pub fn parse_proc_net_dev(text: &str) -> Vec<String> {
    text.lines()
        .skip(2)
        .filter_map(|l| l.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

fn from_sysfs() -> std::io::Result<Vec<String>> {
    std::fs::read_dir("/sys/class/net")?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect()
}

/// Prefers /proc/net/dev: it follows the reader's network namespace, while /sys/class/net
/// follows the namespace sysfs was mounted in (a sandbox that shares the host's /sys but has
/// its own network namespace would list the host's interfaces there).
pub fn probe() -> (Network, Vec<String>) {
    let mut errors = Vec::new();
    let (mut interfaces, source) = match std::fs::read_to_string("/proc/net/dev") {
        Ok(t) => (parse_proc_net_dev(&t), "procfs"),
        Err(e) => {
            errors.push(format!("network: reading /proc/net/dev: {e}"));
            match from_sysfs() {
                Ok(v) => (v, "sysfs"),
                Err(e) => {
                    errors.push(format!("network: listing /sys/class/net: {e}"));
                    (Vec::new(), "none")
                }
            }
        }
    };
    interfaces.sort();
    let non_loopback = interfaces.iter().filter(|n| *n != "lo").count();
    let net = Network {
        interfaces,
        non_loopback,
        source,
    };
    (net, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive                            |  Transmit\n \
            face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
            lo:  123 4 0 0 0 0 0 0 123 4 0 0 0 0 0 0\n  eth0: 9 9 0 0 0 0 0 0 9 9 0 0 0 0 0 0\n";
        assert_eq!(parse_proc_net_dev(text), ["lo", "eth0"]);
        assert!(parse_proc_net_dev("only\nheaders\n").is_empty());
    }
}
