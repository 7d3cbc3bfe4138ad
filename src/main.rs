//! `latent-studio`: the desktop app, and a headless CLI over the same engine.

// Windows: a GUI program, so starting it from Explorer or the Start menu opens no console
// window beside the app. The CLI (`generate`, `--version`, errors) then has no console of its
// own; `attach_parent_console` borrows the one it was started from. The other common way — a
// console program that frees its console when started from Explorer — flashes a black window
// on every start of the app, which is what most users do; the cost of this way is that cmd.exe
// shows its next prompt before the CLI's output instead of after it (scripts that redirect or
// pipe the output are unaffected: their handles are inherited as they are).
#![cfg_attr(windows, windows_subsystem = "windows")]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    #[cfg(windows)]
    attach_parent_console();
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

/// Lets a Windows GUI-subsystem program print to the console it was started from. Only when
/// stdout and stderr both have no handle: output redirected to a file or a pipe is inherited
/// as it is and must stay where the caller sent it. Started from Explorer there is no parent
/// console; the call fails and the program goes on without one.
#[cfg(windows)]
fn attach_parent_console() {
    const ATTACH_PARENT_PROCESS: u32 = u32::MAX;
    const STD_OUTPUT_HANDLE: u32 = -11i32 as u32;
    const STD_ERROR_HANDLE: u32 = -12i32 as u32;
    #[link(name = "kernel32")]
    extern "system" {
        fn AttachConsole(process_id: u32) -> i32;
        fn GetStdHandle(which: u32) -> *mut core::ffi::c_void;
    }
    let missing = |which| {
        // SAFETY: GetStdHandle only reads the process's standard handle table.
        let handle = unsafe { GetStdHandle(which) };
        handle.is_null() || handle as isize == -1
    };
    if missing(STD_OUTPUT_HANDLE) && missing(STD_ERROR_HANDLE) {
        // SAFETY: no arguments beyond a constant; failure (no parent console) is harmless.
        unsafe {
            AttachConsole(ATTACH_PARENT_PROCESS);
        }
    }
}
