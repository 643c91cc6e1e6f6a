#!/usr/bin/env bash
# Renders docs/architecture.dot (the module map) to docs/architecture.svg with Graphviz.
#   scripts/render-diagram.sh           writes docs/architecture.svg (commit it with the .dot)
#   scripts/render-diagram.sh --check   fails when the committed SVG differs from a fresh render
# Also run by the build's `diagram` target (cmake --build <dir> --target diagram).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v dot >/dev/null 2>&1 || { echo "render-diagram: Graphviz 'dot' not found (scripts/install-deps.sh --test)" >&2; exit 2; }
src=docs/architecture.dot
out=docs/architecture.svg
if [[ "${1:-}" == "--check" ]]; then
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    dot -Tsvg "$src" -o "$tmp"
    if ! cmp -s "$tmp" "$out"; then
        echo "render-diagram: $out is out of date with $src; run scripts/render-diagram.sh and commit it" >&2
        diff -u "$out" "$tmp" | head -20 >&2 || true
        exit 1
    fi
    exit 0
fi
dot -Tsvg "$src" -o "$out"
