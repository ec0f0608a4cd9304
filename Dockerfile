# syntax=docker/dockerfile:1
#
# calcserver on Alpine: a static binary, run as an unprivileged user that may still
# listen on port 80. "Run in Docker" in README.md explains how to build and run it;
# deploy/ holds a compose file and an ECS task definition built on it, and
# deploy/*_test.go checks that they all agree with this file.
#
#   docker build -t calcserver --build-arg VERSION=$(git describe --tags --always --dirty) .
#
# Needs BuildKit (the default builder since Docker Engine 23; `docker buildx build`
# before that) for RUN --mount and COPY --chmod.

# The build stage runs on the builder's own platform and cross-compiles, so an image
# for another architecture (--platform linux/arm64) builds without emulating Go.
FROM --platform=$BUILDPLATFORM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/calcserver ./cmd/calcserver

FROM alpine:3
# Port 80 without root: the binary carries the file capability cap_net_bind_service.
# The capability is set in this stage, in the same step that writes the file, because
# whether COPY --from keeps a file's security.capability attribute depends on the
# builder and its version; a layer written by RUN always keeps it. The binary is
# bind-mounted from the build stage rather than copied, so it is stored only once.
# (Docker >= 20.10 also sets net.ipv4.ip_unprivileged_port_start=0 in a container's
# own network namespace; README.md says which of the two applies where.)
RUN --mount=type=bind,from=build,source=/out,target=/mnt/build \
    set -eux; \
    apk add --no-cache --virtual .setcap libcap-setcap; \
    install -m 0755 /mnt/build/calcserver /usr/local/bin/calcserver; \
    setcap cap_net_bind_service=+ep /usr/local/bin/calcserver; \
    apk del .setcap; \
    addgroup -S -g 10001 calcserver; \
    adduser -S -D -H -u 10001 -G calcserver -h /nonexistent -s /sbin/nologin calcserver

# The default configuration logs to stderr (docker logs) and uses no shared cache.
# Mount another file over it, or set CALC_CONFIG to another path or an s3:// URL.
COPY --chmod=0644 deploy/server.ini /etc/calcserver/server.ini
ENV CALC_CONFIG=/etc/calcserver/server.ini

USER 10001:10001
EXPOSE 80
STOPSIGNAL SIGTERM
# busybox wget: Alpine has no curl. 127.0.0.1, not localhost, which may resolve to ::1
# first; -Y off so that an http_proxy in the environment is not asked. A 503 (draining,
# after SIGTERM) makes wget, and so the check, fail.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD wget -q -Y off -O /dev/null http://127.0.0.1/healthcheck || exit 1
ENTRYPOINT ["/usr/local/bin/calcserver"]
