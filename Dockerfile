# certsync's container image: built on Debian 12 with the -dev packages, run on Debian 12 slim with only the
# runtime libraries, as an unprivileged user (uid/gid 65532). Build from the repository root:
#   docker build -t ghcr.io/acme/certsync:0.1.0 .
# .dockerignore keeps the build context to the sources (no .git/, no build/, no .run/ with its CA key,
# no state or key files).
FROM debian:bookworm-slim AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libyaml-dev libcurl4-openssl-dev libssl-dev libjansson-dev \
      libgit2-dev libmicrohttpd-dev libpq-dev libldns-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" WERROR=1 all && make install PREFIX=/usr/local DESTDIR=/out

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libyaml-0-2 libcurl4 libssl3 libjansson4 libgit2-1.5 libmicrohttpd12 libpq5 libldns3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 certsync \
    && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/certsync --no-create-home \
         --shell /usr/sbin/nologin certsync \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/certsync /certs \
    && install -d -m 0755 /etc/certsync
COPY --from=build /out/usr/local/bin/certsync /usr/local/bin/certsync
COPY --from=build /out/usr/local/share/man/man1/certsync.1 /usr/local/share/man/man1/certsync.1
COPY --from=build /out/usr/local/share/doc/certsync /usr/local/share/doc/certsync
LABEL org.opencontainers.image.title="certsync" \
      org.opencontainers.image.description="GitOps reconciler for TLS certificates" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV HOME=/var/lib/certsync
WORKDIR /var/lib/certsync
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 65532:65532
EXPOSE 9402
ENTRYPOINT ["/usr/local/bin/certsync"]
CMD ["run", "--config", "/etc/certsync/certsync.yaml"]
