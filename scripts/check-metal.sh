#!/usr/bin/env bash
# Type-checks the Metal build (`--features metal`, Apple silicon macOS) from a Linux machine:
# `cargo clippy --target aarch64-apple-darwin --features metal --all-targets -- -D warnings`.
#
# This compiles every crate for the Mac, our code with candle's Metal backend included, and lints
# it, but links nothing and runs nothing: building the app and running it on a Metal GPU still
# needs a Mac (`cargo build --release --features metal` there).
#
# Needs: rustup's aarch64-apple-darwin standard library (added below; rustup fetches it) and
# clang (`apt-get install -y clang`). `ring` (TLS for downloads) compiles C in its build script;
# without Apple's SDK, clang gets the few libc declarations that C needs from stand-in headers
# made here. Those objects only exist for the check and are never linked.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v clang >/dev/null || { echo "check-metal: needs clang (apt-get install -y clang)" >&2; exit 1; }
rustup target add aarch64-apple-darwin

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/metal-check}"
# A fixed place, so that ring's build script (which watches CFLAGS) is not rerun every time.
shim="$(mkdir -p "$CARGO_TARGET_DIR" && cd "$CARGO_TARGET_DIR" && pwd)/apple-sdk-stand-ins"
mkdir -p "$shim"
cat > "$shim/TargetConditionals.h" <<'EOF'
#define TARGET_OS_MAC 1
#define TARGET_OS_OSX 1
#define TARGET_OS_IPHONE 0
#define TARGET_OS_IOS 0
#define TARGET_OS_TV 0
#define TARGET_OS_WATCH 0
#define TARGET_OS_SIMULATOR 0
EOF
cat > "$shim/assert.h" <<'EOF'
#define assert(x) ((void)0)
EOF
cat > "$shim/string.h" <<'EOF'
#include <stddef.h>
void *memcpy(void *, const void *, size_t);
void *memset(void *, int, size_t);
void *memmove(void *, const void *, size_t);
int memcmp(const void *, const void *, size_t);
EOF
cat > "$shim/stdlib.h" <<'EOF'
#include <stddef.h>
void abort(void);
EOF

export CC_aarch64_apple_darwin=clang
export CFLAGS_aarch64_apple_darwin="-nostdlibinc -isystem $shim"
cargo clippy --target aarch64-apple-darwin --features metal --all-targets -- -D warnings
echo "check-metal: the Metal build type-checks and lints clean for aarch64-apple-darwin"
