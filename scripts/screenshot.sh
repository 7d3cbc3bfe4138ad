#!/usr/bin/env bash
# Takes the README screenshot (assets/screenshot.png): the real binary in a virtual X server
# with the tiny SD-Turbo fixture, a few prompts typed with xdotool and generated with
# Ctrl+Enter, then a capture of the screen.
#
#   scripts/screenshot.sh [OUTPUT.png]
#
# Needs Xvfb, xdotool, ImageMagick and Mesa's software OpenGL; installs them with apt-get
# when run as root on Debian/Ubuntu. Set LATENT_STUDIO_BIN to use an already built binary.
set -euo pipefail

cd "$(dirname "$0")/.."
OUTPUT=${1:-assets/screenshot.png}
WIDTH=1280
HEIGHT=820
DISPLAY_NUMBER=${SCREENSHOT_DISPLAY:-:97}

source scripts/x-tools.sh
require_x_tools import:imagemagick

BIN=${LATENT_STUDIO_BIN:-}
if [[ -z $BIN ]]; then
    cargo build --quiet
    BIN=target/debug/latent-studio
fi

WORK=$(mktemp -d)
APP_PID=
XVFB_PID=
cleanup() {
    [[ -n $APP_PID ]] && kill "$APP_PID" 2>/dev/null || true
    [[ -n $XVFB_PID ]] && kill "$XVFB_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

Xvfb "$DISPLAY_NUMBER" -screen 0 "${WIDTH}x${HEIGHT}x24" -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
export DISPLAY=$DISPLAY_NUMBER
for _ in $(seq 50); do
    xdotool getdisplaygeometry >/dev/null 2>&1 && break
    sleep 0.1
done

# A settings folder of its own, so the shot does not depend on (or change) the user's.
export XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config" XDG_CACHE_HOME="$WORK/cache"
export LIBGL_ALWAYS_SOFTWARE=1 WINIT_UNIX_BACKEND=x11
unset WAYLAND_DISPLAY
"$BIN" --model tests/fixtures/models/sd_turbo --output-dir "$WORK/images" >"$WORK/app.log" 2>&1 &
APP_PID=$!

window=
for _ in $(seq 100); do
    window=$(xdotool search --name '^Latent Studio$' 2>/dev/null | head -n1 || true)
    [[ -n $window ]] && break
    kill -0 "$APP_PID" 2>/dev/null || { cat "$WORK/app.log" >&2; exit 1; }
    sleep 0.2
done
if [[ -z $window ]]; then
    echo "the window did not appear" >&2
    cat "$WORK/app.log" >&2
    exit 1
fi
# No window manager: place and size the window by hand, and give it the keyboard.
xdotool windowmove "$window" 0 0 windowsize "$window" "$WIDTH" "$HEIGHT"
xdotool windowfocus --sync "$window" 2>/dev/null || xdotool windowfocus "$window"
sleep 3  # the model loads in the background

# A few images for the history strip, then the one on screen. The prompt has the keyboard
# from the start; Ctrl+A selects its text so each prompt replaces the last.
for prompt in \
    "a red fox in fresh snow, golden hour" \
    "an isometric cottage in a pine forest, soft light" \
    "a lighthouse on a cliff at dusk, dramatic clouds, oil painting"; do
    xdotool key --window "$window" ctrl+a
    xdotool type --window "$window" --delay 15 "$prompt"
    xdotool key --window "$window" ctrl+Return
    sleep 4
done
# Let the window repaint with the final state.
xdotool mousemove 700 300
sleep 2

mkdir -p "$(dirname "$OUTPUT")"
import -window root "$OUTPUT"
echo "wrote $OUTPUT"
