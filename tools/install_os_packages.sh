#!/bin/sh
# The OS packages the test suite drives, installed only when missing (safe to run again).
# One line per package: the command that proves it is there, then the Debian package.
set -eu

missing=""
need() {
    [ -e "$1" ] || missing="$missing $2"
}

need /usr/bin/chromium chromium

if [ -z "$missing" ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update
$SUDO apt-get install -y $missing
