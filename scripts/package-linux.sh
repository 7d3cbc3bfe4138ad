#!/usr/bin/env bash
# Builds the Debian/Ubuntu package (dist/latent-studio_VERSION-1_amd64.deb) with cargo-deb from
# [package.metadata.deb] in Cargo.toml, then checks it without touching the system: installs it
# with dpkg into a scratch root, runs the installed `latent-studio --version`, validates the
# desktop entry and, as root with apt, asks apt whether its dependencies resolve here.
#
#   scripts/package-linux.sh             # a dist-profile build (Cargo.toml), ~30 min clean on 2 cores
#   NO_BUILD=1 scripts/package-linux.sh  # package target/dist/latent-studio as it is
#
# Needs cargo-deb (installed with `cargo install cargo-deb --locked` when missing) and
# dpkg-dev (dpkg-shlibdeps, for the library dependencies); desktop-file-validate is used when
# present. JOBS=1 by default, like every build on the shared machines.
set -euo pipefail

cd "$(dirname "$0")/.."
JOBS=${JOBS:-1}
mkdir -p dist

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked -j "$JOBS"

build=(-- -j "$JOBS")
[[ -n ${NO_BUILD:-} ]] && build=(--no-build)
# The dist profile (Cargo.toml): LTO, one codegen unit, stripped — what users get.
cargo deb --profile dist --output dist/ "${build[@]}"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=dist/latent-studio_${version}-1_amd64.deb
[[ -f $deb ]] || { echo "FAIL: $deb was not made" >&2; exit 1; }
echo "== $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"

echo "== installing into a scratch root with dpkg"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
# The scratch root has none of the dependencies (libc, libGL, …): they are checked with apt below.
not_root=()
[[ $(id -u) -eq 0 ]] || not_root=(--force-not-root)
dpkg --root="$root" --log=/dev/null --force-depends "${not_root[@]}" -i "$deb"
dpkg --root="$root" -s latent-studio | grep -E '^(Status|Version):'

installed_version=$("$root/usr/bin/latent-studio" --version)
echo "   installed: $installed_version"
# A fresh build names this checkout's commit; with NO_BUILD the binary is packaged as it is,
# so only the version is checked.
expected="latent-studio $version ($(git rev-parse --short=10 HEAD 2>/dev/null || echo unknown commit))"
[[ -n ${NO_BUILD:-} ]] && expected="latent-studio $version ("
[[ $installed_version == "$expected"* ]] ||
    { echo "FAIL: expected '$expected'" >&2; exit 1; }
for file in usr/share/applications/latent-studio.desktop \
    usr/share/metainfo/io.github.latent_studio.metainfo.xml \
    usr/share/icons/hicolor/256x256/apps/latent-studio.png \
    usr/share/icons/hicolor/scalable/apps/latent-studio.svg; do
    [[ -f $root/$file ]] || { echo "FAIL: $file is not in the package" >&2; exit 1; }
done
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$root/usr/share/applications/latent-studio.desktop"
    echo "   desktop entry valid"
fi
if command -v appstreamcli >/dev/null; then
    appstreamcli validate --no-net "$root/usr/share/metainfo/io.github.latent_studio.metainfo.xml"
fi
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "== apt-get install --simulate (do its dependencies resolve on this system?)"
    apt-get install --simulate --no-install-recommends -q "./$deb" | grep -E '^(Inst|Conf) ' || true
fi
echo "PASS: $deb installs and runs"
