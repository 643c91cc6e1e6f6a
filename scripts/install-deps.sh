#!/usr/bin/env bash
# Installs what building, running and testing switchboard needs on Debian 12.
# Used by the README's quick start, by CI (.ci/run) and by the Dockerfile, so
# the three never drift. Installs only what is missing; safe to run again.
#   scripts/install-deps.sh            build + run dependencies
#   scripts/install-deps.sh --test     also what the tests need (node, npm, cmocka)
set -euo pipefail

want=(build-essential cmake pkg-config libh2o-evloop-dev libwslay-dev libssl-dev libhiredis-dev
      libjansson-dev libjwt-dev libevent-dev uuid-dev redis-server openssl)
if [[ "${1:-}" == "--test" ]]; then
    # cmocka: unit tests; prometheus: promtool checks /metrics; chromium: the dashboard's browser test;
    # clang: the libFuzzer targets; gcovr: scripts/coverage.sh; clang-tidy, cppcheck: scripts/lint.sh; clang-format: scripts/format.sh;
    # valgrind: scripts/valgrind.sh; graphviz: docs/architecture.svg (scripts/render-diagram.sh), whose text is
    # measured with fonts-liberation (the font fontconfig picks for Helvetica): the committed SVG depends on it.
    want+=(libcmocka-dev prometheus chromium clang gcovr clang-tidy cppcheck clang-format valgrind graphviz fonts-liberation)
    command -v node >/dev/null 2>&1 || want+=(nodejs)
    command -v npm >/dev/null 2>&1 || want+=(npm)
fi

missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    echo "installing: ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
