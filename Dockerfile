# certfleet images: one build, three binaries (certfleet, certfleet-scheduler, certfleet-worker).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates openssl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/certfleet certfleet \
    && mkdir -p /var/lib/certfleet/ca /var/lib/certfleet/certs && chown -R certfleet /var/lib/certfleet
COPY --from=build /src/target/release/certfleet /src/target/release/certfleet-scheduler \
     /src/target/release/certfleet-worker /usr/local/bin/
COPY examples/routes.toml /etc/certfleet/routes.toml
USER certfleet
WORKDIR /var/lib/certfleet
ENV CERTFLEET_ROUTES_FILE=/etc/certfleet/routes.toml
CMD ["certfleet-worker"]
