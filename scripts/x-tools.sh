# Sourced by the scripts that drive the real window under Xvfb (screenshot.sh, window-cpu.sh).
#
#   require_x_tools [COMMAND:PACKAGE ...]
#
# makes sure Xvfb, xdotool and Mesa's software OpenGL (plus any extra command:package pairs)
# are installed, installing the missing ones with apt-get when run as root on Debian/Ubuntu.
source "$(dirname "${BASH_SOURCE[0]}")/require.sh"
require_x_tools() {
    require Xvfb:xvfb xdotool:xdotool dpkg:libgl1-mesa-dri dpkg:libegl1 "$@"
}
