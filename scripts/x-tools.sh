# Sourced by the scripts that drive the real window under Xvfb (screenshot.sh, window-cpu.sh).
#
#   require_x_tools [COMMAND:PACKAGE ...]
#
# makes sure Xvfb, xdotool and Mesa's software OpenGL (plus any extra command:package pairs)
# are installed, installing the missing ones with apt-get when run as root on Debian/Ubuntu.
require_x_tools() {
    local missing=() pair package
    for pair in Xvfb:xvfb xdotool:xdotool "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    for package in libgl1-mesa-dri libegl1; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing: ${missing[*]} (install them, e.g. sudo apt-get install -y ${missing[*]})" >&2
        exit 1
    fi
}
