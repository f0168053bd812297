# The YouWatch agent image. Build with any OCI builder where a registry is reachable:
#   docker build -t ghcr.io/youwatch/youwatch-agent:0.1.0 .
# Offline (no base image), `cargo xtask image` builds the same final stage with podman.
#
# Builder: the kernel programs are built by `cargo xtask build-ebpf` (it installs the nightly
# rust-src component, LLVM 22 and bpf-linker, as on a developer machine), then
# `cargo xtask image --rootfs-only` builds the stripped release agent, which embeds them, and
# copies it with the libraries it loads (glibc, libgcc_s) into /rootfs.
FROM docker.io/library/rust:1.95-bookworm AS builder
RUN rustup toolchain install nightly --profile minimal --component rust-src
WORKDIR /src
COPY . .
RUN cargo xtask build-ebpf
RUN cargo xtask image --rootfs-only /rootfs

# Final: nothing but the agent and its libraries (the same stage as xtask/src/image.rs).
FROM scratch
COPY --from=builder /rootfs/ /
ENTRYPOINT ["/usr/bin/youwatch-agent"]
CMD ["run"]
