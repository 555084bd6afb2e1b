"""Every shape of the REST API, in one package: the gateway's contract (what /openapi.json says).

- `common`: the success envelope, the page, the one error envelope, the base models of request
  bodies (`ApiModel`: camelCase, strict, unknown fields refused) and responses (`OutModel`), and
  the proto -> JSON helpers.
- `users`, `catalog`, `cart`, `orders`, `system`: one module per area; each resource's response
  model sits beside the one function that builds it from its proto (`product_json`, `order_json`,
  ...), then the area's request bodies.
- `gateway/openapi.py` documents the statuses, security and operation ids on top of these.

Routes return plain dicts from those functions; FastAPI validates each against the route's
`response_model` and serializes it, so an answer cannot drift from the document.
"""

from gateway.schemas.common import (
    ApiModel,
    ErrorEnvelope,
    OutModel,
    PageInfo,
    data,
    envelope,
    page,
    page_of,
    rfc3339,
)

__all__ = ["ApiModel", "ErrorEnvelope", "OutModel", "PageInfo", "data", "envelope", "page", "page_of", "rfc3339"]
