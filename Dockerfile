# otelcol-istio image: a static binary on distroless, as user 10001.
#   make image-docker               (docker or podman, whichever is installed)
#   docker build -t ghcr.io/otelcol-istio/otelcol-istio:0.1.0 .
# `make image` builds the same image without a daemon (deploy/cmd/imagebuild,
# which reads USER, EXPOSE, ENTRYPOINT and CMD from this file's last stage).
# The build command is the Makefile's `build` recipe; deploy's
# TestDockerfileBuildsLikeMake keeps them the same, and CI runs that build.

FROM golang:1.26 AS build
WORKDIR /src
# The distribution and the modules it replaces with local paths (processor/,
# extension/); .dockerignore leaves out the rest.
COPY . .
# No RUN --mount caches: the legacy builder (docker without buildx) and
# podman both build this file as it is.
RUN cd distribution && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/otelcol-istio .
# The queue directory, owned by the runtime user (the root filesystem is
# read-only in Kubernetes; a volume is mounted here there).
RUN mkdir -p /out/queue

# Static: CA certificates, /etc/passwd and tzdata, no shell, no libc.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/otelcol-istio/otelcol-istio" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/otelcol-istio /otelcol-istio
COPY --from=build --chown=10001:10001 /out/queue /var/lib/otelcol-istio/queue
COPY distribution/config.yaml /etc/otelcol-istio/config.yaml
USER 10001:10001
# OTLP/gRPC, OTLP/HTTP, health_check.
EXPOSE 4317 4318 13133
ENTRYPOINT ["/otelcol-istio"]
CMD ["--config=/etc/otelcol-istio/config.yaml"]
