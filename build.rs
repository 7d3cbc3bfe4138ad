//! Bakes the git commit into the binary so images record exactly which build made them, gives
//! the Windows exe its icon, version details and manifest, and with the `cuda` feature compiles
//! our CUDA kernels to PTX (nvcc is there: candle's own kernels need it too).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rustc-env=LATENT_STUDIO_GIT={}", git_commit());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        embed_windows_resources();
    }

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

/// The icon Explorer, the taskbar and Alt+Tab show; the name and version in the file's
/// Properties and in Task Manager; and the manifest (assets/windows/latent-studio.exe.manifest:
/// long paths, per-monitor DPI, Windows 10/11, no elevation). The resource script is written
/// beside copies of the files it names, so no path with spaces or backslashes is ever quoted in
/// it. Compiled by rc.exe (MSVC) or `x86_64-w64-mingw32-windres` (mingw, also when
/// cross-building), both found by embed-resource.
fn embed_windows_resources() {
    let assets = PathBuf::from(env("CARGO_MANIFEST_DIR")).join("assets/windows");
    let out = PathBuf::from(env("OUT_DIR"));
    for file in ["latent-studio.ico", "latent-studio.exe.manifest"] {
        println!("cargo:rerun-if-changed={}", assets.join(file).display());
        std::fs::copy(assets.join(file), out.join(file))
            .unwrap_or_else(|err| panic!("copying assets/windows/{file} into OUT_DIR: {err}"));
    }
    let version = env("CARGO_PKG_VERSION");
    let numbers = ["MAJOR", "MINOR", "PATCH"]
        .map(|part| env(&format!("CARGO_PKG_VERSION_{part}")))
        .join(",");
    let script = format!(
        r#"#include <winver.h>
1 ICON "latent-studio.ico"
1 24 "latent-studio.exe.manifest"
VS_VERSION_INFO VERSIONINFO
FILEVERSION {numbers},0
PRODUCTVERSION {numbers},0
FILEOS VOS_NT_WINDOWS32
FILETYPE VFT_APP
BEGIN
  BLOCK "StringFileInfo"
  BEGIN
    BLOCK "040904B0"
    BEGIN
      VALUE "CompanyName", "Latent Studio developers"
      VALUE "FileDescription", "Latent Studio"
      VALUE "FileVersion", "{version}"
      VALUE "InternalName", "latent-studio"
      VALUE "OriginalFilename", "latent-studio.exe"
      VALUE "ProductName", "Latent Studio"
      VALUE "ProductVersion", "{version}"
    END
  END
  BLOCK "VarFileInfo"
  BEGIN
    VALUE "Translation", 0x409, 1200
  END
END
"#
    );
    let rc = out.join("latent-studio.rc");
    std::fs::write(&rc, script).expect("writing latent-studio.rc into OUT_DIR");
    embed_resource::compile(&rc, embed_resource::NONE)
        .manifest_required()
        .unwrap_or_else(|err| {
            panic!(
                "the Windows resources (icon, manifest) could not be compiled: {err}. \
                 Install the Windows SDK (rc.exe) with MSVC, or mingw-w64's windres \
                 (Debian: gcc-mingw-w64-x86-64) when building with the gnu toolchain"
            )
        });
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
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
