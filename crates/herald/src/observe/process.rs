//! Facts about this process, read when asked (a scrape, `/process_stats`): memory from `/proc`
//! and from the allocator, open file descriptors and their limits.
//!
//! Each returns `None` rather than failing when the platform does not say: metrics then keep
//! their last value.

/// Resident set size in bytes, if `/proc/self/status` says.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// What the allocator (jemalloc) holds.
#[derive(Clone, Copy, Debug)]
pub struct AllocatorMemory {
    /// Bytes in live allocations.
    pub allocated: u64,
    /// Bytes of physical memory the allocator keeps (live allocations, its metadata, and freed
    /// pages not yet returned to the system).
    pub resident: u64,
}

/// The allocator's figures, refreshed (jemalloc caches them until its epoch advances).
pub fn allocator_memory() -> Option<AllocatorMemory> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    Some(AllocatorMemory {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().ok()? as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().ok()? as u64,
    })
}

/// Open file descriptors: the entries of `/proc/self/fd` (one directory read; ≈10 ms at
/// 100,000 connections, paid per scrape).
pub fn open_fds() -> Option<u64> {
    // The directory handle used for reading is one of the entries.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count().saturating_sub(1) as u64)
}

/// The soft and hard limits of open file descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimits {
    /// `ulimit -n`: opening more fails with `EMFILE`.
    pub soft: u64,
    /// The ceiling the soft limit may be raised to.
    pub hard: u64,
}

/// The limits, from `/proc/self/limits`.
pub fn fd_limits() -> Option<FdLimits> {
    parse_fd_limits(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

/// `Max open files            1024                 524288               files`; "unlimited" reads
/// as `u64::MAX`.
fn parse_fd_limits(limits: &str) -> Option<FdLimits> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace().map(|v| match v {
        "unlimited" => Some(u64::MAX),
        v => v.parse().ok(),
    });
    Some(FdLimits {
        soft: values.next()??,
        hard: values.next()??,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_limits_are_read_from_proc_self_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max cpu time              unlimited            unlimited            seconds   \n\
                    Max open files            20000                unlimited            files     \n";
        assert_eq!(
            parse_fd_limits(text),
            Some(FdLimits {
                soft: 20000,
                hard: u64::MAX
            })
        );
        assert_eq!(parse_fd_limits("Max cpu time 1 2 seconds"), None);
    }

    #[test]
    fn this_process_has_figures() {
        assert!(rss_bytes().unwrap() > 0);
        assert!(open_fds().unwrap() >= 3);
        let limits = fd_limits().unwrap();
        assert!(limits.soft <= limits.hard);
    }
}
