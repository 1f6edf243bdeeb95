# gpugate: build in a Rust image, run in a slim Debian with the Vulkan loader. The GPU's Vulkan
# driver (ICD) comes from the node: the NVIDIA container runtime injects it when
# NVIDIA_DRIVER_CAPABILITIES includes `graphics`. lavapipe is deliberately absent, so a node
# without its GPU driver fails /readyz instead of validating the CPU.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY shaders shaders
COPY benches benches
RUN cargo build --release --locked --bin gpugate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvulkan1 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/gpugate /usr/local/bin/gpugate
COPY baselines /opt/gpugate/baselines
ENV GPUGATE_BASELINES=/opt/gpugate/baselines \
    XDG_RUNTIME_DIR=/tmp
USER 65532:65532
EXPOSE 9400
ENTRYPOINT ["/usr/local/bin/gpugate"]
CMD ["serve"]
