#!/usr/bin/env bash
# Cross-builds latent-studio.exe for 64-bit Windows and runs `latent-studio.exe generate` under
# Wine on the tiny SD 1.x fixture model, then checks that its PNG has the same pixels as the
# Linux binary's for the same arguments (at most 1/255 apart; the two use the same Rust code, so
# any difference would come from the C library's maths). The output goes to a folder whose name
# has spaces and non-ASCII characters, as Windows users' folders often do.
#
#   scripts/windows-check.sh                 # the dev profile (what the tests use)
#   PROFILE=release scripts/windows-check.sh  # or any profile in Cargo.toml
#
# Needs rustup's x86_64-pc-windows-gnu target, Debian's mingw-w64 and wine (installed here with
# rustup/apt-get when run as root). Not part of `cargo test` / CI: the first cross-build of every
# dependency took 19.5 min (debug, -j 1, 2 shared cores; 2026-12-04), then ~75 s for our crate
# alone. Builds into target-windows/ (JOBS=1 by default, like every build on the shared machines).
#
# Measured 2026-12-04 (Wine 8.0, debug): the images were identical (0 pixels differ), generate
# printed its progress through the parent console, and the run took ~1 s.
set -euo pipefail

cd "$(dirname "$0")/.."
PROFILE=${PROFILE:-dev}
JOBS=${JOBS:-1}
TARGET=x86_64-pc-windows-gnu
WIN_TARGET_DIR=${WIN_TARGET_DIR:-target-windows}

source scripts/require.sh
require x86_64-w64-mingw32-gcc:gcc-mingw-w64-x86-64 wine:wine wine64:wine64 compare:imagemagick \
    wrestool:icoutils
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

# Cargo puts the dev profile's output in debug/, every other profile's under its own name.
profile_dir=$PROFILE
[[ $PROFILE == dev ]] && profile_dir=debug

echo "== cross-building latent-studio.exe ($PROFILE)"
start=$(date +%s)
cargo build -j "$JOBS" --profile "$PROFILE" --target "$TARGET" --bin latent-studio \
    --target-dir "$WIN_TARGET_DIR"
echo "   took $(($(date +%s) - start)) s"
EXE_DIR=$WIN_TARGET_DIR/$TARGET/$profile_dir
EXE=$EXE_DIR/latent-studio.exe
ls -l "$EXE"

echo "== building the Linux binary ($PROFILE)"
cargo build -j "$JOBS" --profile "$PROFILE" --bin latent-studio
LINUX_BIN=${CARGO_TARGET_DIR:-target}/$profile_dir/latent-studio

# build.rs embeds the icon, the version block and the manifest (assets/windows/); wrestool
# (icoutils) lists an exe's resources: 14 = icon group, 16 = version, 24 = manifest.
echo "== resources in latent-studio.exe"
resources=$(wrestool -l "$EXE")
echo "$resources" | sed 's/^/   /'
for type in 14 16 24; do
    grep -q -- "--type=$type " <<<"$resources" ||
        { echo "FAIL: latent-studio.exe has no resource of type $type" >&2; exit 1; }
done
wrestool -x --raw --type=24 "$EXE" | grep -q '<longPathAware[^>]*>true</longPathAware>' ||
    { echo "FAIL: the embedded manifest does not declare longPathAware" >&2; exit 1; }

# Wine 8 (Debian 12) has no bcryptprimitives.dll, whose ProcessPrng Rust's std imports.
echo "== building the bcryptprimitives.dll stand-in for Wine"
x86_64-w64-mingw32-gcc -shared -O2 -o "$EXE_DIR/bcryptprimitives.dll" \
    scripts/windows/bcryptprimitives.c scripts/windows/bcryptprimitives.def -ladvapi32

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export WINEPREFIX=$WORK/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
# No window: Wine's console programs need no display.
unset DISPLAY WAYLAND_DISPLAY
echo "== creating a Wine prefix"
wineboot -i >/dev/null 2>&1 || true

OUT_DIR="$WORK/Bilder mit Leerzeichen – Ünïcödé 画像"
mkdir -p "$OUT_DIR"
GENERATE=(generate --prompt "a red fox in the snow, photo" --negative-prompt blurry
    --steps 4 --guidance 7.5 --seed 42 --width 64 --height 64)

echo "== Linux: latent-studio ${GENERATE[*]}"
"$LINUX_BIN" "${GENERATE[@]}" --model tests/fixtures/models/sd1 --output "$OUT_DIR/linux.png"

win_model=$(winepath -w "$PWD/tests/fixtures/models/sd1")
win_out=$(winepath -w "$OUT_DIR/windows.png")
echo "== Wine: latent-studio.exe ${GENERATE[*]} --output $win_out"
start=$(date +%s)
wine "$EXE" "${GENERATE[@]}" --model "$win_model" --output "$win_out" | tee "$WORK/wine-stdout.txt"
echo "   took $(($(date +%s) - start)) s"
[[ -s $WORK/wine-stdout.txt ]] || { echo "FAIL: latent-studio.exe generate printed nothing" >&2; exit 1; }
echo "== Wine: latent-studio.exe --version"
wine "$EXE" --version

differing=$(compare -metric AE "$OUT_DIR/linux.png" "$OUT_DIR/windows.png" null: 2>&1 || true)
peak=$(compare -metric PAE "$OUT_DIR/linux.png" "$OUT_DIR/windows.png" null: 2>&1 || true)
# PAE prints "QUANTUM (FRACTION)"; the fraction of full scale is what 1/255 is compared with.
peak_fraction=$(sed -n 's/.*(\(.*\)).*/\1/p' <<<"$peak")
echo "== pixels: $differing differ; largest difference $peak_fraction of full scale"
if awk -v p="${peak_fraction:-1}" 'BEGIN { exit !(p <= 1 / 255 + 1e-9) }'; then
    echo "PASS: the Windows image equals the Linux one within 1/255"
else
    echo "FAIL: the Windows image differs from the Linux one by more than 1/255" >&2
    exit 1
fi
