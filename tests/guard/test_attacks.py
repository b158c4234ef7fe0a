"""A catalogue of JWT attacks, each sent through `Validator.authenticate_sync("Bearer " + token)`.

Tokens are built by hand: base64url of JSON written here, signed with the keyring's active key
(so only the attacked property is wrong) or with an attacker's key. A forged token with nothing
wrong is accepted (`test_forge_baseline_is_accepted`), so every rejection below is the attack's.
Every rejection is also checked to carry no part of the token in its description or challenge.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import AUDIENCE, ISSUER, FrozenClock
from tokenward.core.errors import JoseError
from tokenward.guard import BearerError, InvalidRequest, InvalidToken, Validator, challenge
from tokenward.tokens import algorithms as algs
from tokenward.tokens.b64 import b64url_encode
from tokenward.tokens.jwk import public_jwk, thumbprint
from tokenward.tokens.jws import MAX_COMPACT_LENGTH, loads_object
from tokenward.tokens.keyring import KeyPolicy, Keyring, KeyState

Sign = Callable[[bytes], bytes]


class _Missing:
    """Marks a member left out of a header or claims set (a stable repr for test ids)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


# --- building tokens by hand --------------------------------------------------------------
def segment(value: Any) -> str:
    """base64url of raw bytes, of text as written, or of a value as compact JSON."""
    if isinstance(value, bytes):
        return b64url_encode(value)
    if isinstance(value, str):
        return b64url_encode(value.encode("utf-8"))
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def forge(header: Any, payload: Any, sign: Sign | None, signature: bytes | None = None) -> str:
    signing_input = f"{segment(header)}.{segment(payload)}"
    if signature is None:
        signature = sign(signing_input.encode("ascii")) if sign is not None else b""
    return f"{signing_input}.{b64url_encode(signature)}"


def header_for(keyring: Keyring, **changes: Any) -> dict[str, Any]:
    key = keyring.active()
    header: dict[str, Any] = {"alg": key.alg.name, "typ": "at+jwt", "kid": key.kid}
    header.update(changes)
    return {name: value for name, value in header.items() if value is not MISSING}


def claims_for(clock: FrozenClock, **changes: Any) -> dict[str, Any]:
    now = int(clock())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "jti-attack",
        "client_id": "client-1",
        "scope": "read",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not MISSING}


def assert_no_leak(error: BearerError, token: str) -> None:
    rendered = challenge(error)
    texts = [
        error.description,
        str(error),
        repr(error),
        rendered.body.decode(),
        *(value for _name, value in rendered.headers),
    ]
    parts = [token, *(part for part in token.split(".") if len(part) >= 8)]
    for text in texts:
        for part in parts:
            assert part not in text


def rejected(
    validator: Validator,
    token: str,
    error: type[BearerError] = InvalidToken,
    match: str | None = None,
) -> BearerError:
    with pytest.raises(error, match=match) as caught:
        validator.authenticate_sync("Bearer " + token)
    assert_no_leak(caught.value, token)
    return caught.value


@pytest.fixture
def active_sign(keyring: Keyring) -> Sign:
    return keyring.active().sign


@pytest.fixture
def attacker() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def attacker_sign(private: ec.EllipticCurvePrivateKey) -> Sign:
    return algs.signer(algs.algorithm("ES256"), private)


def test_forge_baseline_is_accepted(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    token = forge(header_for(keyring), claims_for(clock), active_sign)
    assert validator.authenticate_sync("Bearer " + token).jti == "jti-attack"


# --- alg: none ----------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signed", [False, True], ids=["empty-signature", "with-signature"])
def test_alg_none(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    active_sign: Sign,
    alg: str,
    signed: bool,
) -> None:
    token = forge(header_for(keyring, alg=alg), claims_for(clock), active_sign if signed else None)
    assert token.endswith(".") is not signed
    rejected(validator, token, match="alg none")


# --- algorithm confusion ------------------------------------------------------------------
def _hs256(secret: bytes) -> Sign:
    return lambda message: hmac.digest(secret, message, "sha256")


def _public_key_forms(public: Any, jwk: dict[str, str]) -> dict[str, bytes]:
    forms = {
        "pem-spki": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der-spki": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(jwk).encode(),
        "jwk-json-compact": json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode(),
    }
    if isinstance(public, ec.EllipticCurvePublicKey):
        forms["raw-point"] = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    else:
        forms["pem-pkcs1"] = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        )
    return forms


def _confusion_cases(validator: Validator, keyring: Keyring, clock: FrozenClock) -> int:
    key = keyring.active()
    assert not isinstance(key.private, bytes)
    public = key.private.public_key()
    jwk = key.verification.public_jwk
    assert jwk is not None
    forms = _public_key_forms(public, dict(jwk))
    for secret in forms.values():
        for alg in ("HS256", "HS384", "HS512"):
            name = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}[alg]

            def sign(message: bytes, secret: bytes = secret, name: str = name) -> bytes:
                return hmac.digest(secret, message, name)

            token = forge(header_for(keyring, alg=alg), claims_for(clock), sign)
            rejected(validator, token, match="alg does not match")
    return len(forms)


def test_hs256_keyed_with_the_es256_public_key(
    validator: Validator, keyring: Keyring, clock: FrozenClock
) -> None:
    assert keyring.active().alg.name == "ES256"
    assert _confusion_cases(validator, keyring, clock) == 5


@pytest.mark.parametrize("keyring", ["RS256"], indirect=True)
def test_hs256_keyed_with_the_rsa_public_key(
    validator: Validator, keyring: Keyring, clock: FrozenClock
) -> None:
    assert keyring.active().alg.name == "RS256"
    assert _confusion_cases(validator, keyring, clock) == 5


@pytest.mark.parametrize("alg", ["ES384", "ES512", "RS256", "PS256", "EdDSA", "es256", "ES256 "])
def test_header_alg_other_than_the_keys_is_refused(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, alg: str
) -> None:
    rejected(validator, forge(header_for(keyring, alg=alg), claims_for(clock), active_sign))


# --- keys carried by the token itself -----------------------------------------------------
def _self_signed_certificate(private: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker.example")])
    start = datetime(2026, 1, 1, tzinfo=UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c"])
@pytest.mark.parametrize("kid", ["attacker", "ours", "none"])
def test_token_supplied_keys_are_refused(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    attacker: ec.EllipticCurvePrivateKey,
    member: str,
    kid: str,
) -> None:
    attacker_kid = thumbprint(attacker.public_key())
    values = {
        "jwk": dict(public_jwk(attacker.public_key(), attacker_kid, "ES256")),
        "jku": "https://attacker.example/.well-known/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": [base64.b64encode(_self_signed_certificate(attacker)).decode()],
    }
    kids = {"attacker": attacker_kid, "ours": keyring.active().kid, "none": MISSING}
    header = header_for(keyring, kid=kids[kid], **{member: values[member]})
    token = forge(header, claims_for(clock), attacker_sign(attacker))
    rejected(validator, token, match=f"{member} header is not accepted")


def test_attacker_key_without_key_headers_is_refused(
    validator: Validator, keyring: Keyring, clock: FrozenClock, attacker: ec.EllipticCurvePrivateKey
) -> None:
    token = forge(header_for(keyring), claims_for(clock), attacker_sign(attacker))
    rejected(validator, token, match="signature does not verify")


# --- kid ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kid",
    [
        "../../etc/passwd",
        "../../../../../../dev/null",
        "' OR 1=1 --",
        "x'; DROP TABLE keys; --",
        "",
        "\u0000",
        "%2e%2e%2f",
        MISSING,
        None,
        1,
        0,
        True,
        1.5,
        ["KID"],
        {"kid": "KID"},
    ],
    ids=repr,
)
def test_hostile_kid(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, kid: Any
) -> None:
    real = keyring.active().kid
    if kid == ["KID"]:
        kid = [real]
    elif kid == {"kid": "KID"}:
        kid = {"kid": real}
    token = forge(header_for(keyring, kid=kid), claims_for(clock), active_sign)
    rejected(validator, token)


def test_kid_with_trailing_space_is_not_our_kid(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    header = header_for(keyring, kid=keyring.active().kid + " ")
    rejected(validator, forge(header, claims_for(clock), active_sign), match="no key matches")


# --- ECDSA signature values ---------------------------------------------------------------
P256_ORDER = algs.CURVES["P-256"].order


@pytest.mark.parametrize(
    ("r", "s"),
    [
        (0, 0),  # CVE-2022-21449, "psychic signatures"
        (P256_ORDER, P256_ORDER),
        (0, 1),
        (1, 0),
        (P256_ORDER, 1),
        (1, P256_ORDER),
        (P256_ORDER + 1, 1),
        (2**256 - 1, 2**256 - 1),
    ],
    ids=["r=s=0", "r=s=n", "r=0", "s=0", "r=n", "s=n", "r=n+1", "r=s=max"],
)
def test_degenerate_ecdsa_signature(
    validator: Validator, keyring: Keyring, clock: FrozenClock, r: int, s: int
) -> None:
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    token = forge(header_for(keyring), claims_for(clock), None, signature=signature)
    rejected(validator, token, match="signature does not verify")


@pytest.mark.parametrize("size", [0, 1, 63, 65, 72, 128])
def test_ecdsa_signature_of_the_wrong_size(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, size: int
) -> None:
    good = forge(header_for(keyring), claims_for(clock), active_sign)
    signature = base64.urlsafe_b64decode(good.rsplit(".", 1)[1] + "==")
    resized = (signature + bytes(128))[:size] if size > 64 else signature[:size]
    token = forge(header_for(keyring), claims_for(clock), None, signature=resized)
    rejected(validator, token)


def test_der_encoded_ecdsa_signature_is_refused(
    validator: Validator, keyring: Keyring, clock: FrozenClock
) -> None:
    private = keyring.active().private
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    signing_input = f"{segment(header_for(keyring))}.{segment(claims_for(clock))}"
    der = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    rejected(validator, f"{signing_input}.{b64url_encode(der)}")


# --- framing ------------------------------------------------------------------------------
def _good(keyring: Keyring, clock: FrozenClock, sign: Sign) -> str:
    return forge(header_for(keyring), claims_for(clock), sign)


@pytest.mark.parametrize(
    "reshape",
    [
        lambda t: t.rsplit(".", 1)[0],  # two segments
        lambda t: t + ".",  # four segments, the last empty
        lambda t: t + "." + t.split(".")[2],  # four segments
        lambda t: t + ".AAAA.AAAA",  # five segments
        lambda t: ".".join(["", *t.split(".")[1:]]),  # empty header
        lambda t: ".".join([t.split(".")[0], "", t.split(".")[2]]),  # empty payload
        lambda t: t.rsplit(".", 1)[0] + ".",  # empty signature
        lambda t: "..",
        lambda t: ".",
        lambda t: "....",
        lambda t: t.replace(".", ".."),
        lambda t: t + " ",
        lambda t: t + "\r\n",
        lambda t: t.replace(".", " ", 1),
    ],
    ids=[
        "two-segments",
        "trailing-dot",
        "four-segments",
        "five-segments",
        "empty-header",
        "empty-payload",
        "empty-signature",
        "dots-only",
        "one-dot",
        "four-dots",
        "doubled-dots",
        "trailing-space",
        "trailing-crlf",
        "space-for-dot",
    ],
)
def test_malformed_compact_serialization(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    active_sign: Sign,
    reshape: Callable[[str], str],
) -> None:
    rejected(validator, reshape(_good(keyring, clock, active_sign)))


@pytest.mark.parametrize("authorization", ["Bearer ", "Bearer  {token}", "bearer   {token}"])
def test_framing_problems_are_invalid_request(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    active_sign: Sign,
    authorization: str,
) -> None:
    token = _good(keyring, clock, active_sign)
    with pytest.raises(InvalidRequest) as caught:
        validator.authenticate_sync(authorization.format(token=token))
    assert_no_leak(caught.value, token)


def test_token_without_dots_and_no_opaque_resolver_is_refused(validator: Validator) -> None:
    rejected(validator, "eyJhbGciOiJFUzI1NiJ9", match="malformed")


# --- JSON: duplicates, types, constants, depth -------------------------------------------
def _signed_text(header_text: str, payload_text: str, sign: Sign) -> str:
    return forge(header_text, payload_text, sign)


def _claims_text(clock: FrozenClock, extra: str = "", **changes: Any) -> str:
    text = json.dumps(claims_for(clock, **changes), separators=(",", ":"))
    return text[:-1] + extra + "}"


@pytest.mark.parametrize(
    "extra",
    [
        ',"sub":"admin"',
        ',"exp":9999999999',
        ',"aud":"https://other.example"',
        ',"iss":"https://evil.example"',
        ',"scope":"admin"',
    ],
)
def test_duplicate_claims_are_refused(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, extra: str
) -> None:
    payload = _claims_text(clock, extra)
    token = _signed_text(json.dumps(header_for(keyring)), payload, active_sign)
    rejected(validator, token)


@pytest.mark.parametrize(
    "extra", [',"alg":"HS256"', ',"alg":"none"', ',"kid":"other"', ',"typ":"JWT"']
)
def test_duplicate_header_members_are_refused(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, extra: str
) -> None:
    header = json.dumps(header_for(keyring), separators=(",", ":"))[:-1] + extra + "}"
    token = _signed_text(header, _claims_text(clock), active_sign)
    rejected(validator, token)


def test_duplicate_alg_with_none_first_is_refused(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    key = keyring.active()
    header = f'{{"alg":"none","typ":"at+jwt","kid":"{key.kid}","alg":"{key.alg.name}"}}'
    rejected(validator, _signed_text(header, _claims_text(clock), active_sign))


@pytest.mark.parametrize(
    "payload",
    ["[]", '[{"sub":"alice"}]', '"alice"', "42", "1.5", "null", "true", "", " ", "{", "eyJ9"],
)
def test_payload_that_is_not_a_json_object(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, payload: str
) -> None:
    token = _signed_text(json.dumps(header_for(keyring)), payload, active_sign)
    rejected(validator, token)


def test_payload_that_is_a_nested_jwt(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    inner = _good(keyring, clock, active_sign)
    header = header_for(keyring, cty="JWT")
    rejected(validator, forge(header, inner, active_sign))


@pytest.mark.parametrize("header", ["[]", '"ES256"', "null", "{}", '{"alg":null}', '{"alg":256}'])
def test_header_that_is_not_a_usable_json_object(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, header: str
) -> None:
    rejected(validator, _signed_text(header, _claims_text(clock), active_sign))


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("claim", ["exp", "iat", "extra"])
def test_nan_and_infinity_are_not_json(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    active_sign: Sign,
    constant: str,
    claim: str,
) -> None:
    changes = {} if claim == "extra" else {claim: MISSING}
    payload = _claims_text(clock, f',"{claim}":{constant}', **changes)
    token = _signed_text(json.dumps(header_for(keyring)), payload, active_sign)
    rejected(validator, token)


def test_nan_in_the_header_is_not_json(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    header = json.dumps(header_for(keyring))[:-1] + ',"x":NaN}'
    rejected(validator, _signed_text(header, _claims_text(clock), active_sign))


def test_deep_nesting_of_20000_brackets(
    validator: Validator, keyring: Keyring, active_sign: Sign
) -> None:
    with pytest.raises(JoseError):
        loads_object(b"[" * 10_000)
    token = _signed_text(json.dumps(header_for(keyring)), "[" * 20_000, active_sign)
    assert len(token) > MAX_COMPACT_LENGTH  # refused by size before any parsing
    rejected(validator, token, match="too long")


@pytest.mark.parametrize("depth", [100, 300, 1000, 5000])
def test_deep_nesting_inside_the_size_limit(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, depth: int
) -> None:
    nested = _claims_text(clock, ',"x":' + "[" * depth + "]" * depth)
    unclosed = "[" * depth
    for payload in (nested, unclosed):
        token = _signed_text(json.dumps(header_for(keyring)), payload, active_sign)
        if len(token) > MAX_COMPACT_LENGTH:
            rejected(validator, token, match="too long")
            continue
        if payload is nested and depth < 900:  # well-formed and within the parser's depth
            assert validator.authenticate_sync("Bearer " + token).extra["x"]
            continue
        rejected(validator, token)


@pytest.mark.parametrize("depth", [100, 253, 254, 255, 300, 1000, 1022, 1023, 1024, 2000])
def test_deep_nesting_in_the_unauthenticated_header(
    validator: Validator, keyring: Keyring, clock: FrozenClock, depth: int
) -> None:
    """The header is parsed before the signature is checked: no depth may escape InvalidToken.

    orjson parses 1023 levels but re-encodes only 254, and raised TypeError in between.
    """
    header = json.dumps(header_for(keyring))[:-1] + ',"x":' + "[" * depth + "]" * depth + "}"
    token = forge(header, _claims_text(clock), None, signature=bytes(64))
    rejected(validator, token)


def test_deep_nesting_in_a_signed_header_is_just_an_extra_member(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    header = json.dumps(header_for(keyring))[:-1] + ',"x":' + "[" * 300 + "]" * 300 + "}"
    token = _signed_text(header, _claims_text(clock), active_sign)
    assert validator.authenticate_sync("Bearer " + token).sub == "alice"


# --- claims -------------------------------------------------------------------------------
NOW = 1_800_000_000


@pytest.mark.parametrize(
    "exp",
    [
        str(NOW + 600),
        float(NOW + 600),
        NOW + 600.5,
        True,
        False,
        -1,
        0,
        10**30,
        2**63,
        [NOW + 600],
        {"t": NOW + 600},
        None,
        MISSING,
    ],
    ids=repr,
)
def test_malformed_exp(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, exp: Any
) -> None:
    assert int(clock()) == NOW
    token = forge(header_for(keyring), claims_for(clock, exp=exp), active_sign)
    rejected(validator, token)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
@pytest.mark.parametrize("value", ["1800000000", 1_800_000_000.0, True, -5, 10**30, [1]], ids=repr)
def test_malformed_iat_and_nbf(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    active_sign: Sign,
    claim: str,
    value: Any,
) -> None:
    token = forge(header_for(keyring), claims_for(clock, **{claim: value}), active_sign)
    rejected(validator, token)


def test_missing_iat_is_refused(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    token = forge(header_for(keyring), claims_for(clock, iat=MISSING), active_sign)
    rejected(validator, token)


def test_expired_token(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    now = int(clock())
    claims = claims_for(clock, iat=now - 1000, nbf=now - 1000, exp=now - 31)
    rejected(validator, forge(header_for(keyring), claims, active_sign), match="expired")


def test_iat_in_the_future(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    now = int(clock())
    claims = claims_for(clock, iat=now + 3600, nbf=MISSING, exp=now + 4000)
    rejected(validator, forge(header_for(keyring), claims, active_sign), match="future")


def test_nbf_in_the_future(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    claims = claims_for(clock, nbf=int(clock()) + 3600)
    rejected(validator, forge(header_for(keyring), claims, active_sign), match="not valid yet")


def test_lifetime_longer_than_allowed(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    claims = claims_for(clock, exp=int(clock()) + 86400 + 1)
    rejected(validator, forge(header_for(keyring), claims, active_sign), match="lifetime")


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": MISSING},
        {"sub": ""},
        {"sub": 1},
        {"iss": MISSING},
        {"client_id": None},
        {"jti": ["a"]},
        {"aud": MISSING},
        {"aud": []},
        {"aud": [AUDIENCE, 1]},
        {"aud": {"aud": AUDIENCE}},
        {"scope": ["read"]},
        {"cnf": "jkt"},
    ],
    ids=repr,
)
def test_malformed_registered_claims(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    active_sign: Sign,
    changes: dict[str, Any],
) -> None:
    rejected(validator, forge(header_for(keyring), claims_for(clock, **changes), active_sign))


def test_audience_string_with_nul_is_not_a_list_of_audiences(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    """One audience string must never be confused with a list of audiences (claims interning)."""
    listed = forge(
        header_for(keyring), claims_for(clock, aud=[AUDIENCE, "https://other.example"]), active_sign
    )
    assert validator.authenticate_sync("Bearer " + listed).aud == (
        AUDIENCE,
        "https://other.example",
    )
    joined = claims_for(clock, aud=AUDIENCE + "\x00https://other.example", jti="jti-joined")
    rejected(validator, forge(header_for(keyring), joined, active_sign), match="audience")


# --- typ and crit -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "typ",
    [MISSING, None, "JWT", "jwt", "dpop+jwt", "application/jwt", "at+jwt ", "at+jwt; x", "", 1],
    ids=repr,
)
def test_typ_other_than_an_access_token(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, typ: Any
) -> None:
    token = forge(header_for(keyring, typ=typ), claims_for(clock), active_sign)
    rejected(validator, token, match="typ")


@pytest.mark.parametrize(
    "typ", ["at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt", "Application/AT+JWT"]
)
def test_access_token_typ_is_accepted_in_any_case(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign, typ: str
) -> None:
    token = forge(header_for(keyring, typ=typ), claims_for(clock), active_sign)
    assert validator.authenticate_sync("Bearer " + token).sub == "alice"


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["exp"], "exp": 1},
        {"crit": []},
        {"crit": ["b64"], "b64": False},
        {"crit": "exp"},
        {"crit": None},
    ],
    ids=repr,
)
def test_crit_header_is_refused(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    active_sign: Sign,
    extra: dict[str, Any],
) -> None:
    token = forge(header_for(keyring, **extra), claims_for(clock), active_sign)
    rejected(validator, token, match="crit")


# --- size and characters ------------------------------------------------------------------
def test_oversized_token(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    def sized(padding: int) -> str:
        return forge(header_for(keyring), claims_for(clock, pad="p" * padding), active_sign)

    top = MAX_COMPACT_LENGTH * 3 // 4  # base64url: 4 characters per 3 bytes
    under = next(t for t in map(sized, range(top, top - 1000, -1)) if len(t) <= MAX_COMPACT_LENGTH)
    assert len(under) > MAX_COMPACT_LENGTH - 3
    assert validator.authenticate_sync("Bearer " + under).sub == "alice"
    over = sized(top + 200)
    assert len(over) > MAX_COMPACT_LENGTH
    rejected(validator, over, match="too long")
    rejected(validator, "A" * 100_000 + ".e30.AAAA", match="too long")


@pytest.mark.parametrize(
    "insert",
    ["é", "\u0430", "\uff21", "\u200b", "\U0001f600", "\x00", "\x7f", "%41", "\\"],
    ids=repr,
)
@pytest.mark.parametrize("where", [0, 1, 2])
def test_foreign_characters_in_the_token(
    validator: Validator,
    keyring: Keyring,
    clock: FrozenClock,
    active_sign: Sign,
    insert: str,
    where: int,
) -> None:
    parts = _good(keyring, clock, active_sign).split(".")
    parts[where] = parts[where][:5] + insert + parts[where][5:]
    rejected(validator, ".".join(parts))


def test_non_ascii_inside_claims_is_fine(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    token = forge(header_for(keyring), claims_for(clock, sub="ålïcé ✓"), active_sign)
    assert validator.authenticate_sync("Bearer " + token).sub == "ålïcé ✓"


# --- keys from elsewhere ------------------------------------------------------------------
def test_same_kid_from_another_keyring(
    validator: Validator, keyring: Keyring, clock: FrozenClock
) -> None:
    other = Keyring(KeyPolicy(), clock)
    other.ensure_ready()
    assert other.active().kid != keyring.active().kid
    token = forge(header_for(keyring), claims_for(clock), other.active().sign)
    rejected(validator, token, match="signature does not verify")
    own_kid = forge(header_for(other), claims_for(clock), other.active().sign)
    rejected(validator, own_kid, match="no key matches")


def test_retiring_key_still_verifies_within_its_grace(
    validator: Validator, keyring: Keyring, clock: FrozenClock, mint: Callable[..., str]
) -> None:
    old = "Bearer " + mint()
    keyring.rotate(force=True)
    clock.advance(60)
    assert keyring.advance() == []
    assert validator.authenticate_sync(old).sub == "alice"


def test_retired_key_verifies_nothing(
    validator: Validator, keyring: Keyring, clock: FrozenClock, mint: Callable[..., str]
) -> None:
    old_token = mint()
    old_key = keyring.active()
    keyring.rotate(force=True)
    policy = keyring.policy
    clock.advance(policy.max_token_lifetime + policy.leeway + 1)
    assert keyring.advance() == [old_key]
    assert old_key.state == KeyState.RETIRED
    rejected(validator, old_token, match="no key matches")
    # A fresh, well-formed token signed by the retired key: refused for the key alone.
    fresh = forge(
        {"alg": old_key.alg.name, "typ": "at+jwt", "kid": old_key.kid},
        claims_for(clock, jti="jti-fresh"),
        old_key.sign,
    )
    rejected(validator, fresh, match="no key matches")
    assert validator.authenticate_sync("Bearer " + mint()).sub == "alice"


# --- the token never appears in an error --------------------------------------------------
def test_error_descriptions_never_echo_the_token(
    validator: Validator, keyring: Keyring, clock: FrozenClock, active_sign: Sign
) -> None:
    kid = keyring.active().kid
    hostile = [
        forge(header_for(keyring, kid="<script>" + "k" * 40), claims_for(clock), active_sign),
        forge(header_for(keyring, typ="x" * 60), claims_for(clock), active_sign),
        forge(header_for(keyring), claims_for(clock, iss="https://evil/" + "e" * 40), active_sign),
        forge(header_for(keyring, alg="HS256"), claims_for(clock), _hs256(kid.encode() * 2)),
    ]
    for token in hostile:
        error = rejected(validator, token)
        assert "<script>" not in error.description
        assert kid not in error.description
