#!/bin/sh
# Builds the load generator (sbload), the frame-only floor server and pagefault into $1.
#   tests/load/build.sh /tmp/sbload-bin [extra CFLAGS...]
# Needs gcc, pkg-config, libevent 2.1, OpenSSL and hiredis (all in scripts/install-deps.sh).
set -eu
out=${1:?usage: build.sh OUTDIR [CFLAGS...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
CC=${CC:-gcc}
CFLAGS="-std=c11 -O2 -g -Wall -Wextra -Werror $*"
ev=$(pkg-config --cflags --libs libevent)
ssl=$(pkg-config --cflags --libs libcrypto)
hr=$(pkg-config --cflags --libs hiredis)
# shellcheck disable=SC2086
$CC $CFLAGS -o "$out/sbload" "$here/sbload.c" "$here/lg_client.c" "$here/lg_backend.c" "$here/lg_rest.c" \
    "$here/lg_stats.c" $ev $ssl $hr
# shellcheck disable=SC2086
$CC $CFLAGS -o "$out/floor" "$here/floor.c" $ssl
$CC $CFLAGS -o "$out/pagefault" "$here/pagefault.c"
