"""`python -m gateway`: serve the REST API with uvicorn (uvloop where installed, else asyncio's
loop), and Prometheus metrics on their own port (SHOP_METRICS_PORT) when set."""

import uvicorn

from gateway.app import create_app
from gateway.config import GatewaySettings
from shop.lib.logging import configure_logging


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    if settings.metrics_port:
        # Its own listener, like the services': no public route reaches the metrics.
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.http_host)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="auto",  # uvloop when importable (not on Windows, not in every environment)
        proxy_headers=False,  # client IPs come from our own trusted-proxy rule
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
