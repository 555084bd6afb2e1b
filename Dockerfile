# One multi-stage, multi-target Dockerfile for the whole suite. Every image shares the same
# dependency layers; only the final target (entry point, port, health check) differs:
#
#   docker build --target auth     -t shop/auth .       # also: catalog, cart, orders, payments
#   docker build --target gateway  -t shop/gateway .
#
# Stages: `uv` (the pinned uv binary) -> `builder` (resolves nothing: installs exactly uv.lock
# into /opt/venv, then the project itself as a wheel) -> `runtime` (slim Python, the venv, a
# non-root user; no uv, no compilers, no sources, no secrets) -> one small target per process.

ARG PYTHON_VERSION=3.12
ARG UV_VERSION=0.13

FROM ghcr.io/astral-sh/uv:${UV_VERSION} AS uv

# ---------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/venv
WORKDIR /src
# 1) Third-party dependencies only, straight from the lockfile (--frozen: never re-resolve).
#    This layer is rebuilt only when uv.lock or pyproject.toml change.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --frozen --no-dev --no-install-project
# 2) The project (packages shop, services, gateway) installed as a regular wheel, so the final
#    image needs /opt/venv only and no source tree.
COPY pyproject.toml uv.lock README.md ./
COPY libs ./libs
COPY services ./services
COPY gateway ./gateway
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# ---------------------------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
LABEL org.opencontainers.image.title="the-shop" \
      org.opencontainers.image.description="The shop: Python gRPC e-commerce services and REST gateway"
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it (securityContext uses 10001).
RUN groupadd --system --gid 10001 shop \
 && useradd --system --uid 10001 --gid shop --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin shop
COPY --from=builder /opt/venv /opt/venv
# Turns compose secrets (/run/secrets/SHOP_*) into environment variables, then execs the server.
COPY --chmod=0555 deploy/docker/entrypoint.sh /usr/local/bin/shop-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    SHOP_ENV=production
# Read-only root filesystem friendly: nothing writes outside /tmp (mount a tmpfs/emptyDir there).
WORKDIR /tmp
USER 10001:10001

# ---------------------------------------------------------------------------------------------
# gRPC services: listen on 50051, report health through grpc.health.v1.
FROM runtime AS service
ENV SHOP_GRPC_ADDRESS=0.0.0.0:50051
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "shop.lib.healthcheck", "127.0.0.1:50051"]

# `docker run shop/auth` serves (migrating first); `docker run shop/auth migrate` only migrates.
FROM service AS auth
ENTRYPOINT ["shop-entrypoint", "python", "-m", "services.auth"]

FROM service AS catalog
ENTRYPOINT ["shop-entrypoint", "python", "-m", "services.catalog"]

FROM service AS cart
ENTRYPOINT ["shop-entrypoint", "python", "-m", "services.cart"]

FROM service AS orders
ENTRYPOINT ["shop-entrypoint", "python", "-m", "services.orders"]

FROM service AS payments
ENTRYPOINT ["shop-entrypoint", "python", "-m", "services.payments"]

# ---------------------------------------------------------------------------------------------
# The REST gateway: HTTP on 8000, /healthz (process alive) and /readyz (backends SERVING).
FROM runtime AS gateway
ENV SHOP_HTTP_HOST=0.0.0.0 \
    SHOP_HTTP_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["shop-entrypoint", "python", "-m", "gateway"]
