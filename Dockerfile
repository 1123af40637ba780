# syntax=docker/dockerfile:1
# Build:  docker build -t apitoken-exporter .
# Run:    docker run -p 9877:9877 -e JIRA_CI_TOKEN=... \
#           -v "$PWD/config.yaml:/etc/apitoken-exporter/config.yaml:ro" apitoken-exporter
#
# The build command above is the one README.md shows (tests/dockerfile.rs checks both, and
# checks this file's flags against `apitoken_exporter --help`). Needs BuildKit (the default
# builder since Docker 23; podman/buildah support it too) for the cache mounts and --chmod.

FROM rust:1-slim-bookworm AS build
# jemalloc, the global allocator (src/main.rs), is compiled from C with configure + make;
# the slim image has gcc but not make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace: the exporter (src/) and the simulator crate (sim/), which the
# default feature `demo` builds in for the `demo` subcommand.
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds, so a
# change to src/ or sim/ recompiles only the workspace's crates. Sources keep their mtime
# from the build context, which can be older than the cached artifacts: touching them stops
# cargo from reusing a stale build of them. The binary leaves the cached target/ in the
# same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find src sim -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin apitoken_exporter \
 && install -D -m 0755 target/release/apitoken_exporter /out/apitoken_exporter

# Distroless "cc": glibc and libgcc for the Rust binary, CA certificates, no shell or
# package manager; the same Debian 12 as the build stage, so the glibc versions match.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="apitoken-exporter" \
      org.opencontainers.image.description="Prometheus exporter that watches Atlassian API tokens: expiry, validity and silent anonymous fallback" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/apitoken_exporter /usr/local/bin/apitoken_exporter
# The documented example config as the default; mount your own over this path.
COPY --chmod=0444 config.yaml /etc/apitoken-exporter/config.yaml
# Distroless has no HTTP client for the health check; a statically linked busybox (~1 MB)
# provides `wget`. It speaks plain HTTP only: with TLS enabled through --web.config.file,
# run the container with --no-healthcheck (or your orchestrator's own probe).
COPY --from=busybox:1.36.1-musl /bin/busybox /usr/local/bin/busybox

# 65532 is distroless's "nonroot"; numeric so Kubernetes runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9877
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/busybox", "wget", "-q", "-T", "3", "-O", "/dev/null", "http://127.0.0.1:9877/-/healthy"]

ENTRYPOINT ["/usr/local/bin/apitoken_exporter"]
CMD ["--config.file=/etc/apitoken-exporter/config.yaml", "--web.listen-address=:9877"]
