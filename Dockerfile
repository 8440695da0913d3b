# The `weir` image: one static-ish binary on a distroless base, run as non-root.
#
#   docker build -t weir:dev .
#
# Every subcommand runs from it (`xds-server`, `controllers`, `metrics-adapter`, ...); the
# Helm chart (charts/weir) passes the subcommand and flags.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin weir \
    && install -D -m 0755 target/release/weir /out/weir

# The injected init containers' image (`weir capture`, `weir bootstrap`): the same binary
# with Debian's iptables (nft and legacy backends), which capture drives. Build it with
#   docker build --target init -t <registry>/weir-init:<tag> .
# The chart's xdsServer.injection.initImage names it (default: <image.repository>-init).
FROM debian:bookworm-slim AS init
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/weir /usr/local/bin/weir
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["--help"]

# glibc and libgcc, CA certificates, no shell; uid 65532 ("nonroot"). The default target.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/weir /usr/local/bin/weir
USER 65532:65532
# xDS (gRPC), rate-limit service (gRPC), admin (/healthz, /readyz, /metrics), metrics APIs.
EXPOSE 18000 18081 18090 6443
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["--help"]
