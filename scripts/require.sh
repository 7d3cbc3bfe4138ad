# Sourced by the scripts that need tools from Debian's packages.
#
#   require [COMMAND:PACKAGE ...] [dpkg:PACKAGE ...]
#
# makes sure each COMMAND is on the PATH (or, for Wine's, in /usr/lib/wine) and each dpkg:PACKAGE
# is installed, installing the missing packages with apt-get when run as root on Debian/Ubuntu;
# otherwise it names them and exits.
require() {
    local missing=() pair command package
    for pair in "$@"; do
        command=${pair%%:*} package=${pair#*:}
        if [[ $command == dpkg ]]; then
            dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
        else
            command -v "$command" >/dev/null || [[ -x /usr/lib/wine/$command ]] || missing+=("$package")
        fi
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
