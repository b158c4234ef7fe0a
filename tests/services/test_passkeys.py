"""Passkey sign-in as a service, with assertions made here as an authenticator makes them
(WebAuthn §6.1 authenticator data, §5.8.1 client data, an ES256 signature over both): a stored
credential whose public key or id is corrupted makes the passkey unusable, refused with what to
do and logged, never an exception out of the service (a 500)."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import replace

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import FrozenClock
from tokenward.core.records import PasskeyCredential, UserRecord
from tokenward.services.passkeys import UNUSABLE, PasskeyError, PasskeyService
from tokenward.store.memory_factors import MemoryPasskeys
from tokenward.tokens.b64 import b64url_decode, b64url_encode

pytestmark = pytest.mark.anyio
ISSUER = "http://localhost:8000"
CREDENTIAL_ID = b"credential-one"
USER_PRESENT_AND_VERIFIED = 0x01 | 0x04  # WebAuthn §6.1 flags UP and UV


def _cose(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The public key as COSE_Key (RFC 9053 §7.1.1: EC2, ES256, P-256)."""
    numbers = key.public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: y})


def _assertion(key: ec.EllipticCurvePrivateKey, challenge: str, user_id: str, count: int) -> str:
    """navigator.credentials.get()'s answer, as JSON (PublicKeyCredential.toJSON)."""
    client_data = json.dumps(
        {"type": "webauthn.get", "challenge": challenge, "origin": ISSUER}
    ).encode()
    rp_hash = hashlib.sha256(b"localhost").digest()
    authenticator_data = rp_hash + bytes([USER_PRESENT_AND_VERIFIED]) + struct.pack(">I", count)
    signed = authenticator_data + hashlib.sha256(client_data).digest()
    signature = key.sign(signed, ec.ECDSA(hashes.SHA256()))
    raw_id = b64url_encode(CREDENTIAL_ID)
    return json.dumps(
        {
            "id": raw_id,
            "rawId": raw_id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url_encode(client_data),
                "authenticatorData": b64url_encode(authenticator_data),
                "signature": b64url_encode(signature),
                "userHandle": b64url_encode(user_id.encode()),
            },
        }
    )


async def _stored(
    clock: FrozenClock,
) -> tuple[PasskeyService, MemoryPasskeys, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    store = MemoryPasskeys()
    await store.add(
        PasskeyCredential(b64url_encode(CREDENTIAL_ID), "u1", _cose(key), 1, clock(), "phone")
    )
    return PasskeyService(store, ISSUER, clock), store, key


async def test_a_sound_passkey_signs_its_user_in(clock: FrozenClock) -> None:
    service, _store, key = await _stored(clock)
    ceremony = service.authentication()
    assert (
        await service.authenticate(_assertion(key, ceremony.challenge, "u1", 2), ceremony.challenge)
        == "u1"
    )


@pytest.mark.parametrize(
    "public_key",
    [
        b"cose",  # not CBOR at all
        b"\xa1\x01\x02",  # CBOR, but no key in it
        b"",
        cbor2.dumps({1: 2, 3: -7, -1: 1, -2: b"x" * 32, -3: b"y" * 32}),  # not a point
        cbor2.dumps({1: 99, 3: -7}),  # an unknown key type
    ],
)
async def test_a_corrupted_public_key_is_refused_and_logged(
    clock: FrozenClock, public_key: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    service, store, key = await _stored(clock)
    stored = await store.get(b64url_encode(CREDENTIAL_ID))
    assert stored is not None
    await store.add(replace(stored, public_key=public_key))
    ceremony = service.authentication()
    with pytest.raises(PasskeyError, match="can no longer be used"):
        await service.authenticate(_assertion(key, ceremony.challenge, "u1", 2), ceremony.challenge)
    assert str(UNUSABLE).startswith("this passkey")
    logged = capsys.readouterr().out
    assert "passkey_unusable" in logged
    assert public_key.hex() not in logged or not public_key
    after = await store.get(b64url_encode(CREDENTIAL_ID))
    assert after is not None
    assert after.sign_count == 1  # nothing was recorded as a use


async def test_a_corrupted_credential_id_does_not_break_adding_a_passkey(
    clock: FrozenClock,
) -> None:
    """The account page's registration lists the user's passkeys to exclude: a row whose id
    is not base64url is left out (logged), the page still works."""
    service, store, _key = await _stored(clock)
    await store.add(PasskeyCredential("not base64url!", "u1", b"cose", 0, clock()))
    user = UserRecord("u1", "ann", "x", clock(), clock())
    ceremony = service.registration(user, list(await store.of_user("u1")))
    excluded = json.loads(ceremony.options)["excludeCredentials"]
    assert [b64url_decode(item["id"]) for item in excluded] == [CREDENTIAL_ID]
