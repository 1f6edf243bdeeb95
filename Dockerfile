# gpugate: build in a Rust image, run in a slim Debian with the Vulkan loader. The GPU's Vulkan
# driver (ICD) comes from the node: the NVIDIA container toolkit injects it only when
# NVIDIA_DRIVER_CAPABILITIES includes `graphics` (set below, so plain `docker run --gpus all`
# gets it too; which GPUs is left to --gpus / the device plugin). lavapipe is deliberately absent, so a node without its GPU driver fails /readyz
# instead of validating the CPU. Build and publish with scripts/build-image.
#
# Base images are pinned by tag, not digest: scripts/build-image pulls them, and the published
# image is pinned by digest where it is used (the kustomize `images:` override in k8s/).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY shaders shaders
COPY benches benches
RUN cargo build --release --locked --bin gpugate

FROM debian:bookworm-slim
# Debian stable's security updates are what we want from these two; a pinned version would
# stop building as soon as bookworm-security replaces it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/gpugate /usr/local/bin/gpugate
# The baselines in the repository, for `docker run` and as a fallback; the DaemonSet mounts its
# baselines volume over this directory.
COPY baselines /opt/gpugate/baselines
ENV GPUGATE_BASELINES=/opt/gpugate/baselines \
    XDG_RUNTIME_DIR=/tmp \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics
USER 65532:65532
EXPOSE 9478
# checkov:skip=CKV_DOCKER_2: the image runs `serve` (probed by Kubernetes on /livez, /readyz), `check` and `record` (one-shot CLI runs); a HEALTHCHECK would probe a port the CLI commands never open
ENTRYPOINT ["/usr/local/bin/gpugate"]
CMD ["serve"]
