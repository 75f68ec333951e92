# syntax=docker/dockerfile:1
# The Shopkeeper hub as a container image (docs/operations.md, "Container image").
#   docker build -t shopkeeper .
#   docker run -v shopkeeper-data:/var/lib/shopkeeper -v ./hub.yaml:/etc/shopkeeper/hub.yaml:ro \
#              -p 50051:50051 -p 9464:9464 shopkeeper
# The hub listens on all interfaces in the container, so it refuses to start without API keys in
# /etc/shopkeeper/hub.yaml (docs/hub.md): mount one.

FROM python:3.11-slim-bookworm AS build
# durable-rules builds a C extension
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY adapters ./adapters
COPY protos ./protos
RUN python -m venv /opt/shopkeeper \
    && /opt/shopkeeper/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 shopkeeper \
    && useradd --system --uid 10001 --gid shopkeeper --home-dir /var/lib/shopkeeper --create-home \
       --shell /usr/sbin/nologin shopkeeper
COPY --from=build /opt/shopkeeper /opt/shopkeeper
COPY rules /etc/shopkeeper/rules
ENV PATH=/opt/shopkeeper/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SHOPKEEPER_CONFIG=/etc/shopkeeper/hub.yaml \
    SHOPKEEPER_STORE=file:///var/lib/shopkeeper/Data.fs \
    SHOPKEEPER_RULES_DIR=/etc/shopkeeper/rules
USER 10001:10001
WORKDIR /var/lib/shopkeeper
VOLUME ["/var/lib/shopkeeper"]
# gRPC, Prometheus /metrics
EXPOSE 50051 9464
# the standard gRPC health service (grpc.health.v1): NOT_SERVING while draining or a component is down
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["shopkeeper", "health", "--hub", "127.0.0.1:50051", "--timeout", "4"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["shopkeeper"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--metrics", "0.0.0.0:9464", "--log-format", "json"]
