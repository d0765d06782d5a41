#!/bin/sh
# OS packages the test suite starts as real servers or drives (the browser tests' Chromium). Each line: the binary the tests look for,
# then the Debian package that brings it. Installs only what is missing, so it is safe to re-run;
# without root or apt-get it says what is missing and the tests that need it skip with a reason.
set -eu

PACKAGES="
influxd influxdb
chromium chromium
"

missing=""
for binary_and_package in $(echo "$PACKAGES" | tr ' ' ':'); do
    binary=${binary_and_package%%:*}
    package=${binary_and_package#*:}
    [ -n "$binary" ] || continue
    command -v "$binary" >/dev/null 2>&1 || missing="$missing $package"
done
[ -n "$missing" ] || exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "not installed:$missing (needs root and apt-get); the tests that use them skip" >&2
    exit 0
fi
echo "installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $missing
