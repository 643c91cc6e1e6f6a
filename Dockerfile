# switchboard container image: a build stage with the toolchain, a slim runtime
# stage with only the shared libraries the binary links.
#
#   docker build -t switchboard .
#   docker run --rm -p 8080:8080 -e SWITCHBOARD_REDIS_URL=redis://redis-host:6379/0 switchboard
#
# The image has no redis-server: SWITCHBOARD_REDIS_URL (or --redis) is required.

# ---- build -------------------------------------------------------------------
FROM debian:12-slim AS build
WORKDIR /src
# The same script the README and CI run (no drift between them and this image).
# Copied alone first so that the package layer is cached across source changes.
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN bash scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSB_WERROR=ON -DSB_E2E=OFF \
    && cmake --build /build --target switchboard -j"$(nproc)" \
    && strip --strip-debug /build/switchboard \
    && /build/switchboard --version

# ---- runtime -----------------------------------------------------------------
FROM debian:12-slim AS runtime
# Runtime libraries of the -dev packages in scripts/install-deps.sh (Debian 12
# names): h2o evloop (pulls libssl3, libwslay1, zlib1g), hiredis 0.14, jansson,
# libjwt 1.10. ca-certificates: webhooks to https:// URLs. No redis-server.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       libh2o-evloop0.13 libhiredis0.14 libjansson4 libjwt0 libssl3 libwslay1 zlib1g ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/switchboard /usr/local/bin/switchboard
# Fails the build when a library the binary needs is not installed above
# (the guard against drift from install-deps.sh's -dev list).
RUN if ldd /usr/local/bin/switchboard | grep 'not found'; then exit 1; fi \
    && groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin switchboard
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENV SWITCHBOARD_LISTEN=:8080
EXPOSE 8080
STOPSIGNAL SIGTERM
# Liveness through bash's /dev/tcp: the slim image has no curl or wget, and
# bash is already in it (installing curl would add ~10 packages to the attack
# surface for one probe). /healthz, not /readyz: a Redis outage is not a reason
# to restart the process. Assumes plain HTTP on HEALTHCHECK_PORT (default 8080);
# with --tls-cert, replace this HEALTHCHECK.
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${HEALTHCHECK_PORT:-8080} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 3 proto code rest <&3 && [[ $code == 200 ]]"]
ENTRYPOINT ["/usr/local/bin/switchboard"]
