//! Bakes the git commit into the binary so images record exactly which build made them, and
//! with the `cuda` feature compiles our CUDA kernels to PTX (nvcc is there: candle's own
//! kernels need it too).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rustc-env=LATENT_STUDIO_GIT={}", git_commit());

    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rerun-if-changed=src/kernels/gpu/convert.cuh");
        compile_ptx("src/kernels/gpu/group_norm.cu", "group_norm.ptx");
        compile_ptx("src/kernels/gpu/softmax.cu", "softmax.ptx");
        compile_ptx("src/kernels/gpu/geglu.cu", "geglu.ptx");
        compile_ptx("src/kernels/gpu/flash_attention.cu", "flash_attention.ptx");
    }
}

/// `$LATENT_STUDIO_COMMIT` when the builder sets it (a source tarball has no `.git`; packagers
/// pass the commit it was cut from), else `git rev-parse`, else "unknown commit": a build
/// without git still works, it only cannot say which commit it is.
fn git_commit() -> String {
    println!("cargo:rerun-if-env-changed=LATENT_STUDIO_COMMIT");
    if let Some(commit) = std::env::var("LATENT_STUDIO_COMMIT")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    {
        return commit;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    // Rebuild when HEAD moves: HEAD itself and the branch it names. In a worktree `.git` is a
    // file, so ask git where they are rather than naming `.git/HEAD` (a path that does not
    // exist makes cargo run this script on every build); watching only this branch's ref keeps
    // other worktrees' commits from rebuilding this one.
    let branch = git(&["rev-parse", "--symbolic-full-name", "HEAD"]);
    let watched = ["HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_string)
        .chain(branch.filter(|b| b.starts_with("refs/")));
    for path in watched {
        if let Some(file) = git(&["rev-parse", "--git-path", &path]) {
            if std::path::Path::new(&file).exists() {
                println!("cargo:rerun-if-changed={file}");
            }
        }
    }
    git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown commit".to_string())
}

/// `nvcc --ptx` for the GPU architecture candle's kernels are built for (`CUDA_COMPUTE_CAP`,
/// else the first GPU's, else 7.5); the driver compiles PTX for newer GPUs as it loads it.
fn compile_ptx(source: &str, ptx_name: &str) {
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    let compute_cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .or_else(|| {
            let out = Command::new("nvidia-smi")
                .args(["--query-gpu=compute_cap", "--format=csv,noheader"])
                .output()
                .ok()?;
            let text = String::from_utf8(out.stdout).ok()?;
            Some(text.lines().next()?.trim().replace('.', ""))
        })
        .filter(|cap| !cap.is_empty() && cap.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or_else(|| "75".to_string());
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".to_string());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join(ptx_name);
    let status = Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{compute_cap}"))
        .arg("-o")
        .arg(&out)
        .arg(source)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{nvcc} failed on {source} ({status})"),
        Err(err) => panic!(
            "the cuda feature needs CUDA's nvcc (set NVCC or put it on PATH): running {nvcc}: {err}"
        ),
    }
}
