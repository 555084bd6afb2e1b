"""Settings of the auth service (SHOP_* environment variables)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shop.lib.mail import MailSettings
from shop.lib.settings import MAX_ACCESS_TOKEN_TTL_SECONDS, ServiceSettings

MIN_PRODUCTION_BCRYPT_ROUNDS = 12
DEV_JWT_KEY_PATH = "var/jwt-private-key.pem"


class AuthSettings(ServiceSettings, MailSettings):
    database_url: str = "sqlite:///var/auth.db"
    grpc_address: str = "127.0.0.1:50051"

    # Ed25519 private key (PKCS#8 PEM) that signs access tokens: the PEM text itself, or a file.
    # Development with neither generates one into var/jwt-private-key.pem (0600) and reuses it;
    # production refuses to start without one.
    jwt_private_key: str = ""
    jwt_private_key_file: str = ""
    # Key rotation: public keys (PEM blocks, concatenated) still published in the JWKS so tokens
    # signed by the previous key verify until they expire (keep one for at least 15 minutes).
    jwt_previous_public_keys: str = ""
    # bcrypt cost factor; production refuses less than 12.
    bcrypt_rounds: int = 12
    # Bootstrap administrator: created at start when admin_password is set and no user has admin_email.
    admin_email: str = "admin@example.com"
    admin_password: str = ""

    # Bounded: verifiers keep revocations for an access token's lifetime (shop.lib.tokens).
    access_token_ttl_seconds: int = Field(default=15 * 60, ge=60, le=MAX_ACCESS_TOKEN_TTL_SECONDS)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=365)
    # Absolute end of a session, whatever its refreshes (sessions slide by refresh_token_ttl_days).
    session_max_lifetime_days: int = Field(default=90, ge=1, le=365)
    password_reset_ttl_minutes: int = 30
    email_verification_ttl_hours: int = 48
    # Login lockout: this many failures for one email within the window → 429 until it passes.
    login_max_failures: int = 5
    login_window_seconds: int = 15 * 60
    # Name shown by authenticator apps.
    mfa_issuer: str = "The Shop"

    @model_validator(mode="after")
    def check_auth_production(self) -> AuthSettings:
        if self.bcrypt_rounds < 4 or self.bcrypt_rounds > 16:
            raise ValueError("SHOP_BCRYPT_ROUNDS must be between 4 and 16")
        if self.is_production:
            if self.bcrypt_rounds < MIN_PRODUCTION_BCRYPT_ROUNDS:
                raise ValueError(f"production refuses SHOP_BCRYPT_ROUNDS below {MIN_PRODUCTION_BCRYPT_ROUNDS}")
            if not (self.jwt_private_key.strip() or self.jwt_private_key_file.strip()):
                raise ValueError(
                    "production refuses to start without a signing key: set SHOP_JWT_PRIVATE_KEY "
                    "or SHOP_JWT_PRIVATE_KEY_FILE"
                )
        return self
