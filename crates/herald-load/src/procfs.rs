//! Reading process and machine counters from `/proc`.
//!
//! Server cost is measured from the outside, so it works the same for Herald and Nchan: memory is
//! the change in `VmRSS` (`/proc/PID/status`) and CPU the change in `utime + stime`
//! (`/proc/PID/stat`) across a phase of the run. Whole-machine busy time (`/proc/stat`) shows
//! whether something else was using the CPU at the same time.

use std::fs;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`). The kernel's user ABI fixes it at
/// 100 on every architecture Linux supports, so it is not read with `sysconf`.
pub const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory and CPU time of one process (or the sum over several).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcSample {
    /// `VmRSS`, KiB.
    pub rss_kb: u64,
    /// User CPU, ticks.
    pub utime: u64,
    /// System CPU, ticks.
    pub stime: u64,
}

impl ProcSample {
    /// User plus system CPU, seconds.
    pub fn cpu_s(&self) -> f64 {
        (self.utime + self.stime) as f64 / TICKS_PER_SEC
    }

    /// Adds another process's sample.
    pub fn add(&mut self, other: &ProcSample) {
        self.rss_kb += other.rss_kb;
        self.utime += other.utime;
        self.stime += other.stime;
    }

    /// Change from `earlier` to `self` (RSS may shrink, so it is signed).
    pub fn since(&self, earlier: &ProcSample) -> ProcDelta {
        ProcDelta {
            rss_kb: self.rss_kb as i64 - earlier.rss_kb as i64,
            user_s: self.utime.saturating_sub(earlier.utime) as f64 / TICKS_PER_SEC,
            sys_s: self.stime.saturating_sub(earlier.stime) as f64 / TICKS_PER_SEC,
        }
    }
}

/// The change in a [`ProcSample`] over a phase.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProcDelta {
    /// RSS change, KiB.
    pub rss_kb: i64,
    /// User CPU used, seconds.
    pub user_s: f64,
    /// System CPU used, seconds.
    pub sys_s: f64,
}

impl ProcDelta {
    /// User plus system CPU, seconds.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Samples one process.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid} not found"))?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} not found"))?;
    let (utime, stime) = parse_stat_cpu(&stat)?;
    Ok(ProcSample {
        rss_kb: parse_status_kb(&status, "VmRSS:").unwrap_or(0),
        utime,
        stime,
    })
}

/// Sum of [`sample`] over `pids`; processes that vanished count as zero.
pub fn sample_all(pids: &[u32]) -> ProcSample {
    let mut total = ProcSample::default();
    for &pid in pids {
        if let Ok(s) = sample(pid) {
            total.add(&s);
        }
    }
    total
}

/// `utime` and `stime` (fields 14 and 15) from a `/proc/PID/stat` line. The command name (field
/// 2) may contain spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat_cpu(stat: &str) -> anyhow::Result<(u64, u64)> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.len() < 13 {
        bail!("short /proc stat line");
    }
    // After the name, field 3 (state) is index 0, so field N is index N - 3.
    Ok((fields[11].parse()?, fields[12].parse()?))
}

fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU ticks (user + system) of a process tree rooted at `root`: the root, its live children,
/// and the children it has reaped (`cutime + cstime`). A PostgreSQL postmaster's backends are its
/// children, so the change of this over a phase is the database's CPU, backends that started or
/// ended meanwhile included. 0 if `root` is gone.
pub fn tree_cpu_ticks(root: u32) -> u64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{root}/stat")) else {
        return 0;
    };
    let mut total = parse_stat_fields(&stat).map_or(0, |f| f.utime + f.stime + f.cutime + f.cstime);
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == root {
                continue;
            }
            if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat"))
                && let Some(f) = parse_stat_fields(&stat)
                && f.ppid == root
            {
                total += f.utime + f.stime;
            }
        }
    }
    total
}

struct StatFields {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

/// Fields 4 (ppid) and 14–17 (utime, stime, cutime, cstime) of a `/proc/PID/stat` line.
fn parse_stat_fields(stat: &str) -> Option<StatFields> {
    let after = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(StatFields {
        ppid: f.get(1)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
        cutime: f.get(13)?.parse().ok()?,
        cstime: f.get(14)?.parse().ok()?,
    })
}

/// Busy ticks of the whole machine (all CPUs, everything but idle and iowait).
pub fn machine_busy_ticks() -> u64 {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().map(parse_machine_busy))
        .unwrap_or(0)
}

fn parse_machine_busy(cpu_line: &str) -> u64 {
    let v: Vec<u64> = cpu_line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    v.iter().take(8).sum::<u64>() - v.get(3).copied().unwrap_or(0) - v.get(4).copied().unwrap_or(0)
}

/// Kernel counters of connections a listener dropped because its accept queue was full
/// (`TcpExt: ListenOverflows` and `ListenDrops` in `/proc/net/netstat`, for the whole network
/// namespace). A subscriber that hits one waits for a SYN retransmit: a connect time near 1 s.
pub fn listen_drops() -> u64 {
    fs::read_to_string("/proc/net/netstat")
        .map(|s| parse_listen_drops(&s))
        .unwrap_or(0)
}

fn parse_listen_drops(netstat: &str) -> u64 {
    let mut lines = netstat.lines();
    while let Some(header) = lines.next() {
        let Some(values) = lines.next() else { break };
        if !header.starts_with("TcpExt:") {
            continue;
        }
        return header
            .split_whitespace()
            .zip(values.split_whitespace())
            .filter(|(name, _)| *name == "ListenDrops")
            .filter_map(|(_, v)| v.parse::<u64>().ok())
            .sum();
    }
    0
}

/// Number of CPUs this process may run on (from `Cpus_allowed_list`, e.g. `0-1` or `1`).
pub fn allowed_cpus() -> usize {
    let list = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    count_cpu_list(&list).max(1)
}

fn count_cpu_list(list: &str) -> usize {
    list.split(',')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.parse::<usize>(), b.parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 0,
            },
            None => usize::from(part.parse::<usize>().is_ok()),
        })
        .sum()
}

/// Kernel and distribution facts for the report.
pub fn machine_description() -> String {
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    // Counted from cpuinfo, not from the affinity mask: the tool itself may be pinned to one.
    let cpus = fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    format!("{cpus} CPU(s), {model}, Linux {kernel}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 1 0 100 1000 50";
        assert_eq!(parse_stat_cpu(line).expect("parse"), (17, 5));
    }

    #[test]
    fn samples_self() {
        let s = sample(std::process::id()).expect("self");
        assert!(s.rss_kb > 0);
    }

    #[test]
    fn parses_listen_drops() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 1 7 9\n\
                    IpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(parse_listen_drops(text), 9);
    }

    #[test]
    fn counts_cpu_lists() {
        assert_eq!(count_cpu_list("0-1"), 2);
        assert_eq!(count_cpu_list("1"), 1);
        assert_eq!(count_cpu_list("0,2-5"), 5);
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        assert_eq!(
            parse_machine_busy("cpu  10 1 5 1000 7 2 3 4 0 0"),
            10 + 1 + 5 + 2 + 3 + 4
        );
    }
}
