#!/usr/bin/env bash
# Install a real OpenClaw, and the Node it needs, into one local folder: no root, nothing global.
#
#   scripts/install_openclaw.sh [DIR]        (DIR: $BUTLER_OPENCLAW_PREFIX, else ~/.cache/butler-openclaw)
#
# OpenClaw 2026.9.x needs Node >= 24.16, and its preinstall step checks the Node it runs under. So Node 24
# is installed first, from the npm registry, and OpenClaw is installed with that Node first on PATH.
# About 800 MB. Then run the opt-in tests against it (they use a scratch HOME, never yours):
#
#   BUTLER_TEST_OPENCLAW=1 BUTLER_OPENCLAW_PREFIX=DIR .venv/bin/python -m pytest -m openclaw tests/e2e
#
# To use it by hand: PATH="DIR/node_modules/.bin:$PATH" HOME=/some/scratch openclaw --version
set -euo pipefail

OPENCLAW_VERSION="${OPENCLAW_VERSION:-2026.9.6}"
NODE_SPEC="${NODE_SPEC:-node@24}"
MIN_NODE_MAJOR=24
MIN_NODE_MINOR=16

dir="${1:-${BUTLER_OPENCLAW_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/butler-openclaw}}"
command -v npm >/dev/null || { echo "install_openclaw: npm is needed (any Node version will do to start)" >&2; exit 1; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
bin="$dir/node_modules/.bin"

echo "==> $NODE_SPEC into $dir"
npm install --prefix "$dir" --no-audit --no-fund "$NODE_SPEC"

# From here on, npm and OpenClaw's install scripts run under the Node just installed.
export PATH="$bin:$PATH"
version="$(node --version)"
IFS=. read -r major minor _ <<<"${version#v}"
if (( major < MIN_NODE_MAJOR || (major == MIN_NODE_MAJOR && minor < MIN_NODE_MINOR) )); then
  echo "install_openclaw: got Node $version from $bin; OpenClaw needs >= $MIN_NODE_MAJOR.$MIN_NODE_MINOR" >&2
  exit 1
fi

echo "==> openclaw@$OPENCLAW_VERSION with Node $version"
npm install --prefix "$dir" --no-audit --no-fund "openclaw@$OPENCLAW_VERSION"

echo "==> $("$bin/openclaw" --version)"
echo
echo "OpenClaw is in $bin. Run the opt-in tests with:"
echo "  BUTLER_TEST_OPENCLAW=1 BUTLER_OPENCLAW_PREFIX=$dir .venv/bin/python -m pytest -m openclaw tests/e2e"
