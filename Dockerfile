# syntax=docker/dockerfile:1
#
# One image with Quire's three production binaries:
#   /usr/local/bin/api-server   (also `api-server migrate`, the chart's migration Job)
#   /usr/local/bin/worker
#   /usr/local/bin/controller
# Migrations are embedded in the binaries (sqlx::migrate!), so the image holds nothing else.
#
#   docker build -t quire:dev .
#
# Dependencies are compiled in their own layer (cargo-chef), so a change to Quire's code
# rebuilds only Quire's crates.

ARG RUST_VERSION=1.95
# The builder's Debian release must match the runtime's (glibc): bookworm = Debian 12.
ARG DEBIAN_RELEASE=bookworm

# ---- chef: the Rust toolchain with cargo-chef ----------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# ---- planner: the dependency recipe (changes only when manifests or Cargo.lock change) ----
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- builder -------------------------------------------------------------------------------
FROM chef AS builder
ARG PACKAGES="-p quire-api -p quire-worker -p quire-controller"
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: cached until the recipe changes.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo chef cook --release --locked --recipe-path recipe.json ${PACKAGES}
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    cargo build --release --locked ${PACKAGES} \
 && mkdir -p /out \
 && cp target/release/api-server target/release/worker target/release/controller /out/

# ---- runtime: distroless (glibc, libgcc, CA certificates; no shell), user 65532 ----------
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="quire" \
      org.opencontainers.image.description="Quire: api-server, worker and controller" \
      org.opencontainers.image.source="https://github.com/quire-dev/quire" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/ /usr/local/bin/
USER 65532:65532
# api-server on 8080; worker and controller health (and controller metrics) on 8081.
EXPOSE 8080 8081
# The chart sets the command per component; without one the image runs the API server.
CMD ["/usr/local/bin/api-server"]
