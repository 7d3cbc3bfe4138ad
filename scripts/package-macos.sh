#!/usr/bin/env bash
# Builds "Latent Studio.app" with cargo-bundle from [package.metadata.bundle] in Cargo.toml and
# checks what it made: Info.plist's keys and the icon's sizes (256, 512 and 512@2x px).
#
#   scripts/package-macos.sh    # on a Mac (Apple silicon): a dist-profile build with Metal
#                               #   → target/dist/bundle/osx/Latent Studio.app
#   scripts/package-macos.sh    # elsewhere: only checks the bundle description, packing this
#                               #   machine's target/debug binary (not a Mac program) into
#                               #   target/debug/bundle/osx/ — how it was checked on Linux
#
# cargo-bundle is installed when missing, at the version this description is written for (its
# settings are checked strictly: a key it does not know fails the build). JOBS=1 by default.
set -euo pipefail

cd "$(dirname "$0")/.."
JOBS=${JOBS:-1}
CARGO_BUNDLE_VERSION=0.12.0
if ! cargo bundle --version 2>/dev/null | grep -q "v$CARGO_BUNDLE_VERSION"; then
    cargo install cargo-bundle --version "$CARGO_BUNDLE_VERSION" --locked -j "$JOBS"
fi

if [[ $(uname -s) == Darwin ]]; then
    CARGO_BUILD_JOBS=$JOBS cargo bundle --profile dist --features metal --format osx
    app="target/dist/bundle/osx/Latent Studio.app"
else
    [[ -x target/debug/latent-studio ]] || cargo build -j "$JOBS" --bin latent-studio
    rm -rf "target/debug/bundle/osx/Latent Studio.app"
    cargo bundle --format osx --binary-path target/debug/latent-studio
    app="target/debug/bundle/osx/Latent Studio.app"
fi

plist="$app/Contents/Info.plist"
echo "== $plist"
for entry in CFBundleExecutable:latent-studio CFBundleIdentifier:io.github.latent-studio \
    CFBundleName:"Latent Studio" LSMinimumSystemVersion:11.0 NSHighResolutionCapable: \
    CFBundleShortVersionString:"$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"; do
    key=${entry%%:*} value=${entry#*:}
    grep -A1 "<key>$key</key>" "$plist" | grep -q "${value:-<true/>}" ||
        { echo "FAIL: Info.plist has no $key = ${value:-true}" >&2; exit 1; }
    echo "   $key = ${value:-true}"
done
[[ -x $app/Contents/MacOS/latent-studio ]] || { echo "FAIL: no executable in the bundle" >&2; exit 1; }

# The icns file's images by their type tags: ic08 = 256 px, ic09 = 512 px, ic10 = 512 px @2x.
icns="$app/Contents/Resources/Latent Studio.icns"
echo "== $icns"
for type in ic08 ic09 ic10; do
    LC_ALL=C grep -qa "$type" "$icns" || { echo "FAIL: the icon has no $type image" >&2; exit 1; }
    echo "   $type"
done
echo "PASS: $app"
