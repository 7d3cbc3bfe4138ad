//! `latent-studio`: the desktop app, and a headless CLI over the same engine.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keep_freed_memory_for_reuse();
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        // --help and --version print as clap writes them; usage errors are one line, like
        // every other error of this program (scripts read the first line of stderr).
        Err(err) if !err.use_stderr() => {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            return ExitCode::from(2);
        }
    };
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// A clap usage error without its usage block and tips, on one line (with the possible
/// values, when clap lists them).
fn one_line(err: &clap::Error) -> String {
    let text = err.render().to_string();
    text.lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with("Usage:")
                && !line.starts_with("For more information")
                && !line.starts_with("tip:")
        })
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

/// Every layer allocates its output afresh and frees its input. With glibc's defaults, blocks
/// above a moving threshold come from `mmap` and freed memory at the top of the heap goes back
/// to the system, so the next layer faults in and zeroes the same pages again. Serving blocks
/// up to glibc's limit (32 MiB) from the heap and trimming it only past 2 GiB of free memory
/// cut a 512² bench run's page faults from 25.4 M to 5.4 M and its VAE decode from 28.3 to
/// 19.1 s, for ~150 MB more peak memory (docs/performance-log.md).
fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
