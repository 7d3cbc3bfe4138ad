#!/usr/bin/env bash
# Measures how long the app takes to show its window: launch → X window mapped → first
# painted frame (the window's pixels stop being uniform), in a virtual X server with a fresh
# settings folder and no model. Same packages as scripts/screenshot.sh.
#
#   scripts/startup-time.sh [RUNS]      (uses target/release/latent-studio; build it first)
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${1:-5}
BIN=${LATENT_STUDIO_BIN:-target/release/latent-studio}
DISPLAY_NUMBER=${SCREENSHOT_DISPLAY:-:96}
[[ -x $BIN ]] || { echo "no $BIN: run cargo build --release first" >&2; exit 1; }
for tool in Xvfb xdotool import convert; do
    command -v "$tool" >/dev/null || { echo "missing $tool (see scripts/screenshot.sh)" >&2; exit 1; }
done

WORK=$(mktemp -d)
XVFB_PID=
APP_PID=
cleanup() {
    [[ -n $APP_PID ]] && kill "$APP_PID" 2>/dev/null || true
    [[ -n $XVFB_PID ]] && kill "$XVFB_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
Xvfb "$DISPLAY_NUMBER" -screen 0 1280x820x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
export DISPLAY=$DISPLAY_NUMBER LIBGL_ALWAYS_SOFTWARE=1 WINIT_UNIX_BACKEND=x11
unset WAYLAND_DISPLAY
for _ in $(seq 50); do
    xdotool getdisplaygeometry >/dev/null 2>&1 && break
    sleep 0.1
done

now_ms() { date +%s%3N; }
for run in $(seq "$RUNS"); do
    export XDG_DATA_HOME="$WORK/data$run" XDG_CONFIG_HOME="$WORK/config$run" XDG_CACHE_HOME="$WORK/cache$run"
    started=$(now_ms)
    "$BIN" >"$WORK/app.log" 2>&1 &
    APP_PID=$!
    window=
    until [[ -n $window ]]; do
        window=$(xdotool search --onlyvisible --name '^Latent Studio$' 2>/dev/null | head -n1 || true)
        kill -0 "$APP_PID" 2>/dev/null || { cat "$WORK/app.log" >&2; exit 1; }
    done
    mapped=$(now_ms)
    until [[ $(import -window "$window" -format '%[fx:standard_deviation>0.01]' info: 2>/dev/null || echo 0) == 1 ]]; do
        :
    done
    painted=$(now_ms)
    echo "run $run: window mapped after $((mapped - started)) ms, first frame after $((painted - started)) ms"
    kill "$APP_PID"
    wait "$APP_PID" 2>/dev/null || true
    APP_PID=
done
