# Build the release binary, then copy it onto a slim runtime image.
FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq-dev libsqlite3-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY migrations migrations
RUN cargo build --release --locked --bin actas

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 libsqlite3-0 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home actas \
 && mkdir /data && chown actas:actas /data
COPY --from=build /src/target/release/actas /usr/local/bin/actas
USER actas
WORKDIR /data
# SQLite database and generated signing key live in /data unless configured otherwise.
ENV ACTAS_BIND=0.0.0.0:8080 \
    ACTAS_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["actas"]
CMD ["serve"]
