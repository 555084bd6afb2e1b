"""`python -m gateway`: serve the REST API with uvicorn (uvloop)."""

import uvicorn

from gateway.app import create_app
from gateway.config import GatewaySettings
from shop.lib.logging import configure_logging


def main() -> None:
    settings = GatewaySettings()
    configure_logging("gateway", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        proxy_headers=False,  # client IPs come from our own trusted-proxy rule
        access_log=False,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
