"""Unit tests of the auth rules (domain.py), the signing key (keys.py) and the settings."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pyotp
import pytest
from pydantic import ValidationError

from services.auth import domain
from services.auth.config import AuthSettings
from services.auth.keys import SigningKey, generate_private_key_pem, load_private_key_pem
from shop.lib.errors import Unauthenticated
from shop.lib.tokens import AccessTokenVerifier, KeySet
from shop.lib.validation import FieldErrors
from tests.harness import identity_settings

IDENTITY = identity_settings("auth")

# -- password policy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["Passw0rdx", "aB3aaaaa", "Ünïcödé9x", "a" * 69 + "B1x"])
def test_good_passwords_pass(password):
    assert domain.password_problems(password) == []


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Sh0rt", "at least 8"),
        ("alllowercase1", "upper-case"),
        ("ALLUPPERCASE1", "lower-case"),
        ("NoDigitsHere", "digit"),
        ("", "at least 8"),
    ],
)
def test_weak_passwords_are_refused(password, problem):
    assert any(problem in message for message in domain.password_problems(password))


def test_72_byte_boundary_counts_utf8_bytes_not_characters():
    # "é" is 2 bytes in UTF-8: 35 × "é" = 70 bytes, + "A1" = 72 bytes: accepted.
    at_limit = "é" * 35 + "A1"
    assert len(at_limit.encode()) == 72 and len(at_limit) == 37
    assert domain.password_problems(at_limit) == []
    # One more byte (73) is refused although it is only 38 characters.
    over = "é" * 35 + "A1x"
    assert len(over.encode()) == 73
    assert any("72 bytes" in m for m in domain.password_problems(over))
    # 4-byte characters: 18 emoji = 72 bytes (+ would need letters) → 17 emoji + "aA1x" = 72 bytes.
    emoji = "😀" * 17 + "aA1x"
    assert len(emoji.encode()) == 72
    assert domain.password_problems(emoji) == []
    assert any("72 bytes" in m for m in domain.password_problems(emoji + "y"))


def test_hashing_never_truncates():
    hashed = domain.hash_password("é" * 35 + "A1", 4)
    assert domain.verify_password("é" * 35 + "A1", hashed)
    with pytest.raises(ValueError):
        domain.hash_password("é" * 35 + "A1x", 4)
    # A 73+ byte password never matches a hash of its 72-byte prefix.
    prefix = "a" * 69 + "B1x"
    hashed = domain.hash_password(prefix, 4)
    assert not domain.verify_password(prefix + "zzz", hashed)


def test_bcrypt_cost_default_is_12_and_production_refuses_less():
    settings = AuthSettings(database_url="sqlite://")
    assert settings.bcrypt_rounds == 12
    assert domain.hash_password("Passw0rdx", settings.bcrypt_rounds).startswith("$2b$12$")
    strong = {**IDENTITY, "page_token_secret": "y" * 40, "jwt_private_key": "pem"}
    with pytest.raises(ValueError, match="BCRYPT_ROUNDS"):
        AuthSettings(env="production", bcrypt_rounds=10, **strong)
    AuthSettings(env="production", bcrypt_rounds=12, **strong)


def test_the_access_token_lifetime_is_bounded_to_an_hour():
    """Verifiers remember a revocation for the bound (shop.lib.tokens.REVOCATION_MEMORY): a longer
    lifetime would let a revoked session's token outlive that memory."""
    assert AuthSettings(database_url="sqlite://", access_token_ttl_seconds=3600).access_token_ttl_seconds == 3600
    for refused in (3601, 59):
        with pytest.raises(ValidationError, match="access_token_ttl_seconds"):
            AuthSettings(database_url="sqlite://", access_token_ttl_seconds=refused)


def test_production_refuses_to_start_without_a_signing_key():
    strong = {**IDENTITY, "page_token_secret": "y" * 40}
    with pytest.raises(ValueError, match="signing key"):
        AuthSettings(env="production", **strong)
    AuthSettings(env="production", jwt_private_key_file="/run/secrets/key.pem", **strong)


# -- emails and names ------------------------------------------------------------------------------


def test_email_is_trimmed_and_lower_cased():
    assert domain.normalize_email("  Alice.Smith@Example.COM \n") == "alice.smith@example.com"


@pytest.mark.parametrize("raw", ["", "   ", "no-at-sign", "a@", "@b.com", "a b@c.com", "x" * 250 + "@a.com"])
def test_bad_emails_are_refused(raw):
    with pytest.raises(ValueError):
        domain.normalize_email(raw)


def test_names_are_1_to_50_characters():
    problems = FieldErrors()
    assert domain.clean_name(problems, "firstName", "  Ada  ") == "Ada"
    domain.clean_name(problems, "lastName", "x" * 50)
    assert not problems
    domain.clean_name(problems, "firstName", "   ")
    domain.clean_name(problems, "lastName", "x" * 51)
    assert set(problems.fields) == {"firstName", "lastName"}


def test_a_name_is_measured_as_sent_like_the_documented_max_length():
    problems = FieldErrors()
    assert domain.clean_name(problems, "firstName", " " + "x" * 49) == "x" * 49
    assert not problems
    domain.clean_name(problems, "lastName", "\u00a0" + "x" * 50)  # 50 once trimmed, 51 as sent
    assert problems.fields == {"lastName": ["must be at most 50 characters"]}


def test_address_validation_country_and_postal_code():
    cleaned, problems = domain.clean_address_fields({"country": "de", "postal_code": "10115", "label": "Home"})
    assert not problems and cleaned["country"] == "DE"
    _, problems = domain.clean_address_fields({"country": "XX", "postal_code": "<script>", "label": ""})
    assert set(problems.fields) == {"country", "postalCode", "label"}
    _, problems = domain.clean_address_fields({"country": "USA"})
    assert "country" in problems.fields
    # The documented maxLength (40) counts the spaces around the code, as sent.
    cleaned, problems = domain.clean_address_fields({"postal_code": " 00".ljust(40)})
    assert not problems and cleaned["postal_code"] == "00"
    _, problems = domain.clean_address_fields({"postal_code": " 00".ljust(41)})
    assert problems.fields == {"postalCode": ["must be at most 40 characters"]}


def test_address_phone_is_a_possible_number_for_its_country():
    # shop.lib.addresses: a possible number for the address's country (was a character pattern)
    cleaned, problems = domain.clean_address_fields({"country": "de", "phone": " 030 1234567 "})
    assert not problems and cleaned["phone"] == "030 1234567"
    for phone in ("1", "call me", "0" * 33):
        _, problems = domain.clean_address_fields({"country": "DE", "phone": phone})
        assert set(problems.fields) == {"phone"}
    # a patch of the phone alone is checked against the stored country
    assert not domain.clean_address_fields({"phone": "030 12345"}, "DE")[1]
    assert set(domain.clean_address_fields({"phone": "030 12345"}, "US")[1].fields) == {"phone"}
    # the country given in the same patch wins over the stored one
    assert set(domain.clean_address_fields({"country": "US", "phone": "030 12345"}, "DE")[1].fields) == {"phone"}


# -- lockout window --------------------------------------------------------------------------------


def test_lockout_after_max_failures_until_the_window_passes():
    window = timedelta(minutes=15)
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    failures = [now - timedelta(minutes=m) for m in (10, 8, 6, 4)]
    assert domain.lockout_retry_after(failures, now, max_failures=5, window=window) is None
    failures.append(now - timedelta(minutes=1))
    # The 5th most recent failure (10 min ago) leaves the window in 5 minutes.
    assert domain.lockout_retry_after(failures, now, max_failures=5, window=window) == 300
    later = now + timedelta(minutes=4, seconds=59)
    assert domain.lockout_retry_after(failures, later, max_failures=5, window=window) == 1
    assert domain.lockout_retry_after(failures, now + timedelta(minutes=5), max_failures=5, window=window) is None


def test_old_failures_do_not_count():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    failures = [now - timedelta(minutes=16)] * 10 + [now - timedelta(minutes=1)] * 4
    assert domain.lockout_retry_after(failures, now, max_failures=5, window=timedelta(minutes=15)) is None


# -- TOTP ------------------------------------------------------------------------------------------


def test_totp_matches_rfc6238_with_one_step_of_drift():
    secret = domain.new_totp_secret()
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    step = domain.totp_step(now)
    totp = pyotp.TOTP(secret)  # 30 s, 6 digits, SHA-1: RFC 6238 defaults
    assert domain.match_totp(secret, totp.at(now), now, None) == step
    assert domain.match_totp(secret, totp.at(now - timedelta(seconds=30)), now, None) == step - 1
    assert domain.match_totp(secret, totp.at(now + timedelta(seconds=30)), now, None) == step + 1
    assert domain.match_totp(secret, totp.at(now - timedelta(seconds=60)), now, None) is None
    assert domain.match_totp(secret, totp.at(now + timedelta(seconds=60)), now, None) is None
    assert domain.match_totp(secret, "12345", now, None) is None
    assert domain.match_totp(secret, "abcdef", now, None) is None


def test_totp_code_is_never_accepted_twice():
    secret = domain.new_totp_secret()
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    code = pyotp.TOTP(secret).at(now)
    step = domain.match_totp(secret, code, now, None)
    assert step is not None
    # Same code again (same step, or later within the window): refused.
    assert domain.match_totp(secret, code, now, step) is None
    assert domain.match_totp(secret, code, now + timedelta(seconds=25), step) is None
    # An older step's code after a newer one was used: refused too.
    previous = pyotp.TOTP(secret).at(now - timedelta(seconds=30))
    assert domain.match_totp(secret, previous, now, step) is None
    # The next step's code is fine.
    following = pyotp.TOTP(secret).at(now + timedelta(seconds=30))
    assert domain.match_totp(secret, following, now + timedelta(seconds=30), step) == step + 1


def test_otpauth_uri():
    secret = domain.new_totp_secret()
    uri = domain.otpauth_uri(secret, "a@b.com", "The Shop")
    assert uri.startswith("otpauth://totp/The%20Shop:a%40b.com?")
    assert f"secret={secret}" in uri and "issuer=The%20Shop" in uri


def test_recovery_codes_are_random_and_normalized():
    codes = domain.new_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(domain.normalize_recovery_code(c)) == 16 for c in codes)
    code = codes[0]
    assert domain.recovery_code_digest(code.upper().replace("-", " ")) == domain.recovery_code_digest(code)


def test_opaque_tokens_are_hashed_for_storage():
    token = domain.new_opaque_token()
    assert len(token) >= 43
    assert domain.token_digest(token) != token and len(domain.token_digest(token)) == 64


# -- refresh rotation, addresses, admin changes ------------------------------------------------------


def test_an_unclaimable_refresh_token_is_invalid_raced_or_reused():
    started = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert domain.unclaimed_refresh(known=False, used_at=None, started=started) is domain.Refresh.INVALID
    # its rotation finished after this refresh started: a concurrent refresh won
    assert domain.unclaimed_refresh(known=True, used_at=started, started=started) is domain.Refresh.RACED
    assert (
        domain.unclaimed_refresh(known=True, used_at=started + timedelta(seconds=1), started=started)
        is domain.Refresh.RACED
    )
    # finished before: the token came back later, a replay
    assert (
        domain.unclaimed_refresh(known=True, used_at=started - timedelta(seconds=1), started=started)
        is domain.Refresh.REUSED
    )


def test_a_claimed_token_rotates_only_for_a_live_session_and_an_active_user():
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    later, earlier = now + timedelta(days=1), now - timedelta(seconds=1)
    live: dict[str, Any] = dict(
        session_revoked_at=None,
        session_expires_at=later,
        token_expires_at=later,
        user_status=domain.STATUS_ACTIVE,
        now=now,
    )
    assert domain.may_rotate(**live)
    assert not domain.may_rotate(**{**live, "session_revoked_at": earlier})
    assert not domain.may_rotate(**{**live, "session_expires_at": now})
    assert not domain.may_rotate(**{**live, "token_expires_at": earlier})
    assert not domain.may_rotate(**{**live, "user_status": domain.STATUS_SUSPENDED})
    assert not domain.may_rotate(**{**live, "session_ends_at": now})
    assert domain.may_rotate(**{**live, "session_ends_at": later})
    ninety = timedelta(days=90)
    assert domain.session_expiry(now, timedelta(days=30), started_at=now, max_lifetime=ninety) == now + timedelta(
        days=30
    )
    started = now - timedelta(days=89)
    assert domain.session_expiry(now, timedelta(days=30), started_at=started, max_lifetime=ninety) == started + ninety


def test_a_hash_of_another_cost_needs_a_rehash():
    hashed = domain.hash_password("Passw0rdx", 4)
    assert not domain.needs_rehash(hashed, 4)
    assert domain.needs_rehash(hashed, 12)
    assert domain.needs_rehash("not-a-bcrypt-hash", 12)


def test_the_first_address_is_the_default():
    assert domain.new_address_is_default(0, False)
    assert not domain.new_address_is_default(1, False)
    assert domain.new_address_is_default(3, True)


def test_unknown_and_deactivated_accounts_may_not_sign_in():
    assert domain.may_sign_in(domain.STATUS_ACTIVE) and domain.may_sign_in(domain.STATUS_SUSPENDED)
    assert not domain.may_sign_in(domain.STATUS_DEACTIVATED) and not domain.may_sign_in(None)


def test_an_admin_change_keeps_only_what_differs_and_knows_when_sessions_end():
    same = domain.UserChange.between(role="SELLER", status="ACTIVE", wanted_role="SELLER", wanted_status=None)
    assert not same.changes_anything and not same.ends_sessions
    role = domain.UserChange.between(role="CUSTOMER", status="ACTIVE", wanted_role="SELLER", wanted_status="ACTIVE")
    assert role == domain.UserChange(role="SELLER", status=None) and role.ends_sessions
    reactivated = domain.UserChange.between(
        role="CUSTOMER", status="SUSPENDED", wanted_role=None, wanted_status="ACTIVE"
    )
    assert reactivated.changes_anything and not reactivated.ends_sessions


# -- access tokens ----------------------------------------------------------------------------------


async def test_access_token_claims_and_verification():
    key = SigningKey(generate_private_key_pem())
    minted = key.mint_access_token(
        issuer="shop-auth",
        audience="shop",
        user_id="u1",
        role="SELLER",
        session_id="s1",
        lifetime=timedelta(minutes=15),
    )
    header = jwt.get_unverified_header(minted.token)
    assert header["alg"] == "EdDSA" and header["kid"] == key.kid
    claims = jwt.decode(minted.token, options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "jti", "sid", "role", "typ", "iat", "exp"}
    assert claims["exp"] - claims["iat"] == 900 and minted.expires_in == 900
    assert (claims["iss"], claims["aud"], claims["sub"], claims["sid"], claims["role"], claims["typ"]) == (
        "shop-auth",
        "shop",
        "u1",
        "s1",
        "SELLER",
        "access",
    )
    with_email = key.mint_access_token(
        issuer="shop-auth",
        audience="shop",
        user_id="u1",
        role="CUSTOMER",
        session_id="s1",
        lifetime=timedelta(minutes=15),
        email="ada@example.com",
    )
    assert jwt.decode(with_email.token, options={"verify_signature": False})["email"] == "ada@example.com"
    jwk = json.loads(key.jwks_json())["keys"][0]
    assert jwk == {"kty": "OKP", "crv": "Ed25519", "x": jwk["x"], "kid": key.kid, "alg": "EdDSA", "use": "sig"}
    verifier = AccessTokenVerifier(KeySet.static(key.jwks_json()), issuer="shop-auth", audience="shop")
    caller = await verifier.verify(minted.token)
    assert (caller.user_id, caller.role, caller.session_id) == ("u1", "SELLER", "s1")
    other = AccessTokenVerifier(
        KeySet.static(SigningKey(generate_private_key_pem()).jwks_json()), issuer="shop-auth", audience="shop"
    )
    with pytest.raises(Unauthenticated):
        await other.verify(minted.token)
    expired = key.mint_access_token(
        issuer="shop-auth",
        audience="shop",
        user_id="u1",
        role="SELLER",
        session_id="s1",
        lifetime=timedelta(minutes=15),
        now=0,
    )
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(expired.token)


def test_kid_is_stable_for_a_key():
    pem = generate_private_key_pem()
    assert SigningKey(pem).kid == SigningKey(pem).kid
    assert SigningKey(pem).kid != SigningKey(generate_private_key_pem()).kid


def test_development_key_is_generated_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = AuthSettings(database_url="sqlite://", env="development")
    first = load_private_key_pem(settings)
    path = tmp_path / "var" / "jwt-private-key.pem"
    assert path.exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_private_key_pem(settings) == first
    assert SigningKey(first).kid  # a usable Ed25519 key
    assert [p.name for p in path.parent.iterdir()] == ["jwt-private-key.pem"]


def test_configured_key_wins_and_non_ed25519_is_refused(tmp_path):
    pem = generate_private_key_pem()
    assert load_private_key_pem(AuthSettings(database_url="sqlite://", jwt_private_key=pem)) == pem.strip()
    key_file = tmp_path / "key.pem"
    key_file.write_text(pem)
    assert load_private_key_pem(AuthSettings(database_url="sqlite://", jwt_private_key_file=str(key_file))) == pem
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(ValueError, match="Ed25519"):
        SigningKey(rsa_pem)


async def test_key_rotation_publishes_previous_public_keys():
    old_pem = generate_private_key_pem()
    old = SigningKey(old_pem)
    from cryptography.hazmat.primitives import serialization as ser

    old_public = (
        ser.load_pem_private_key(old_pem.encode(), password=None)
        .public_key()
        .public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    new = SigningKey(generate_private_key_pem(), previous_public_keys=old_public)
    keys = json.loads(new.jwks_json())["keys"]
    assert [k["kid"] for k in keys] == [new.kid, old.kid]
    verifier = AccessTokenVerifier(KeySet.static(new.jwks_json()), issuer="i", audience="a")
    for key in (old, new):
        token = key.mint_access_token(
            issuer="i", audience="a", user_id="u", role="CUSTOMER", session_id="s", lifetime=timedelta(minutes=15)
        ).token
        assert (await verifier.verify(token)).user_id == "u"
    settings = AuthSettings(
        database_url="sqlite://",
        jwt_private_key=generate_private_key_pem(),
        jwt_previous_public_keys=old_public.replace("\n", "\\n"),
    )
    assert len(json.loads(SigningKey.from_settings(settings).jwks_json())["keys"]) == 2
