# Builds the release binary with the same commands CI uses (scripts/setup.sh installs the same
# Debian packages), then ships it on Debian slim with only the runtime libraries.
FROM swift:6.1-bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        librdkafka-dev libpq-dev libssl-dev libjemalloc-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources Sources
COPY Plugins Plugins
COPY Tests Tests
COPY migrations migrations
RUN swift build -c release --product decryptd --static-swift-stdlib \
    && cp "$(swift build -c release --show-bin-path)/decryptd" /usr/local/bin/decryptd

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        librdkafka1 libpq5 libssl3 libjemalloc2 ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 decryptd
COPY --from=build /usr/local/bin/decryptd /usr/local/bin/decryptd
USER decryptd
EXPOSE 9464
ENTRYPOINT ["decryptd"]
CMD ["run"]
