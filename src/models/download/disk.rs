//! Free space on the file system a download goes to, checked before the first byte arrives.

use std::path::{Path, PathBuf};

/// What a download must leave free besides its own bytes (the system and other programs
/// need room too; a full disk fails in odd places).
pub const DISK_MARGIN_BYTES: u64 = 512 * 1024 * 1024;

/// How the free space of a folder's file system is found. Tests pass a fixed number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FreeSpace {
    /// Ask the operating system.
    #[default]
    System,
    /// Use this many bytes.
    Fixed(u64),
}

impl FreeSpace {
    /// Bytes free for an unprivileged user on the file system of `dir` (or of its nearest
    /// existing parent); `None` when it cannot be told (the check is then skipped).
    pub fn available(&self, dir: &Path) -> Option<u64> {
        match self {
            FreeSpace::Fixed(bytes) => Some(*bytes),
            FreeSpace::System => {
                let existing = nearest_existing(dir)?;
                system_free_bytes(&existing)
            }
        }
    }
}

fn nearest_existing(dir: &Path) -> Option<PathBuf> {
    dir.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

#[cfg(unix)]
fn system_free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statvfs` only writes into the zeroed struct we own and reads the
    // NUL-terminated path, which outlives the call.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    let status = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    if status != 0 {
        return None;
    }
    // Blocks available to unprivileged users, in fragment-size units; both fields have
    // platform-dependent widths.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    let bytes = u64::from(stats.f_bavail).saturating_mul(u64::from(stats.f_frsize));
    Some(bytes)
}

// Other systems (Windows) would need a platform crate just for this; the download goes ahead
// unchecked there and a full disk fails it with the operating system's own error.
#[cfg(not(unix))]
fn system_free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// `bytes` as `1.23 GB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_reports_free_space_for_a_missing_folder_under_an_existing_one() {
        let missing = std::env::temp_dir().join("latent-studio-no-such-folder/deeper");
        let free = FreeSpace::System.available(&missing);
        if cfg!(unix) {
            assert!(free.is_some_and(|bytes| bytes > 0), "{free:?}");
        }
        assert_eq!(FreeSpace::Fixed(7).available(&missing), Some(7));
    }

    #[test]
    fn sizes_are_written_in_decimal_units() {
        assert_eq!(format_size(999), "999 bytes");
        assert_eq!(format_size(1_500_000), "1.50 MB");
        assert_eq!(format_size(6_940_000_000), "6.94 GB");
    }
}
