#!/usr/bin/env bash
# Measures what the window costs while the engine generates: the real binary under Xvfb with
# Mesa's software renderer (as on a CPU-only remote desktop), one generation started with
# Ctrl+Enter, and the CPU time of every thread read from /proc over the run. The window's
# share is its UI thread plus the renderer's llvmpipe threads; the goal is < 10 % of one core.
#
#   scripts/window-cpu.sh [sd1|sd_turbo] [SAMPLE_SIZE]
#
# prints the CPU time per group of threads and the verdict. The model is a tiny fixture with
# its UNet's sample_size raised (default: sd1 at 64, a 512² image in 25 guided steps;
# `sd_turbo 128` is a one-step 1024² Turbo run, the case where the window used to cost most),
# so that the run lasts long enough to measure.
# Needs Xvfb, xdotool and Mesa (installed with apt-get when run as root). Set
# LATENT_STUDIO_BIN to use an already built binary (default: target/release/latent-studio).
set -euo pipefail

cd "$(dirname "$0")/.."
DISPLAY_NUMBER=${WINDOW_CPU_DISPLAY:-:96}

source scripts/x-tools.sh
require_x_tools

BIN=${LATENT_STUDIO_BIN:-}
if [[ -z $BIN ]]; then
    cargo build --release --quiet
    BIN=target/release/latent-studio
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

MODEL=${1:-sd1}
SAMPLE_SIZE=${2:-64}
cp -r "tests/fixtures/models/$MODEL" "$WORK/model"
sed -i "s/\"sample_size\": [0-9]*/\"sample_size\": $SAMPLE_SIZE/" "$WORK/model/unet/config.json"

Xvfb "$DISPLAY_NUMBER" -screen 0 1280x820x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
XVFB_PID=$!
export DISPLAY=$DISPLAY_NUMBER
for _ in $(seq 50); do
    xdotool getdisplaygeometry >/dev/null 2>&1 && break
    sleep 0.1
done
export XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config" XDG_CACHE_HOME="$WORK/cache"
export LIBGL_ALWAYS_SOFTWARE=1 WINIT_UNIX_BACKEND=x11
unset WAYLAND_DISPLAY
"$BIN" --model "$WORK/model" --output-dir "$WORK/images" >"$WORK/app.log" 2>&1 &
APP_PID=$!

window=
for _ in $(seq 100); do
    window=$(xdotool search --name '^Latent Studio$' 2>/dev/null | head -n1 || true)
    [[ -n $window ]] && break
    kill -0 "$APP_PID" 2>/dev/null || { cat "$WORK/app.log" >&2; exit 1; }
    sleep 0.2
done
[[ -n $window ]] || { echo "the window did not appear" >&2; exit 1; }
xdotool windowmove "$window" 0 0 windowsize "$window" 1280 820
xdotool windowfocus --sync "$window" 2>/dev/null || xdotool windowfocus "$window"
sleep 3  # the model loads in the background
xdotool type --window "$window" --delay 15 "a lighthouse at dusk"
# The pointer rests away from the window's widgets: no hover repaints.
xdotool mousemove 1279 819
sleep 1

# utime + stime (clock ticks) per thread, as "tid name ticks".
snapshot() {
    for stat in /proc/"$APP_PID"/task/*/stat; do
        awk '{ s = $0; sub(/^[0-9]+ \(/, "", s); name = substr(s, 1, index(s, ") ") - 1);
               sub(/^.*\) /, "", s); split(s, f, " ");
               print FILENAME, name, f[12] + f[13] }' "$stat" 2>/dev/null || true
    done | sed -E 's#/proc/[0-9]+/task/([0-9]+)/stat#\1#'
}

before=$(snapshot)
start=$(date +%s.%N)
xdotool key --window "$window" ctrl+Return
for _ in $(seq 1200); do
    compgen -G "$WORK/images/*.png" >/dev/null && break
    sleep 0.1
done
end=$(date +%s.%N)
after=$(snapshot)
compgen -G "$WORK/images/*.png" >/dev/null || { echo "no image after 120 s" >&2; cat "$WORK/app.log" >&2; exit 1; }

ticks=$(getconf CLK_TCK)
wall=$(echo "$end - $start" | bc -l)
# Threads started during the run (the engine's pool starts lazily) count from zero.
awk -v main="$APP_PID" -v hz="$ticks" -v wall="$wall" '
    FNR == NR { before[$1] = $3; next }
    { used = ($3 - before[$1]) / hz
      group = ($1 == main) ? "ui thread" : ($2 ~ /^llvmpipe/ ? "renderer (llvmpipe)" : "engine and others")
      total[group] += used }
    END {
      printf "generation wall time %.1f s\n", wall
      for (g in total) printf "%-22s %6.2f s CPU = %5.1f %% of one core\n", g, total[g], 100 * total[g] / wall
      ui = total["ui thread"] + total["renderer (llvmpipe)"]
      printf "window (ui + renderer): %.1f %% of one core (goal < 10 %%)\n", 100 * ui / wall
    }' <(echo "$before") <(echo "$after")
