#!/usr/bin/env bash
# What the tests need beyond Python packages, installed when missing (make test runs this):
# the OpenID Connect provider the sign-in tests start on loopback (npm, from its lock file).
set -euo pipefail
cd "$(dirname "$0")/.."

oidc=tests/web/oidc
if [ ! -d "$oidc/node_modules/oidc-provider" ]; then
    if ! command -v npm >/dev/null; then
        echo "the OIDC sign-in tests need Node.js and npm: apt-get install nodejs npm" >&2
        exit 1
    fi
    npm ci --prefix "$oidc" --no-audit --no-fund --loglevel=error
fi
