# ordersync container image. Build: docker build -t ordersync .   Run: docs/operations.md §Container.
#
# durable-rules ships only as an sdist with C code, so wheels are built in a stage that has a compiler
# and the Python headers; the runtime stage installs those wheels and has no compiler at all.

FROM python:3.11-slim-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc g++ make libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY daemon ./daemon
COPY adapters ./adapters
RUN pip install --no-cache-dir --upgrade pip wheel \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 ordersync \
 && useradd --system --uid 10001 --gid ordersync --home-dir /var/lib/ordersync --shell /usr/sbin/nologin ordersync \
 && mkdir -p /etc/ordersync /var/lib/ordersync \
 && chown ordersync:ordersync /var/lib/ordersync
COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-index --find-links=/tmp/wheels ordersync \
 && rm -rf /tmp/wheels
# The shipped rules; mount your own folder over /etc/ordersync/rules to change policy.
COPY rules /etc/ordersync/rules
# Amazon's feed XSDs are not in the image: mount their folder here, or the daemon does not start (exit 2).
ENV ORDERSYNC_SPAPI_XSD_DIR=/etc/ordersync/xsd
USER ordersync
WORKDIR /var/lib/ordersync
VOLUME ["/var/lib/ordersync"]
# /healthz, /readyz, /metrics. The config must listen on 0.0.0.0:9464 inside the container.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=4)"]
# SIGTERM drains for shutdown.drain_seconds (20 s by default): stop with `docker stop -t 30`.
STOPSIGNAL SIGTERM
CMD ["ordersync", "run", "--config", "/etc/ordersync/ordersync.yaml"]
