#!/usr/bin/env bash
# Builds the AppImage type 2 runtime (the small program at the front of every AppImage that
# mounts the file system appended to it and starts the app) from source, offline, with Debian's
# libraries — for machines that cannot download the AppImage project's prebuilt runtime.
#
#   scripts/appimage-runtime.sh TYPE2_RUNTIME_SRC SQUASHFUSE_SRC [OUT]
#
# TYPE2_RUNTIME_SRC is a checkout of AppImage/type2-runtime, SQUASHFUSE_SRC one of
# vasi/squashfuse (both on GitHub); OUT defaults to dist/runtime-x86_64. Release builds should
# rather use the project's own runtime-x86_64 (its releases page), which is linked against musl
# and a libfuse patched to find fusermount anywhere on the PATH; this one is linked statically
# against glibc and Debian's libfuse3, so it finds /bin/fusermount3 as Debian and Ubuntu install
# it. Both accept --appimage-extract and --appimage-extract-and-run (no FUSE needed).
# scripts/package-appimage.sh takes either through APPIMAGE_RUNTIME.
set -euo pipefail

[[ $# -ge 2 ]] || { sed -n '2,14p' "$0" >&2; exit 2; }
type2=$(realpath "$1")
squashfuse=$(realpath "$2")
cd "$(dirname "$0")/.."
out=$(realpath -m "${3:-dist/runtime-x86_64}")
[[ -f $type2/src/runtime/runtime.c ]] || { echo "$type2 has no src/runtime/runtime.c (not type2-runtime?)" >&2; exit 2; }
[[ -f $squashfuse/ll.c ]] || { echo "$squashfuse has no ll.c (not squashfuse?)" >&2; exit 2; }

source scripts/require.sh
require gcc:gcc make:make autoconf:autoconf automake:automake libtoolize:libtool pkg-config:pkg-config \
    dpkg:libfuse3-dev dpkg:libzstd-dev dpkg:zlib1g-dev dpkg:liblzma-dev

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== squashfuse (static, zlib/xz/zstd) in $work"
cp -r "$squashfuse" "$work/squashfuse"
(
    cd "$work/squashfuse"
    ./autogen.sh
    ./configure --prefix="$work/prefix" --disable-shared --enable-static --without-lz4 --without-lzo \
        CFLAGS="-Os -ffunction-sections -fdata-sections"
    make -j "${JOBS:-1}"
    make install
    # The runtime uses squashfuse's private headers too.
    install -m 644 ./*.h "$work/prefix/include/squashfuse/"
) >"$work/squashfuse.log" 2>&1 || { tail -30 "$work/squashfuse.log" >&2; exit 1; }

echo "== runtime"
runtime_src=$type2/src/runtime
# dlopen inside libfuse3 (optional file system modules, which the runtime never loads) draws a
# warning about static glibc; it is harmless here.
gcc -std=gnu99 -Os -D_FILE_OFFSET_BITS=64 -DGIT_COMMIT="\"$(cat "$runtime_src/version")\"" \
    -T "$runtime_src/data_sections.ld" -ffunction-sections -fdata-sections -Wl,--gc-sections -static \
    -I"$work/prefix/include/squashfuse" -I"$work/prefix/include" -I/usr/include/fuse3 \
    "$runtime_src/runtime.c" -L"$work/prefix/lib" \
    -lsquashfuse -lsquashfuse_ll -lzstd -lz -llzma -lfuse3 -lpthread -ldl \
    -o "$work/runtime" 2>&1 | grep -v -e "Using 'dlopen' in statically linked" -e "in function \`fuse_get_module'" || true
[[ -x $work/runtime ]] || { echo "FAIL: the runtime did not link" >&2; exit 1; }
strip --strip-debug --strip-unneeded "$work/runtime"
# The AppImage type 2 magic ("AI", 2) in the ELF header's padding, as the project's build does.
printf 'AI\x02' | dd of="$work/runtime" bs=1 count=3 seek=8 conv=notrunc status=none
mkdir -p "$(dirname "$out")"
cp "$work/runtime" "$out"
ls -l "$out"
