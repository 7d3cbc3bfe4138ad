#!/usr/bin/env bash
# Builds dist/Latent_Studio-VERSION-x86_64.AppImage — one file that runs on most x86-64 Linux
# desktops without installing — and checks it: unpacks it, runs its `--version` and a
# `generate` on the tiny SD 1.x fixture (the image must equal the one from the binary it packs),
# mounts it through FUSE where this machine allows, and validates its desktop entry and AppStream
# metadata.
#
#   APPIMAGE_RUNTIME=runtime-x86_64 scripts/package-appimage.sh           # a dist-profile build
#   APPIMAGE_RUNTIME=… NO_BUILD=1 BINARY=target/release/latent-studio scripts/package-appimage.sh
#
# APPIMAGE_RUNTIME is the AppImage type 2 runtime: runtime-x86_64 from the releases of
# AppImage/type2-runtime on GitHub, or one built offline by scripts/appimage-runtime.sh (the
# default path, dist/runtime-x86_64, is where that script writes it). An AppImage is that runtime
# followed by a SquashFS image of the AppDir (mksquashfs, from squashfs-tools) — exactly what
# appimagetool writes, without needing appimagetool.
#
# The binary links only glibc (libGL/EGL, X11/Wayland and xkbcommon are opened at run time from
# the host, as every desktop has them): it runs on distributions whose glibc is at least the
# build machine's (printed below), so build releases on the oldest one to support.
set -euo pipefail

cd "$(dirname "$0")/.."
JOBS=${JOBS:-1}
RUNTIME=${APPIMAGE_RUNTIME:-dist/runtime-x86_64}
[[ -f $RUNTIME ]] || {
    echo "no AppImage runtime at $RUNTIME: download runtime-x86_64 from AppImage/type2-runtime's" \
        "releases, or build one with scripts/appimage-runtime.sh, and pass it as APPIMAGE_RUNTIME" >&2
    exit 2
}
[[ $(head -c 11 "$RUNTIME" | tail -c 3 | od -An -c | tr -d ' ') == 'AI002' ]] ||
    { echo "$RUNTIME is not an AppImage type 2 runtime (no 'AI' 2 at byte 8)" >&2; exit 2; }

source scripts/require.sh
require mksquashfs:squashfs-tools compare:imagemagick desktop-file-validate:desktop-file-utils \
    appstreamcli:appstream objdump:binutils

BINARY=${BINARY:-target/dist/latent-studio}
if [[ -z ${NO_BUILD:-} ]]; then
    # The dist profile (Cargo.toml): LTO, one codegen unit, stripped — what users get.
    cargo build -j "$JOBS" --profile dist --bin latent-studio
fi
[[ -x $BINARY ]] || { echo "no binary at $BINARY (build it, or set BINARY)" >&2; exit 2; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
glibc=$(objdump -T "$BINARY" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
echo "== packing $BINARY ($("$BINARY" --version); needs ${glibc/_/ } or newer)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
appdir=$work/AppDir
install -Dm755 "$BINARY" "$appdir/usr/bin/latent-studio"
install -Dm644 assets/linux/latent-studio.desktop "$appdir/usr/share/applications/latent-studio.desktop"
install -Dm644 assets/linux/io.github.latent_studio.metainfo.xml \
    "$appdir/usr/share/metainfo/io.github.latent_studio.metainfo.xml"
install -Dm644 assets/latent-studio.png "$appdir/usr/share/icons/hicolor/256x256/apps/latent-studio.png"
install -Dm644 assets/latent-studio.svg "$appdir/usr/share/icons/hicolor/scalable/apps/latent-studio.svg"
# The AppDir's top level, as the AppImage spec asks: the entry point, the desktop entry the
# desktop integrators (appimaged, Gear Lever, AppImageLauncher) read, and the icon it names.
ln -s usr/bin/latent-studio "$appdir/AppRun"
ln -s usr/share/applications/latent-studio.desktop "$appdir/latent-studio.desktop"
ln -s usr/share/icons/hicolor/256x256/apps/latent-studio.png "$appdir/latent-studio.png"
ln -s latent-studio.png "$appdir/.DirIcon"

mkdir -p dist
appimage=dist/Latent_Studio-$version-x86_64.AppImage
# zstd, 1 MiB blocks: what appimagetool uses; files root-owned whoever builds it.
mksquashfs "$appdir" "$work/image.squashfs" -root-owned -noappend -comp zstd -b 1M -quiet >/dev/null
cat "$RUNTIME" "$work/image.squashfs" >"$appimage.part"
chmod 755 "$appimage.part"
mv "$appimage.part" "$appimage"
echo "   $appimage: $(du -h "$appimage" | cut -f1) (binary $(du -h "$BINARY" | cut -f1))"

echo "== unpacking it (--appimage-extract)"
(cd "$work" && "$OLDPWD/$appimage" --appimage-extract >/dev/null)
root=$work/squashfs-root
cmp "$root/usr/bin/latent-studio" "$BINARY" || { echo "FAIL: the packed binary differs" >&2; exit 1; }
for file in AppRun latent-studio.desktop latent-studio.png .DirIcon; do
    [[ -e $root/$file ]] || { echo "FAIL: $file is missing from the AppDir" >&2; exit 1; }
done
desktop-file-validate "$root/latent-studio.desktop"
appstreamcli validate --no-net "$root/usr/share/metainfo/io.github.latent_studio.metainfo.xml"

echo "== running it (--appimage-extract-and-run: no FUSE needed)"
expected=$("$BINARY" --version)
got=$(APPIMAGE_EXTRACT_AND_RUN=1 "$appimage" --version)
[[ $got == "$expected" ]] || { echo "FAIL: --version said '$got', expected '$expected'" >&2; exit 1; }
echo "   --version: $got"
args=(generate --model tests/fixtures/models/sd1 --prompt "a red fox in the snow" --width 64
    --height 64 --steps 4 --seed 7)
"$BINARY" "${args[@]}" --output "$work/direct.png" >/dev/null 2>"$work/direct.log" ||
    { cat "$work/direct.log" >&2; exit 1; }
APPIMAGE_EXTRACT_AND_RUN=1 "$appimage" "${args[@]}" --output "$work/appimage.png" >/dev/null \
    2>"$work/appimage.log" || { cat "$work/appimage.log" >&2; exit 1; }
differing=$(compare -metric AE "$work/direct.png" "$work/appimage.png" null: 2>&1 || true)
[[ $differing == 0 ]] || { echo "FAIL: $differing pixels differ from the binary's image" >&2; exit 1; }
echo "   generate: the same image as the binary it packs (0 pixels differ)"

# The usual way an AppImage runs: mounted through FUSE. Containers often have no FUSE; then the
# check above stands alone.
if [[ -e /dev/fuse ]] && { command -v fusermount3 || command -v fusermount; } >/dev/null; then
    echo "== running it mounted through FUSE"
    if got=$("$appimage" --version 2>"$work/fuse.err"); then
        [[ $got == "$expected" ]] || { echo "FAIL: mounted, --version said '$got'" >&2; exit 1; }
        echo "   --version: $got"
    else
        echo "   FUSE is not usable here ($(tail -1 "$work/fuse.err")); checked without it"
    fi
fi
echo "PASS: $appimage runs"
