//! Where the machine's CPU went over a stretch of a benchmark run, read from
//! `/proc` (Linux; elsewhere nothing is reported).
//!
//! A rate alone cannot tell a run that is short of CPU from one that waits:
//! this says how busy the machine was and who was busy. The server and this
//! process are measured directly; PostgreSQL runs as many short-lived
//! backends, so it is "the rest" (busy time that is neither), which also
//! holds anything else that ran, so the report says what the load was.

/// `/proc` times are in `USER_HZ` ticks, 100 per second on every Linux
/// architecture this runs on (the kernel ABI fixes it, whatever `HZ` is).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU counters at one instant, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    /// Every CPU's time, all states (`/proc/stat`'s `cpu` line, steal
    /// included, guest time already counted in user).
    total: u64,
    /// Idle and waiting for I/O.
    idle: u64,
    /// The measured process's user + system time (0 when there is none).
    server: u64,
    /// This process's user + system time.
    client: u64,
}

/// What the CPU did between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// CPU-seconds the machine had (CPUs × elapsed).
    pub available: f64,
    /// CPU-seconds busy, everyone together.
    pub busy: f64,
    /// CPU-seconds of the server process.
    pub server: f64,
    /// CPU-seconds of the benchmark client (this process).
    pub client: f64,
}

impl CpuUse {
    /// Busy CPU-seconds that were neither the server's nor the client's:
    /// PostgreSQL, and anything else that ran.
    pub fn rest(&self) -> f64 {
        (self.busy - self.server - self.client).max(0.0)
    }

    /// Share of the machine's CPU that sat idle.
    pub fn idle_share(&self) -> f64 {
        if self.available > 0.0 {
            1.0 - self.busy / self.available
        } else {
            0.0
        }
    }

    /// Busy microseconds per unit of work (`units` messages, say).
    pub fn busy_per(&self, units: usize) -> f64 {
        if units == 0 {
            0.0
        } else {
            self.busy * 1e6 / units as f64
        }
    }
}

impl CpuSample {
    /// The counters now; `server` is the process measured besides this one.
    /// `None` where `/proc` cannot be read.
    pub fn now(server: Option<u32>) -> Option<CpuSample> {
        let (total, idle) = machine_times(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let client = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
        let server = server
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
            .and_then(|text| process_ticks(&text))
            .unwrap_or(0);
        Some(CpuSample {
            total,
            idle,
            server,
            client,
        })
    }

    /// What happened from `self` to `later`.
    pub fn until(&self, later: &CpuSample) -> CpuUse {
        let seconds = |from: u64, to: u64| to.saturating_sub(from) as f64 / TICKS_PER_SECOND;
        let available = seconds(self.total, later.total);
        let idle = seconds(self.idle, later.idle);
        CpuUse {
            available,
            busy: (available - idle).max(0.0),
            server: seconds(self.server, later.server),
            client: seconds(self.client, later.client),
        }
    }
}

/// `(all, idle + iowait)` ticks of `/proc/stat`'s aggregate `cpu` line.
fn machine_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already part of user, so only the first eight add up.
    let total = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total, idle))
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name is in
/// parentheses and may hold spaces, so fields are counted after its `)`.
fn process_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the line; the first after `)` is field 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_times_add_the_first_eight_states_and_count_iowait_as_idle() {
        let stat = "cpu  100 5 40 800 20 3 2 10 7 0\ncpu0 50 2 20 400 10 1 1 5 3 0\n";
        assert_eq!(machine_times(stat), Some((980, 820)));
        assert_eq!(machine_times("intr 1 2 3\n"), None);
    }

    #[test]
    fn process_ticks_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat =
            "4242 (charlie (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 1234 567 0 0 20 0 9 0";
        assert_eq!(process_ticks(stat), Some(1801));
        assert_eq!(process_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn use_between_samples_splits_busy_time() {
        let a = CpuSample {
            total: 1_000,
            idle: 400,
            server: 100,
            client: 10,
        };
        let b = CpuSample {
            total: 3_000,
            idle: 600,
            server: 600,
            client: 30,
        };
        let u = a.until(&b);
        assert_eq!(u.available, 20.0);
        assert_eq!(u.busy, 18.0);
        assert_eq!(u.server, 5.0);
        assert_eq!(u.client, 0.2);
        assert!((u.rest() - 12.8).abs() < 1e-9);
        assert!((u.idle_share() - 0.1).abs() < 1e-9);
        assert_eq!(u.busy_per(1_000_000), 18.0);
    }

    #[test]
    fn this_process_can_be_sampled_on_linux() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            eprintln!("skipped: no /proc on this system");
            return;
        }
        let Some(a) = CpuSample::now(None) else {
            panic!("/proc/stat and /proc/self/stat must parse");
        };
        // Burn a little CPU so the second sample is not earlier.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let Some(b) = CpuSample::now(None) else {
            panic!("/proc/stat and /proc/self/stat must parse the second time too");
        };
        let u = a.until(&b);
        assert!(u.available >= u.busy && u.busy >= 0.0);
        assert_eq!(u.server, 0.0);
    }
}
