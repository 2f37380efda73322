# Multi-stage build of the charlie-stats binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p charlie-api --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 charlie
COPY --from=build /src/target/release/charlie-stats /usr/local/bin/charlie-stats
USER charlie
ENV APP_ENV=production BIND_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/charlie-stats"]
CMD ["serve"]
