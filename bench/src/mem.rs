//! Memory readings of this process from /proc (Linux).

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident set size now, in bytes.
pub fn rss() -> u64 {
    status_kb("VmRSS:") * 1024
}

/// Peak resident set size so far, in bytes.
pub fn peak_rss() -> u64 {
    status_kb("VmHWM:") * 1024
}
