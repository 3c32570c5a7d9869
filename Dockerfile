# syntax=docker/dockerfile:1
# Both services in one small image: static musl binaries (the size-tuned `dist` profile) on
# busybox, which adds a shell and wget for health checks at about 1.5 MB.
#   docker build -t event-system .
#   docker run --rm event-system event_consumer --version
# docker-compose.yml runs the whole system with it. Built for the build machine's architecture
# (amd64 or arm64, both static musl).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim AS build
WORKDIR /src
COPY . .
# ring (rustls's crypto) compiles some C and assembly: the image's native gcc does, since the
# build is for its own architecture (there is no <arch>-linux-musl-gcc to find).
RUN target="$(uname -m)-unknown-linux-musl" \
 && rustup target add "$target" \
 && CC=gcc cargo build --locked --profile dist --target "$target" -p event_consumer -p event_propagator \
 && mkdir /out \
 && cp "target/$target/dist/event_consumer" "target/$target/dist/event_propagator" /out/

FROM busybox:1.37-musl
COPY --from=build /out/ /usr/local/bin/
COPY config.yaml events.json /etc/event-system/
# The binaries read .env from the working directory; there is none here, the environment is all.
WORKDIR /etc/event-system
ENV PROPAGATOR_EVENTS_FILE=/etc/event-system/events.json
USER 65532:65532
EXPOSE 8080
CMD ["event_consumer", "--config", "/etc/event-system/config.yaml"]
