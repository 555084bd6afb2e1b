"""Token checks every verifier shares: user access tokens (JWT, asymmetric, from auth's JWKS)
and service identities (short-lived EdDSA tokens, one Ed25519 key pair per service).

The two never mix: an access token is only accepted with the pinned asymmetric algorithms and a
key from the JWKS; a service token only with EdDSA and the public key of the service it names
(`kid` == `sub`), in its own metadata entry. So `alg: none`, HMAC tokens (the old shared secret's
included), a key vouching for another service and unknown `kid` all fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from shop.lib.context import Caller
from shop.lib.errors import Unauthenticated, Unavailable
from shop.lib.periodic import Periodic
from shop.lib.settings import MAX_ACCESS_TOKEN_TTL_SECONDS

if TYPE_CHECKING:
    from shop.lib.settings import BaseShopSettings

log = logging.getLogger(__name__)

ACCESS_TOKEN_ALGORITHMS = ("EdDSA", "RS256")
REQUIRED_ACCESS_CLAIMS = ("exp", "iat", "iss", "aud", "sub", "jti", "sid")
ACCESS_TOKEN_TYPE = "access"
# How long a revoked session is remembered: the longest access-token lifetime auth's setting
# allows (SHOP_ACCESS_TOKEN_TTL_SECONDS is bounded by it), not the configured one, plus leeway
# (the verifiers' expiry leeway and clock skew between processes). So the memory always covers
# whatever lifetime is configured, and no process has to know auth's setting.
REVOCATION_LEEWAY_SECONDS = 120
REVOCATION_MEMORY = timedelta(seconds=MAX_ACCESS_TOKEN_TTL_SECONDS + REVOCATION_LEEWAY_SECONDS)

SERVICE_TOKEN_ISSUER = "shop-internal"
SERVICE_TOKEN_AUDIENCE = "shop-services"
SERVICE_TOKEN_LIFETIME_SECONDS = 120
SERVICE_TOKEN_ALGORITHM = "EdDSA"
SERVICE_METADATA_KEY = "x-shop-service"

_LEEWAY_SECONDS = 5


class KeySet:
    """Public keys by `kid`, refreshed from a JWKS source; unknown kids trigger one rate-limited refresh."""

    def __init__(
        self, fetch_jwks: Callable[[], Awaitable[str]], *, max_age: float = 300.0, min_refresh_interval: float = 10.0
    ) -> None:
        self._fetch = fetch_jwks
        self._max_age = max_age
        self._min_refresh_interval = min_refresh_interval
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    @classmethod
    def static(cls, jwks_json: str) -> KeySet:
        async def fetch() -> str:
            return jwks_json

        return cls(fetch, max_age=float("inf"))

    async def get(self, kid: str) -> jwt.PyJWK | None:
        now = time.monotonic()
        stale = now - self._fetched_at > self._max_age
        if stale or (kid not in self._keys and now - self._fetched_at > self._min_refresh_interval):
            await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:
            try:
                document = json.loads(await self._fetch())
            except Exception as exc:  # keep the keys we have; the next call retries
                log.warning("jwks refresh failed: %s", type(exc).__name__)
                return
            keys: dict[str, jwt.PyJWK] = {}
            for jwk in document.get("keys", []):
                if "kid" in jwk:
                    keys[jwk["kid"]] = jwt.PyJWK(jwk)
            self._keys = keys
            self._fetched_at = time.monotonic()


class RevokedSessions:
    """Session ids revoked recently (at most the longest access-token lifetime ago), in memory.

    Filled by polling auth's ListRevocations (`poll_forever`) and by `add` for revocations this
    process performs itself, so logout through a gateway is refused by that gateway at once.
    With `max_staleness`, the set is `stale` when no poll has succeeded for that long (or none
    yet): verifiers then refuse writes (fail closed) while reads go on.
    """

    def __init__(self, *, max_staleness: float | None = None) -> None:
        self._revoked: dict[str, float] = {}
        self._since: datetime | None = None
        self._max_staleness = max_staleness
        self._fresh_at: float | None = None
        self._fetch: Callable[[datetime], Awaitable[tuple[list[str], datetime]]] | None = None
        self._refreshing = asyncio.Lock()

    @property
    def stale(self) -> bool:
        if self._max_staleness is None:
            return False
        return self._fresh_at is None or time.monotonic() - self._fresh_at > self._max_staleness

    def add(self, session_id: str) -> None:
        self._revoked[session_id] = time.monotonic()

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._revoked

    def _prune(self) -> None:
        horizon = time.monotonic() - REVOCATION_MEMORY.total_seconds()
        self._revoked = {sid: at for sid, at in self._revoked.items() if at >= horizon}

    async def poll_once(self, fetch: Callable[[datetime], Awaitable[tuple[list[str], datetime]]]) -> None:
        since = self._since or datetime.now(UTC) - REVOCATION_MEMORY
        session_ids, as_of = await fetch(since)
        for sid in session_ids:
            self.add(sid)
        self._since = as_of
        self._fresh_at = time.monotonic()
        self._prune()

    async def refresh_if_stale(self, timeout: float = 2.0) -> None:
        """One poll now (one at a time) when the set is stale, e.g. before this process's first
        scheduled poll has answered; a failure leaves it stale."""
        if self._fetch is None or not self.stale:
            return
        async with self._refreshing:
            if not self.stale:
                return
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.poll_once(self._fetch), timeout)

    async def poll_forever(
        self, fetch: Callable[[datetime], Awaitable[tuple[list[str], datetime]]], interval: float
    ) -> None:
        self._fetch = fetch
        await Periodic("revocations.poll", lambda: self.poll_once(fetch), interval)()


def revocations_unavailable() -> Unavailable:
    return Unavailable(
        "Your sign-in cannot be confirmed right now; retry in a moment.", code="REVOCATIONS_UNAVAILABLE", retry_after=2
    )


# Verified access tokens kept per process (least recently used out): a token's signature and
# claims are checked once, then its claims are reused until it expires or its key leaves the key
# set; revocation and the session check are asked on every use.
VERIFIED_TOKENS_KEPT = 4096


class _Verified(NamedTuple):
    claims: dict
    kid: str
    key: Any  # the PyJWK that verified it: a rotated key set no longer returns this object
    valid_until: float  # exp + leeway, as PyJWT judges expiry


class AccessTokenVerifier:
    """Verifies user access tokens locally: pinned algorithms, known kid, required claims, not revoked."""

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        revoked: RevokedSessions | None = None,
        session_check: Callable[[str, str], Awaitable[bool]] | None = None,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.revoked = revoked or RevokedSessions()
        # Optional authoritative check (the auth service asks its own database).
        self._session_check = session_check
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    async def verify(self, token: str, *, write: bool = False) -> Caller:
        """The caller of `token`. A `write` is refused (503) while revocations are stale: a
        revoked session must not act on what this process cannot confirm."""
        claims = await self._claims(token)
        if write and self.revoked.stale:
            await self.revoked.refresh_if_stale()
            if self.revoked.stale:
                raise revocations_unavailable()
        if claims["sid"] in self.revoked:
            raise Unauthenticated("The session has ended.")
        if self._session_check is not None and not await self._session_check(claims["sid"], claims["sub"]):
            raise Unauthenticated("The session has ended.")
        return Caller(
            user_id=claims["sub"],
            role=claims.get("role"),
            session_id=claims["sid"],
            token_id=claims["jti"],
            claims=claims,
        )

    async def _claims(self, token: str) -> dict:
        """The token's verified claims: kept from an earlier use while it is unexpired and its key
        is still the key set's, else checked now (and kept)."""
        kept = self._verified.get(token)
        if kept is not None:
            if time.time() < kept.valid_until and await self.keys.get(kept.kid) is kept.key:
                self._verified.move_to_end(token)
                return kept.claims
            del self._verified[token]
        claims, kid, key = await self._check(token)
        self._verified[token] = _Verified(claims, kid, key, claims["exp"] + _LEEWAY_SECONDS)
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return claims

    async def _check(self, token: str) -> tuple[dict, str, Any]:
        """Signature, algorithm, key and claims of `token`: its claims, kid and key."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("The access token is malformed.") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ACCESS_TOKEN_ALGORITHMS or not isinstance(kid, str):
            raise Unauthenticated("The access token is not acceptable.")
        key = await self.keys.get(kid)
        if key is None or key.algorithm_name != algorithm:
            raise Unauthenticated("The access token is not acceptable.")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": list(REQUIRED_ACCESS_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("The access token has expired.") from None
        except jwt.PyJWTError:
            raise Unauthenticated("The access token is not valid.") from None
        if claims.get("typ") != ACCESS_TOKEN_TYPE:
            raise Unauthenticated("The token is not an access token.")
        return claims, kid, key


class ServiceIdentity:
    """This process's service identity: mints short-lived EdDSA tokens with its own private key.

    `sub` and the header's `kid` are the service name; only the holder of the key can mint them
    (each process holds its own key and only the public keys of the others)."""

    def __init__(self, name: str, private_key: ed25519.Ed25519PrivateKey) -> None:
        self.name = name
        self._key = private_key
        self._cached: tuple[str, float] | None = None

    @classmethod
    def from_pem(cls, name: str, pem: str) -> ServiceIdentity:
        return cls(name, load_private_key(pem))

    @classmethod
    def from_settings(cls, settings: BaseShopSettings, name: str) -> ServiceIdentity:
        """SHOP_SERVICE_KEY (or SHOP_SERVICE_KEY_FILE). Outside production a process started
        without one gets a throwaway key: its calls are refused wherever a service identity is
        needed, which beats sharing one (production refuses to start without a key)."""
        pem = settings.service_key_pem()
        if pem:
            identity = cls.from_pem(name, pem)
            listed = parse_public_keys(settings.service_public_keys_text()).get(name)
            if listed is not None and _raw(listed) != _raw(identity.public_key):
                # Every call it made would be refused: say so at start instead.
                raise ValueError(f"SHOP_SERVICE_KEY is not the key SHOP_SERVICE_PUBLIC_KEYS lists for {name}")
            return identity
        if settings.is_production:  # the settings refuse this already; never improvise a key there
            raise RuntimeError("SHOP_SERVICE_KEY is required in production")
        log.warning("service identity %s: no SHOP_SERVICE_KEY, using a throwaway key other services refuse", name)
        return cls(name, ed25519.Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._key.public_key()

    def mint(self) -> str:
        now = time.time()
        if self._cached and self._cached[1] - now > SERVICE_TOKEN_LIFETIME_SECONDS / 2:
            return self._cached[0]
        expires = now + SERVICE_TOKEN_LIFETIME_SECONDS
        token = jwt.encode(
            {
                "iss": SERVICE_TOKEN_ISSUER,
                "aud": SERVICE_TOKEN_AUDIENCE,
                "sub": self.name,
                "iat": int(now),
                "exp": int(expires),
            },
            self._key,
            algorithm=SERVICE_TOKEN_ALGORITHM,
            headers={"kid": self.name},
        )
        self._cached = (token, expires)
        return token


class ServiceKeys:
    """The public keys of every service, by name; verifies the identity a caller sends.

    The key is picked by the token's `kid` (a service name), and the token must say it is that
    service (`sub` == `kid`): a service's key can only vouch for itself."""

    # Verified tokens remembered until they expire: a caller sends the same token for a minute
    # or more, and checking the signature again on every RPC was a measurable share of a cheap read.
    _VERIFIED_CACHE_SIZE = 256

    def __init__(self, keys: Mapping[str, ed25519.Ed25519PublicKey]) -> None:
        self._keys = dict(keys)
        self._verified: dict[str, tuple[str, float]] = {}

    @classmethod
    def parse(cls, text: str) -> ServiceKeys:
        return cls(parse_public_keys(text))

    @classmethod
    def from_settings(cls, settings: BaseShopSettings) -> ServiceKeys:
        return cls.parse(settings.service_public_keys_text())

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify(self, token: str) -> str:
        """The calling service's name, or Unauthenticated."""
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("The service identity is not valid.") from None
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if header.get("alg") != SERVICE_TOKEN_ALGORITHM or key is None:
            raise Unauthenticated("The service identity is not valid.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[SERVICE_TOKEN_ALGORITHM],
                audience=SERVICE_TOKEN_AUDIENCE,
                issuer=SERVICE_TOKEN_ISSUER,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            raise Unauthenticated("The service identity is not valid.") from None
        if claims["sub"] != kid:
            raise Unauthenticated("The service identity is not valid.")
        if len(self._verified) >= self._VERIFIED_CACHE_SIZE:
            self._verified.clear()
        # Valid until exp (no leeway from the cache: a cached answer never outlives the token).
        self._verified[token] = (kid, float(claims["exp"]))
        return kid


# -- keys -----------------------------------------------------------------------------------------


def load_private_key(pem: str) -> ed25519.Ed25519PrivateKey:
    """An Ed25519 private key from PKCS#8 PEM text (literal `\\n` accepted, as in env files; text
    before the PEM block, such as the dev keys' INSECURE-DEV-ONLY line, is ignored)."""
    key = serialization.load_pem_private_key(pem.strip().replace("\\n", "\n").encode(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("a service key must be an Ed25519 private key (PKCS#8 PEM)")
    return key


def _raw(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_private_key_pem() -> str:
    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def public_key_pem(private_key_pem: str) -> str:
    return (
        load_private_key(private_key_pem)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_keys_json(private_keys: Mapping[str, str]) -> str:
    """SHOP_SERVICE_PUBLIC_KEYS for a set of private keys (name -> PEM)."""
    return json.dumps({name: public_key_pem(pem) for name, pem in sorted(private_keys.items())})


def parse_public_keys(text: str) -> dict[str, ed25519.Ed25519PublicKey]:
    """SHOP_SERVICE_PUBLIC_KEYS: a JSON object service name -> public key PEM, or a JWKS whose
    keys are Ed25519 (OKP) with the service name as `kid`. Empty: no service is known."""
    if not text.strip():
        return {}
    document = json.loads(text)
    keys: dict[str, ed25519.Ed25519PublicKey] = {}
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        for jwk in document["keys"]:
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("kid"), str):
                raise ValueError("service public keys: each JWK must be Ed25519 (OKP) with a kid")
            raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
            keys[jwk["kid"]] = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        return keys
    if not isinstance(document, dict):
        raise ValueError("service public keys: a JSON object name -> PEM, or a JWKS")
    for name, pem in document.items():
        key = serialization.load_pem_public_key(str(pem).replace("\\n", "\n").encode())
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError(f"service public keys: {name}'s key must be Ed25519")
        keys[str(name)] = key
    return keys
