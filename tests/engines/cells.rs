//! The operations of the matrix, each as a user would check it: what the engine printed and
//! returned, and on the host what a limit or a volume did.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine::{Engine, Net, Opts, Runtime};
use crate::run::Ran;

/// What one cell came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    /// The engine has no such operation.
    NotApplicable(&'static str),
}

pub struct Cell {
    pub op: &'static str,
    pub check: fn(&dyn Engine, Runtime, &str, &Path) -> Outcome,
}

pub const CELLS: &[Cell] = &[
    Cell {
        op: "run, exit code",
        check: run_exit_code,
    },
    Cell {
        op: "run -d, logs, stop, rm",
        check: detach_logs_stop,
    },
    Cell {
        op: "kill",
        check: kill,
    },
    Cell {
        op: "exec, exit code",
        check: exec,
    },
    Cell {
        op: "exec -t",
        check: exec_tty,
    },
    Cell {
        op: "run -t",
        check: run_tty,
    },
    Cell {
        op: "pause, unpause",
        check: pause,
    },
    Cell {
        op: "update --memory",
        check: update,
    },
    Cell {
        op: "stats",
        check: stats,
    },
    Cell {
        op: "volume",
        check: volume,
    },
    Cell {
        op: "--memory OOM",
        check: oom,
    },
    Cell {
        op: "--pids-limit",
        check: pids_limit,
    },
    Cell {
        op: "--network none",
        check: network_none,
    },
    Cell {
        op: "user network",
        check: user_network,
    },
];

fn expect(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn ran_ok(r: &Ran, what: &str) -> Result<(), String> {
    expect(r.ok(), || format!("{what}: {}", r.describe()))
}

fn outcome(r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The workload of the background cells: says it started, ticks, and ends on SIGTERM.
/// It also leaves a mark in its root, which an exec'd process must see.
const TICKER: &str = "touch /ticker-was-here; echo started; trap 'exit 0' TERM; i=0; \
                      while :; do i=$((i+1)); echo tick $i; sleep 0.1; done";

/// Starts the ticker as `name`, runs `f` once it has started, and removes it however `f`
/// ends.
fn with_ticker(
    e: &dyn Engine,
    rt: Runtime,
    name: &str,
    o: &Opts,
    f: impl FnOnce() -> Result<(), String>,
) -> Result<(), String> {
    let r = e.start(rt, name, o, &["sh", "-c", TICKER]);
    let result = ran_ok(&r, "start").and_then(|()| {
        expect(
            wait_for(Duration::from_secs(120), || {
                e.logs(name).contains("started")
            }),
            || format!("no \"started\" in its logs: {:?}", e.logs(name)),
        )
        .and_then(|()| f())
    });
    e.remove(name);
    result
}

fn ticks(e: &dyn Engine, name: &str) -> usize {
    e.logs(name).matches("tick ").count()
}

fn run_exit_code(e: &dyn Engine, rt: Runtime, _: &str, _: &Path) -> Outcome {
    let r = e.run(
        rt,
        &Opts::default(),
        &["sh", "-c", "echo hi from $(hostname); exit 3"],
    );
    outcome(expect(
        r.code() == Some(3) && r.stdout.contains("hi from"),
        || r.describe(),
    ))
}

fn detach_logs_stop(e: &dyn Engine, rt: Runtime, name: &str, _: &Path) -> Outcome {
    outcome(with_ticker(e, rt, name, &Opts::default(), || {
        let r = e.stop(name);
        ran_ok(&r, "stop")?;
        let status = e.status(name);
        expect(status == "exited", || {
            format!("status after stop: {status:?}")
        })?;
        let code = e.exit_code(name);
        expect(code == Some(0), || {
            format!("exit code after SIGTERM: {code:?}")
        })
    }))
}

fn kill(e: &dyn Engine, rt: Runtime, name: &str, _: &Path) -> Outcome {
    outcome(with_ticker(e, rt, name, &Opts::default(), || {
        ran_ok(&e.kill(name, "SIGKILL"), "kill")?;
        expect(
            wait_for(Duration::from_secs(30), || e.status(name) == "exited"),
            || format!("status after SIGKILL: {:?}", e.status(name)),
        )?;
        let code = e.exit_code(name);
        expect(code == Some(137), || {
            format!("exit code after SIGKILL: {code:?}")
        })
    }))
}

fn exec(e: &dyn Engine, rt: Runtime, name: &str, _: &Path) -> Outcome {
    outcome(with_ticker(e, rt, name, &Opts::default(), || {
        // It runs in the container's root, where the workload left its mark.
        let r = e.exec(
            name,
            false,
            &["sh", "-c", "echo in-$((6*7)); ls /ticker-was-here"],
        );
        expect(r.ok() && r.stdout.contains("in-42"), || r.describe())?;
        let r = e.exec(name, false, &["sh", "-c", "exit 5"]);
        expect(r.code() == Some(5), || r.describe())
    }))
}

fn exec_tty(e: &dyn Engine, rt: Runtime, name: &str, _: &Path) -> Outcome {
    outcome(with_ticker(e, rt, name, &Opts::default(), || {
        let r = e.exec(name, true, &["sh", "-c", "tty; exit 4"]);
        expect(
            r.code() == Some(4) && r.stdout.contains("/dev/pts/"),
            || r.describe(),
        )
    }))
}

fn run_tty(e: &dyn Engine, rt: Runtime, _: &str, _: &Path) -> Outcome {
    let o = Opts {
        tty: true,
        ..Opts::default()
    };
    let r = e.run(rt, &o, &["sh", "-c", "tty; exit 6"]);
    outcome(expect(
        r.code() == Some(6) && r.stdout.contains("/dev/pts/"),
        || r.describe(),
    ))
}

fn pause(e: &dyn Engine, rt: Runtime, name: &str, _: &Path) -> Outcome {
    outcome(with_ticker(e, rt, name, &Opts::default(), || {
        ran_ok(&e.pause(name), "pause")?;
        let status = e.status(name);
        expect(status == "paused", || {
            format!("status while paused: {status:?}")
        })?;
        // A tick already under way may still land.
        std::thread::sleep(Duration::from_millis(300));
        let before = ticks(e, name);
        std::thread::sleep(Duration::from_secs(2));
        let after = ticks(e, name);
        expect(after <= before + 1, || {
            format!("ticked while paused: {before} then {after}")
        })?;
        ran_ok(&e.resume(name), "unpause")?;
        expect(
            wait_for(Duration::from_secs(30), || ticks(e, name) > after + 3),
            || format!("no ticks after unpause (still {})", ticks(e, name)),
        )?;
        let status = e.status(name);
        expect(status == "running", || {
            format!("status after unpause: {status:?}")
        })
    }))
}

/// The memory limit of the cgroup `pid` is in, as the host sees it (v1 or v2).
fn host_memory_limit(pid: i32) -> Option<u64> {
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let file = if ctrls.split(',').any(|c| c == "memory") {
            format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes")
        } else if ctrls.is_empty() {
            format!("/sys/fs/cgroup{path}/memory.max")
        } else {
            continue;
        };
        if let Ok(v) = std::fs::read_to_string(file) {
            return v.trim().parse().ok();
        }
    }
    None
}

fn update(e: &dyn Engine, rt: Runtime, name: &str, _: &Path) -> Outcome {
    const LIMIT: u64 = 96 << 20;
    let mut not_here = false;
    let r = with_ticker(e, rt, name, &Opts::default(), || {
        let Some(r) = e.update_memory(name, LIMIT) else {
            not_here = true;
            return Ok(());
        };
        if rt == Runtime::Microvm {
            // A VM's memory is fixed at boot: the change must be refused, saying why.
            return expect(
                !r.ok() && r.all().to_lowercase().contains("microvm"),
                || format!("expected a clear refusal: {}", r.describe()),
            );
        }
        ran_ok(&r, "update")?;
        let pid = e.pid(name).ok_or("no pid")?;
        let limit = host_memory_limit(pid);
        expect(limit == Some(LIMIT), || {
            format!("host cgroup memory limit of pid {pid}: {limit:?}")
        })
    });
    if not_here {
        return Outcome::NotApplicable("the engine has no update verb");
    }
    outcome(r)
}

fn stats(e: &dyn Engine, rt: Runtime, name: &str, _: &Path) -> Outcome {
    outcome(with_ticker(e, rt, name, &Opts::default(), || {
        let r = e.stats(name);
        expect(
            r.ok() && r.stdout.chars().any(|c| c.is_ascii_digit()),
            || r.describe(),
        )
    }))
}

fn volume(e: &dyn Engine, rt: Runtime, name: &str, scratch: &Path) -> Outcome {
    let dir = scratch.join(format!("volume-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let o = Opts {
        volume: Some((dir.clone(), "/data".into())),
        ..Opts::default()
    };
    let r = e.run(rt, &o, &["sh", "-c", "echo written-inside > /data/f"]);
    let on_host = std::fs::read_to_string(dir.join("f")).unwrap_or_default();
    outcome(expect(r.ok() && on_host == "written-inside\n", || {
        format!("host file {on_host:?}; {}", r.describe())
    }))
}

fn oom(e: &dyn Engine, rt: Runtime, _: &str, _: &Path) -> Outcome {
    let o = Opts {
        memory: Some(32 << 20),
        ..Opts::default()
    };
    // `tail` keeps the unending line it reads in memory, until the OOM killer ends it.
    let r = e.run(rt, &o, &["tail", "/dev/zero"]);
    outcome(expect(r.code() == Some(137), || r.describe()))
}

fn pids_limit(e: &dyn Engine, rt: Runtime, _: &str, _: &Path) -> Outcome {
    if !e.has_pids_limit() {
        return Outcome::NotApplicable("the engine has no pids limit flag");
    }
    let o = Opts {
        pids: Some(10),
        ..Opts::default()
    };
    let r = e.run(
        rt,
        &o,
        &[
            "sh",
            "-c",
            "for i in $(seq 20); do sleep 3 & done 2>&1; wait",
        ],
    );
    outcome(expect(r.all().contains("can't fork"), || r.describe()))
}

fn network_none(e: &dyn Engine, rt: Runtime, _: &str, _: &Path) -> Outcome {
    let r = e.run(
        rt,
        &Opts::default(),
        &[
            "sh",
            "-c",
            "echo ifaces $(ls /sys/class/net); cat /sys/class/net/lo/flags",
        ],
    );
    let flags = r
        .stdout
        .lines()
        .find_map(|l| u32::from_str_radix(l.trim().trim_start_matches("0x"), 16).ok());
    outcome(expect(
        r.ok() && r.stdout.contains("ifaces lo\n") && flags.is_some_and(|f| f & 1 == 1),
        || format!("expected only lo, up (flags {flags:?}): {}", r.describe()),
    ))
}

fn user_network(e: &dyn Engine, rt: Runtime, _: &str, _: &Path) -> Outcome {
    if !e.has_user_network() {
        return Outcome::NotApplicable("ctr makes no networks (CNI is the caller's)");
    }
    let o = Opts {
        network: Net::User,
        ..Opts::default()
    };
    let r = e.run(rt, &o, &["sh", "-c", "ip -4 addr show eth0"]);
    outcome(expect(r.ok() && r.stdout.contains("inet "), || {
        r.describe()
    }))
}
