#!/usr/bin/env bash
# Builds the dashboard's vendor/ folder: installs the npm packages pinned by
# dashboard-static/package-lock.json (npm ci, only when node_modules is missing
# or older than the lock file) and copies the few browser files the page loads
# into dashboard-static/vendor/, so /dashboard/ serves everything itself (no CDN:
# air-gapped clusters). vendor/ is generated and not in git.
#   scripts/build-dashboard.sh            install when needed, then copy
#   scripts/build-dashboard.sh --force    always run npm ci first
set -euo pipefail
cd "$(dirname "$0")/../dashboard-static"

# package -> files under node_modules/<package>/ that the page needs
files=(
    uplot/dist/uPlot.iife.min.js
    uplot/dist/uPlot.min.css
    socket.io-client/dist/socket.io.min.js
)

# npm ci writes node_modules/.package-lock.json; older than the lock means the
# lock changed since the last install (a pull, a version bump).
stamp=node_modules/.package-lock.json
need_ci=0
if [[ "${1:-}" == "--force" || ! -f "$stamp" || package-lock.json -nt "$stamp" ]]; then
    need_ci=1
fi
for f in "${files[@]}"; do
    [[ -f "node_modules/$f" ]] || need_ci=1
done
if ((need_ci)); then
    command -v npm >/dev/null || { echo "build-dashboard: npm is needed (apt-get install npm)" >&2; exit 1; }
    npm ci --no-audit --no-fund --loglevel=error
    touch "$stamp"
fi

# Copied into a fresh folder and swapped in, so a running server never serves
# a half-written vendor/.
tmp=$(mktemp -d vendor.tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
for f in "${files[@]}"; do
    [[ -f "node_modules/$f" ]] || { echo "build-dashboard: node_modules/$f is missing after npm ci" >&2; exit 1; }
    install -m 0644 "node_modules/$f" "$tmp/$(basename "$f")"
done
chmod 0755 "$tmp"
rm -rf vendor
mv "$tmp" vendor
trap - EXIT
echo "build-dashboard: $(ls vendor | tr '\n' ' ')-> $(pwd)/vendor/"
