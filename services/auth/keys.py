"""The Ed25519 key that signs access tokens, its JWKS, and minting of access tokens.

The key comes from configuration (SHOP_JWT_PRIVATE_KEY, PEM text, or SHOP_JWT_PRIVATE_KEY_FILE).
In development with neither, one is generated into var/jwt-private-key.pem (0600) and reused by
every later start (and by replicas started together: the file is created atomically).
Production refuses to start without a configured key (AuthSettings).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from services.auth.config import DEV_JWT_KEY_PATH, AuthSettings
from shop.lib.tokens import ACCESS_TOKEN_TYPE

log = structlog.get_logger("auth.keys")
ALGORITHM = "EdDSA"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def generate_private_key_pem() -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _create_private_file(path: Path, content: str) -> None:
    """Writes `content` to `path` (0600) unless the file exists; atomic, so concurrent starts agree."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".jwt-key-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
        try:
            os.link(tmp_name, path)  # fails if another process created it first
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp_name)


def load_private_key_pem(settings: AuthSettings) -> str:
    if settings.jwt_private_key.strip():
        return settings.jwt_private_key.strip().replace("\\n", "\n")
    if settings.jwt_private_key_file.strip():
        return Path(settings.jwt_private_key_file.strip()).read_text()
    if settings.is_production:  # AuthSettings refuses this already; never generate in production
        raise RuntimeError("no signing key configured")
    path = Path(DEV_JWT_KEY_PATH)
    if not path.exists():
        _create_private_file(path, generate_private_key_pem())
        log.warning("jwt.dev_key_generated", path=str(path))
    return path.read_text()


@dataclass(frozen=True)
class AccessToken:
    token: str
    token_id: str
    expires_at: datetime
    expires_in: int


def _okp_jwk(public_key: ed25519.Ed25519PublicKey) -> dict[str, str]:
    x = _b64url(public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    # RFC 7638 thumbprint as the key id.
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True)
    kid = _b64url(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALGORITHM, "use": "sig"}


def parse_public_keys(pem_blocks: str) -> list[dict[str, str]]:
    """JWKs of the Ed25519 public keys in a string of concatenated PEM blocks."""
    text = pem_blocks.replace("\\n", "\n")
    jwks = []
    for block in re.findall(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", text, flags=re.S):
        key = serialization.load_pem_public_key(block.encode())
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("previous JWT public keys must be Ed25519")
        jwks.append(_okp_jwk(key))
    return jwks


class SigningKey:
    def __init__(self, private_key_pem: str, previous_public_keys: str = "") -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("the JWT signing key must be an Ed25519 private key (PKCS#8 PEM)")
        self._key = key
        self.public_jwk = _okp_jwk(key.public_key())
        self.kid = self.public_jwk["kid"]
        self._previous = [jwk for jwk in parse_public_keys(previous_public_keys) if jwk["kid"] != self.kid]

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> SigningKey:
        return cls(load_private_key_pem(settings), settings.jwt_previous_public_keys)

    def jwks_json(self) -> str:
        """The current key first, then the previous ones still accepted."""
        return json.dumps({"keys": [self.public_jwk, *self._previous]}, separators=(",", ":"))

    def mint_access_token(
        self,
        *,
        issuer: str,
        audience: str,
        user_id: str,
        role: str,
        session_id: str,
        lifetime: timedelta,
        now: float | None = None,
        email: str = "",
    ) -> AccessToken:
        issued = int(now if now is not None else time.time())
        expires = issued + int(lifetime.total_seconds())
        token_id = str(uuid.uuid4())
        claims = {
            "iss": issuer,
            "aud": audience,
            "sub": user_id,
            "jti": token_id,
            "sid": session_id,
            "role": role,
            "typ": ACCESS_TOKEN_TYPE,
            "iat": issued,
            "exp": expires,
        }
        if email:
            # The services that need the customer's address (orders' emails) read it here instead
            # of asking auth on every checkout; it is as fresh as the token (minutes).
            claims["email"] = email
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": "JWT"})
        return AccessToken(token, token_id, datetime.fromtimestamp(expires, UTC), expires - issued)
