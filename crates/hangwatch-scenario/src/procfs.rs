//! Figures of a process from `/proc/PID/status` (Linux).

/// The `field` line of process `pid`'s status (`VmRSS`, `RssAnon`), in
/// KiB; `None` if the process or the line is not there.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::status_kib;

    #[test]
    fn reads_the_memory_of_a_process() {
        let pid = std::process::id();
        let rss = status_kib(pid, "VmRSS").expect("VmRSS of this process");
        assert!(rss > 100, "{rss} KiB");
        let anonymous = status_kib(pid, "RssAnon").expect("RssAnon of this process");
        assert!(anonymous <= rss, "{anonymous} > {rss}");
        assert_eq!(status_kib(pid, "Rss"), None, "a prefix is not a field");
        assert_eq!(status_kib(u32::MAX, "VmRSS"), None);
    }
}
