//! What the machine has, for checks made before large allocations.

/// Memory the system could give this process now (Linux: `MemAvailable`), in bytes; `None`
/// where it cannot be told, and then no check is made.
pub fn available_memory_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn linux_reports_available_memory() {
        let bytes = super::available_memory_bytes().expect("MemAvailable");
        assert!(bytes > 1 << 20, "{bytes}");
    }
}
